"""Forward proxies: plain HTTP in absolute form, HTTPS through CONNECT, credentials,
no_proxy, the environment, and a clear error for a proxy that is down or refuses.

The proxy is a real one on 127.0.0.1: it forwards GETs to the origin with http.client
and splices CONNECT tunnels byte for byte, and logs every request line it was sent.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import LocalCA
from shoal.http import HTTPClient, TransportError
from shoal.http._proxy import Proxy, ProxyRules
from sites import Site, html

CREDENTIALS = "Basic dXNlcjpwIHc="  # user:"p w"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: ForwardProxy
    protocol_version = "HTTP/1.1"

    def _authorized(self) -> bool:
        self.server.log.append(
            (self.requestline, self.headers.get("Proxy-Authorization"), self.headers.get("Host"))
        )
        if self.server.require is None or self.headers.get("Proxy-Authorization") == (
            self.server.require
        ):
            return True
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        target = urlsplit(self.path)
        assert target.scheme == "http", self.path  # absolute form, as proxies expect
        origin = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            origin.request("GET", path, headers={"Host": self.headers.get("Host", "")})
            reply = origin.getresponse()
            body = reply.read()
        finally:
            origin.close()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:
        if not self._authorized():
            return
        host, _, port = self.path.rpartition(":")
        host = self.server.hosts.get(host, host.strip("[]"))
        upstream = socket.create_connection((host, int(port)), timeout=10)
        if self.server.connect_answer is None:
            self.send_response(200, "Connection established")
            self.end_headers()
        else:
            self.wfile.write(self.server.connect_answer)
        self.wfile.flush()
        pipes = [
            threading.Thread(target=_pump, args=(self.connection, upstream), name="tunnel"),
            threading.Thread(target=_pump, args=(upstream, self.connection), name="tunnel"),
        ]
        for pipe in pipes:
            pipe.start()
        for pipe in pipes:
            pipe.join(30)
        upstream.close()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ForwardProxy(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        require: str | None = None,
        *,
        connect_answer: bytes | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.require = require
        self.connect_answer = connect_answer  # sent verbatim instead of the usual 200
        self.hosts = hosts or {}  # names the proxy resolves by itself, to 127.0.0.1
        self.log: list[tuple[str, str | None, str | None]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="proxy")
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(10)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    srv = ForwardProxy()
    yield srv
    srv.close()


def get(client: HTTPClient, url: str) -> tuple[int, bytes]:
    response = client.get(url, {"User-Agent": "test"}, max_bytes=1_000_000)
    return response.status, response.body


def test_plain_http_goes_to_the_proxy_in_absolute_form(proxy: ForwardProxy) -> None:
    with Site({"/a": "page a", "/b?x=1": "page b"}) as site:
        client = HTTPClient(proxies=ProxyRules.single(proxy.url))
        try:
            assert get(client, site.url("/a")) == (200, b"page a")
            assert get(client, site.url("/b?x=1")) == (200, b"page b")
        finally:
            client.close()
        assert site.count("/a") == 1 and site.count("/b?x=1") == 1
    lines = [line for line, _, _ in proxy.log]
    assert lines == [f"GET {site.url('/a')} HTTP/1.1", f"GET {site.url('/b?x=1')} HTTP/1.1"]
    assert all(host == site.origin.split("//")[1] for _, _, host in proxy.log)


def test_credentials_in_the_proxy_url_are_sent() -> None:
    guarded = ForwardProxy(require=CREDENTIALS)
    try:
        with Site({"/": "hello"}) as site:
            url = guarded.url.replace("http://", "http://user:p%20w@")
            good = HTTPClient(proxies=ProxyRules.single(url))
            bad = HTTPClient(proxies=ProxyRules.single(guarded.url))
            try:
                assert get(good, site.url("/")) == (200, b"hello")
                with pytest.raises(TransportError) as caught:
                    get(bad, site.url("/"))  # the proxy's own 407, not the page's status
                assert caught.value.kind == "proxy" and "407" in caught.value.detail
            finally:
                good.close()
                bad.close()
    finally:
        guarded.close()


def test_no_proxy_hosts_are_fetched_directly(proxy: ForwardProxy) -> None:
    with Site({"/": "direct"}) as site:
        for no_proxy in ("127.0.0.1", "127.0.0.0/8", "*", "localhost,127.0.0.1:9"):
            client = HTTPClient(proxies=ProxyRules(http=proxy.url, no_proxy=no_proxy))
            try:
                assert get(client, site.url("/")) == (200, b"direct")
            finally:
                client.close()
    assert proxy.log == []


def test_a_proxy_that_is_down_is_named_in_the_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client = HTTPClient(proxies=ProxyRules.single(f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(TransportError) as caught:
            get(client, "http://example.test/")
        assert caught.value.kind == "connection"
        assert f"proxy 127.0.0.1:{port}" in caught.value.detail
    finally:
        client.close()


def test_proxy_urls_are_checked() -> None:
    assert Proxy.parse("proxy.test:3128") == Proxy("proxy.test", 3128, None)
    assert Proxy.parse("http://u:pw@proxy.test").authorization == "Basic dTpwdw=="
    for bad in ("socks5://proxy.test:1080", "https://proxy.test", "http://:80", "http://p:x/"):
        with pytest.raises(ValueError, match="proxy"):
            Proxy.parse(bad)


def test_rules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ProxyRules.from_environment() is None
    monkeypatch.setenv("HTTPS_PROXY", "http://secure.test:8443")
    monkeypatch.setenv("no_proxy", ".internal.test")
    rules = ProxyRules.from_environment()
    assert rules is not None
    assert rules.for_url("http", "example.test") is None  # no http_proxy
    assert rules.for_url("https", "example.test") == Proxy("secure.test", 8443, None)
    assert rules.for_url("https", "a.internal.test") is None
    assert rules.for_url("https", "internal.test") is None


# --- HTTPS through CONNECT -------------------------------------------------------------


@contextlib.contextmanager
def _serve_tls(cert: tuple[Path, Path]) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 with ``cert``; yields its port."""

    class Hello(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"secret {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    srv.daemon_threads = False
    srv.block_on_close = True
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), name="tls-site")
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def tls_site(local_ca: LocalCA) -> Iterator[str]:
    with _serve_tls(local_ca.local) as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture
