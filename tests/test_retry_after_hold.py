"""Retry-After beyond what a crawl waits: recorded, and remembered across a resume."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer
from shoal.crawler import Crawler
from shoal.crawler.frontier import Outcome, Release, SqliteFrontier
from shoal.state import StateStore
from shoal.state._store import UrlRow
from sites import Reply, Request, Site, html

CAREFUL: dict[str, Any] = {"timeout": 5, "retries": 1, "max_pages": 2000, "progress": False}


def records(out: Path) -> dict[str, dict[str, Any]]:
    return {r["url"].rsplit("/", 1)[1]: r for r in map(json.loads, out.read_text().splitlines())}


@pytest.mark.parametrize("asked", ["999999", "Thu, 01 Jan 2099 00:00:00 GMT"])
def test_a_far_retry_after_is_recorded_and_held_across_a_resume(tmp_path: Path, asked: str) -> None:
    out = tmp_path / "o.jsonl"
    with Site(
        {
            "/": html("home", "/a", "/b", "/c"),
            "/a": Reply(503, "later", headers={"Retry-After": asked}),
            "/b": html("b"),
            "/c": html("c"),
        }
    ) as site:
        # One request at a time, so /a (the first link) is answered before /b is asked.
        # max_time only bounds the test on code that waits the Retry-After out.
        opts = {**CAREFUL, "concurrency": 1, "per_host": 1, "max_time": 20}
        result = Crawler(site.url("/"), output=str(out), **opts).run()
        assert result.stopped_by is None  # the crawl ended by itself
        assert site.count("/a") == 1  # not retried: the wait is past the cap
        recs = records(out)
        assert recs["a"]["error"] == "retry_after" and recs["a"]["status"] == 503
        assert asked in recs["a"]["error_detail"]
        assert "b" not in recs and result.pending == 2  # held, not dropped
        # Resuming must not ask the host again while its pause lasts.
        again = Crawler(site.url("/"), output=str(out), **opts).run()
        assert again.stopped_by is None and again.pending == 2
        assert site.count("/b") == 0 and site.count("/c") == 0 and site.count("/a") == 1
        assert site.count("/") == 1
    assert len(records(out)) == 2


def test_a_reasonable_retry_after_is_waited_out(tmp_path: Path) -> None:
    calls = {"n": 0}

    def busy_once(req: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(503, "busy", headers={"Retry-After": "1"})
        return Reply(body=html("a"))

    out = tmp_path / "o.jsonl"
    with Site({"/": html("home", "/a"), "/a": busy_once}) as site:
        Crawler(site.url("/"), output=str(out), **CAREFUL).run()
        first, second = site.times("/a")
    assert second - first >= 0.9  # the pause was kept (a lower bound: load only adds)
    assert records(out)["a"]["status"] == 200 and records(out)["a"]["error"] is None


def test_a_hold_in_the_state_is_kept_by_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    near, far = "http://near.example", "http://far.example"
    with StateStore.open(path, {"crawl": 1}) as store:
        rows = [UrlRow(i + 1, f"{h}/x", h, 0, None) for i, h in enumerate((near, far))]
        store.commit(rows, [], 0, holds=[(near, time.time() + 100), (far, time.time() + 10**6)])
    with StateStore.open(path, {"crawl": 1}) as store:
        assert set(store.holds()) == {near, far}
        clock = {"now": time.monotonic()}
        frontier = SqliteFrontier(store, robots=False, clock=lambda: clock["now"])
        jobs, ready_in = frontier.lease(10)
        assert jobs == []
        assert ready_in is not None and 90 < ready_in <= 100  # waits, not asks
        clock["now"] += 200
        jobs, _ = frontier.lease(10)
        assert [j.url for j in jobs] == [f"{near}/x"]  # far.example: not in this run
        assert frontier.stats().queued == 1 and frontier.stats().pending == 2
        frontier.release(jobs[0], Release(Outcome.DONE))
        frontier.commit([(jobs[0], Outcome.DONE, 200)])
        assert frontier.stats().pending == 1
        frontier.close()


def test_a_held_host_does_not_starve_the_others_of_memory(tmp_path: Path) -> None:
    # memory_limit 4: pages wait on disk and are paged in as memory drains. The URLs of a
    # host held for the run must not sit in memory and stop the others being paged in.
    path = tmp_path / "state.sqlite"
    held, other = "http://held.example", "http://other.example"
    with StateStore.open(path, {"crawl": 1}) as store:
        rows = [UrlRow(i + 1, f"{held}/{i}", held, 0, None) for i in range(10)]
        rows += [UrlRow(i + 100, f"{other}/{i}", other, 0, None) for i in range(10)]
        store.commit(rows, [], 0, holds=[(held, time.time() + 10**6)])
    with StateStore.open(path, {"crawl": 1}) as store:
        frontier = SqliteFrontier(store, robots=False, memory_limit=4)
        taken: list[str] = []
        for _ in range(100):  # bounded: 10 URLs to take
            jobs, _next = frontier.lease(4)
            for job in jobs:
                taken.append(job.url)
                frontier.release(job, Release(Outcome.DONE))
            frontier.commit([(job, Outcome.DONE, 200) for job in jobs])
            if len(taken) == 10:
                break
        assert sorted(taken) == sorted(f"{other}/{i}" for i in range(10))
        assert frontier.stats().queued == 10  # the held host's, still owed
        frontier.close()


def test_a_far_retry_after_ends_a_shared_crawl_too(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # The bug: Redis held the host for the whole pause (days), its URLs counted as work
    # left, and every worker waited on them: the crawl never ended by itself.
    out = tmp_path / "o.jsonl"
    pages = {
        "/": html("home", "/a", "/b", "/c"),
        "/a": Reply(503, "later", headers={"Retry-After": "999999"}),
        "/b": html("b"),
        "/c": html("c"),
    }
    with Site(pages) as site:
        opts = {**CAREFUL, "concurrency": 1, "per_host": 1, "max_time": 20}
        result = Crawler(
            site.url("/"), output=str(out), redis=redis_server.url, crawl_id="c", **opts
        ).run()
        assert result.stopped_by is None  # the crawl ended by itself, not at max_time
        assert site.count("/a") == 1 and site.count("/b") == 0
        assert records(out)["a"]["error"] == "retry_after"


@pytest.mark.parametrize("status", [429, 503])
def test_a_robots_txt_retry_after_holds_its_host(tmp_path: Path, status: int) -> None:
    # A robots.txt that says "come back later" holds the host's URLs for that long: they
    # are not asked for (nor given up on) before then, and the hold is kept in the state.
    out = tmp_path / "o.jsonl"
    with Site(
        {
            "/robots.txt": Reply(status, "later", headers={"Retry-After": "999999"}),
            "/": html("home"),
        }
    ) as site:
        result = Crawler(site.url("/"), output=str(out), **{**CAREFUL, "max_time": 20}).run()
        assert site.count("/") == 0
    assert result.pages == 0 and not out.read_text()
    with contextlib.closing(sqlite3.connect(str(out) + ".state.sqlite")) as db:
        held = [host for (host,) in db.execute("SELECT host FROM holds")]
    assert held == [site.url("/").rstrip("/")]


def test_a_sitemap_retry_after_holds_its_host(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with Site(
        {
            "/robots.txt": Reply(body="User-agent: *\nAllow: /\n"),
            "/sitemap.xml": Reply(503, "later", headers={"Retry-After": "999999"}),
            "/": html("home"),
        }
    ) as site:
        opts = {**CAREFUL, "max_time": 20, "sitemaps": True}
        Crawler(site.url("/"), output=str(out), **opts).run()
        assert site.count("/sitemap.xml") == 1
    with contextlib.closing(sqlite3.connect(str(out) + ".state.sqlite")) as db:
        held = [host for (host,) in db.execute("SELECT host FROM holds")]
    assert held == [site.url("/").rstrip("/")]
