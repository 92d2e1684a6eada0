"""scrapy-playwright peer (#18): a Scrapy spider whose every request goes through Chromium.

The system Chromium (PLAYWRIGHT_LAUNCH_OPTIONS executable_path), the asyncio reactor, one
browser context, CONCURRENT_REQUESTS = per domain = PLAYWRIGHT_MAX_PAGES_PER_CONTEXT =
--concurrency, no delay, no AutoThrottle, robots.txt obeyed. Each page waits for its
``h1`` (PageMethod wait_for_selector: the app shell's data arrives after the load event);
items ``{url, name}`` go to a JSON Lines feed; every same-host link is followed.

    python bench/peers/scrapy_playwright_render.py http://127.0.0.1:8000/ -o out.jsonl

Runs under bench/.venv-scrapypw (scrapy-playwright; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from scrapy_playwright.page import PageMethod


def meta() -> dict[str, Any]:
    return {"playwright": True, "playwright_page_methods": [PageMethod("wait_for_selector", "h1")]}


class RenderSpider(scrapy.Spider):
    name = "render"

    def __init__(self, start_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_url = start_url
        self.allowed_domains = [urlsplit(start_url).hostname or ""]

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.start_url, meta=meta())

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        yield {"url": response.url, "name": response.css("h1::text").get()}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse, meta=meta())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--browser", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    process = CrawlerProcess(
        settings={
            "DOWNLOAD_HANDLERS": {
                "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
                "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
            },
            "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
            "PLAYWRIGHT_BROWSER_TYPE": "chromium",
            "PLAYWRIGHT_LAUNCH_OPTIONS": {"headless": True, "executable_path": args.browser},
            "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": args.concurrency,
            "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": args.timeout * 1000,
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "ROBOTSTXT_OBEY": True,
            "LOG_LEVEL": "INFO",
            "FEEDS": {args.output: {"format": "jsonlines", "overwrite": True}},
        }
    )
    process.crawl(RenderSpider, start_url=args.url)
    process.start()


if __name__ == "__main__":
    main()
