"""The report in a real browser: headless Chromium (Debian's package) driven by Playwright.

It must render with no console error and no network request (everything is inline), draw
its four charts, and show the numbers and broken links of the crawl it came from.
Under CI a missing browser is a failure; elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rendering import CHROMIUM, need_browser
from test_report import broken_site, expected_broken, shoal


def _browser_or_skip() -> Any:
    need_browser("the browser test")
    from playwright.sync_api import sync_playwright

    return sync_playwright


def test_report_renders_offline_with_the_crawls_numbers(tmp_path: Path) -> None:
    sync_playwright = _browser_or_skip()
    out = tmp_path / "pages.jsonl"
    report = tmp_path / "report.html"
    with broken_site() as site:
        done = shoal("crawl", site.url("/"), "-o", str(out), "--retries", "0",
                     "--report", str(report))  # fmt: skip
        assert done.returncode == 0, done.stderr
        want_broken = expected_broken(site)
    records = [json.loads(line) for line in out.read_text().splitlines()]

    requests: list[str] = []
    problems: list[str] = []
    url = report.resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url, wait_until="load")
            charts = page.evaluate("window.shoalReport && window.shoalReport.charts")
            drawn = page.evaluate(
                "Array.from(document.querySelectorAll('canvas'))"
                ".map(c => c.width > 0 && c.height > 0)"
            )
            totals = {
                key: page.inner_text(f"#t-{key}")
                for key in ("pages", "ok", "redirects", "failed", "robots")
            }
            rows = page.eval_on_selector_all(
                "#broken-table tbody tr",
                "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))",
            )
        finally:
            browser.close()

    assert problems == []
    # The only request is the page itself: no script, style, font or map fetched.
    assert requests == [url]
    assert charts == 4 and drawn == [True] * 4
    assert totals == {
        "pages": str(len(records)),
        "ok": str(sum(1 for r in records if r["status"] == 200 and not r["error"])),
        "redirects": str(sum(1 for r in records if r["final_url"] != r["url"])),
        "failed": str(sum(1 for r in records if r["error"])),
        "robots": "1",
    }
    shown = {(u, s, e.split(":")[0], ref) for u, s, e, ref, _depth in rows}
    assert shown == want_broken
