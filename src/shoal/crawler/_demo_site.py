"""A small sample site served on 127.0.0.1, so ``shoal demo`` crawls for real, offline.

It is a made-up field guide to fish: an index, one page per species, pages per
habitat, a robots.txt that keeps crawlers out of /private/, a redirect, a gzip-encoded
page and a link to a page that does not exist, so one short crawl shows most of what
the crawler does.
"""

from __future__ import annotations

import gzip
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DemoSite"]

_FISH = [
    "anchovy",
    "barracuda",
    "catfish",
    "damselfish",
    "eel",
    "flounder",
    "grouper",
    "herring",
    "ide",
    "jackfish",
    "koi",
    "lionfish",
    "mackerel",
    "needlefish",
    "oarfish",
    "perch",
    "quillback",
    "rockfish",
    "sardine",
    "tuna",
    "unicornfish",
    "viperfish",
    "wrasse",
    "yellowtail",
    "zander",
]
_HABITATS = ["reef", "river", "open-ocean", "deep-sea", "lake"]


def _page(title: str, body: str, links: list[tuple[str, str]]) -> bytes:
    items = "".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title></head><body><h1>{title}</h1>"
        f"<p class='summary'>{body}</p><ul>{items}</ul></body></html>"
    ).encode()


def _build() -> dict[str, tuple[int, dict[str, str], bytes]]:
    rng = random.Random(7)
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    html = {"Content-Type": "text/html; charset=utf-8"}
    habitat_of = {fish: rng.choice(_HABITATS) for fish in _FISH}
    index_links = [(f"/fish/{f}", f.title()) for f in _FISH]
    index_links += [(f"/habitat/{h}", h) for h in _HABITATS]
    index_links += [("/about", "About"), ("/old-index", "Old index"), ("/private/notes", "Notes")]
    routes["/"] = (200, html, _page("Shoal field guide", "Fish of the world.", index_links))
    for fish in _FISH:
        others = rng.sample(_FISH, 3)
        links = [(f"../fish/{o}", o) for o in others]  # relative links, resolved per page
        links.append((f"/habitat/{habitat_of[fish]}#top", habitat_of[fish]))
        if fish == "oarfish":
            links.append(("/fish/sea-serpent", "a fish nobody has found"))  # a 404
        length = rng.randint(20, 200)
        routes[f"/fish/{fish}"] = (
            200,
            html,
            _page(
                fish.title(),
                f"The {fish} lives in the {habitat_of[fish]}; length {length} cm.",
                links,
            ),
        )
    for habitat in _HABITATS:
        members = [(f"/fish/{f}", f) for f in _FISH if habitat_of[f] == habitat]
        routes[f"/habitat/{habitat}"] = (
            200,
            html,
            _page(habitat.title(), f"{len(members)} species live here.", [*members, ("/", "Home")]),
        )
    about = gzip.compress(_page("About", "A sample site bundled with shoal.", [("/", "Home")]))
    routes["/about"] = (200, {**html, "Content-Encoding": "gzip"}, about)
    routes["/old-index"] = (301, {"Location": "/"}, b"")
    routes["/private/notes"] = (200, html, _page("Private", "Crawlers should not see this.", []))
    routes["/robots.txt"] = (
        200,
        {"Content-Type": "text/plain"},
        b"User-agent: *\nDisallow: /private/\n",
    )
    return routes


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Buffer the response so headers and body leave in one segment: written separately,
    # Nagle's algorithm and delayed ACKs add ~40 ms to every request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        status, headers, body = self.server.routes.get(
            self.path, (404, {"Content-Type": "text/html"}, _page("Not found", "No such page.", []))
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, tuple[int, dict[str, str], bytes]]


class DemoSite:
    """``with DemoSite() as site: crawl(site.url)``: serves until the block ends."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = _build()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="shoal-demo-site", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def page_count(self) -> int:
        """Pages a polite crawl from / fetches: all but the private one and the redirect."""
        return len(self._server.routes) - 3 + 1  # minus robots, private, redirect; plus the 404

    def __enter__(self) -> DemoSite:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
