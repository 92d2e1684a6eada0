"""--render is durable and shared like every page: a render crawl killed with SIGKILL resumes
exactly once, ``--redis`` workers render too (each with its own browser), and a page whose
script builds a 300,000-element DOM is recorded once, bounded by ``--max-bytes``.

Under CI a missing browser (or redis-server) is a failure; elsewhere the tests are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_server import RedisServer
from rendering import (
    LISTS,
    PAGES,
    PER_LIST,
    isolated_env,
    no_browser_left,
    records,
    shop,
    short_tmpdirs,
)
from sites import Reply, Request, Site

pytestmark = pytest.mark.usefixtures("browser")


def make_shop(hold: threading.Event | None = None, after: int = 0) -> tuple[Site, list[int]]:
    """The app-shell shop; with ``hold``, item pages after the first ``after`` wait for it
    (so a crawl is stopped mid-way at a known point, not after a guessed sleep)."""
    seen = [0]  # item page requests so far
    lock = threading.Lock()

    def serve(request: Request) -> Reply:
        if request.path.startswith("/item/") and hold is not None:
            with lock:
                seen[0] += 1
                held = seen[0] > after
            if held:
                hold.wait(60)
        return shop(request)

    site = Site()
    site.fallback = serve
    return site, seen


def check_shop(got: list[dict[str, object]], origin: str) -> None:
    """Every page of the shop once, rendered, with the right --extract value."""
    urls = [str(r["url"]).removeprefix(origin) for r in got]
    assert len(urls) == len(set(urls)), sorted(urls)  # each once
    want = {"/", *(f"/list/{n}" for n in range(2, LISTS + 1))}
    want |= {f"/item/{i}" for i in range(1, LISTS * PER_LIST + 1)}
    assert set(urls) == want
    for path, record in zip(urls, got, strict=True):
        assert record["rendered"] is True and record["error"] is None, record
        if path.startswith("/item/"):
            assert record["name"] == f"Item {path.split('/')[2]}", record
        else:
            assert record["name"] == f"List {path.split('/')[2] if path != '/' else 1}", record


@pytest.fixture
def short_tmps() -> Iterator[list[Path]]:
    """Short TMPDIRs, one per process: each marks its own browser's processes."""
    with short_tmpdirs(2, "r18d-") as made:
        yield made


def wait_until(what: str, ready: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_a_render_crawl_killed_with_sigkill_resumes_exactly_once(
    tmp_path: Path, short_tmps: list[Path]
) -> None:
    short = short_tmps[0]
    env = isolated_env(short, tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    hold = threading.Event()
    site, seen = make_shop(hold, after=6)
    command = [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", "pages.jsonl",
               "--render", "always", "--render-timeout", "60", "--extract", "name=h1::text",
               "--no-progress"]  # fmt: skip
    with site:
        proc = subprocess.Popen(
            command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            # Mid-crawl: the server holds an item page, and pages are already recorded.
            wait_until("an item page held", lambda: seen[0] > 6 or proc.poll() is not None)
            wait_until("3 pages recorded", lambda: lines(work / "pages.jsonl") >= 3)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
            hold.set()  # the held requests end (their client is gone)
        before = lines(work / "pages.jsonl")
        assert 3 <= before < PAGES
        assert no_browser_left(str(short), wait=30.0) == []
        again = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr
    check_shop(records(work / "pages.jsonl"), site.origin)
    assert no_browser_left(str(short)) == []


def test_redis_workers_render_each_with_its_own_browser(
    tmp_path: Path, short_tmps: list[Path], redis_server: RedisServer
) -> None:
    # Item pages wait (a while at most) until two are asked for at once: with one page in
    # flight per worker (--concurrency 1), that is both workers rendering.
    lock = threading.Lock()
    asked: set[str] = set()
    both = threading.Event()
    site, _seen = make_shop()
    serve = site.fallback
    assert serve is not None

    def gate(request: Request) -> Reply:
        if request.path.startswith("/item/") and not both.is_set():
            with lock:
                asked.add(request.path)
                if len(asked) >= 2:
                    both.set()
            both.wait(60)
        return serve(request)

    site.fallback = gate
    procs = []
    with site:
        try:
            for n, short in enumerate(short_tmps):
                cmd = [sys.executable, "-m", "shoal", "crawl", site.url("/"),
                       "-o", str(tmp_path / f"part-{n}.jsonl"), "--redis", redis_server.url,
                       "--crawl-id", "render", "--render", "always", "--render-timeout", "60",
                       "--concurrency", "1", "--extract", "name=h1::text",
                       "--no-progress"]  # fmt: skip
                env = isolated_env(short, tmp_path / f"home-{n}")
                procs.append(
                    subprocess.Popen(
                        cmd,
                        cwd=tmp_path,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            outs = [p.communicate(timeout=300) for p in procs]
        finally:
            both.set()
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate(timeout=10)
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    parts = [records(tmp_path / f"part-{n}.jsonl") for n in range(2)]
    check_shop(parts[0] + parts[1], site.origin)
    assert both.is_set()
    assert all(parts), ([len(p) for p in parts], outs)  # both workers rendered pages
    for short in short_tmps:
        assert no_browser_left(str(short)) == []


BIG = 300_000
BIG_PAGE = (
    "<!doctype html><html><head><title>big</title></head><body>"
    '<h1>big</h1><a href="/after">after</a><div id="all"></div><script>'
    "const all = document.getElementById('all');"
    f"for (let i = 0; i < {BIG}; i++) {{"
    "  const p = document.createElement('p'); p.textContent = i; all.appendChild(p); }"
    "</script></body></html>"
)


def test_a_300000_element_dom_is_recorded_once_and_bounded(
    tmp_path: Path, short_tmps: list[Path]
) -> None:
    short = short_tmps[0]
    env = isolated_env(short, tmp_path / "home")
    max_bytes = 1_000_000  # the DOM is ~4 MB: cut at this
    site = Site(
        {
            "/big": BIG_PAGE,
            "/after": "<!doctype html><html><body><h1>after</h1></body></html>",
            "/robots.txt": Reply(404, ""),
        }
    )
    with site:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "crawl", site.url("/big"), "-o", "pages.jsonl",
             "--render", "always", "--render-timeout", "60", "--max-bytes", str(max_bytes),
             "--extract", "h=h1::text", "--no-state", "--no-progress"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            # wait4: this process's own peak RSS (the browser is measured apart, by shoal).
            ended = threading.Event()
            killer = threading.Timer(240, lambda: None if ended.is_set() else proc.kill())
            killer.start()
            _pid, status, usage = os.wait4(proc.pid, 0)
            ended.set()
            killer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait(10)
            err = proc.stderr.read() if proc.stderr else ""
            if proc.stderr is not None:
                proc.stderr.close()
    assert proc.returncode == 0, err
    got = records(tmp_path / "pages.jsonl")
    by = {str(r["url"]).removeprefix(site.origin): r for r in got}
    assert len(got) == len(by)  # each once
    big = by["/big"]
    # An honest outcome: rendered (cut at --max-bytes), or its deadline.
    if big["error"] is None:
        assert big["rendered"] is True and big["h"] == "big", big
        assert big["bytes"] == max_bytes, big
        assert str(big["truncated"]).startswith("the body was cut at --max-bytes"), big
        assert by["/after"]["h"] == "after"  # the crawl went on from the rendered DOM
    else:
        assert big["error"] == "render_timeout", big
    peak_mb = usage.ru_maxrss / 1024
    assert peak_mb < 400, peak_mb  # ~230 MB for a 10-element page here, ~240 MB for this one
    assert no_browser_left(str(short)) == []
