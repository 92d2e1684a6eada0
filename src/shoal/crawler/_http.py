"""A lean HTTP/1.1 client for the crawler's GETs.

Why not urllib3: per page, urllib3 + http.client (email.parser header parsing, layers of
wrappers) cost more CPU than the rest of the crawler together. This client does only what
the crawler needs - GET over raw sockets, a keep-alive pool, Content-Length / chunked /
read-until-close bodies, gzip / deflate / br - with every size bounded. No proxies, no
HTTP/2, no request bodies, no cookies; DNS lookups are not bounded by the timeouts.

Response headers: names lower-cased; a repeated header is joined with ", ", except
``set-cookie``, whose values are joined with "\\n" (cookie dates contain commas).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import brotli

from ._dns import Address, DNSTimeout, Resolver
from ._proxy import Proxy, ProxyRules

__all__ = ["HTTPClient", "HTTPError", "RawResponse"]

_READ = 64 * 1024  # bytes per recv: a typical page arrives in one or two
_MAX_HEAD = 64 * 1024  # status line + headers
_MAX_HEADERS = 200
_MAX_LINE = 8 * 1024  # chunk-size and trailer lines
_MAX_INFORMATIONAL = 16  # 1xx responses skipped before the real one
_DRAIN = 64 * 1024  # an unwanted body up to this size is read to keep the connection
_SLACK = 0.25  # seconds a recv may outlast the deadline, to spare a settimeout per recv
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEX = b"0123456789abcdefABCDEF"
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)  # how a body is framed

Sink = Callable[[bytes], None]


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes  # decoded


class HTTPError(Exception):
    """kind is one of timeout, dns, connection, tls, proxy, too_large, protocol, decode."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class _Stale(Exception):
    """The connection failed before a single response byte arrived: safe to resend."""


