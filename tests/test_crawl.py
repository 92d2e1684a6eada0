"""The crawler against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from pathlib import Path
from typing import Any

import brotli
import pytest

import shoal
from shoal.crawler import Crawler, CrawlResult, Page
from sites import Reply, Request, Site, html


def crawl(
    start: str | list[str], tmp_path: Path, **options: Any
) -> tuple[CrawlResult, list[dict[str, Any]]]:
    out = tmp_path / "out.jsonl"
    options.setdefault("progress", False)
    options.setdefault("fresh", True)  # several crawls may share one tmp_path
    result = Crawler(start, output=str(out), **options).run()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return result, records


def by_url(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["url"]: r for r in records}


def test_link_graph_relative_absolute_and_base(tmp_path: Path) -> None:
    with Site() as site:
        site.routes.update(
            {
                "/": html(
                    "home",
                    "/a",
                    "b",
                    "./c?y=2&x=1#frag",
                    site.url("/d"),
                    "mailto:x@y",
                    "javascript:void(0)",
                    "#top",
                ),
                "/a": html("A", "/", "/e"),
                "/b": html("B", "/a"),
                "/c?x=1&y=2": html("C"),
                "/d": html("D", "sub/f"),
                "/e": html("E"),
                "/sub/f": html("F"),
                "/dir/page": "<html><head><base href='/other/'></head><body>"
                "<a href='g'>g</a></body></html>",
                "/other/g": html("G"),
                "/unreachable": html("nobody links here"),
            }
        )
        site.routes["/"] = html(
            "home",
            "/a",
            "b",
            "./c?y=2&x=1#frag",
            site.url("/d"),
            "mailto:x@y",
            "javascript:void(0)",
            "#top",
            "/dir/page",
        )
        result, records = crawl(site.url("/"), tmp_path)
        paths = site.paths()
    expected = {"/", "/a", "/b", "/c?x=1&y=2", "/d", "/e", "/sub/f", "/dir/page", "/other/g"}
    assert set(paths) == expected | {"/robots.txt"}
    assert all(n == 1 for n in paths.values()), paths  # nothing fetched twice
    assert result.pages == len(expected) and result.ok == len(expected)
    recs = by_url(records)
    assert recs[site.url("/a")]["title"] == "A"
    assert recs[site.url("/a")]["depth"] == 1 and recs[site.url("/a")]["referrer"] == site.url("/")
    assert set(records[0]) >= {
        "url",
        "final_url",
        "status",
        "depth",
        "referrer",
        "content_type",
        "bytes",
        "elapsed",
        "fetched_at",
        "title",
        "error",
    }


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_redirects_are_deduplicated_and_scope_checked(tmp_path: Path, transport: str) -> None:
    with Site() as site, Site() as elsewhere:
        elsewhere.routes["/x"] = html("X")
        site.routes.update(
            {
                "/": html("home", "/old", "/new", "/loop1", "/away", "/chain0"),
                "/old": Reply(301, headers={"Location": "/new"}),
                "/new": html("New"),
                "/loop1": Reply(302, headers={"Location": "/loop2"}),
                "/loop2": Reply(302, headers={"Location": "/loop1"}),
                "/away": Reply(302, headers={"Location": "http://example.invalid/x"}),
            }
        )
        for i in range(15):
            site.routes[f"/chain{i}"] = Reply(302, headers={"Location": f"/chain{i + 1}"})
        _result, records = crawl(site.url("/"), tmp_path, transport=transport, max_redirects=5)
        paths = site.paths()
    assert paths["/new"] == 1  # reached directly and via /old, fetched once
    recs = by_url(records)
    old = recs.get(site.url("/old"))
    assert old is not None and old["final_url"] == site.url("/new") and old["status"] == 301
    assert recs[site.url("/loop1")]["error"] == "redirect_loop"
    assert recs[site.url("/away")]["status"] == 302  # not followed out of scope
    assert recs[site.url("/chain0")]["error"] == "too_many_redirects"
    assert max(paths.values()) == 1


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_http_errors_retries_and_retry_after(tmp_path: Path, transport: str) -> None:
    calls: dict[str, int] = {}

    def flaky(req: Request) -> Reply:
        calls[req.path] = calls.get(req.path, 0) + 1
        if calls[req.path] == 1:
            return Reply(503, "busy", headers={"Retry-After": "1"})
        return Reply(body=html("ok now"))

    with Site() as site:
        site.routes.update(
            {
                "/": html("home", "/missing", "/broken", "/flaky"),
                "/broken": Reply(500, "oops"),
                "/flaky": flaky,
            }
        )
        result, records = crawl(
            site.url("/"), tmp_path, transport=transport, retries=2, retry_backoff=0.01
        )
        assert site.count("/missing") == 1  # 404 is final
        assert site.count("/broken") == 3  # 500 retried twice
        first, second = site.times("/flaky")
    assert second - first >= 0.9  # Retry-After: 1 was honoured
    recs = by_url(records)
    assert recs[site.url("/missing")]["error"] == "http_404"
    assert recs[site.url("/broken")]["error"] == "http_500"
    assert recs[site.url("/flaky")]["status"] == 200 and recs[site.url("/flaky")]["error"] is None
    assert result.errors == {"http_404": 1, "http_500": 1}
    assert result.retries == 3


def test_robots_rules_and_crawl_delay(tmp_path: Path) -> None:
    with Site() as site:
        site.routes.update(
            {
                "/robots.txt": Reply(
                    body="User-agent: *\nDisallow: /private\nCrawl-delay: 0.3\n",
                    content_type="text/plain",
                ),
                "/": html("home", "/private/x", "/a", "/b"),
                "/a": html("A"),
                "/b": html("B"),
                "/private/x": html("secret"),
            }
        )
        result, _ = crawl(site.url("/"), tmp_path, concurrency=4)
        assert site.count("/private/x") == 0
        assert result.robots_denied == 1
        times = sorted(t for p, t in site.hits if p != "/robots.txt")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 3 and min(gaps) >= 0.29  # Crawl-delay kept requests apart


@pytest.mark.parametrize(
    ("status", "fetched"), [(503, False), (429, False), (404, True), (410, True)]
)
def test_robots_status_per_rfc_9309(tmp_path: Path, status: int, fetched: bool) -> None:
    with Site() as site:
        site.routes.update(
            {"/robots.txt": Reply(status, "x"), "/": html("home", "/a"), "/a": html("A")}
        )
        result, _ = crawl(site.url("/"), tmp_path, retries=0)
        assert (site.count("/") == 1) is fetched
    if not fetched:  # held back for this run, with a record saying why (and retried later)
        assert result.errors == {f"robots_http_{status}": 1} and result.pages == 1


def test_no_robots_ignores_robots_txt(tmp_path: Path) -> None:
    with Site() as site:
        site.routes.update(
            {"/robots.txt": Reply(body="User-agent: *\nDisallow: /\n"), "/": html("home")}
        )
        crawl(site.url("/"), tmp_path, robots=False)
        assert site.count("/robots.txt") == 0 and site.count("/") == 1


def test_per_host_limit_is_respected(tmp_path: Path) -> None:
    links = [f"/p{i}" for i in range(30)]
    with Site() as a, Site() as b:
        import threading

        for site in (a, b):
            site.routes["/"] = html("home", *links)
            for link in links:
                # Hold each request briefly so concurrent requests overlap on the server.
                site.routes[link] = lambda req: (threading.Event().wait(0.02), Reply(body="x"))[1]
        result, _ = crawl([a.url("/"), b.url("/")], tmp_path, concurrency=8, per_host=3)
        assert result.pages == 62
        assert a.max_in_flight <= 3 and b.max_in_flight <= 3
        assert a.max_in_flight == 3  # and the limit was actually reached


def test_depth_and_page_limits(tmp_path: Path) -> None:
    with Site() as site:
        for i in range(20):
            site.routes[f"/{i}"] = html(str(i), f"/{i + 1}")
        site.routes["/"] = html("root", "/0")
        result, records = crawl(site.url("/"), tmp_path, max_depth=3)
        assert {r["depth"] for r in records} == {0, 1, 2, 3}
        assert result.pages == 4
    with Site() as site:
        site.routes["/"] = html("root", *[f"/{i}" for i in range(50)])
        for i in range(50):
            site.routes[f"/{i}"] = html(str(i))
        result, records = crawl(site.url("/"), tmp_path, max_pages=10)
        assert len(records) == 10 and result.stopped_by == "max_pages"
        assert sum(n for p, n in site.paths().items() if p != "/robots.txt") == 10


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_compressed_and_oversized_bodies(tmp_path: Path, transport: str) -> None:
    page = html("squeezed", extra="x" * 1000).encode()
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    with Site() as site:
        site.routes.update(
            {
                "/": html("home", "/gz", "/br", "/deflate", "/big", "/bomb"),
                "/gz": Reply(body=gzip.compress(page), headers={"Content-Encoding": "gzip"}),
                "/br": Reply(body=brotli.compress(page), headers={"Content-Encoding": "br"}),
                "/deflate": Reply(
                    body=zlib.compress(page), headers={"Content-Encoding": "deflate"}
                ),
                "/big": Reply(body=b"y" * 300_000),
                "/bomb": Reply(body=bomb, headers={"Content-Encoding": "gzip"}),
            }
        )
        _, records = crawl(site.url("/"), tmp_path, transport=transport, max_bytes=200_000)
    recs = by_url(records)
    for path in ("/gz", "/br", "/deflate"):
        assert recs[site.url(path)]["title"] == "squeezed", path
        assert recs[site.url(path)]["bytes"] == len(page)
    assert recs[site.url("/big")]["error"] == "too_large"
    assert recs[site.url("/bomb")]["error"] == "too_large"


def test_encodings_and_non_html(tmp_path: Path) -> None:
    latin = "<html><head><meta charset='iso-8859-1'><title>Café</title></head></html>"
    with Site() as site:
        site.routes.update(
            {
                "/": html("home", "/latin", "/header", "/undeclared", "/broken", "/img", "/json"),
                "/latin": Reply(body=latin.encode("latin-1"), content_type="text/html"),
                "/header": Reply(
                    body="<title>Grüße</title>".encode("cp1252"),
                    content_type="text/html; charset=windows-1252",
                ),
                "/undeclared": Reply(
                    body="<html><title>Żółw żółty</title></html>".encode("iso-8859-2"),
                    content_type="text/html",
                ),
                "/broken": Reply(
                    body=b"<title>ok \xff\xfe bytes</title><a href='/x'>x</a>",
                    content_type="text/html; charset=utf-8",
                ),
                "/img": Reply(
                    body=b"\x89PNG\r\n\x1a\n" + b"<a href='/never'>", content_type="image/png"
                ),
                "/json": Reply(
                    body=b'{"a": "<a href=\\"/never2\\">"}', content_type="application/json"
                ),
                "/x": html("x"),
            }
        )
        _, records = crawl(site.url("/"), tmp_path)
        assert site.count("/never") == 0 and site.count("/never2") == 0
    recs = by_url(records)
    assert recs[site.url("/latin")]["title"] == "Café"
    assert recs[site.url("/header")]["title"] == "Grüße"
    assert recs[site.url("/undeclared")]["title"]  # detected, whatever it guessed
    assert recs[site.url("/broken")]["title"].startswith("ok")
    assert site.url("/x") in recs  # links on a page with bad bytes still followed
    assert recs[site.url("/img")]["title"] is None and recs[site.url("/img")]["error"] is None


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_timeouts_are_recorded(tmp_path: Path, transport: str) -> None:
    import threading

    release = threading.Event()
    with Site() as site:
        site.routes.update(
            {
                "/": html("home", "/slow"),
                "/slow": lambda req: (release.wait(5), Reply(body="late"))[1],
            }
        )
        try:
            result, records = crawl(
                site.url("/"),
                tmp_path,
                transport=transport,
                timeout=0.2,
                retries=1,
                retry_backoff=0.01,
            )
        finally:
            release.set()
    assert by_url(records)[site.url("/slow")]["error"] == "timeout"
    assert result.errors["timeout"] == 1 and result.retries == 1


def test_scope_include_exclude_and_allowed_domains(tmp_path: Path) -> None:
    with Site() as site, Site(host="127.0.0.2") as other:
        other.routes["/"] = html("other")
        site.routes.update(
            {
                "/": html("home", "/keep/1", "/keep/2.pdf", "/drop/1", other.url("/")),
                "/keep/1": html("k1"),
                "/keep/2.pdf": html("pdf"),
                "/drop/1": html("d1"),
            }
        )
        crawl(site.url("/"), tmp_path, include=[r"/keep/|/$"], exclude=[r"\.pdf$"])
        assert site.count("/keep/1") == 1 and site.count("/drop/1") == 0
        assert site.count("/keep/2.pdf") == 0 and other.count("/") == 0
        crawl(site.url("/"), tmp_path, allow_domains=["127.0.0.1", "127.0.0.2"])
        assert other.count("/") == 1


def test_extract_fields(tmp_path: Path) -> None:
    page = (
        "<html><head><title>T</title></head><body><h1>Head <b>line</b></h1>"
        "<a class='tag' href='/t1'>one</a><a class='tag' href='/t2'>two</a></body></html>"
    )
    with Site() as site:
        site.routes.update({"/": page, "/t1": html("t1"), "/t2": html("t2")})
        _, records = crawl(
            site.url("/"),
            tmp_path,
            extract={
                "h1": "h1::text",
                "tags[]": "a.tag::text",
                "first_href": "a.tag::attr(href)",
                "xp": "xpath://h1/b/text()",
            },
        )
    root = by_url(records)[site.url("/")]
    assert root["tags"] == ["one", "two"] and root["first_href"] == "/t1" and root["xp"] == "line"
    assert root["h1"] == "Head "


def test_python_api_callback_items_and_urls(tmp_path: Path) -> None:
    seen: list[Page] = []

    def on_page(page: Page) -> Any:
        seen.append(page)
        assert page.status == 200 and page.css("title::text").get() == page.title
        yield {"url": page.url, "n_links": len(page.links)}
        if page.url.endswith("/"):
            yield "/extra"  # relative URL from the callback, resolved against the page

    with Site() as site:
        site.routes.update({"/": html("home", "/a"), "/a": html("A"), "/extra": html("E")})
        out = tmp_path / "items.jsonl"
        result = Crawler(site.url("/"), on_page=on_page, progress=False, output=str(out)).run()
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(i["url"].rsplit("/", 1)[1] for i in items) == ["", "a", "extra"]
    assert result.pages == 3 and len(seen) == 3


def test_invalid_start_urls() -> None:
    for bad in ["", "example.com", "ftp://example.com/", "http://", "http://exa mple.com:99999/"]:
        with pytest.raises(shoal.InvalidURL):
            Crawler(bad)
    with pytest.raises(shoal.UsageError):
        Crawler("http://example.com/", concurrency=0)
    with pytest.raises(TypeError, match="no_such_option"):  # an explicit signature now
        Crawler("http://example.com/", no_such_option=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_unreachable_start_url_is_recorded(tmp_path: Path, transport: str) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    result, records = crawl(
        f"http://127.0.0.1:{port}/", tmp_path, transport=transport, robots=False, retries=0
    )
    assert records[0]["error"] == "connection" and result.ok == 0


def test_sitemaps_add_start_points(tmp_path: Path) -> None:
    with Site() as site:
        sitemap_index = (
            "<?xml version='1.0'?><sitemapindex><sitemap><loc>"
            f"{site.url('/sm.xml.gz')}</loc></sitemap></sitemapindex>"
        )
        urlset = (
            "<?xml version='1.0'?><urlset>"
            f"<url><loc>{site.url('/orphan?b=1&amp;a=2')}</loc></url>"
            f"<url><loc>http://elsewhere.invalid/x</loc></url></urlset>"
        )
        site.routes.update(
            {
                "/robots.txt": Reply(
                    body=f"User-agent: *\nSitemap: {site.url('/index.xml')}\n",
                    content_type="text/plain",
                ),
                "/": html("home"),
                "/index.xml": Reply(body=sitemap_index, content_type="application/xml"),
                "/sm.xml.gz": Reply(
                    body=gzip.compress(urlset.encode()), content_type="application/octet-stream"
                ),
                "/orphan?a=2&b=1": html("found via sitemap"),
            }
        )
        _, records = crawl(site.url("/"), tmp_path, sitemaps=True)
        assert site.count("/orphan?a=2&b=1") == 1
    assert by_url(records)[site.url("/orphan?a=2&b=1")]["title"] == "found via sitemap"


@pytest.mark.parametrize("named_in_robots", [True, False])
def test_sitemaps_only_fetches_what_the_sitemaps_list(
    tmp_path: Path, named_in_robots: bool
) -> None:
    """Only the start URL and the sitemap's pages are fetched: their links are listed
    nowhere else and are not followed; robots.txt still applies to listed pages."""
    with Site() as site:
        urlset = (
            "<?xml version='1.0'?><urlset>"
            + "".join(f"<url><loc>{site.url(p)}</loc></url>" for p in ("/listed", "/private"))
            + "</urlset>"
        )
        sitemap = "/maps/pages.xml" if named_in_robots else "/sitemap.xml"
        robots = "User-agent: *\nDisallow: /private\n"
        if named_in_robots:
            robots += f"Sitemap: {site.url(sitemap)}\n"
        site.routes.update(
            {
                "/robots.txt": Reply(body=robots, content_type="text/plain"),
                "/": html("home", "/listed", "/unlisted"),
                sitemap: Reply(body=urlset, content_type="application/xml"),
                "/listed": html("listed", "/deeper", "/unlisted"),
                "/unlisted": html("unlisted", "/deeper"),
                "/deeper": html("deeper"),
                "/private": html("private"),
            }
        )
        result, records = crawl(site.url("/"), tmp_path, sitemaps_only=True)
        fetched = set(site.paths())
    assert fetched == {"/robots.txt", sitemap, "/", "/listed"}, fetched
    assert sorted(r["url"] for r in records) == [site.url("/"), site.url("/listed")]
    assert result.robots_denied == 1


def test_sitemaps_only_needs_robots() -> None:
    with pytest.raises(shoal.UsageError, match=r"sitemaps_only.*robots"):
        Crawler("http://127.0.0.1:9/", sitemaps_only=True, robots=False)


def test_auto_throttle_spaces_requests_to_a_slow_host(tmp_path: Path) -> None:
    import threading

    def slow(req: Request) -> Reply:
        threading.Event().wait(0.1)
        return Reply(body=html("slow"))

    links = [f"/s{i}" for i in range(12)]
    with Site() as site:
        site.routes["/"] = html("home", *links)
        site.routes.update(dict.fromkeys(links, slow))
        crawl(
            site.url("/"),
            tmp_path,
            auto_throttle=True,
            throttle_target=1.0,
            throttle_start=0.2,
            per_host=8,
        )
        # Aiming at one request in flight per host, the throttle holds the host near 1
        # even though 8 were allowed.
        assert site.max_in_flight <= 3


def test_auto_throttle_never_goes_under_crawl_delay(tmp_path: Path) -> None:
    # A fast host: the throttle halves its delay with every answer (1.0, 0.5, 0.25, ...),
    # but robots.txt asked for 0.4 s between requests, and Crawl-delay wins if larger.
    with Site() as site:
        site.routes.update(
            {
                "/robots.txt": Reply(body="User-agent: *\nCrawl-delay: 0.4\n"),
                "/": html("home", "/a"),
                "/a": html("a", "/b"),
                "/b": html("b", "/c"),
                "/c": html("c"),
            }
        )
        crawl(site.url("/"), tmp_path, auto_throttle=True, throttle_start=1.0)
        times = sorted(t for p, t in site.requests() if p != "/robots.txt")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4 and min(gaps) >= 0.39, gaps


def _fanout(req: Request) -> Reply:
    n = int(req.path.lstrip("/") or 0)
    return Reply(body=html(str(n), *(f"/{n * 50 + i}" for i in range(1, 51))))


def _exactly_max_pages(tmp_path: Path, runs: int) -> None:
    """Every thread that ends a page leases its successor while the dispatcher leases for
    free slots: both take shares of --max-pages, and the crawl must fetch exactly that
    many, neither more nor fewer (a lease whose share ran out once dropped hosts, and a
    crawl ended early with budget left)."""
    for k in range(runs):
        with Site({"/robots.txt": Reply(404, "none")}) as site:
            site.fallback = _fanout
            result = Crawler(
                site.url("/"),
                output=str(tmp_path / f"o{k}.jsonl"),
                max_pages=120,
                concurrency=16,
                per_host=16,
                progress=False,
            ).run()
        assert result.pages == 120 and result.stopped_by == "max_pages", (k, result.pages)
        assert len((tmp_path / f"o{k}.jsonl").read_text().splitlines()) == 120


def test_max_pages_is_exact_with_successor_leases(tmp_path: Path) -> None:
    _exactly_max_pages(tmp_path, 1)


@pytest.mark.stress
def test_max_pages_is_exact_many_times(tmp_path: Path) -> None:
    _exactly_max_pages(tmp_path, 20)


def _robots_meta(content: str, name: str = "robots") -> str:
    return f'<meta name="{name}" content="{content}">'


def test_page_level_nofollow_is_obeyed_noindex_recorded_and_the_option_ignores_them(
    tmp_path: Path,
) -> None:
    # Each page links to one leaf of its own: a leaf fetched means its page's links were
    # followed.
    pages = {
        "/meta": html("m", "/leaf-meta", extra=_robots_meta("noarchive, NoFollow")),
        "/none": html("n", "/leaf-none", extra=_robots_meta("NONE", name="ROBOTS")),
        "/ours": html("s", "/leaf-ours", extra=_robots_meta("nofollow", name="shoal")),
        "/theirs": html("t", "/leaf-theirs", extra=_robots_meta("nofollow", name="otherbot")),
        "/header": Reply(body=html("h", "/leaf-header"), headers={"X-Robots-Tag": "nofollow"}),
        "/other": Reply(
            body=html("o", "/leaf-other"), headers={"X-Robots-Tag": "otherbot: nofollow"}
        ),
        "/noindex": html("i", "/leaf-noindex", extra=_robots_meta("noindex")),
        "/rel": html("r", extra='<a rel="nofollow" href="/leaf-rel">x</a>'),
    }
    obeyed = {"/leaf-meta", "/leaf-none", "/leaf-ours", "/leaf-header"}
    with Site() as site:
        site.routes.update({"/": html("home", *pages), **pages})
        site.fallback = Reply(body=html("leaf"))
        result, records = crawl(site.url("/"), tmp_path)
        leaves = {p for p in site.paths() if p.startswith("/leaf")}
        assert leaves == {f"/leaf-{p[1:]}" for p in pages} - obeyed
        got = by_url(records)
        assert got[site.url("/noindex")]["robots"] == ["noindex"]
        assert got[site.url("/meta")]["robots"] == ["nofollow"]
        assert got[site.url("/none")]["robots"] == ["nofollow", "noindex"]
        assert got[site.url("/header")]["robots"] == ["nofollow"]
        assert got[site.url("/other")]["robots"] is None
        assert got[site.url("/")]["robots"] is None and got[site.url("/")]["error"] is None
        assert result.failed == 0
        # --ignore-nofollow: every page's links are followed; the directives still recorded.
        site.hits.clear()
        _, records = crawl(site.url("/"), tmp_path, obey_nofollow=False)
        leaves = {p for p in site.paths() if p.startswith("/leaf")}
        assert leaves == {f"/leaf-{p[1:]}" for p in pages}
        assert by_url(records)[site.url("/meta")]["robots"] == ["nofollow"]
        # A callback's URLs are the page's links too: not followed from a nofollow page.
        site.hits.clear()
        crawl(site.url("/"), tmp_path, on_page=lambda page: page.links, follow_links=False)
        leaves = {p for p in site.paths() if p.startswith("/leaf")}
        assert leaves == {f"/leaf-{p[1:]}" for p in pages} - obeyed


def test_x_robots_tag_fields_each_keep_their_user_agent_prefix(tmp_path: Path) -> None:
    from rawserver import raw_servers, respond_always

    def answer(request: bytes) -> bytes:
        path = request.split(b" ", 2)[1]
        if path == b"/robots.txt":
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        body = b'<html><title>x</title><a href="/leaf">l</a></html>'
        if path == b"/":
            # Two fields: "nofollow" is for every crawler, "noindex" only for otherbot
            # (joined by ", " the second field would read as otherbot's too).
            head = b"X-Robots-Tag: otherbot: noindex\r\nX-Robots-Tag: nofollow\r\n"
        else:
            head = b""
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            + head
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    with raw_servers() as start:
        server = start(respond_always(answer))
        for transport in ("native", "urllib3"):
            result, records = crawl(server.url + "/", tmp_path, transport=transport)
            assert [r["url"] for r in records] == [server.url + "/"], transport
            assert records[0]["robots"] == ["nofollow"], transport
            assert result.ok == 1 and result.discovered == 1
