"""--per-host holds across ``--redis`` render workers: a host sees no more requests in flight
from shoal than --per-host, its pages' own and their browsers' together (issue #18).

Each worker's browser has slots of its own for a host; the Redis frontier bounds only the
pages of a host leased at once across the workers. So a page's requests to its own host go
one at a time under its lease: at most one request per leased page, at most --per-host
leased pages.

Under CI a missing browser (or redis-server) is a failure; elsewhere the tests are skipped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from redis_server import RedisServer
from rendering import isolated_env, no_browser_left, records, short_tmpdirs
from shoal.crawler._render import _PageLease
from shoal.http import TransportError
from sites import Reply, Request, Site

PAGES = 6  # /1 .. /6, linked from /
SCRIPTS, XHRS = 4, 2  # same-host requests of each page's browser
WAIT = 90.0  # the longest any held request waits (a bound, not a timing)


def page(n: int) -> str:
    fetches = ", ".join(f"fetch('/api/{n}-{k}').then(r => r.text())" for k in range(XHRS))
    scripts = "".join(f'<script src="/s/{n}-{k}.js"></script>' for k in range(SCRIPTS))
    return (
        f"<!doctype html><html><body><h1>page {n}</h1><p id=x></p><script>"
        f"Promise.all([{fetches}]).then(t => {{"
        "document.getElementById('x').textContent = t.join(','); });"
        f"</script>{scripts}</body></html>"
    )


class Host:
    """The one host: its pages, and the most requests it had in flight at once.

    A request counts from when its handler takes it until its reply is built, before it
    is written: inside the time the client has it out, so the count never says more than
    shoal sent (a reply the client has read may otherwise still count while its server
    thread waits for the CPU, and the next request is already in).

    Requests beside the pages /1../6 are held until requests of two pages are held at once
    (both workers render), then for a moment more, or until a third is in flight: what
    shoal would send then is all out at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.pages_held: set[str] = set()
        self.first_held = threading.Event()  # the first worker renders a page of /1../6
        self.two_pages = threading.Event()  # so does the second
        self.opened = threading.Event()  # nothing is held from then on

    def serve(self, request: Request) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= 3:
                self.opened.set()
        try:
            return self._reply(request.path)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _reply(self, path: str) -> Reply:
        if path == "/robots.txt":
            return Reply(404, "")
        if path == "/":
            links = "".join(f'<a href="/{n}">{n}</a> ' for n in range(1, PAGES + 1))
            return Reply(body=f"<!doctype html><html><body>{links}</body></html>")
        if path.startswith(("/s/", "/api/")):
            self._hold(path.split("/")[2].partition("-")[0])
            if path.startswith("/s/"):
                return Reply(body="//", content_type="text/javascript")
            return Reply(body=path.rsplit("-", 1)[1], content_type="text/plain")
        return Reply(body=page(int(path.strip("/"))))

    def _hold(self, of_page: str) -> None:
        if self.opened.is_set():
            return
        with self._lock:
            self.pages_held.add(of_page)
            if len(self.pages_held) >= 2:
                self.two_pages.set()
        self.first_held.set()
        self.two_pages.wait(WAIT)
        # Both workers are rendering: a moment for what else they send now to come in.
        self.opened.wait(1.0)
        self.opened.set()


@pytest.fixture
def short_tmps() -> Iterator[list[Path]]:
    with short_tmpdirs(2, "r18p-") as made:
        yield made


