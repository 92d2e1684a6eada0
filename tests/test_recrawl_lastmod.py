"""Sitemap ``<lastmod>`` in a recrawl (#19): a page whose lastmod is newer than its last
fetch is revisited first, and in the run even when --revisit-after has not made it due."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from shoal import Crawler
from sites import html
from test_recrawl import Doc, VersionedSite, crawl, records, run_of

OLD = "2026-01-01"


def w3c(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")


def sitemap(site: VersionedSite, lastmods: dict[str, str]) -> None:
    entries = "".join(
        f"<url><loc>{site.url(path)}</loc><lastmod>{lastmod}</lastmod></url>"
        for path, lastmod in lastmods.items()
    )
    body = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/">{entries}</urlset>'
    site.docs["/sitemap.xml"] = Doc(body)


def make_site() -> VersionedSite:
    docs = {"/": Doc(html("home", "/a", "/b", "/c", "/d"), etag='"h"')}
    for p in ("a", "b", "c", "d"):
        docs[f"/{p}"] = Doc(html(p), etag=f'"{p}1"')
    return VersionedSite(docs)


def started(site: VersionedSite) -> None:
    site.robots = f"User-agent: *\nAllow: /\nSitemap: {site.url('/sitemap.xml')}\n"
    sitemap(site, dict.fromkeys(("/", "/a", "/b", "/c", "/d"), OLD))


def test_a_page_whose_lastmod_is_newer_is_revisited_first(tmp_path: Path) -> None:
    with make_site() as site:
        started(site)
        out = tmp_path / "out.jsonl"
        one = {"sitemaps": True, "concurrency": 1, "per_host": 1}
        crawl(site, out, **one)
        before = len(site.site.requests())
        site.docs["/c"] = Doc(html("c, edited"), etag='"c2"')
        site.docs["/d"] = Doc(html("d, edited"), etag='"d2"')
        # /c says it changed; /d's lastmod is in the future (no modification time: ignored).
        sitemap(
            site,
            {"/": OLD, "/a": OLD, "/b": OLD, "/c": w3c(time.time()), "/d": "2099-01-01"},
        )
        crawl(site, out, recrawl=True, **one)
        order = [path for path, _ in site.site.requests()[before:]]
    assert order[:3] == ["/robots.txt", "/sitemap.xml", "/c"], order
    assert sorted(order[3:]) == ["/", "/a", "/b", "/d"]
    second = run_of(out, 2)
    assert second["/c"]["change"] == "changed" and second["/d"]["change"] == "changed"
    assert second["/a"]["change"] == "unchanged"


def age(out: Path, site: VersionedSite, paths: list[str], seconds: float) -> None:
    import sqlite3

    db = sqlite3.connect(f"{out}.state.sqlite")
    db.executemany(
        "UPDATE urls SET fetched_at = fetched_at - ? WHERE url = ?",
        [(seconds, site.url(p)) for p in paths],
    )
    db.commit()
    db.close()


def test_a_changed_lastmod_is_due_under_revisit_after(tmp_path: Path) -> None:
    with make_site() as site:
        started(site)
        out = tmp_path / "out.jsonl"
        one = {"sitemaps": True, "concurrency": 1, "per_host": 1, "revisit_after": 3600}
        crawl(site, out, sitemaps=True, concurrency=1)
        # Nothing is due, but the sitemap says /a changed after its last fetch.
        site.docs["/a"] = Doc(html("a, edited"), etag='"a2"')
        sitemap(site, {"/": OLD, "/a": w3c(time.time()), "/b": OLD, "/c": OLD, "/d": OLD})
        crawl(site, out, recrawl=True, **one)
        assert {p: r["change"] for p, r in run_of(out, 2).items()} == {"/a": "changed"}

        # Nothing due, nothing changed since: no run, no record, and when the next is due.
        told: list[str] = []
        size = out.stat().st_size
        crawler = Crawler(site.url("/"), output=str(out), recrawl=True, **one)  # type: ignore[arg-type]
        crawler.announce = told.append
        result = crawler.run()
        assert result.already_complete
        assert any("nothing to revisit" in m and "the next falls due" in m for m in told), told
        assert out.stat().st_size == size

        # /b is due, /c changed (not due): both in run 3 (not 4: the empty run took no
        # number), /c first, as its lastmod says it changed.
        age(out, site, ["/b"], 7200)
        site.docs["/c"] = Doc(html("c, edited"), etag='"c2"')
        sitemap(
            site,
            {"/": OLD, "/a": OLD, "/b": OLD, "/c": w3c(time.time()), "/d": OLD},
        )
        before = len(site.site.requests())
        crawl(site, out, recrawl=True, **one)
        order = [path for path, _ in site.site.requests()[before:]]
    assert order == ["/robots.txt", "/sitemap.xml", "/c", "/b"], order
    assert {p: r["change"] for p, r in run_of(out, 3).items()} == {
        "/b": "unchanged",
        "/c": "changed",
    }
    assert max(int(str(r.get("run", 1))) for r in records(out)) == 3


def test_lastmods_are_read_strictly_and_in_bounded_time() -> None:
    from shoal.crawler._sitemaps import MAX_SITEMAP_URLS, parse_lastmod, parse_sitemap

    body = (
        b"<urlset><url><loc>http://h/1</loc><lastmod>2026-12-05T10:00:00Z</lastmod></url>"
        b"<url><lastmod>2026-12-05</lastmod><loc>http://h/2</loc></url>"  # before its loc
        b"<url><loc>http://h/3</loc><lastmod>2026-12</lastmod><lastmod>2030</lastmod></url>"
        b"<url><loc>http://h/4</loc><lastmod>yesterday</lastmod></url>"
        b"<url><loc>http://h/5</loc><lastmod>" + b"2" * 41 + b"</lastmod></url></urlset>"
    )
    pages, sitemaps, lastmods = parse_sitemap(body, 1 << 20)
    assert pages == [f"http://h/{i}" for i in range(1, 6)] and sitemaps == []
    assert lastmods == [parse_lastmod("2026-12-05T10:00:00+00:00"), None, 1796083200.0, None, None]
    assert parse_lastmod("2026") == parse_lastmod("2026-01-01T00:00:00Z")
    assert parse_lastmod("2026-13-01") is None and parse_lastmod("") is None
    # An index lists sitemaps: no lastmods for pages.
    assert parse_sitemap(b"<sitemapindex><sitemap><loc>http://h/s</loc></sitemap>", 99)[2] == []
    # Hostile bodies: a million unclosed tags, or more entries than a sitemap may hold.
    assert parse_sitemap(b"<url<lastmod><loc>" * 1_000_000, 1 << 30) == ([], [], [])
    many = b"<url><loc>http://h/x</loc><lastmod>2026</lastmod></url>" * (MAX_SITEMAP_URLS + 5)
    pages, _, lastmods = parse_sitemap(many, 1 << 30)
    assert len(pages) == len(lastmods) == MAX_SITEMAP_URLS
