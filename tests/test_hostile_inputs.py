"""Inputs that once broke a crawl: absurd Crawl-delay, odd headers and charsets, budgets
with retries, redirects that fail, unserializable callback records."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from shoal import Pool, Writer
from shoal.crawler import Crawler, Page
from shoal.crawler._fetch import Fetched, _retry_after
from shoal.crawler._robots import MAX_CRAWL_DELAY, RobotsRules
from sites import Reply, Request, Site, html


def records_of(out: Path) -> dict[str, dict[str, Any]]:
    return {r["url"].rsplit("/", 1)[1]: r for r in map(json.loads, out.read_text().splitlines())}


def test_absurd_crawl_delay_is_capped() -> None:
    fetched = Fetched(
        url="http://h/robots.txt",
        final_url="http://h/robots.txt",
        status=200,
        body=b"User-agent: *\nCrawl-delay: 10000000000\n",
    )
    assert RobotsRules.from_fetch(fetched).crawl_delay("shoal") == MAX_CRAWL_DELAY


def test_a_task_delayed_past_timeout_max_does_not_kill_workers() -> None:
    ran = threading.Event()
    with Writer(io.StringIO()) as out:
        pool: Pool[int] = Pool(lambda i, c: ran.set(), workers=2, output=out)
        pool.put(1, delay=1e10)  # idle workers now sleep towards a time past TIMEOUT_MAX
        pool.put(2)
        assert ran.wait(10)  # and yet they are alive to run this one
        assert pool.cancel() == [1]
        pool.join(timeout=10)
        pool.close(timeout=10)
        assert pool.stats().done == 1


def test_retry_after_that_is_not_a_number() -> None:
    assert _retry_after("\u00b2") is None
    assert _retry_after("12") == 12.0
    assert _retry_after("soon") is None


def test_unknown_or_non_text_charsets_still_give_a_record(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with Site(
        {
            "/": html("home", "/rot", "/b64"),
            "/rot": Reply(body=html("rot", "/x"), content_type="text/html; charset=rot13"),
            "/b64": Reply(body=html("b64"), content_type="text/html; charset=base64"),
            "/x": html("x"),
        }
    ) as site:
        Crawler(site.url("/"), output=str(out), progress=False).run()
    recs = records_of(out)
    assert recs["rot"]["title"] == "rot" and recs["b64"]["title"] == "b64"
    assert "x" in recs  # links on the odd page were followed


def test_page_budget_still_lets_retries_finish(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    calls = {"n": 0}

    def flaky(req: Request) -> Reply:
        calls["n"] += 1
        return Reply(503, "busy") if calls["n"] == 1 else Reply(body=html("ok"))

    links = [f"/p{i}" for i in range(10)]
    with Site(
        {"/": html("home", "/flaky", *links), "/flaky": flaky, **{p: html(p) for p in links}}
    ) as site:
        result = Crawler(
            site.url("/"),
            output=str(out),
            max_pages=3,
            concurrency=1,
            retry_backoff=0.01,
            progress=False,
        ).run()
    recs = records_of(out)
    assert len(recs) == 3 and recs["flaky"]["status"] == 200
    assert result.stopped_by == "max_pages"


def test_a_redirect_target_that_fails_once_is_fetched_on_retry(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    calls = {"n": 0}

    def target(req: Request) -> Reply:
        calls["n"] += 1
        return Reply(503, "busy") if calls["n"] == 1 else Reply(body=html("target"))

    with Site(
        {
            "/": html("home", "/a"),
            "/a": Reply(302, headers={"Location": "/target"}),
            "/target": target,
        }
    ) as site:
        Crawler(site.url("/"), output=str(out), retry_backoff=0.01, progress=False).run()
    a = records_of(out)["a"]
    assert a["final_url"].endswith("/target") and a["status"] == 200 and a["title"] == "target"


def test_tiny_memory_limit_still_finishes(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    links = [f"/p{i}" for i in range(20)]
    with Site({"/": html("home", *links), **{p: html(p) for p in links}}) as site:
        done = threading.Event()
        result = None

        def run() -> None:
            nonlocal result
            result = Crawler(site.url("/"), output=str(out), memory_limit=3, progress=False).run()
            done.set()

        t = threading.Thread(target=run)
        t.start()
        assert done.wait(60), "the crawl did not finish"
        t.join()
    assert result is not None and result.pages == 21


def test_callback_records_in_sqlite_and_bad_records(tmp_path: Path) -> None:
    out = tmp_path / "o.sqlite"

    def on_page(page: Page) -> Any:
        yield {"url": page.url, "kind": "first"}
        yield {"kind": "no url"}
        yield {(1, 2): "tuple keys cannot be JSON"}  # dropped, the crawl goes on

    with Site({"/": html("home", "/a"), "/a": html("A")}) as site:
        result = Crawler(site.url("/"), on_page=on_page, output=str(out), progress=False).run()
    db = sqlite3.connect(out)
    rows = db.execute(
        "SELECT source_url, n, url, data, error FROM records ORDER BY source_url, n"
    ).fetchall()
    db.close()
    # Two good records from each page, none lost to a shared key, and each page's own
    # record saying the callback failed.
    assert len(rows) == 6
    assert [r[4] for r in rows] == [None, None, "callback"] * 2
    assert result.errors["callback"] == 2 and result.pages == 2


def test_overlong_links_and_sitemaps_are_never_requested(tmp_path: Path) -> None:
    long_tail = "a" * 20_000
    with Site() as site:
        site.routes.update(
            {
                "/robots.txt": Reply(
                    body=f"User-agent: *\nSitemap: {site.url('/sm-' + long_tail)}\n",
                    content_type="text/plain",
                ),
                "/": html("home", "/ok", "/" + long_tail),
                "/ok": html("ok"),
            }
        )
        out = tmp_path / "o.jsonl"
        Crawler([site.url("/")], output=str(out), sitemaps=True, progress=False).run()
        requested = list(site.paths())
    assert max(len(path) for path in requested) < 8192
    assert {"/", "/ok", "/sitemap.xml"} <= set(requested)  # the long sitemap: the default