class _Conn:
    """A socket plus the received bytes the parser has not consumed yet (buf[pos:]).

    Timeouts. Worker threads use plain-TCP sockets in blocking mode with the timeouts
    kept by the kernel (SO_RCVTIMEO, SO_SNDTIMEO): a socket with a Python-level timeout
    poll()s before every send and recv, and each of those extra syscalls is one more GIL
    release and re-acquisition, which under many threads costs more than the syscall.
    A kernel timeout surfaces as EAGAIN, turned back into TimeoutError here. Two cases
    keep Python's timeouts: TLS sockets (OpenSSL reports EAGAIN as "want read", not as a
    timeout) and the main thread, where signal handlers run: Python retries a recv that
    a signal interrupted, and the kernel would start a retried recv's timeout afresh.
    """

    __slots__ = ("buf", "kernel_ok", "pos", "python_timeout", "rcv", "read_timeout", "snd", "sock")

    def __init__(self, sock: socket.socket, read_timeout: float) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0
        self.read_timeout = read_timeout
        self.kernel_ok = not isinstance(sock, ssl.SSLSocket)
        # The timeouts now in force: kernel receive and send, or Python's (None: not in
        # Python mode, i.e. the socket is blocking and the kernel's apply).
        self.rcv = self.snd = read_timeout
        self.python_timeout: float | None = read_timeout
        sock.settimeout(read_timeout)
        if self.kernel_ok:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(read_timeout))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(read_timeout))
            except OSError:  # a platform whose struct timeval is laid out otherwise
                self.kernel_ok = False

    def _limit(self, deadline: float | None) -> float:
        """Seconds the next send or recv may take."""
        if deadline is None:
            return self.read_timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise HTTPError("timeout", "request deadline exceeded")
        return min(self.read_timeout, left)  # a stalled call must not overrun the deadline

    def _use_kernel(self) -> bool:
        if not self.kernel_ok or threading.get_ident() == threading.main_thread().ident:
            return False
        if self.python_timeout is not None:
            self.sock.settimeout(None)
            self.python_timeout = None
        return True

    def _python(self, timeout: float) -> None:
        # Changing a timeout is a syscall: keep it unless too short or too long.
        current = self.python_timeout
        if current is None or not _close_enough(current, timeout):
            self.sock.settimeout(timeout)
            self.python_timeout = timeout

    def sendall(self, data: bytes, deadline: float | None) -> None:
        if not self._use_kernel():
            self._python(self._limit(deadline))
            self.sock.sendall(data)  # Python bounds the whole send by the timeout
            return
        # SO_SNDTIMEO bounds each send() call, so a receiver that reads slowly could
        # stretch a partial send forever: the total is bounded here, call by call.
        until = time.monotonic() + self._limit(deadline)
        view = memoryview(data)
        while view:
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out sending the request")
            if not _close_enough(self.snd, left):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(left))
                self.snd = left
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:  # SO_SNDTIMEO ran out
                raise TimeoutError("timed out sending the request") from None

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()

    def recv(self, deadline: float | None) -> bytes:
        timeout = self._limit(deadline)
        if not self._use_kernel():
            self._python(timeout)
            return self.sock.recv(_READ)
        if not _close_enough(self.rcv, timeout):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            self.rcv = timeout
        try:
            return self.sock.recv(_READ)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError("timed out") from None

    def read_head(self, deadline: float | None, first: bool) -> list[str]:
        """The lines of the next response head, status line first."""
        buf: bytes | bytearray = self.buf[self.pos :]
        scanned = 0
        while (head := _split_head(buf, scanned)) is None:
            if len(buf) > _MAX_HEAD:
                raise HTTPError("protocol", f"response head over {_MAX_HEAD} bytes")
            scanned = max(0, len(buf) - 3)
            try:
                data = self.recv(deadline)
            except TimeoutError:
                raise
            except OSError as exc:  # e.g. reset: on a pooled connection, it was stale
                if first and not buf:
                    raise _Stale(f"{type(exc).__name__}: {exc}") from exc
                raise
            if not data:
                if first and not buf:
                    raise _Stale("server closed the connection without responding")
                raise HTTPError("connection", "connection closed inside the response head")
            if not buf:
                buf = data  # the usual case, a head in one recv: no copying
            else:
                if isinstance(buf, bytes):  # a head in pieces: amortized appends
                    buf = bytearray(buf)
                buf += data
        lines, used = head
        self.buf, self.pos = bytes(buf), used
        return lines

    def readline(self, deadline: float | None) -> bytes:
        while (end := self.buf.find(b"\n", self.pos)) < 0:
            if len(self.buf) - self.pos > _MAX_LINE:
                raise HTTPError("protocol", "overlong line in a chunked body")
            if not (data := self.recv(deadline)):
                raise HTTPError("connection", "connection closed inside a chunked body")
            self.buf, self.pos = self.buf[self.pos :] + data, 0
        line = self.buf[self.pos : end]
        self.pos = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def take(self, n: int, sink: Sink, deadline: float | None) -> None:
        """Pass exactly the next n bytes to sink."""
        buf, pos = self.buf, self.pos
        avail = len(buf) - pos
        if avail >= n:
            sink(buf if pos == 0 and n == len(buf) else buf[pos : pos + n])
            self.pos = pos + n
            return
        if avail:
            sink(buf[pos:] if pos else buf)
            n -= avail
        self.buf, self.pos = b"", 0
        while n > 0:
            if not (data := self.recv(deadline)):
                raise HTTPError("connection", f"connection closed with {n} body bytes missing")
            if len(data) > n:
                sink(data[:n])
                self.buf, self.pos = data, n
                return
            sink(data)
            n -= len(data)


