"""Fetching: redirects followed one hop at a time (so the crawler can vet each hop),
over a :class:`~shoal.http.Transport` (the contract and both clients live in
``shoal.http``). A fetch never raises for a network or protocol problem: it returns a
:class:`Fetched` whose ``error`` is the :class:`~shoal.http.ErrorKind`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin

from ..http import ErrorKind, Transport, TransportError
from ._urls import canonicalize

__all__ = ["Fetched", "Fetcher"]


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(slots=True)
class Fetched:
    """The outcome of one fetch, redirects included."""

    url: str
    final_url: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0
    redirects: list[str] = field(default_factory=list)
    error: ErrorKind | None = None  # how it failed (a str: records hold its value)
    detail: str = ""  # the human-readable reason behind ``error``
    retry_after: float | None = None
    truncated: bool = False  # the body is the first max_bytes of a longer one (truncate)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class Fetcher:
    """Thread-safe: one transport (with its connection pools) shared by every worker."""

    def __init__(
        self,
        transport: Transport,
        *,
        user_agent: str,
        timeout: float = 30.0,
        max_bytes: int = 10 * 1024 * 1024,
        max_redirects: int = 10,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._transport = transport  # owned: close() closes it
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip, deflate, br",
            **(headers or {}),
        }

    def close(self) -> None:
        self._transport.close()

    def fetch(
        self,
        url: str,
        follow: Callable[[str], str | None],
        *,
        max_bytes: int | None = None,
        truncate: bool = False,
    ) -> Fetched:
        """GET ``url``, following redirects while ``follow(next_url)`` returns a reason-free
        None; a string return stops at that hop (out of scope, already seen, ...).
        ``max_bytes`` overrides the fetcher's for this fetch; ``truncate``: a longer body
        is cut to it (``Fetched.truncated``) rather than being the error ``too_large``.

        ``follow`` is required: every hop is a request, and every request passes a gate
        (see ``_gate``). Only canonical http(s) targets reach it: a Location of another
        scheme is the error ``bad_redirect``."""
        started = time.monotonic()
        result = Fetched(url=url, final_url=url)
        current = url
        limit = self.max_bytes if max_bytes is None else max_bytes
        for _hop in range(self.max_redirects + 1):
            self._get(current, result, started, limit, truncate)
            if result.error is not None or result.status not in REDIRECT_STATUSES:
                break
            location = result.headers.get("location")
            if not location:
                break
            try:
                target = canonicalize(urljoin(current, location))
            except ValueError as exc:
                shown = location if len(location) <= 200 else location[:200] + "..."
                result.error, result.detail = (
                    ErrorKind.BAD_REDIRECT,
                    f"bad Location {shown!r}: {exc}",
                )
                break
            if target in (current, url) or target in result.redirects:
                result.error, result.detail = ErrorKind.REDIRECT_LOOP, f"redirect loop at {target}"
                break
            stop = follow(target)
            if stop is not None:
                result.detail = stop
                result.final_url = target
                break
            result.redirects.append(current)
            current = target
            result.final_url = target
        else:
            result.error = ErrorKind.TOO_MANY_REDIRECTS
            result.detail = f"more than {self.max_redirects} redirects"
        result.elapsed = time.monotonic() - started
        return result

    def _get(
        self, url: str, result: Fetched, started: float, max_bytes: int, truncate: bool
    ) -> None:
        result.final_url = url
        result.body = b""
        try:
            response = self._transport.get(
                url,
                self._headers,
                max_bytes=max_bytes,
                deadline=started + self.timeout,
                truncate=truncate,
            )
        except TransportError as exc:
            result.error, result.detail = exc.kind, exc.detail
            return
        result.status = response.status
        result.headers = response.headers
        result.retry_after = _retry_after(response.headers.get("retry-after"))
        result.body = response.body
        result.truncated = response.truncated


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts "²"
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
