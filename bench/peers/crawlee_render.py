"""Crawlee for Python peer (#18): PlaywrightCrawler on the system Chromium.

Every page is loaded in headless Chromium (``--executable-path``), the handler waits for
the page's ``h1`` (the app shell's data arrives after the load event), writes
``{url, name}`` and enqueues the page's same-host links. Concurrency is pinned
(min = desired = max = --concurrency) so Crawlee's autoscaling does not change it on a
loaded machine. Storage goes to the working directory (./storage), purged at start.

    python bench/peers/crawlee_render.py http://127.0.0.1:8000/ -o out.jsonl --concurrency 4

Runs under bench/.venv-crawlee (crawlee[playwright]; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from crawlee import ConcurrencySettings
from crawlee.crawlers import PlaywrightCrawler, PlaywrightCrawlingContext


async def crawl(url: str, output: str, concurrency: int, browser: str, timeout: float) -> None:
    crawler = PlaywrightCrawler(
        headless=True,
        browser_type="chromium",
        # Running as root (as here) Chromium needs --no-sandbox: chromium_sandbox=False.
        browser_launch_options={"executable_path": browser, "chromium_sandbox": False},
        concurrency_settings=ConcurrencySettings(
            min_concurrency=concurrency,
            desired_concurrency=concurrency,
            max_concurrency=concurrency,
        ),
        max_requests_per_crawl=100_000,
    )
    out = open(output, "w")  # noqa: SIM115 - closed below, after the crawl

    @crawler.router.default_handler
    async def handler(context: PlaywrightCrawlingContext) -> None:
        page = context.page
        name = None
        try:
            await page.wait_for_selector("h1", timeout=timeout * 1000)
            name = await page.text_content("h1")
        except Exception:
            pass
        out.write(json.dumps({"url": context.request.url, "name": name}) + "\n")
        await context.enqueue_links()

    try:
        await crawler.run([url])
    finally:
        out.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--browser", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(crawl(args.url, args.output, args.concurrency, args.browser, args.timeout))


if __name__ == "__main__":
    main()
