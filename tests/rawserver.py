"""A scripted raw-socket HTTP server on 127.0.0.1, for behaviour no well-behaved server
library would produce: broken framing, stray bytes, drips, responses sent unasked.

Each accepted connection runs ``script(conn, index)`` on its own thread (``index``
counts connections from 0), so a script may hold one connection open while the client
opens another. Scripts are bounded: ``conn`` has a 3 s timeout, and ``close()`` shuts
every connection down, which wakes a script blocked on it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

Script = Callable[[socket.socket, int], object]


class RawServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, name="raw-http")
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(3.0)
            with self._lock:
                index = self.connections
                self.connections += 1
                self._conns.append(conn)
                thread = threading.Thread(
                    target=self._serve, args=(conn, index), name=f"raw-http-{index}"
                )
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        with conn, contextlib.suppress(OSError):  # the client hung up, or close() did
            self.script(conn, index)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
        self.sock.close()


@contextlib.contextmanager
def raw_servers() -> Iterator[Callable[[Script], RawServer]]:
    """start(script) -> a running RawServer; all are closed on exit."""
    servers: list[RawServer] = []

    def start(script: Script) -> RawServer:
        servers.append(RawServer(script))
        return servers[-1]

    try:
        yield start
    finally:
        for srv in servers:
            srv.close()


def read_request(conn: socket.socket) -> bytes:
    """One request head (these clients send no bodies); b"" if the client hung up."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return b""
        data += piece
    return data


def respond_once(response: bytes) -> Script:
    """Answer the connection's first request with ``response``, then close it."""

    def script(conn: socket.socket, index: int) -> None:
        if read_request(conn):
            conn.sendall(response)

    return script


def respond_always(response: bytes | Callable[[bytes], bytes]) -> Script:
    """Answer every request on the connection (keep-alive) with ``response``, or with
    ``response(request)``."""

    def script(conn: socket.socket, index: int) -> None:
        while request := read_request(conn):
            conn.sendall(response(request) if callable(response) else response)

    return script
