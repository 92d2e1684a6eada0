"""RedisCrawlState against a real redis-server: one crawl, several clients ("processes").

Each test starts its own server (tests/redis_server.py). Two RedisCrawlState instances have
two connection pools, so they are two workers as far as Redis can tell.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer, running
from shoal import CrawlMismatch, RedisStateError, RedisUnavailable, StaleCommit, UsageError
from shoal.state import Candidate, HostPolicy, JobKind, RedisCrawlState
from shoal.state import _redis_lua as lua

Opener = Callable[..., RedisCrawlState]
H = "http://a.test"


@pytest.fixture
def open_state(redis_server: RedisServer) -> Iterator[Opener]:
    """Open states on the test's server; all closed at the end."""
    opened: list[RedisCrawlState] = []

    def opener(crawl_id: str = "c1", identity: dict[str, Any] | None = None, **kw: Any) -> Any:
        kw.setdefault("robots", False)
        state = RedisCrawlState.open(
            redis_server.url, crawl_id, identity if identity is not None else {"scope": "x"}, **kw
        )
        opened.append(state)
        return state

    yield opener
    for state in opened:
        state.close()


def pages(host: str, n: int, start: int = 0) -> list[Candidate]:
    return [Candidate(f"{host}/p{i}", depth=1, referrer=f"{host}/") for i in range(start, n)]


def test_import_shoal_and_state_does_not_load_redis() -> None:
    code = "import sys, shoal, shoal.state; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_seeding_is_idempotent_across_workers(open_state: Opener) -> None:
    a, b = open_state(), open_state()
    seeds = pages(H, 3)
    assert a.submit(seeds) == [True, True, True]
    assert b.submit(seeds) == [False, False, False]
    assert b.submit([*seeds, Candidate(f"{H}/new")]) == [False, False, False, True]
    assert not a.claim(f"{H}/p0")
    assert b.claim(f"{H}/elsewhere") and not a.claim(f"{H}/elsewhere")
    counts = a.stats()
    assert (counts.queued, counts.leased, counts.pending, counts.hosts) == (4, 0, 4, 1)
    assert a.seen_count() == 5


def test_lease_round_trip_keeps_every_field(open_state: Opener) -> None:
    s = open_state()
    s.register("w1")
    url = f"{H}/p?q=é"  # a non-ASCII URL survives the entry format byte-exactly
    s.submit(
        [
            Candidate(url, depth=3, referrer=f"{H}/ref page"),
            Candidate(f"{H}/s.xml", kind=JobKind.SITEMAP),
        ]
    )
    jobs, _ = s.lease(5)
    # A sitemap goes before its host's pages (a recrawl reads its <lastmod>s first).
    assert [(j.url, j.host, j.kind, j.depth, j.referrer, j.attempt) for j in jobs] == [
        (f"{H}/s.xml", H, "sitemap", 0, None, 1),
        (url, H, "page", 3, f"{H}/ref page", 1),
    ]
    assert len({j.id for j in jobs}) == 2


def test_per_host_limit_holds_across_clients(open_state: Opener) -> None:
    a, b = open_state(per_host=2), open_state(per_host=2)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 10) + pages("http://b.test", 1))
    got_a, _ = a.lease(10)
    got_b, _ = b.lease(10)
    assert sorted(j.host for j in got_a) == [H, H, "http://b.test"]
    assert got_b == []  # both of a.test's slots are a's
    assert a.release(got_a[0].id, "done")
    got_b, _ = b.lease(10)
    assert [j.host for j in got_b] == [H]
    assert a.by_host()[H].in_flight == 2


def test_delay_holds_across_clients(open_state: Opener) -> None:
    a, b = open_state(per_host=4, delay=30.0), open_state(per_host=4, delay=30.0)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 3))
    got, _ = a.lease(3)
    assert len(got) == 1  # the next start is 30 s after this one, on the server's clock
    got, ready_in = b.lease(3)
    assert got == [] and ready_in is not None and 25 < ready_in <= 30