class _Body:
    """Collects a body, decoding it, with the decoded size held to max_bytes.

    Decompression output is capped per call (zlib max_length, brotli output_buffer_limit),
    so a decompression bomb never inflates much past max_bytes before it is rejected.
    """

    __slots__ = ("acc", "coding", "done", "first", "head", "max_bytes", "size", "wire", "zobj")

    def __init__(self, coding: str, max_bytes: int) -> None:
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            coding = "zlib"  # the stream's own header says which (see _wbits)
        elif coding == "identity":
            coding = ""
        elif coding not in ("", "br"):
            raise HTTPError("decode", f"unsupported Content-Encoding {coding!r}")
        self.coding = coding
        self.max_bytes = max_bytes
        self.size = self.wire = 0
        self.first = self.head = b""
        self.acc: bytearray | None = None
        self.done = False
        self.zobj: Any = brotli.Decompressor() if coding == "br" else None

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            raise HTTPError("too_large", f"body exceeds max_bytes {self.max_bytes}")
        if not self.first:
            self.first = data  # a one-piece body is returned without copying
        else:
            if self.acc is None:
                self.acc = bytearray(self.first)
            self.acc += data

    def feed(self, data: bytes) -> None:
        if not self.coding:
            self._emit(data)
            return
        self.wire += len(data)
        # Empty deflate blocks decode to nothing: cap the wire bytes too (incompressible
        # data grows by far less than 1/16 when "compressed").
        if self.wire > self.max_bytes + (self.max_bytes >> 4) + _DRAIN:
            raise HTTPError("too_large", f"encoded body exceeds max_bytes {self.max_bytes}")
        if self.done:
            return  # bytes after the end of the compressed stream are ignored
        try:
            if self.coding == "br":
                self._unbrotli(data)
            else:
                self._inflate(data)
        except (zlib.error, brotli.error) as exc:
            raise HTTPError("decode", f"{self.coding}: {exc}") from None

    def _inflate(self, data: bytes) -> None:
        d = self.zobj
        while data:
            if d is None or d.eof:
                data = self.head + data
                if len(data) < 2:
                    self.head = data
                    return
                self.head = b""
                if d is not None and not data.startswith(b"\x1f\x8b"):
                    self.done = True  # junk after the stream: ignored, as browsers do
                    return
                d = self.zobj = zlib.decompressobj(_wbits(data))  # or the next gzip member
            self._emit(d.decompress(data, self.max_bytes - self.size + 1))
            data = d.unconsumed_tail or d.unused_data

    def _unbrotli(self, data: bytes) -> None:
        d = self.zobj
        out = d.process(data, output_buffer_limit=self.max_bytes - self.size + 1)
        self._emit(out)
        # Output is capped per call, so more may be pending without new input.
        while not d.is_finished() and (out or not d.can_accept_more_data()):
            out = d.process(b"", output_buffer_limit=self.max_bytes - self.size + 1)
            self._emit(out)
        self.done = d.is_finished()

    def finish(self) -> bytes:
        if self.head and self.zobj is None:
            raise HTTPError("decode", "truncated compressed body")
        if self.coding == "zlib" and self.zobj is not None and not self.done:
            with suppress(zlib.error):  # lenient, like urllib3: a cut stream yields its start
                self._emit(self.zobj.flush())
        return bytes(self.acc) if self.acc is not None else self.first


def _wbits(head: bytes) -> int:
    """zlib window bits for a stream starting with head: servers label gzip, zlib and
    raw deflate streams inconsistently, so trust the bytes rather than the label."""
    if head.startswith(b"\x1f\x8b"):
        return 16 + zlib.MAX_WBITS
    if head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS


