"""A rendered crawl's WARC replays in pywb: the page as the server sent it, its script
(captured once, then revisits that pywb resolves to that capture) and the JSON its script
fetched, each from the archive. pywb lives in a venv of its own (bench/side_venv.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

from sites import Site
from test_recrawl_pywb import get, pywb_bin
from test_render_warc import APP_JS, SHELL, _browser_or_skip, shoal, shop

__all__ = ["_browser_or_skip"]  # the fixture that skips (or fails under CI) without a browser


def test_pywb_replays_a_rendered_page_and_what_it_loaded(tmp_path: Path) -> None:
    bin_ = pywb_bin()
    out = tmp_path / "shop.warc.gz"
    with Site() as site:
        site.fallback = shop
        done = shoal("crawl", site.url("/"), "-o", str(out), "--render", "always",
                     "--render-wait", "0.1", "--max-pages", "4", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        url = site.url
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
        status, cdx = get(f"{base}/cdx?url={url('/app.js')}&output=json")
        assert status == 200, cdx
        rows = [json.loads(line) for line in cdx.decode().splitlines()]
        assert [r["mime"] for r in rows].count("warc/revisit") == len(rows) - 1 >= 1
        revisit = next(r for r in rows if r["mime"] == "warc/revisit")
        # The revisit replays with the body of the capture it names.
        status, body = get(f"{base}/{revisit['timestamp']}id_/{url('/app.js')}")
        assert status == 200 and body.decode() == APP_JS
        status, body = get(f"{base}/id_/{url('/')}")
        assert status == 200 and body.decode() == SHELL
        status, body = get(f"{base}/id_/{url('/api/list/1')}")
        assert status == 200 and json.loads(body)["items"] == [1, 2, 3]
    finally:
        proc.kill()
        proc.wait(30)
