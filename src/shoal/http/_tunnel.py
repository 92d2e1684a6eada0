"""Through a proxy: the CONNECT tunnel an https request goes through (RFC 9110 section
9.3.6), read with the same bounds as a response head, and failures that name the proxy."""

from __future__ import annotations

import socket
import time

from ._proxy import Proxy
from ._response import MAX_HEAD as _MAX_HEAD
from ._transport import ErrorKind, TransportError

__all__ = ["ConnectRefused", "settimeout_until", "tunnel", "via"]

_READ = 64 * 1024  # bytes per recv: a proxy's answer to CONNECT is short


class ConnectRefused(TransportError):
    """The proxy answered CONNECT with ``status``, not 2xx: the proxy works (it answered),
    except for a 407, and most refusals speak of the target (403, 502)."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(ErrorKind.PROXY, detail)
        self.status = status


def via(error: TransportError, proxy: Proxy | None) -> TransportError:
    """Name the proxy in a failure to reach it."""
    if proxy is None:
        return error
    return TransportError(error.kind, f"proxy {proxy.host}:{proxy.port}: {error.detail}")


def _split_head(buf: bytes) -> tuple[list[str], int] | None:
    """The lines of the proxy's answer to CONNECT that ``buf`` starts with, and the bytes
    it takes up with its blank line; None while incomplete. A line may end with a bare
    LF, so the head ends at the first "\n\n" or "\n\r\n". An answer that is too long or
    not HTTP is the proxy's fault (kind ``proxy``): no byte of the target comes before it."""
    crlf = buf.find(b"\n\r\n")
    lf = buf.find(b"\n\n", 0, len(buf) if crlf < 0 else crlf)
    if lf < 0 and crlf < 0:
        return None
    size, skip = (lf, 2) if lf >= 0 else (crlf, 3)
    if size > _MAX_HEAD:
        raise TransportError(
            ErrorKind.PROXY, f"the proxy's answer to CONNECT is over {_MAX_HEAD} bytes"
        )
    text = buf[:size].decode("latin-1")
    return [line.rstrip("\r") for line in text.split("\n")], size + skip


def tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy, until: float) -> None:
    """Ask the proxy for a tunnel to host:port (RFC 9110 section 9.3.6), by ``until``."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    text = "\r\n".join(lines) + "\r\n\r\n"
    if any(c in authority for c in " \r\n"):
        raise TransportError(ErrorKind.PROTOCOL, f"bad host {host!r}")
    settimeout_until(sock, until)
    sock.sendall(text.encode("latin-1"))
    head = b""
    while (answer := _split_head(head)) is None:
        if len(head) > _MAX_HEAD:
            raise TransportError(ErrorKind.PROXY, "the proxy's answer to CONNECT is too long")
        settimeout_until(sock, until)  # the whole answer, not each recv, has the timeout
        data = sock.recv(_READ)
        if not data:
            raise TransportError(
                ErrorKind.PROXY, f"proxy {proxy.host}:{proxy.port} closed the tunnel"
            )
        head += data
    lines, used = answer
    status = _connect_status(lines[0], proxy)
    if not 200 <= status < 300:
        raise ConnectRefused(f"proxy {proxy.host}:{proxy.port} refused CONNECT: {status}", status)
    if used != len(head):  # the server speaks only after our TLS hello
        raise TransportError(
            ErrorKind.PROTOCOL, "unexpected bytes after the proxy's answer to CONNECT"
        )
    settimeout_until(sock, until)  # what is left of it is the TLS handshake's


def _connect_status(line: str, proxy: Proxy) -> int:
    version, _, rest = line.partition(" ")
    code = rest.partition(" ")[0]
    if not (version.startswith("HTTP/1.") and len(code) == 3 and code.isdigit()):
        # Not HTTP at all (an SSH banner: the wrong port): the proxy's, counted against it.
        raise TransportError(
            ErrorKind.PROXY,
            f"proxy {proxy.host}:{proxy.port}: malformed answer to CONNECT {line[:100]!r}",
        )
    return int(code)


def settimeout_until(sock: socket.socket, until: float) -> None:
    left = until - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out connecting")
    sock.settimeout(left)