def test_set_delay_and_hold_are_seen_by_every_client(open_state: Opener) -> None:
    a, b = open_state(per_host=4), open_state(per_host=4)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 5))
    b.set_delay(H, 40.0)
    got, _ = a.lease(5)
    assert len(got) == 1
    _, ready_in = b.lease(5)
    assert ready_in is not None and 35 < ready_in <= 40

    c = open_state(crawl_id="c2", per_host=4)
    c.register("c")
    c.submit(pages(H, 5))
    got, _ = c.lease(1)
    c.release(got[0].id, "failed", hold_host_for=50.0)  # Retry-After: 50
    got, ready_in = c.lease(5)
    assert got == [] and ready_in is not None and 45 < ready_in <= 50


def test_one_robots_job_per_host_for_the_whole_crawl(open_state: Opener) -> None:
    a, b = open_state(robots=True), open_state(robots=True)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 3))
    got_a, _ = a.lease(10)
    assert [(j.kind, j.url) for j in got_a] == [("robots", f"{H}/robots.txt")]
    b.submit(pages(H, 4, start=3))  # more of its pages arrive meanwhile
    got_b, _ = b.lease(10)
    assert got_b == []  # neither a second robots job nor a page before the policy
    assert b.host_policy(H) is None
    with pytest.raises(ValueError, match="robots job"):  # it ends at release, never committed
        a.commit([(got_a[0].id, "done")], expected_offset=0, new_offset=0)
    rules = "User-agent: *\nDisallow: /private\nCrawl-delay: 20"
    assert a.release(got_a[0].id, "done", policy=HostPolicy(rules, 20.0))
    assert b.host_policy(H) == HostPolicy(rules, 20.0)
    # Crawl-delay 20 s, counted from robots.txt too: no page yet, for either worker.
    got_b, ready_in = b.lease(10)
    assert got_b == [] and ready_in is not None and 15 < ready_in <= 20
    got_a, ready_in = a.lease(10)
    assert got_a == [] and ready_in is not None and 15 < ready_in <= 20


def test_robots_retry_keeps_pages_held_and_asks_again(open_state: Opener) -> None:
    a = open_state(robots=True)
    a.register("a")
    a.submit(pages(H, 2))
    got, _ = a.lease(5)
    assert a.release(got[0].id, "retry", retry_in=0.0)  # robots.txt timed out: not a policy
    again, _ = a.lease(5)
    assert [(j.kind, j.attempt) for j in again] == [("robots", 2)]
    a.release(again[0].id, "done", policy=HostPolicy(None, None))  # 404: no rules
    assert a.host_policy(H) == HostPolicy(None, None)
    got, _ = a.lease(5)
    assert sorted(j.url for j in got) == [f"{H}/p0", f"{H}/p1"]


def test_an_expired_lease_comes_back_and_frees_its_slot(open_state: Opener) -> None:
    a, b = open_state(per_host=1), open_state(per_host=1)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 1))
    a.lease_ttl = 0.0  # expires at once: the next lease() anywhere reclaims it
    (job,), _ = a.lease(1)
    (again,), _ = b.lease(1)  # the slot was freed, or b could not have it
    assert (again.url, again.attempt) == (job.url, 2)
    assert not a.release(job.id, "done")  # a's result must not count
    with pytest.raises(StaleCommit, match="no longer held"):
        a.commit([(job.id, "done")], expected_offset=0, new_offset=10)
    assert a.output_offset() == 0  # nothing of the refused commit applied
    assert b.commit([(again.id, "done")], expected_offset=0, new_offset=7)
    assert b.stats().pending == 0 and b.finished()


def test_renew_keeps_a_lease(open_state: Opener) -> None:
    a, b = open_state(per_host=1), open_state(per_host=1)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 2))
    a.lease_ttl = 0.0
    (job,), _ = a.lease(1)
    a.lease_ttl = 60.0
    assert a.renew([job.id, "no-such-lease"]) == ["no-such-lease"]
    got, ready_in = b.lease(2)
    assert got == [] and ready_in is not None and 50 < ready_in <= 60
    assert b.renew([job.id]) == [job.id]  # not b's to renew
    assert a.release(job.id, "done") and a.commit(
        [(job.id, "done")], expected_offset=0, new_offset=1
    )


