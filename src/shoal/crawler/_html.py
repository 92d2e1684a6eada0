"""Reading HTML fast: text decoding, links, <base href> and <title>, via lexbor.

selectolax's lexbor parser is a C HTML5 parser; one parse gives links, base and title
without building Python objects for the rest of the document.
"""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser

from ._nesting import MAX_TAGS, SCAN_ABOVE, nesting_cut, tag_count_cut

__all__ = ["ParsedHTML", "bounded", "decode_body", "is_html", "parse_html"]

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
    """What the crawler needs from a page, from one parse. ``cut`` says why the parse
    stopped before the end of the page (None: it did not)."""

    __slots__ = ("base", "cut", "hrefs", "title", "tree")

    def __init__(
        self,
        tree: LexborHTMLParser,
        base: str | None,
        title: str | None,
        hrefs: list[str],
        cut: str | None = None,
    ) -> None:
        self.tree = tree
        self.base = base
        self.title = title
        self.hrefs = hrefs
        self.cut = cut


def bounded(text: str) -> tuple[str, str | None]:
    """The part of ``text`` that is safe to parse, and why the rest was cut off."""
    if text.count("<") <= SCAN_ABOVE:
        return text, None  # nearly every page: too few tags for either limit
    cut = None
    at = tag_count_cut(text)
    if at is not None:
        text = text[:at]
        cut = f"more than {MAX_TAGS} tags; parsed the first {at} characters"
    found = nesting_cut(text)
    if found is not None:
        at, why = found
        text = text[:at]
        cut = f"{why}; parsed the first {at} characters"
    return text, cut


def parse_html(text: str, cut: str | None = None) -> ParsedHTML:
    """Parse ``text``, which should have passed :func:`bounded` (``cut``: why it was cut)."""
    tree = LexborHTMLParser(text)
    # tags() walks the tree in C; css() would first compile a selector for every page.
    base = None
    for node in tree.tags("base"):
        base = node.attrs.get("href")
        if base:
            break
    title = None
    for node in tree.tags("title"):
        title = node.text(strip=True)
        break
    hrefs = [h for node in tree.tags("a") if (h := node.attrs.get("href"))]
    hrefs.extend(h for node in tree.tags("area") if (h := node.attrs.get("href")))
    return ParsedHTML(tree, base, title or None, hrefs, cut)
