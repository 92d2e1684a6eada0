"""Fetching: the seam between the crawler and whatever gets a URL's response.

The crawler asks a :class:`PageFetcher` for one URL at a time with a
:class:`FetchRequest` and gets back a :class:`Fetched`: the response after any redirects,
or the reason there is none. A fetch never raises for a network or protocol problem:
``Fetched.error`` is the :class:`~shoal.http.ErrorKind`.

:class:`HTTPFetcher` is the first fetcher: redirects followed one hop at a time over a
:class:`~shoal.http.Transport` (the contract and both clients live in ``shoal.http``).
Another fetcher (a browser, for pages that JavaScript builds) plugs in through
``Crawler(fetcher=...)``. Whatever the fetcher, the crawler keeps the rules: every URL it
requests beyond the first must pass ``FetchRequest.gate`` (scope, robots.txt, politeness,
``deny_private``), and the crawler checks the result's redirect chain against what the
gate let through (see ``_gate.HopGate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import urljoin

from ..http import ErrorKind, Transport, TransportError
from ._cookies import FetchCookies, with_cookie
from ._headers import no_headers
from ._options import CrawlOptions
from ._urls import canonicalize
from .frontier import JobKind

__all__ = [
    "FetchRequest",
    "FetchSetup",
    "Fetched",
    "FetcherFactory",
    "Gate",
    "HTTPFetcher",
    "PageFetcher",
    "no_side_requests",
]


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Gate = Callable[[str], str | None]
"""A request's gate: ``gate(url)`` before requesting ``url``: None to go on, or why not.
It may raise :class:`~shoal.TransportError` (kind ``blocked``, for ``deny_private``).

