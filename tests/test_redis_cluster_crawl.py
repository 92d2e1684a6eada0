"""One crawl, three worker processes, kill -9 at seeded random moments: a worker for good,
another one restarted, and Redis itself restarted on its AOF. Every live worker must exit 0
by itself, ``shoal combine`` must give the reachable set exactly once, Redis must hold no
leases or queue, and no host may have seen more than --per-host requests at once.

The politeness variant runs the same crash with ``--delay`` and ``--per-host 1``, and one
page answered 503 + Retry-After: no host may see two page requests closer than the delay,
nor any request during the Retry-After hold, whichever worker sends them: politeness is
the crawl's, not each process's."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from redis_server import RedisServer, running
from sites import Reply, Request, Site, html

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
LATENCY = 0.01
DELAY = 0.25  # --delay of the politeness variant
BUSY_PATH = "/p1"  # on the first host, answered 503 + Retry-After: 1 the first time
HOLD = 1.0


@dataclass(frozen=True)
class Plan:
    pages: int = 60  # per host
    per_host: int = 2
    delay: float | None = None  # --delay
    busy: bool = False  # BUSY_PATH answers 503 + Retry-After first


CRASH = Plan()
# Fewer pages: at one request per DELAY a host takes pages * DELAY seconds, and --per-host 1
# makes a 503 and its release one step, so no other worker's lease can slip in between.
POLITE = Plan(pages=20, per_host=1, delay=DELAY, busy=True)


class Busy:
    """The first request for BUSY_PATH gets 503 + Retry-After; ``sent_at`` is when that
    answer left (the worker gets it, then releases its lease: the hold starts later still),
    and ``retried`` is set when the page is asked for again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent_at: float | None = None
        self.retried = threading.Event()

    def answer(self) -> Reply | None:
        with self._lock:
            if self.sent_at is None:
                self.sent_at = time.monotonic()
                return Reply(503, "busy", headers={"Retry-After": f"{HOLD:g}"})
        self.retried.set()
        return None


def make_sites(plan: Plan, busy: Busy | None = None) -> list[Site]:
    sites = [Site(host=h) for h in HOSTS]
    pages = plan.pages

    def route(site_i: int, i: int) -> object:
        def reply(request: Request) -> Reply:
            time.sleep(LATENCY)
            if busy is not None and site_i == 0 and request.path == BUSY_PATH:
                held = busy.answer()
                if held is not None:
                    return held
            links = [f"/p{j}" for j in (2 * i + 1, 2 * i + 2) if j < pages]
            other = sites[(site_i + 1) % len(sites)]
            links.append(other.url(f"/p{(i * 7 + 3) % pages}"))
            return Reply(body=html(f"{site_i} {i}", *links))

        return reply

    for n, site in enumerate(sites):
        for i in range(pages):
            site.routes[f"/p{i}"] = route(n, i)  # type: ignore[assignment]
        site.routes["/robots.txt"] = Reply(404, "none")
    return sites


def reachable(sites: list[Site], plan: Plan) -> set[str]:
    # Every page links to p(2i+1), p(2i+2) of its host, so p0 reaches all of them.
    return {s.url(f"/p{i}") for s in sites for i in range(plan.pages)}


def worker(
    server: RedisServer, sites: list[Site], part: Path, log: Path, plan: Plan
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        *("-m", "shoal", "crawl", *(s.url("/p0") for s in sites)),
        *("-o", str(part), "--redis", server.url, "--crawl-id", "crash"),
        *("--lease-ttl", "2", "--per-host", str(plan.per_host), "--concurrency", "4"),
        *("--no-progress", "--timeout", "10", "--retries", "1"),
    ]
    if plan.delay is not None:
        args += ["--delay", f"{plan.delay:g}"]
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


