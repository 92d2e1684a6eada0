"""Sitemap ``<lastmod>`` in a recrawl of a crawl shared through Redis (#19): a page whose
lastmod is newer than its last fetch goes to the front of its host's queue in the current
run, and is queued in the run even when --revisit-after has not made it due, once per run.
Two real worker processes, a real redis-server, a real site whose sitemap changes."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import redis

from redis_server import RedisServer
from shoal.state import fingerprint
from sites import html
from test_recrawl import Doc, VersionedSite
from test_recrawl_lastmod import OLD, sitemap, w3c
from test_redis_recrawl import records, run_of, worker_cmd

PAGES = ("/", "/a", "/b", "/c", "/d")
# Per host one request at a time, crawl-wide (Redis holds the host's slot), so the order
# the server sees is the order Redis gave the host's jobs out in.
PREFIX = "shoal:{c}:"
ONE = ("--sitemaps", "--per-host", "1", "--concurrency", "1")


def make_site() -> VersionedSite:
    docs = {"/": Doc(html("home", "/a", "/b", "/c", "/d"), etag='"h"')}
    for p in PAGES[1:]:
        docs[p] = Doc(html(p), etag=f'"{p}1"')
    site = VersionedSite(docs)
    site.robots = f"User-agent: *\nAllow: /\nSitemap: {site.url('/sitemap.xml')}\n"
    sitemap(site, dict.fromkeys(PAGES, OLD))
    return site


def two_workers(
    server: RedisServer, site: VersionedSite, outs: list[Path], *extra: str
) -> list[str]:
    """Run two workers of the crawl at once; the paths the site served meanwhile, in order.
    The second only joins (no --recrawl): one that came after the first had finished would
    otherwise begin the next run."""
    before = len(site.site.requests())
    procs: list[subprocess.Popen[str]] = []
    for i, out in enumerate(outs):
        procs.append(
            subprocess.Popen(
                worker_cmd(server, site, out, *ONE, *(extra if i == 0 else ())),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if i == 0:
            # The second joins once the first has begun the run (its first request):
            # one that joined the finished run before could take the new run's jobs
            # with the old run's view of them (a race of the test, not of the lastmods).
            deadline = time.monotonic() + 60
            while len(site.site.requests()) == before and time.monotonic() < deadline:
                if procs[0].poll() is not None:
                    break
                threading.Event().wait(0.01)
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return [path for path, _ in site.site.requests()[before:]]


def test_a_changed_lastmod_goes_first_and_is_due_once_per_run(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    with make_site() as site:
        first = subprocess.run(worker_cmd(redis_server, site, outs[0], *ONE),
                               capture_output=True, text=True, timeout=120,
                               check=False)  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert len(records(*outs)) == 5

        # Run 2 revisits everything; the sitemap says /c changed since its last fetch,
        # and /d's lastmod is in the future (not a modification time: ignored).
        site.docs["/c"] = Doc(html("c, edited"), etag='"c2"')
        sitemap(site, {**dict.fromkeys(PAGES, OLD), "/c": w3c(time.time()), "/d": "2099-01-01"})
        order = two_workers(redis_server, site, outs, "--recrawl")
        assert order[:3] == ["/robots.txt", "/sitemap.xml", "/c"], str(order)
        assert sorted(order[3:]) == ["/", "/a", "/b", "/d"], order
        second = run_of(2, *outs)
        assert set(second) == set(PAGES)
        assert second["/c"]["change"] == "changed" and second["/a"]["change"] == "unchanged"

        # Run 3 under --revisit-after: nothing is due but / (made due by hand), and the
        # sitemap says /a changed after its last fetch: /a is queued in this run, first.
        client = redis.Redis.from_url(redis_server.url)
        home = _signed(site.url("/"))
        raw = client.hget(f"{PREFIX}v", home)
        assert isinstance(raw, bytes)
        head = raw.split(b" ", 3)
        head[2] = str(int(head[2]) - 7_200_000_000).encode()  # fetched 2 h earlier (µs)
        client.hset(f"{PREFIX}v", home, b" ".join(head))
        site.docs["/a"] = Doc(html("a, edited"), etag='"a2"')
        sitemap(site, {**dict.fromkeys(PAGES, OLD), "/a": w3c(time.time())})
        order = two_workers(redis_server, site, outs, "--recrawl", "--revisit-after", "1h")
        assert order == ["/robots.txt", "/sitemap.xml", "/a", "/"], order
        third = run_of(3, *outs)
        assert {p: r["change"] for p, r in third.items()} == {"/a": "changed", "/": "unchanged"}

        # The same sitemap read again in this run (by a worker joining it late) queues
        # nothing more: /a's visit says run 3 queued it already.
        from shoal.state._redis_lua import LIBRARY, lastmod

        call = lastmod(changed=[(_signed(site.url("/a")), 2**52)])
        assert LIBRARY.call(client, call.name, PREFIX, call.args) == 0
        assert client.hget(f"{PREFIX}meta", "pending") == b"0"
        client.close()
    assert len(records(*outs)) == 5 + 5 + 2


def _signed(url: str) -> str:
    from shoal.state._redis_support import signed

    return str(signed(fingerprint(url)))


def test_a_shared_crawl_with_sitemaps_ends_and_reads_them_first(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A sitemap lease is never committed (no record): it must end at its release, or the
    # crawl's pending count stays above 0 and the crawl never ends.
    with make_site() as site:
        done = subprocess.run(worker_cmd(redis_server, site, tmp_path / "a.jsonl", *ONE),
                              capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip
        order = [path for path, _ in site.site.requests()]
    assert done.returncode == 0, done.stderr
    assert order[:2] == ["/robots.txt", "/sitemap.xml"], order
    assert sorted(order[2:]) == sorted(PAGES)


def test_lastmod_moves_up_across_a_long_queue_once_per_run(redis_server: RedisServer) -> None:
    """LASTMOD over a host queue longer than one slice: queued pages found anywhere in it
    move to the front, a not-due page is queued, and a duplicate, an unknown URL, a page
    fetched after its lastmod or one asked for again in the same run move nothing."""
    from shoal.state import Candidate, RedisCrawlState
    from shoal.state._redis import Visit

    host = "http://h.test"
    urls = [f"{host}/p{i}" for i in range(2500)]
    old, new = 1_700_000_000.0, 1_700_100_000.0
    state = RedisCrawlState.open(redis_server.url, "l", {"start": host}, robots=False,
                                 per_host=5000)  # fmt: skip
    try:
        state.register("w")
        state.submit([Candidate(u) for u in urls])
        jobs, _ = state.lease(5000)
        for job in jobs:
            state.release(job.id, "done")
        fetched = {u: (old if int(u.rsplit("p", 1)[1]) < 2000 else new) for u in urls}
        visits = [(j.url, 200, Visit(200, None, None, None, None, None, fetched[j.url]))
                  for j in jobs]  # fmt: skip
        state.commit([(j.id, "done") for j in jobs], expected_offset=0,
                     new_offset=1, visits=visits)  # fmt: skip
        # Run 2 revisits the 2000 pages fetched before the cut (in HSCAN's order).
        assert state.recrawl(start=True, fetched_before=(old + new) / 2)[:3] == ("started", 2, 2000)
        client = redis.Redis.from_url(redis_server.url)
        queue = [e.decode() for e in client.lrange("shoal:{l}:q:" + host, 0, -1)]
        client.close()
        deep = [e.split(" ", 4)[4][: int(e.split(" ")[3])] for e in queue[1200:1210]]
        later = old + 10
        changed = [(u, later) for u in deep]
        changed += [
            (deep[0], later),  # listed twice
            (f"{host}/p2100", new + 10),  # fetched after the cut: not due, queued now
            (f"{host}/p2200", new - 10),  # fetched after its lastmod: stays out
            (f"{host}/unknown", later),
        ]
        assert state.revisit_first(changed) == 11
        first, _ = state.lease(11)
        assert sorted(j.url for j in first) == sorted([*deep, f"{host}/p2100"])
        assert first[0].url == f"{host}/p2100"  # the not-due one first, then the sitemap's order
        assert [j.url for j in first[1:]] == deep
        # Asked again in this run (another worker reads the same sitemap): nothing more.
        assert state.revisit_first(changed) == 0
        rest, _ = state.lease(5000)
        leased = [j.url for j in first + rest]
        assert len(leased) == len(set(leased)) == 2001
    finally:
        state.close()
