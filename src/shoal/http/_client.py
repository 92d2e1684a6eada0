"""A lean HTTP/1.1 client for the crawler's GETs.

Why not urllib3: per page, urllib3 + http.client (email.parser header parsing, layers of
wrappers) cost more CPU than the rest of the crawler together. This client does only what
the crawler needs - GET over raw sockets, a keep-alive pool, gzip / deflate / br - with
every size bounded. It speaks through HTTP proxies (absolute-form for http, a CONNECT
tunnel for https; rules in ``_proxy``) and looks names up through a resolver with its own
timeout and a bounded cache (``_dns``). No HTTP/2, no request bodies, no cookies.

Responses are parsed by llhttp (through ``httptools``), the parser of Node.js, which is
fuzzed and strict about framing (RFC 9112): a response with both Content-Length and
Transfer-Encoding, two Content-Lengths, a space before a colon, obsolete line folding,
a bad chunk size or extension is refused with kind ``protocol``. shoal adds: a
Transfer-Encoding other than plain ``chunked`` is refused (shoal never sends ``TE``, so
no other transfer coding was asked for, and ``gzip, chunked`` must not pass gzip bytes
off as the body); an HTTP/1.0 response with Transfer-Encoding is read and its connection
closed (RFC 9112 section 6.1); only HTTP/1.0 and 1.1 are spoken. One leniency, allowed by
RFC 9112 section 2.2: a bare LF ends a line of the head.

A connection goes back to the pool only if its response was complete and delimited by
its framing, the server did not ask to close it, and nothing arrived after the response;
before reuse it must also have nothing to read (a stray response a server sends late is
never taken as the answer to the next request).

Response headers: names lower-cased; a repeated header is joined with ", ", except
``set-cookie`` and ``x-robots-tag``, whose values are joined with "\\n" (cookie dates contain
commas; an X-Robots-Tag "otherbot:" prefix reaches to the end of its own field).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import suppress

import httptools

from .._url import split_url
from ._dns import Address, DNSTimeout, Resolver, is_public_address
from ._proxy import Proxy, ProxyRules
from ._response import MAX_HEAD as _MAX_HEAD
from ._response import Reader
from ._transport import ErrorKind, Response, TransportError
from ._tunnel import ConnectRefused
from ._tunnel import settimeout_until as _settimeout_until
from ._tunnel import tunnel as _tunnel
from ._tunnel import via as _via

__all__ = ["HTTPClient"]

logger = logging.getLogger(__name__)

_READ = 64 * 1024  # bytes per recv: a typical page arrives in one or two
_SLACK = 0.25  # seconds a recv may outlast the deadline, to spare a settimeout per recv
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRIES_PER_PROXY = 3  # a request's tries through one failing proxy, at most


class _Stale(Exception):
    """The connection failed before a single response byte arrived: safe to resend."""


class _Conn:
    """A socket with the request's timeouts.

    Timeouts. Worker threads use plain-TCP sockets in blocking mode with the timeouts
    kept by the kernel (SO_RCVTIMEO, SO_SNDTIMEO): a socket with a Python-level timeout
    poll()s before every send and recv, and each of those extra syscalls is one more GIL
    release and re-acquisition, which under many threads costs more than the syscall.
    A kernel timeout surfaces as EAGAIN, turned back into TimeoutError here. Two cases
    keep Python's timeouts: TLS sockets (OpenSSL reports EAGAIN as "want read", not as a
    timeout) and the main thread, where signal handlers run: Python retries a recv that
    a signal interrupted, and the kernel would start a retried recv's timeout afresh.
    """

    __slots__ = ("kernel_ok", "python_timeout", "rcv", "read_timeout", "reader", "snd", "sock")

    def __init__(self, sock: socket.socket, read_timeout: float) -> None:
        self.sock = sock
        self.read_timeout = read_timeout
        self.reader: Reader | None = None  # the connection's response parser
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
            raise TransportError(ErrorKind.TIMEOUT, "request deadline exceeded")
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

    def reusable(self) -> bool:
        """Whether the idle connection may carry another request: nothing must be
        readable on it. Readable means the server closed it, or sent bytes no request
        asked for (a late body, a second response), which would be read as the answer
        to the next request. Checked without blocking, as urllib3 does."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            logger.warning("dropping a pooled TLS connection with unrequested data buffered")
            return False
        poller = select.poll()  # not select(): descriptors past 1024 are common here
        try:
            poller.register(sock, select.POLLIN)
            if not poller.poll(0):
                return True
            if isinstance(sock, ssl.SSLSocket):
                return False  # closed or unrequested: either way not reusable
            # Readable, so this peek cannot block; it tells a close from stray bytes.
            stray = sock.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return False
        if stray:
            logger.warning(
                "dropping a pooled connection to %s: the server sent bytes after the "
                "response was complete",
                _peer(sock),
            )
        return False