def test_commit_checks_offset_and_is_idempotent(open_state: Opener) -> None:
    s = open_state()
    assert s.register("w") == 0
    s.submit(pages(H, 3))
    jobs, _ = s.lease(3)
    with pytest.raises(ValueError, match="twice"):
        s.commit([(jobs[0].id, "done"), (jobs[0].id, "done")], expected_offset=0, new_offset=9)
    with pytest.raises(StaleCommit, match="offset 0 committed") as info:
        s.commit([(jobs[0].id, "done")], expected_offset=5, new_offset=9)
    assert info.value.committed_offset == 0
    assert s.commit([(jobs[0].id, "done"), (jobs[1].id, "failed")], expected_offset=0, new_offset=9)
    # The same commit again (its reply was lost): recognised, not counted twice.
    assert not s.commit(
        [(jobs[0].id, "done"), (jobs[1].id, "failed")], expected_offset=0, new_offset=9
    )
    counts = s.stats()
    assert (counts.done, counts.failed, counts.leased, counts.queued) == (1, 1, 1, 0)
    with pytest.raises(StaleCommit, match="no longer held"):  # all or nothing
        s.commit([(jobs[2].id, "done"), (jobs[0].id, "done")], expected_offset=9, new_offset=20)
    assert s.output_offset() == 9 and s.stats().leased == 1
    assert s.commit([(jobs[2].id, "done")], expected_offset=9, new_offset=20)
    assert s.by_host()[H].in_flight == 0  # committed without a release: the slot is freed too
    counts = s.stats()
    assert (counts.done, counts.failed, counts.pending) == (2, 1, 0)


def test_retry_waits_then_comes_back_first_with_one_more_attempt(open_state: Opener) -> None:
    s = open_state(per_host=1)
    s.register("w")
    s.submit(pages(H, 2))
    (job,), _ = s.lease(1)
    s.release(job.id, "retry", retry_in=45.0)
    assert s.stats().queued == 2 and s.by_host()[H].queued == 2
    (other,), _ = s.lease(1)
    assert other.url == f"{H}/p1"
    s.release(other.id, "retry", retry_in=0.0)
    (back,), _ = s.lease(1)
    assert (back.url, back.attempt) == (f"{H}/p1", 2)
    s.release(back.id, "done")
    got, ready_in = s.lease(1)
    assert got == [] and ready_in is not None and 40 < ready_in <= 45


def test_page_budget_spares_retries_and_robots(open_state: Opener) -> None:
    s = open_state(per_host=8, robots=True)
    s.register("w")
    s.submit(pages(H, 5))
    got, _ = s.lease(8, budget=0)
    assert [j.kind for j in got] == ["robots"]
    s.release(got[0].id, "done", policy=HostPolicy(None, None))
    got, _ = s.lease(8, budget=2)
    assert len(got) == 2
    s.release(got[0].id, "retry", retry_in=0.0)
    again, _ = s.lease(8, budget=0)
    assert [(j.url, j.attempt) for j in again] == [(got[0].url, 2)]


def test_register_again_fences_the_old_process_and_returns_its_leases(open_state: Opener) -> None:
    old, new = open_state(per_host=1), open_state(per_host=1)
    assert old.register("w") == 0
    old.submit(pages(H, 2))
    (job,), _ = old.lease(1)
    old.release(job.id, "done")
    assert old.commit([(job.id, "done")], expected_offset=0, new_offset=42)
    (held,), _ = old.lease(1)
    assert new.register("w") == 42  # the restart cuts its file back to 42
    assert new.workers()[0].epoch == 2
    (back,), _ = new.lease(1)  # at once, not after the lease expiry
    assert (back.url, back.attempt) == (held.url, 2)
    with pytest.raises(StaleCommit, match="registered again"):
        old.commit([(held.id, "done")], expected_offset=42, new_offset=50)
    with pytest.raises(StaleCommit, match="registered again"):
        old.lease(1)
    assert not old.release(held.id, "done")


