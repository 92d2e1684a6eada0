"""Sitemaps (sitemaps.org): page URLs from <urlset>, child sitemaps from <sitemapindex>,
and each page's <lastmod> (a recrawl revisits first what changed since its last fetch)."""

from __future__ import annotations

import gzip
import re
import zlib
from datetime import UTC, datetime

__all__ = ["MAX_SITEMAP_NESTING", "MAX_SITEMAP_URLS", "parse_lastmod", "parse_sitemap"]

# sitemaps.org: an index lists sitemaps, not other indexes; three levels below robots.txt
# leave room for sites that nest anyway, and stop an index that links ever deeper.
MAX_SITEMAP_NESTING = 3
# sitemaps.org's own limit per sitemap file; more <loc>s than that are ignored.
MAX_SITEMAP_URLS = 50_000

# One pass over the body, in document order: an entry's start, its <loc>, its <lastmod>.
# Every alternative stops at the next "<" or within a fixed length, so a hostile body
# (a million unclosed tags) is still read in linear time.
_TOKEN = re.compile(
    rb"<url[\s>]|<loc>\s*([^<\s]+)\s*</loc>|<lastmod>\s*([^<\s]{1,40})\s*</lastmod>", re.I
)
# W3C Datetime, as sitemaps.org asks: YYYY, YYYY-MM, YYYY-MM-DD, or with a time and zone.
_YEAR_MONTH = re.compile(r"\d{4}(-\d{2})?")


def parse_sitemap(body: bytes, max_bytes: int) -> tuple[list[str], list[str], list[float | None]]:
    """(page URLs, sitemap URLs, each page URL's <lastmod> as a POSIX time or None), at
    most MAX_SITEMAP_URLS URLs. A gzip body is inflated up to ``max_bytes``."""
    if body[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes)
        except (zlib.error, gzip.BadGzipFile):
            return [], [], []
    locs: list[str] = []
    lastmods: list[float | None] = []
    entry_has_loc = False  # the current <url>'s <loc> is read: a <lastmod> belongs to it
    for m in _TOKEN.finditer(body):
        loc, lastmod = m.group(1), m.group(2)
        if loc is not None:
            if len(locs) >= MAX_SITEMAP_URLS:
                break
            locs.append(loc.decode("utf-8", "replace").replace("&amp;", "&"))
            lastmods.append(None)
            entry_has_loc = True
        elif lastmod is not None:
            if entry_has_loc and lastmods[-1] is None:
                lastmods[-1] = parse_lastmod(lastmod.decode("ascii", "replace"))
        else:
            entry_has_loc = False  # a new <url>: a <lastmod> before its <loc> is not read
    head = body[:2048].lower()
    if b"<sitemapindex" in head:
        return [], locs, []
    return locs, [], lastmods


def parse_lastmod(text: str) -> float | None:
    """A W3C Datetime as a POSIX time (no zone: UTC); None if it is not one."""
    if _YEAR_MONTH.fullmatch(text):
        text += "-01" if len(text) == 7 else "-01-01"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
