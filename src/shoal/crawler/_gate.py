"""The scope gate: what every request shoal sends must pass before it is sent.

A page, each of its redirect hops, a sitemap and each of *its* redirect hops are
checked against the crawl's scope (``Scope.allows``: http(s) only, allowed hosts,
include/exclude patterns, depth). Only robots.txt may leave the scope: RFC 9309
(section 2.3.1.2) lets its redirects go to another host, up to five hops.
Page redirects need more than a yes/no (robots.txt rules, politeness of another host,
dedup), so the crawler's own ``_vet_redirect`` starts with the same scope check.

Targets of other schemes (file:, ftp:, gopher:, ws: ...) never get this far:
``canonicalize`` refuses them, and the fetcher records that hop as ``bad_redirect``.
"""

from __future__ import annotations

from collections.abc import Callable

from ._urls import Scope

__all__ = ["ROBOTS_MAX_REDIRECTS", "robots_gate", "sitemap_gate"]

# RFC 9309 2.3.1.2: follow at least five consecutive redirects, then the file may be
# taken as unavailable (which a 3xx answer to robots_from_fetch means: allowed).
ROBOTS_MAX_REDIRECTS = 5

Gate = Callable[[str], str | None]


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
