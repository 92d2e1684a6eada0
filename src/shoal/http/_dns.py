"""Host name lookups that honour a deadline, with a small cache.

``socket.getaddrinfo`` cannot be interrupted and takes as long as the system resolver
does (seconds per try, several tries), so a connect timeout alone does not bound a
request. Here each lookup runs on a short-lived daemon thread and callers wait for it
no longer than their timeout; a lookup that outlives them still finishes and fills the
cache for the next caller. Concurrent callers for the same host share one lookup, and
answers are kept for ``ttl`` seconds (definite failures for ``negative_ttl``; a
resolver's "try again" is not kept), so a crawl asks the resolver about each host once
in a while instead of once per connection.

IP literals never reach a thread: they are parsed in place.

``is_public_address`` tells addresses on the public internet from loopback, private,
link-local, shared, multicast, reserved and documentation ones (for ``deny_private``).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["Address", "DNSTimeout", "Resolver", "is_public_address"]

# (family, type, proto, sockaddr): what socket() and connect() need.
Address = tuple[socket.AddressFamily, socket.SocketKind, int, Any]
Lookup = Callable[..., list[tuple[Any, ...]]]


class DNSTimeout(TimeoutError):
    """The resolver did not answer within the caller's timeout."""


class _Pending:
    __slots__ = ("addresses", "done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.addresses: list[Address] = []
        self.error: BaseException | None = None


class Resolver:
    """Thread-safe. ``lookup`` is ``socket.getaddrinfo`` unless a test swaps it."""

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        negative_ttl: float = 10.0,
        max_entries: int = 4096,
        lookup: Lookup = socket.getaddrinfo,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._lookup = lookup
        self._lock = threading.Lock()
        # (host, port) -> (expires at, addresses or the error to raise again)
        self._cache: OrderedDict[tuple[str, int], tuple[float, list[Address] | BaseException]]
        self._cache = OrderedDict()
        self._pending: dict[tuple[str, int], _Pending] = {}

    def resolve(self, host: str, port: int, timeout: float) -> list[Address]:
        """Addresses for a TCP connection to ``host:port``; raises what getaddrinfo raises
        (``socket.gaierror``, ``UnicodeError`` for a name IDNA rejects) or DNSTimeout."""
        if _is_ip_literal(host):
            return _addresses(
                socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
            )
        key = (host, port)
        start = False
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                expires, answer = cached
                if expires > time.monotonic():
                    self._cache.move_to_end(key)
                    if isinstance(answer, BaseException):
                        raise _copy(answer)
                    return answer
                del self._cache[key]
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending()
                start = True
        if start:
            try:
                threading.Thread(
                    target=self._run, args=(key, pending), name="shoal-dns", daemon=True
                ).start()
            except RuntimeError as exc:  # "can't start new thread": out of threads or memory
                with self._lock:
                    self._pending.pop(key, None)
                pending.error = OSError(f"cannot look up {host!r}: {exc}")
                pending.done.set()  # callers that joined this lookup must not wait for it
        if not pending.done.wait(max(timeout, 0.0)):
            raise DNSTimeout(f"looking up {host!r} took over {timeout:g} s")
        if pending.error is not None:
            raise _copy(pending.error)
        return pending.addresses

    def _run(self, key: tuple[str, int], pending: _Pending) -> None:
        answer: list[Address] | BaseException
        try:
            answer = _addresses(self._lookup(key[0], key[1], type=socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - every outcome goes to the callers
            answer = exc
        with self._lock:
            self._pending.pop(key, None)
            if isinstance(answer, list):
                pending.addresses = answer
                self._store(key, self.ttl, answer)
            else:
                pending.error = answer
                if _definite(answer):  # "no such host", not "try again"
                    self._store(key, self.negative_ttl, answer)
        pending.done.set()  # after the cache: a woken caller's next lookup hits it

    def _store(
        self, key: tuple[str, int], ttl: float, answer: list[Address] | BaseException
    ) -> None:
        self._cache[key] = (time.monotonic() + ttl, answer)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _definite(error: BaseException) -> bool:
    """Whether a failed lookup says something about the name (worth caching briefly)
    rather than about the resolver at that moment (EAI_AGAIN: try again)."""
    if isinstance(error, socket.gaierror):
        return error.errno != socket.EAI_AGAIN
    return isinstance(error, OSError | UnicodeError)


def _copy(exc: BaseException) -> BaseException:
    """A fresh exception like ``exc``: one instance raised in many threads at once would
    have its traceback rewritten under each of them."""
    try:
        return type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - an exception type with an unusual constructor
        return exc


def _addresses(infos: list[tuple[Any, ...]]) -> list[Address]:
    return [(family, kind, proto, sockaddr) for family, kind, proto, _name, sockaddr in infos]


def _is_ip_literal(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: an IPv4 address inside


def is_public_address(text: str) -> bool:
    """Whether ``text`` (an IP address as getaddrinfo gives it, maybe with a %scope) is
    a globally reachable unicast address. An IPv6 address that carries an IPv4 one
    (IPv4-mapped, 6to4, NAT64) is judged by the IPv4 address it leads to."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            address = inner
    # is_global alone admits multicast (224.0.0.0/4 is not in its private list) and,
    # depending on the Python version, some reserved ranges: every test is spelled out.
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or getattr(address, "is_site_local", False)  # fec0::/10, IPv6 only
    )
