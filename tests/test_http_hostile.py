"""Hostile servers against the HTTP client, on raw sockets: responses sent unasked on
kept-alive connections (desync), framing tricks and smuggling (RFC 9112), drips and
stalls, and deny_private. Every failure must be an TransportError with a kind, and no
request may ever get bytes meant as another response."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rawserver import RawServer, Script, raw_servers, read_request, respond_always
from shoal.crawler import Crawler
from shoal.http import HTTPClient, TransportError
from shoal.http._dns import is_public_address

Start = Callable[[Script], RawServer]


@pytest.fixture
def raw_server() -> Iterator[Start]:
    with raw_servers() as start:
        yield start


@pytest.fixture
def client() -> Iterator[HTTPClient]:
    c = HTTPClient(connect_timeout=2.0, read_timeout=2.0)
    yield c
    c.close()


def path_of(request: bytes) -> str:
    return request.split(b" ", 2)[1].decode()


def own_answer(request: bytes) -> bytes:
    """Each request's answer names its path: a body for another path is a desync."""
    body = f"answer for {path_of(request)}".encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def get(client: HTTPClient, url: str, **kwargs: object) -> tuple[int, bytes]:
    kwargs.setdefault("max_bytes", 1_000_000)
    resp = client.get(url, {"User-Agent": "shoal-test"}, **kwargs)  # type: ignore[arg-type]
    return resp.status, resp.body


def kind_of(call: Callable[[], object]) -> str:
    with pytest.raises(TransportError) as info:
        call()
    return info.value.kind


# --- desync on kept-alive connections -----------------------------------------------

INJECTED = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n<a href=/evil>"

FIRST_RESPONSES = {
    "200": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n",
    "204": b"HTTP/1.1 204 No Content\r\n\r\n",
    "304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",  # no body, by status
}


@pytest.mark.parametrize("late", [INJECTED, b"late body bytes"], ids=["response", "junk"])
@pytest.mark.parametrize("first", list(FIRST_RESPONSES), ids=list(FIRST_RESPONSES))
def test_bytes_sent_late_on_an_idle_connection_are_never_the_next_answer(
    raw_server: Start, client: HTTPClient, first: str, late: bytes
) -> None:
    # The server answers, waits until the client has that answer (so the stray bytes
    # cannot arrive with it), then sends more, unasked, on the kept-alive connection.
    answered, sent = threading.Event(), threading.Event()

    def script(conn: socket.socket, index: int) -> None:
        if index == 0:
            read_request(conn)
            conn.sendall(FIRST_RESPONSES[first])
            answered.wait(5)
            conn.sendall(late)
            sent.set()
        respond_always(own_answer)(conn, index)

    srv = raw_server(script)
    status, _ = get(client, srv.url + "/a")
    assert status == int(first) if first.isdigit() else status == 200
    answered.set()
    assert sent.wait(5)
    assert get(client, srv.url + "/b") == (200, b"answer for /b")
    assert srv.connections == 2  # the poisoned connection was dropped, not reused


def test_bytes_right_after_a_body_close_the_connection(
    raw_server: Start, client: HTTPClient
) -> None:
    # The stray response arrives in the same packet as the real one.
    def script(conn: socket.socket, index: int) -> None:
        if index == 0:
            read_request(conn)
            conn.sendall(FIRST_RESPONSES["200"] + INJECTED)
        respond_always(own_answer)(conn, index)

    srv = raw_server(script)
    assert get(client, srv.url + "/a") == (200, b"first")
    assert get(client, srv.url + "/b") == (200, b"answer for /b")
    assert srv.connections == 2


def test_a_clean_connection_is_still_reused(raw_server: Start, client: HTTPClient) -> None:
    srv = raw_server(respond_always(own_answer))
    for i in range(5):
        assert get(client, srv.url + f"/{i}") == (200, f"answer for /{i}".encode())
    assert srv.connections == 1


# --- framing (RFC 9112) and smuggling -------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\n"
CHUNKED = OK + b"Transfer-Encoding: chunked\r\n\r\n"
OK_CHUNKS = b"2\r\nok\r\n0\r\n\r\n"

