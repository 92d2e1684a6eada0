"""One crawl, three worker processes, kill -9 at seeded random moments: a worker for good,
another one restarted, and Redis itself restarted on its AOF. Every live worker must exit 0
by itself, ``shoal combine`` must give the reachable set exactly once, Redis must hold no
leases or queue, and no host may have seen more than --per-host requests at once."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from redis_server import RedisServer
from sites import Reply, Request, Site, html

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PAGES = 60  # per host
PER_HOST = 2
LATENCY = 0.01


def make_sites() -> list[Site]:
    sites = [Site(host=h) for h in HOSTS]

    def route(site_i: int, i: int) -> object:
        def reply(_: Request) -> Reply:
            time.sleep(LATENCY)
            links = [f"/p{j}" for j in (2 * i + 1, 2 * i + 2) if j < PAGES]
            other = sites[(site_i + 1) % len(sites)]
            links.append(other.url(f"/p{(i * 7 + 3) % PAGES}"))
            return Reply(body=html(f"{site_i} {i}", *links))

        return reply

    for n, site in enumerate(sites):
        for i in range(PAGES):
            site.routes[f"/p{i}"] = route(n, i)  # type: ignore[assignment]
        site.routes["/robots.txt"] = Reply(404, "none")
    return sites


def reachable(sites: list[Site]) -> set[str]:
    # Every page links to p(2i+1), p(2i+2) of its host, so p0 reaches all of them.
    return {s.url(f"/p{i}") for s in sites for i in range(PAGES)}


def worker(
    server: RedisServer, sites: list[Site], part: Path, log: Path
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        *("-m", "shoal", "crawl", *(s.url("/p0") for s in sites)),
        *("-o", str(part), "--redis", server.url, "--crawl-id", "crash"),
        *("--lease-ttl", "2", "--per-host", str(PER_HOST), "--concurrency", "4"),
        *("--no-progress", "--timeout", "10", "--retries", "1"),
    ]
    with log.open("ab") as f:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=f)


def epoch_of(server: RedisServer, part: Path) -> bytes | None:
    client = redis.Redis(unix_socket_path=str(server.socket))
    try:
        wid = f"{socket.gethostname()}:{part}"
        value: bytes | None = client.hget(f"shoal:{{crash}}:w:{wid}", "epoch")
        return value
    finally:
        client.close()


def combine(server: RedisServer, parts: list[Path], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            *("-m", "shoal", "combine", "--redis", server.url, "--crawl-id", "crash"),
            *(str(p) for p in parts),
            *("-o", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_once(server: RedisServer, tmp: Path, seed: int) -> None:
    rng = random.Random(seed)
    sites = make_sites()
    for s in sites:
        s.__enter__()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        parts = [tmp / f"part{i}.jsonl" for i in range(3)]
        logs = [tmp / f"worker{i}.log" for i in range(3)]
        procs = [worker(server, sites, parts[i], logs[i]) for i in range(3)]
        wait_until = time.monotonic() + 30
        while not all(p.exists() for p in parts) and time.monotonic() < wait_until:
            time.sleep(0.05)
        # Three events at seeded moments, in a seeded order.
        events = ["kill_for_good", "kill_restart", "redis"]
        rng.shuffle(events)
        for event in events:
            time.sleep(rng.uniform(0.1, 0.6))
            if event == "kill_for_good":
                procs[0].send_signal(signal.SIGKILL)
                procs[0].wait(10)
            elif event == "kill_restart":
                procs[1].send_signal(signal.SIGKILL)
                procs[1].wait(10)
                before = epoch_of(server, parts[1])
                procs[1] = worker(server, sites, parts[1], logs[1])
                # A worker that cannot reach Redis when it starts exits 3 (by design): let
                # it join before Redis may be killed, as an operator restarting it would.
                joined_by = time.monotonic() + 30
                while epoch_of(server, parts[1]) == before and time.monotonic() < joined_by:
                    assert procs[1].poll() is None, logs[1].read_text()[-3000:]
                    time.sleep(0.05)
            else:
                server.kill()
                time.sleep(rng.uniform(0, 0.3))
                server.start()
        deadline = time.monotonic() + 90
        for i in (1, 2):
            code = procs[i].wait(max(1.0, deadline - time.monotonic()))
            assert code == 0, f"worker {i} exited {code}: {logs[i].read_text()[-3000:]}"
        out = tmp / "all.jsonl"
        done = combine(server, parts, out)
        assert done.returncode == 0, done.stderr
        urls = [json.loads(line)["url"] for line in out.read_text().splitlines()]
        dupes = sorted({u for u in urls if urls.count(u) > 1})
        assert not dupes, f"pages twice: {dupes}"
        assert set(urls) == reachable(sites)
        client = redis.Redis(unix_socket_path=str(server.socket))
        try:
            p = "shoal:{crash}:"
            assert client.hlen(p + "l") == 0
            assert client.zcard(p + "le") == 0
            assert client.zcard(p + "delayed") == 0
            assert not list(client.scan_iter(match=p + "q:*"))
            queued, leased = client.hmget(p + "meta", "queued", "leased")
            assert (int(queued), int(leased)) == (0, 0)
        finally:
            client.close()
        for s in sites:
            assert s.max_in_flight <= PER_HOST, (s.origin, s.max_in_flight)
            # robots.txt once per host per crawl (a killed worker's robots job may be redone)
            assert s.count("/robots.txt") <= 2
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for s in sites:
            s.__exit__(None, None, None)


def test_three_workers_survive_kills_and_a_redis_restart(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    run_once(redis_server, tmp_path, int(os.environ.get("SHOAL_CRASH_SEED", "1")))


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(20))
def test_kills_and_redis_restarts_many_seeds(
    redis_server: RedisServer, tmp_path: Path, seed: int
) -> None:
    run_once(redis_server, tmp_path, 1000 + seed)
