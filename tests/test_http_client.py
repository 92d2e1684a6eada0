"""The lean HTTP client against real servers on 127.0.0.1: framing, decoding, size limits,
keep-alive and stale connections, hostile servers, TLS and concurrent use."""

from __future__ import annotations

import contextlib
import gzip
import signal
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli
import pytest

import shoal
from conftest import LocalCA
from rawserver import RawServer, Script, raw_servers, read_request, respond_once
from shoal.http import TRANSPORTS, ErrorKind, HTTPClient, TransportError, make_transport
from shoal.http._urllib3 import Urllib3Transport

PAGE = b"<html><body>" + b"".join(b"<p>line %d</p>\n" % i for i in range(300)) + b"</body></html>"
BIG = 64 * 1024 * 1024


@cache
def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * 50_000_000, compresslevel=6)


@cache
def brotli_bomb() -> bytes:
    return bytes(brotli.compress(b"\0" * 50_000_000, quality=5))


def page_for(query: str) -> bytes:
    return (f"page {query};" * 200).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # a connection nobody closes cannot hold the server's teardown for long
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.server.sockets.append(self.connection)

    def send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        stop = self.server.stop
        if path == "/page":
            self.send(200, page_for(query), Content_Type="text/html")
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"hello ", b"chunked ", b"world" * 1000):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif path in ENCODED:
            coding, body = ENCODED[path]()
            self.send(200, body, Content_Encoding=coding)
        elif path == "/huge":  # declares far more than max_bytes; the client must not wait
            self.send(200, b"x" * 65536, Content_Length=str(BIG))
        elif path == "/slow":
            stop.wait(2.0)
            self.send(200, b"late")
        elif path == "/drip":  # each recv is quick, the whole body is not
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            while not stop.wait(0.05):
                self.wfile.write(b"0123456789")
        elif path == "/empty":
            self.send(204, b"", Content_Length="0")
        elif path == "/redirect":
            self.send(302, b"moved", Location="/page?to")
        elif path == "/redirect-chunked":
            self.send_response(301)
            self.send_header("Location", "/page?to")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nmoved\r\n0\r\n\r\n")
        elif path == "/redirect-big":
            self.send(302, b"m" * 200_000, Location="/page?to")
        elif path == "/close":
            self.send(200, b"bye", Connection="close")
            self.close_connection = True
        else:
            self.send(404, b"not found")


ENCODED: dict[str, Callable[[], tuple[str, bytes]]] = {
    "/gzip": lambda: ("gzip", gzip.compress(PAGE)),
    "/deflate": lambda: ("deflate", zlib.compress(PAGE)),
    "/deflate-raw": lambda: ("deflate", zlib.compress(PAGE, wbits=-15)),
    "/br": lambda: ("br", bytes(brotli.compress(PAGE))),
    "/gzip-members": lambda: ("gzip", gzip.compress(PAGE[:100]) + gzip.compress(PAGE[100:])),
    "/gzip-bomb": lambda: ("gzip", gzip_bomb()),
    "/br-bomb": lambda: ("br", brotli_bomb()),
    "/garbage": lambda: ("gzip", b"this is not gzip at all"),
    "/zstd": lambda: ("zstd", b"whatever"),
}


class Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.connections = 0
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="http")
        self.thread.start()
        scheme = "https" if context is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-response are part of the tests

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        with self.lock:  # wake handlers blocked on idle keep-alive connections
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def client() -> Iterator[HTTPClient]:
    c = HTTPClient(connect_timeout=2.0, read_timeout=2.0)
    yield c
    c.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Script], RawServer]]:
    with raw_servers() as start:
        yield start


