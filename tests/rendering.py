"""What the render tests share (test_render*.py): the browser they need, the app-shell shop
they crawl, a crawl in this process read back by path, ``shoal`` in a subprocess (the shoal
imported here) with a TMPDIR and HOME of its own, a look for browser processes left behind,
and pywb replaying a WARC (test_recrawl_pywb's too).

The ``browser`` fixture skips a test without Playwright or Chromium, and fails it under CI
(``CI=true``), which must run them; conftest makes it known to every test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sites import Reply, Request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def browser() -> None:
    """Skip (under CI: fail) a test that needs Playwright and a Chromium."""
    need_browser("the render tests")


def need_browser(what: str) -> None:
    """Skip the test (fail it under CI, which must run ``what``) without Playwright for
    Python or a Chromium."""
    reason = None
    try:
        import playwright  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e .[dev])"
    if reason is None and not os.path.exists(CHROMIUM):
        reason = "no chromium (apt-get install chromium; .ci/run does it)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run {what}: {reason}")
        pytest.skip(reason)


# -- the app-shell shop: every page the same shell, filled by its script from a JSON API ----

SHELL = (
    "<!doctype html><html><head><title>Shop</title></head>"
    '<body><div id="app"></div><script src="/app.js"></script></body></html>'
)
APP_JS = """
async function main() {
  const app = document.getElementById('app');
  const p = location.pathname;
  if (p === '/' || p.startsWith('/list/')) {
    const n = p === '/' ? 1 : +p.split('/')[2];
    const d = await (await fetch('/api/list/' + n)).json();
    app.innerHTML = '<h1>List ' + n + '</h1>' +
      d.items.map(i => '<a href="/item/' + i + '">item ' + i + '</a>').join(' ') +
      (d.next ? ' <a href="/list/' + d.next + '">next</a>' : '');
  } else if (p.startsWith('/item/')) {
    const d = await (await fetch('/api/item/' + p.split('/')[2])).json();
    app.innerHTML = '<h1>' + d.name + '</h1>';
  }
}
main();
"""
LISTS, PER_LIST = 3, 3
PAGES = 1 + (LISTS - 1) + LISTS * PER_LIST  # "/", the other lists, the items


def shop(request: Request) -> Reply:
    """The shop, as a Site's fallback: ``site.fallback = shop``."""
    path = request.path
    if path == "/app.js":
        return Reply(body=APP_JS, content_type="application/javascript")
    if path.startswith("/api/list/"):
        n = int(path.split("/")[3])
        items = [(n - 1) * PER_LIST + k for k in range(1, PER_LIST + 1)]
        data = {"items": items, "next": n + 1 if n < LISTS else None}
        return Reply(body=json.dumps(data), content_type="application/json")
    if path.startswith("/api/item/"):
        name = f"Item {path.split('/')[3]}"
        return Reply(body=json.dumps({"name": name}), content_type="application/json")
    if path == "/robots.txt":
        return Reply(404, "")
    return Reply(body=SHELL)


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_path(path: Path) -> dict[str, dict[str, Any]]:
    """The records of ``path``, by their URL's path (one site's crawl)."""
    return {"/" + str(r["url"]).split("/", 3)[3]: r for r in records(path)}


def crawl(url: str | list[str], out: Path, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """A crawl in this process, without a state: its records by path."""
    from shoal import Crawler

    Crawler(url, state=None, output=str(out), progress=False, **kwargs).run()
    return by_path(out)


# -- shoal in a subprocess, and the browser processes it leaves ------------------------------


def shoal(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``python -m shoal ARGS`` with ``env`` (by default this one's). It runs the shoal
    these tests import (a worktree's src), not the one an editable install points at."""
    import shoal as imported  # here, not above: conftest imports this module

    src = str(Path(imported.__file__).resolve().parents[1])
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


@contextlib.contextmanager
def short_tmpdirs(count: int, prefix: str) -> Iterator[list[Path]]:
    """TMPDIRs with short paths (a browser's sockets live under its TMPDIR), one per run:
    each one's name marks its browser's processes (:func:`browsers_of`)."""
    made = [Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")) for _ in range(count)]
    try:
        yield made
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def isolated_env(short: Path, home: Path) -> dict[str, str]:
    """The environment of a run with TMPDIR ``short`` and HOME ``home`` of its own, to see
    that nothing is left in either."""
    home.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(short), "HOME": str(home)}


def browsers_of(marker: str) -> list[str]:
    """Processes whose command line holds ``marker`` (a run's own TMPDIR)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and b"shoal" not in cmdline.split(b"\0")[0]:
            found.append(f"{pid}: {cmdline[:200]!r}")
    return found


def no_browser_left(marker: str, wait: float = 20.0) -> list[str]:
    deadline = time.monotonic() + wait
    while True:
        left = browsers_of(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# -- pywb: the archive community's replay tool, in a venv of its own -----------------------


def pywb_bin() -> Path:
    """The bin folder of pywb's venv (bench/.venv-pywb, made on first use by
    bench/side_venv.py: its dependencies are not shoal's); skips without a package index."""
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    from side_venv import ensure_side_venv

    try:
        python = ensure_side_venv(ROOT / "bench" / ".venv-pywb", ["pywb"], ["pywb"])
    except subprocess.CalledProcessError as exc:  # no package index reachable
        pytest.skip(f"cannot install pywb into its own venv: {exc}")
    return python.parent


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def replayed(bin_: Path, warc: Path, where: Path) -> Iterator[str]:
    """pywb (from :func:`pywb_bin`, asked for before the crawl: it may skip) serving
    ``warc``, a collection made in ``where``/replay: yields the collection's base URL
    (``{base}/id_/URL``, ``{base}/cdx?url=URL``)."""
    coll = where / "replay"
    coll.mkdir()
    subprocess.run([bin_ / "wb-manager", "init", "c"], cwd=coll, check=True, capture_output=True)
    subprocess.run(
        [bin_ / "wb-manager", "add", "c", str(warc)], cwd=coll, check=True, capture_output=True
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [bin_ / "wayback", "-p", str(port), "-b", "127.0.0.1"],
        cwd=coll,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # bounded: pywb up within ~30 s
            try:
                get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                threading.Event().wait(0.1)
        yield f"http://127.0.0.1:{port}/c"
    finally:
        proc.kill()
        proc.wait(30)
