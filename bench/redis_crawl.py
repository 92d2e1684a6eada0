#!/usr/bin/env python3
"""Shared-crawl throughput: pages/s of one crawl run by 1, 2 and 4 worker processes through
one Redis, on this machine, with the CPU each part used.

The site is bench/site_server.py with 0 ms latency, listening on ``--hosts`` loopback
addresses (127.0.0.2, 127.0.0.3, ...; nothing beyond this machine), each a host of its own
(a copy of the site whose absolute links stay on it), so the crawl is CPU-bound and
per-host politeness is not the limit. The site shares the cores with what it measures, so
by default it runs on uvloop, from bench/.venv-site (created on first use; never a
dependency of shoal); ``--site-loop asyncio`` runs it on the standard library alone.
Each run gets a fresh redis-server (unix socket, appendonly yes) with each
``--appendfsync`` policy asked for: ``always`` (survives a machine crash) and ``no``
(survives a kill of Redis: it writes the AOF before it answers, the OS syncs it later); the
README says which to choose. CPU: the workers' from os.wait4, Redis's and the site's from
/proc/<pid>/stat, from the workers' start to their end (the site renders its pages before).
Runs are interleaved round by round, and each cell is the median of ``--rounds`` runs.
``--baseline-shoal`` adds the same runs with another build of shoal (its ``shoal``
executable), side by side.

    .venv/bin/python bench/redis_crawl.py --rounds 3 --markdown bench/results/redis_crawl.md

Prints a table (and writes it to ``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from side_venv import ensure_side_venv
from site_server import reachable_paths

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHOAL = [sys.executable, "-m", "shoal"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def site_hosts(count: int) -> list[str]:
    return [f"127.0.0.{2 + h}" for h in range(count)]


SITE_VENV = BENCH / ".venv-site"


def site_python(loop: str) -> str:
    """The Python that runs the site: bench/.venv-site (with uvloop) for ``uvloop``."""
    if loop == "asyncio":
        return sys.executable
    return str(ensure_side_venv(SITE_VENV, ["uvloop"], ["uvloop>=0.19"]))


def start_site(
    pages: int, links: int, hosts: list[str], tmp: Path, loop: str
) -> tuple[subprocess.Popen[bytes], int]:
    ready = tmp / "port"
    proc = subprocess.Popen(
        [
            site_python(loop),
            str(BENCH / "site_server.py"),
            *("--pages", str(pages), "--links", str(links), "--latency-ms", "0"),
            *(arg for host in hosts for arg in ("--host", host)),
            *("--port", "0", "--ready-file", str(ready)),
            *("--loop", loop),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the site server did not start")
        time.sleep(0.05)
    return proc, int(ready.read_text())


def start_redis(tmp: Path, appendfsync: str) -> tuple[subprocess.Popen[bytes], Path]:
    sock = tmp / "redis.sock"
    proc = subprocess.Popen(
        [
            "redis-server",
            *("--port", "0", "--unixsocket", str(sock), "--dir", str(tmp), "--save", ""),
            *("--appendonly", "yes", "--appendfsync", appendfsync),
            *("--aof-load-truncated", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not sock.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    time.sleep(0.2)
    return proc, sock


def one_run(
    workers: int, appendfsync: str, shoal: list[str], args: argparse.Namespace
) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="shoal-redis-bench-"))
    hosts = site_hosts(args.hosts)
    site, port = start_site(args.pages, args.links, hosts, tmp, args.site_loop)
    redis, sock = start_redis(tmp, appendfsync)
    try:
        starts = [f"http://{host}:{port}/" for host in hosts]
        cmd = [
            *shoal,
            "crawl",
            *starts,
            *("--redis", f"unix://{sock}", "--crawl-id", "bench", "--no-progress", "-q"),
            *("--concurrency", str(args.concurrency), "--max-pages", str(10**9)),
        ]
        # The site renders its pages and Redis starts before the clock: not the crawl's.
        site_before, redis_before = cpu_of(site.pid), cpu_of(redis.pid)
        began = time.monotonic()
        procs = [
            subprocess.Popen([*cmd, "-o", str(tmp / f"part{i}.jsonl")]) for i in range(workers)
        ]
        cpu = 0.0
        for p in procs:
            _, status, usage = os.wait4(p.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"a worker exited {os.waitstatus_to_exitcode(status)}")
            cpu += usage.ru_utime + usage.ru_stime
        wall = time.monotonic() - began
        pages = sum(sum(1 for _ in (tmp / f"part{i}.jsonl").open("rb")) for i in range(workers))
        expected = len(reachable_paths(args.pages, args.links, 1)) * args.hosts
        return {
            "pages": pages,
            "complete": pages / expected,
            "wall": wall,
            "pages_per_s": pages / wall,
            "cpu_workers": cpu,
            "cpu_redis": cpu_of(redis.pid) - redis_before,
            "cpu_site": cpu_of(site.pid) - site_before,
        }
    finally:
        for proc in (redis, site):
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1000, help="pages per host")
    parser.add_argument("--links", type=int, default=10)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=16, help="per worker")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--appendfsync", default="always,no", help="Redis AOF sync policies")
    parser.add_argument("--baseline-shoal", type=Path, help="another build's shoal executable")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--site-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the site's event loop (uvloop: from bench/.venv-site)",
    )
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    builds = {"shoal": SHOAL}
    if args.baseline_shoal is not None:
        builds["shoal-before"] = [str(args.baseline_shoal)]
    configs = [
        (build, fsync, int(n))
        for build in builds
        for fsync in args.appendfsync.split(",")
        for n in args.workers.split(",")
    ]
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {c: [] for c in configs}
    for _ in range(args.rounds):  # interleaved: drift in the machine's load hits all alike
        for build, fsync, n in configs:
            runs[(build, fsync, n)].append(one_run(n, fsync, builds[build], args))
    table = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}
    if args.json:
        print(json.dumps({f"{b} {f} {n}": r for (b, f, n), r in table.items()}, indent=2))
        return
    lines = [
        f"{args.hosts} hosts x {args.pages} pages, 0 ms latency, --concurrency "
        f"{args.concurrency} per worker; median of {args.rounds} interleaved rounds; the "
        f"site on {args.site_loop}. CPU is what each used from the workers' start to their "
        "end.",
        "",
        "| build | appendfsync | workers | pages | complete | pages/s | vs 1 worker "
        "| cpu workers | cpu redis | cpu site |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (build, fsync, n), r in table.items():
        base = table[(build, fsync, min(m for b, f, m in table if (b, f) == (build, fsync)))]
        lines.append(
            f"| {build} | {fsync} | {n} | {r['pages']:.0f} | {r['complete']:.3f} "
            f"| {r['pages_per_s']:.0f} | {r['pages_per_s'] / base['pages_per_s']:.2f}x "
            f"| {r['cpu_workers']:.1f} s | {r['cpu_redis']:.1f} s | {r['cpu_site']:.1f} s |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
