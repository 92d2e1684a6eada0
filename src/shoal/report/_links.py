"""Every page that links to a broken URL, read from saved bodies (``--save-bodies``).

A record names one referrer: the first page the crawler found the link on (later links
to a URL already seen are dropped when found). When the records carry the pages' bodies,
a second pass parses each HTML page with the crawler's own link extraction (same base
URL rules, same canonical form), so the report can name every linking page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["referrers_from_bodies"]


def referrers_from_bodies(
    records: Iterable[dict[str, Any]], broken: Mapping[str, str | None]
) -> dict[str, list[str]]:
    """broken URL -> the other pages (besides its record's referrer) whose saved HTML
    links to it, in output order."""
    from ..crawler._page import Page

    found: dict[str, list[str]] = {}
    for r in records:
        body = r.get("body")
        url = r.get("url")
        status = r.get("status")
        if not isinstance(body, str) or not body or body.startswith("base64:"):
            continue
        if not isinstance(url, str) or not isinstance(status, int) or not 200 <= status < 300:
            continue
        content_type = str(r.get("content_type") or "text/html")
        if "html" not in content_type:
            continue
        # Saved bodies are decoded text: hand them back to the parser as UTF-8.
        page = Page(
            url=url,
            final_url=str(r.get("final_url") or url),
            status=status,
            headers={"content-type": "text/html; charset=utf-8"},
            body=body.encode("utf-8", "surrogatepass"),
            depth=0,
            referrer=None,
            elapsed=0.0,
        )
        for link in page.links:
            if link in broken and broken[link] != url:
                pages = found.setdefault(link, [])
                if not pages or pages[-1] != url:
                    pages.append(url)
    return found
