"""Baseline peer: the queue + threads + requests crawler most people would write by hand.

N worker threads take URLs from a queue.Queue, fetch them with one requests.Session per thread
(so each thread keeps its own keep-alive connection), extract links with html.parser, and
dedupe with a set guarded by a lock.  It stays on the start URL's host and ignores robots.txt
(every page of the benchmark site is allowed anyway).  One JSON line per fetched URL.

    python bench/peers/plain_threads.py http://127.0.0.1:8000/ --concurrency 16 -o out.jsonl

Runs under bench/.venv-peers (needs requests).
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
from html.parser import HTMLParser
from typing import IO
from urllib.parse import urldefrag, urljoin, urlsplit

import requests

TIMEOUT_S = 30


class PageParser(HTMLParser):
    """Collects <a href> values and the <title> text."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.title_parts: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)
        elif tag == "title":
            self.in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)


class Crawler:
    def __init__(self, start_url: str, concurrency: int, out: IO[str]) -> None:
        self.start_url = urldefrag(start_url).url
        self.host = urlsplit(start_url).netloc
        self.concurrency = concurrency
        self.out = out
        # None is the stop signal for a worker.
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: set[str] = set()
        self.seen_lock = threading.Lock()
        self.out_lock = threading.Lock()
        self.local = threading.local()

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        return session

    def enqueue(self, url: str) -> None:
        url = urldefrag(url).url  # fragments never reach the server, so they are duplicates
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.netloc != self.host:
            return
        with self.seen_lock:
            if url in self.seen:
                return
            self.seen.add(url)
        self.queue.put(url)

    def fetch(self, url: str) -> dict[str, object]:
        response = self.session().get(url, timeout=TIMEOUT_S)
        title = None
        if "html" in response.headers.get("content-type", ""):
            parser = PageParser()
            parser.feed(response.text)
            parser.close()
            for href in parser.hrefs:
                self.enqueue(urljoin(response.url, href))
            title = "".join(parser.title_parts).strip() or None
        return {"url": url, "status": response.status_code, "title": title}

    def write(self, record: dict[str, object]) -> None:
        line = json.dumps(record) + "\n"
        with self.out_lock:
            self.out.write(line)

    def worker(self) -> None:
        while (url := self.queue.get()) is not None:
            try:
                self.write(self.fetch(url))
            except requests.RequestException as exc:
                self.write({"url": url, "status": None, "error": repr(exc)})
            finally:
                # Done only after fetch() enqueued the page's links, so join() cannot return
                # while work is still being discovered; `finally` so a bug cannot hang join().
                self.queue.task_done()

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        self.enqueue(self.start_url)
        self.queue.join()
        for _ in threads:
            self.queue.put(None)
        for thread in threads:
            thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("-o", "--output", required=True, help="JSON Lines output file")
    args = parser.parse_args()
    with open(args.output, "w", encoding="utf-8") as out:
        Crawler(args.url, args.concurrency, out).run()


if __name__ == "__main__":
    main()
