"""Ceiling peer: fetches a list of URLs known in advance, with nothing else to do.

Not a crawler. It is handed the benchmark site's reachable paths (from the oracle), so it
never waits to discover a URL, parses nothing and dedupes nothing: N threads, each with
one keep-alive ``http.client`` connection, take paths from a shared iterator and read the
responses. Whatever fraction of the latency limit (concurrency / latency) this reaches is
what the server, the loopback network and a thread-per-connection Python client allow on
this machine; a crawler also pays for discovery (it cannot fetch a page before it has
fetched a page linking to it), so it can only come in below this.

    python bench/peers/known_urls.py http://127.0.0.1:8000/ --paths paths.txt \
        --concurrency 16 -o out.jsonl

Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

TIMEOUT_S = 30


def fetch_all(host: str, port: int, paths: Iterator[str], lock: threading.Lock) -> list[str]:
    lines = []
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        while True:
            with lock:
                path = next(paths, None)
            if path is None:
                return lines
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            lines.append(json.dumps({"path": path, "status": response.status, "bytes": len(body)}))
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--paths", required=True, help="file with one path per line")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    parts = urlsplit(args.url)
    with open(args.paths) as f:
        paths = iter([line.strip() for line in f if line.strip()])
    lock = threading.Lock()
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            lines = fetch_all(parts.hostname or "127.0.0.1", parts.port or 80, paths, lock)
        except BaseException as exc:  # reported below: a failed run must not look complete
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(lines)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(args.output, "w") as out:
        for lines in results:
            out.writelines(line + "\n" for line in lines)
    if errors:
        sys.exit(f"known_urls: {len(errors)} worker(s) failed, first: {errors[0]!r}")


if __name__ == "__main__":
    main()
