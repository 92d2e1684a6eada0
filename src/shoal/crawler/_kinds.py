"""Why a page failed, as the crawler names it (records and totals carry the values).

The transport's own kinds (dns, tls, timeout, connection, ...) come from the HTTP client
as strings; these are the crawler's. An HTTP error status is ``http_NNN``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CrawlErrorKind", "http_error"]


class CrawlErrorKind(StrEnum):
    RETRY_AFTER = "retry_after"  # the host asked for a pause longer than a crawl waits
    CALLBACK = "callback"  # on_page raised
    LOGIN_REQUIRED = "login_required"  # the login page still, right after a login
    PROCESSING = "processing"  # building the page or its records raised
    INTERNAL = "internal"  # a bug or an input nothing anticipated


def http_error(status: int) -> str:
    return f"http_{status}"