def test_crawl_identity_is_checked_and_named(redis_server: RedisServer, open_state: Opener) -> None:
    open_state(identity={"scope": "x", "max_depth": 3}, per_host=4)
    with pytest.raises(CrawlMismatch) as info:
        open_state(identity={"scope": "x", "max_depth": 5}, per_host=4)
    assert "max_depth" in str(info.value) and "max_depth=3" in str(info.value)
    assert info.value.exit_code == 3
    with pytest.raises(CrawlMismatch, match=r"per_host.*per_host=4"):
        open_state(identity={"scope": "x", "max_depth": 3}, per_host=2)
    with pytest.raises(CrawlMismatch, match=r"delay=0\.0"):
        open_state(identity={"scope": "x", "max_depth": 3}, per_host=4, delay=1.5)
    open_state(identity={"max_depth": 3, "scope": "x"}, per_host=4)  # key order is no difference


def test_close_keeps_the_crawl_and_delete_crawl_removes_only_it(
    redis_server: RedisServer, open_state: Opener
) -> None:
    import redis

    a = open_state()
    a.submit(pages(H, 5))
    other = open_state(crawl_id="c1x")  # a prefix of neither's keys must match the other
    other.submit(pages(H, 2))
    a.close()
    again = open_state()
    assert again.stats().queued == 5
    raw = redis.Redis.from_url(redis_server.url)
    raw.set("unrelated", "1")
    assert again.delete_crawl() > 0
    assert open_state().stats().queued == 0
    assert other.stats().queued == 2 and raw.get("unrelated") == b"1"
    other.register("w")
    other.delete_crawl()
    with pytest.raises(RedisStateError, match="state is gone from Redis"):
        other.lease(1)  # never a new empty crawl in its place
    assert all(k.startswith(b"shoal:{c1") for k in raw.keys("shoal:*"))
    raw.close()


def test_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RedisUnavailable, match="cannot reach Redis at unix://") as info:
        RedisCrawlState.open(f"unix://{tmp_path}/none.sock", "c", {})
    assert info.value.exit_code == 3
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{port}"):
        RedisCrawlState.open(f"redis://127.0.0.1:{port}/0", "c", {})


def test_bad_url_and_ids_are_usage_errors(redis_server: RedisServer) -> None:
    with pytest.raises(UsageError, match="invalid Redis URL"):
        RedisCrawlState.open("http://127.0.0.1:1/", "c", {})
    with pytest.raises(UsageError, match="invalid crawl id"):
        RedisCrawlState.open(redis_server.url, "a}b", {})
    with RedisCrawlState.open(redis_server.url, "c", {}) as s:
        with pytest.raises(UsageError, match="invalid worker id"):
            s.register("has space")
        with pytest.raises(RuntimeError, match="register"):
            s.lease(1)
        with pytest.raises(ValueError, match="scheme://host"):
            s.submit([Candidate("http://a.test\nb/x")])


def test_wrong_or_missing_password_is_a_clear_error(tmp_path: Path) -> None:
    with running(tmp_path / "r", password="s3cret") as server:
        wrong = server.url.replace("s3cret", "nope")
        with pytest.raises(RedisStateError, match="refused the credentials") as info:
            RedisCrawlState.open(wrong, "c", {})
        assert "nope" not in str(info.value) and "***" in str(info.value)
        with pytest.raises(RedisStateError, match="password"):
            RedisCrawlState.open(server.url.replace(":s3cret@", ""), "c", {})
        with RedisCrawlState.open(server.url, "c", {}) as s:
            assert s.stats().pending == 0


def test_a_user_without_the_function_commands_is_a_clear_error(
    redis_server: RedisServer,
) -> None:
    """The crawl runs as Lua functions: a Redis ACL user who may not load them (or call
    them) is told so, with the crawl's first call; nothing is written."""
    import redis

    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.acl_setuser(
            "noload",
            enabled=True,
            passwords=["+pw"],
            keys="*",
            channels="*",
            commands=["+@all", "-function"],
        )
        raw.acl_setuser(
            "nocall",
            enabled=True,
            passwords=["+pw"],
            keys="*",
            channels="*",
            commands=["+@all", "-fcall"],
        )
        socket_path = str(redis_server.socket)
        for user in ("noload", "nocall"):
            with pytest.raises(RedisStateError, match="does not let this user") as info:
                RedisCrawlState.open(f"unix://{user}:pw@{socket_path}", "c", {})
            assert "FCALL and FUNCTION LOAD" in str(info.value) and "pw@" not in str(info.value)
        assert raw.keys("shoal:*") == []
    finally:
        raw.close()