PROTOCOL_ERRORS = {
    "cl-and-te": OK
    + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "te-and-cl": OK
    + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "te-obs-fold": OK + b"Transfer-Encoding:\r\n chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "obs-fold": OK + b"X-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "two-lengths": OK + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "same-two-lengths": OK + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "length-list": OK + b"Content-Length: 2, 2\r\n\r\nok",
    "negative-length": OK + b"Content-Length: -1\r\n\r\nok",
    "plus-length": OK + b"Content-Length: +2\r\n\r\nok",
    "garbage-length": OK + b"Content-Length: 0x2\r\n\r\nok",
    "overflow-length": OK + b"Content-Length: 99999999999999999999999\r\n\r\nok",
    "space-before-colon": OK + b"Content-Length : 2\r\n\r\nok",
    "te-gzip-chunked": OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "te-gzip": OK + b"Transfer-Encoding: gzip\r\n\r\nok",
    "te-chunked-twice": OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-identity": OK + b"Transfer-Encoding: identity\r\n\r\nok",
    "chunk-size-overflow": CHUNKED + b"1000000000000000002\r\nok\r\n0\r\n\r\n",
    "chunk-size-garbage": CHUNKED + b"zz\r\nok\r\n0\r\n\r\n",
    "chunk-size-negative": CHUNKED + b"-2\r\nok\r\n0\r\n\r\n",
    "chunk-ext-bad": CHUNKED + b'2;"\r\nok\r\n0\r\n\r\n',
    "chunk-ext-space": CHUNKED + b"2 ; a=b c\r\nok\r\n0\r\n\r\n",
    "chunk-too-long": CHUNKED + b"2\r\nokX\r\n0\r\n\r\n",
    "chunk-no-crlf": CHUNKED + b"2\r\nok0\r\n\r\n",
    "bare-cr": b"HTTP/1.1 200 OK\rContent-Length: 2\r\r\nok",
    "nul-in-value": OK + b"X: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "line-without-colon": OK + b"not a header\r\nContent-Length: 2\r\n\r\nok",
    "http2-status-line": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
    "huge-trailer": CHUNKED + b"2\r\nok\r\n0\r\nX-T: " + b"t" * 200_000 + b"\r\n\r\n",
    "endless-chunk-ext": CHUNKED + b"2;a=" + b"x" * 200_000 + b"\r\nok\r\n0\r\n\r\n",
}


