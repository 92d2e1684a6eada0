"""Fetching: redirects followed one hop at a time (so the crawler can vet each hop),
over a small swappable transport.

Transports take a GET and give a :class:`RawResponse` (decoded body, capped at
``max_bytes``) or raise :class:`HTTPError` with a kind (timeout, connection, tls,
proxy, too_large, protocol, decode, blocked). ``native`` is shoal's own HTTP/1.1 client (``_http``),
about three times cheaper in CPU per request than urllib3 on this workload (see
docs/benchmarks.md); ``urllib3`` is kept as an adapter for comparison and as a
fallback. Neither lets its library's exceptions out: a fetch never raises for a network
or protocol problem, it returns a :class:`Fetched` whose ``error`` names the kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urljoin

from ._http import HTTPClient, HTTPError, RawResponse
from ._proxy import ProxyRules
from ._urls import canonicalize

__all__ = ["TRANSPORTS", "Fetched", "Fetcher", "Transport"]


TRANSPORTS = ("native", "urllib3")
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
    error: str | None = None  # kind of failure: timeout, connection, tls, too_large, ...
    detail: str = ""  # the human-readable reason behind ``error``
    retry_after: float | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class Transport(Protocol):
    def get(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        max_bytes: int,
        deadline: float | None = None,
        read_body: bool = True,
    ) -> RawResponse: ...

    def close(self) -> None: ...


class Fetcher:
    """Thread-safe: one transport (with its connection pools) shared by every worker."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        max_bytes: int = 10 * 1024 * 1024,
        max_redirects: int = 10,
        per_host: int = 8,
        verify_tls: bool = True,
        headers: Mapping[str, str] | None = None,
        transport: str = "native",
        proxies: ProxyRules | None = None,
        deny_private: bool = False,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": "gzip, deflate, br",
            **(headers or {}),
        }
        connect = connect_timeout if connect_timeout is not None else min(timeout, 10.0)
        self._transport: Transport
        if transport == "native":
            self._transport = HTTPClient(
                per_host=per_host,
                connect_timeout=connect,
                read_timeout=timeout,
                verify_tls=verify_tls,
                proxies=proxies,
                deny_private=deny_private,
            )
        elif transport == "urllib3":
            if proxies is not None or deny_private:
                raise ValueError("the urllib3 transport supports neither proxies nor deny_private")
            from ._urllib3 import Urllib3Transport

            self._transport = Urllib3Transport(
                per_host=per_host,
                connect_timeout=connect,
                read_timeout=timeout,
                verify_tls=verify_tls,
            )
        else:
            raise ValueError(f"unknown transport {transport!r}; choose from {TRANSPORTS}")

    def close(self) -> None:
        self._transport.close()

    def fetch(self, url: str, follow: Callable[[str], str | None]) -> Fetched:
        """GET ``url``, following redirects while ``follow(next_url)`` returns a reason-free
        None; a string return stops at that hop (out of scope, already seen, ...).

        ``follow`` is required: every hop is a request, and every request passes a gate
        (see ``_gate``). Only canonical http(s) targets reach it: a Location of another
        scheme is the error ``bad_redirect``."""
        started = time.monotonic()
        result = Fetched(url=url, final_url=url)
        current = url
        for _hop in range(self.max_redirects + 1):
            self._get(current, result, started)
            if result.error is not None or result.status not in REDIRECT_STATUSES:
                break
            location = result.headers.get("location")
            if not location:
                break
            try:
                target = canonicalize(urljoin(current, location))
            except ValueError as exc:
                shown = location if len(location) <= 200 else location[:200] + "..."
                result.error, result.detail = "bad_redirect", f"bad Location {shown!r}: {exc}"
                break
            if target in (current, url) or target in result.redirects:
                result.error, result.detail = "redirect_loop", f"redirect loop at {target}"
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
            result.error = "too_many_redirects"
            result.detail = f"more than {self.max_redirects} redirects"
        result.elapsed = time.monotonic() - started
        return result

    def _get(self, url: str, result: Fetched, started: float) -> None:
        result.final_url = url
        result.body = b""
        try:
            response = self._transport.get(
                url, self._headers, max_bytes=self.max_bytes, deadline=started + self.timeout
            )
        except HTTPError as exc:
            result.error, result.detail = exc.kind, exc.detail
            return
        result.status = response.status
        result.headers = response.headers
        result.retry_after = _retry_after(response.headers.get("retry-after"))
        result.body = response.body


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
