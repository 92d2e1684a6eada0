"""Group commit (state/_redis_batch.py) against a real redis-server: many threads' script
calls share pipelines, each caller gets its own reply and its own error, a Redis that lost
the function library is given it again, and closing ends the sender thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_server import RedisServer
from shoal.state._redis_batch import Library, ScriptBatcher

ECHO = "return {KEYS[1], ARGV[1]}"
FAIL = "return redis.error_reply('BOOM ' .. ARGV[1])"
COUNT = "redis.call('INCR', KEYS[1] .. 'n'); return redis.call('GET', KEYS[1] .. 'n')"


def client_of(server: RedisServer) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket), protocol=2)


def run_callers(caller: Callable[[int], None], count: int) -> None:
    """``caller(t)`` for t in range(count), each on a thread of its own; returns when all
    have ended."""
    workers = [threading.Thread(target=caller, args=(t,)) for t in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def batcher_of(client: redis.Redis, **bodies: str) -> ScriptBatcher:
    """A library of one file registering each body as a function of KEYS and ARGV."""
    lua = "".join(
        f"redis.register_function(LIBRARY .. '_{name.lower()}', function(KEYS, ARGV)\n"
        f"{body}\nend)\n"
        for name, body in bodies.items()
    )
    return ScriptBatcher(client, "k:", Library("test", [("test.lua", lua)]))


def test_each_caller_gets_its_own_reply_across_shared_batches(redis_server: RedisServer) -> None:
    client = client_of(redis_server)
    batcher = batcher_of(client, ECHO=ECHO, COUNT=COUNT)
    # Every thread waits at the gate, then all call at once: their calls pile up while a
    # batch is out, so most go in shared pipelines.
    threads, calls = 16, 200
    gate = threading.Barrier(threads)
    wrong: list[tuple[int, int, object]] = []

    def caller(t: int) -> None:
        gate.wait()
        for i in range(calls):
            reply = batcher.call("ECHO", [f"{t}-{i}"])
            if reply != [b"k:", f"{t}-{i}".encode()]:
                wrong.append((t, i, reply))
            batcher.call("COUNT", [])

    run_callers(caller, threads)
    try:
        assert wrong == []
        assert batcher.batches < 2 * threads * calls  # calls did share pipelines
        # Every COUNT ran exactly once: nothing lost, nothing sent twice.
        assert int(client.get("k:n") or 0) == threads * calls
    finally:
        batcher.close()
        client.close()


def test_a_failing_call_fails_alone(redis_server: RedisServer) -> None:
    client = client_of(redis_server)
    batcher = batcher_of(client, ECHO=ECHO, FAIL=FAIL)
    results: dict[int, object] = {}
    gate = threading.Barrier(8)

    def caller(t: int) -> None:
        gate.wait()
        try:
            results[t] = batcher.call("FAIL" if t % 2 else "ECHO", [str(t)])
        except redis.ResponseError as exc:
            results[t] = exc

    run_callers(caller, 8)
    try:
        for t in range(8):
            if t % 2:
                assert isinstance(results[t], redis.ResponseError)
                assert f"BOOM {t}" in str(results[t])
            else:
                assert results[t] == [b"k:", str(t).encode()]
    finally:
        batcher.close()
        client.close()


def test_the_library_is_loaded_again_after_a_flush(redis_server: RedisServer) -> None:
    """A Redis restarted without its data has no functions: the batcher loads them."""
    client = client_of(redis_server)
    batcher = batcher_of(client, ECHO=ECHO, COUNT=COUNT)
    try:
        assert batcher.call("ECHO", ["a"]) == [b"k:", b"a"]
        client.function_flush()
        assert batcher.call("ECHO", ["b"]) == [b"k:", b"b"]
        assert batcher.call("COUNT", []) == b"1"  # ran once, after the load
        loaded = [entry[1] for entry in client.function_list()]
        assert len(loaded) == 1 and loaded[0].startswith(b"test_")
    finally:
        batcher.close()
        client.close()


def test_a_lost_server_is_every_callers_error(tmp_path: Path) -> None:
    """No server at all: each caller gets the connection error (no hang, no lost caller)."""
    client = redis.Redis(
        unix_socket_path=str(tmp_path / "none.sock"),
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    batcher = batcher_of(client, ECHO=ECHO)
    errors: list[BaseException] = []

    def caller(_: int) -> None:
        try:
            batcher.call("ECHO", ["x"])
        except redis.ConnectionError as exc:
            errors.append(exc)

    run_callers(caller, 4)
    batcher.close()
    client.close()
    assert len(errors) == 4


def test_close_ends_the_sender_and_refuses_new_calls(redis_server: RedisServer) -> None:
    client = client_of(redis_server)
    batcher = batcher_of(client, ECHO=ECHO)
    assert batcher.call("ECHO", ["a"]) == [b"k:", b"a"]
    batcher.close()
    assert not any(t.name == "shoal-redis-batch" for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        batcher.call("ECHO", ["b"])
    client.close()
