"""The rendering benchmark's sites (#18), served on 127.0.0.1 by a threaded stdlib server.

``app``: every page is an app shell (``<div id=app></div><script src=/app.js>``) that
/app.js fills from a JSON API: list pages (``/`` is list 1, then ``/list/N``) link to their
items and to lists 2N and 2N+1 (a shallow tree, so the crawl is not one long chain); item
pages (``/item/N``) show ``<h1>Item N</h1>``. With ``--pages 500``: 50 lists, 450 items.

``mixed``: the same tree, but list pages and 7 items in 9 are full static HTML (with an
analytics-like script that builds nothing); the other items (2 in 9: 20 % of all pages at
500) are app shells. Auto-rendering should render those and only those.

GET /__stats answers ``{"counts": {path: requests}}`` (every path, API and script too).

    python bench/render_site.py --kind app --pages 500 --ready-file /tmp/port
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PER_LIST = 9

SHELL = (
    "<!doctype html><html><head><meta charset=utf-8><title>Shop</title></head>"
    '<body><div id="app"></div><script src="/app.js"></script></body></html>'
)
APP_JS = """
async function main() {
  const app = document.getElementById('app');
  const p = location.pathname;
  if (p === '/' || p.startsWith('/list/')) {
    const n = p === '/' ? 1 : +p.split('/')[2];
    const d = await (await fetch('/api/list/' + n)).json();
    app.innerHTML = '<h1>List ' + n + '</h1><ul>' +
      d.items.map(i => '<li><a href="/item/' + i + '">item ' + i + '</a></li>').join('') +
      '</ul>' + d.lists.map(l => '<a href="/list/' + l + '">list ' + l + '</a>').join(' ');
  } else if (p.startsWith('/item/')) {
    const d = await (await fetch('/api/item/' + p.split('/')[2])).json();
    app.innerHTML = '<h1>' + d.name + '</h1><p>' + d.text + '</p><a href="/">home</a>';
  }
}
main();
"""
ANALYTICS_JS = "window.dataLayer = window.dataLayer || []; dataLayer.push({event: 'view'});"
TEXT = "A sturdy thing, sold here for a fair price, with a long description of its uses. " * 6


def truth(pages: int) -> tuple[int, int]:
    """(lists, items) of a site of about ``pages`` pages."""
    lists = max(1, pages // (PER_LIST + 1))
    return lists, lists * PER_LIST


def list_path(n: int) -> str:
    return "/" if n == 1 else f"/list/{n}"


def list_data(n: int, lists: int) -> dict[str, list[int]]:
    items = [(n - 1) * PER_LIST + k for k in range(1, PER_LIST + 1)]
    return {"items": items, "lists": [m for m in (2 * n, 2 * n + 1) if m <= lists]}


def is_shell_item(i: int) -> bool:
    """On the mixed site: 2 items in 9 are app shells."""
    return i % PER_LIST in (0, 1)


def static_page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title>"
        '<script src="/analytics.js" async></script></head>'
        f"<body><h1>{title}</h1>{body}</body></html>"
    )


class Site:
    def __init__(self, kind: str, pages: int) -> None:
        self.kind = kind
        self.lists, self.items = truth(pages)
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def answer(self, path: str) -> tuple[int, str, str]:
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
        if path == "/__stats":
            with self.lock:
                return 200, "application/json", json.dumps({"counts": self.counts})
        if path == "/app.js":
            return 200, "application/javascript", APP_JS
        if path == "/analytics.js":
            return 200, "application/javascript", ANALYTICS_JS
        parts = path.strip("/").split("/")
        try:
            if path == "/" or (len(parts) == 2 and parts[0] == "list"):
                n = 1 if path == "/" else int(parts[1])
                if 1 <= n <= self.lists:
                    return 200, "text/html; charset=utf-8", self.list_page(n)
            if len(parts) == 2 and parts[0] == "item":
                i = int(parts[1])
                if 1 <= i <= self.items:
                    return 200, "text/html; charset=utf-8", self.item_page(i)
            if len(parts) == 3 and parts[0] == "api":
                n = int(parts[2])
                if parts[1] == "list" and 1 <= n <= self.lists:
                    return 200, "application/json", json.dumps(list_data(n, self.lists))
                if parts[1] == "item" and 1 <= n <= self.items:
                    data = {"name": f"Item {n}", "text": TEXT}
                    return 200, "application/json", json.dumps(data)
        except ValueError:
            pass
        return 404, "text/plain", "not found"

    def list_page(self, n: int) -> str:
        if self.kind == "app":
            return SHELL
        data = list_data(n, self.lists)
        items = "".join(f'<li><a href="/item/{i}">item {i}</a></li>' for i in data["items"])
        lists = " ".join(f'<a href="{list_path(m)}">list {m}</a>' for m in data["lists"])
        return static_page(f"List {n}", f"<p>{TEXT}</p><ul>{items}</ul>{lists}")

    def item_page(self, i: int) -> str:
        if self.kind == "app" or is_shell_item(i):
            return SHELL
        return static_page(f"Item {i}", f'<p>{TEXT}</p><a href="/">home</a>')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["app", "mixed"], default="app")
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args()
    site = Site(args.kind, args.pages)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm the body waits for
        # the client's delayed ACK of the headers (40 ms a response on Linux), for every tool.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            status, ctype, body = site.answer(self.path.split("?")[0])
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.ready_file:
        args.ready_file.write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
