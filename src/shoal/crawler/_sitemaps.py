"""Sitemaps (sitemaps.org): page URLs from <urlset>, child sitemaps from <sitemapindex>."""

from __future__ import annotations

import gzip
import re
import zlib

__all__ = ["parse_sitemap"]

_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>", re.I)


def parse_sitemap(body: bytes, max_bytes: int) -> tuple[list[str], list[str]]:
    """(page URLs, sitemap URLs). A gzip body is inflated up to ``max_bytes``."""
    if body[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes)
        except (zlib.error, gzip.BadGzipFile):
            return [], []
    locs = [
        m.group(1).decode("utf-8", "replace").replace("&amp;", "&") for m in _LOC.finditer(body)
    ]
    head = body[:2048].lower()
    if b"<sitemapindex" in head:
        return [], locs
    return locs, []
