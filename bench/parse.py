#!/usr/bin/env python3
"""Microbenchmark of the HTTP client's response path: microseconds to read one ~6 KB
response (Content-Length, then chunked) through ``shoal.http._client._exchange`` on a kept-alive
connection whose ``recv`` hands over canned bytes, so no socket I/O is measured.

    .venv/bin/python bench/parse.py
    OTHER/.venv/bin/python bench/parse.py     # another build (say, main), to compare
    .venv/bin/python bench/parse.py --html    # HTML instead: a page's links, typical and hostile

``--html`` times what the crawler does with a fetched page (``Page.links``, and
``Page.robots`` where the build has it): microseconds for a typical 9 KB page (200 links), then CPU
seconds, links found and the process's peak RSS so far for hostile pages (100,000 nested
``<div>``s, a 10 MB page of 450,000 links).

Runs under whichever shoal its Python imports; run both builds in one sitting and
compare the minima, as a loaded machine skews single figures.
"""

from __future__ import annotations

import argparse
import resource
import socket
import time
import timeit

from shoal.http import _client as _http

BODY = (b"<html><body>" + b"<p>some text of a page, line</p>\n" * 200)[:6000]
HEAD = (
    b"HTTP/1.1 200 OK\r\nDate: Mon, 30 Nov 2026 13:00:00 GMT\r\nServer: bench\r\n"
    b"Content-Type: text/html; charset=utf-8\r\nCache-Control: max-age=60\r\n"
    b'Last-Modified: Mon, 30 Nov 2026 12:00:00 GMT\r\nETag: "abc"\r\n'
    b"Vary: Accept-Encoding\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    b"Connection: keep-alive\r\n"
)
RESPONSES = {
    "content-length": HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "chunked": HEAD
    + b"Transfer-Encoding: chunked\r\n\r\n"
    + b"".join(
        b"%x\r\n%s\r\n" % (len(BODY[i : i + 2048]), BODY[i : i + 2048])
        for i in range(0, len(BODY), 2048)
    )
    + b"0\r\n\r\n",
}


class CannedConn(_http._Conn):
    """A connection whose next recv returns ``pending`` (and sends go nowhere)."""

    pending = b""

    def sendall(self, data: bytes, deadline: float | None) -> None:
        pass

    def recv(self, deadline: float | None) -> bytes:
        data, self.pending = self.pending, b""
        return data


TYPICAL = (
    "<html><head><title>t</title><meta name=description content=x></head><body>"
    + "".join(f'<p>some text {i} <a href="/p/{i}">a link</a></p>' for i in range(200))
    + "</body></html>"
).encode()
HOSTILE = {
    "100,000 nested divs": (
        '<title>deep</title><a href="/before">b</a>'
        + "<div>" * 100_000
        + '<a href="/after">a</a>'
        + "</div>" * 100_000
    ).encode(),
    "450,000 links (10 MB)": (
        "<title>dense</title>" + "".join(f'<a href="/p/{i:07d}">.</a>' for i in range(450_000))
    ).encode(),
}


def html_main(number: int, repeat: int) -> None:
    from shoal.crawler import _page

    def links(body: bytes) -> int:
        page = _page.Page(
            url="http://h/",
            final_url="http://h/",
            status=200,
            headers={"content-type": "text/html; charset=utf-8"},
            body=body,
            depth=0,
            referrer=None,
            elapsed=0.0,
            max_links=None,
        )
        getattr(page, "robots", None)  # builds before robots directives lack it
        return len(page.links)

    print(f"shoal from {_page.__file__}")
    timings = timeit.repeat(lambda: links(TYPICAL), number=number, repeat=repeat)
    micros = min(timings) / number * 1e6
    print(f"{'typical page':22} {micros:8.1f} us per page ({len(TYPICAL)} bytes)")
    for name, body in HOSTILE.items():
        started = time.process_time()
        found = links(body)
        cpu = time.process_time() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:22} {cpu:8.2f} s CPU, {found} links, peak RSS so far {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="responses per timing")
    parser.add_argument("--repeat", type=int, default=7, help="timings; the minimum is shown")
    parser.add_argument("--html", action="store_true", help="time HTML pages' links instead")
    args = parser.parse_args()
    if args.html:
        html_main(max(1, args.number // 10), args.repeat)
        return
    sock, other = socket.socketpair()
    conn = CannedConn(sock, 30.0)

    def one(response: bytes) -> None:
        conn.pending = response
        got, keep = _http._exchange(conn, b"GET / HTTP/1.1\r\n\r\n", 10_000_000, None, True)
        assert keep and got.body == BODY

    print(f"shoal from {_http.__file__}")
    try:
        for name, response in RESPONSES.items():
            one(response)
            timings = timeit.repeat(
                lambda r=response: one(r), number=args.number, repeat=args.repeat
            )
            micros = min(timings) / args.number * 1e6
            print(f"{name:15} {micros:6.2f} us per response ({len(response)} bytes)")
    finally:
        sock.close()
        other.close()


if __name__ == "__main__":
    main()