def get(client: HTTPClient, url: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    kwargs.setdefault("max_bytes", 10_000_000)
    resp = client.get(url, {"User-Agent": "shoal-test"}, **kwargs)  # type: ignore[arg-type]
    return resp.status, resp.headers, resp.body


def error_of(call: Callable[[], object]) -> TransportError:
    with pytest.raises(TransportError) as info:
        call()
    return info.value


# --- framing and keep-alive ---------------------------------------------------------


def test_keep_alive_reuses_one_connection(server: Server, client: HTTPClient) -> None:
    for i in range(20):
        status, headers, body = get(client, server.url(f"/page?{i}"))
        assert (status, body) == (200, page_for(str(i)))
        assert headers["content-type"] == "text/html"
    assert server.connections == 1


def test_chunked_body_with_extensions_and_trailers(server: Server, client: HTTPClient) -> None:
    for _ in range(3):
        status, _, body = get(client, server.url("/chunked"))
        assert (status, body) == (200, b"hello chunked " + b"world" * 1000)
    assert server.connections == 1


def test_connection_close_is_not_pooled(server: Server, client: HTTPClient) -> None:
    assert get(client, server.url("/close"))[2] == b"bye"
    assert get(client, server.url("/close"))[2] == b"bye"
    assert server.connections == 2


def test_204_has_an_empty_body_and_keeps_the_connection(server: Server, client: HTTPClient) -> None:
    assert get(client, server.url("/empty"))[::2] == (204, b"")
    assert get(client, server.url("/page?a"))[2] == page_for("a")
    assert server.connections == 1


def test_redirect_without_body_keeps_the_connection(server: Server, client: HTTPClient) -> None:
    status, headers, body = get(client, server.url("/redirect"), read_body=False)
    assert (status, headers["location"], body) == (302, "/page?to", b"")
    assert get(client, server.url("/page?b"))[2] == page_for("b")
    assert get(client, server.url("/redirect-chunked"), read_body=False)[::2] == (301, b"")
    assert get(client, server.url("/page?b"))[2] == page_for("b")
    assert server.connections == 1
    # A big unwanted body is not worth reading: the connection is dropped instead.
    assert get(client, server.url("/redirect-big"), read_body=False)[::2] == (302, b"")
    assert get(client, server.url("/page?c"))[2] == page_for("c")
    assert server.connections == 2


def test_close_drops_idle_connections(server: Server, client: HTTPClient) -> None:
    get(client, server.url("/page?1"))
    client.close()
    get(client, server.url("/page?2"))
    assert server.connections == 2


def test_idle_origins_are_capped() -> None:
    small = HTTPClient(max_idle_hosts=1)
    one, two = Server(), Server()
    try:
        for srv in (one, two, one):
            get(small, srv.url("/page?x"))
        assert (one.connections, two.connections) == (2, 1)
    finally:
        small.close()
        one.close()
        two.close()


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + PAGE,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PAGE,
    ],
    ids=["http10", "connection-close"],
)
def test_body_read_until_close(raw_server: Callable[..., RawServer], response: bytes) -> None:
    srv = raw_server(respond_once(response))
    client = HTTPClient()
    try:
        for path in ("/a", "/b"):
            assert get(client, srv.url + path)[::2] == (200, PAGE)
        assert srv.connections == 2  # never pooled
    finally:
        client.close()