def test_durability_settings_are_checked_and_unreadable_ones_said(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A user who may not run CONFIG GET (as on managed Redis services) cannot see
    appendfsync: refused saying so, unless weak durability is accepted (then a warning).
    On 7.0, aof-load-truncated yes is refused by name. Nothing is written either way."""
    import redis

    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.acl_setuser(
            "noconfig",
            enabled=True,
            passwords=["+pw"],
            keys="*",
            channels="*",
            commands=["+@all", "-config"],
        )
        url = f"unix://noconfig:pw@{redis_server.socket}"
        with pytest.raises(RedisStateError, match="does not show appendfsync") as info:
            RedisCrawlState.open(url, "c", {})
        assert "CONFIG GET refused" in str(info.value)
        assert "allow_weak_durability=True" in str(info.value)
        assert raw.keys("shoal:*") == []
        with caplog.at_level("WARNING", logger="shoal.state._redis_support"):
            with RedisCrawlState.open(url, "c", {}, allow_weak_durability=True) as s:
                assert s.stats().pending == 0
        assert "cannot check that commits it acknowledges survive a kill" in caplog.text
        version = str(raw.info("server")["redis_version"])
        if version.startswith("7.0."):
            raw.config_set("aof-load-truncated", "yes")
            with pytest.raises(RedisStateError, match="aof-load-truncated yes"):
                RedisCrawlState.open(redis_server.url, "d", {})
            assert raw.keys("shoal:{d}:*") == []
    finally:
        raw.close()


def _commands(data: bytes) -> tuple[list[list[bytes]], bytes]:
    """Whole RESP commands at the front of ``data``, and the rest."""
    out = []
    while data.startswith(b"*") and b"\r\n" in data:
        head, rest = data.split(b"\r\n", 1)
        args = []
        for _ in range(int(head[1:])):
            if not rest.startswith(b"$") or b"\r\n" not in rest:
                return out, data
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line[1:])
            if len(rest) < size + 2:
                return out, data
            args.append(rest[:size])
            rest = rest[size + 2 :]
        out.append(args)
        data = rest
    return out, data


def _fake_redis(version: str) -> tuple[socket.socket, threading.Thread]:
    """A raw-socket server that speaks just enough RESP: every command is +OK, except PING
    and INFO, which claims ``version``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            for _ in range(50):  # bounded
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                commands, data = _commands(data + chunk)
                for command in commands:
                    if command[0].upper() == b"PING":
                        conn.sendall(b"+PONG\r\n")
                    elif command[0].upper() == b"INFO":
                        body = f"# Server\r\nredis_version:{version}\r\n".encode()
                        conn.sendall(b"$%d\r\n%s\r\n" % (len(body), body))
                    else:
                        conn.sendall(b"+OK\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_redis_older_than_7_is_refused() -> None:
    listener, thread = _fake_redis("6.2.14")
    try:
        port = listener.getsockname()[1]
        with pytest.raises(RedisStateError, match=r"version 6\.2\.14; shoal needs Redis 7\.0"):
            RedisCrawlState.open(f"redis://127.0.0.1:{port}/0", "c", {})
    finally:
        listener.close()
        thread.join(timeout=10)


def test_lease_resent_after_a_lost_reply_gives_the_same_leases(open_state: Opener) -> None:
    """redis-py sends a script again when the connection dropped before its reply: the
    same request must not lease twice (its first leases would sit out their expiry)."""
    s = open_state()
    s.register("w")
    s.submit(pages(H, 6))
    assert s.epoch is not None
    call = lua.lease(worker="w", epoch=s.epoch, n=2, budget=None, ttl_ms=60_000, request="r-1")
    first = s._run(call)
    again = s._run(call)
    assert first == again and len(first) == 4 + 2 * 3
    assert s.stats().leased == 2
    jobs, _ = s.lease(10)  # a new request: new leases
    assert len(jobs) == 4 and s.stats().leased == 6


def test_wait_wakes_when_another_worker_frees_a_slot(open_state: Opener) -> None:
    a, b = open_state(per_host=1), open_state(per_host=1)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 2))
    (job,), _ = a.lease(1)
    got, ready_in = b.lease(1)
    assert got == [] and ready_in is not None and ready_in > 50  # only a's lease expiry
    assert not b.wait(0.05)  # nothing changed
    woke: list[bool] = []
    started = threading.Event()

    def waiter() -> None:
        started.set()
        woke.append(b.wait(20.0))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(timeout=10)
    a.release(job.id, "done")  # before or after b blocks: either way b wakes
    t.join(timeout=30)
    assert woke == [True]
    (mine,), _ = b.lease(1)
    assert mine.url == f"{H}/p1"