def hold_after(response: bytes) -> Script:
    """Send ``response`` and keep the connection open: the client must reject it from
    what it received, not wait for an end of stream."""

    def script(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(response)
        conn.recv(1)

    return script


@pytest.mark.parametrize("name", list(PROTOCOL_ERRORS))
def test_framing_a_strict_parser_refuses_is_a_protocol_error(
    raw_server: Start, client: HTTPClient, name: str
) -> None:
    srv = raw_server(hold_after(PROTOCOL_ERRORS[name]))
    assert kind_of(lambda: get(client, srv.url + "/")) == "protocol"
    assert srv.connections == 1


def test_a_refused_response_does_not_leave_its_connection_pooled(
    raw_server: Start, client: HTTPClient
) -> None:
    def script(conn: socket.socket, index: int) -> None:
        if index == 0:
            read_request(conn)
            conn.sendall(PROTOCOL_ERRORS["cl-and-te"] + INJECTED)
        respond_always(own_answer)(conn, index)

    srv = raw_server(script)
    assert kind_of(lambda: get(client, srv.url + "/a")) == "protocol"
    assert get(client, srv.url + "/b") == (200, b"answer for /b")
    assert srv.connections == 2


@pytest.mark.parametrize(
    "response",
    [
        OK + b"Content-Length: 10\r\n\r\nshort",
        CHUNKED + b"a\r\nshort",
        CHUNKED + b"2\r\nok\r\n0\r\n",  # no final CRLF
        CHUNKED + b"2\r\nok\r\n",  # no last chunk
        OK + b"Content-Length: 2\r\nX-Cut: ",  # inside the head
    ],
    ids=["length", "mid-chunk", "no-final-crlf", "no-last-chunk", "head"],
)
def test_a_truncated_response_is_an_error_not_a_partial_page(
    raw_server: Start, client: HTTPClient, response: bytes
) -> None:
    srv = raw_server(lambda conn, index: (read_request(conn), conn.sendall(response)))
    assert kind_of(lambda: get(client, srv.url + "/")) == "connection"


def test_a_head_ending_in_lf_crlf_is_read_at_once(raw_server: Start) -> None:
    # The last header line ends with a bare LF, the blank line with CRLF; the server
    # then holds the connection. Reading the head must not wait for the read timeout.
    srv = raw_server(hold_after(OK + b"Content-Length: 2\n\r\nok"))
    client = HTTPClient(read_timeout=30)
    try:
        assert get(client, srv.url + "/", deadline=time.monotonic() + 10) == (200, b"ok")
    finally:
        client.close()


def test_informational_heads_lend_no_fields_to_the_response(
    raw_server: Start, client: HTTPClient
) -> None:
    pieces = [
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\nX-Early: 1\r\n\r\n",
        b"\r\nHTTP/1.1 100 Continue\n\n",
        b"HTTP/1.1 200 OK\r\nX-Final: 1\r\nContent-Len",
        b"gth: 2\r\n\r\nok",
    ]

    def script(conn: socket.socket, index: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        read_request(conn)
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(0.01)  # apart, most of the time: either way must work
        conn.recv(1)

    srv = raw_server(script)
    resp = client.get(srv.url + "/", {}, max_bytes=100)
    assert (resp.status, resp.body) == (200, b"ok")
    assert resp.headers == {"x-final": "1", "content-length": "2"}


def test_http10_with_transfer_encoding_is_read_then_closed(
    raw_server: Start, client: HTTPClient
) -> None:
    answer = (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    srv = raw_server(respond_always(answer))
    assert get(client, srv.url + "/") == (200, b"ok")
    assert get(client, srv.url + "/") == (200, b"ok")
    assert srv.connections == 2  # RFC 9112 section 6.1: never reused


def test_http10_keep_alive_is_honoured(raw_server: Start, client: HTTPClient) -> None:
    answer = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    srv = raw_server(respond_always(answer))
    for _ in range(3):
        assert get(client, srv.url + "/") == (200, b"ok")
    assert srv.connections == 1


def test_trailers_and_extensions_within_bounds_are_accepted(
    raw_server: Start, client: HTTPClient
) -> None:
    # Trailer fields are skipped unbuffered: many small ones are harmless; their bytes
    # in a row are bounded like a head's (see huge-trailer above).
    trailers = b"X-T: 1\r\n" * 500
    answer = CHUNKED + b'2;a=b;c="d e"\r\nok\r\n0\r\n' + trailers + b"\r\n"
    srv = raw_server(respond_always(answer))
    for _ in range(2):
        assert get(client, srv.url + "/") == (200, b"ok")
    assert srv.connections == 1


def test_many_tiny_chunks_are_fine(raw_server: Start, client: HTTPClient) -> None:
    body = b"".join(b"1\r\n%c\r\n" % (97 + i % 26) for i in range(50_000))
    srv = raw_server(respond_always(CHUNKED + body + b"0\r\n\r\n"))
    status, got = get(client, srv.url + "/")
    assert status == 200 and len(got) == 50_000


# --- drips and stalls -----------------------------------------------------------------


def drip(prefix: bytes, piece: bytes, pace: float = 0.02) -> Script:
    """Send ``prefix``, then ``piece`` every ``pace`` seconds, for up to a minute."""

    def script(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(prefix)
        for _ in range(int(60 / pace)):
            time.sleep(pace)
            conn.sendall(piece)

    return script


@pytest.mark.parametrize(
    "script",
    [
        drip(b"", b"H"),  # the status line, a byte at a time
        drip(OK, b"X-Drip: 1\r\n"),  # headers without end (bounded by count, too)
        drip(OK + b"Content-Length: 100000\r\n\r\n", b"x"),
        drip(CHUNKED, b"1\r\nx\r\n"),
        drip(CHUNKED + b"1;e=", b"x"),  # a chunk extension without end
        drip(CHUNKED + b"1\r\nx\r\n0\r\n", b"X-T: 1\r\n"),  # trailers without end
        drip(OK + b"Content-Length: 1\r\n", b""),  # a stall inside the head
    ],
    ids=["status", "headers", "body", "chunks", "chunk-ext", "trailers", "stall"],
)
def test_drips_and_stalls_end_at_the_deadline(raw_server: Start, script: Script) -> None:
    srv = raw_server(script)
    client = HTTPClient(read_timeout=1.0)
    try:
        started = time.monotonic()
        kind = kind_of(lambda: get(client, srv.url + "/", deadline=started + 1.0))
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert kind in ("timeout", "protocol")  # a header drip may hit the count first
    assert elapsed < 20  # the drip goes on for a minute


def test_a_crawl_records_a_drip_as_a_timeout(raw_server: Start, tmp_path: Path) -> None:
    srv = raw_server(drip(OK + b"Content-Type: text/html\r\nContent-Length: 99999\r\n\r\n", b"x"))
    out = tmp_path / "out.jsonl"
    Crawler(
        srv.url + "/", output=str(out), timeout=0.5, retries=0, robots=False, progress=False
    ).run()
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["error"] == "timeout"


# --- deny_private ---------------------------------------------------------------------

ADDRESSES = {
    # public
    "8.8.8.8": True,
    "1.1.1.1": True,
    "2001:4860:4860::8888": True,
    "::ffff:8.8.8.8": True,
    "2002:808:808::1": True,  # 6to4 of a public address
    "64:ff9b::808:808": True,  # NAT64 of a public address
    # not public
    "127.0.0.1": False,
    "127.1.2.3": False,
    "10.0.0.1": False,
    "172.16.5.4": False,
    "192.168.1.1": False,
    "169.254.169.254": False,  # cloud metadata
    "100.64.0.1": False,  # shared address space (carrier-grade NAT)
    "0.0.0.0": False,
    "224.0.0.1": False,
    "239.255.255.250": False,
    "255.255.255.255": False,
    "240.0.0.1": False,
    "192.0.2.1": False,
    "198.18.0.1": False,
    "::1": False,
    "::": False,
    "fe80::1%eth0": False,
    "fc00::1": False,
    "fd12:3456::1": False,
    "fec0::1": False,
    "ff02::1": False,
    "2001:db8::1": False,
    "::ffff:127.0.0.1": False,  # IPv4-mapped
    "::ffff:10.0.0.1": False,
    "::127.0.0.1": False,  # IPv4-compatible (deprecated)
    "2002:7f00:1::": False,  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1": False,  # NAT64 of 10.0.0.1
    "not an address": False,
}


@pytest.mark.parametrize("address", list(ADDRESSES))
def test_the_address_classifier(address: str) -> None:
    assert is_public_address(address) is ADDRESSES[address]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_deny_private_refuses_loopback(raw_server: Start, host: str) -> None:
    srv = raw_server(respond_always(own_answer))
    url = f"http://{host}:{srv.port}/"
    open_client, strict = HTTPClient(), HTTPClient(deny_private=True)
    try:
        if host == "localhost":  # may resolve to ::1 first, where nothing listens
            try:
                get(open_client, url)
            except TransportError:
                pytest.skip("localhost does not reach 127.0.0.1 here")
        else:
            assert get(open_client, url) == (200, b"answer for /")
        with pytest.raises(TransportError) as info:
            get(strict, url)
        before = srv.connections
        with pytest.raises(TransportError) as info:
            get(strict, url)
        assert info.value.kind == "blocked" and host in info.value.detail
    finally:
        open_client.close()
        strict.close()
    assert srv.connections == before  # refused before connecting


def test_deny_private_also_checks_the_target_through_a_proxy(raw_server: Start) -> None:
    # The proxy itself is on 127.0.0.1 (the user chose it); the target is refused
    # before anything is sent to the proxy.
    from shoal.http._proxy import ProxyRules

    proxy = raw_server(respond_always(own_answer))
    client = HTTPClient(proxies=ProxyRules(http=proxy.url), deny_private=True)
    try:
        with pytest.raises(TransportError) as info:
            get(client, "http://127.0.0.2:8080/")
        assert info.value.kind == "blocked"
    finally:
        client.close()
    assert proxy.connections == 0


def test_deny_private_in_a_crawl_records_blocked(raw_server: Start, tmp_path: Path) -> None:
    srv = raw_server(respond_always(own_answer))
    out = tmp_path / "out.jsonl"
    result = Crawler(
        srv.url + "/", output=str(out), deny_private=True, progress=False, robots=False
    ).run()
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["error"] == "blocked" and result.errors["blocked"] == 1
    assert srv.connections == 0


def test_deny_private_on_the_command_line(raw_server: Start, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from shoal.cli._commands import cli

    srv = raw_server(respond_always(own_answer))
    out = tmp_path / "out.jsonl"
    args = ["crawl", srv.url + "/", "-o", str(out), "--no-state", "--no-robots", "--proxy", "none"]
    result = CliRunner().invoke(cli, [*args, "--deny-private"])
    assert result.exit_code == 1 and "blocked 1" in result.stderr  # 1: not one page fetched
    assert json.loads(out.read_text())["error"] == "blocked" and srv.connections == 0
    # And without the flag the page is fetched (--overwrite: the first run's output is
    # not this crawl's, since --no-state keeps no record of whose it is).
    result = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text())["error"] is None and srv.connections == 1


@pytest.mark.parametrize(
    "body",
    [b"Content-Length: 5\r\n\r\nmo", b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"],
    ids=["stalled", "bad-chunks"],
)
def test_a_redirect_whose_unwanted_body_fails_still_redirects(
    raw_server: Start, body: bytes
) -> None:
    # read_body=False (a redirect hop): the body is read only to keep the connection;
    # if it stalls or is malformed, the redirect stands and the connection goes.
    def script(conn: socket.socket, index: int) -> None:
        if index == 0:
            read_request(conn)
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /next\r\n" + body)
            conn.recv(1)
            return
        respond_always(own_answer)(conn, index)

    srv = raw_server(script)
    client = HTTPClient(read_timeout=0.3)
    try:
        resp = client.get(srv.url + "/", {}, max_bytes=100, read_body=False)
        assert (resp.status, resp.headers["location"], resp.body) == (302, "/next", b"")
        assert get(client, srv.url + "/next") == (200, b"answer for /next")
    finally:
        client.close()
    assert srv.connections == 2


def test_a_connect_answer_ending_in_lf_crlf_opens_the_tunnel(raw_server: Start) -> None:
    # The proxy's answer ends "\n\r\n"; it then waits for the TLS hello and hangs up. A
    # client still waiting for the end of the answer would never send the hello.
    from shoal.http._proxy import ProxyRules

    def script(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\nX-Via: test\n\r\n")
        conn.recv(65536)  # the TLS ClientHello

    proxy = raw_server(script)
    client = HTTPClient(proxies=ProxyRules.single(proxy.url), connect_timeout=10)
    try:
        kind = kind_of(lambda: get(client, "https://127.0.0.1:9/"))
    finally:
        client.close()
    assert kind in ("tls", "connection")  # the handshake failed: the tunnel was open


# --- robots.txt larger than --max-bytes, or endless -----------------------------------

ROBOTS_HEAD = b"User-agent: *\nDisallow: /private\n"
ROBOTS_PAD = b"# " + b"x" * 60 + b"\n"  # a comment line: rules stay the same however long


def endless(head: bytes, framing: str, pad_line: bytes = ROBOTS_PAD) -> Script:
    """Answer with a body that starts with ``head`` and never ends (until the client
    hangs up, or the script's 3 s socket timeout): bounded only by the client's limit."""

    def script(conn: socket.socket, index: int) -> None:
        while request := read_request(conn):
            if path_of(request) != "/robots.txt":
                body = b"<html><a href=/private>p</a> <a href=/ok>o</a></html>"
                conn.sendall(OK + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            pad = pad_line * 1000
            if framing == "length":
                conn.sendall(OK + b"Content-Length: 1000000000\r\n\r\n" + head)
                piece = pad
            elif framing == "chunked":
                conn.sendall(CHUNKED + b"%x\r\n%s\r\n" % (len(head), head))
                piece = b"%x\r\n%s\r\n" % (len(pad), pad)
            elif framing == "gzip":
                import zlib

                z = zlib.compressobj(wbits=31)
                conn.sendall(OK + b"Content-Encoding: gzip\r\nConnection: close\r\n\r\n")
                conn.sendall(z.compress(head) + z.flush(zlib.Z_SYNC_FLUSH))
                # One compressed piece sent again and again: an endless, valid deflate stream.
                piece = z.compress(pad) + z.flush(zlib.Z_SYNC_FLUSH)
            else:  # "close": the body runs until the connection closes
                conn.sendall(OK + b"Connection: close\r\n\r\n" + head)
                piece = pad
            for _ in range(100_000):  # ~6 GB: never reached
                conn.sendall(piece)
            return

    return script


@pytest.mark.parametrize("framing", ["length", "chunked", "close", "gzip"])
def test_truncate_cuts_an_endless_body_at_max_bytes(raw_server: Start, framing: str) -> None:
    srv = raw_server(endless(ROBOTS_HEAD, framing))
    client = HTTPClient(read_timeout=2.0)
    try:
        with pytest.raises(TransportError) as info:  # without truncate: the error it was
            client.get(srv.url + "/robots.txt", {}, max_bytes=10_000)
        assert info.value.kind == "too_large"
        resp = client.get(srv.url + "/robots.txt", {}, max_bytes=10_000, truncate=True)
        assert resp.truncated and len(resp.body) == 10_000
        assert resp.body.startswith(ROBOTS_HEAD)
        again = client.get(srv.url + "/", {}, max_bytes=10_000, truncate=True)
        assert again.status == 200 and not again.truncated  # a new connection, clean
    finally:
        client.close()


def test_urllib3_truncates_too(raw_server: Start) -> None:
    from shoal.http._urllib3 import Urllib3Transport

    srv = raw_server(endless(ROBOTS_HEAD, "length"))
    transport = Urllib3Transport(per_host=2, connect_timeout=2.0, read_timeout=2.0, verify_tls=True)
    try:
        resp = transport.get(srv.url + "/robots.txt", {}, max_bytes=10_000, truncate=True)
        assert resp.truncated and len(resp.body) == 10_000
        assert resp.body.startswith(ROBOTS_HEAD)
    finally:
        transport.close()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_endless_robots_txt_is_read_to_its_limit_and_obeyed(
    raw_server: Start, tmp_path: Path, framing: str
) -> None:
    srv = raw_server(endless(ROBOTS_HEAD, framing))
    out = tmp_path / "out.jsonl"
    result = Crawler(srv.url + "/", output=str(out), retries=0, progress=False).run()
    urls = sorted(json.loads(line)["url"] for line in out.read_text().splitlines())
    assert urls == [srv.url + "/", srv.url + "/ok"]  # /private: disallowed by its start
    assert result.robots_denied == 1 and result.failed == 0 and result.pending == 0


@pytest.mark.parametrize("eol", [b"\r", b"\r\n"])
def test_an_endless_robots_txt_with_cr_line_ends_keeps_its_rules(
    raw_server: Start, tmp_path: Path, eol: bytes
) -> None:
    """CR alone ends a line too (RFC 9309, and protego reads it so): the cut keeps the
    whole lines before it, never an empty file that would allow everything."""
    head = ROBOTS_HEAD.replace(b"\n", eol)
    srv = raw_server(endless(head, "length", ROBOTS_PAD.replace(b"\n", eol)))
    out = tmp_path / "out.jsonl"
    result = Crawler(srv.url + "/", output=str(out), retries=0, progress=False).run()
    urls = sorted(json.loads(line)["url"] for line in out.read_text().splitlines())
    assert urls == [srv.url + "/", srv.url + "/ok"]  # /private: disallowed by its start
    assert result.robots_denied == 1 and result.failed == 0 and result.pending == 0


def test_a_robots_txt_with_no_line_break_in_its_limit_disallows_all(tmp_path: Path) -> None:
    """A first line longer than the limit: nothing whole to obey, and rules may follow.
    Not allow-all: the host's URLs are skipped as disallowed, and the summary says why."""
    from shoal.crawler._robots import MAX_ROBOTS_BYTES
    from sites import Site, html

    robots = "# " + "x" * (600 * 1024) + "\nUser-agent: *\nDisallow: /private\n"
    site = Site({"/": html("home", "/ok"), "/ok": html("ok"), "/robots.txt": robots})
    out = tmp_path / "out.jsonl"
    with site:
        result = Crawler(site.url("/"), output=str(out), progress=False).run()
        again = Crawler(site.url("/"), output=str(out), progress=False).run()
    assert out.read_text() == ""
    assert result.robots_denied == 1 and result.ok == 0 and result.pending == 0
    assert site.count("/") == 0 and site.count("/ok") == 0 and site.count("/robots.txt") == 1
    (note,) = [n for n in result.notes if "no line break" in n]
    assert f"first {MAX_ROBOTS_BYTES // 1024} KiB" in note and "disallowed" in note
    assert again.already_complete and again.ok == 0


def test_robots_txt_larger_than_max_bytes_is_obeyed_and_the_crawl_completes(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from shoal.cli._commands import cli
    from sites import Site, html

    robots = ROBOTS_HEAD + ROBOTS_PAD * 3000  # ~190 KB: over --max-bytes, under 500 KiB
    site = Site(
        {
            "/": html("home", "/private", "/ok"),
            "/ok": html("ok"),
            "/private": html("private"),
            "/robots.txt": robots.decode(),
        }
    )
    out = tmp_path / "out.jsonl"
    args = ["crawl", "", "-o", str(out), "--max-bytes", "100000", "--proxy", "none"]
    with site:
        args[1] = site.url("/")
        first = CliRunner().invoke(cli, args)
        second = CliRunner().invoke(cli, args)  # a rerun finds nothing left to do
    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 0, second.stderr
    urls = sorted(json.loads(line)["url"] for line in out.read_text().splitlines())
    assert urls == [site.url("/"), site.url("/ok")]
    assert site.count("/private") == 0 and site.count("/robots.txt") == 1


def test_a_cut_robots_txt_obeys_whole_lines_only() -> None:
    from shoal.crawler._fetch import Fetched
    from shoal.crawler._robots import MAX_ROBOTS_BYTES, RobotsRules

    body = b"User-agent: *\nDisallow: /a\n" + b"#" * (MAX_ROBOTS_BYTES - 40) + b"\nDisallow: /"
    cut = body[:MAX_ROBOTS_BYTES]  # "Disallow: /" as cut would disallow everything
    fetched = Fetched("http://h/robots.txt", "http://h/robots.txt", 200, body=cut, truncated=True)
    rules = RobotsRules.from_fetch(fetched)
    assert not rules.allowed("http://h/a", "shoal") and rules.allowed("http://h/b", "shoal")


def test_a_dripping_robots_txt_ends_at_the_timeout(raw_server: Start, tmp_path: Path) -> None:
    srv = raw_server(drip(OK + b"Content-Length: 99999\r\n\r\n" + ROBOTS_HEAD, ROBOTS_PAD))
    out = tmp_path / "out.jsonl"
    Crawler(srv.url + "/", output=str(out), timeout=0.5, retries=0, progress=False).run()
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    # Unreachable, as RFC 9309 says: the host's URLs are held back for the next run.
    assert record["error"] == "timeout" and "robots.txt" in record["error_detail"]
