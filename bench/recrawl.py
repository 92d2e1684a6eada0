#!/usr/bin/env python3
"""Recrawl benchmark (#19): a site crawled once, then again unchanged and with 10 % of its
pages changed, by ``shoal crawl --recrawl`` and ``wget -r -N``, side by side.

The site (standard library, threaded) has ``--pages`` pages of ~5 KB, each linking to a
few others, all reachable from ``/``; every page sends an ETag and a Last-Modified and
honours If-None-Match and If-Modified-Since. The server counts requests and the body
bytes it sends. "Reported changed" is, for shoal, the URLs whose record says ``changed``;
for wget, the pages it downloaded again (a 200 with a body in that run). Both are
compared with the pages the benchmark changed.

    python bench/recrawl.py --pages 3000 --markdown /tmp/recrawl.md

``wget -N`` is run as is and with ``-E``. Scrapy (HTTPCACHE_ENABLED with the RFC 2616
policy) is not in this run yet.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Site:
    def __init__(self, pages: int, seed: int) -> None:
        rng = random.Random(seed)
        self.pages = pages
        self.version = [0] * pages
        self.links = [
            sorted({(2 * i + 1) % pages, (2 * i + 2) % pages, rng.randrange(pages)})
            for i in range(pages)
        ]
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        self.full: set[str] = set()  # paths answered 200 with a body since reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = self.bytes = 0
            self.full = set()

    def change(self, fraction: float, seed: int) -> set[str]:
        rng = random.Random(seed)
        changed = rng.sample(range(self.pages), int(self.pages * fraction))
        for i in changed:
            self.version[i] += 1
        return {f"/p/{i}" for i in changed}

    def page(self, i: int) -> tuple[bytes, str, str]:
        v = self.version[i]
        links = "".join(f'<a href="/p/{j}">p{j}</a> ' for j in self.links[i])
        body = f"<html><head><title>p{i} v{v}</title></head><body>{links}"
        body += f"<p>{'lorem ipsum ' * 400}</p><p>version {v}</p></body></html>"
        modified = formatdate(1_700_000_000 + 86400 * v, usegmt=True)
        return body.encode(), f'"{i}-{v}"', modified


def handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, head: bool) -> None:
            path = self.path.split("#")[0]
            with site.lock:
                site.requests += 1
            if path == "/robots.txt":
                return self._send(200, b"User-agent: *\nAllow: /\n", {}, head, path)
            if path == "/":
                links = "".join(f'<a href="/p/{j}">p{j}</a> ' for j in range(min(site.pages, 3)))
                return self._send(
                    200, f"<html><body>{links}</body></html>".encode(), {}, head, path
                )
            try:
                i = int(path.removeprefix("/p/"))
                body, etag, modified = site.page(i)
            except (ValueError, IndexError):
                return self._send(404, b"not found", {}, head, path)
            headers = {"ETag": etag, "Last-Modified": modified}
            inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
            if inm is not None:
                if inm.removeprefix("W/") == etag:
                    return self._send(304, b"", headers, True, path)
            elif ims is not None:
                try:
                    if parsedate_to_datetime(ims) >= parsedate_to_datetime(modified):
                        return self._send(304, b"", headers, True, path)
                except (TypeError, ValueError):
                    pass
            self._send(200, body, headers, head, path)

        def _send(
            self, status: int, body: bytes, headers: dict[str, str], head: bool, path: str
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if path != "/robots.txt" else "text/plain")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if status != 304 else 0))
            self.end_headers()
            if not head and status != 304:
                self.wfile.write(body)
                with site.lock:
                    site.bytes += len(body)
                    if status == 200 and path.startswith("/p/"):
                        site.full.add(path)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def shoal_run(url: str, out: Path, recrawl: bool) -> tuple[float, set[str]]:
    cmd = [sys.executable, "-m", "shoal", "crawl", url, "-o", str(out), "-q"]
    cmd += ["--concurrency", "8", "--per-host", "8", "--max-pages", "100000"]
    if recrawl:
        cmd.append("--recrawl")
    before = out.read_text().count("\n") if out.exists() else 0
    started = time.perf_counter()
    subprocess.run(cmd, check=True, timeout=1800)
    wall = time.perf_counter() - started
    lines = out.read_text().splitlines()[before:]
    changed = set()
    for line in lines:
        r = json.loads(line)
        if r.get("change") == "changed":
            changed.add("/" + r["url"].split("/", 3)[3])
    return wall, changed


def wget_run(url: str, where: Path, *extra: str) -> float:
    # -E: pages saved as .html, so wget can read a 304 page's local copy for its links
    # (without it, a page that did not change hides the pages it links to).
    cmd = ["wget", "-r", "-N", *extra, "-l", "inf", "-q", "-P", str(where), url]
    started = time.perf_counter()
    subprocess.run(cmd, check=False, timeout=1800)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    site = Site(args.pages, args.seed)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(site))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    work = Path(tempfile.mkdtemp(prefix="shoal-recrawl-"))
    rows = []
    try:
        tools = ["shoal"] + (["wget -N", "wget -N -E"] if shutil.which("wget") else [])
        for tool in tools:
            site.version = [0] * args.pages
            name = tool.replace(" ", "")
            out, where = work / f"{name}.jsonl", work / f"{name}-mirror"
            for phase, fraction in (
                ("first crawl", 0.0),
                ("unchanged", 0.0),
                ("10 % changed", 0.1),
            ):
                truth = site.change(fraction, args.seed + 7) if fraction else set()
                site.reset()
                if tool == "shoal":
                    wall, reported = shoal_run(url, out, recrawl=phase != "first crawl")
                else:
                    wall = wget_run(url, where, *tool.split()[2:])
                    reported = set(site.full) if phase != "first crawl" else set()
                if phase == "first crawl":
                    correct = "-"
                else:
                    missed, extra = len(truth - reported), len(reported - truth)
                    correct = (
                        "exact" if not missed and not extra else f"{missed} missed, {extra} extra"
                    )
                rows.append((tool, phase, site.requests, site.bytes, wall, correct))
                print(rows[-1], file=sys.stderr)
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    first = {tool: b for tool, phase, _, b, _, _ in rows if phase == "first crawl"}
    table = [
        f"Recrawl of a {args.pages}-page site (~5 KB pages, ETag and Last-Modified), "
        "127.0.0.1; body bytes counted at the server.",
        "",
        "| tool | run | requests | body bytes | share of run 1 | wall (s) | reported changed |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for tool, phase, requests, nbytes, wall, correct in rows:
        share = f"{100 * nbytes / first[tool]:.2f} %" if first[tool] else "-"
        table.append(
            f"| {tool} | {phase} | {requests} | {nbytes:,} | {share} | {wall:.1f} | {correct} |"
        )
    text = "\n".join(table)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
