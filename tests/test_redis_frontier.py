"""The Redis frontier under the real crawler: several crawlers (threads here, processes in
test_redis_cluster_crawl) on one crawl in a real redis-server, over real HTTP sites."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis

from redis_server import RedisServer
from shoal import Crawler, FrontierError, OutputError, StaleCommit, UsageError
from shoal.crawler.frontier import Candidate, Outcome, Release
from shoal.crawler.frontier.redis import RedisFrontier
from sites import Reply, Site, html

PAGES = 30


def two_sites() -> tuple[Site, Site]:
    a, b = Site(host="127.0.0.2"), Site(host="127.0.0.3")

    def page(site: Site, other: Site, i: int) -> str:
        links = [f"/p{j}" for j in (2 * i + 1, 2 * i + 2) if j < PAGES]
        return html(f"{site.origin} {i}", *links, other.url(f"/p{(i * 7 + 3) % PAGES}"))

    for site, other in ((a, b), (b, a)):
        for i in range(PAGES):
            site.routes[f"/p{i}"] = page(site, other, i)
        site.routes["/robots.txt"] = Reply(404, "no")
    return a, b


def open_frontier(
    server: RedisServer, worker: str, crawler: Crawler, **kw: object
) -> RedisFrontier:
    return RedisFrontier.open(
        server.url,
        "t",
        worker,
        crawler.identity(),
        per_host=2,
        **kw,  # type: ignore[arg-type]
    )


def make(start: list[str], out: Path) -> Crawler:
    return Crawler(start, output=str(out), progress=False, concurrency=4, per_host=2)


def test_two_crawlers_share_one_crawl_each_page_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    a, b = two_sites()
    with a, b:
        start = [a.url("/p0"), b.url("/p0")]
        results = []
        errors: list[BaseException] = []

        def run(name: str) -> None:
            try:
                # The public way in: no frontier built by hand, no probe crawler.
                crawler = Crawler(
                    start,
                    output=str(tmp_path / f"{name}.jsonl"),
                    progress=False,
                    concurrency=4,
                    per_host=2,
                    redis=redis_server.url,
                    crawl_id="t",
                    worker_id=name,
                )
                results.append(crawler.run())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in ("w1", "w2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert all(not t.is_alive() for t in threads)
        urls = []
        for name in ("w1", "w2"):
            urls += [json.loads(line)["url"] for line in (tmp_path / f"{name}.jsonl").open()]
        assert len(urls) == len(set(urls)) == 2 * PAGES
        assert len(results) == 2 and sum(r.pages for r in results) == 2 * PAGES
        assert all(r.failed == 0 and not r.interrupted for r in results)
        for site in (a, b):
            assert site.count("/robots.txt") == 1
            assert site.max_in_flight <= 2
            assert max(site.paths().values()) == 1


def test_a_redirect_target_stays_its_jobs_across_a_redo(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    crawler = make(["http://127.0.0.9/"], tmp_path / "o.jsonl")
    f = open_frontier(redis_server, "w1", crawler, robots=False)
    try:
        f.submit([Candidate("http://127.0.0.9/a"), Candidate("http://127.0.0.9/b")])
        jobs, _ = f.lease(2)
        first = {j.url: j for j in jobs}
        assert f.claim(first["http://127.0.0.9/a"], "http://127.0.0.9/t")
        # The job for /a is redone (here: a retry): it may fetch its own target again...
        f.release(first["http://127.0.0.9/a"], Release(Outcome.RETRY, retry_in=0))
        again, _ = f.lease(2)
        assert [j.url for j in again] == ["http://127.0.0.9/a"]
        assert f.claim(again[0], "http://127.0.0.9/t")
        # ...and no other job may.
        assert not f.claim(first["http://127.0.0.9/b"], "http://127.0.0.9/t")
        # The job's claims end with its commit: no key of it is left in Redis.
        client = redis.Redis(unix_socket_path=str(redis_server.socket))
        claims = "shoal:{t}:jc:*"
        assert len(list(client.scan_iter(match=claims))) == 1
        f.release(again[0], Release(Outcome.DONE))
        f.commit([(again[0], Outcome.DONE, 200)], output=10)
        assert list(client.scan_iter(match=claims)) == []
    finally:
        f.close()


def test_a_stale_commit_stops_the_worker(redis_server: RedisServer, tmp_path: Path) -> None:
    crawler = make(["http://127.0.0.9/"], tmp_path / "o.jsonl")
    f = open_frontier(redis_server, "w1", crawler, robots=False)
    try:
        f.submit([Candidate("http://127.0.0.9/a")])
        (job,), _ = f.lease(1)
        f.release(job, Release(Outcome.DONE))
        # Another process registers as the same worker: this one is fenced.
        other = open_frontier(redis_server, "w1", crawler, robots=False)
        other.close()
        with pytest.raises(StaleCommit):
            f.commit([(job, Outcome.DONE, 200)], output=100)
        assert f.output_offset == 0
    finally:
        f.close()


def test_release_of_a_lease_not_held_is_refused(redis_server: RedisServer, tmp_path: Path) -> None:
    crawler = make(["http://127.0.0.9/"], tmp_path / "o.jsonl")
    f = open_frontier(redis_server, "w1", crawler, robots=False)
    try:
        f.submit([Candidate("http://127.0.0.9/a")])
        (job,), _ = f.lease(1)
        f.release(job, Release(Outcome.RETRY, retry_in=0))
        with pytest.raises(FrontierError):
            f.release(job, Release(Outcome.DONE))
    finally:
        f.close()


def test_the_heartbeat_keeps_a_long_fetch_leased(redis_server: RedisServer, tmp_path: Path) -> None:
    gate = threading.Event()

    def slow(_: object) -> Reply:
        gate.wait(1.5)  # longer than two lease times; the test ends it early on failure
        return Reply(body=html("slow"))

    site = Site(host="127.0.0.2")
    site.routes["/"] = html("home", "/slow", "/a")
    site.routes["/slow"] = slow
    site.routes["/a"] = html("a")
    site.routes["/robots.txt"] = Reply(404, "no")
    with site:
        out = tmp_path / "o.jsonl"
        probe = make([site.url("/")], out)
        frontier = open_frontier(redis_server, "w1", probe, lease_ttl=0.6)
        crawler = Crawler(
            [site.url("/")],
            output=str(out),
            progress=False,
            per_host=2,
            max_time=10,  # bounded: without a heartbeat /slow is fetched again and again
            frontier=frontier,
        )
        try:
            result = crawler.run()
        finally:
            gate.set()
        assert site.count("/slow") == 1
        assert result.pages == 3
        urls = [json.loads(line)["url"] for line in out.open()]
        assert sorted(urls) == sorted(site.url(p) for p in ("/", "/slow", "/a"))


def test_the_shared_crawl_options_are_checked_before_anything_opens(tmp_path: Path) -> None:
    out = str(tmp_path / "o.jsonl")
    url = "unix:///nonexistent/redis.sock"  # never reached: each check comes first
    for kw, says in [
        ({"crawl_id": "c"}, "crawl_id applies to a crawl shared through redis"),
        ({"lease_ttl": 5.0}, "lease_ttl applies to a crawl shared through redis"),
        ({"redis": url}, "redis needs crawl_id"),
        ({"redis": url, "crawl_id": "c", "output": None}, "needs an output file"),
        ({"redis": url, "crawl_id": "c", "output": str(tmp_path / "o.sqlite")}, "offsets"),
        ({"redis": url, "crawl_id": "c", "state": "s.sqlite"}, "do not give state"),
        ({"redis": url, "crawl_id": "c", "fresh": True}, "fresh=True does not apply"),
        ({"redis": url, "crawl_id": "c", "lease_ttl": 0.5}, "lease_ttl must be at least 1"),
    ]:
        with pytest.raises(UsageError, match=says):
            Crawler("http://127.0.0.9/", **{"output": out, **kw})  # type: ignore[arg-type]
        assert not (tmp_path / "o.jsonl").exists()


def redis_clients(server: RedisServer) -> int:
    """Connections the server has, this look's own excluded."""
    with redis.Redis(unix_socket_path=str(server.socket)) as probe:
        return len(probe.client_list()) - 1