def test_informational_responses_and_bare_lf_are_handled(
    raw_server: Callable[..., RawServer],
) -> None:
    srv = raw_server(
        respond_once(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    )
    client = HTTPClient()
    try:
        assert get(client, srv.url + "/") == (200, {"content-length": "2"}, b"ok")
    finally:
        client.close()


URLLIB3_ARGS = {"per_host": 2, "connect_timeout": 5.0, "read_timeout": 5.0, "verify_tls": True}


def test_split_packets_and_repeated_headers(raw_server: Callable[..., RawServer]) -> None:
    parts = [
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nVary: x\r\nset-cookie: b=2\r\n",
        b"Vary: y\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"lo\r\n",
        b"6\r\n world\r\n0\r\n\r\n",
    ]

    def script(conn: socket.socket, index: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while read_request(conn):
            for part in parts:
                conn.sendall(part)
                time.sleep(0.01)

    srv = raw_server(script)
    for client in (HTTPClient(), Urllib3Transport(**URLLIB3_ARGS)):
        try:
            for _ in range(2):
                resp = client.get(srv.url + "/x", {}, max_bytes=1000)
                assert (resp.status, resp.body) == (200, b"hello world")
                assert resp.headers["set-cookie"] == "a=1\nb=2"
                assert resp.headers["vary"] == "x, y"
                assert resp.url == srv.url + "/x"
                # The raw list keeps each field line (urllib3 groups them by name).
                raw = [(k.lower(), v) for k, v in resp.raw_headers]
                sent = [
                    ("set-cookie", "a=1"),
                    ("vary", "x"),
                    ("set-cookie", "b=2"),
                    ("vary", "y"),
                    ("transfer-encoding", "chunked"),
                ]
                if isinstance(client, HTTPClient):
                    assert raw == sent
                else:
                    assert sorted(raw) == sorted(sent)
        finally:
            client.close()
    assert srv.connections == 2  # one kept-alive connection per client


# --- decoding and size limits ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/deflate-raw", "/br", "/gzip-members"])
def test_compressed_bodies_are_decoded(server: Server, client: HTTPClient, path: str) -> None:
    assert get(client, server.url(path))[::2] == (200, PAGE)


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/deflate-raw", "/br", "/gzip-members"])
def test_decoding_fed_one_byte_at_a_time(path: str) -> None:
    from shoal.http._response import Body as _Body

    coding, data = ENCODED[path]()
    body = _Body(coding, len(PAGE))
    for i in range(len(data)):
        body.feed(data[i : i + 1])
    assert body.finish() == PAGE


@pytest.mark.parametrize("path", ["/gzip-bomb", "/br-bomb"])
def test_decompression_bomb_is_rejected_without_inflating(
    server: Server, client: HTTPClient, path: str
) -> None:
    ENCODED[path]()  # build the bomb outside the measured window
    tracemalloc.start()
    try:
        err = error_of(lambda: get(client, server.url(path), max_bytes=1_000_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.kind == "too_large"
    assert peak < 8_000_000  # not 50 MB


def test_decoded_size_counts_against_max_bytes(server: Server, client: HTTPClient) -> None:
    assert get(client, server.url("/gzip"), max_bytes=len(PAGE))[2] == PAGE
    assert error_of(lambda: get(client, server.url("/gzip"), max_bytes=len(PAGE) - 1)).kind == (
        "too_large"
    )


def test_content_length_over_max_bytes_is_rejected_early(
    server: Server, client: HTTPClient
) -> None:
    # The server sends 64 KB and then nothing: a client that read on towards max_bytes
    # would end in a read timeout, not in "too_large" naming the declared length.
    err = error_of(lambda: get(client, server.url("/huge"), max_bytes=1_000_000))
    assert err.kind == "too_large" and str(BIG) in err.detail
    assert get(client, server.url("/page?after"))[2] == page_for("after")


@pytest.mark.parametrize("path", ["/garbage", "/zstd"])
def test_undecodable_body_is_a_decode_error(server: Server, client: HTTPClient, path: str) -> None:
    assert error_of(lambda: get(client, server.url(path))).kind == "decode"


# --- timeouts -------------------------------------------------------------------------


def test_slow_server_times_out(server: Server) -> None:
    client = HTTPClient(read_timeout=0.3)
    try:
        # Without the read timeout the server's answer would arrive after 2 s, no error.
        assert error_of(lambda: get(client, server.url("/slow"))).kind == "timeout"
    finally:
        client.close()


def test_expired_deadline_fails_fast(server: Server, client: HTTPClient) -> None:
    err = error_of(lambda: get(client, server.url("/page?x"), deadline=time.monotonic() - 1))
    assert err.kind == "timeout"
    assert server.connections == 0


def test_deadline_bounds_a_trickling_body(server: Server, client: HTTPClient) -> None:
    # Every recv is quick (a piece each 50 ms), so only the deadline can end this early;
    # without it the whole body arrives after 5 s and the request succeeds.
    err = error_of(lambda: get(client, server.url("/drip"), deadline=time.monotonic() + 0.3))
    assert err.kind == "timeout"


class _Deaf:
    """Accepts one connection and never reads from it: a request larger than the socket
    buffers can never be sent in full."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="deaf")
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        self.done.wait(60)
        conn.close()

    def close(self) -> None:
        self.done.set()
        self.thread.join(10)
        self.sock.close()


@pytest.mark.parametrize("on_worker_thread", [False, True])
def test_the_deadline_bounds_sending_the_request(on_worker_thread: bool) -> None:
    # Kernel send timeouts apply per send() call (worker threads), Python's to the whole
    # sendall (main thread): either way a partial send must stop at the deadline, long
    # before the 30 s read timeout would run out once, let alone once per partial send.
    deaf = _Deaf()
    client = HTTPClient(read_timeout=30)
    outcome: list[object] = []

    def request() -> None:
        started = time.monotonic()
        try:
            client.get(deaf.url, {"X-Big": "a" * (8 << 20)}, max_bytes=100, deadline=started + 0.3)
        except TransportError as exc:
            outcome.append(exc.kind)
        outcome.append(time.monotonic() - started)

    try:
        if on_worker_thread:
            worker = threading.Thread(target=request, name="sender")
            worker.start()
            worker.join(60)
        else:
            request()
    finally:
        deaf.close()
        client.close()
    kind, elapsed = outcome
    assert kind == "timeout"
    assert isinstance(elapsed, float) and elapsed < 15  # not 30 s per partial send


def test_signals_do_not_restart_the_read_timeout(raw_server: Callable[..., RawServer]) -> None:
    # On the main thread a signal interrupts recv() and Python retries it; the timeout
    # must keep counting down across retries (the server answers only after 6 s).
    hold = threading.Event()
    srv = raw_server(lambda conn, i: (read_request(conn), hold.wait(6)))
    client = HTTPClient(read_timeout=0.5)
    previous = signal.signal(signal.SIGALRM, lambda *args: None)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    try:
        started = time.monotonic()
        assert error_of(lambda: get(client, srv.url + "/")).kind == "timeout"
        assert time.monotonic() - started < 4  # 0.5 s, not restarted by each signal
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        hold.set()
        client.close()


# --- stale connections and hostile servers ------------------------------------------


RESPONSE_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_stale_pooled_connection_is_retried_once(raw_server: Callable[..., RawServer]) -> None:
    # Each connection answers one request, then the server closes it: the pooled
    # connection is dead by the time the client reuses it.
    srv = raw_server(respond_once(RESPONSE_OK))
    client = HTTPClient()
    try:
        for _ in range(3):
            assert get(client, srv.url + "/")[2] == b"ok"
        assert srv.connections == 3
    finally:
        client.close()


def test_no_retry_once_a_response_byte_arrived(raw_server: Callable[..., RawServer]) -> None:
    def script(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(RESPONSE_OK)
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")

    srv = raw_server(script)
    client = HTTPClient()
    try:
        get(client, srv.url + "/")
        assert error_of(lambda: get(client, srv.url + "/")).kind == "connection"
        # A retry would have connected before get() returned, so ahead of this probe in
        # the server's accept queue: the probe being only the second connection shows
        # that there was none.
        assert get(client, srv.url + "/")[2] == b"ok"
        assert srv.connections == 2
    finally:
        client.close()


def test_fresh_connection_closed_without_response(raw_server: Callable[..., RawServer]) -> None:
    srv = raw_server(lambda conn, index: None)
    client = HTTPClient()
    try:
        assert error_of(lambda: get(client, srv.url + "/")).kind == "connection"
        assert srv.connections == 1
    finally:
        client.close()


@pytest.mark.parametrize(
    "response",
    [
        b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Flood: 1\r\n" * 300 + b"Content-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Huge: " + b"a" * 70_000,  # and no end of head
    ],
    ids=["status", "code", "no-code", "length", "two-lengths", "chunk", "flood", "huge-head"],
)
def test_malformed_responses_are_protocol_errors(
    raw_server: Callable[..., RawServer], response: bytes
) -> None:
    def script(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(response)
        conn.recv(1)  # hold the connection open until the client gives up

    srv = raw_server(script)
    client = HTTPClient(read_timeout=2.0)
    try:
        assert error_of(lambda: get(client, srv.url + "/")).kind == "protocol"
    finally:
        client.close()


def test_truncated_body_is_a_connection_error(raw_server: Callable[..., RawServer]) -> None:
    srv = raw_server(respond_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"))
    client = HTTPClient()
    try:
        assert error_of(lambda: get(client, srv.url + "/")).kind == "connection"
    finally:
        client.close()


def test_connection_refused_and_bad_requests(client: HTTPClient) -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    assert error_of(lambda: get(client, f"http://127.0.0.1:{port}/")).kind == "connection"
    assert error_of(lambda: get(client, "ftp://127.0.0.1/")).kind == "protocol"
    assert error_of(lambda: get(client, "http://127.0.0.1:99999/")).kind == "protocol"
    injected = lambda: client.get(  # noqa: E731
        f"http://127.0.0.1:{port}/", {"X": "a\r\nEvil: 1"}, max_bytes=10
    )
    assert error_of(injected).kind == "protocol"


def test_both_transports_fail_with_one_error_type() -> None:
    """The contract: each client, built by name, raises a ShoalError whose kind is an
    ErrorKind, never its library's own exception."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again: connecting is refused
    assert TRANSPORTS == ("native", "urllib3")
    for name, kind in (("native", HTTPClient), ("urllib3", Urllib3Transport)):
        transport = make_transport(name, connect_timeout=5.0, read_timeout=5.0)
        try:
            assert isinstance(transport, kind)
            error = error_of(
                lambda t=transport: t.get(f"http://127.0.0.1:{port}/", {}, max_bytes=9)
            )
            assert isinstance(error, shoal.ShoalError)
            assert error.kind is ErrorKind.CONNECTION, name
        finally:
            transport.close()
    with pytest.raises(ValueError, match="unknown transport"):
        make_transport("curl")
    with pytest.raises(ValueError, match="neither proxies nor deny_private"):
        make_transport("urllib3", deny_private=True)


# --- TLS ------------------------------------------------------------------------------


def test_tls(certificate: tuple[Path, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    srv = Server(context)
    insecure, strict = HTTPClient(verify_tls=False), HTTPClient()
    try:
        for i in range(3):
            assert get(insecure, srv.url(f"/page?{i}"))[2] == page_for(str(i))
        assert get(insecure, srv.url("/gzip"))[2] == PAGE
        assert srv.connections == 1
        assert error_of(lambda: get(strict, srv.url("/page?x"))).kind == "tls"
    finally:
        insecure.close()
        strict.close()
        srv.close()


def _tls_server(cert: tuple[Path, Path]) -> Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    return Server(context)


def _verifying_client(transport: str) -> HTTPClient | Urllib3Transport:
    if transport == "urllib3":
        return Urllib3Transport(per_host=8, connect_timeout=10, read_timeout=30, verify_tls=True)
    return HTTPClient()


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_tls_verifies_a_certificate_from_a_trusted_ca(
    local_ca: LocalCA, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    srv = _tls_server(local_ca.local)
    port = srv.server_address[1]
    untrusting = _verifying_client(transport)
    try:
        # Not trusted yet: the chain ends at an unknown CA.
        refused = error_of(lambda: get(untrusting, srv.url("/page?0")))
        assert refused.kind == "tls" and "certificate verify failed" in refused.detail
        # OpenSSL reads SSL_CERT_FILE when a client makes its TLS context (the first https
        # request): the way to make shoal trust a private CA.
        monkeypatch.setenv("SSL_CERT_FILE", str(local_ca.ca))
        for url in (srv.url("/page?1"), f"https://localhost:{port}/page?2"):
            trusting = _verifying_client(transport)
            try:
                assert get(trusting, url)[::2] == (200, page_for(url[-1]))
            finally:
                trusting.close()
    finally:
        untrusting.close()
        srv.close()


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_tls_refuses_a_trusted_certificate_for_another_name(
    local_ca: LocalCA, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(local_ca.ca))
    srv = _tls_server(local_ca.other)  # signed by the trusted CA, but for other.test
    client = _verifying_client(transport)
    try:
        error = error_of(lambda: get(client, srv.url("/page?0")))
        assert error.kind == "tls" and "match" in error.detail, error
    finally:
        client.close()
        srv.close()


# --- concurrency ----------------------------------------------------------------------


def test_concurrent_use_from_16_threads(server: Server) -> None:
    client = HTTPClient(per_host=8)

    def worker(n: int) -> int:
        for i in range(50):
            query = f"{n}-{i}"
            path = "/chunked" if i % 10 == 0 else f"/page?{query}"
            status, _, body = get(client, server.url(path))
            expected = b"hello chunked " + b"world" * 1000 if i % 10 == 0 else page_for(query)
            assert (status, body) == (200, expected)
        return n

    try:
        with ThreadPoolExecutor(16) as pool:
            assert sorted(pool.map(worker, range(16))) == list(range(16))
        assert server.connections < 16 * 50
        assert len(client._idle[server.base]) <= 8
    finally:
        client.close()