def _split_url(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, authority, target) of an absolute http(s) URL."""
    scheme, sep, rest = url.partition("://")
    default = _DEFAULT_PORTS.get(scheme)
    if not sep or default is None:
        raise HTTPError("protocol", f"unsupported URL {url[:200]!r}")
    cut = len(rest)
    for ch in "/?#":
        if (i := rest.find(ch, 0, cut)) >= 0:
            cut = i
    authority = rest[:cut].rpartition("@")[2]  # credentials are never sent
    target = rest[cut:].partition("#")[0]
    if not target.startswith("/"):
        target = "/" + target
    host, colon, port_text = authority.rpartition(":")
    if not colon or "]" in port_text:  # no port, or the end of an IPv6 literal
        host, port_text = authority, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or (port_text and not (port_text.isascii() and port_text.isdigit())):
        raise HTTPError("protocol", f"bad host or port in {url[:200]!r}")
    port = int(port_text) if port_text else default
    if not 0 < port < 65536:
        raise HTTPError("protocol", f"bad port in {url[:200]!r}")
    return scheme, host, port, authority, target


def _request(target: str, authority: str, headers: Mapping[str, str]) -> bytes:
    names = {name.lower() for name in headers}
    host = "" if "host" in names else f"Host: {authority}\r\n"
    connection = "" if "connection" in names else "Connection: keep-alive\r\n"
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    text = f"GET {target} HTTP/1.1\r\n{host}{fields}{connection}\r\n"
    # A CR, LF or space smuggled in through the URL or a header value would let that
    # input rewrite the request: every line break must be one written here.
    lines = 2 + len(headers) + bool(host) + bool(connection)
    if " " in target or text.count("\n") != lines or text.count("\r") != lines:
        raise HTTPError("protocol", "CR, LF or space in the request target or a header")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise HTTPError("protocol", "request target or header is not latin-1") from None


def _parse_head(lines: list[str]) -> tuple[int, bool, dict[str, str]]:
    """(status, HTTP/1.1?, headers)."""
    version, code = ([*lines[0].split(None, 2), "", ""])[:2]
    if not (version.startswith("HTTP/") and len(code) == 3 and code.isascii() and code.isdigit()):
        raise HTTPError("protocol", f"malformed status line {lines[0][:100]!r}")
    if len(lines) > _MAX_HEADERS + 1:
        raise HTTPError("protocol", f"more than {_MAX_HEADERS} response headers")
    headers: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # obsolete line folding continues the last header
            if name:
                headers[name] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        name = key.strip().lower() if colon else ""
        if not name:
            continue  # not a header: skipped, as browsers do
        value = value.strip()
        if (old := headers.get(name)) is None:
            headers[name] = value
        else:
            headers[name] = old + ("\n" if name == "set-cookie" else ", ") + value
    return int(code), version == "HTTP/1.1", headers


def _framing(status: int, http11: bool, headers: dict[str, str]) -> tuple[int, int, bool]:
    """(framing, length, connection reusable afterwards), per RFC 9112 section 6."""
    tokens = headers.get("connection", "").lower()
    keep = "close" not in tokens if http11 else "keep-alive" in tokens
    if status < 200 or status in (204, 304):
        return _NONE, 0, keep
    if (te := headers.get("transfer-encoding")) is not None:
        if te.lower().rsplit(",", 1)[-1].strip() == "chunked":
            # With a Content-Length too the response is suspect (smuggling): read it by
            # chunks, as the RFC says, but do not trust the connection afterwards.
            return _CHUNKED, 0, keep and "content-length" not in headers
        return _CLOSE, 0, False
    if (value := headers.get("content-length")) is None:
        return _CLOSE, 0, False
    if "," in value:  # a repeated header: fine only if every copy agrees
        values = {v.strip() for v in value.split(",")}
        value = values.pop() if len(values) == 1 else "conflicting"
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise HTTPError("protocol", f"bad Content-Length {value[:40]!r}")
    return _LENGTH, int(value), keep


def _read_body(conn: _Conn, framing: int, length: int, sink: Sink, dl: float | None) -> None:
    if framing == _LENGTH:
        conn.take(length, sink, dl)
    elif framing == _CHUNKED:
        while True:
            size_field = conn.readline(dl).split(b";", 1)[0].strip()
            if not size_field or size_field.translate(None, _HEX) or len(size_field) > 15:
                raise HTTPError("protocol", f"bad chunk size {size_field[:40]!r}")
            if (size := int(size_field, 16)) == 0:
                break
            conn.take(size, sink, dl)
            if conn.readline(dl):
                raise HTTPError("protocol", "chunk data longer than its size")
        for _ in range(_MAX_HEADERS + 1):  # trailers, ignored, end with an empty line
            if not conn.readline(dl):
                return
        raise HTTPError("protocol", f"more than {_MAX_HEADERS} trailer lines")
    elif framing == _CLOSE:
        if conn.pos < len(conn.buf):
            sink(conn.buf[conn.pos :])
        conn.buf, conn.pos = b"", 0
        while data := conn.recv(dl):
            sink(data)


def _via(error: HTTPError, proxy: Proxy | None) -> HTTPError:
    """Name the proxy in a failure to reach it."""
    if proxy is None:
        return error
    return HTTPError(error.kind, f"proxy {proxy.host}:{proxy.port}: {error.detail}")


def _split_head(buf: bytes | bytearray, scanned: int = 0) -> tuple[list[str], int] | None:
    """The lines of the message head that ``buf`` starts with, and the bytes it takes up
    with its blank line; None while the head is incomplete (``buf[:scanned]`` is known to
    hold no end of head). Some servers end lines with a bare LF: such a head ends "\n\n"."""
    end = buf.find(b"\r\n\r\n", scanned)
    lf = buf.find(b"\n\n", scanned, len(buf) if end < 0 else end)
    if lf < 0 and end < 0:
        return None
    size, skip = (lf, 2) if lf >= 0 else (end, 4)
    if size > _MAX_HEAD:
        raise HTTPError("protocol", f"response head over {_MAX_HEAD} bytes")
    text = buf[:size].decode("latin-1")
    if lf >= 0:
        return [line.rstrip("\r") for line in text.split("\n")], size + skip
    return text.split("\r\n"), size + skip


def _tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy, until: float) -> None:
    """Ask the proxy for a tunnel to host:port (RFC 9110 section 9.3.6), by ``until``."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    text = "\r\n".join(lines) + "\r\n\r\n"
    if any(c in authority for c in " \r\n"):
        raise HTTPError("protocol", f"bad host {host!r}")
    _settimeout_until(sock, until)
    sock.sendall(text.encode("latin-1"))
    head = b""
    while (answer := _split_head(head)) is None:
        if len(head) > _MAX_HEAD:
            raise HTTPError("proxy", "the proxy's answer to CONNECT is too long")
        _settimeout_until(sock, until)  # the whole answer, not each recv, has the timeout
        data = sock.recv(_READ)
        if not data:
            raise HTTPError("proxy", f"proxy {proxy.host}:{proxy.port} closed the tunnel")
        head += data
    lines, used = answer
    status, _, _ = _parse_head(lines)
    if not 200 <= status < 300:
        raise HTTPError("proxy", f"proxy {proxy.host}:{proxy.port} refused CONNECT: {status}")
    if used != len(head):  # the server speaks only after our TLS hello
        raise HTTPError("protocol", "unexpected bytes after the proxy's answer to CONNECT")
    _settimeout_until(sock, until)  # what is left of it is the TLS handshake's


