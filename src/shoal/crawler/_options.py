"""Crawl options, shared by the Python API and the command line, with safe defaults."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._errors import UsageError
from .._version import __version__
from ..http import TRANSPORTS, ProxyRules

__all__ = ["DEFAULT_USER_AGENT", "CrawlOptions"]

DEFAULT_USER_AGENT = f"shoal/{__version__} (+https://github.com/shoal-crawler/shoal)"


@dataclass
class CrawlOptions:
    """Every knob of a crawl. Each limit has a default that keeps a crawl bounded.

    ``max_pages`` (10,000), ``max_depth`` (50), ``max_bytes`` per response (10 MB after
    decompression) and ``timeout`` per request (30 s) are always on; ``max_time`` for the
    whole crawl is off unless given.
    """

    concurrency: int = 16
    per_host: int = 8
    delay: float = 0.0
    max_pages: int = 10_000
    max_depth: int = 50
    max_bytes: int = 10 * 1024 * 1024
    max_time: float | None = None
    max_redirects: int = 10
    max_sitemaps: int = 1_000  # sitemaps queued per run (each fetch also counts as a page)
    max_links_per_page: int = 10_000  # links taken from one page (or one callback's return)
    allow_domains: Sequence[str] = ()
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    robots: bool = True
    user_agent: str = DEFAULT_USER_AGENT
    timeout: float = 30.0
    retries: int = 2
    retry_backoff: float = 0.5
    extract: Mapping[str, str] = field(default_factory=dict)
    sitemaps: bool = False
    auto_throttle: bool = False
    throttle_target: float = 2.0  # requests in flight per host that auto-throttle aims at
    throttle_start: float = 1.0  # auto-throttle's first delay per host, before any latency is known
    verify_tls: bool = True
    transport: str = "native"  # HTTP client: "native" (shoal's own) or "urllib3"
    # "env": http_proxy/https_proxy/no_proxy from the environment; None: no proxy;
    # otherwise the URL of one proxy for every request.
    proxy: str | None = "env"
    # Connect only to public IP addresses (checked after every lookup): for crawls of
    # URLs someone else chose, so no link, redirect or DNS answer reaches 127.0.0.1,
    # the local network or a cloud metadata address. Refusals are error kind "blocked".
    deny_private: bool = False
    output: str | None = None
    format: str | None = None
    progress: bool | None = None  # None: on when stderr is a terminal
    grace: float = 10.0  # seconds in-flight requests get after the first Ctrl-C
    state: str | None = "auto"  # path of the state file; "auto": <output>.state.sqlite
    fresh: bool = False  # discard this crawl's existing state and output; start over
    overwrite: bool = False  # replace an existing output that is not this crawl's
    memory_limit: int = 20_000  # queued URLs kept in memory; the rest wait on disk
    save_bodies: bool = False  # add the response body and its SHA-256 to each record
    _proxies: ProxyRules | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        positive = {
            "concurrency": self.concurrency,
            "per_host": self.per_host,
            "max_pages": self.max_pages,
            "max_bytes": self.max_bytes,
            "memory_limit": self.memory_limit,
            "max_links_per_page": self.max_links_per_page,
        }
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"{name} must be at least 1 (got {value})")
        if min(self.max_depth, self.retries, self.max_redirects, self.max_sitemaps) < 0:
            raise UsageError("max_depth, retries, max_redirects and max_sitemaps must be >= 0")
        if self.delay < 0 or self.timeout <= 0:
            raise UsageError("delay must be >= 0 and timeout > 0")
        if self.transport not in TRANSPORTS:
            names = " or ".join(TRANSPORTS)
            raise UsageError(f"unknown transport {self.transport!r}: {names}")
        if self.deny_private and self.transport != "native":
            raise UsageError("deny_private needs the native HTTP client (--http-client native)")
        if self.max_time is not None and self.max_time <= 0:
            raise UsageError("max_time must be > 0")
        self._proxies = self._make_proxy_rules()  # a bad proxy fails here, before any work
        self.per_host = min(self.per_host, self.concurrency)

    def proxy_rules(self) -> ProxyRules | None:
        return self._proxies

    def _make_proxy_rules(self) -> ProxyRules | None:
        try:
            if self.proxy == "env":
                rules = ProxyRules.from_environment()
            elif self.proxy is None or self.proxy.lower() == "none":
                rules = None
            else:
                rules = ProxyRules.single(self.proxy)
        except ValueError as exc:
            where = " (from the environment)" if self.proxy == "env" else ""
            raise UsageError(f"{exc}{where}") from None
        if rules is not None and self.transport != "native":
            raise UsageError(
                "the urllib3 HTTP client does not go through proxies: use --http-client native"
                + (" or --proxy none" if self.proxy == "env" else "")
            )
        return rules

    @property
    def initial_delay(self) -> float:
        """Per-host delay before anything is known about the host."""
        return max(self.delay, self.throttle_start) if self.auto_throttle else self.delay

    def scope_key(self) -> dict[str, object]:
        """The options that change which URLs belong to the crawl (checked on resume)."""
        return {
            "allow_domains": sorted(self.allow_domains),
            "include": list(self.include),
            "exclude": list(self.exclude),
            "max_depth": self.max_depth,
            "robots": self.robots,
        }
