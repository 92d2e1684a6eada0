"""The scope gate: what every request shoal sends must pass before it is sent, whatever
fetches it (see ``_fetch.PageFetcher``).

A page, each of its redirect hops, a sitemap and each of *its* redirect hops are
checked against the crawl's scope (``Scope.allows``: http(s) only, allowed hosts,
include/exclude patterns, depth), robots.txt and politeness (a hop to another host is
queued there: the crawler's ``_Redirects`` and ``_SitemapRedirects``). Only robots.txt may
leave the scope: RFC 9309 (section 2.3.1.2) lets its redirects go to another host, up to
five hops.

The crawler wraps each request's gates in a :class:`HopGate`, which checks canonical
forms only (another scheme or a malformed URL is refused), bounds the hops
(``max_redirects``, loops), adds ``deny_private`` (:class:`PublicOnly`) and remembers what
it let through, so that a fetcher that requests a URL without asking (a bug, or a browser
that followed a redirect by itself) has its result refused rather than recorded. Requests
beside a page (a browser's subresources) pass ``HopGate.side``: checked, never claimed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .._url import split_url
from ..http import ErrorKind, Resolver, TransportError, is_public_address
from ._cookies import FetchCookies
from ._fetch import REDIRECT_STATUSES, Fetched, Gate, no_side_requests
from ._urls import canonicalize

__all__ = [
    "ROBOTS_MAX_REDIRECTS",
    "HopGate",
    "PublicOnly",
    "robots_gate",
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


class PublicOnly:
    """``deny_private`` in the crawler: a URL whose host resolves to a non-public address
    is refused (``TransportError``, kind ``blocked``) before any fetcher requests it.

    ``strict`` (a transport or fetcher object, which looks the host up itself): every
    address must be public and a failed lookup is refused, as the native client's check
    through a proxy (``_check_target``): what the other side connects to is unknown, so
    one private address is enough. Not strict (the crawler's own native client, which
    checks again as it connects and only ever connects to the public addresses): a host
    with no public address is refused, and a failed lookup passes (its request fails on
    its own)."""

    def __init__(self, resolver: Resolver, timeout: float, *, strict: bool = False) -> None:
        self._resolver = resolver
        self._timeout = timeout
        self._strict = strict

    def __call__(self, url: str) -> None:
        host = url
        try:
            parts = split_url(url)
            host = parts.host
            port = parts.effective_port
            addresses = self._resolver.resolve(host, port or 0, self._timeout)
        except (OSError, UnicodeError, ValueError) as exc:
            if self._strict:
                raise TransportError(
                    ErrorKind.BLOCKED, f"cannot check that {host!r} is public: {exc}"
                ) from None
            return
        if not addresses:
            if self._strict:
                raise TransportError(ErrorKind.BLOCKED, f"{host!r} resolves to no address")
            return
        private = [a[3][0] for a in addresses if not is_public_address(a[3][0])]
        if private and (self._strict or len(private) == len(addresses)):
            raise TransportError(
                ErrorKind.BLOCKED, f"{host!r} resolves to non-public address {private[0]}"
            )


class HopGate:
    """One fetch's gates as the fetcher sees them: ``__call__`` for a redirect or
    navigation hop (the request's own rules, then ``deny_private``), and ``side`` for a
    request the fetcher makes beside it (a browser's XHR, script, image: the request's
    side rules, then ``deny_private``). Both take the fetcher's URL as given and check
    its canonical form; a URL that has none (another scheme, malformed) is refused.

    The hops are bounded here whatever the fetcher: at most ``max_hops`` of them, and none
    to a URL already in this chain (a loop) unless the last response changed the cookies
    a request of it carries (``cookies.resends``: a consent wall sends the fetch back
    with a cookie). What
    was let through is kept, to check the result by (``settle``)."""

    __slots__ = (
        "_canonical",
        "_check",
        "_cookies",
        "_follow",
        "_hops",
        "_last",
        "_limit",
        "_max_hops",
        "_resubmit",
        "_seen",
        "_side",
        "_start",
        "_stop",
    )

    def __init__(
        self,
        follow: Gate,
        check: Callable[[str], None] | None,
        *,
        start: str,
        max_hops: int,
        side: Gate = no_side_requests,
        canonical: bool = False,
        resubmit: bool = False,
        cookies: FetchCookies | None = None,
    ) -> None:
        self._follow = follow
        # The start is a POST: its first hop may lead back to its own URL (post, redirect,
        # get), which is then no loop.
        self._resubmit = resubmit
        self._cookies = cookies
        self._check = check
        self._side = side
        self._start = start
        self._max_hops = max_hops
        # The fetcher hands over canonical URLs already (HTTPFetcher): not done twice.
        self._canonical = canonical
        self._hops = 0
        self._seen: dict[str, bool] = {}  # target -> let through
        self._last: str | None = None  # the last target asked about
        # Why the gate refused the last target: a reason, or the error kind it raised.
        self._stop: str | ErrorKind | None = None
        # Set when the chain was refused for its length or a loop: the fetch's error.
        self._limit: tuple[ErrorKind, str] | None = None

    def _canon(self, url: str) -> str:
        return url if self._canonical else canonicalize(url)

    def __call__(self, target: str) -> str | None:
        try:
            target = self._canon(target)
        except ValueError as exc:
            why = f"not a crawlable URL: {exc}"
            self._last, self._stop = target, why
            self._limit = (ErrorKind.BAD_REDIRECT, why)  # as HTTPFetcher reports it
            return why
        self._last, self._stop = target, None
        seen = self._seen
        again = target == self._start and not (self._resubmit and not seen)
        if again or target in seen:
            cookies = self._cookies
            if (
                cookies is not None
                and cookies.resends(target)
                and (target == self._start or seen[target])
                and self._hops < self._max_hops
            ):
                # The response set a cookie and sends the fetch back to a URL already let
                # through (a consent wall): a new request of that URL, not a loop. Each
                # such hop counts, so the chain stays bounded by max_hops.
                self._hops += 1
                return None
            why = f"redirect loop at {target}"
            self._limit = (ErrorKind.REDIRECT_LOOP, why)
            self._stop = why
            return why
        seen[target] = False
        if self._hops >= self._max_hops:
            why = f"more than {self._max_hops} redirects"
            self._limit = (ErrorKind.TOO_MANY_REDIRECTS, why)
            self._stop = why
            return why
        refused = self._follow(target)
        if refused is not None:
            self._stop = refused
            return refused
        if self._check is not None:
            try:
                self._check(target)
            except TransportError as exc:  # the fetch ends with ``blocked``
                self._stop = exc.kind
                raise
        seen[target] = True
        self._hops += 1
        return None

    def side(self, url: str) -> str | None:
        """May the fetcher request ``url`` beside the page (not a hop: nothing is claimed,
        queued or counted)? None, or why not; raises ``TransportError`` (``blocked``) for
        ``deny_private``."""
        try:
            url = canonicalize(url)
        except ValueError as exc:
            return f"not a crawlable URL: {exc}"
        why = self._side(url)
        if why is None and self._check is not None:
            self._check(url)
        return why

    def stray(self, start: str, fetched: Fetched) -> str | None:
        """A URL the fetch of ``start`` requested that this gate did not let through, or
        None. The final URL may be one the gate refused only if the fetch stopped before
        requesting it: the last target asked about, and the result is the refusal itself
        (the gate's reason as its detail and a 3xx, or the error the gate raised)."""
        seen = self._seen
        for given in fetched.redirects:
            try:
                url = self._canon(given)
            except ValueError:
                return given
            if url != start and not seen.get(url, False):
                return given
        shown = fetched.final_url
        try:
            final = self._canon(shown)
        except ValueError:
            final = shown  # only the refusal of that very URL may end there
        else:
            if final == start or seen.get(final, False):
                return None
        stop = self._stop
        if final == self._last and stop is not None:
            if isinstance(stop, ErrorKind):
                if fetched.error is stop:
                    return None
            elif (
                fetched.error is None
                and fetched.status in REDIRECT_STATUSES
                and fetched.detail == stop
            ):
                return None
        return shown

    def settle(self, fetched: Fetched) -> Fetched:
        """The result in canonical form, with the error of a chain the gate cut for its
        length or a loop (a fetcher that relies on the gate reports only the refusal)."""
        if not self._canonical:
            # Pages resolve their links against final_url: it must be the canonical form.
            # (Called after ``stray``, which refused a result with a non-canonical URL,
            # but for a final URL the gate refused as such: kept, the fetch never went.)
            final = fetched.final_url
            if final != self._last or not isinstance(self._stop, str):
                final = canonicalize(final)
            redirects = tuple(canonicalize(u) for u in fetched.redirects)
            if final != fetched.final_url or redirects != tuple(fetched.redirects):
                fetched = replace(fetched, final_url=final, redirects=redirects)
        limit = self._limit
        if limit is None or fetched.error is not None:
            return fetched
        kind, why = limit
        return replace(fetched, error=kind, detail=why)