def test_wait_returns_at_once_for_a_change_since_the_last_lease(open_state: Opener) -> None:
    a, b = open_state(per_host=1), open_state(per_host=1)
    a.register("a")
    b.register("b")
    a.submit(pages(H, 1))
    (job,), _ = a.lease(1)
    a.release(job.id, "done")
    assert b.lease(1)[0] == [] and not b.finished()  # a's page is not committed yet
    a.commit([(job.id, "done")], expected_offset=0, new_offset=1)  # pending is 0 now
    assert b.wait(20.0)  # the change came before the call: not lost
    assert b.finished()


def test_a_busy_crawl_writes_no_events_and_a_short_lease_turns_them_on(
    open_state: Opener, redis_server: RedisServer
) -> None:
    """Events exist to wake waiting workers: while every lease gets all it asked for, no
    worker waits and the change stream stays empty; a lease that comes back short makes
    every change write one (for the next 15 s), so the waiter is woken."""
    import redis

    a = open_state(per_host=8)
    a.register("a")
    a.submit(pages(H, 6))
    raw = redis.Redis.from_url(redis_server.url)
    events = "shoal:{c1}:events"
    try:
        (job,), _ = a.lease(1)
        for i in range(4):  # page by page, each release leasing its successor
            done = a.release_with_links(job.id, "done", pages(H, 7 + i, 6 + i), take=1)
            (job,) = done.jobs
        assert raw.xlen(events) == 0
        b = open_state(per_host=8)
        b.register("b")
        got, _ = b.lease(100)  # short: b may wait now
        assert len(got) < 100
        a.release(job.id, "done")
        assert raw.xlen(events) >= 1
        assert b.wait(20.0)
    finally:
        raw.close()


def test_the_function_library_is_loaded_again_when_redis_lost_it(
    open_state: Opener, redis_server: RedisServer
) -> None:
    import redis

    a = open_state()
    a.register("a")
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.function_flush()
        assert a.submit(pages(H, 2)) == [True, True]
        assert [lib[1].startswith(b"shoal_") for lib in raw.function_list()] == [True]
    finally:
        raw.close()


def test_a_commit_of_an_offset_alone_is_accepted(open_state: Opener) -> None:
    """A WARC worker's first batch may hold its warcinfo record and no finished page:
    the commit moves the offset only (Lua once sent HINCRBY -0 for it, which Redis
    refuses, and the worker exited 3)."""
    s = open_state()
    assert s.register("w") == 0
    assert s.commit([], expected_offset=0, new_offset=270)
    assert s.output_offset() == 270
    counts = s.stats()
    assert (counts.done, counts.failed, counts.leased) == (0, 0, 0)


def test_the_first_page_waits_the_delay_after_robots_txt(open_state: Opener) -> None:
    """robots.txt counts as a request to its host: the first page starts a delay after the
    robots job's release (on Redis's clock), for every worker."""
    s = open_state(robots=True, delay=30.0)
    s.register("w")
    s.submit(pages(H, 2))
    (robots,), _ = s.lease(5)
    assert robots.kind == "robots"
    assert s.release(robots.id, "done", policy=HostPolicy(None, None))
    jobs, ready_in = s.lease(5)
    assert jobs == [] and ready_in is not None and 25 < ready_in <= 30