def trust_local_ca(local_ca: LocalCA, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients made from now on verify certificates against the test CA (and only it)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(local_ca.ca))


def test_https_goes_through_a_connect_tunnel(
    proxy: ForwardProxy, tls_site: str, trust_local_ca: None
) -> None:
    client = HTTPClient(proxies=ProxyRules.single(proxy.url))  # verifying, end to end
    try:
        for path in ("/one", "/two"):
            assert get(client, tls_site + path) == (200, f"secret {path}".encode())
    finally:
        client.close()
    authority = tls_site.removeprefix("https://")
    # One tunnel, kept alive for the second request; the proxy never sees the paths.
    assert [line for line, _, _ in proxy.log] == [f"CONNECT {authority} HTTP/1.1"]


def test_a_refused_connect_is_a_proxy_error(tls_site: str) -> None:
    guarded = ForwardProxy(require=CREDENTIALS)
    client = HTTPClient(proxies=ProxyRules.single(guarded.url), verify_tls=False)
    try:
        with pytest.raises(TransportError) as caught:
            get(client, tls_site + "/")
        assert caught.value.kind == "proxy" and "407" in caught.value.detail
    finally:
        client.close()
        guarded.close()


# --- the command line ------------------------------------------------------------------


def test_the_crawl_goes_through_the_proxy_of_the_environment(
    proxy: ForwardProxy, tmp_path: Path
) -> None:
    with Site({"/": html("home", "/a"), "/a": html("a")}) as site:
        out = tmp_path / "out.jsonl"
        env_proxy = {"http_proxy": proxy.url}
        done = subprocess.run(
            [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out), "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env_proxy},
        )
        assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 2
    paths = sorted(line.split()[1].removeprefix(site.origin) for line, _, _ in proxy.log)
    assert paths == ["/", "/a", "/robots.txt"]


