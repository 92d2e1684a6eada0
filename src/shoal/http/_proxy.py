"""Forward proxies: which one a URL goes through, and how to talk to it.

Plain ``http://`` URLs are sent to the proxy as absolute-form requests
(``GET http://host/path``); ``https://`` URLs go through a ``CONNECT`` tunnel, and TLS is
then spoken end to end with the real host, whose certificate is verified as usual.
Credentials in the proxy URL become a ``Proxy-Authorization: Basic`` header.

By default the rules come from the environment, as in curl, wget and requests:
``http_proxy``, ``https_proxy`` (or ``all_proxy``) and ``no_proxy``, in either case.

A pool (``ProxyRules.pool``): several proxies, each host name sticky to one of them, picked
by rendezvous hashing over the proxies still in service - the same pick in every process
given the same list (``--redis`` workers agree without talking), and a proxy that leaves
takes only its own hosts elsewhere. The HTTP client reports each proxy's failures here; one
that fails ``retire_after`` times in a row is retired for the rest of the run, with one
warning, and when none is left a request raises TransportError ``proxy`` rather than going
out directly (which would show the machine's own address). A single proxy (``single``, the
environment's) is a pool of one, retired the same way.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from .._errors import ErrorKind, TransportError
from .._url import split_url, without_userinfo

__all__ = ["MAX_RETIRE_AFTER", "RETIRE_AFTER", "Proxy", "ProxyRules", "ProxyStats"]

RETIRE_AFTER = 3
"""Failures in a row after which a proxy is retired (any answer from it starts the count
again). A failure is the proxy not working: it cannot be reached (refused, reset, its name
does not resolve, the TCP connection to it times out), it closes or resets a CONNECT or a
request without answering, it answers with something that is not HTTP (a wrong port), or it
answers 407. Not a failure: an answer about the target (a CONNECT refused with 403 or 502, a
page's 502), a page not answered in time, and a CONNECT not answered in time by a proxy that
is alive - it answered a request within ``ALIVE_FOR`` seconds, or reacts to a probe (a
``GET /`` it must answer itself) - since a proxy holds CONNECT open while its own connection
to a target that does not answer hangs: else one dead site could retire them all. A CONNECT
unanswered by a proxy silent to the probe too (a wedged proxy) is a failure.
A request whose proxy fails tries it again at once, up to this many times but at most 3: a
dead proxy is retired by the first request that meets it (which then goes through the host's
next proxy), while a single dropped connection is ridden out."""

# Seconds a proxy's answer (or a probe's reaction or silence) stands for its state: at most
# one probe of a proxy in that time, unless it answers meanwhile.
ALIVE_FOR = 30.0

MAX_RETIRE_AFTER = 100
"""The largest ``retire_after``: past it, a proxy that never works would hardly ever be
retired, and a crawl would keep sending its hosts into it."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # a Proxy-Authorization value, from the URL's user:password

    @property
    def key(self) -> str:
        """Names the proxy in connection-pool keys (credentials included: other
        credentials must not share a tunnel)."""
        return f"{self.host}:{self.port}#{self.authorization or ''}"

    @property
    def label(self) -> str:
        """The proxy as messages name it: its URL without credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """``http://[user:password@]host[:port]``; raises ValueError with the reason (which
        shows the URL without its credentials)."""
        text = url.strip()
        shown = repr(without_userinfo(text))
        if "://" not in text:
            text = "http://" + text  # "proxy:3128", as curl accepts
        try:
            parts = split_url(text)
        except ValueError as exc:
            raise ValueError(f"proxy {shown}: {exc}") from None
        if parts.scheme != "http":
            raise ValueError(
                f"proxy {shown}: only http:// proxies are supported (https:// URLs are "
                "tunnelled through them with CONNECT)"
            )
        port = parts.port if parts.port is not None else 80
        if port == 0:
            raise ValueError(f"proxy {shown}: bad port")
        if not parts.host:
            raise ValueError(f"proxy {shown}: no host")
        authorization = None
        if parts.userinfo:
            user, _colon, password = parts.userinfo.partition(":")
            user_pass = f"{unquote(user)}:{unquote(password)}"
            token = base64.b64encode(user_pass.encode("utf-8")).decode("ascii")
            authorization = f"Basic {token}"
        return cls(parts.host, port, authorization)


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """What one proxy did in a run: requests it answered, failures counted against it
    (see :data:`RETIRE_AFTER`), and, if it was retired, the failure that retired it."""

    proxy: str  # its URL without credentials (Proxy.label)
    requests: int
    failures: int
    retired: str | None = None  # the last failure's detail, if retired


class _Entry:
    """One proxy of the rules and its record (changed under the rules' lock)."""

    __slots__ = (
        "alive_at",
        "failures",
        "in_a_row",
        "label",
        "proxy",
        "rank",
        "requests",
        "retired",
        "silent_at",
    )

    def __init__(self, proxy: Proxy, label: str) -> None:
        self.proxy = proxy
        self.label = label
        # The proxy's own key for rendezvous hashing: the same in every process.
        self.rank = proxy.key.encode("utf-8") + b"\n"
        self.requests = 0
        self.failures = 0
        self.in_a_row = 0
        self.retired: str | None = None
        # When it last answered or reacted to a probe, and when a probe last met silence
        # (time.monotonic()).
        self.alive_at = self.silent_at = float("-inf")


def _score(entry: _Entry, host: bytes) -> bytes:
    return hashlib.blake2b(entry.rank + host, digest_size=8).digest()


def _failures(n: int) -> str:
    return f"{n} failure" if n == 1 else f"{n} failures"


_CACHE_HOSTS = 65_536  # hosts whose pick is remembered (cleared whole when full)


class ProxyRules:
    """Which proxy, if any, serves a URL; and which proxies are still in service.

    ``http`` and ``https``: the proxy URL, or a list of them (a pool), for each scheme.
    A host name (any port, either scheme) goes through one proxy of the pool while it
    serves: the proxy whose hash with the name ranks highest.

    ``no_proxy`` is a comma-separated list of exceptions, read as curl reads it: ``*``
    alone (every host), or host names that also cover their subdomains (``example.com``,
    ``.example.com``), IP addresses and networks (``10.0.0.0/8``). Ports in entries are
    ignored.

    ``retire_after``: failures in a row (see :data:`RETIRE_AFTER`) that retire a proxy.
    Thread-safe: the client reports every outcome through :meth:`failed` and
    :meth:`succeeded`.
    """

    def __init__(
        self,
        *,
        http: str | Sequence[str] | None = None,
        https: str | Sequence[str] | None = None,
        no_proxy: str = "",
        retire_after: int = RETIRE_AFTER,
    ) -> None:
        if not 1 <= retire_after <= MAX_RETIRE_AFTER:
            raise ValueError(
                f"retire_after must be from 1 to {MAX_RETIRE_AFTER} (got {retire_after})"
            )
        self.retire_after = retire_after
        self._lock = threading.Lock()
        self._entries: dict[Proxy, _Entry] = {}
        self._http = self._add(http)
        self._https = self._add(https)
        labels = [e.label for e in self._entries.values()]
        for number, each in enumerate(self._entries.values(), 1):
            if labels.count(each.label) > 1:  # one address, several credentials
                each.label = f"{each.label} (#{number})"
        # Each host's pick, remembered (keyed by scheme too when the schemes' proxies differ).
        self._picked: dict[str, _Entry] = {}
        self._same = self._http == self._https
        self._last_retired = ""
        self.no_proxy = no_proxy
        self._bypass_all = no_proxy.strip() == "*"  # only the whole value, as in curl
        self._domains: list[str] = []
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in no_proxy.split(","):
            entry = raw.strip().lower()
            if entry.startswith("[") and "]" in entry:  # [::1]:8080
                entry = entry[1 : entry.index("]")]
            elif entry.count(":") == 1:
                entry = entry.partition(":")[0]
            entry = entry.strip(".")
            if not entry or entry == "*":
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._domains.append(entry)

    def _add(self, urls: str | Sequence[str] | None) -> tuple[_Entry, ...]:
        if not urls:
            return ()
        chosen: list[_Entry] = []
        for url in [urls] if isinstance(urls, str) else urls:
            proxy = Proxy.parse(url)
            entry = self._entries.get(proxy)
            if entry is None:
                entry = self._entries[proxy] = _Entry(proxy, proxy.label)
            if entry not in chosen:  # the same proxy twice is one proxy
                chosen.append(entry)
        return tuple(chosen)

    @classmethod
    def from_environment(cls) -> ProxyRules | None:
        """The environment's rules, or None when it names no proxy it can use.

        A proxy the environment names but shoal cannot speak to (socks, https) is
        skipped with a warning rather than failing every crawl: the variable is often
        set for other programs.
        """
        env = urllib.request.getproxies_environment()
        fallback = env.get("all")
        usable: dict[str, str] = {}
        for scheme in ("http", "https"):
            url = env.get(scheme, fallback)
            if not url:
                continue
            try:
                Proxy.parse(url)
            except ValueError as exc:
                logger.warning("ignoring the %s proxy from the environment: %s", scheme, exc)
                continue
            usable[scheme] = url
        if not usable:
            return None
        return cls(http=usable.get("http"), https=usable.get("https"), no_proxy=env.get("no", ""))

    @classmethod
    def single(cls, url: str) -> ProxyRules:
        """One proxy for every URL, but for the environment's no_proxy hosts (as curl
        does with -x)."""
        return cls.pool([url])

    @classmethod
    def pool(cls, urls: Sequence[str], *, retire_after: int = RETIRE_AFTER) -> ProxyRules:
        """Several proxies for every URL (each host sticky to one), but for the
        environment's no_proxy hosts; ValueError for a bad URL or an empty list."""
        if isinstance(urls, str) or not urls:
            raise ValueError("a pool of proxies needs a list of at least one proxy URL")
        return cls(
            http=urls,
            https=urls,
            no_proxy=urllib.request.getproxies_environment().get("no", ""),
            retire_after=retire_after,
        )

    @property
    def size(self) -> int:
        """How many proxies the rules name."""
        return len(self._entries)

    @property
    def proxies(self) -> list[Proxy]:
        """Every proxy of the rules, in the order given."""
        return [entry.proxy for entry in self._entries.values()]

    def for_url(self, scheme: str, host: str) -> Proxy | None:
        """The proxy for a request to ``host`` over ``scheme``; None: connect directly.
        TransportError ``proxy`` when every proxy for ``scheme`` is retired."""
        entries = self._https if scheme == "https" else self._http
        if not entries:
            return None
        name = host.lower().rstrip(".")
        if self._bypassed(name):
            return None
        if len(entries) == 1:
            only = entries[0]
            if only.retired is not None:
                raise self._exhausted(entries)
            return only.proxy
        cached = name if self._same else f"{scheme}:{name}"
        picked = self._picked.get(cached)
        if picked is None or picked.retired is not None:
            picked = self._pick(entries, name, cached)
        return picked.proxy

    def _pick(self, entries: tuple[_Entry, ...], name: str, cached: str) -> _Entry:
        live = [entry for entry in entries if entry.retired is None]
        if not live:
            raise self._exhausted(entries)
        key = name.encode("utf-8", "surrogatepass")
        best = max(live, key=lambda entry: _score(entry, key))
        if len(self._picked) >= _CACHE_HOSTS:
            self._picked.clear()
        self._picked[cached] = best
        return best

    def _exhausted(self, entries: tuple[_Entry, ...]) -> TransportError:
        return TransportError(ErrorKind.PROXY, self._why_none_left(len(entries)))

    def _why_none_left(self, count: int) -> str:
        which = f"all {count} proxies" if count > 1 else "the proxy"
        with self._lock:
            last = self._last_retired
        return (
            f"no proxy left: {which} retired, each after {_failures(self.retire_after)} in a "
            f"row (the last failure: {last})"
        )

    def why_exhausted(self) -> str:
        """What to tell once :attr:`exhausted`: how many proxies were retired, and the
        failure that retired the last one."""
        return self._why_none_left(self.size)

    def failed(self, proxy: Proxy, detail: str) -> bool:
        """Count a failure of ``proxy`` (see :data:`RETIRE_AFTER`); True if it is retired
        now, by this failure or an earlier one: a request may then go through another."""
        entry = self._entries.get(proxy)
        if entry is None:
            return False
        with self._lock:
            if entry.retired is not None:
                return True
            entry.failures += 1
            entry.in_a_row += 1
            if entry.in_a_row < self.retire_after:
                return False
            entry.retired = self._last_retired = detail
            left = sum(1 for e in self._entries.values() if e.retired is None)
        # Logging handlers are the user's code: never under the lock.
        where = f"its hosts move to the {left} left" if left else "no proxy is left"
        logger.warning(
            "retiring proxy %s after %s in a row (the last: %s); %s",
            entry.label,
            _failures(self.retire_after),
            detail,
            where,
        )
        return True

    def succeeded(self, proxy: Proxy) -> None:
        """A request through ``proxy`` was answered: its failures in a row start over."""
        entry = self._entries.get(proxy)
        if entry is None:
            return
        with self._lock:
            entry.requests += 1
            entry.in_a_row = 0
            entry.alive_at = time.monotonic()

    def probed(self, proxy: Proxy, alive: bool) -> None:
        """What a probe of ``proxy`` met: a reaction (it is up, though its count is not
        reset: a proxy that cannot reach anything still fails requests their own way)
        or silence."""
        entry = self._entries.get(proxy)
        if entry is not None:
            with self._lock:
                if alive:
                    entry.alive_at = time.monotonic()
                else:
                    entry.silent_at = time.monotonic()

    def alive(self, proxy: Proxy) -> bool | None:
        """Whether ``proxy`` was last seen alive, within ``ALIVE_FOR`` seconds: True if
        it answered a request or a probe (a silence from it since is its target's),
        False if a probe met silence and nothing answered since, None if neither is
        recent (a probe will tell)."""
        entry = self._entries.get(proxy)
        if entry is None:
            return True
        with self._lock:
            alive_at, silent_at = entry.alive_at, entry.silent_at
        latest = max(alive_at, silent_at)
        if time.monotonic() - latest >= ALIVE_FOR:
            return None
        return alive_at >= silent_at

    @property
    def exhausted(self) -> bool:
        """Every proxy for one of the schemes is retired: requests over it cannot go out."""
        return any(
            entries and all(e.retired is not None for e in entries)
            for entries in (self._http, self._https)
        )

    def stats(self) -> list[ProxyStats]:
        """Each proxy's counts so far, in the order given."""
        with self._lock:
            return [
                ProxyStats(e.label, e.requests, e.failures, e.retired)
                for e in self._entries.values()
            ]

    def label(self, proxy: Proxy) -> str:
        """How messages name ``proxy``: its URL without credentials."""
        entry = self._entries.get(proxy)
        return proxy.label if entry is None else entry.label

    def _bypassed(self, host: str) -> bool:
        if self._bypass_all:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return any(host == d or host.endswith("." + d) for d in self._domains)
        return any(address in network for network in self._networks)
