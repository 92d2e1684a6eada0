"""A transport that answers from a function, for tests: no server, no socket.

As ``httpx.MockTransport``: the handler gets each request and returns the response::

    def handler(request: Request) -> Response:
        if request.url.endswith("/robots.txt"):
            return Response(404, {}, b"")
        return Response(200, {"content-type": "text/html"}, b"<a href=/b>b</a>")

    Crawler("http://site.test/", transport=MockTransport(handler)).run()

The transport keeps the contract's promises the handler need not: header names
lower-cased, the body held to ``max_bytes`` (the error ``too_large``, or cut when asked
to truncate), the request deadline checked. A handler may raise
:class:`~shoal.TransportError` to act out a network failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._transport import ErrorKind, Response, TransportError

__all__ = ["MockTransport", "Request"]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the transport received it."""

    url: str
    headers: Mapping[str, str]
    method: str = "GET"
    body: bytes | None = None


class MockTransport:
    """A :class:`~shoal.http.Transport` whose responses come from ``handler(request)``.

    Thread-safe if the handler is. ``requests`` lists every request received, in order
    (for asserting what a crawl asked for)."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.closed = False

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
        if deadline is not None and time.monotonic() >= deadline:
            raise TransportError(ErrorKind.TIMEOUT, "request deadline exceeded")
        request = Request(url, dict(headers), method, body)
        with self._lock:
            self.requests.append(request)
        response = self.handler(request)  # user code: never under the lock
        if not isinstance(response, Response):
            raise TypeError(f"the handler returned {type(response).__name__}, not a Response")
        body = response.body if read_body else b""
        cut = False
        if len(body) > max_bytes:
            if not truncate:
                raise TransportError(ErrorKind.TOO_LARGE, f"body exceeds max_bytes {max_bytes}")
            body, cut = body[:max_bytes], True
        out = Response(
            response.status,
            {name.lower(): value for name, value in response.headers.items()},
            body,
            url,
        )
        out.truncated = cut
        return out

    def close(self) -> None:
        self.closed = True