def test_a_bad_proxy_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "crawl", "http://127.0.0.1:9/", "--proxy", "socks5://x"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert done.returncode == 2 and "only http:// proxies" in done.stderr


def test_no_proxy_is_read_as_curl_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def bypassed(no_proxy: str, host: str) -> bool:
        rules = ProxyRules(http="http://p.test:3128", no_proxy=no_proxy)
        return rules.for_url("http", host) is None

    assert bypassed("example.test.", "example.test")  # a trailing dot in the entry
    assert bypassed("example.test", "www.example.test.")
    assert not bypassed("example.test", "notexample.test")
    assert bypassed("*", "anything.test")
    assert not bypassed("localhost,*", "anything.test")  # "*" counts only on its own
    assert bypassed("10.0.0.0/8", "10.1.2.3") and not bypassed("10.0.0.0/8", "11.1.2.3")
    # An explicit proxy still honours the environment's no_proxy, as curl -x does.
    monkeypatch.setenv("no_proxy", "internal.test")
    assert ProxyRules.single("http://p.test:3128").for_url("http", "a.internal.test") is None


def test_an_unusable_proxy_in_the_environment_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("all_proxy", "socks5h://127.0.0.1:1080")
    assert ProxyRules.from_environment() is None
    assert "only http:// proxies" in caplog.text
    with pytest.raises(ValueError, match="bad port"):
        Proxy.parse("http://proxy.test:0")


class _ScriptedProxy:
    """Answers one CONNECT with ``answer``, one byte every ``pace`` seconds."""

    def __init__(self, answer: bytes, pace: float = 0.0) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer, self.pace = answer, pace
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scripted-proxy")
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        with conn, contextlib.suppress(OSError):  # the client may give up and go
            conn.recv(65536)
            for i in range(len(self.answer)):
                if self.stop.wait(self.pace):
                    return
                conn.sendall(self.answer[i : i + 1])
            self.stop.wait(30)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


def test_a_slow_connect_answer_is_bounded_by_the_connect_timeout() -> None:
    slow = _ScriptedProxy(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 50 + b"\r\n", pace=0.05)
    client = HTTPClient(proxies=ProxyRules.single(slow.url), connect_timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            get(client, "https://127.0.0.1:9/")
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < 5  # the whole answer would take 16 s
    finally:
        client.close()
        slow.close()


def test_a_connect_answer_with_bare_line_feeds_is_understood(
    tls_site: str, trust_local_ca: None
) -> None:
    # Every line of the answer ends in a bare LF, the blank line too: a client that waits
    # for CRLF CRLF never sees the end of it and times out instead.
    lax = ForwardProxy(connect_answer=b"HTTP/1.0 200 Connection established\nVia: lax\n\n")
    client = HTTPClient(proxies=ProxyRules.single(lax.url), connect_timeout=5.0)
    try:
        assert get(client, tls_site + "/lf") == (200, b"secret /lf")
    finally:
        client.close()
        lax.close()
    authority = tls_site.removeprefix("https://")
    assert [line for line, _, _ in lax.log] == [f"CONNECT {authority} HTTP/1.1"]


def test_the_certificate_is_checked_against_the_site_not_the_proxy(
    local_ca: LocalCA, trust_local_ca: None
) -> None:
    # The proxy (127.0.0.1) resolves other.test itself; the certificate names only
    # other.test, so a client checking it against the proxy's address would refuse it.
    named = ForwardProxy(hosts={"other.test": "127.0.0.1"})
    client = HTTPClient(proxies=ProxyRules.single(named.url))
    try:
        with _serve_tls(local_ca.other) as port:
            assert get(client, f"https://other.test:{port}/x") == (200, b"secret /x")
    finally:
        client.close()
        named.close()


def test_a_host_name_tls_rejects_is_a_connection_error() -> None:
    lax = _ScriptedProxy(b"HTTP/1.1 200 OK\r\n\r\n")
    client = HTTPClient(proxies=ProxyRules.single(lax.url))
    try:
        with pytest.raises(TransportError) as caught:
            get(client, "https://a..example.test/")
        assert caught.value.kind == "connection" and "bad host name" in caught.value.detail
    finally:
        client.close()
        lax.close()
