"""One scope gate for every request: sitemaps and their redirects, redirect schemes, IP
addresses in --allow-domain, and URLs with credentials. Real servers on 127.0.0.x."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from shoal.crawler import Crawler, Scope, canonicalize
from sites import Reply, Site, html

CAREFUL: dict[str, Any] = {"timeout": 5, "retries": 1, "max_pages": 2000, "progress": False}


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def state_urls(out: Path) -> list[str]:
    db = sqlite3.connect(f"{out}.state.sqlite")
    try:
        return [url for (url,) in db.execute("SELECT url FROM urls")]
    finally:
        db.close()


def test_a_sitemap_that_redirects_to_another_host_is_not_fetched_there(tmp_path: Path) -> None:
    # 127.0.0.2 is another host (loopback): out of scope for a crawl of 127.0.0.1.
    with Site(host="127.0.0.2") as other, Site() as site:
        other.fallback = Reply(body="<urlset><url><loc>http://127.0.0.2/x</loc></url></urlset>")
        site.routes.update(
            {
                "/robots.txt": Reply(
                    body=f"User-agent: *\nSitemap: {site.url('/sm.xml')}\n",
                    content_type="text/plain",
                ),
                "/sm.xml": Reply(302, headers={"Location": other.url("/sm.xml")}),
                "/": html("home"),
            }
        )
        out = tmp_path / "o.jsonl"
        result = Crawler(site.url("/"), output=str(out), sitemaps=True, **CAREFUL).run()
        assert other.paths() == {}, "a request left the crawl's scope"
        assert site.count("/sm.xml") == 1
    assert result.out_of_scope_redirects == 1


def test_a_sitemap_redirect_obeys_robots_txt(tmp_path: Path) -> None:
    with Site() as site:
        site.routes.update(
            {
                "/robots.txt": Reply(
                    body=f"User-agent: *\nDisallow: /private\nSitemap: {site.url('/sm.xml')}\n",
                    content_type="text/plain",
                ),
                "/sm.xml": Reply(302, headers={"Location": "/private/sm.xml"}),
                "/private/sm.xml": Reply(body="<urlset></urlset>"),
                "/": html("home"),
            }
        )
        Crawler(site.url("/"), output=str(tmp_path / "o.jsonl"), sitemaps=True, **CAREFUL).run()
        assert site.count("/sm.xml") == 1 and site.count("/private/sm.xml") == 0


def test_a_sitemap_redirect_to_another_host_is_queued_there(tmp_path: Path) -> None:
    # Another host's robots.txt and politeness apply: its sitemap is its own lease.
    with Site(host="127.0.0.2") as other, Site() as site:
        other.routes.update(
            {
                "/robots.txt": Reply(
                    body="User-agent: *\nDisallow: /\n", content_type="text/plain"
                ),
                "/sm.xml": Reply(body=f"<urlset><url><loc>{other.url('/x')}</loc></url></urlset>"),
            }
        )
        site.routes.update(
            {
                "/robots.txt": Reply(
                    body=f"User-agent: *\nSitemap: {site.url('/sm.xml')}\n",
                    content_type="text/plain",
                ),
                "/sm.xml": Reply(302, headers={"Location": other.url("/sm.xml")}),
                "/": html("home"),
            }
        )
        out = tmp_path / "o.jsonl"
        Crawler(
            site.url("/"),
            output=str(out),
            sitemaps=True,
            allow_domains=["127.0.0.1", "127.0.0.2"],
            **CAREFUL,
        ).run()
        assert other.count("/robots.txt") == 1
        assert other.hits[0][0] == "/robots.txt", "another host's sitemap before its robots.txt"
        assert other.count("/x") == 0


def test_robots_txt_may_redirect_to_another_host(tmp_path: Path) -> None:
    # RFC 9309 2.3.1.2: robots.txt redirects are followed wherever they go (5 hops).
    with Site(host="127.0.0.2") as other, Site() as site:
        other.routes["/robots.txt"] = Reply(
            body="User-agent: *\nDisallow: /private\n", content_type="text/plain"
        )
        site.routes.update(
            {
                "/robots.txt": Reply(301, headers={"Location": other.url("/robots.txt")}),
                "/": html("home", "/private", "/public"),
                "/private": html("private"),
                "/public": html("public"),
            }
        )
        Crawler(site.url("/"), output=str(tmp_path / "o.jsonl"), **CAREFUL).run()
        assert other.count("/robots.txt") == 1
        assert site.count("/private") == 0 and site.count("/public") == 1


def test_robots_txt_redirects_stop_after_five_hops(tmp_path: Path) -> None:
    with Site() as site:
        for i in range(10):
            site.routes[f"/r{i}"] = Reply(302, headers={"Location": f"/r{i + 1}"})
        site.routes.update(
            {"/robots.txt": Reply(302, headers={"Location": "/r0"}), "/": html("home")}
        )
        Crawler(site.url("/"), output=str(tmp_path / "o.jsonl"), **CAREFUL).run()
        hops = [p for p in site.paths() if p[2:].isdigit()]
    assert sorted(hops) == ["/r0", "/r1", "/r2", "/r3", "/r4"]


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://{h}/x", "gopher://{h}/x", "ws://{h}/x", "wss://{h}/x"]
)
def test_redirects_to_other_schemes_are_recorded_and_never_queued(
    tmp_path: Path, location: str
) -> None:
    with Site() as site:
        host = site.origin.split("//")[1]
        site.routes.update(
            {
                "/": html("home", "/jump"),
                "/jump": Reply(302, headers={"Location": location.format(h=host)}),
            }
        )
        out = tmp_path / "o.jsonl"
        Crawler(site.url("/"), output=str(out), **CAREFUL).run()
    jump = next(r for r in records(out) if r["url"].endswith("/jump"))
    assert jump["error"] == "bad_redirect" and "not crawled" in jump["error_detail"]
    assert len(records(out)) == 2
    urls = state_urls(out)
    assert urls and all(u.startswith(("http://", "https://")) for u in urls), urls


def test_allow_domain_matches_ip_addresses_exactly() -> None:
    scope = Scope.for_start_urls(["http://127.0.0.1/"], allow_domains=["1.1", "example.com"])
    assert not scope.allows("http://127.0.1.1/")
    assert not scope.allows("http://10.0.1.1:8080/")
    assert not scope.allows("http://127.1.1/")  # resolvers read "127.1.1" as 127.1.0.1
    assert not scope.allows("http://0x7f.1.1/")
    assert scope.allows("http://www.example.com/") and scope.allows("http://example.com/")
    exact = Scope.for_start_urls(["http://127.0.0.1/"], allow_domains=["127.0.0.1", "::1"])
    assert exact.allows("http://127.0.0.1:8080/a") and exact.allows("http://[::1]:80/")
    assert not exact.allows("ftp://127.0.0.1/")


def test_allow_domain_suffix_never_admits_another_ip_in_a_crawl(tmp_path: Path) -> None:
    with Site(host="127.0.1.1") as other, Site() as site:
        other.fallback = Reply(body=html("other"))
        site.routes["/"] = html("home", other.url("/"), "/a")
        site.routes["/a"] = html("a")
        out = tmp_path / "o.jsonl"
        Crawler(site.url("/"), output=str(out), allow_domains=["127.0.0.1", "1.1"], **CAREFUL).run()
        assert other.paths() == {}
    assert len(records(out)) == 2


def test_userinfo_is_dropped_so_one_host_gets_one_slot(tmp_path: Path) -> None:
    assert canonicalize("http://u1:pw@Example.com/a") == "http://example.com/a"
    with Site() as site:
        site.routes["/"] = html("home", *(f"http://u{i}@{site.origin[7:]}/page" for i in range(8)))
        site.routes["/page"] = html("page")
        # Links only: a start URL with userinfo is refused (test_header_secrets.py).
        out = tmp_path / "o.jsonl"
        Crawler(site.url("/"), output=str(out), per_host=1, **CAREFUL).run()
        assert site.count("/robots.txt") == 1
        assert site.count("/") == 1 and site.count("/page") == 1
        assert site.max_in_flight == 1
    assert all("@" not in r["url"] for r in records(out))
    assert all("@" not in u for u in state_urls(out))


def exploding_index(fanout: int) -> Any:
    """A sitemap index whose every sitemap is an index of ``fanout`` more."""

    def route(req: Any) -> Reply:
        n = int(req.path.rsplit("/", 1)[1].removesuffix(".xml"))
        locs = "".join(
            f"<sitemap><loc>{ORIGIN[0]}/sm/{n * fanout + i}.xml</loc></sitemap>"
            for i in range(1, fanout + 1)
        )
        return Reply(body=f"<sitemapindex>{locs}</sitemapindex>", content_type="text/xml")

    return route


ORIGIN = [""]


def sitemap_site(site: Site, fanout: int) -> None:
    ORIGIN[0] = site.origin
    site.routes["/robots.txt"] = Reply(
        body=f"User-agent: *\nSitemap: {site.url('/sm/0.xml')}\n", content_type="text/plain"
    )
    site.routes["/"] = html("home")
    index = exploding_index(fanout)
    site.fallback = lambda req: index(req) if req.path.startswith("/sm/") else Reply(404)


def sitemap_requests(site: Site) -> int:
    return sum(n for p, n in site.paths().items() if p.startswith("/sm/"))


def test_an_exploding_sitemap_index_spends_the_page_budget(tmp_path: Path) -> None:
    with Site() as site:
        sitemap_site(site, fanout=50)
        opts = {**CAREFUL, "max_pages": 30}
        # max_time only bounds the test on code without the budget (it made thousands).
        result = Crawler(
            site.url("/"), output=str(tmp_path / "o.jsonl"), sitemaps=True, max_time=20, **opts
        ).run()
        fetched = sitemap_requests(site)
    assert result.stopped_by == "max_pages"
    assert fetched + 1 <= 30  # the start page and the sitemaps share the budget


def test_sitemap_nesting_and_count_are_capped(tmp_path: Path) -> None:
    with Site() as site:
        sitemap_site(site, fanout=3)  # 1 + 3 + 9 + 27 + 81 ... sitemaps, nested ever deeper
        result = Crawler(
            site.url("/"), output=str(tmp_path / "o.jsonl"), sitemaps=True, max_time=20, **CAREFUL
        ).run()
        paths = {p for p in site.paths() if p.startswith("/sm/")}
    assert result.stopped_by is None  # ended by itself, not by max_time
    assert len(paths) == 1 + 3 + 9 + 27  # three levels below the one robots.txt names
    with Site() as site:
        sitemap_site(site, fanout=40)
        Crawler(
            site.url("/"),
            output=str(tmp_path / "p.jsonl"),
            sitemaps=True,
            max_sitemaps=100,
            max_time=20,
            **CAREFUL,
        ).run()
        assert sitemap_requests(site) == 100


def test_sitemap_pages_are_taken_up_to_the_page_budget(tmp_path: Path) -> None:
    with Site() as site:
        locs = "".join(f"<url><loc>{site.url(f'/p{i}')}</loc></url>" for i in range(5000))
        site.routes.update(
            {
                "/robots.txt": Reply(
                    body=f"User-agent: *\nSitemap: {site.url('/sm.xml')}\n",
                    content_type="text/plain",
                ),
                "/sm.xml": Reply(body=f"<urlset>{locs}</urlset>", content_type="text/xml"),
                "/": html("home"),
            }
        )
        site.fallback = Reply(body=html("leaf"))
        opts = {**CAREFUL, "max_pages": 40}
        out = tmp_path / "o.jsonl"
        result = Crawler(site.url("/"), output=str(out), sitemaps=True, **opts).run()
        assert result.discovered <= 1 + 40  # not 5001: the rest waits for a resume
        # --max-pages is the crawl's total: a rerun with a larger one takes the next ones.
        more = {**opts, "max_pages": 80}
        again = Crawler(site.url("/"), output=str(out), sitemaps=True, **more).run()
        assert again.pages == 40 and again.discovered >= 40
