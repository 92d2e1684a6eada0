"""The frontier contract: every backend (memory, SQLite, Redis) behaves the same through the
seam, thread-safe inside. The scheduling rules exist twice (Python in ``memory.py``, Lua in
``state/lua/``): these cases hold both to the same behaviour. What a shared backend does
differently on purpose is its :attr:`Frontier.shared` flag, asserted here, never skipped."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from redis_server import redis_session  # noqa: F401  (the fixture of the Redis backend)
from shoal import FrontierError, UsageError
from shoal.crawler import Crawler
from shoal.crawler.frontier import (
    Candidate,
    HostPace,
    HostPolicy,
    JobKind,
    MemoryFrontier,
    Outcome,
    Release,
    SqliteFrontier,
)
from shoal.crawler.frontier._base import Frontier
from shoal.state import StateStore
from sites import Site, html

QUIET = {"progress": False, "timeout": 5}
A = "http://a.example"


class Clock:
    """A test's clock (seconds). A Redis frontier's clock is the server's: the fixture
    holds the crawl's clock still there and moves it with this one."""

    def __init__(self) -> None:
        self._now = 1000.0
        self.moved: list[Callable[[float], None]] = []

    @property
    def now(self) -> float:
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        self._now = value
        for moved in self.moved:
            moved(value)

    def __call__(self) -> float:
        return self._now


BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Frontier]]:
    """Builds a frontier of the backend with MemoryFrontier's keywords (``per_host``,
    ``delay``, ``robots``, ``clock``). A new backend is one more ``BACKENDS`` name and
    branch here."""
    made: list[Frontier] = []
    stores: list[StateStore] = []

    def build(**kw: object) -> Frontier:
        if request.param == "memory":
            return MemoryFrontier(**kw)  # type: ignore[arg-type]
        if request.param == "sqlite":
            store = StateStore.open(tmp_path / f"s{len(stores)}.sqlite", {"t": 1})
            stores.append(store)
            return SqliteFrontier(store, **kw)  # type: ignore[arg-type]
        frontier = _redis_frontier(request, **kw)
        made.append(frontier)
        return frontier

    yield build
    for frontier in made:
        frontier.close()
    for store in stores:
        store.close()


def _redis_frontier(request: pytest.FixtureRequest, **kw: object) -> Frontier:
    from shoal.crawler.frontier import RedisFrontier

    server = request.getfixturevalue("redis_session")
    crawl_id = f"c{next(_CRAWL_IDS)}"
    clock = kw.pop("clock", None)
    frontier = RedisFrontier.open(server.url, crawl_id, "w1", {}, **kw)  # type: ignore[arg-type]
    if isinstance(clock, Clock):
        # The crawl's clock held still at the test's, as a memory frontier's clock= is.
        meta = f"{frontier.state.prefix}meta"

        def moved(now: float) -> None:
            frontier.state._client.hset(meta, "tclock", round(now * 1000))

        moved(clock.now)
        clock.moved.append(moved)
    return frontier


_CRAWL_IDS = itertools.count(1)


def next_wake(
    frontier: Frontier, ready_in: float | None, clock: float | None, *, busy: bool = False
) -> None:
    """lease()'s second value: the seconds until a clock may make a job ready. A shared
    frontier (:attr:`Frontier.shared`) answers 0 when it leased nothing while work remains
    anywhere ("look again": its wait_idle blocks until the crawl changes or that clock),
    and at most 1 s when it leased jobs (other hosts' clocks run meanwhile)."""
    if frontier.shared and clock is not None:
        assert ready_in == (pytest.approx(min(clock, 1.0)) if busy else 0.0)
    else:
        assert ready_in == pytest.approx(clock)


