#!/usr/bin/env python3
"""Synthetic website for crawler benchmarks (standard library only).

The site is a deterministic link graph: ``/`` plus pages ``/p/0`` .. ``/p/<pages-1>``.  About
5 % of the pages are "hidden": they may link anywhere, but nothing outside the hidden set links
to them, so they are unreachable from ``/`` and a crawler that fetches them is guessing URLs.
Links are written in several equivalent spellings (absolute path, full URL, bare relative,
``./`` and ``../`` relative, optional ``#fragment``) so crawlers must normalise before deduping.

The server speaks just enough HTTP/1.1 (GET/HEAD, keep-alive, Content-Length) to be cheap on
CPU: every response is rendered once, and latency is simulated with the event loop's timer.
``--loop uvloop`` (when installed) costs a fraction of the CPU of asyncio's own loop.
It counts requests per request-target; ``GET /__stats`` returns the counts as JSON (that
request is neither counted nor delayed), and SIGTERM writes them to ``--stats-file``.

Each ``--host`` address (give it several times) gets its own listening socket, all on one
port, and serves its own copy of the site, whose absolute links name that address: several
loopback addresses (127.0.0.2, 127.0.0.3, ...) are then several hosts to a crawler, while
nothing listens beyond this machine. Request counts are summed over the hosts.

    python bench/site_server.py --pages 3000 --links 10 --latency-ms 50 --port 0 --seed 1 \
        --ready-file /tmp/port
    python bench/site_server.py --host 127.0.0.2 --host 127.0.0.3 --ready-file /tmp/port
    python bench/site_server.py --pages 3000 --links 10 --seed 1 --oracle
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import signal
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import NamedTuple

HIDDEN_FRACTION = 0.05
FRAGMENT_PROBABILITY = 0.2
STATS_PATH = "/__stats"
ROBOTS_TXT = b"User-agent: *\nDisallow:\n"
# Vocabulary for filler text; pages carry some prose so parsing costs are realistic.
VOCABULARY = (
    "shoal reef current tide kelp drift harbor swell lagoon coral anchor buoy channel estuary "
    "plankton gull pier jetty wave foam inlet sandbar atoll brine crest trawler net school fin"
)
WORDS = VOCABULARY.split()


class Link(NamedTuple):
    target: int  # page number n of /p/n
    style: int  # index into the spellings produced by render_href
    fragment: str  # "" or "#..."


def page_path(n: int) -> str:
    return f"/p/{n}"


def build_graph(pages: int, links: int, seed: int) -> dict[str, list[Link]]:
    """Return the outgoing content links of every node ("/" and each /p/n), keyed by path."""
    rng = random.Random(seed)
    hidden = set(rng.sample(range(pages), max(1, round(pages * HIDDEN_FRACTION))))
    visible = [n for n in range(pages) if n not in hidden]
    everything = list(range(pages))
    graph: dict[str, list[Link]] = {}
    for n in [-1, *everything]:  # -1 stands for the start page "/"
        pool = everything if n in hidden else visible
        # Drawing with replacement gives natural duplicate links and self-links on a page.
        graph["/" if n < 0 else page_path(n)] = [
            Link(
                rng.choice(pool),
                rng.randrange(5),
                f"#s{rng.randrange(4)}" if rng.random() < FRAGMENT_PROBABILITY else "",
            )
            for _ in range(links)
        ]
    return graph


def reachable_paths(pages: int, links: int, seed: int) -> set[str]:
    """The oracle: every path reachable from "/" by following links (BFS)."""
    return {path for level in bfs_levels(pages, links, seed) for path in level}


def bfs_levels(pages: int, links: int, seed: int) -> list[list[str]]:
    """Reachable paths by link distance from "/": level k can be fetched no earlier than
    k round trips after "/" (plus one for robots.txt), however fast the crawler."""
    graph = build_graph(pages, links, seed)
    seen = {"/"}
    levels = [["/"]]
    while True:
        level = []
        for page in levels[-1]:
            for link in graph[page]:
                path = page_path(link.target)
                if path not in seen:
                    seen.add(path)
                    level.append(path)
        if not level:
            return levels
        levels.append(level)


def ideal_crawl_seconds(
    pages: int, links: int, seed: int, concurrency: int, latency: float
) -> float:
    """How long a perfect crawler would take: zero CPU, every response exactly ``latency``
    after its request, ``concurrency`` requests in flight whenever that many URLs are known,
    robots.txt first. Only discovery holds it back: a URL is known once a page linking to
    it has arrived. (A discrete-event simulation in breadth-first order.)"""
    graph = build_graph(pages, links, seed)
    known = deque(["/"])
    seen = {"/"}
    in_flight: list[tuple[float, str]] = []  # (done at, path), a heap
    now = latency  # robots.txt
    finished_at = now
    while known or in_flight:
        while known and len(in_flight) < concurrency:
            heapq.heappush(in_flight, (now + latency, known.popleft()))
        now, path = heapq.heappop(in_flight)
        finished_at = now
        for link in graph[path]:
            target = page_path(link.target)
            if target not in seen:
                seen.add(target)
                known.append(target)
    return finished_at


def render_href(source: str, link: Link, host: str) -> str:
    """Spell a link to /p/<target> in one of five ways that all resolve to the same URL."""
    on_page = source.startswith("/p/")
    rel = str(link.target) if on_page else f"p/{link.target}"
    spellings = (
        page_path(link.target),
        f"http://{host}{page_path(link.target)}",
        rel,
        f"./{rel}",
        f"../p/{link.target}" if on_page else page_path(link.target),
    )
    return spellings[link.style] + link.fragment


def render_page(path: str, out: list[Link], host: str) -> bytes:
    rng = random.Random(f"text:{path}")  # str seeds are hashed deterministically
    title = "Home" if path == "/" else f"Page {path.rsplit('/', 1)[1]}"
    paragraphs = "\n".join(
        f'<p id="s{i}">' + " ".join(rng.choices(WORDS, k=rng.randint(30, 60))) + ".</p>"
        for i in range(4)
    )
    items = "\n".join(
        f'<li><a href="{render_href(path, link, host)}">{rng.choice(WORDS)} {link.target}</a></li>'
        for link in out
    )
    html = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f'<body><nav><a href="/">home</a> <a href="mailto:crew@example.invalid">mail</a></nav>\n'
        f"<h1>{title}</h1>\n{paragraphs}\n<ul>\n{items}\n</ul>\n</body></html>\n"
    )
    return html.encode()


class SiteServer:
    def __init__(self, graph: dict[str, list[Link]], latency_s: float) -> None:
        self.graph = graph
        self.latency_s = latency_s
        # Per listening address, filled by render() once the port (needed for absolute
        # links) is known.
        self.bodies: dict[str, dict[str, tuple[str, bytes]]] = {}
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.first_request: float | None = None
        self.last_response: float | None = None
        # (address, method, target, keep-alive) -> (status, the whole response)
        self.responses: dict[tuple[str, str, str, bool], tuple[int, bytes]] = {}

    def render(self, host: str, port: int, addresses: list[str]) -> None:
        """The pages for ``host`` (absolute links name it), served on its ``addresses``."""
        html = "text/html; charset=utf-8"
        authority = f"{host}:{port}"
        bodies = {
            path: (html, render_page(path, out, authority)) for path, out in self.graph.items()
        }
        bodies["/robots.txt"] = ("text/plain", ROBOTS_TXT)
        for address in addresses:
            self.bodies[address] = bodies

    def stats(self) -> dict[str, object]:
        active = 0.0
        if self.first_request is not None and self.last_response is not None:
            active = self.last_response - self.first_request
        return {
            "requests": sum(self.counts.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "active_s": round(active, 6),
            "counts": dict(self.counts),
        }

    def respond(self, head: bytes, address: str) -> tuple[bytes, bool]:
        """The whole response to the request ``head`` (up to its blank line) received on
        ``address``, and whether the connection stays open."""
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3:
            return (
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                False,
            )
        method, target, version = parts
        headers = rest.lower()
        wanted = b""
        for field in headers.split(b"\r\n"):
            if field.startswith(b"connection:"):
                wanted = field[11:].strip()
        keep_alive = b"close" not in wanted and (version == "HTTP/1.1" or b"keep-alive" in wanted)
        if target == STATS_PATH:
            body = json.dumps(self.stats()).encode()
            return self.render_response(
                200, "application/json", body, keep_alive, method
            ), keep_alive
        if self.first_request is None:
            self.first_request = time.monotonic()
        self.counts[target] += 1
        key = (address, method, target, keep_alive)
        cached = self.responses.get(key)
        if cached is None:
            status, ctype, body = self.route(method, target, self.bodies.get(address, {}))
            cached = (status, self.render_response(status, ctype, body, keep_alive, method))
            self.responses[key] = cached
        self.statuses[cached[0]] += 1
        return cached[1], keep_alive

    @staticmethod
    def render_response(
        status: int, ctype: str, body: bytes, keep_alive: bool, method: str
    ) -> bytes:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        connection = "keep-alive" if keep_alive else "close"
        header = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: {ctype}\r\nConnection: {connection}\r\n\r\n"
        )
        return header.encode() + (b"" if method == "HEAD" else body)

    @staticmethod
    def route(
        method: str, target: str, bodies: dict[str, tuple[str, bytes]]
    ) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if found := bodies.get(target):
            return 200, *found
        return 404, "text/plain", b"not found\n"


class Connection(asyncio.Protocol):
    """One client connection: requests are answered in order, each after the latency.

    A protocol rather than streams, and every response rendered once and cached: the site
    shares the machine's cores with the crawler it measures, so the less it takes the more
    the numbers say about the crawler."""

    def __init__(self, site: SiteServer) -> None:
        self.site = site
        self.buffer = b""
        self.address = ""
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.pending = 0  # responses waiting out the latency

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        self.address = transport.get_extra_info("sockname")[0]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while not self.closing:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, rest = buffer[:end], buffer[end + 4 :]
            length = 0
            lower = head.lower()
            if b"content-length:" in lower:
                for field in lower.split(b"\r\n"):
                    if field.startswith(b"content-length:"):
                        length = int(field[15:].strip() or 0)
            if len(rest) < length:
                break  # the body (discarded) is not all here yet
            buffer = rest[length:]
            response, keep_alive = self.site.respond(head, self.address)
            self.closing = not keep_alive
            self.send(response)
        self.buffer = buffer
        if len(self.buffer) > 65536:
            self.buffer = b""
            self.closing = True
            self.send(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )

    def send(self, response: bytes) -> None:
        if self.site.latency_s:
            # Equal delays fire in the order they were set: responses stay in order.
            self.pending += 1
            asyncio.get_running_loop().call_later(self.site.latency_s, self.deliver, response)
        else:
            self.deliver(response, counted=False)

    def deliver(self, response: bytes, counted: bool = True) -> None:
        if counted:
            self.pending -= 1
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(response)
        self.site.last_response = time.monotonic()
        if self.closing and not self.pending:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def listen(site: SiteServer, hosts: list[str], port: int) -> list[asyncio.Server]:
    """One server per address, all on one port: the first address picks it when ``port``
    is 0. Another process may hold that port on a later address: then try a new port."""
    for _ in range(1 if port else 20):
        # A large backlog: crawlers open up to `concurrency` connections at once.
        loop = asyncio.get_running_loop()
        first = await loop.create_server(lambda: Connection(site), hosts[0], port, backlog=1024)
        servers = [first]
        chosen = first.sockets[0].getsockname()[1]
        try:
            for host in hosts[1:]:
                servers.append(
                    await loop.create_server(lambda: Connection(site), host, chosen, backlog=1024)
                )
        except OSError:
            for server in servers:
                server.close()
            if port:
                raise
            continue
        return servers
    raise OSError("no port free on all of " + ", ".join(hosts))


async def serve(args: argparse.Namespace) -> None:
    site = SiteServer(build_graph(args.pages, args.links, args.seed), args.latency_ms / 1000)
    hosts = list(dict.fromkeys(args.host or ["127.0.0.1"]))
    servers = await listen(site, hosts, args.port)
    port = servers[0].sockets[0].getsockname()[1]
    for host, server in zip(hosts, servers, strict=True):
        site.render(host, port, [sock.getsockname()[0] for sock in server.sockets])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if args.ready_file:
        # Write then rename so a poller never reads a half-written port number.
        tmp = Path(f"{args.ready_file}.tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.ready_file)
    where = ", ".join(f"http://{host}:{port}/" for host in hosts)
    print(f"site_server: {args.pages} pages on {where}", file=sys.stderr)

    await stop.wait()
    for server in servers:
        server.close()
        await server.wait_closed()
    stats = site.stats()
    if args.stats_file:
        Path(args.stats_file).write_text(json.dumps(stats))
    print(f"site_server: stopped after {stats['requests']} requests", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--links", type=int, default=10, help="content links per page")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="delay of each response")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--host",
        action="append",
        help="an address to listen on, one copy of the site each; repeat for several hosts "
        "(default: 127.0.0.1)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", help="write the listening port here once ready")
    parser.add_argument("--stats-file", help="write the request counts here on SIGTERM")
    parser.add_argument(
        "--oracle", action="store_true", help="print the paths reachable from / and exit"
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop: uvloop (pip install uvloop) serves at a fraction of the CPU, which "
        "matters when the crawler and the site share a machine's cores",
    )
    args = parser.parse_args()
    if args.oracle:
        print("\n".join(sorted(reachable_paths(args.pages, args.links, args.seed))))
        return
    if args.loop == "uvloop":
        import uvloop  # optional, bench-only

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
