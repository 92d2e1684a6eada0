"""The transport contract: what the crawler asks of an HTTP client.

A transport does one GET at a time per call (many threads call it at once), never follows
redirects (the crawler vets every hop), decodes the body (gzip, deflate, br) and holds its
decoded size to ``max_bytes``. It returns a :class:`Response` or raises
:class:`~shoal.TransportError` with an :class:`~shoal.http.ErrorKind`; no exception of the
library underneath gets out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .._errors import ErrorKind, TransportError

__all__ = ["ErrorKind", "Response", "Transport", "TransportError"]


@dataclass(slots=True)
class Response:
    """One HTTP response, body decoded.

    ``headers`` maps lower-cased names to values, a repeated header joined with ", "
    (``set-cookie`` with "\\n", as cookie dates hold commas). ``raw_headers`` keeps every
    field line as received, name case preserved: the place to read repeated headers such
    as Set-Cookie one by one. The native client keeps the order of the lines; urllib3
    groups the fields of one name together.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    url: str = ""
    raw_headers: list[tuple[str, str]] = field(default_factory=list)


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
    ) -> Response:
        """GET an absolute http(s) URL. ``deadline`` is a ``time.monotonic()`` value
        bounding the whole request; ``read_body=False`` reads the head only."""
        ...

    def close(self) -> None: ...
