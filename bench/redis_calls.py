#!/usr/bin/env python3
"""Redis's work per page of a shared crawl, without the noise of a whole crawl.

Redis is the one process every worker of a shared crawl talks to, so what it does per page
bounds the whole crawl. This repeats one worker's page step against a fresh redis-server
(unix socket, appendonly yes, appendfsync no): release a page with 3 links (one new, two
already seen elsewhere) and lease its successor in the same call, and commit every 8 pages
(with each page's visit, validators and digests, as a crawl keeps it for recrawls).
It reports, per page: the Redis commands run inside the calls and the calls themselves
(INFO commandstats; the same on any machine), the server's µs in them (commandstats; moves
with the machine's load), and with ``--callgrind`` the instructions Redis executed
(valgrind's callgrind on redis-server: a count that does not move with the machine's load).
``--baseline-python`` runs the same steps with another build's Python (its shoal and
redis-py), side by side.

    .venv/bin/python bench/redis_calls.py --callgrind --baseline-python OLD/.venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOSTS = [f"http://127.0.0.{i}:8000" for i in range(2, 10)]
COMMIT_EVERY = 8


def url(i: int) -> str:
    return f"{HOSTS[i % len(HOSTS)]}/p/{i}"


def child(pages: int, callgrind: bool) -> dict[str, float]:
    """Runs in the build's own Python: the page steps, and what Redis did for them."""
    import redis

    from shoal.state._redis import RedisCrawlState

    try:
        from shoal.state import Candidate

        def link(u: str, depth: int, referrer: str) -> Any:
            return Candidate(u, depth, referrer)
    except ImportError:  # a baseline from before #21: the state's own NewURL, with a host
        from shoal.state import NewURL  # type: ignore[attr-defined]

        def link(u: str, depth: int, referrer: str) -> Any:
            return NewURL(u, u[: u.index("/", 8)], depth, referrer)

    tmp = Path(tempfile.mkdtemp(prefix="shoal-redis-calls-"))
    sock = tmp / "redis.sock"
    wrap = []
    if callgrind:
        wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out"]
    server = subprocess.Popen(
        [
            *wrap,
            *("redis-server", "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "no"),
            *("--aof-load-truncated", "no"),  # what a crawl's worker checks on 7.0
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)
        state = RedisCrawlState.open(f"unix://{sock}", "calls", {}, per_host=8, robots=False)
        state.register("w1")
        state.submit([link(url(i), 1, HOSTS[0] + "/") for i in range(2000)])
        fresh = 2000
        jobs, _ = state.lease(16)
        rnd = random.Random(1)
        raw = redis.Redis(unix_socket_path=str(sock))
        raw.config_resetstat()
        if callgrind:
            subprocess.run(
                ["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True
            )
        done: list[tuple[str, str]] = []
        visits: list[Any] = []  # each page's visit, as a crawl keeps it (#19)
        try:
            import hashlib

            from shoal.state._redis import Visit

            def visit(u: str) -> Any:
                body = u.encode()
                return (u, 200, Visit(200, '"5f2b-1a2b"', "Sat, 05 Dec 2026 10:00:00 GMT",
                                      hashlib.sha256(body).digest(), hashlib.sha1(body).digest(),
                                      None, time.time()))  # fmt: skip
        except ImportError:  # a baseline from before #19's Redis recrawl: no visits kept
            visit = None  # type: ignore[assignment]
        offset = 0
        for _ in range(pages):
            job = jobs.pop(0)
            links = [link(url(fresh), 2, job.url)]
            links += [link(url(rnd.randrange(fresh)), 2, job.url) for _ in range(2)]
            fresh += 1
            jobs += state.release_with_links(job.id, "done", links, take=1).jobs
            done.append((job.id, "done"))
            if visit is not None:
                visits.append(visit(job.url))
            if len(done) == COMMIT_EVERY:
                kept = {"visits": visits} if visit is not None else {}
                state.commit(done, expected_offset=offset, new_offset=offset + 1000, **kept)
                offset += 1000
                done, visits = [], []
        stats = raw.info("commandstats")
        raw.close()
        state.close()
        top = {"cmdstat_fcall", "cmdstat_evalsha"}
        calls = sum(v["calls"] for k, v in stats.items() if k in top)
        inner = sum(v["calls"] for k, v in stats.items() if k not in top and "config" not in k)
        out = {
            "calls": calls / pages,
            "commands": inner / pages,
            "server_us": sum(v["usec"] for k, v in stats.items() if k in top) / pages,
        }
    finally:
        server.terminate()
        server.wait(120)
    if callgrind:
        summary = next(
            line
            for line in (tmp / "callgrind.out").read_text().splitlines()
            if line.startswith("summary:")
        )
        out["instructions"] = int(summary.split()[1]) / pages
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--callgrind", action="store_true", help="count instructions (valgrind)")
    parser.add_argument("--baseline-python", type=Path, help="another build's python")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.pages, args.callgrind)))
        return
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    if args.callgrind and shutil.which("valgrind") is None:
        sys.exit("--callgrind needs valgrind (apt-get install valgrind)")
    builds = {"shoal": Path(sys.executable)}
    if args.baseline_python is not None:
        builds["shoal-before"] = args.baseline_python
    rows = []
    for name, python in builds.items():
        cmd = [str(python), __file__, "--child", "--pages", str(args.pages)]
        if args.callgrind:
            cmd.append("--callgrind")
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ))
        rows.append((name, json.loads(done.stdout.strip().splitlines()[-1])))
    print(
        f"Redis's work per page: release + successor lease, a commit every {COMMIT_EVERY} "
        f"pages; {args.pages} pages.\n"
    )
    print("| build | calls | Redis commands inside | server µs | instructions |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        # Under valgrind the server runs many times slower: its µs say nothing then.
        ins, us = "n/a", f"{r['server_us']:.0f}"
        if "instructions" in r:
            ins, us = f"{r['instructions'] / 1000:,.0f} k", "n/a"
        print(f"| {name} | {r['calls']:.2f} | {r['commands']:.1f} | {us} | {ins} |")


if __name__ == "__main__":
    main()