def run_once(server: RedisServer, tmp: Path, seed: int, plan: Plan = CRASH) -> None:
    rng = random.Random(seed)
    busy = Busy() if plan.busy else None
    sites = make_sites(plan, busy)
    for s in sites:
        s.__enter__()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        parts = [tmp / f"part{i}.jsonl" for i in range(3)]
        logs = [tmp / f"worker{i}.log" for i in range(3)]
        procs = [worker(server, sites, parts[i], logs[i], plan) for i in range(3)]
        wait_until = time.monotonic() + 30
        while not all(p.exists() for p in parts) and time.monotonic() < wait_until:
            time.sleep(0.05)
        if busy is not None:
            # No kill until the hold is over: a worker killed (or a Redis restarted) between
            # the 503 and its release takes the hold with it, by design, and the hold check
            # below would then fail for a reason that is not a bug.
            assert busy.retried.wait(30), "the page answered 503 was never asked for again"
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
                procs[1] = worker(server, sites, parts[1], logs[1], plan)
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
        records = [json.loads(line) for line in out.read_text().splitlines()]
        urls = [r["url"] for r in records]
        dupes = sorted({u for u in urls if urls.count(u) > 1})
        assert not dupes, f"pages twice: {dupes}"
        assert set(urls) == reachable(sites, plan)
        client = redis.Redis(unix_socket_path=str(server.socket))
        try:
            p = "shoal:{crash}:"
            assert client.hlen(p + "l") == 0
            assert client.zcard(p + "le") == 0
            assert client.zcard(p + "delayed") == 0
            assert not list(client.scan_iter(match=p + "q:*"))
            assert int(client.hget(p + "meta", "pending")) == 0
        finally:
            client.close()
        for s in sites:
            assert s.max_in_flight <= plan.per_host, (s.origin, s.max_in_flight)
            # robots.txt once per host per crawl (a killed worker's robots job may be redone)
            assert s.count("/robots.txt") <= 2
        if plan.delay is not None:
            check_delay(sites, plan.delay)
        if busy is not None:
            check_hold(sites[0], busy, records)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for s in sites:
            s.__exit__(None, None, None)


def check_delay(sites: list[Site], delay: float) -> None:
    """No two requests to one host, from any worker, closer than the delay: robots.txt
    included (its release sets the host's next start, so its first page waits too).

    A page's next start is set by its lease (lease time + delay, on Redis's clock), and a
    request reaches the server some time after its lease, however long a loaded machine
    takes: two neighbours can then arrive close together (the first late, the second on
    time), so no bound on one gap holds by construction. Four leases apart they are 4 x delay
    apart on Redis's clock, and a late first arrival narrows that by at most its own lateness:
    request i + 4 comes at least 2 x delay after request i unless a request is more than two
    delays late. That still fails politeness kept per process (three workers, each keeping
    the delay on its own, would send four requests in about 1.3 delays)."""
    for site in sites:
        times = sorted(t for _, t in site.requests())
        assert len(times) > 4
        spans = [b - a for a, b in zip(times, times[4:], strict=False)]
        assert min(spans) >= 2 * delay, (site.origin, min(spans), delay)


def check_hold(site: Site, busy: Busy, records: list[dict[str, object]]) -> None:
    """After the 503 left, the host saw nothing for Retry-After's length, from any worker:
    the worker that got it stores the hold in Redis when it releases the lease (after the
    answer arrived), so the bound is strict; the 0.1 s slack is for the server's clock
    against Redis's TIME only. The page itself is fetched later, and kept once."""
    assert busy.sent_at is not None
    after = sorted(t - busy.sent_at for _, t in site.requests() if t > busy.sent_at)
    assert after, "no request after the 503"
    assert after[0] >= HOLD - 0.1, f"a request {after[0]:.3f} s after the 503"
    kept = [r for r in records if r["url"] == site.url(BUSY_PATH)]
    assert [r["status"] for r in kept] == [200]


def test_three_workers_survive_kills_and_a_redis_restart(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    run_once(redis_server, tmp_path, int(os.environ.get("SHOAL_CRASH_SEED", "1")))


def test_kills_and_a_redis_restart_with_appendfsync_no(tmp_path: Path) -> None:
    """The README's faster setting: Redis writes the AOF (to the OS) before it answers,
    without syncing, so a kill -9 of Redis still loses nothing acknowledged."""
    with running(tmp_path / "redis", appendfsync="no") as server:
        run_once(server, tmp_path, int(os.environ.get("SHOAL_CRASH_SEED", "2")))


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(20))
def test_kills_and_redis_restarts_many_seeds(
    redis_server: RedisServer, tmp_path: Path, seed: int
) -> None:
    run_once(redis_server, tmp_path, 1000 + seed)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(20))
def test_kills_and_redis_restarts_appendfsync_no_many_seeds(tmp_path: Path, seed: int) -> None:
    with running(tmp_path / "redis", appendfsync="no") as server:
        run_once(server, tmp_path, 3000 + seed)


def test_politeness_holds_across_workers_through_kills(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    run_once(redis_server, tmp_path, int(os.environ.get("SHOAL_CRASH_SEED", "1")), POLITE)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(20))
def test_politeness_through_kills_many_seeds(
    redis_server: RedisServer, tmp_path: Path, seed: int
) -> None:
    run_once(redis_server, tmp_path, 2000 + seed, POLITE)
