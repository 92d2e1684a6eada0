"""A rendered crawl's WARC replays in pywb: the page as the server sent it, its script
(captured once, then revisits that pywb resolves to that capture) and the JSON its script
fetched, each from the archive. pywb lives in a venv of its own (bench/side_venv.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rendering import APP_JS, SHELL, get, pywb_bin, replayed, shoal, shop
from sites import Site

pytestmark = pytest.mark.usefixtures("browser")


def test_pywb_replays_a_rendered_page_and_what_it_loaded(tmp_path: Path) -> None:
    bin_ = pywb_bin()
    out = tmp_path / "shop.warc.gz"
    with Site() as site:
        site.fallback = shop
        done = shoal("crawl", site.url("/"), "-o", str(out), "--render", "always",
                     "--render-wait", "0.1", "--max-pages", "4", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        url = site.url
    with replayed(bin_, out, tmp_path) as base:
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
