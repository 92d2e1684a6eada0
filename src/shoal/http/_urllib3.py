"""The urllib3 transport: the same contract as the native client, on urllib3's pools.

Kept for comparison (bench/crawl.py can run either) and as a fallback. urllib3's
exceptions are translated here into :class:`~shoal.TransportError` kinds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from ._transport import JOINED_BY_LF, ErrorKind, Response, TransportError

__all__ = ["Urllib3Transport"]

_CHUNK = 64 * 1024


class Urllib3Transport:
    def __init__(
        self, *, per_host: int, connect_timeout: float, read_timeout: float, verify_tls: bool
    ) -> None:
        # maxsize matches the per-host limit, so the pool never opens connections it
        # would throw away; block=False is safe because the crawler enforces the limit.
        self._pools = urllib3.PoolManager(
            num_pools=256,
            maxsize=per_host,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
        )

    def close(self) -> None:
        self._pools.clear()

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
        if method not in ("GET", "POST"):
            raise TransportError(ErrorKind.PROTOCOL, f"unsupported method {method[:20]!r}")
        try:
            resp = self._pools.urlopen(
                method,
                url,
                body=body,
                headers=dict(headers),
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=True,
            )
        except (Urllib3Error, OSError) as exc:
            raise _translate(exc) from None
        ok = False
        try:
            raw = list(resp.headers.iteritems())  # repeated fields one by one
            head = _joined(raw)
            if not read_body:
                ok = True
                return Response(resp.status, head, b"", url, raw)
            declared = head.get("content-length", "")
            encoded = head.get("content-encoding", "identity") not in ("", "identity")
            too_long = declared.isdigit() and int(declared) > max_bytes
            if too_long and not encoded and not truncate:
                raise TransportError(
                    ErrorKind.TOO_LARGE, f"Content-Length {declared} exceeds {max_bytes}"
                )
            chunks: list[bytes] = []
            size = 0
            cut = False
            # Count *decoded* bytes: a small gzip or brotli body may inflate enormously.
            for chunk in resp.stream(_CHUNK, decode_content=True):
                size += len(chunk)
                if size > max_bytes:
                    if not truncate:
                        raise TransportError(
                            ErrorKind.TOO_LARGE, f"body exceeds {max_bytes} bytes after decoding"
                        )
                    chunks.append(chunk[: len(chunk) - (size - max_bytes)])
                    cut = True  # the connection, left mid-body, is closed below
                    break
                chunks.append(chunk)
                if deadline is not None and time.monotonic() > deadline:
                    raise TransportError(ErrorKind.TIMEOUT, "the request's deadline passed")
            response = Response(resp.status, head, b"".join(chunks), url, raw)
            response.truncated = cut
            ok = not cut
            return response
        except (Urllib3Error, OSError) as exc:
            raise _translate(exc) from None
        finally:
            if not ok:
                resp.close()  # a half-read connection cannot be reused
            resp.release_conn()


def _joined(raw: list[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names, repeated fields joined as the native client joins them."""
    head: dict[str, str] = {}
    for given, value in raw:
        name = given.lower()
        old = head.get(name)
        if old is None:
            head[name] = value
        else:
            head[name] = old + ("\n" if name in JOINED_BY_LF else ", ") + value
    return head


def _translate(exc: BaseException) -> TransportError:
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: test it first.
    # A connection that could not be made: the request never left (``unsent``).
    if isinstance(exc, NewConnectionError):
        return TransportError(ErrorKind.CONNECTION, str(exc), unsent=True)
    if isinstance(exc, ConnectTimeoutError):
        return TransportError(ErrorKind.TIMEOUT, str(exc), unsent=True)
    if isinstance(exc, ReadTimeoutError):
        return TransportError(ErrorKind.TIMEOUT, str(exc))
    if isinstance(exc, SSLError):
        return TransportError(ErrorKind.TLS, str(exc))
    if isinstance(exc, DecodeError):
        return TransportError(ErrorKind.DECODE, str(exc))
    if isinstance(exc, ProtocolError | OSError):
        return TransportError(ErrorKind.CONNECTION, str(exc))
    return TransportError(ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}")
