"""HTTP fetching on urllib3: pooled keep-alive connections, capped decompression,
timeouts, and redirects followed one hop at a time so the crawler can vet each hop.

urllib3's own errors stop here: a fetch never raises for a network or protocol
problem; it returns a :class:`Fetched` whose ``error`` names the kind of failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from ._urls import canonicalize

__all__ = ["Fetched", "Fetcher"]

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
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


class Fetcher:
    """Thread-safe: one connection pool per host, shared by every worker."""

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
        self._timeout = urllib3.Timeout(
            connect=connect_timeout if connect_timeout is not None else min(timeout, 10.0),
            read=timeout,
        )
        # maxsize matches the per-host limit, so the pool never opens connections it
        # would throw away; block=False is safe because the crawler enforces the limit.
        self._pools = urllib3.PoolManager(
            num_pools=256,
            maxsize=per_host,
            block=False,
            retries=False,
            timeout=self._timeout,
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
        )

    def close(self) -> None:
        self._pools.clear()

    def fetch(self, url: str, follow: Callable[[str], str | None] | None = None) -> Fetched:
        """GET ``url``, following redirects while ``follow(next_url)`` returns a reason-free
        None; a string return stops at that hop (out of scope, already seen, ...)."""
        started = time.perf_counter()
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
            except ValueError:
                result.error, result.detail = "bad_redirect", f"bad Location {location!r}"
                break
            if target in (current, url) or target in result.redirects:
                result.error, result.detail = "redirect_loop", f"redirect loop at {target}"
                break
            stop = follow(target) if follow is not None else None
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
        result.elapsed = time.perf_counter() - started
        return result

    def _get(self, url: str, result: Fetched, started: float) -> None:
        result.final_url = url
        result.body = b""
        try:
            resp = self._pools.urlopen(
                "GET",
                url,
                headers=self._headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=True,
            )
        except (HTTPError, OSError) as exc:
            result.error, result.detail = _classify(exc)
            return
        try:
            result.status = resp.status
            result.headers = {k.lower(): v for k, v in resp.headers.items()}
            result.retry_after = _retry_after(result.headers.get("retry-after"))
            if resp.status in REDIRECT_STATUSES:
                return  # the body of a redirect is never used
            declared = result.headers.get("content-length", "")
            encoded = result.headers.get("content-encoding", "identity") not in ("", "identity")
            if declared.isdigit() and int(declared) > self.max_bytes and not encoded:
                result.error = "too_large"
                result.detail = f"Content-Length {declared} exceeds max_bytes {self.max_bytes}"
                return
            chunks: list[bytes] = []
            size = 0
            deadline = started + self.timeout
            # Count *decoded* bytes: a small gzip or brotli body may inflate enormously.
            for chunk in resp.stream(_CHUNK, decode_content=True):
                size += len(chunk)
                if size > self.max_bytes:
                    result.error = "too_large"
                    result.detail = f"body exceeds max_bytes {self.max_bytes} after decoding"
                    return
                chunks.append(chunk)
                if time.perf_counter() > deadline:
                    result.error, result.detail = "timeout", f"total time over {self.timeout}s"
                    return
            result.body = b"".join(chunks)
        except (HTTPError, OSError) as exc:
            result.error, result.detail = _classify(exc)
        finally:
            if result.error is None:
                resp.release_conn()
            else:
                # A half-read connection cannot be reused: drop it rather than return it.
                resp.close()
                resp.release_conn()


def _classify(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: test it first.
    if isinstance(exc, NewConnectionError):
        return "connection", str(exc)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return "timeout", str(exc)
    if isinstance(exc, SSLError):
        return "tls", str(exc)
    if isinstance(exc, DecodeError):
        return "decode", str(exc)
    if isinstance(exc, ProtocolError | OSError):
        return "connection", str(exc)
    return "http_error", f"{type(exc).__name__}: {exc}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