def _peer(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


def _split_url(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, authority, target) of an absolute http(s) URL; the userinfo,
    if any, is dropped (credentials are never sent)."""
    try:
        parts = split_url(url)
    except ValueError:
        raise TransportError(ErrorKind.PROTOCOL, f"bad host or port in {url[:200]!r}") from None
    port = parts.effective_port
    if parts.scheme not in _DEFAULT_PORTS or port is None:
        raise TransportError(ErrorKind.PROTOCOL, f"unsupported URL {url[:200]!r}")
    if not parts.host or not 0 < port < 65536:
        raise TransportError(ErrorKind.PROTOCOL, f"bad host or port in {url[:200]!r}")
    if any(ch in url for ch in "\t\r\n"):
        # The splitter drops these (as browsers do); a request must not silently differ
        # from the URL it was given.
        raise TransportError(
            ErrorKind.PROTOCOL, "CR, LF or space in the request target or a header"
        )
    return parts.scheme, parts.host, port, parts.authority, parts.target


def _request(
    target: str,
    authority: str,
    headers: Mapping[str, str],
    method: str = "GET",
    body: bytes | None = None,
) -> bytes:
    names = {name.lower() for name in headers}
    host = "" if "host" in names else f"Host: {authority}\r\n"
    connection = "" if "connection" in names else "Connection: keep-alive\r\n"
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    # The body's length is the one written here: a caller's Content-Length or
    # Transfer-Encoding could frame the body as something else.
    length = ""
    if body is not None:
        if "content-length" in names or "transfer-encoding" in names:
            raise TransportError(
                ErrorKind.PROTOCOL, "a request's body is framed by the client, not a header"
            )
        length = f"Content-Length: {len(body)}\r\n"
    if method not in ("GET", "POST"):
        raise TransportError(ErrorKind.PROTOCOL, f"unsupported method {method[:20]!r}")
    text = f"{method} {target} HTTP/1.1\r\n{host}{fields}{length}{connection}\r\n"
    # A CR, LF or space smuggled in through the URL or a header value would let that
    # input rewrite the request: every line break must be one written here.
    lines = 2 + len(headers) + bool(host) + bool(connection) + bool(length)
    if " " in target or text.count("\n") != lines or text.count("\r") != lines:
        raise TransportError(
            ErrorKind.PROTOCOL, "CR, LF or space in the request target or a header"
        )
    try:
        head = text.encode("latin-1")
    except UnicodeEncodeError:
        raise TransportError(
            ErrorKind.PROTOCOL, "request target or header is not latin-1"
        ) from None
    return head if body is None else head + body


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


def _os_error(exc: OSError) -> TransportError:
    if isinstance(exc, TimeoutError):
        return TransportError(ErrorKind.TIMEOUT, str(exc) or "timed out")
    if isinstance(exc, ssl.SSLError):
        return TransportError(ErrorKind.TLS, str(exc))
    if isinstance(exc, socket.gaierror):  # the name does not resolve: not a connection
        return TransportError(ErrorKind.DNS, f"cannot resolve the host name: {exc.strerror or exc}")
    return TransportError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}")


class HTTPClient:
    """Thread-safe: many threads may call get() at once, for the same or other hosts.

    Idle connections are pooled per origin, newest first (the least likely to have been
    closed by the server), at most ``per_host`` per origin and ``max_idle_hosts`` origins
    (least recently used dropped first). Callers limit concurrent requests per host.

    ``deny_private``: connect only to public addresses, checked on every new
    connection after the lookup (so neither a redirect nor a DNS answer can lead to
    127.0.0.1, 10.0.0.0/8, 169.254.169.254 and the like); refusals are kind ``blocked``.
    Through a proxy, the proxy itself may be private (it was chosen by the user), and
    the target host is looked up here and refused if any of its addresses is not public,
    or if it cannot be looked up (the proxy may resolve it otherwise: best effort).
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
        deny_private: bool = False,
    ) -> None:
        self.per_host = per_host
        self.deny_private = deny_private
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
        truncate: bool = False,
        method: str = "GET",
        body: bytes | None = None,
    ) -> Response:
        """GET (or ``method``, with ``body``) an absolute http(s) URL; raises TransportError.
        max_bytes caps the decoded body,
        deadline (a time.monotonic() value) the whole request. read_body=False (for
        redirects) returns an empty body, keeping the connection if that is cheap;
        truncate=True returns a longer body cut to max_bytes (see Transport.get)."""
        parts = _split_url(url)
        proxies = self.proxies
        if proxies is None:
            return self._get(
                url, parts, None, headers, max_bytes, deadline, read_body, truncate, method, body
            )
        scheme, host = parts[0], parts[1]
        tries = 0  # failures of this request through its current proxy
        last: Proxy | None = None
        # Tries of one proxy for one request, at once: enough to retire a dead proxy with
        # the default count, never a loop of reconnects with a large one (the rest of its
        # count is left to later requests and the crawl's retries, which back off).
        most = min(proxies.retire_after, _TRIES_PER_PROXY)
        # Bounded: a proxy is tried at most `most` times, and one retired never returns.
        for _turn in range(proxies.size * most + 1):
            proxy = proxies.for_url(scheme, host)  # TransportError once none is left
            if proxy is None:  # no_proxy
                return self._get(
                    url,
                    parts,
                    None,
                    headers,
                    max_bytes,
                    deadline,
                    read_body,
                    truncate,
                    method,
                    body,
                )
            if proxy != last:
                tries, last = 0, proxy
            try:
                try:
                    response = self._get(
                        url,
                        parts,
                        proxy,
                        headers,
                        max_bytes,
                        deadline,
                        read_body,
                        truncate,
                        method,
                        body,
                    )
                except _Unanswered as silent:
                    raise self._silence(proxy, silent) from None
            except _ProxyDown as down:
                tries += 1
                retired = proxies.failed(proxy, down.error.detail)
                if retired and proxies.exhausted:
                    raise down.error from None  # the cause; later requests get "no proxy left"
                if down.sent and method != "GET":
                    # The proxy took the request and went silent: it may have passed it on,
                    # so a POST is not sent again here (its retry, if any, is the crawl's).
                    raise down.error from None
                if retired or tries < most:
                    # Again at once, a GET that the proxy did not answer: a dead proxy is
                    # retired by the first request to meet it, which goes on through the
                    # host's next proxy (a request meets the deadline sooner, if slow).
                    continue
                raise down.error from None  # it works for others: this one waits its retry
            proxies.succeeded(proxy)
            return response
        raise TransportError(ErrorKind.PROXY, "no proxy answered")  # pragma: no cover

    def _silence(self, proxy: Proxy, silent: _Unanswered) -> TransportError | _ProxyDown:
        """Whose is a CONNECT the proxy took but did not answer in time? The target's (a
        plain timeout) if the proxy answered anything lately or reacts to a probe; else
        the proxy's (counted)."""
        rules = self.proxies
        assert rules is not None
        alive = rules.alive(proxy)
        if alive is None:  # one probe in ALIVE_FOR seconds, unless it answers meanwhile
            alive = self._reacts(proxy)
            rules.probed(proxy, alive)
        if alive:
            return TransportError(silent.kind, silent.detail)
        error = TransportError(ErrorKind.TIMEOUT, f"{silent.detail}, nor to a probe")
        return _ProxyDown(error)

    def _reacts(self, proxy: Proxy) -> bool:
        """Whether ``proxy`` reacts, within the connect timeout, to a request it must
        answer itself: an origin-form ``GET /``, which a forward proxy refuses without
        going anywhere. Any bytes, a close or a reset is a reaction (a live proxy); a
        proxy whose kernel accepts connections for a process that no longer serves them
        stays silent, as does one refusing connections."""
        timeout = self.connect_timeout
        until = time.monotonic() + timeout
        host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
        probe = f"GET / HTTP/1.1\r\nHost: {host}:{proxy.port}\r\nConnection: close\r\n\r\n"
        try:
            addresses = self._resolver.resolve(proxy.host, proxy.port, timeout)
            with _open_socket(addresses, until) as sock:
                _settimeout_until(sock, until)
                sock.sendall(probe.encode("latin-1"))
                _settimeout_until(sock, until)
                sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            alive = True
        except (OSError, UnicodeError):  # silent (timed out), refused, or its name is gone
            alive = False
        else:
            alive = True
        logger.debug("probe of proxy %s: %s", proxy.label, "alive" if alive else "silent")
        return alive

    def _get(  # noqa: PLR0917 - two private call sites, on the hot path
        self,
        url: str,
        parts: tuple[str, str, int, str, str],
        proxy: Proxy | None,
        headers: Mapping[str, str],
        max_bytes: int,
        deadline: float | None,
        read_body: bool,
        truncate: bool,
        method: str = "GET",
        body: bytes | None = None,
    ) -> Response:
        """One request, directly or through ``proxy``; a failure of the proxy itself is
        raised as _ProxyDown."""
        scheme, host, port, authority, target = parts
        origin = f"{scheme}://{authority}"
        if proxy is not None and scheme == "http":  # absolute-form, to the proxy
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
            request = _request(f"{origin}{target}", authority, headers, method, body)
        else:  # direct, or inside a CONNECT tunnel: the usual origin-form request
            request = _request(target, authority, headers, method, body)
        pool_key = origin if proxy is None else f"{origin} via {proxy.key}"
        # A POST goes on a new connection: one the server dropped while idle would fail
        # it after it was sent, and a POST is never sent twice (RFC 9110 9.2.2: the
        # server may have acted on it). Kept for reuse after it, as any.
        idempotent = method == "GET"
        conn = self._checkout(pool_key) if idempotent else None
        while True:
            reused = conn is not None
            if conn is None:
                try:
                    conn = self._connect(scheme, host, port, deadline, proxy)
                except TransportError as exc:
                    exc.unsent = True
                    raise
                except _ProxyDown as down:
                    down.error.unsent = True
                    raise
            try:
                response, keep = _exchange(conn, request, max_bytes, deadline, read_body, truncate)
            except _Stale as exc:
                conn.close()
                if reused and idempotent:
                    # The server dropped an idle connection: a GET is sent again, once, on
                    # a new one (no response byte came back).
                    conn = None
                    continue
                error = TransportError(ErrorKind.CONNECTION, f"{origin}: {exc}")
                if proxy is not None and scheme == "http":  # the proxy said nothing at all
                    raise _ProxyDown(_via(error, proxy), sent=True) from None
                raise error from None
            except OSError as exc:
                conn.close()
                raise _os_error(exc) from None
            except TransportError as exc:
                conn.close()
                if proxy is not None and scheme == "http" and _not_http(conn):
                    # An answer that is not HTTP at all comes from the proxy (a wrong port),
                    # never from the target: a proxy speaks HTTP whatever the target says.
                    error = TransportError(ErrorKind.PROXY, f"answer is not HTTP ({exc.detail})")
                    raise _ProxyDown(_via(error, proxy), sent=True) from None
                raise
            except BaseException:
                conn.close()
                raise
            if keep:
                self._checkin(pool_key, conn)
            else:
                conn.close()
            if proxy is not None and response.status == 407:  # the proxy's, not the page's
                where = f"proxy {proxy.host}:{proxy.port}"
                raise _ProxyDown(
                    TransportError(ErrorKind.PROXY, f"{where} requires authentication (407)")
                )
            response.url = url
            return response

    def _check_target(self, host: str, port: int, timeout: float) -> None:
        """deny_private through a proxy: the proxy resolves the host, so the best shoal
        can do is refuse a host its own resolver places on a non-public address."""
        try:
            addresses = self._resolver.resolve(host, port, timeout)
        except (OSError, UnicodeError) as exc:
            raise TransportError(
                ErrorKind.BLOCKED, f"cannot check that {host!r} is public: {exc}"
            ) from None
        if len(_public(host, addresses)) < len(addresses):
            raise TransportError(ErrorKind.BLOCKED, f"{host!r} resolves to a non-public address")

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
        while True:
            with self._lock:
                if not (idle := self._idle.get(origin)):
                    return None
                conn = idle.pop()
                if not idle:
                    del self._idle[origin]
            if conn.reusable():  # a syscall: outside the lock
                return conn
            conn.close()

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
            raise TransportError(ErrorKind.TIMEOUT, "request deadline exceeded")
        # The connect timeout covers the lookup, the TCP handshake and a proxy's CONNECT.
        until = time.monotonic() + timeout
        to_host, to_port = (host, port) if proxy is None else (proxy.host, proxy.port)
        if self.deny_private and proxy is not None:
            self._check_target(host, port, timeout)
        try:
            addresses = self._resolver.resolve(to_host, to_port, timeout)
            if self.deny_private and proxy is None:
                addresses = _public(host, addresses)
            sock = _open_socket(addresses, until)
        except DNSTimeout as exc:
            raise _down(TransportError(ErrorKind.TIMEOUT, str(exc)), proxy) from None
        except OSError as exc:
            raise _down(_os_error(exc), proxy) from None
        except UnicodeError as exc:  # a host name IDNA rejects ("a..example", long labels)
            raise TransportError(
                ErrorKind.CONNECTION, f"bad host name {to_host!r}: {exc}"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if proxy is not None:
                    _open_tunnel(sock, host, port, proxy, until)
                # The handshake, like the tunnel, runs under what is left of the connect
                # timeout (set on the socket by _open_socket).
                sock = self._tls().wrap_socket(sock, server_hostname=host)
            return _Conn(sock, self.read_timeout)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                raise _os_error(exc) from None
            if isinstance(exc, UnicodeError):  # through a proxy, TLS is first to see the name
                raise TransportError(
                    ErrorKind.CONNECTION, f"bad host name {host!r}: {exc}"
                ) from None
            raise


def _open_tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy, until: float) -> None:
    """The CONNECT tunnel. Raises _ProxyDown when the proxy fails it: closes or resets
    it, answers with something that is not HTTP, or asks for credentials (407). Not
    counted against the proxy: a refusal with another status (its word on the target).
    No answer in time raises _Unanswered: a proxy holds CONNECT open while its own
    connection to an unreachable target hangs, so the silence is counted only if the
    proxy is silent to a probe too; else one dead site would retire every proxy its host
    moves to."""
    try:
        _tunnel(sock, host, port, proxy, until)
    except ConnectRefused as exc:
        error = TransportError(exc.kind, exc.detail)
        raise (_ProxyDown(error) if exc.status == 407 else error) from None
    except TransportError as exc:
        if exc.kind is ErrorKind.PROTOCOL:
            raise
        raise _ProxyDown(exc) from None
    except TimeoutError:
        where = f"proxy {proxy.host}:{proxy.port}"
        raise _Unanswered(
            ErrorKind.TIMEOUT, f"{where}: no answer to CONNECT {host}:{port} in time"
        ) from None
    except OSError as exc:
        raise _ProxyDown(_via(_os_error(exc), proxy)) from None


