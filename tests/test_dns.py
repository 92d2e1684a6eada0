"""Host name lookups: bounded by the caller's timeout, shared, cached (also when failing).

The system resolver is swapped for a gated function, so a "slow DNS server" is a lookup
held on an Event; every test opens its gate before it ends, so no lookup thread outlives
it (the leaked-thread check in conftest would say so).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shoal.http import HTTPClient, TransportError
from shoal.http._dns import DNSTimeout, Resolver


class GatedLookup:
    """Answers every name with ``answer`` (or raises ``error``) once the gate opens."""

    def __init__(self, answer: list[tuple[Any, ...]] | None = None, error: Exception | None = None):
        self.answer = answer or [_info("127.0.0.1", 80)]
        self.error = error
        self.gate = threading.Event()
        self.calls: list[str] = []
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            self.calls.append(host)
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        if self.error is not None:
            raise self.error
        return [(*info[:4], (info[4][0], port)) for info in self.answer]


def _info(ip: str, port: int) -> tuple[Any, ...]:
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))


@pytest.fixture
def lookup() -> Iterator[GatedLookup]:
    gated = GatedLookup()
    yield gated
    gated.gate.set()


def test_a_slow_lookup_times_out_and_still_fills_the_cache(lookup: GatedLookup) -> None:
    resolver = Resolver(lookup=lookup)
    with pytest.raises(DNSTimeout, match=r"example\.test"):
        resolver.resolve("example.test", 80, timeout=0.05)
    lookup.gate.set()  # the resolver answers late
    assert resolver.resolve("example.test", 80, timeout=30)[0][3] == ("127.0.0.1", 80)
    assert resolver.resolve("example.test", 80, timeout=30)[0][3] == ("127.0.0.1", 80)
    assert lookup.calls == ["example.test"]  # the late answer served both calls


def test_concurrent_callers_share_one_lookup(lookup: GatedLookup) -> None:
    resolver = Resolver(lookup=lookup)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolver.resolve("a.test", 443, 30)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    assert lookup.entered.wait(30)
    lookup.gate.set()
    for t in threads:
        t.join(30)
    assert len(results) == 8 and all(r == results[0] for r in results)
    assert lookup.calls == ["a.test"]


def test_failures_are_cached_briefly() -> None:
    failing = GatedLookup(error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    failing.gate.set()
    resolver = Resolver(lookup=failing, negative_ttl=60)
    for _ in range(3):
        with pytest.raises(socket.gaierror, match="not known"):
            resolver.resolve("nowhere.test", 80, timeout=30)
    assert failing.calls == ["nowhere.test"]
    again = Resolver(lookup=failing, negative_ttl=0)
    for _ in range(2):
        with pytest.raises(socket.gaierror):
            again.resolve("nowhere.test", 80, timeout=30)
    assert len(failing.calls) == 3


def test_ip_literals_are_never_looked_up(lookup: GatedLookup) -> None:
    resolver = Resolver(lookup=lookup)
    assert resolver.resolve("127.0.0.1", 8080, timeout=0)[0][3] == ("127.0.0.1", 8080)
    assert resolver.resolve("::1", 8080, timeout=0)[0][3][:2] == ("::1", 8080)
    assert lookup.calls == []


def test_the_cache_is_bounded(lookup: GatedLookup) -> None:
    lookup.gate.set()
    resolver = Resolver(lookup=lookup, max_entries=2)
    for name in ("a.test", "b.test", "c.test", "a.test"):
        resolver.resolve(name, 80, timeout=30)
    assert lookup.calls == ["a.test", "b.test", "c.test", "a.test"]  # a.test was evicted


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hello() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), name="hello")
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_the_connect_timeout_bounds_the_lookup(lookup: GatedLookup, hello: int) -> None:
    client = HTTPClient(connect_timeout=0.1, resolver=Resolver(lookup=lookup))
    try:
        with pytest.raises(TransportError) as caught:
            client.get(f"http://slow-dns.test:{hello}/", {}, max_bytes=100)
        assert caught.value.kind == "timeout" and "slow-dns.test" in caught.value.detail
        lookup.gate.set()
        # The late answer is cached: the next request connects.
        assert client.get(f"http://slow-dns.test:{hello}/", {}, max_bytes=100).body == b"hello"
    finally:
        client.close()


def test_every_address_is_tried_in_turn(hello: int) -> None:
    # 127.0.0.2 is loopback too, but nothing listens there: refused, then the next one.
    two = GatedLookup(answer=[_info("127.0.0.2", 0), _info("127.0.0.1", 0)])
    two.gate.set()
    client = HTTPClient(connect_timeout=5, resolver=Resolver(lookup=two))
    try:
        assert client.get(f"http://two.test:{hello}/", {}, max_bytes=100).body == b"hello"
    finally:
        client.close()


def test_a_name_that_does_not_resolve_is_a_dns_error() -> None:
    failing = GatedLookup(error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    failing.gate.set()
    client = HTTPClient(resolver=Resolver(lookup=failing))
    try:
        with pytest.raises(TransportError) as caught:
            client.get("http://nowhere.test/", {}, max_bytes=100)
        assert caught.value.kind == "dns" and "not known" in caught.value.detail
    finally:
        client.close()


def test_a_lookup_thread_that_cannot_start_strands_no_one(
    lookup: GatedLookup, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookup.gate.set()
    resolver = Resolver(lookup=lookup)
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(OSError, match="can't start new thread"):
        resolver.resolve("busy.test", 80, timeout=30)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    # Not left "in progress" for good, and the failure is not cached as an answer.
    assert resolver.resolve("busy.test", 80, timeout=30)[0][3] == ("127.0.0.1", 80)


def test_a_temporary_resolver_failure_is_not_cached() -> None:
    flaky = GatedLookup(error=socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
    flaky.gate.set()
    resolver = Resolver(lookup=flaky, negative_ttl=60)
    for _ in range(2):
        with pytest.raises(socket.gaierror, match="Temporary"):
            resolver.resolve("flaky.test", 80, timeout=30)
    assert flaky.calls == ["flaky.test", "flaky.test"]  # asked again, not answered from cache