def test_submit_dedupes_atomically_across_threads(make: Callable[..., Frontier]) -> None:
    frontier = make(robots=False)
    urls = [f"{A}/{i}" for i in range(400)]
    accepted: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(8)

    def offer(shift: int) -> None:
        gate.wait(timeout=10)
        mine = urls[shift * 50 :] + urls[: shift * 50]  # every thread offers every URL
        for i in range(0, len(mine), 7):
            got = frontier.submit([Candidate(u) for u in mine[i : i + 7]])
            with lock:
                accepted.extend(c.url for c in got)

    threads = [threading.Thread(target=offer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert sorted(accepted) == sorted(urls)  # each accepted exactly once
    assert frontier.stats().queued == 400


def test_a_lease_out_of_budget_leaves_the_other_hosts_ready(
    make: Callable[..., Frontier],
) -> None:
    """A lease's budget is its share of --max-pages, not the rest of it: the hosts it had
    no budget for stay ready for the next lease (they were once dropped, and a crawl could
    end with pages left to fetch and budget left to fetch them)."""
    frontier = make(robots=False)
    frontier.submit([Candidate(f"{A}/1"), Candidate("http://b.example/1")])
    first, _ = frontier.lease(2, 1)
    assert len(first) == 1
    second, _ = frontier.lease(2, 1)
    assert [j.url for j in second] != [] and second[0].url != first[0].url
    assert frontier.stats().queued == 0


def test_the_job_that_ends_leases_its_successor(make: Callable[..., Frontier]) -> None:
    frontier = make(robots=False, per_host=1)
    frontier.submit([Candidate(f"{A}/1"), Candidate(f"{A}/2")])
    (first,), _ = frontier.lease(10)
    links = (Candidate(f"{A}/3", 1, f"{A}/1"), Candidate(f"{A}/2", 1, f"{A}/1"))
    done = frontier.release(first, Release(Outcome.DONE, links=links), take=1, budget=1)
    assert [c.url for c in done.added] == [f"{A}/3"]  # /2 was queued already
    assert [j.url for j in done.jobs] == [f"{A}/2"]  # the freed slot, in the same step
    assert not done.lost
    assert frontier.stats().leased == 2 and frontier.stats().queued == 1


def test_leases_release_and_commit_are_two_phases(make: Callable[..., Frontier]) -> None:
    clock = Clock()
    frontier = make(robots=False, per_host=1, clock=clock)
    frontier.submit([Candidate(f"{A}/1"), Candidate(f"{A}/2")])
    (first,), _ = frontier.lease(10)
    assert frontier.lease(10)[0] == []  # per_host 1: the host's slot is taken
    assert frontier.stats().pending == 2 and frontier.stats().leased == 1
    frontier.release(first, Release(Outcome.DONE))
    (second,), _ = frontier.lease(10)  # the slot is free at release, before the commit
    assert second.id != first.id
    assert frontier.stats().leased == 2  # the first one is leased until it commits
    frontier.commit([(first, Outcome.DONE, 200)], output=0)
    with pytest.raises(FrontierError):
        frontier.commit([(first, Outcome.DONE, 200)], output=0)  # not held any more
    with pytest.raises(FrontierError):  # all or nothing: the good one is not committed
        frontier.commit([(second, Outcome.DONE, 200), (first, Outcome.DONE, 200)], output=0)
    frontier.commit([(second, Outcome.FAILED, 404)], output=0)
    stats = frontier.stats()
    assert (stats.pending, stats.done, stats.failed) == (0, 1, 1)


def test_a_retry_waits_a_duration_and_keeps_its_claims(make: Callable[..., Frontier]) -> None:
    clock = Clock()
    frontier = make(robots=False, clock=clock)
    frontier.submit([Candidate(f"{A}/r")])
    (job,), _ = frontier.lease(10)
    assert frontier.claim(job, f"{A}/target")
    frontier.release(job, Release(Outcome.RETRY, retry_in=5.0))
    jobs, ready_in = frontier.lease(10)
    assert jobs == []
    next_wake(frontier, ready_in, 5.0)  # a duration, not a clock value
    clock.now += 4.999
    assert frontier.lease(10)[0] == []  # not a millisecond early
    clock.now += 0.001
    (again,), _ = frontier.lease(10)
    assert again.attempt == 2 and again.url == job.url
    assert frontier.claim(again, f"{A}/target")  # its own earlier claim
    assert not frontier.claim(again, f"{A}/r")  # seen
    with pytest.raises(FrontierError):
        frontier.release(job, Release(Outcome.DONE))  # the old lease is over


def test_the_first_page_waits_the_delay_after_robots_txt(
    make: Callable[..., Frontier],
) -> None:
    clock = Clock()
    frontier = make(delay=2.0, clock=clock)
    frontier.submit([Candidate(f"{A}/1")])
    (robots,), _ = frontier.lease(10)
    assert robots.kind is JobKind.ROBOTS
    clock.now += 5.0  # a slow robots.txt: the delay runs from its end, not its start
    frontier.release(robots, Release(Outcome.DONE, policy=HostPolicy(None, 3.0)))
    jobs, ready_in = frontier.lease(10)
    assert jobs == []
    next_wake(frontier, ready_in, 3.0)  # Crawl-delay 3 s beats --delay 2
    clock.now += 2.999
    assert frontier.lease(10)[0] == []
    clock.now += 0.001
    (page,), _ = frontier.lease(10)
    assert page.url == f"{A}/1"


def test_host_policy_lives_in_the_frontier(make: Callable[..., Frontier]) -> None:
    clock = Clock()
    frontier = make(robots=True, clock=clock)
    frontier.submit([Candidate(f"{A}/1"), Candidate(f"{A}/2")])
    (robots,), _ = frontier.lease(10)
    assert robots.kind is JobKind.ROBOTS and robots.url == f"{A}/robots.txt"
    assert frontier.lease(10)[0] == []  # no page before the policy, no second robots job
    assert frontier.host_policy(A) is None
    policy = HostPolicy("User-agent: *\nDisallow: /2\n", 2.0)
    frontier.release(robots, Release(Outcome.DONE, policy=policy))
    assert frontier.host_policy(A) == policy
    jobs, ready_in = frontier.lease(10)
    assert jobs == []
    next_wake(frontier, ready_in, 2.0)  # Crawl-delay, after robots.txt too
    clock.now += 2.0
    (page,), ready_in = frontier.lease(10)
    assert page.kind is JobKind.PAGE
    next_wake(frontier, ready_in, 2.0, busy=True)  # Crawl-delay before the next page


def test_a_robots_txt_retry_is_leased_again_when_due(make: Callable[..., Frontier]) -> None:
    # A robots.txt fetch through a failing proxy is retried (issue 20): the host's pages
    # wait for it, and the retry counts as one attempt more, as a page's does.
    clock = Clock()
    frontier = make(clock=clock)
    frontier.submit([Candidate(f"{A}/1")])
    (robots,), _ = frontier.lease(10)
    assert robots.kind is JobKind.ROBOTS and robots.attempt == 1
    frontier.release(robots, Release(Outcome.RETRY, retry_in=5.0))
    assert frontier.lease(10)[0] == []  # neither the page nor robots.txt before 5 s
    clock.now += 5.0
    (again,), _ = frontier.lease(10)
    assert again.kind is JobKind.ROBOTS and again.attempt == 2
    frontier.release(again, Release(Outcome.DONE, policy=HostPolicy(None, None)))
    (page,), _ = frontier.lease(10)
    assert page.url == f"{A}/1"


def test_an_unreachable_robots_txt_is_stored_as_such(make: Callable[..., Frontier]) -> None:
    frontier = make(clock=Clock())
    frontier.submit([Candidate(f"{A}/1")])
    (robots,), _ = frontier.lease(10)
    policy = HostPolicy(None, None, unreachable=("timeout", "no answer in 5 s"))
    frontier.release(robots, Release(Outcome.DONE, policy=policy))
    assert frontier.host_policy(A) == policy
    (page,), _ = frontier.lease(10)  # its pages are given out, to be recorded as held back
    assert page.url == f"{A}/1"


def test_renew_keeps_held_leases_and_refuses_others(make: Callable[..., Frontier]) -> None:
    frontier = make(robots=False, clock=Clock())
    frontier.submit([Candidate(f"{A}/1"), Candidate(f"{A}/2")])
    (one, two), _ = frontier.lease(10)
    frontier.renew([one, two])
    frontier.release(two, Release(Outcome.RETRY, retry_in=1.0))
    frontier.renew([one])
    with pytest.raises(FrontierError):
        frontier.renew([two])  # a retry's lease is over


def test_a_hold_waits_out_retry_after_on_that_host_only(
    make: Callable[..., Frontier],
) -> None:
    clock = Clock()
    frontier = make(robots=False, clock=clock)
    frontier.submit([Candidate(f"{A}/1"), Candidate(f"{A}/2"), Candidate("http://b.example/1")])
    jobs, _ = frontier.lease(1)
    held = jobs[0]
    frontier.release(held, Release(Outcome.FAILED, hold_host_for=4.0))
    frontier.commit([(held, Outcome.FAILED, 503)], output=0)
    others, _ = frontier.lease(10)  # the other host is not held
    assert [j.host for j in others] == ["http://b.example"]
    clock.now += 3.999
    assert frontier.lease(10)[0] == []
    clock.now += 0.001
    (after,), _ = frontier.lease(10)
    assert after.host == held.host


def test_a_host_gives_its_urls_in_order_and_a_retry_first(
    make: Callable[..., Frontier],
) -> None:
    clock = Clock()
    frontier = make(robots=False, per_host=1, clock=clock)
    frontier.submit([Candidate(f"{A}/{i}") for i in range(4)])
    (first,), _ = frontier.lease(10)
    assert first.url == f"{A}/0"
    frontier.release(first, Release(Outcome.RETRY, retry_in=1.0))
    clock.now += 1.0
    order = []
    for _ in range(4):
        (job,), _ = frontier.lease(10)
        order.append((job.url, job.attempt))
        frontier.release(job, Release(Outcome.DONE))
        frontier.commit([(job, Outcome.DONE, 200)], output=0)
    assert order == [(f"{A}/0", 2), (f"{A}/1", 1), (f"{A}/2", 1), (f"{A}/3", 1)]
    assert frontier.stats().pending == 0


def test_a_long_hold_parks_the_host_for_the_run(make: Callable[..., Frontier]) -> None:
    frontier = make(robots=False, clock=Clock())
    frontier.submit([Candidate(f"{A}/{i}") for i in range(3)])
    jobs, _ = frontier.lease(1)
    frontier.release(jobs[0], Release(Outcome.FAILED, hold_host_for=10**6))
    frontier.commit([(jobs[0], Outcome.FAILED, 503)], output=0)
    assert frontier.lease(10) == ([], None)  # nothing waits on a clock: the crawl may end
    assert frontier.stats().queued == 2  # still owed, to a later run


def test_a_frontier_given_with_a_file_output_owns_the_state(tmp_path: Path) -> None:
    # The bug: the crawler wrote the given frontier's URLs into its own state file with
    # fingerprint 0, one row for all; the next run "resumed" and wrote every record again.
    out = tmp_path / "o.jsonl"
    pages = {"/": html("home", "/a", "/b"), "/a": html("a", "/c"), "/b": html("b"), "/c": "c"}
    with Site(pages) as site:
        result = Crawler(site.url("/"), output=str(out), frontier=MemoryFrontier(), **QUIET).run()
        assert result.pages == 4
        assert not (tmp_path / "o.jsonl.state.sqlite").exists()
        again = Crawler(
            site.url("/"), output=str(out), frontier=MemoryFrontier(), overwrite=True, **QUIET
        ).run()
        assert again.pages == 4 and again.already_complete is False
    urls = [json.loads(line)["url"] for line in out.read_text().splitlines()]
    assert sorted(urls) == sorted(set(urls)) and len(urls) == 4
    with pytest.raises(UsageError, match="state"):
        Crawler("http://127.0.0.1:9/", frontier=MemoryFrontier(), state=str(tmp_path / "s"))


def test_a_policy_another_process_stored_is_applied(tmp_path: Path) -> None:
    # robots.txt fetched elsewhere: this crawler must not fetch it again, and must obey it.
    pages = {
        "/": html("home", "/open", "/secret"),
        "/open": "open",
        "/secret": "no",
        "/robots.txt": "User-agent: *\nDisallow: /\n",
    }
    with Site(pages) as site:
        frontier = MemoryFrontier()
        origin = site.url("/").rstrip("/")
        frontier.submit([Candidate(site.url("/"))])
        (robots,), _ = frontier.lease(1)
        assert robots.kind is JobKind.ROBOTS
        rules = HostPolicy("User-agent: *\nDisallow: /secret\n", None)
        frontier.release(robots, Release(Outcome.DONE, policy=rules))
        assert frontier.host_policy(origin) == rules
        out = tmp_path / "o.jsonl"
        result = Crawler(site.url("/"), output=str(out), frontier=frontier, **QUIET).run()
        assert site.count("/robots.txt") == 0
        assert site.count("/secret") == 0 and site.count("/open") == 1
        assert result.robots_denied == 1


def test_a_claimed_redirect_target_is_durable_only_with_its_page(tmp_path: Path) -> None:
    # Marked seen on disk before the page's commit, a crash in between would make the
    # refetched page meet its own target as "already seen" and lose it.
    from shoal.state import fingerprint

    with StateStore.open(tmp_path / "s.sqlite", {"t": 1}) as store:
        frontier = SqliteFrontier(store, robots=False)
        frontier.submit([Candidate(f"{A}/from")])
        (job,), _ = frontier.lease(1)
        assert frontier.claim(job, f"{A}/to")
        frontier.release(job, Release(Outcome.DONE))
        frontier.commit([])  # another page's batch: the buffered rows go in, not the claim
        assert fingerprint(f"{A}/to") not in set(store.fingerprints())
        assert store.queued_count() == 1
        frontier.commit([(job, Outcome.DONE, 200)], output=0)
        assert fingerprint(f"{A}/to") in set(store.fingerprints())
        assert store.done_count() == 2 and store.queued_count() == 0


def test_crawl_retries_back_off_like_the_pool() -> None:
    # One formula (RetryPolicy's capped exponential with full jitter), not a second one.
    from shoal.crawler._jobs import backoff

    waits = [backoff(0.5, 3) for _ in range(400)]
    assert all(0.0 <= w <= 2.0 for w in waits)
    assert min(waits) < 0.5  # full jitter reaches down towards 0


def test_many_workers_finish_every_url_once_within_per_host(make: Callable[..., Frontier]) -> None:
    # Workers lease, release and submit from their own threads while one thread commits,
    # as the crawler does; no lock outside the frontier. Every URL ends exactly once, no
    # host ever has more than per_host unreleased leases, and pending reaches 0 exactly.
    frontier = make(robots=False, per_host=2)
    hosts = [f"http://h{i}.example" for i in range(5)]
    frontier.submit([Candidate(f"{h}/0") for h in hosts])
    busy: dict[str, int] = dict.fromkeys(hosts, 0)
    worst = {"n": 0}
    finished: list[str] = []
    to_commit: list[object] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        for _ in range(5000):  # bounded
            if stop.is_set():
                return
            jobs, _ = frontier.lease(2)
            for job in jobs:
                with lock:
                    busy[job.host] += 1
                    worst["n"] = max(worst["n"], busy[job.host])
                n = int(job.url.rsplit("/", 1)[1])
                if n < 40:  # each page links the next two on its host: 1 + 40 URLs a host
                    frontier.submit([Candidate(f"{job.host}/{n + 1}", n + 1, job.url)])
                with lock:
                    busy[job.host] -= 1
                frontier.release(job, Release(Outcome.DONE))
                with lock:
                    to_commit.append(job)
                    finished.append(job.url)

    def committer() -> None:
        while not stop.is_set():
            with lock:
                batch, to_commit[:] = list(to_commit), []
            frontier.commit([(j, Outcome.DONE, 200) for j in batch], output=0)  # type: ignore[misc]
            if frontier.stats().pending == 0:
                stop.set()
            stop.wait(0.001)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    threads.append(threading.Thread(target=committer))
    for t in threads:
        t.start()
    stop.wait(30)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert sorted(finished) == sorted(f"{h}/{n}" for h in hosts for n in range(41))
    assert worst["n"] <= 2
    stats = frontier.stats()
    assert (stats.pending, stats.done) == (0, 5 * 41)


@pytest.mark.stress
@pytest.mark.parametrize("round_", range(10))
def test_stress_many_workers_over_each_backend(make: Callable[..., Frontier], round_: int) -> None:
    test_many_workers_finish_every_url_once_within_per_host(make)


# -- settings per host (Crawler(hosts=...), [hosts."x"] in a config file) -------------------


def test_a_host_pattern_sets_its_hosts_limit_and_delay(make: Callable[..., Frontier]) -> None:
    """A name matches every port of it, name:port that port only; the rest of the crawl
    keeps the crawl's per_host and delay. The same in Python and in Lua."""
    clock = Clock()
    paces = {"a.example": HostPace(1, 2.0), "b.example:8080": HostPace(3, None)}
    frontier = make(robots=False, per_host=2, delay=0.0, paces=paces, clock=clock)
    hosts = ["http://a.example", "http://a.example:81", "http://b.example:8080", "http://b.example"]
    frontier.submit([Candidate(f"{h}/{i}") for h in hosts for i in range(4)])
    jobs, _ = frontier.lease(100)
    count = {h: sum(j.host == h for j in jobs) for h in hosts}
    assert count == {hosts[0]: 1, hosts[1]: 1, hosts[2]: 3, hosts[3]: 2}
    for job in jobs:
        frontier.release(job, Release(Outcome.DONE))
    # b.example:8080 and b.example have no delay: ready again at once; a.example (either
    # port) waits its own 2 s.
    jobs, _ = frontier.lease(100)
    assert {j.host for j in jobs} == {hosts[2], hosts[3]}
    for job in jobs:
        frontier.release(job, Release(Outcome.DONE))
    clock.now += 1.999
    assert {j.host for j in frontier.lease(100)[0]} <= {hosts[2], hosts[3]}
    clock.now += 0.001
    jobs, _ = frontier.lease(100)
    assert sorted(j.host for j in jobs if j.host in hosts[:2]) == sorted(hosts[:2])


def test_a_trailing_dot_host_is_paced_by_its_names_pattern(
    make: Callable[..., Frontier],
) -> None:
    """``example.com.`` is example.com: a host table's pattern (no dot) matches it, in
    Python and in Lua; the host key keeps its dot (it names the host in the state)."""
    paces = {"a.example": HostPace(1, None), "b.example:8080": HostPace(2, None)}
    frontier = make(robots=False, per_host=8, paces=paces, clock=Clock())
    hosts = ["http://a.example.", "http://b.example.:8080"]
    frontier.submit([Candidate(f"{h}/{i}") for h in hosts for i in range(4)])
    jobs, _ = frontier.lease(100)
    assert sorted(j.host for j in jobs) == [hosts[0], hosts[1], hosts[1]]


def test_a_pinned_port_overrides_its_name_setting_by_setting(
    make: Callable[..., Frontier],
) -> None:
    clock = Clock()
    paces = {"a.example": HostPace(1, 2.0), "a.example:80": HostPace(3, None)}
    frontier = make(robots=False, per_host=8, paces=paces, clock=clock)
    frontier.submit([Candidate(f"{A}/{i}") for i in range(5)])  # http: port 80
    jobs, _ = frontier.lease(100)
    assert len(jobs) == 1  # per_host 3 from a.example:80, but the 2 s delay of a.example
    next_wake(frontier, frontier.lease(100)[1], 2.0, busy=False)
    clock.now += 2.0
    assert len(frontier.lease(100)[0]) == 1
    clock.now += 2.0
    assert len(frontier.lease(100)[0]) == 1  # three in flight now: the limit is 3
    clock.now += 2.0
    assert frontier.lease(100)[0] == []


@pytest.mark.parametrize(("own", "crawl_delay", "wins"), [(2.0, 3.0, 3.0), (5.0, 3.0, 5.0)])
def test_a_hosts_delay_and_its_crawl_delay_the_larger_wins(
    make: Callable[..., Frontier], own: float, crawl_delay: float, wins: float
) -> None:
    clock = Clock()
    frontier = make(paces={"a.example": HostPace(None, own)}, clock=clock)
    frontier.submit([Candidate(f"{A}/1")])
    (robots,), _ = frontier.lease(10)
    frontier.release(robots, Release(Outcome.DONE, policy=HostPolicy(None, crawl_delay)))
    jobs, ready_in = frontier.lease(10)
    assert jobs == []
    next_wake(frontier, ready_in, wins)
    clock.now += wins - 0.001
    assert frontier.lease(10)[0] == []
    clock.now += 0.001
    assert len(frontier.lease(10)[0]) == 1


def test_redis_workers_must_pace_hosts_alike(redis_session: object) -> None:  # noqa: F811
    from shoal import CrawlMismatch
    from shoal.crawler.frontier import RedisFrontier

    url = redis_session.url  # type: ignore[attr-defined]
    paces = {"a.example": HostPace(1, 2.0)}
    first = RedisFrontier.open(url, "paces", "w1", {}, paces=paces)
    try:
        with pytest.raises(CrawlMismatch, match="hosts"):
            RedisFrontier.open(url, "paces", "w2", {}, paces={"a.example": HostPace(2, 2.0)})
        with pytest.raises(CrawlMismatch, match="hosts"):
            RedisFrontier.open(url, "paces", "w2", {})
        RedisFrontier.open(url, "paces", "w2", {}, paces=dict(paces)).close()
    finally:
        first.close()
