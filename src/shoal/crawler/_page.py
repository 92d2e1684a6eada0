"""What a page callback receives: one fetched response, with lazy text and selectors."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ._html import ParsedHTML, decode_body, is_html, parse_html
from ._urls import host_key, join_url

if TYPE_CHECKING:
    from parsel import Selector, SelectorList

__all__ = ["Page"]


class Page:
    """A fetched URL. ``text``, ``links`` and selectors are computed on first use."""

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
    ) -> None:
        self.url = url
        self.final_url = final_url
        self.status = status
        self.headers = headers
        self.body = body
        self.depth = depth
        self.referrer = referrer
        self.elapsed = elapsed

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @cached_property
    def is_html(self) -> bool:
        return is_html(self.content_type, self.body)

    @cached_property
    def _decoded(self) -> tuple[str, str]:
        return decode_body(self.body, self.content_type)

    @property
    def text(self) -> str:
        """The body as text, decoded by header charset, <meta>, UTF-8, then detection."""
        return self._decoded[0]

    @property
    def encoding(self) -> str:
        return self._decoded[1]

    @cached_property
    def html(self) -> ParsedHTML | None:
        return parse_html(self.text) if self.is_html else None

    @property
    def title(self) -> str | None:
        return self.html.title if self.html is not None else None

    @cached_property
    def base_url(self) -> str:
        """What relative links resolve against: <base href> if the page has one."""
        html = self.html
        if html is not None and html.base:
            base = join_url(self.final_url, html.base)
            if base is not None:
                return base
        return self.final_url

    @cached_property
    def links(self) -> list[str]:
        """Every http(s) link on the page, absolute and canonical, in page order, once."""
        html = self.html
        if html is None:
            return []
        base = self.base_url
        origin = host_key(base)
        seen: set[str] = set()
        out: list[str] = []
        for href in html.hrefs:
            url = join_url(base, href, origin)
            if url is not None and url not in seen:
                seen.add(url)
                out.append(url)
        return out

    @cached_property
    def selector(self) -> Selector:
        from parsel import Selector

        return Selector(text=self.text, base_url=self.final_url)

    def css(self, query: str) -> SelectorList[Any]:
        """parsel CSS selection, ``::text`` and ``::attr(name)`` included."""
        return self.selector.css(query)

    def xpath(self, query: str) -> SelectorList[Any]:
        return self.selector.xpath(query)

    def __repr__(self) -> str:
        return f"<Page {self.status} {self.url}>"
