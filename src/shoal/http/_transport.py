"""The transport contract: what the crawler asks of an HTTP client, and the one place
transport names live.

A transport does one GET at a time per call (many threads call it at once), never follows
redirects (the crawler vets every hop), decodes the body (gzip, deflate, br) and holds its
decoded size to ``max_bytes``. It returns a :class:`Response` or raises
:class:`~shoal.TransportError` with an :class:`~shoal.http.ErrorKind`; no exception of the
library underneath gets out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .._errors import ErrorKind, TransportError

if TYPE_CHECKING:
    from ._proxy import ProxyRules

__all__ = [
    "TRANSPORTS",
    "ErrorKind",
    "Response",
    "Transport",
    "TransportError",
    "make_transport",
]

TRANSPORTS = ("native", "urllib3")
"""Transport names, for options and the command line: shoal's own client, or urllib3."""


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


def make_transport(
    name: str = "native",
    *,
    per_host: int = 8,
    connect_timeout: float = 10.0,
    read_timeout: float = 30.0,
    verify_tls: bool = True,
    proxies: ProxyRules | None = None,
    deny_private: bool = False,
) -> Transport:
    """Build the transport called ``name`` (one of :data:`TRANSPORTS`).

    The urllib3 adapter is imported only when asked for, so urllib3 loads only then.
    ValueError for an unknown name, or for options the urllib3 adapter cannot honour."""
    if name == "native":
        from ._client import HTTPClient

        return HTTPClient(
            per_host=per_host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            verify_tls=verify_tls,
            proxies=proxies,
            deny_private=deny_private,
        )
    if name == "urllib3":
        if proxies is not None or deny_private:
            raise ValueError("the urllib3 transport supports neither proxies nor deny_private")
        from ._urllib3 import Urllib3Transport

        return Urllib3Transport(
            per_host=per_host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            verify_tls=verify_tls,
        )
    raise ValueError(f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}")
