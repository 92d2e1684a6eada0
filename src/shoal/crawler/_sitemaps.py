"""Sitemaps (sitemaps.org): page URLs from <urlset>, child sitemaps from <sitemapindex>."""

from __future__ import annotations

import gzip
import itertools
import re
import zlib

__all__ = ["MAX_SITEMAP_NESTING", "MAX_SITEMAP_URLS", "parse_sitemap"]

# sitemaps.org: an index lists sitemaps, not other indexes; three levels below robots.txt
# leave room for sites that nest anyway, and stop an index that links ever deeper.
MAX_SITEMAP_NESTING = 3
# sitemaps.org's own limit per sitemap file; more <loc>s than that are ignored.
MAX_SITEMAP_URLS = 50_000

_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>", re.I)


def parse_sitemap(body: bytes, max_bytes: int) -> tuple[list[str], list[str]]:
    """(page URLs, sitemap URLs), at most MAX_SITEMAP_URLS of them. A gzip body is
    inflated up to ``max_bytes``."""
    if body[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes)
        except (zlib.error, gzip.BadGzipFile):
            return [], []
    locs = [
        m.group(1).decode("utf-8", "replace").replace("&amp;", "&")
        for m in itertools.islice(_LOC.finditer(body), MAX_SITEMAP_URLS)
    ]
    head = body[:2048].lower()
    if b"<sitemapindex" in head:
        return [], locs
    return locs, []
