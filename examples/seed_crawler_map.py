"""The seed's crawler (worker threads fetch pages, their links feed the next round), with shoal.map.

Level by level: every URL of the frontier is fetched on worker threads; the links of the
pages fetched make the next frontier. shoal.map reads each frontier lazily, keeps at most
``buffer`` pages in memory, and a failed fetch is logged and skipped (``errors="log"``).
Standard library only besides shoal; for a real crawl use ``shoal crawl``.

    python examples/seed_crawler_map.py https://example.com/ [--depth 2] [--workers 16]
"""

from __future__ import annotations

import argparse
import logging
import urllib.parse
import urllib.request
from html.parser import HTMLParser

import shoal

MAX_BYTES = 5_000_000  # a page bigger than this is cut off: never read without a limit


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def fetch(url: str) -> tuple[str, int, list[str]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read(MAX_BYTES).decode("utf-8", "replace")
        status = response.status
    parser = Links()
    parser.feed(body)
    links = [urllib.parse.urljoin(url, href).split("#")[0] for href in parser.hrefs]
    return url, status, links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("start", nargs="+")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(message)s")

    hosts = {urllib.parse.urlsplit(url).netloc for url in args.start}
    seen, frontier = set(args.start), list(args.start)
    for _ in range(args.depth + 1):
        next_frontier = []
        for url, status, links in shoal.map(
            fetch, frontier, workers=args.workers, ordered=False, errors="log"
        ):
            print(status, url, flush=True)
            for link in links:  # same hosts only, each URL once
                if urllib.parse.urlsplit(link).netloc in hosts and link not in seen:
                    seen.add(link)
                    next_frontier.append(link)
        frontier = next_frontier


if __name__ == "__main__":
    main()
