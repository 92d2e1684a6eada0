"""The scope gate: what every request shoal sends must pass before it is sent, whatever
fetches it (see ``_fetch.PageFetcher``).

A page, each of its redirect hops, a sitemap and each of *its* redirect hops are
checked against the crawl's scope (``Scope.allows``: http(s) only, allowed hosts,
include/exclude patterns, depth). Only robots.txt may leave the scope: RFC 9309
(section 2.3.1.2) lets its redirects go to another host, up to five hops.
Page redirects need more than a yes/no (robots.txt rules, politeness of another host,
dedup), so the crawler's own ``_vet_redirect`` starts with the same scope check.

Targets of other schemes (file:, ftp:, gopher:, ws: ...) never get this far:
``canonicalize`` refuses them, and the fetcher records that hop as ``bad_redirect``.

The crawler wraps each request's gate in a :class:`HopGate`, which adds ``deny_private``
(:class:`PublicOnly`) and remembers what it let through, so that a fetcher that requests
a URL without asking (a bug, or a browser that followed a redirect by itself) has its
result refused rather than recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from .._url import split_url
from ..http import ErrorKind, Resolver, TransportError, is_public_address
from ._fetch import REDIRECT_STATUSES, Fetched, Gate
from ._urls import Scope

__all__ = [
    "ROBOTS_MAX_REDIRECTS",
    "HopGate",
    "PublicOnly",
    "robots_gate",
    "sitemap_gate",
]

# RFC 9309 2.3.1.2: follow at least five consecutive redirects, then the file may be
# taken as unavailable (which a 3xx answer to robots_from_fetch means: allowed).
ROBOTS_MAX_REDIRECTS = 5


def robots_gate() -> Gate:
    """Redirects of one robots.txt fetch: any http(s) host, at most five hops."""
    hops = 0

    def follow(target: str) -> str | None:
        nonlocal hops
        hops += 1
        if hops > ROBOTS_MAX_REDIRECTS:
            return f"robots.txt redirected more than {ROBOTS_MAX_REDIRECTS} times"
        return None

    return follow


def sitemap_gate(scope: Scope, on_refused: Callable[[str], None] | None = None) -> Gate:
    """Redirects of one sitemap fetch: only to URLs the crawl may fetch."""

    def follow(target: str) -> str | None:
        if scope.allows(target):
            return None
        if on_refused is not None:
            on_refused(target)
        return "sitemap redirect out of scope"

    return follow


class PublicOnly:
    """``deny_private`` in the crawler: a URL whose host resolves to no public address is
    refused (``TransportError``, kind ``blocked``) before any fetcher requests it. The
    native client checks again as it connects (so a DNS answer that changes in between
    is caught there); this check holds for every other fetcher and transport. A host
    that cannot be looked up passes: its request fails on its own."""

    def __init__(self, resolver: Resolver, timeout: float) -> None:
        self._resolver = resolver
        self._timeout = timeout

    def __call__(self, url: str) -> None:
        try:
            parts = split_url(url)
            port = parts.effective_port
            addresses = self._resolver.resolve(parts.host, port or 0, self._timeout)
        except (OSError, UnicodeError, ValueError):
            return
        if addresses and not any(is_public_address(a[3][0]) for a in addresses):
            shown = addresses[0][3][0]
            raise TransportError(
                ErrorKind.BLOCKED, f"{parts.host!r} resolves to non-public address {shown}"
            )


class HopGate:
    """One fetch's gate as the fetcher sees it: the request's own rules, then
    ``deny_private``; and a record of what was let through, to check the result by."""

    __slots__ = ("_check", "_follow", "_seen")

    def __init__(self, follow: Gate, check: Callable[[str], None] | None) -> None:
        self._follow = follow
        self._check = check
        self._seen: dict[str, bool] = {}  # target -> let through

    def __call__(self, target: str) -> str | None:
        self._seen[target] = False
        why = self._follow(target)
        if why is not None:
            return why
        if self._check is not None:
            self._check(target)  # raises: the fetch ends with ``blocked``
        self._seen[target] = True
        return None

    def stray(self, start: str, fetched: Fetched) -> str | None:
        """A URL the fetch of ``start`` requested that this gate did not let through, or
        None. The final URL may be one the gate refused if the fetch stopped there (a
        redirect not followed, or a refusal)."""
        seen = self._seen
        for url in fetched.redirects:
            if url != start and not seen.get(url, False):
                return url
        final = fetched.final_url
        if final == start or seen.get(final, False):
            return None
        if final in seen and (fetched.error is not None or fetched.status in REDIRECT_STATUSES):
            return None
        return final
