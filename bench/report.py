"""How long ``shoal report`` takes, and how big its HTML is, for synthetic crawls.

Writes N synthetic records (30 hosts, one in ten a 404, 5 ms apart) as JSONL, then
times ``build_report`` on them, best of ``--repeat`` runs. No peers: no other crawler
writes this report.

    .venv/bin/python bench/report.py [--sizes 10000,100000,1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shoal.report import build_report


def synthetic(path: Path, n: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with path.open("w") as f:
        for i in range(n):
            status = 404 if i % 10 == 3 else 200
            url = f"https://h{i % 30}.example/p/{i}"
            record = {
                "url": url,
                "final_url": url,
                "status": status,
                "depth": i % 7,
                "referrer": f"https://h{i % 30}.example/p/{i // 2}",
                "content_type": "text/html",
                "bytes": 1000 + i % 500,
                "elapsed": 0.005 + (i % 100) / 1000,
                "fetched_at": (start + timedelta(milliseconds=i * 5)).isoformat(
                    timespec="milliseconds"
                ),
                "title": f"page {i}",
                "error": "http_404" if status == 404 else None,
                "error_detail": None,
            }
            f.write(json.dumps(record) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| records | build (best) | HTML | broken.csv |")
    print("| ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            out = Path(tmp) / f"{n}.jsonl"
            synthetic(out, n)
            best = float("inf")
            for _ in range(args.repeat):
                began = time.perf_counter()
                result = build_report(out, Path(tmp) / f"{n}.html", overwrite=True)
                best = min(best, time.perf_counter() - began)
            size = result.csv["broken"].stat().st_size
            print(
                f"| {n:,} | {best:.2f} s | {result.html_bytes / 1024:.0f} KB "
                f"| {size / 1024:.0f} KB |"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
