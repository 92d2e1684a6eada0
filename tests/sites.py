"""Real HTTP test servers on 127.0.0.1 whose pages are plain Python functions.

A ``Site`` records every request (path, arrival time) and the most requests it ever had
in flight at once, so tests can assert what a crawler really did on the wire.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "text/html; charset=utf-8"


Route = Callable[["Request"], Reply] | Reply | str


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    method: str = "GET"
    body: bytes = b""


def html(title: str, *links: str, extra: str = "") -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>{title}</title></head><body>{extra}{anchors}</body></html>"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve("GET", b"")

    def do_POST(self) -> None:
        # Bounded: a test server reads at most 1 MiB of a body.
        size = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        body = self.rfile.read(size) if size else b""
        self.server.site.posts.append((self.path, body))
        self._serve("POST", body)

    def _serve(self, method: str, sent: bytes) -> None:
        site = self.server.site
        site._enter(self.path)
        try:
            route = site.routes.get(self.path, site.fallback)
            if route is None:
                reply = Reply(404, "not found")
            elif isinstance(route, Reply):
                reply = route
            elif isinstance(route, str):
                reply = Reply(body=route)
            else:
                reply = route(Request(self.path, dict(self.headers), method, sent))
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if "Content-Length" not in reply.headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            site._leave()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients killed mid-request (the crash tests) reset their connections


class Site:
    """``with Site({"/": html("home", "/a"), "/a": "..."}) as site: site.url("/")``."""

    def __init__(
        self, routes: dict[str, Route] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.fallback: Route | None = None  # serves every path not in routes
        self.hits: list[tuple[str, float]] = []
        self.posts: list[tuple[str, bytes]] = []  # (path, body) of every POST
        self.user_agents: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.site = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="test-site", daemon=True
        )

    def _enter(self, path: str) -> None:
        with self._lock:
            self.hits.append((path, time.monotonic()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self.hits if p == path)

    def paths(self) -> Counter[str]:
        with self._lock:
            return Counter(p for p, _ in self.hits)

    def requests(self) -> list[tuple[str, float]]:
        """Every request so far: (path, arrival time on time.monotonic)."""
        with self._lock:
            return list(self.hits)

    def times(self, path: str) -> list[float]:
        with self._lock:
            return [t for p, t in self.hits if p == path]

    def __enter__(self) -> Site:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
