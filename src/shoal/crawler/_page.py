"""What a page callback receives: one fetched response, with lazy text and selectors."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from ._fetch import Fetched
from ._html import ParsedHTML, bounded, decode_body, is_html, link_hrefs_by_text, parse_html
from ._logout import LOGOUT_MENTION, says_logout
from ._request import Request
from ._urls import LinkResolver, Refused, join_url

if TYPE_CHECKING:
    from parsel import Selector, SelectorList

__all__ = ["Page", "product_token", "robots_directives"]


_UNSET: Any = object()
# The directives a crawler acts on; "none" means both.
_DIRECTIVES = frozenset({"noindex", "nofollow"})
# "name: value" directives of X-Robots-Tag, whose colon is not a user-agent prefix.
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})
_AGENT_PREFIX = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*:(.*)", re.S)


def product_token(user_agent: str) -> str:
    """The name a User-Agent goes by in robots rules: ``shoal`` for ``shoal/1.0 (+url)``."""
    words = user_agent.split("/", 1)[0].split()
    return words[0] if words else ""


def robots_directives(
    metas: Iterable[tuple[str, str]], header: str | None, agent: str
) -> tuple[str, ...]:
    """The ``noindex``/``nofollow`` directives that apply to the user-agent product token
    ``agent``: from ``<meta name="robots">`` or ``<meta name="AGENT">`` (content
    comma-separated, case-insensitive, ``none`` meaning both) and from the X-Robots-Tag
    header (repeated fields arrive joined by "\\n"; in a field, an ``otherbot:`` prefix
    makes what follows it apply to that agent only)."""
    agent = agent.lower()
    words: list[str] = []
    for name, content in metas:
        if name in ("robots", agent):
            words.extend(content.split(","))
    for line in header.split("\n") if header else ():
        applies = True
        for part in line.split(","):
            m = _AGENT_PREFIX.fullmatch(part)
            directive = part
            if m is not None and m.group(1).lower() not in _VALUED:
                applies = m.group(1).lower() == agent
                directive = m.group(2)
            if applies:
                words.append(directive)
    found: list[str] = []
    for raw in words:
        word = raw.strip().lower()
        for directive in ("noindex", "nofollow") if word == "none" else (word,):
            if directive in _DIRECTIVES and directive not in found:
                found.append(directive)
    return tuple(sorted(found))


class Page:
    """A fetched URL. ``text``, ``links`` and selectors are computed on first use.

    A page is made over the fetch's one immutable response (``response``, a
    :class:`~shoal.crawler.Fetched`: its redirects are there too); ``url``, ``final_url``,
    ``status``, ``headers``, ``body`` and ``elapsed`` are read from it, not copied.

    A Page belongs to the worker thread that made it, so the lazy attributes need no
    lock. (functools.cached_property would take one class-wide lock on Python 3.11,
    serializing every page's parse across all workers.)
    """

    __slots__ = (
        "_base_url",
        "_bounded",
        "_decoded",
        "_html",
        "_is_html",
        "_links",
        "_refused",
        "_request",
        "_request_fields",
        "_selector",
        "depth",
        "max_links",
        "referrer",
        "response",
        "robots_agent",
    )

    def __init__(
        self,
        *,
        url: str,
        final_url: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        depth: int,
        referrer: str | None,
        elapsed: float,
        max_links: int | None = None,
        robots_agent: str = "shoal",
    ) -> None:
        self._start(
            Fetched(url, final_url, status, headers, body, elapsed),
            depth,
            referrer,
            max_links,
            robots_agent,
        )

    @classmethod
    def over(
        cls,
        response: Fetched,
        *,
        depth: int,
        referrer: str | None,
        max_links: int | None = None,
        robots_agent: str = "shoal",
    ) -> Page:
        """The page of a successful fetch (``response.status`` is set)."""
        page = cls.__new__(cls)
        page._start(response, depth, referrer, max_links, robots_agent)
        return page

    def _start(
        self,
        response: Fetched,
        depth: int,
        referrer: str | None,
        max_links: int | None,
        robots_agent: str,
    ) -> None:
        self.response = response
        self.depth = depth
        self.referrer = referrer
        self.max_links = max_links
        self.robots_agent = robots_agent
        self._is_html: bool | None = None
        self._decoded: tuple[str, str] | None = None
        self._bounded: tuple[str, str | None] | None = None
        self._html: ParsedHTML | None = _UNSET
        self._base_url: str | None = None
        self._links: list[str] | None = None
        self._refused: Refused | None = None  # made with links (see refused_links)
        self._selector: Selector | None = None
        self._request: Request | None = None
        self._request_fields: str | None = None  # the job's encoded request, if any

    @property
    def request(self) -> Request:
        """The request this page answers: a :class:`~shoal.Request` with the method,
        body, headers, ``label`` and ``meta`` it was made with (a link or start URL's is a
        GET with no label and empty meta)."""
        request = self._request
        if request is None:
            request = self._request = Request._decode(self.url, self._request_fields)
        return request

    @property
    def url(self) -> str:
        """The URL the crawler asked for."""
        return self.response.url

    @property
    def final_url(self) -> str:
        """Where the response came from, after redirects."""
        return self.response.final_url

    @property
    def status(self) -> int:
        """The HTTP status (2xx: pages are made for successful responses)."""
        return cast(int, self.response.status)  # a page is made only for a response

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers, names lower-cased."""
        return self.response.headers

    @property
    def body(self) -> bytes:
        """The body, decoded from its Content-Encoding (at most ``max_bytes``)."""
        return self.response.body

    @property
    def elapsed(self) -> float:
        """Seconds the fetch took, redirects included."""
        return self.response.elapsed

    @property
    def content_type(self) -> str:
        """The Content-Type header as sent (``""`` if none)."""
        return self.headers.get("content-type", "")

    @property
    def is_html(self) -> bool:
        """True for an HTML page: by Content-Type (text/html, XHTML), or, when there is
        no Content-Type, by the body's first bytes (``<!doctype html``, ``<html``)."""
        if self._is_html is None:
            self._is_html = is_html(self.content_type, self.body)
        return self._is_html

    def _decode(self) -> tuple[str, str]:
        if self._decoded is None:
            self._decoded = decode_body(self.body, self.content_type)
        return self._decoded

    @property
    def text(self) -> str:
        """The body as text, decoded by header charset, <meta>, UTF-8, then detection."""
        return self._decode()[0]

    @property
    def encoding(self) -> str:
        """The character encoding ``text`` was decoded with."""
        return self._decode()[1]

    def _parseable(self) -> tuple[str, str | None]:
        """The text that selectors get (cut off where a whole tree of it would cost too
        much), and why it was cut."""
        if self._bounded is None:
            self._bounded = bounded(self.text)
        return self._bounded

    @property
    def html(self) -> ParsedHTML | None:
        """The parsed page (title, hrefs, <base>, <meta>), or None when it is not HTML.
        Always the whole page: a large one is parsed in pieces (see ``parse_html``)."""
        if self._html is _UNSET:
            self._html = parse_html(self.text) if self.is_html else None
        return self._html

    @property
    def parse_cut(self) -> str | None:
        """Why selectors (``css``, ``xpath``, ``--extract``) see only the start of an HTML
        page (pathological nesting, too many tags for one tree: see ``_nesting``), or
        None if they see it all. Links and title always come from the whole page."""
        return self._parseable()[1] if self.is_html else None

    @property
    def truncated(self) -> str | None:
        """``parse_cut`` if a selector was used on this page (so something taken from it
        may be missing), else None."""
        return self.parse_cut if self._selector is not None else None

    @property
    def robots(self) -> tuple[str, ...]:
        """The page's robots directives that apply to this crawler (``noindex``,
        ``nofollow``), from ``<meta name="robots">`` and the X-Robots-Tag header."""
        html = self.html
        metas = html.metas if html is not None else ()
        return robots_directives(metas, self.headers.get("x-robots-tag"), self.robots_agent)

    @property
    def title(self) -> str | None:
        """The text of the page's <title>; None when it is not HTML or has none."""
        return self.html.title if self.html is not None else None

    @property
    def base_url(self) -> str:
        """What relative links resolve against: <base href> if the page has one."""
        if self._base_url is None:
            self._base_url = self.final_url
            html = self.html
            if html is not None and html.base:
                base = join_url(self.final_url, html.base)
                if base is not None:
                    self._base_url = base
        return self._base_url

    @property
    def links(self) -> list[str]:
        """Every http(s) link on the page, absolute and canonical, in page order, once
        (the first ``max_links`` of them, if set)."""
        if self._links is None:
            self._links = self._find_links()
        return self._links

    @property
    def refused_links(self) -> int:
        """How many http(s) links of the page (among those ``links`` looked at) no request
        could ever fetch: no host, port 0 or over 65535, longer than 8192 characters...
        They are left out of ``links``; the crawler counts ``on_page``'s URLs here too."""
        if self._links is None:
            self._links = self._find_links()
        return self._refusals().count

    def _refusals(self) -> Refused:
        """The tally behind ``refused_links``: the crawler's code adds to it as well."""
        if self._refused is None:
            self._refused = Refused()
        return self._refused

    def _find_links(self) -> list[str]:
        html = self.html
        hrefs = html.hrefs if html is not None else []
        served = self.response.served_links  # absolute: the base does not change them
        if served:
            hrefs = [*hrefs, *served]
        if not hrefs:
            return []
        resolve = LinkResolver(self.base_url, self._refusals()).resolve
        seen: set[str] = set()
        out: list[str] = []
        limit = self.max_links if self.max_links is not None else len(hrefs)
        for href in hrefs:
            if len(out) >= limit:
                break
            url = resolve(href)
            if url is not None and url not in seen:
                seen.add(url)
                out.append(url)
        return out

    def _logout_links(self) -> frozenset[str]:
        """The canonical URLs of the page's links whose text says they log out (see
        _logout.says_logout). Only asked in a logged-in crawl."""
        if not self.is_html:
            return frozenset()
        hrefs = link_hrefs_by_text(self.text, LOGOUT_MENTION, says_logout)
        if not hrefs:
            return frozenset()
        resolve = LinkResolver(self.base_url).resolve  # refusals are counted by links
        return frozenset(url for href in hrefs if (url := resolve(href)) is not None)

    @property
    def selector(self) -> Selector:
        """A parsel ``Selector`` over the page (parsel is imported on first use)."""
        if self._selector is None:
            from parsel import Selector

            self._selector = Selector(text=self._parseable()[0], base_url=self.final_url)
        return self._selector

    def css(self, query: str) -> SelectorList[Any]:
        """parsel CSS selection, ``::text`` and ``::attr(name)`` included:
        ``page.css("h1::text").get()``, ``page.css("a::attr(href)").getall()``."""
        return self.selector.css(query)

    def xpath(self, query: str) -> SelectorList[Any]:
        """parsel XPath selection: ``page.xpath("//h1/text()").get()``."""
        return self.selector.xpath(query)

    def __repr__(self) -> str:
        return f"<Page {self.status} {self.url}>"
