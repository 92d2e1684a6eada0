"""--render always with the rest of the crawl: WARC output that holds what the browser
loaded (each subresource its own response record, a repeat a revisit), kill -9 and resume
exactly once; --per-host counted on the server with subresources; --render-memory; the
crawl's cookie jar on the browser's requests.

Under CI a missing browser is a failure; elsewhere the tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from rendering import APP_JS, LISTS, PAGES, PER_LIST, SHELL, shoal, shop
from sites import Reply, Request, Site

pytestmark = pytest.mark.usefixtures("browser")


def warc_records(path: Path) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(type, target URI, payload, WARC headers) of every record."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    with path.open("rb") as f:
        for record in ArchiveIterator(f):
            uri = record.rec_headers.get_header("WARC-Target-URI") or ""
            body = record.content_stream().read()
            out.append((record.rec_type, uri, body, dict(record.rec_headers.headers)))
    return out


def warcio_check(path: Path) -> subprocess.CompletedProcess[str]:
    warcio = Path(sys.executable).parent / "warcio"
    return subprocess.run([str(warcio), "check", str(path)], capture_output=True, text=True)


def path_of(uri: str) -> str:
    return "/" + uri.split("/", 3)[3]


def test_a_rendered_page_is_archived_with_what_the_browser_loaded(tmp_path: Path) -> None:
    """The WARC holds each page as the server sent it and each response its browser
    loaded; kill -9 while pages are in the browser, then the same command again: every
    page, and every XHR its script made, is in the file exactly once."""
    release = threading.Event()

    def gated(request: Request) -> Reply:
        if request.path.startswith("/api/item/") and int(request.path.split("/")[3]) > 3:
            release.wait(30)  # the pages of list 2 and 3 hang in the browser
        return shop(request)

    args = ["crawl", "", "-o", "shop.warc.gz", "-o", "shop.jsonl", "--render", "always",
            "--render-wait", "0.1", "--render-concurrency", "2", "--concurrency", "2",
            "--extract", "name=h1::text"]  # fmt: skip
    with Site() as site:
        site.fallback = gated
        args[1] = site.url("/")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", *args],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while site.count("/api/item/4") + site.count("/api/item/5") == 0:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            release.set()
        done = shoal(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    check = warcio_check(tmp_path / "shop.warc.gz")
    assert check.returncode == 0, check.stdout + check.stderr
    got = warc_records(tmp_path / "shop.warc.gz")
    responses = Counter(path_of(u) for t, u, _, _ in got if t == "response")
    revisits = Counter(path_of(u) for t, u, _, _ in got if t == "revisit")
    requests = Counter(path_of(u) for t, u, _, _ in got if t == "request")
    pages = {"/", *(f"/list/{n}" for n in range(2, LISTS + 1))}
    pages |= {f"/item/{i}" for i in range(1, LISTS * PER_LIST + 1)}
    # Each page once, as the server sent it (the shell, not the DOM the browser built).
    for page in pages:
        assert responses[page] == 1, page
    bodies = {path_of(u): b for t, u, b, _ in got if t == "response"}
    assert bodies["/item/1"] == SHELL.encode()
    # Each page's XHR JSON once, its own response record; app.js with each page: its
    # first capture in each run, then revisits of it.
    for i in range(1, LISTS * PER_LIST + 1):
        assert responses[f"/api/item/{i}"] == 1
        assert json.loads(bodies[f"/api/item/{i}"]) == {"name": f"Item {i}"}
    for n in range(1, LISTS + 1):
        assert responses[f"/api/list/{n}"] == 1
    assert bodies["/app.js"] == APP_JS.encode()
    assert 1 <= responses["/app.js"] <= 2
    assert responses["/app.js"] + revisits["/app.js"] == PAGES
    # Every response and revisit has its request record.
    assert requests == responses + revisits
    # The records come from the DOM, as without WARC.
    records = [json.loads(line) for line in (tmp_path / "shop.jsonl").read_text().splitlines()]
    assert sorted(str(r["url"]).split("/", 3)[3] for r in records) == sorted(p[1:] for p in pages)
    assert all(r["rendered"] is True and r["name"] for r in records)


def script_heavy(request: Request) -> Reply:
    """Pages that each load many scripts; the server holds each a moment so they overlap."""
    path = request.path
    if path == "/robots.txt":
        return Reply(404, "")
    if path.startswith("/s/"):
        time.sleep(0.05)  # makes requests overlap; the bound is asserted, not the time
        return Reply(body="//", content_type="application/javascript")
    n = int(path.strip("/") or 0)
    scripts = "".join(f'<script src="/s/{n}-{k}.js"></script>' for k in range(8))
    links = "".join(f'<a href="/{m}">{m}</a>' for m in range(1, 4)) if n == 0 else ""
    return Reply(body=f"<html><body>{links}{scripts}</body></html>")


def test_per_host_counts_the_browsers_requests_too(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = script_heavy
        done = shoal("crawl", site.url("/"), "-o", "p.jsonl", "--render", "always",
                     "--per-host", "2", "--render-concurrency", "4", "--render-wait", "0.1",
                     cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        scripts = sum(c for p, c in site.paths().items() if p.startswith("/s/"))
        peak = site.max_in_flight
    assert scripts == 4 * 8  # every script was loaded
    assert peak <= 2


def test_render_memory_holds_pages_back_and_the_crawl_completes(tmp_path: Path) -> None:
    """A budget of 1 MB is always exceeded: pages wait for the one rendering, one at a
    time, and each is still rendered."""
    second = threading.Event()
    page = (
        "<html><body><div id=app></div><script>"
        "fetch('/api' + location.pathname).then(r => r.text()).then(t => {"
        "document.getElementById('app').innerHTML = '<h1>' + t + '</h1>'; });"
        "</script>%s</body></html>"
    )

    def gated(request: Request) -> Reply:
        path = request.path
        if path == "/robots.txt":
            return Reply(404, "")
        if path == "/b":
            second.set()
        if path == "/api/a":
            second.wait(20)  # /a is rendering while /b asks to be let in
        if path.startswith("/api/"):
            return Reply(body=path, content_type="text/plain")
        links = '<a href="/a">a</a><a href="/b">b</a><a href="/c">c</a>' if path == "/" else ""
        return Reply(body=page % links)

    with Site() as site:
        site.fallback = gated
        done = shoal("crawl", site.url("/"), "-o", "p.jsonl", "--render", "always",
                     "--render-memory", "1", "--render-wait", "0.1", "--extract", "h=h1::text",
                     "--log-file", "log.txt", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(str(r["h"]) for r in records) == ["/api/", "/api/a", "/api/b", "/api/c"]
    assert all(r["rendered"] is True for r in records)
    log = (tmp_path / "log.txt").read_text()
    assert "over --render-memory 1 MB" in log
    waited = [line for line in log.splitlines() if "pages waited for it" in line]
    assert waited and int(waited[0].split(": ")[-1].split()[0]) >= 1


def test_the_cookie_jar_reaches_the_browsers_requests_and_back(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    page = (
        "<html><body><div id=app></div><script>"
        "document.cookie = 'js=1';"
        "fetch('/api/who').then(r => r.text()).then(t => {"
        "document.getElementById('app').innerHTML = '<h1>' + t + '</h1>' +"
        "'<a href=\"/second\">second</a>'; });"
        "</script></body></html>"
    )

    def cookies(request: Request) -> Reply:
        seen.append((request.path, request.headers.get("Cookie", "")))
        if request.path == "/robots.txt":
            return Reply(404, "")
        if request.path == "/api/who":
            return Reply(
                body="who", content_type="text/plain", headers={"Set-Cookie": "fromxhr=2; Path=/"}
            )
        if request.path == "/":
            return Reply(body=page, headers={"Set-Cookie": "sid=abc; Path=/"})
        return Reply(body="<html><body>second</body></html>")

    with Site() as site:
        site.fallback = cookies
        done = shoal("crawl", site.url("/"), "-o", "p.jsonl", "--render", "always",
                     "--render-wait", "0.2", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    sent = dict(seen)
    # The jar's cookie (from the page's response) went with the page's XHR, with the
    # one its script set; the XHR's Set-Cookie reached the jar: the next page sends it.
    assert "sid=abc" in sent["/api/who"] and "js=1" in sent["/api/who"]
    assert "fromxhr=2" in sent["/second"] and "sid=abc" in sent["/second"]


def test_a_page_that_loads_without_end_is_archived_within_its_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XHR spam: the page's responses are served, but only the first few (the count
    bound, lowered here) and what fits the byte bound go to the WARC."""
    from shoal import Crawler
    from shoal.crawler import _render

    monkeypatch.setattr(_render, "_ARCHIVE_MAX_COUNT", 5)
    monkeypatch.setattr(_render, "_ARCHIVE_MAX_BYTES", 5 * 1000 + 999)
    spam = (
        "<html><body><script>for (let i = 0; i < 40; i++) fetch('/x/' + i);</script></body></html>"
    )

    def site_of(request: Request) -> Reply:
        if request.path == "/robots.txt":
            return Reply(404, "")
        if request.path.startswith("/x/"):
            return Reply(body="x" * 1000, content_type="text/plain")
        return Reply(body=spam)

    out = tmp_path / "spam.warc.gz"
    with Site() as site:
        site.fallback = site_of
        Crawler(site.url("/"), output=str(out), state=None, progress=False, render="always",
                render_wait=0.1).run()  # fmt: skip
        served = sum(c for p, c in site.paths().items() if p.startswith("/x/"))
    assert served == 40
    got = warc_records(out)
    kept = [u for t, u, _, _ in got if t in ("response", "revisit") and "/x/" in u]
    assert len(kept) == 5
    assert [path_of(u) for t, u, _, _ in got if t == "response"].count("/") == 1
