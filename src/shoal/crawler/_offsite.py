"""What a rendered page loads from a host the crawl does not crawl (a CDN, an API host),
``render_resources="any"``: that host's robots.txt, and the private-network rule.

robots.txt (:class:`SideRobots`): the crawl's own hosts have their robots.txt as a job of
the frontier (shared with other workers, kept in the state); a host a page merely loads
from is never a host of the crawl, so its rules live here, read once per host on first
need: at most ``max_hosts`` of them, the least recently used forgotten (and read again if
needed again). One fetch at a time per host: requests that need the same host's rules
meanwhile wait for that fetch rather than start their own.

Private networks (:class:`PrivateNetworks`), without ``deny_private``: a page may load from
another host on a non-public address only if its own host is on an address of that kind
(loopback from loopback, a private network from a private network), as browsers' Private
Network Access rule has it: a page on the internet reaches no intranet service through
shoal, and no page reaches a link-local address (the cloud metadata service) it is not on.
``deny_private`` refuses every non-public address, and checks again as it connects (a
lookup here and the connection's may differ: for pages of untrusted sites, use it).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from .._url import split_url
from ..http import Resolver, is_public_address
from ._kinds import CrawlErrorKind
from ._robots import RobotsRules

__all__ = ["PrivateNetworks", "SideRobots", "address_kind"]

logger = logging.getLogger(__name__)

MAX_HOSTS = 1024


class _Pending:
    __slots__ = ("done", "rules")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.rules: RobotsRules | None = None


class SideRobots:
    """Thread-safe robots.txt rules per host key, each fetched by ``fetch(host)`` once.

    ``fetch`` is bounded by the crawl's own limits (its timeout per request, the robots.txt
    byte limit, five redirects); a caller that waits for another's fetch waits at most
    ``wait`` seconds, then is refused (unknown rules) without a fetch of its own."""

    def __init__(
        self, fetch: Callable[[str], RobotsRules], wait: float, max_hosts: int = MAX_HOSTS
    ) -> None:
        self._fetch = fetch
        self._wait = wait
        self._max = max_hosts
        self._lock = threading.Lock()
        self._rules: OrderedDict[str, RobotsRules] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self.fetched = 0  # robots.txt files read (each host's once while remembered)

    def rules(self, host: str) -> RobotsRules:
        with self._lock:
            known = self._rules.get(host)
            if known is not None:
                self._rules.move_to_end(host)
                return known
            pending = self._pending.get(host)
            mine = pending is None
            if pending is None:
                pending = self._pending[host] = _Pending()
                self.fetched += 1
        if not mine:
            if pending.done.wait(self._wait) and pending.rules is not None:
                return pending.rules
            return _unknown(host)
        rules: RobotsRules | None = None
        try:
            rules = self._fetch(host)
        except Exception as exc:  # as the crawl's own robots.txt job: deny the host
            logger.exception("robots.txt check failed for %s", host)
            rules = RobotsRules(
                deny_all=True,
                reason=f"robots.txt check failed: {exc!r}",
                error=CrawlErrorKind.INTERNAL,
                detail=repr(exc),
            )
        finally:
            # Waiters are let go whatever happened (a BaseException leaves no rules:
            # they are refused, and nothing is remembered).
            with self._lock:
                self._pending.pop(host, None)
                if rules is not None:
                    self._rules[host] = rules
                    while len(self._rules) > self._max:
                        self._rules.popitem(last=False)
            pending.rules = rules
            pending.done.set()
        if rules.reason:
            logger.info("%s/robots.txt (a host pages load from): %s", host, rules.reason)
        return rules


def _unknown(host: str) -> RobotsRules:
    return RobotsRules(
        deny_all=True,
        reason=f"{host}/robots.txt not read in time",
        error=CrawlErrorKind.INTERNAL,
        detail="robots.txt not read in time",
    )


def address_kind(text: str) -> str:
    """``public``, ``loopback``, ``link-local``, ``private`` or ``other`` (unspecified,
    reserved, multicast...) for an IP address as getaddrinfo gives it."""
    if is_public_address(text):
        return "public"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return "other"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "other"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    return "other"


class PrivateNetworks:
    """May a page on host key ``page`` load ``target``, a host out of the crawl's scope?
    Only if every non-public address ``target`` resolves to is of a kind the page's own
    host is on (see the module's docstring); ``other`` addresses never. Thread-safe (the
    resolver is, and caches)."""

    def __init__(self, timeout: float) -> None:
        self._resolver = Resolver()
        self._timeout = timeout

    def _kinds(self, url: str) -> frozenset[str] | None:
        try:
            parts = split_url(url)
            found = self._resolver.resolve(parts.host, parts.effective_port or 0, self._timeout)
        except (OSError, UnicodeError, ValueError):
            return None
        return frozenset(address_kind(a[3][0]) for a in found) or None

    def why_not(self, page: str, target: str) -> str | None:
        wanted = self._kinds(target)
        if wanted is None:
            return "a host out of scope that cannot be looked up"
        private = wanted - {"public"}
        if not private:
            return None
        own = self._kinds(page) or frozenset({"public"})
        refused = sorted(k for k in private if k not in own or k == "other")
        if refused:
            return (
                f"a host out of scope on a {refused[0]} address, which the page's own host "
                "is not on"
            )
        return None
