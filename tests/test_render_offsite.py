"""--render: what a rendered page loads from another host (a CDN's script, an API host),
``--render-resources any|scope``.

Host A (127.0.0.1) is the crawl; host B (127.0.0.2, a server of its own) is where A's pages
load a script from. Scope says which pages the crawl visits, not what a page may load: by
default B's script is loaded, under B's own rules (its robots.txt read once, its
``--per-host`` slots, ``--deny-private``), and B is never a page of the crawl (a navigation
to it is still refused, a link to it not followed). ``--render-resources scope`` keeps the
old rule: nothing from B.

Under CI a missing browser is a failure; elsewhere the tests are skipped with the reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rendering import records, shoal
from sites import Reply, Request, Site


@pytest.fixture
def b_site() -> Iterator[Site]:
    """Host B, on a second loopback address: out of the crawl's scope (another host)."""
    with Site(host="127.0.0.2") as site:
        yield site


def page(body: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"


def lib_page(b: Site, extra: str = "") -> str:
    """A page whose h1 says what B's script set, or "no lib" if it was not loaded."""
    return page(
        f'<h1 id=h>waiting</h1>{extra}<script src="{b.url("/lib.js")}"></script>'
        "<script>document.getElementById('h').textContent = window.LIB || 'no lib';</script>"
    )


def a_site(b: Site) -> Site:
    links = "".join(f'<a href="{p}">{p}</a> ' for p in ("/p1", "/p2", "/nav"))
    off = f'<a href="{b.url("/page")}">b</a>'
    return Site(
        {
            "/": lib_page(b, links + off),
            "/p1": lib_page(b),
            "/p2": lib_page(b),
            # A navigation to B by script: B is no page of the crawl, the page stays.
            "/nav": page(f"<h1>nav</h1><script>location.href = {b.url('/page')!r};</script>"),
            "/robots.txt": Reply(404, ""),
        }
    )


def serve_b(b: Site, robots: str | None) -> None:
    b.routes["/lib.js"] = Reply(body="window.LIB = 'from b';", content_type="text/javascript")
    b.routes["/page"] = page("<h1>b's page</h1>")
    b.routes["/robots.txt"] = (
        Reply(404, "") if robots is None else Reply(body=robots, content_type="text/plain")
    )


def crawl(a: Site, work: Path, *args: str) -> dict[str, dict[str, object]]:
    done = shoal("crawl", a.url("/"), "-o", "pages.jsonl", "--render", "always",
                 "--render-concurrency", "3", "--extract", "h=h1::text", "--no-state",
                 *args, cwd=work, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {str(r["url"]).removeprefix(a.origin): r for r in records(work / "pages.jsonl")}


@pytest.mark.usefixtures("browser")
def test_a_script_from_another_host_is_loaded_and_that_host_is_no_page(
    tmp_path: Path, b_site: Site
) -> None:
    serve_b(b_site, robots="User-agent: *\nDisallow: /private/\n")
    with a_site(b_site) as a:
        got = crawl(a, tmp_path)
    assert set(got) == {"/", "/p1", "/p2", "/nav"}  # B's page is not crawled: off scope
    for path in ("/", "/p1", "/p2"):
        assert got[path]["rendered"] is True and got[path]["error"] is None, got[path]
        assert got[path]["h"] == "from b", got[path]
    # The navigation to B was refused before it was sent: the page stayed on A.
    assert got["/nav"]["final_url"] == a.url("/nav") and got["/nav"]["h"] == "nav"
    seen = b_site.paths()
    assert seen["/robots.txt"] == 1  # read once for the crawl, three pages needing it
    assert 1 <= seen["/lib.js"] <= 3  # once a page (the browser may cache it)
    assert set(seen) == {"/robots.txt", "/lib.js"}, seen  # never B's page


@pytest.mark.usefixtures("browser")
@pytest.mark.parametrize("unreadable", [False, True], ids=["disallowed", "robots-503"])
def test_another_hosts_robots_txt_is_obeyed(tmp_path: Path, b_site: Site, unreadable: bool) -> None:
    serve_b(b_site, robots="User-agent: *\nDisallow: /lib.js\n")
    if unreadable:
        # As for a crawled host: a robots.txt that fails (5xx) holds the host back.
        b_site.routes["/robots.txt"] = Reply(503, "busy")
    with a_site(b_site) as a:
        got = crawl(a, tmp_path)
    for path in ("/", "/p1", "/p2"):
        # Refused, and the page renders without it.
        assert got[path]["rendered"] is True and got[path]["error"] is None, got[path]
        assert got[path]["h"] == "no lib", got[path]
    assert b_site.paths() == {"/robots.txt": 1}  # asked once, never the script


@pytest.mark.usefixtures("browser")
def test_render_resources_scope_refuses_another_host(tmp_path: Path, b_site: Site) -> None:
    serve_b(b_site, robots=None)
    with a_site(b_site) as a:
        got = crawl(a, tmp_path, "--render-resources", "scope")
    assert all(got[p]["h"] == "no lib" for p in ("/", "/p1", "/p2")), got
    assert b_site.paths() == {}  # not even its robots.txt


@pytest.mark.usefixtures("browser")
def test_per_host_counts_another_hosts_requests(tmp_path: Path, b_site: Site) -> None:
    """B's requests in flight, counted on B's server, stay within --per-host while four
    pages load 8 scripts each from it at once."""

    def script(request: Request) -> Reply:
        time.sleep(0.05)  # makes requests overlap; the bound is asserted, not the time
        return Reply(body="//", content_type="text/javascript")

    b_site.fallback = script
    b_site.routes["/robots.txt"] = Reply(404, "")

    def heavy(request: Request) -> Reply:
        path = request.path
        if path == "/robots.txt":
            return Reply(404, "")
        n = int(path.strip("/") or 0)
        scripts = "".join(f'<script src="{b_site.url(f"/s/{n}-{k}.js")}"></script>'
                          for k in range(8))  # fmt: skip
        links = "".join(f'<a href="/{m}">{m}</a>' for m in range(1, 4)) if n == 0 else ""
        return Reply(body=f"<html><body>{links}{scripts}</body></html>")

    with Site() as a:
        a.fallback = heavy
        done = shoal("crawl", a.url("/"), "-o", "p.jsonl", "--render", "always",
                     "--per-host", "2", "--render-concurrency", "4", "--render-wait", "0.1",
                     "--no-state", cwd=tmp_path, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    scripts = sum(c for p, c in b_site.paths().items() if p.startswith("/s/"))
    assert scripts == 4 * 8  # every script of every page was loaded from B
    assert b_site.max_in_flight <= 2
    assert b_site.count("/robots.txt") == 1


@pytest.mark.usefixtures("browser")
def test_deny_private_holds_for_another_hosts_resources(
    tmp_path: Path, b_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--deny-private after DNS: B's address is private, so neither its robots.txt nor its
    script is asked for; the page renders without it. Every loopback address is private,
    so here 127.0.0.1 (the crawl's own host) counts as public and 127.0.0.2 does not: the
    address check itself is the real one for every other address
    (tests/test_http_hostile.py)."""
    from shoal.crawler import Crawler, _gate
    from shoal.http import _client, is_public_address

    def public(address: str) -> bool:
        return address == "127.0.0.1" or is_public_address(address)

    serve_b(b_site, robots=None)
    with a_site(b_site) as a:
        # Without --deny-private, B's script is loaded: what the check changes.
        for deny in (False, True):
            out = tmp_path / f"deny-{deny}.jsonl"
            with monkeypatch.context() as m:
                m.setattr(_client, "is_public_address", public)
                m.setattr(_gate, "is_public_address", public)
                Crawler(a.url("/p1"), output=str(out), state=None, progress=False,
                        render="always", extract={"h": "h1::text"}, max_depth=0,
                        deny_private=deny).run()  # fmt: skip
            (record,) = records(out)
            assert record["rendered"] is True and record["error"] is None, record
            if not deny:
                assert record["h"] == "from b", record
                assert b_site.paths() == {"/robots.txt": 1, "/lib.js": 1}
            else:
                assert record["h"] == "no lib", record
                assert b_site.paths() == {"/robots.txt": 1, "/lib.js": 1}  # nothing new


# -- the robots.txt cache of such hosts ---------------------------------------------------


def test_another_hosts_robots_txt_is_fetched_once_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight requests need host B's rules at once: one fetch, the others wait for it."""
    from shoal.crawler import _offsite
    from shoal.crawler._robots import RobotsRules

    waiting = 0
    lock = threading.Lock()
    all_waiting = threading.Event()

    class Pending(_offsite._Pending):
        def __init__(self) -> None:
            super().__init__()
            wait = self.done.wait

            def counted(timeout: float | None = None) -> bool:
                nonlocal waiting
                with lock:
                    waiting += 1
                    if waiting == 7:
                        all_waiting.set()
                return wait(timeout)

            self.done.wait = counted  # type: ignore[method-assign]

    monkeypatch.setattr(_offsite, "_Pending", Pending)
    release = threading.Event()
    calls: list[str] = []

    def fetch(host: str) -> RobotsRules:
        calls.append(host)
        assert release.wait(30)
        return RobotsRules(allow_all=True)

    robots = _offsite.SideRobots(fetch, wait=30, max_hosts=2)
    got: list[RobotsRules] = []
    threads = [
        threading.Thread(target=lambda: got.append(robots.rules("http://b"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    assert all_waiting.wait(30)  # seven wait on the one fetch under way
    assert calls == ["http://b"]
    release.set()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and all(r is got[0] for r in got)
    # Remembered, for at most max_hosts hosts (the least recently used forgotten).
    assert robots.rules("http://b") is got[0] and calls == ["http://b"]
    robots.rules("http://c")
    robots.rules("http://d")
    robots.rules("http://b")
    assert calls == ["http://b", "http://c", "http://d", "http://b"]


def test_another_hosts_robots_txt_that_fails_refuses_its_resources() -> None:
    from shoal.crawler._offsite import SideRobots
    from shoal.crawler._robots import RobotsRules

    calls = 0

    def broken(host: str) -> RobotsRules:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    robots = SideRobots(broken, wait=1)
    rules = robots.rules("http://b")
    assert rules.error == "internal" and not rules.allowed("http://b/lib.js", "shoal")
    assert robots.rules("http://b") is rules and calls == 1  # as the crawl's own: once
