"""A recrawl's WARC replays in pywb (the archive community's replay tool): a page revisited
unchanged (a 304, or the same body again) replays at the recrawl's date with the body of
the original capture. pywb lives in a venv of its own (bench/.venv-pywb, made on first use
by bench/side_venv.py): its dependencies are not shoal's."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sites import html
from test_recrawl import Doc, VersionedSite, crawl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def pywb_bin() -> Path:
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


def test_pywb_replays_a_revisit_with_the_original_body(tmp_path: Path) -> None:
    bin_ = pywb_bin()
    docs = {
        "/": Doc(html("home", "/b", "/d"), etag='"h"'),
        "/b": Doc(html("b, the original"), etag='"b1"'),  # revisited: 304
        "/d": Doc(html("d, the original")),  # revisited: the same body again
    }
    out = tmp_path / "crawl.warc.gz"
    with VersionedSite(docs) as site:
        crawl(site, out)
        # Two captures within one second would share pywb's 14-digit timestamp: wait (at
        # most a second) for the clock to reach the next one.
        first = int(time.time())
        while int(time.time()) == first:
            threading.Event().wait(0.02)
        crawl(site, out, recrawl=True)
        urls = {p: site.url(p) for p in ("/b", "/d")}
    coll = tmp_path / "replay"
    coll.mkdir()
    subprocess.run([bin_ / "wb-manager", "init", "c"], cwd=coll, check=True, capture_output=True)
    subprocess.run(
        [bin_ / "wb-manager", "add", "c", str(out)], cwd=coll, check=True, capture_output=True
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
    base = f"http://127.0.0.1:{port}/c"
    try:
        for _ in range(300):  # bounded: pywb up within ~30 s
            try:
                get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                threading.Event().wait(0.1)
        for path, url in urls.items():
            status, cdx = get(f"{base}/cdx?url={url}&output=json")
            assert status == 200, cdx
            rows = [json.loads(line) for line in cdx.decode().splitlines()]
            revisit = [r for r in rows if r.get("mime") == "warc/revisit"]
            original = [r for r in rows if r.get("mime") == "text/html"]
            assert len(revisit) == 1 and len(original) == 1, rows
            assert revisit[0]["timestamp"] > original[0]["timestamp"]
            status, body = get(f"{base}/{revisit[0]['timestamp']}id_/{url}")
            assert status == 200, (path, body[:200])
            assert body.decode() == docs[path].body, path
    finally:
        proc.kill()
        proc.wait(30)
