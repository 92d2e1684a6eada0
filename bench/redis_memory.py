"""Redis memory per seen URL and per queued URL for a shared crawl (RedisCrawlState).

Starts its own redis-server (from PATH, on a unix socket in a temporary folder, no
persistence) so that nothing else shares its memory, then for each scale N:

- seen: N URLs marked seen (``claim_many``); bytes per URL from MEMORY USAGE of the seen
  buckets and from the growth of INFO used_memory. Side by side, in the same server, the
  same N as the peers keep them: a plain SET of the 64-bit fingerprints (what a SET of
  integers costs past the intset limit) and scrapy-redis's dupefilter (a SET of 40-hex
  SHA1 strings).
- queued: N URLs queued over 100 hosts (``submit``, with a referrer each, as links are);
  bytes per URL from MEMORY USAGE of the host queues and from used_memory.

    .venv/bin/python bench/redis_memory.py [--scales 100000,1000000] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from shoal.state import Candidate, RedisCrawlState


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", "0", "--unixsocket", str(sock)),
            *("--dir", str(folder), "--save", "", "--appendonly", "no"),
            *("--logfile", str(folder / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"unix://{sock}"
    for _ in range(500):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("redis-server did not start")


def used(raw: redis.Redis) -> int:
    return int(raw.info("memory")["used_memory"])


def usage(raw: redis.Redis, pattern: str) -> tuple[int, int]:
    """(bytes by MEMORY USAGE, number of keys) of the keys matching ``pattern``."""
    total = keys = 0
    for key in raw.scan_iter(match=pattern, count=1000):
        total += raw.memory_usage(key, samples=0) or 0
        keys += 1
    return total, keys


def url(i: int) -> str:
    return f"https://site{i % 100}.example/section/{i // 100}/page-{i}.html"


def measure(url_: str, n: int) -> dict[str, float]:
    raw = redis.Redis.from_url(url_)
    raw.flushall()
    out: dict[str, float] = {}

    base = used(raw)
    state = RedisCrawlState.open(url_, "seen", {}, robots=False, allow_weak_durability=True)
    t0 = time.perf_counter()
    for start in range(0, n, 20_000):
        state.claim_many([url(i) for i in range(start, min(n, start + 20_000))])
    out["seen_s"] = time.perf_counter() - t0
    seen_bytes, buckets = usage(raw, "shoal:{seen}:s:*")
    out["seen_usage"] = seen_bytes / n
    out["seen_used"] = (used(raw) - base) / n
    out["buckets"] = buckets
    encodings = {raw.object("encoding", k) for k in raw.scan_iter(match="shoal:{seen}:s:*")}
    out["all_intset"] = float(encodings == {b"intset"})
    state.close()

    base = used(raw)
    pipe = raw.pipeline(transaction=False)
    for i in range(n):
        fp = int.from_bytes(hashlib.blake2b(url(i).encode(), digest_size=8).digest(), "little")
        pipe.sadd(f"plainset:{i % 16}", fp - (1 << 64) if fp >= 1 << 63 else fp)
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()
    out["plain_set"] = (used(raw) - base) / n

    base = used(raw)
    for i in range(n):
        pipe.sadd("dupefilter", hashlib.sha1(url(i).encode()).hexdigest())
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()
    out["scrapy_redis"] = (used(raw) - base) / n

    base = used(raw)
    state = RedisCrawlState.open(url_, "queued", {}, robots=False, allow_weak_durability=True)
    t0 = time.perf_counter()
    batch = []
    for i in range(n):
        u = url(i)
        batch.append(Candidate(u, 2, url(i // 50)))
        if len(batch) >= 5000:
            state.submit(batch)
            batch = []
    state.submit(batch)
    out["queue_s"] = time.perf_counter() - t0
    queue_bytes, _ = usage(raw, "shoal:{queued}:q:*")
    out["queued_usage"] = queue_bytes / n
    out["queued_used"] = (used(raw) - base) / n  # queue + its own seen set
    out["entry_len"] = sum(len(url(i)) + len(url(i // 50)) for i in range(0, n, 997)) / len(
        range(0, n, 997)
    )
    state.close()
    raw.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="100000,1000000")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH")
    version = (
        subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True)
        .stdout.split()[2]
        .removeprefix("v=")
    )
    folder = Path(tempfile.mkdtemp(prefix="shoal-bench-redis-"))
    proc, url_ = start_server(folder)
    rows = []
    try:
        for n in (int(x) for x in args.scales.split(",")):
            r = measure(url_, n)
            rows.append(
                f"| {n:,} | {r['seen_usage']:.1f} | {r['seen_used']:.1f} | {int(r['buckets']):,}"
                f" | {'yes' if r['all_intset'] else 'NO'} | {r['plain_set']:.1f}"
                f" | {r['scrapy_redis']:.1f} | {r['queued_usage']:.1f} | {r['queued_used']:.1f}"
                f" | {r['entry_len']:.0f} | {n / r['seen_s']:,.0f} | {n / r['queue_s']:,.0f} |"
            )
            print(rows[-1], flush=True)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    table = "\n".join(
        [
            f"Redis {version}, Python {platform.python_version()}, {platform.machine()}.",
            "Bytes per URL; seen = RedisCrawlState's seen set; plain SET = the fingerprints in",
            "a SET past the intset limit; scrapy-redis = its dupefilter (SHA1 hex strings);",
            "queued = host queues (usage) and used_memory growth incl. the seen set.",
            "",
            "| URLs | seen (usage) | seen (used_memory) | buckets | all intsets | plain SET |"
            " scrapy-redis | queued (usage) | queued (used_memory) | url+referrer chars |"
            " seen URLs/s | queued URLs/s |",
            "|---:|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