class _Unanswered(TransportError):
    """A proxy took the connection but did not answer CONNECT in time: the target's
    silence or the proxy's own (HTTPClient._silence tells which)."""


class _ProxyDown(Exception):
    """The proxy did not work for this request (``RETIRE_AFTER`` in ``_proxy`` says what
    counts): ``error`` is what the caller sees unless another proxy takes the request."""

    def __init__(self, error: TransportError, *, sent: bool = False) -> None:
        super().__init__(error.detail)
        self.error = error
        self.sent = sent  # the request went out before the proxy failed


def _down(error: TransportError, proxy: Proxy | None) -> TransportError | _ProxyDown:
    """A failure to reach the next hop: the proxy's, named, if there is one."""
    return error if proxy is None else _ProxyDown(_via(error, proxy))


def _not_http(conn: _Conn) -> bool:
    """Whether the response head that failed to parse on ``conn`` does not even start
    as HTTP's does ("HTTP/")."""
    reader = conn.reader
    if reader is None or reader.head_done or not reader.pieces:
        return False
    start = b"".join(reader.pieces[:5])[:5]
    return not (start.startswith(b"HTTP/") or b"HTTP/".startswith(start))


def _public(host: str, addresses: list[Address]) -> list[Address]:
    """The public ones of ``addresses``; TransportError ``blocked`` if there are none."""
    public = [a for a in addresses if is_public_address(a[3][0])]
    if not public and addresses:
        shown = addresses[0][3][0]
        raise TransportError(ErrorKind.BLOCKED, f"{host!r} resolves to non-public address {shown}")
    return public


