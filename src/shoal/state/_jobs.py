"""The job types a frontier takes in and gives out, one set for every layer.

A crawl's state (SQLite or Redis, this package) and the crawler's frontier seam
(``shoal.crawler.frontier``, which re-exports these) speak the same types: a
:class:`Candidate` goes in, a :class:`Lease` comes out, a :class:`HostPolicy` is stored
per host, a :class:`Released` says what a release did. They know nothing of HTTP or of
the crawler, so the state layer below the crawler can use them as they are: no second
set of mirrored classes to convert between on every page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "Candidate",
    "HostPace",
    "HostPolicy",
    "JobKind",
    "Lease",
    "Released",
    "host_key",
    "host_name_port",
    "job_key",
    "pace_for",
]


class JobKind(StrEnum):
    PAGE = "page"
    ROBOTS = "robots"
    SITEMAP = "sitemap"


def host_key(url: str) -> str:
    """``scheme://host[:port]`` of a canonical URL: the unit of politeness and robots.txt."""
    end = url.find("/", url.find("//") + 2)
    return url if end < 0 else url[:end]


def host_name_port(host: str) -> tuple[str, int]:
    """(name, port) of a host key ``scheme://host[:port]``; the port is the scheme's
    default (80, 443) when the key has none. An IPv6 name keeps its brackets. A name's
    trailing dot (``example.com.``, the same host) is left off, as host patterns leave it
    off: the key itself keeps it (it names the host in states and outputs)."""
    scheme, _, rest = host.partition("://")
    name, port = rest, ""
    colon = rest.rfind(":")
    if colon > rest.rfind("]"):
        name, port = rest[:colon], rest[colon + 1 :]
    if name.endswith("."):
        name = name.rstrip(".")
    if port.isdigit():
        return name, int(port)
    return name, 443 if scheme == "https" else 80


class HostPace(NamedTuple):
    """Politeness of the hosts a host pattern matches, where it is not the crawl's
    (None: the crawl's). A pattern is a host name (``example.com``: every port of it) or
    ``name:port`` (that port only); names are lower case, IPv6 ones in brackets."""

    per_host: int | None = None  # requests in flight to the host at most
    delay: float | None = None  # seconds between request starts on the host


_NO_PACE = HostPace()


def pace_for(paces: Mapping[str, HostPace], host: str) -> HostPace:
    """The pace of host key ``host``: each field from its ``name:port`` pattern if that
    sets it, else from its ``name`` pattern (None where neither does)."""
    if not paces:
        return _NO_PACE
    name, port = host_name_port(host)
    pinned = paces.get(f"{name}:{port}")
    named = paces.get(name)
    if pinned is None:
        return named or HostPace()
    if named is None:
        return pinned
    return HostPace(
        named.per_host if pinned.per_host is None else pinned.per_host,
        named.delay if pinned.delay is None else pinned.delay,
    )


def job_key(url: str, request: str | None) -> str:
    """What a job is deduped (and fingerprinted) by: its URL for a plain GET, so a GET's
    fingerprint never changed; a request's encoded fields (``request``, made by the
    crawler) begin with a line naming what else tells it apart (method and body digest;
    empty for a GET that only carries a label or meta), which is then part of the key."""
    if request is None:
        return url
    ident = request[: request.find("\n")]
    return f"{ident} {url}" if ident else url


class Candidate(NamedTuple):
    """A URL offered to the frontier (start URL, link, redirect target, sitemap entry):
    canonical, absolute http(s), already through the crawler's scope gate. A named tuple,
    not a frozen dataclass: one is made per link found (4x cheaper to build). Its host is
    :func:`host_key` of its URL, computed by a backend only for URLs it has not seen."""

    url: str
    depth: int = 0
    referrer: str | None = None
    kind: JobKind = JobKind.PAGE
    # A request's fields, encoded by the crawler (method, body, headers, label, meta);
    # None for a plain GET, which costs nothing more to keep. See :func:`job_key`.
    request: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """One job given out. Backend-private state (fingerprints, spill flags, redirect
    targets claimed by earlier attempts) lives in the backend, keyed by ``id``."""

    id: str  # opaque, unique per lease()
    url: str
    host: str  # "scheme://host[:port]", never with userinfo
    kind: JobKind
    depth: int
    referrer: str | None
    attempt: int  # 1 for a first try
    request: str | None = None  # as the Candidate's: None for a plain GET


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """A host's rules as every process applies them."""

    robots_txt: str | None  # None: no rules (robots.txt 4xx, or robots off): allow all
    crawl_delay: float | None  # seconds, already capped by the crawler
    # Set when robots.txt could not be fetched (dns, tls, connection, timeout, 5xx): the
    # host's pages are recorded as held back and stay queued for a later run. ``kind`` and
    # ``detail`` of that failure, for their records.
    unreachable: tuple[str, str] | None = None


class Released(NamedTuple):
    """What a release did."""

    added: list[Candidate]  # the release's links that were new
    jobs: list[Lease]  # leased in the same step (``take`` > 0), as from lease()
    ready_in: float | None = None  # as from lease(), when ``take`` > 0
    # The lease was no longer this worker's (it expired and went elsewhere): the job's
    # result must not be written. Only a shared backend loses leases this way.
    lost: bool = False
    # A shared backend's, when ``take`` > 0: seconds until the first lease of the crawl
    # expires (its URL comes back then); None: none, or not a shared backend.
    expires_in: float | None = None
