"""A recrawl's WARC replays in pywb (the archive community's replay tool): a page revisited
unchanged (a 304, or the same body again) replays at the recrawl's date with the body of
the original capture. pywb lives in a venv of its own (bench/.venv-pywb, made on first use
by bench/side_venv.py): its dependencies are not shoal's."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from rendering import get, pywb_bin, replayed
from sites import html
from test_recrawl import Doc, VersionedSite, crawl


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
    with replayed(bin_, out, tmp_path) as base:
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