def _exchange(  # noqa: PLR0917 - one private call site, on the hot path
    conn: _Conn,
    request: bytes,
    max_bytes: int,
    deadline: float | None,
    read_body: bool,
    truncate: bool = False,
) -> tuple[Response, bool]:
    """Send the request, read the response: (response, connection reusable)."""
    try:
        conn.sendall(request, deadline)
    except TimeoutError:
        raise
    except OSError as exc:  # a pooled socket the server has closed (or reset)
        raise _Stale(f"{type(exc).__name__}: {exc}") from exc
    if (reader := conn.reader) is None:
        reader = conn.reader = Reader()
    reader.start(max_bytes, read_body, truncate)
    feed = reader.feed_data
    received = 0
    run = 0  # bytes received since the last body byte: head, chunk framing, trailers
    while not reader.complete:
        try:
            data = conn.recv(deadline)
        except (OSError, TransportError) as exc:
            if reader.head_done and not read_body:  # the unwanted body did not come: drop it
                reader.keep = False
                break
            if received or isinstance(exc, TransportError | TimeoutError):
                raise
            raise _Stale(f"{type(exc).__name__}: {exc}") from exc  # reset: it was stale
        if not data:
            if not received:
                raise _Stale("server closed the connection without responding")
            reader.ended()
            break
        received += len(data)
        if not reader.head_done:
            reader.pieces.append(data)
        before = reader.body_bytes
        try:
            feed(data)
        except httptools.HttpParserError as exc:
            reader.failed(exc)
        except httptools.HttpParserUpgrade:  # llhttp's view of a 101 (refused above)
            raise TransportError(ErrorKind.PROTOCOL, "unrequested protocol switch") from None
        got = reader.body_bytes - before
        run = len(data) - got if got else run + len(data)
        # llhttp has no bound of its own on a head (kept in pieces until complete), on
        # chunk extensions or on trailers: _MAX_HEAD bytes in a row without a body byte.
        if run > _MAX_HEAD and not reader.complete:
            where = "response head" if not reader.head_done else "chunk framing or trailers"
            raise TransportError(ErrorKind.PROTOCOL, f"{where} over {_MAX_HEAD} bytes")
    if reader.extra:
        logger.warning(
            "closing the connection to %s: bytes arrived after the response", _peer(conn.sock)
        )
    return reader.response(), reader.keep and not reader.extra