def _settimeout_until(sock: socket.socket, until: float) -> None:
    left = until - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out connecting")
    sock.settimeout(left)


def _open_socket(addresses: list[Address], until: float) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that accepts one before ``until``."""
    if not addresses:
        raise OSError("the name resolved to no address")
    error: OSError | None = None
    for family, kind, proto, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            _settimeout_until(sock, until)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise error


def _close_enough(current: float, wanted: float) -> bool:
    """Whether a socket timeout already in force may serve for ``wanted`` rather than be
    changed (a syscall): not shorter, and at most _SLACK longer than the deadline allows."""
    return wanted <= current <= wanted + _SLACK


def _timeval(seconds: float) -> bytes:
    """A struct timeval; never all zero, which would mean "wait forever"."""
    micros = max(1, round(seconds * 1_000_000))
    return struct.pack("@ll", micros // 1_000_000, micros % 1_000_000)


def _os_error(exc: OSError) -> HTTPError:
    if isinstance(exc, TimeoutError):
        return HTTPError("timeout", str(exc) or "timed out")
    if isinstance(exc, ssl.SSLError):
        return HTTPError("tls", str(exc))
    if isinstance(exc, socket.gaierror):  # the name does not resolve: not a connection
        return HTTPError("dns", f"cannot resolve the host name: {exc.strerror or exc}")
    return HTTPError("connection", f"{type(exc).__name__}: {exc}")


class HTTPClient:
    """Thread-safe: many threads may call get() at once, for the same or other hosts.

    Idle connections are pooled per origin, newest first (the least likely to have been
    closed by the server), at most ``per_host`` per origin and ``max_idle_hosts`` origins
    (least recently used dropped first). Callers limit concurrent requests per host.
    """

    def __init__(
        self,
        *,
        per_host: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        verify_tls: bool = True,
        max_idle_hosts: int = 256,
        resolver: Resolver | None = None,
        proxies: ProxyRules | None = None,
    ) -> None:
        self.per_host = per_host
        self.proxies = proxies
        self._resolver = resolver or Resolver()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle_hosts = max_idle_hosts
        self._lock = threading.Lock()
        self._idle: OrderedDict[str, list[_Conn]] = OrderedDict()
        self.verify_tls = verify_tls
        self._tls_context: ssl.SSLContext | None = None

    def get(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        max_bytes: int,
        deadline: float | None = None,
        read_body: bool = True,
    ) -> RawResponse:
        """GET an absolute http(s) URL; raises HTTPError. max_bytes caps the decoded body,
        deadline (a time.monotonic() value) the whole request. read_body=False (for
        redirects) returns an empty body, keeping the connection if that is cheap."""
        scheme, host, port, authority, target = _split_url(url)
        origin = f"{scheme}://{authority}"
        proxy = self.proxies.for_url(scheme, host) if self.proxies is not None else None
        if proxy is not None and scheme == "http":  # absolute-form, to the proxy
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
            request = _request(f"{origin}{target}", authority, headers)
        else:  # direct, or inside a CONNECT tunnel: the usual origin-form request
            request = _request(target, authority, headers)
        pool_key = origin if proxy is None else f"{origin} via {proxy.key}"
        conn = self._checkout(pool_key)
        while True:
            reused = conn is not None
            if conn is None:
                conn = self._connect(scheme, host, port, deadline, proxy)
            try:
                response, keep = _exchange(conn, request, max_bytes, deadline, read_body)
            except _Stale as exc:
                conn.close()
                if reused:  # the server dropped an idle connection: resend, once, on a new one
                    conn = None
                    continue
                raise HTTPError("connection", f"{origin}: {exc}") from None
            except OSError as exc:
                conn.close()
                raise _os_error(exc) from None
            except BaseException:
                conn.close()
                raise
            if keep and conn.pos == len(conn.buf):  # extra unread bytes: out of step, drop
                self._checkin(pool_key, conn)
            else:
                conn.close()
            if proxy is not None and response.status == 407:  # the proxy's, not the page's
                where = f"proxy {proxy.host}:{proxy.port}"
                raise HTTPError("proxy", f"{where} requires authentication (407)")
            return response

    def _tls(self) -> ssl.SSLContext:
        """The TLS context, made on the first https request: loading the CA store costs
        tens of milliseconds that an http-only crawl need not pay."""
        with self._lock:
            if self._tls_context is None:
                context = ssl.create_default_context()
                if not self.verify_tls:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                context.set_alpn_protocols(["http/1.1"])
                self._tls_context = context
            return self._tls_context

    def close(self) -> None:
        """Close every idle connection; the client stays usable."""
        with self._lock:
            conns = [conn for idle in self._idle.values() for conn in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def _checkout(self, origin: str) -> _Conn | None:
        with self._lock:
            if not (idle := self._idle.get(origin)):
                return None
            conn = idle.pop()
            if not idle:
                del self._idle[origin]
            return conn

    def _checkin(self, origin: str, conn: _Conn) -> None:
        evicted: list[_Conn] = []
        with self._lock:
            if (idle := self._idle.get(origin)) is None:
                self._idle[origin] = [conn]
                while len(self._idle) > self.max_idle_hosts:
                    evicted.extend(self._idle.popitem(last=False)[1])
            elif len(idle) < self.per_host:
                idle.append(conn)
                self._idle.move_to_end(origin)
            else:
                evicted.append(conn)
        for old in evicted:  # closing is I/O: outside the lock
            old.close()

    def _connect(
        self, scheme: str, host: str, port: int, deadline: float | None, proxy: Proxy | None
    ) -> _Conn:
        timeout = self.connect_timeout
        if deadline is not None and (timeout := min(timeout, deadline - time.monotonic())) <= 0:
            raise HTTPError("timeout", "request deadline exceeded")
        # The connect timeout covers the lookup, the TCP handshake and a proxy's CONNECT.
        until = time.monotonic() + timeout
        to_host, to_port = (host, port) if proxy is None else (proxy.host, proxy.port)
        try:
            sock = _open_socket(self._resolver.resolve(to_host, to_port, timeout), until)
        except DNSTimeout as exc:
            raise _via(HTTPError("timeout", str(exc)), proxy) from None
        except OSError as exc:
            raise _via(_os_error(exc), proxy) from None
        except UnicodeError as exc:  # a host name IDNA rejects ("a..example", long labels)
            raise HTTPError("connection", f"bad host name {to_host!r}: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if proxy is not None:
                    _tunnel(sock, host, port, proxy, until)
                # The handshake, like the tunnel, runs under what is left of the connect
                # timeout (set on the socket by _open_socket).
                sock = self._tls().wrap_socket(sock, server_hostname=host)
            return _Conn(sock, self.read_timeout)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                raise _os_error(exc) from None
            if isinstance(exc, UnicodeError):  # through a proxy, TLS is first to see the name
                raise HTTPError("connection", f"bad host name {host!r}: {exc}") from None
            raise


def _exchange(
    conn: _Conn, request: bytes, max_bytes: int, deadline: float | None, read_body: bool
) -> tuple[RawResponse, bool]:
    """Send the request, read the response: (response, connection reusable)."""
    try:
        conn.sendall(request, deadline)
    except TimeoutError:
        raise
    except OSError as exc:  # a pooled socket the server has closed (or reset)
        raise _Stale(f"{type(exc).__name__}: {exc}") from exc
    for informational in range(_MAX_INFORMATIONAL):
        status, http11, headers = _parse_head(conn.read_head(deadline, not informational))
        if status >= 200:
            break
        if status == 101:
            raise HTTPError("protocol", "unrequested protocol switch (101)")
    else:
        raise HTTPError("protocol", f"more than {_MAX_INFORMATIONAL} 1xx responses")
    framing, length, keep = _framing(status, http11, headers)
    if not read_body:
        if keep and framing != _NONE:  # read a small body so the connection stays usable
            try:
                if framing == _CLOSE or length > _DRAIN:
                    raise HTTPError("too_large", "not worth draining")
                _read_body(conn, framing, length, _Body("", _DRAIN).feed, deadline)
            except (HTTPError, OSError):
                keep = False
        return RawResponse(status, headers, b""), keep
    body = _Body(headers.get("content-encoding", ""), max_bytes)
    if framing == _LENGTH and not body.coding and length > max_bytes:
        raise HTTPError("too_large", f"Content-Length {length} exceeds max_bytes {max_bytes}")
    _read_body(conn, framing, length, body.feed, deadline)
    return RawResponse(status, headers, body.finish()), keep