def worker(
    n: int, site: Site, redis: RedisServer, tmp: Path, short: Path, concurrency: int
) -> subprocess.Popen[str]:
    import shoal

    env = isolated_env(short, tmp / f"home-{n}")
    src = str(Path(shoal.__file__).resolve().parents[1])  # this tree's shoal, not an install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "shoal", "crawl", site.url("/"),
               "-o", str(tmp / f"part-{n}.jsonl"), "--redis", redis.url, "--crawl-id", "polite",
               "--render", "always", "--render-timeout", "150", "--render-wait", "0.1",
               "--per-host", "2", "--concurrency", str(concurrency),
               "--extract", "x=#x::text", "--no-progress"]  # fmt: skip
    return subprocess.Popen(
        command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.usefixtures("browser")
def test_per_host_holds_across_redis_render_workers(
    tmp_path: Path, short_tmps: list[Path], redis_server: RedisServer
) -> None:
    """Two workers, --per-host 2, each page loading 6 scripts and XHRs from its own host.
    The first worker (--concurrency 1) renders a page alone; the second (--concurrency 2,
    so 2 slots of its own for the host) joins and leases the host's other page: each
    browser's slots alone would let 1 + 2 requests out at once."""
    host = Host()
    site = Site()
    site.fallback = host.serve
    procs: list[subprocess.Popen[str]] = []
    outs: list[tuple[str, str]] = []
    with site:
        try:
            procs.append(worker(0, site, redis_server, tmp_path, short_tmps[0], 1))
            # The first worker holds a page of /1../6 (its only lease) before the second
            # starts: the second can lease only the host's other page.
            assert host.first_held.wait(WAIT) or procs[0].poll() is not None
            procs.append(worker(1, site, redis_server, tmp_path, short_tmps[1], 2))
            outs = [p.communicate(timeout=300) for p in procs]
        finally:
            host.two_pages.set()
            host.opened.set()
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate(timeout=10)
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    got = records(tmp_path / "part-0.jsonl") + records(tmp_path / "part-1.jsonl")
    urls = sorted(str(r["url"]).removeprefix(site.origin) for r in got)
    assert urls == sorted(["/", *(f"/{n}" for n in range(1, PAGES + 1))])  # each once
    for r in got:
        assert r["rendered"] is True and r["error"] is None, r
        if r["url"] != site.url("/"):
            assert r["x"] == ",".join(str(k) for k in range(XHRS)), r  # its XHRs were served
    assert len(host.pages_held) >= 2  # both workers rendered a page of the host at once
    assert host.peak <= 2, host.peak
    for short in short_tmps:
        assert no_browser_left(str(short)) == []


def test_a_page_lease_sends_one_at_a_time_within_the_deadline() -> None:
    """The page's requests to its host, one at a time: one that cannot go before the
    page's deadline is not made; one whose waiter is cancelled keeps the lease until its
    thread ends; close waits for the one out, and nothing is sent after it."""
    holds = {"first": threading.Event(), "third": threading.Event()}
    started = {name: threading.Event() for name in holds}
    sent: list[str] = []

    def call(name: str) -> Callable[[], tuple[int, dict[str, str], bytes, bool]]:
        def run() -> tuple[int, dict[str, str], bytes, bool]:
            sent.append(name)
            if name in holds:
                started[name].set()
                holds[name].wait(WAIT)
            return 200, {}, name.encode(), False

        return run

    async def main(pool: concurrent.futures.Executor) -> None:
        lease = _PageLease("http://a")
        far = time.monotonic() + WAIT
        first = asyncio.ensure_future(lease.send(call("first"), far, pool))
        assert await asyncio.to_thread(started["first"].wait, WAIT)
        with pytest.raises(TransportError):
            await lease.send(call("late"), time.monotonic() + 0.05, pool)
        first.cancel()  # its waiter goes; its request does not
        with pytest.raises(asyncio.CancelledError):
            await first
        second = asyncio.ensure_future(lease.send(call("second"), far, pool))
        await asyncio.sleep(0)
        assert not second.done() and sent == ["first"]
        holds["first"].set()
        assert (await second)[2] == b"second"
        third = asyncio.ensure_future(lease.send(call("third"), far, pool))
        assert await asyncio.to_thread(started["third"].wait, WAIT)
        queued = asyncio.ensure_future(lease.send(call("queued"), far, pool))
        closing = asyncio.ensure_future(lease.close(far))
        await asyncio.sleep(0)
        assert not closing.done()  # the third is out
        holds["third"].set()
        await closing
        assert (await third)[2] == b"third"
        with pytest.raises(TransportError):
            await queued  # waited for the lease, then found the page over
        with pytest.raises(TransportError):
            await lease.send(call("after"), far, pool)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        asyncio.run(main(pool))
    assert sent == ["first", "second", "third"]
