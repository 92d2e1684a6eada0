"""The transport contract: what the crawler asks of an HTTP client.

A transport does one GET at a time per call (many threads call it at once), never follows
redirects (the crawler vets every hop), decodes the body (gzip, deflate, br) and holds its
decoded size to ``max_bytes``. It returns a :class:`Response` or raises
:class:`~shoal.TransportError` with an :class:`~shoal.http.ErrorKind`; no exception of the
library underneath gets out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .._errors import ErrorKind, TransportError

__all__ = ["JOINED_BY_LF", "ErrorKind", "Response", "Transport", "TransportError"]

# Repeated fields joined with "\n" rather than ", ": cookie dates contain commas, and an
# X-Robots-Tag's "otherbot:" prefix reaches to the end of its own field only.
JOINED_BY_LF = frozenset({"set-cookie", "x-robots-tag"})


class Response:
    """One HTTP response, body decoded.

    ``headers`` maps lower-cased names to values, a repeated header joined with ", "
    (``set-cookie`` and ``x-robots-tag`` with "\n": see ``JOINED_BY_LF``). ``raw_headers``
    keeps every field line as received, name case preserved: the place to read repeated headers such
    as Set-Cookie one by one. The native client keeps the order of the lines; urllib3
    groups the fields of one name together.

    A client may hand over the head's field lines (``head_lines``, "Name: value") instead
    of the pairs: they are split only if ``raw_headers`` is read, which the crawler does
    not do on its hot path.
    """

    __slots__ = ("_lines", "_raw", "body", "headers", "status", "truncated", "url")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        url: str = "",
        raw_headers: list[tuple[str, str]] | None = None,
        *,
        head_lines: list[str] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url
        self.truncated = False  # the body is the first max_bytes of a longer one (truncate)
        self._raw = raw_headers
        self._lines = head_lines

    @property
    def raw_headers(self) -> list[tuple[str, str]]:
        raw = self._raw
        if raw is None:  # built whole, then published: a reader never sees it half-made
            raw = []
            for line in self._lines or ():
                name, _, value = line.partition(":")
                raw.append((name, value.strip(" \t\r")))
            self._raw = raw
        return raw

    def __repr__(self) -> str:
        return f"Response(status={self.status}, url={self.url!r}, {len(self.body)} bytes)"


class Transport(Protocol):
    """An HTTP client the crawler can use. Thread-safe; ``close`` ends its connections."""

    def get(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        max_bytes: int,
        deadline: float | None = None,
        read_body: bool = True,
        truncate: bool = False,
        method: str = "GET",
        body: bytes | None = None,
    ) -> Response:
        """GET an absolute http(s) URL. ``deadline`` is a ``time.monotonic()`` value
        bounding the whole request; ``read_body=False`` reads the head only;
        ``truncate=True`` cuts a body longer than ``max_bytes`` to its first ``max_bytes``
        (``Response.truncated``; the connection is not reused) instead of raising
        TOO_LARGE. ``method`` and ``body``: another request (a POST of a form, sent with
        its Content-Length); the crawler passes them only for a request that is not a
        plain GET, so a transport that cannot send one still serves every other crawl."""
        ...

    def close(self) -> None: ...
