"""Reading HTML fast: text decoding, links, <base href>, <title> and <meta>, via lexbor.

selectolax's lexbor parser is a C HTML5 parser; one parse gives links, base, title and
meta without building Python objects for the rest of the document.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable

from selectolax.lexbor import LexborHTMLParser

from ._nesting import MAX_TAGS, SCAN_ABOVE, nesting_cut, segments, tag_count_cut

__all__ = ["ParsedHTML", "bounded", "decode_body", "is_html", "link_hrefs_by_text", "parse_html"]

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_\-:.]+)", re.I)


def is_html(content_type: str, body: bytes) -> bool:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml"):
        return True
    if ctype:
        return False
    head = body[:512].lstrip().lower()  # no header: sniff like a browser would
    return head.startswith((b"<!doctype html", b"<html"))


def _known(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_body(body: bytes, content_type: str) -> tuple[str, str]:
    """Text and the encoding used: header charset, then <meta>, then UTF-8, then detection."""
    candidates: list[str] = []
    m = _HEADER_CHARSET.search(content_type)
    if m:
        candidates.append(m.group(1))
    if body.startswith(codecs.BOM_UTF8):
        candidates.insert(0, "utf-8-sig")
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        candidates.append(meta.group(1).decode("ascii", "replace"))
    candidates.append("utf-8")
    for name in candidates:
        encoding = _known(name)
        if encoding is None:
            continue
        try:
            return body.decode(encoding), encoding
        except (UnicodeError, LookupError):  # LookupError: "rot13" names no text encoding
            continue
    from charset_normalizer import from_bytes  # only for the rare undeclared non-UTF-8 page

    best = from_bytes(body[:65536]).best()
    encoding = best.encoding if best is not None else "utf-8"
    return body.decode(encoding, errors="replace"), encoding


class ParsedHTML:
    """What the crawler needs from a page: <base href>, <title>, link hrefs in page order
    and the (name, content) of its <meta> elements with both (names lower-cased)."""

    __slots__ = ("base", "hrefs", "metas", "title")

    def __init__(
        self,
        base: str | None,
        title: str | None,
        hrefs: list[str],
        metas: list[tuple[str, str]] | None = None,
    ) -> None:
        self.base = base
        self.title = title
        self.hrefs = hrefs
        self.metas = metas if metas is not None else []


def bounded(text: str) -> tuple[str, str | None]:
    """The part of ``text`` that is safe to build one whole tree of (for selectors), and
    why the rest was cut off."""
    if text.count("<") <= SCAN_ABOVE:
        return text, None  # nearly every page: too few tags for either limit
    cut = None
    at = tag_count_cut(text)
    if at is not None:
        text = text[:at]
        cut = f"more than {MAX_TAGS} tags; selectors saw the first {at} characters"
    found = nesting_cut(text)
    if found is not None:
        at, why = found
        text = text[:at]
        cut = f"{why}; selectors saw the first {at} characters"
    return text, cut


def parse_html(text: str) -> ParsedHTML:
    """Parse the whole of ``text`` for links, <base>, <title> and <meta>.

    A page with many tags is parsed in pieces of ``SEGMENT_TAGS`` tags (see
    ``_nesting.segments``), one lexbor tree at a time: the cost stays linear in the page
    however deep it nests, and memory that of one piece (a 10 MB page of 450,000 links
    made a 270 MB tree in one piece).
    """
    out = ParsedHTML(None, None, [], [])
    if text.count("<") <= SCAN_ABOVE:
        _parse_into(text, out)  # nearly every page: one parse
        return out
    cuts = segments(text)
    for start, end in zip(cuts, [*cuts[1:], len(text)], strict=True):
        _parse_into(text[start:end], out)
    return out


def _parse_into(text: str, out: ParsedHTML) -> None:
    """Add what one lexbor parse of ``text`` finds to ``out`` (the first <base href> and
    <title> win, as in a browser)."""
    tree = LexborHTMLParser(text)
    # tags() walks the tree in C; css() would first compile a selector for every page.
    if out.base is None:
        for node in tree.tags("base"):
            if base := node.attrs.get("href"):
                out.base = base
                break
    if out.title is None:
        for node in tree.tags("title"):
            out.title = node.text(strip=True) or None
            break
    out.hrefs.extend(h for node in tree.tags("a") if (h := node.attrs.get("href")))
    out.hrefs.extend(h for node in tree.tags("area") if (h := node.attrs.get("href")))
    for node in tree.tags("meta"):
        attrs = node.attrs
        name, content = attrs.get("name"), attrs.get("content")
        if name and content is not None:
            out.metas.append((name.strip().lower(), content))


def link_hrefs_by_text(
    text: str, mentions: re.Pattern[str], says: Callable[[str], bool]
) -> list[str]:
    """The hrefs of the <a> elements of ``text`` whose own text ``says`` (a predicate)
    holds of. Only a page whose text ``mentions`` matches is parsed (one more parse:
    most pages are never parsed again), in the pieces parse_html uses."""
    if not mentions.search(text):
        return []
    found: list[str] = []
    cuts = segments(text) if text.count("<") > SCAN_ABOVE else [0]
    for start, end in zip(cuts, [*cuts[1:], len(text)], strict=True):
        for node in LexborHTMLParser(text[start:end]).tags("a"):
            href = node.attrs.get("href")
            if href and says(node.text(deep=True, separator=" ", strip=True)):
                found.append(href)
    return found