``FetchRequest.gate`` is for a redirect or navigation hop (the page moves to ``url``):
refused, the fetch stops there; raised, it ends with that error. ``FetchRequest.side``
is for a request beside the page (a browser's XHR, script, image): refused or raised,
that one request is not made and the page goes on."""


def no_side_requests(url: str) -> str | None:
    """The side-request check of a fetch that may make none (robots.txt)."""
    return "no side request may be made for this fetch"


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """One URL the crawler wants: a page, robots.txt or a sitemap (``kind``)."""

    url: str  # canonical http(s); already in scope and past robots.txt
    gate: Gate  # every further URL requested for this fetch must pass it first
    max_bytes: int  # the decoded body's limit
    truncate: bool = False  # a longer body is cut to max_bytes, not the error too_large
    kind: JobKind = JobKind.PAGE
    # every request made beside the page (not a hop) must pass it first
    side: Gate = no_side_requests
    # Sent with the first request only (not with a redirect hop): a recrawl's conditional
    # headers (If-None-Match, If-Modified-Since), which name this URL's last capture.
    headers: Mapping[str, str] = field(default_factory=dict)
    # The crawl's own headers for a URL (-H, --header-for, --auth): every request this
    # fetch makes, the first and each hop, sends ``headers_for(its URL)``, asked again
    # for each URL, since credentials go only where they may (see ``_headers``).
    headers_for: Callable[[str], Mapping[str, str]] = no_headers
    # A request a page callback made (shoal.Request): its method, its body (None: none),
    # and its own headers, sent with every hop of this fetch (hops stay on the URL's
    # origin: a redirect to another host is queued as a request of its own, without them).
    # After a 301/302/303, a POST goes on as a GET without its body, as browsers do; a
    # 307/308 keeps both.
    method: str = "GET"
    body: bytes | None = None
    request_headers: Mapping[str, str] = field(default_factory=dict)
    # The crawl's cookie jar as this fetch sees it (None: cookies off): a fetcher asks it
    # for each request's Cookie header and hands it each response's Set-Cookie.
    cookies: FetchCookies | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of one fetch, redirects included: the one shape of a response in the
    crawler (a :class:`~shoal.crawler.Page` is made over it, a WARC record from it).
    Immutable: what the crawler concludes about it (a retry, a failure) goes elsewhere."""

    url: str
    final_url: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0
    redirects: tuple[str, ...] = ()  # URLs requested before final_url
    error: ErrorKind | None = None  # how it failed (a str: records hold its value)
    detail: str = ""  # the human-readable reason behind ``error``
    retry_after: float | None = None
    truncated: bool = False  # the body is the first max_bytes of a longer one (truncate)
    # The request that got this response (the last hop's): a WARC request record's.
    method: str = "GET"
    request_body: bytes | None = None
    request_headers: Mapping[str, str] = field(default_factory=dict)
    # The fetch failed before its first request left (TransportError.unsent): a POST may
    # then be sent again; after it left, never (the server may have acted on it).
    unsent: bool = False
    # The body is the DOM a browser rendered from the response (--render), not the bytes
    # the server sent; ``headers`` are still the server's, but for Content-Type (UTF-8).
    rendered: bool = False
    # --render: why the page was rendered or not ("app-shell", "learned", "static"...;
    # see crawler/_scripted.py); None for what is never rendered (not HTML, an error).
    render_reason: str | None = None
    # What a WARC keeps for this fetch instead of it (a rendered page, when the crawl
    # writes WARC): the HTTP response the page was loaded from, then each response the
    # browser loaded for it, in the order they came.
    archive: tuple[Fetched, ...] = ()
    # Links of the fetch beside its body's (absolute URLs), followed with them: a rendered
    # page whose script moved it elsewhere (another page, a download) keeps the links of
    # the document it was served first (empty if that document says nofollow).
    served_links: tuple[str, ...] = ()

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@runtime_checkable
class PageFetcher(Protocol):
    """What the crawler fetches through. Thread-safe: every worker calls ``fetch`` at once.

    ``fetch`` requests ``request.url`` and returns a :class:`Fetched`; it never raises for
    a network or protocol problem (an exception is recorded as the page's internal error).
    Before it moves to any other URL for this fetch (a redirect hop, a navigation), it
    calls ``request.gate(url)`` and stops there unless that returns None (a refused hop:
    ``final_url`` the refused URL, the 3xx response's status, ``detail`` the gate's
    reason, no ``error``); before any request beside the page (a subresource), it calls
    ``request.side(url)`` and skips that request unless it returns None. ``Fetched``'s
    ``redirects`` and ``final_url`` say which URLs it moved through, and the crawler
    refuses a result that went where the gate did not let it. The gate also bounds the
    hops (``max_redirects``, loops) whatever the fetcher. ``close`` ends what the fetcher
    holds (the crawler calls it at the end of each run it built the fetcher for)."""

    def fetch(self, request: FetchRequest) -> Fetched: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class FetchSetup:
    """What a fetcher factory (``Crawler(fetcher=factory)``) is given at the start of a
    run: the crawl's options and its HTTP transport (owned by the crawler, which closes
    it; a browser fetcher sends robots.txt and sitemaps over it)."""

    options: CrawlOptions
    transport: Transport
    # The crawl writes WARC: a fetcher that loads more than the page (a browser) hands
    # what it loaded in ``Fetched.archive``.
    archive: bool = False
    # Other processes lease from the same crawl (``Frontier.shared``: ``redis``). Its
    # frontier then bounds the leases of a host across all of them (``per_host``), not
    # this process: a fetcher that makes more than one request a page (a browser) keeps
    # a page's requests to its own host to one at a time, so each lease stays one
    # request in flight.
    shared: bool = False


FetcherFactory = Callable[[FetchSetup], PageFetcher]


class HTTPFetcher:
    """Fetching over a :class:`~shoal.http.Transport`, one redirect hop at a time.

    Thread-safe: one transport (with its connection pools) shared by every worker. The
    transport is the caller's: ``close`` leaves it open."""

    def __init__(
        self,
        transport: Transport,
        *,
        user_agent: str,
        timeout: float = 30.0,
        max_redirects: int = 10,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._transport = transport
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip, deflate, br",
            **(headers or {}),
        }

    @classmethod
    def from_setup(cls, setup: FetchSetup) -> HTTPFetcher:
        """The crawler's default fetcher factory."""
        opts = setup.options
        return cls(
            setup.transport,
            user_agent=opts.user_agent,
            timeout=opts.timeout,
            max_redirects=opts.max_redirects,
        )

    def close(self) -> None:
        pass  # the transport is closed by whoever made it

    def fetch(self, request: FetchRequest) -> Fetched:
        """GET ``request.url``, following redirects while the gate returns None; a
        string return stops at that hop (out of scope, already seen, ...), a
        TransportError ends the fetch with its kind.

        Only canonical http(s) targets reach the gate: a Location of another scheme is the
        error ``bad_redirect``."""
        url, follow = request.url, request.gate
        started = time.monotonic()
        deadline = started + self.timeout
        redirects: list[str] = []
        current = final = url
        status: int | None = None
        headers: Mapping[str, str] = {}
        body = b""
        error: ErrorKind | None = None
        detail = ""
        retry_after: float | None = None
        truncated = False
        unsent = False
        headers_for = request.headers_for
        method, sent_body = request.method, request.body
        cookies = request.cookies
        for hop in range(self.max_redirects + 1):
            final, body = current, b""
            sent = self._sent_headers(request, hop, method, headers_for(current))
            if cookies is not None:
                cookie = cookies.header(current)
                if cookie is not None:
                    sent = with_cookie(sent, cookie)
            try:
                if method == "GET" and sent_body is None:
                    response = self._transport.get(
                        current,
                        sent,
                        max_bytes=request.max_bytes,
                        deadline=deadline,
                        truncate=request.truncate,
                    )
                else:
                    response = self._transport.get(
                        current,
                        sent,
                        max_bytes=request.max_bytes,
                        deadline=deadline,
                        truncate=request.truncate,
                        method=method,
                        body=sent_body,
                    )
            except TransportError as exc:
                error, detail = exc.kind, exc.detail
                unsent = hop == 0 and exc.unsent
                break
            status, headers, body = response.status, response.headers, response.body
            retry_after = _retry_after(headers.get("retry-after"))
            truncated = response.truncated
            if cookies is not None:
                cookies.received(current, headers.get("set-cookie"))
            if status not in REDIRECT_STATUSES:
                break
            location = headers.get("location")
            if not location:
                break
            try:
                target = canonicalize(urljoin(current, location))
            except ValueError as exc:
                shown = location if len(location) <= 200 else location[:200] + "..."
                error, detail = ErrorKind.BAD_REDIRECT, f"bad Location {shown!r}: {exc}"
                break
            # A POST answered by a redirect to its own URL (post, redirect, get) is no loop;
            # nor is the same URL asked again after the response set a cookie (a consent
            # wall that sets one and sends you back): another request of it.
            to_get = status in (301, 302, 303) and method != "GET"
            if (target in redirects or (target in (current, url) and not to_get)) and not (
                cookies is not None and cookies.resends(target)
            ):
                error, detail = ErrorKind.REDIRECT_LOOP, f"redirect loop at {target}"
                break
            if hop == self.max_redirects:  # the last turn: the gate is not asked in vain
                error = ErrorKind.TOO_MANY_REDIRECTS
                detail = f"more than {self.max_redirects} redirects"
                break
            try:
                stop = follow(target)
            except TransportError as exc:  # deny_private: the hop may not be requested
                redirects.append(current)
                final, body = target, b""  # as a transport's refusal of that hop
                error, detail = exc.kind, exc.detail
                break
            if stop is not None:
                detail, final = stop, target
                break
            redirects.append(current)
            current = final = target
            if to_get:
                # As browsers (and requests) do: the form was answered, fetch the result.
                method, sent_body = "GET", None
        else:
            error = ErrorKind.TOO_MANY_REDIRECTS
            detail = f"more than {self.max_redirects} redirects"
        return Fetched(
            url,
            final,
            status,
            headers,
            body,
            time.monotonic() - started,
            tuple(redirects),
            error,
            detail,
            retry_after,
            truncated,
            method,
            sent_body,
            request.request_headers if method == request.method else {},
            unsent,
        )

    def _sent_headers(
        self, request: FetchRequest, hop: int, method: str, crawl: Mapping[str, str]
    ) -> Mapping[str, str]:
        """The one place a fetch's headers are merged, names without case, each over the
        last: the fetcher's own; the crawl's for this URL (``crawl``: -H, --header-for,
        --auth, decided per URL by ``_headers``); a shoal.Request's own (every hop of its
        origin; its Content-Type only while the body is sent); the first hop's
        conditional ones."""
        sent: Mapping[str, str] = self._headers
        if crawl:
            sent = _merged(sent, crawl)
        own = request.request_headers
        if own:
            if method != request.method:
                own = {k: v for k, v in own.items() if k.lower() != "content-type"}
            sent = _merged(sent, own)
        if hop == 0 and request.headers:
            sent = _merged(sent, request.headers)
        return sent


def _merged(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` over it, header names compared without case (a user's
    ``accept`` replaces shoal's ``Accept``, it is not sent twice)."""
    out = dict(base)
    for name, value in extra.items():
        if name not in out:
            lower = name.lower()
            for have in [k for k in out if k.lower() == lower]:
                del out[have]
        out[name] = value
    return out


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts "²"
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
