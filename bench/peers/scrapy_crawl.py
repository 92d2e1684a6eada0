"""Scrapy peer: a plain Spider that follows every link on the start URL's host.

Settings are the fair-comparison ones: no download delay, no AutoThrottle, robots.txt obeyed,
and both global and per-domain concurrency set to --concurrency.  Items ({url, status, title})
go to a JSON Lines feed.

    python bench/peers/scrapy_crawl.py http://127.0.0.1:8000/ --concurrency 16 -o out.jsonl

--http-cache DIR turns on Scrapy's HTTP cache in DIR with the RFC 2616 policy (conditional
requests for stale entries, a 304 answered from the cache) and adds ``cached`` to each item:
whether the response came from the cache (a revalidated or still fresh entry) rather than
the network. bench/recrawl.py runs it several times on one DIR.

Runs under bench/.venv-peers (needs scrapy).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response, TextResponse
from scrapy.linkextractors import LinkExtractor


class SiteSpider(scrapy.Spider):
    name = "site"

    def __init__(self, start_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = [start_url]
        # The OffsiteMiddleware matches hostnames, so the port must not be part of the domain.
        self.allowed_domains = [urlsplit(start_url).hostname or ""]
        self.link_extractor = LinkExtractor()

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        if not isinstance(response, TextResponse):  # no title or links in a binary body
            yield {
                "url": response.url,
                "status": response.status,
                "title": None,
                "cached": "cached" in response.flags,
            }
            return
        yield {
            "url": response.url,
            "status": response.status,
            "title": response.css("title::text").get(),
            "cached": "cached" in response.flags,
        }
        # Scrapy's dupefilter fingerprints canonicalised URLs (fragments dropped), so no
        # dedupe is needed here.  Start requests bypass it (dont_filter), which is why Scrapy
        # fetches "/" twice: that duplicate is Scrapy's stock behaviour, kept on purpose.
        for link in self.link_extractor.extract_links(response):
            yield scrapy.Request(link.url, callback=self.parse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("-o", "--output", required=True, help="JSON Lines output file")
    parser.add_argument("--http-cache", metavar="DIR", help="HTTP cache (RFC 2616 policy) here")
    args = parser.parse_args()
    fields = ["url", "status", "title"]
    cache: dict[str, object] = {}
    if args.http_cache:
        fields.append("cached")
        cache = {
            "HTTPCACHE_ENABLED": True,
            "HTTPCACHE_POLICY": "scrapy.extensions.httpcache.RFC2616Policy",
            "HTTPCACHE_DIR": os.path.abspath(args.http_cache),
        }

    process = CrawlerProcess(
        settings={
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
            "DOWNLOAD_DELAY": 0,
            "ROBOTSTXT_OBEY": True,
            "AUTOTHROTTLE_ENABLED": False,
            # Debug consoles: not part of crawling, and RemoteControl (Scrapy >= 2.19) would
            # open a port and write job files under the user's home on every run.
            "TELNETCONSOLE_ENABLED": False,
            "REMOTE_CONTROL_ENABLED": False,
            "LOG_LEVEL": "WARNING",
            "FEEDS": {
                os.path.abspath(args.output): {
                    "format": "jsonlines",
                    "overwrite": True,
                    "fields": fields,
                }
            },
            **cache,
        }
    )
    process.crawl(SiteSpider, start_url=args.url)
    process.start()


if __name__ == "__main__":
    main()