def test_a_file_that_is_not_the_workers_is_never_cut_back_however_often_retried(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    out = tmp_path / "w1.jsonl"
    precious = b"precious user data, not a crawl output\n"
    out.write_bytes(precious)
    errors: list[BaseException | None] = []
    with Site({"/": html("home")}) as site:
        for _ in range(2):  # the first refusal must not make the file "this worker's"
            crawler = Crawler(site.url("/"), output=str(out), redis=redis_server.url, crawl_id="c")
            try:
                crawler.run()
                errors.append(None)
            except OutputError as exc:
                errors.append(exc)
        assert out.read_bytes() == precious
        assert site.count("/") == 0
    for error in errors:
        assert isinstance(error, OutputError)
        assert "this worker of the shared crawl never wrote it" in str(error)
    raw = redis.Redis(unix_socket_path=str(redis_server.socket))
    assert raw.smembers("shoal:{c}:workers") == set()  # never registered
    raw.close()


def test_a_shared_crawler_that_fails_or_never_runs_leaves_no_thread_or_connection(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    before = redis_clients(redis_server)
    out = tmp_path / "o.jsonl"
    out.write_text("not ours\n")
    failed = Crawler("http://127.0.0.9/", output=str(out), redis=redis_server.url, crawl_id="c")
    with pytest.raises(OutputError):
        failed.run()
    never = Crawler(
        "http://127.0.0.9/", output=str(tmp_path / "n.jsonl"), redis=redis_server.url, crawl_id="c"
    )
    assert never.result.pages == 0
    assert not [t.name for t in threading.enumerate() if t.name.startswith("shoal-")]
    assert redis_clients(redis_server) == before
    # (the conftest's check fails the test on any thread left running as well)


def test_a_worker_killed_before_its_first_commit_resumes_its_own_file(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Killed after it claimed its file and registered, with a tail written but nothing
    committed (offset 0): the same crawler again cuts that tail off and crawls."""
    from shoal.crawler._shared import worker_id_for
    from shoal.state import RedisCrawlState

    out = tmp_path / "w1.jsonl"
    with Site({"/": html("home", "/a"), "/a": html("a")}) as site:
        kw = {"output": str(out), "redis": redis_server.url, "crawl_id": "c", "robots": False}
        Crawler(site.url("/"), **kw).run()  # type: ignore[arg-type]
        crawled = sorted(json.loads(line)["url"] for line in out.open())
        # The killed run of another crawl "d": claimed the file, registered, wrote a torn
        # record, committed nothing (the frontier API stands in for that process).
        crawler = Crawler(site.url("/"), **{**kw, "crawl_id": "d"})  # type: ignore[arg-type]
        opts = crawler.options
        killed = RedisFrontier.open(
            redis_server.url, "d", worker_id_for(str(out)), crawler.identity(),
            per_host=opts.per_host, delay=opts.initial_delay, robots=False,
        )  # fmt: skip
        killed.close()
        out.write_bytes(b'{"url": "torn, never committed"')
        again = crawler.run()
        assert again.pages == 2
        assert b"torn" not in out.read_bytes()
        assert sorted(json.loads(line)["url"] for line in out.open()) == crawled
    raw = RedisCrawlState(
        redis.Redis(unix_socket_path=str(redis_server.socket)), redis_server.url, "d",
        lease_ttl=60, reconnect_for=1,
    )  # fmt: skip
    assert [w.offset for w in raw.workers()] == [out.stat().st_size]
    raw.close()
