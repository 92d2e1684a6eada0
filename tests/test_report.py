"""``shoal report`` and ``shoal crawl --report``: real crawls of a local site, real files.

The report's numbers are checked against the records the crawl wrote (counted here,
independently of the report's code), in every output format it reads.
"""

from __future__ import annotations

import csv
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shoal import UsageError
from shoal.report import build_report
from sites import Reply, Site, html


def broken_site() -> Site:
    """One broken link of each kind, a redirect, and a URL robots.txt forbids."""
    return Site(
        {
            "/": html("home", "/a", "/b", "/missing", "/boom", "/old", "/private/x"),
            "/a": html("A", "/a/1", "/missing"),
            "/b": html("B", "/"),
            "/a/1": html("A1", "/gone"),
            "/boom": Reply(500, "err"),
            "/old": Reply(301, "", headers={"Location": "/new"}),
            "/new": html("new"),
            "/gone": Reply(410, "gone"),
            "/robots.txt": Reply(
                200, "User-agent: *\nDisallow: /private/\n", content_type="text/plain"
            ),
        }
    )


def shoal(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def crawled(tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    """A finished crawl of broken_site() with a report beside it."""
    out = tmp_path / "pages.jsonl"
    with broken_site() as site:
        done = shoal(
            "crawl", site.url("/"), "-o", str(out), "--retries", "0", "--report",
            str(tmp_path / "report.html"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield site, out


def expected_broken(site: Site) -> set[tuple[str, str, str, str]]:
    return {
        (site.url("/boom"), "500", "http_500", site.url("/")),
        (site.url("/missing"), "404", "http_404", site.url("/")),
        (site.url("/gone"), "410", "http_410", site.url("/a/1")),
    }


def test_crawl_report_lists_broken_links_with_referrers(
    crawled: tuple[Site, Path], tmp_path: Path
) -> None:
    site, out = crawled
    records = [json.loads(line) for line in out.read_text().splitlines()]
    page = (tmp_path / "report.html").read_text()
    assert '<meta name="generator" content="shoal report' in page
    broken = read_csv(tmp_path / "report.broken.csv")
    assert {(b["url"], b["status"], b["error"], b["referrer"]) for b in broken} == expected_broken(
        site
    )
    # Every record with an error, and nothing else, is a broken link.
    assert len(broken) == sum(1 for r in records if r["error"])
    for url, *_ in expected_broken(site):
        assert url in page
    robots = read_csv(tmp_path / "report.robots.csv")
    assert [(r["url"], r["referrer"]) for r in robots] == [(site.url("/private/x"), site.url("/"))]
    redirects = read_csv(tmp_path / "report.redirects.csv")
    assert [r["chain"] for r in redirects] == [f"{site.url('/old')} -> {site.url('/new')}"]
    (host,) = read_csv(tmp_path / "report.hosts.csv")
    assert host["pages"] == str(len(records)) and host["errors"] == "3"
    assert host["robots_skipped"] == "1"


def test_same_report_from_jsonl_csv_and_sqlite(tmp_path: Path) -> None:
    results = {}
    with broken_site() as site:
        for suffix in ("jsonl", "csv", "sqlite"):
            out = tmp_path / f"pages.{suffix}"
            done = shoal("crawl", site.url("/"), "-o", str(out), "--retries", "0", "-q")
            assert done.returncode == 0, done.stderr
            result = build_report(out, tmp_path / f"{suffix}.html")
            broken = read_csv(result.csv["broken"])
            results[suffix] = (
                result.pages,
                {(b["url"], b["status"], b["error"], b["referrer"]) for b in broken},
                len(read_csv(result.csv["robots"])),
            )
        assert results["jsonl"] == (8, expected_broken(site), 1)
    assert results["csv"] == results["jsonl"] == results["sqlite"]


def test_a_warc_output_gives_the_same_counts_as_the_jsonl_of_the_same_site(
    tmp_path: Path,
) -> None:
    """A WARC holds responses only: the report counts the same pages and broken links as
    the JSONL's, and names the linking pages from the archived HTML (no referrers)."""
    warc, jsonl = tmp_path / "crawl.warc.gz", tmp_path / "pages.jsonl"
    with broken_site() as site:
        for out in (warc, jsonl):
            done = shoal("crawl", site.url("/"), "-o", str(out), "-q", "--retries", "0")
            assert done.returncode == 0, done.stderr
        with_report = tmp_path / "with.warc.gz"
        crawl_report = shoal(
            "crawl", site.url("/"), "-o", str(with_report), "-q", "--retries", "0",
            "--report", str(tmp_path / "crawl.html"),
        )  # fmt: skip
    assert crawl_report.returncode == 0, crawl_report.stderr
    assert (tmp_path / "crawl.html").exists()
    made = shoal("report", str(warc), "-o", str(tmp_path / "r.html"))
    assert made.returncode == 0, made.stderr
    assert "(8 pages, 3 broken;" in made.stderr
    from_jsonl = build_report(jsonl, tmp_path / "j.html")
    from_warc = build_report(warc, tmp_path / "w.html")
    assert (from_warc.pages, from_warc.broken) == (from_jsonl.pages, from_jsonl.broken) == (8, 3)

    def broken(result: object) -> set[tuple[str, str, str]]:
        rows = read_csv(result.csv["broken"])  # type: ignore[attr-defined]
        return {(b["url"], b["status"], b["error"]) for b in rows}

    assert broken(from_warc) == broken(from_jsonl) == {b[:3] for b in expected_broken(site)}
    # No referrer in a WARC: the pages whose HTML links to each broken URL instead.
    pairs = {(r["url"], r["linked_from"]) for r in read_csv(from_warc.csv["referrers"])}
    assert {(b[0], b[3]) for b in expected_broken(site)} <= pairs
    (host,) = read_csv(from_warc.csv["hosts"])
    assert (host["pages"], host["errors"]) == ("8", "3")
    page = (tmp_path / "w.html").read_text()
    assert "Made from a WARC archive" in page


def test_report_needs_a_file_output() -> None:
    done = shoal("crawl", "http://127.0.0.1:9/", "--report", "r.html")
    assert done.returncode == 2 and "--report needs a file output" in done.stderr


def test_files_shoal_did_not_write_are_never_replaced(
    crawled: tuple[Site, Path], tmp_path: Path
) -> None:
    _, out = crawled
    mine = tmp_path / "mine.html"
    mine.write_text("<html>my notes</html>")
    refused = shoal("report", str(out), "-o", str(mine))
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert mine.read_text() == "<html>my notes</html>"
    assert not (tmp_path / "mine.broken.csv").exists()  # nothing written before the check
    # A CSV beside it counts too.
    other = tmp_path / "other.html"
    (tmp_path / "other.hosts.csv").write_text("my,data\n")
    assert shoal("report", str(out), "-o", str(other)).returncode == 2
    assert (tmp_path / "other.hosts.csv").read_text() == "my,data\n" and not other.exists()
    # A report shoal wrote is replaced without asking; --overwrite replaces anything.
    again = shoal("report", str(out), "-o", str(tmp_path / "report.html"))
    assert again.returncode == 0, again.stderr
    forced = shoal("report", str(out), "-o", str(mine), "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert "shoal report" in mine.read_text()
    # The crawl's own output is never taken for a report.
    assert shoal("report", str(out), "-o", str(out)).returncode == 2
    assert json.loads(out.read_text().splitlines()[0])["url"]


def test_totals_span_every_run_of_a_resumed_crawl(tmp_path: Path) -> None:
    out = tmp_path / "pages.jsonl"
    with broken_site() as site:
        first = shoal("crawl", site.url("/"), "-o", str(out), "--max-pages", "3", "-q")
        second = shoal("crawl", site.url("/"), "-o", str(out), "--retries", "0", "-q")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    result = build_report(out, tmp_path / "r.html")
    assert result.pages == len(records) == 8
    assert result.broken == 3
    page = (tmp_path / "r.html").read_text()
    assert '<div class="v" id="t-pages">8</div>' in page


def test_torn_line_is_counted_not_fatal(crawled: tuple[Site, Path], tmp_path: Path) -> None:
    _, out = crawled
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(out.read_bytes() + b'{"url": "http://127.0.0.1/cut')
    result = build_report(torn, tmp_path / "torn.html", state=None)
    assert result.pages == 8
    assert "1 unreadable line(s)" in (tmp_path / "torn.html").read_text()


def test_missing_output_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no crawl output"):
        build_report(tmp_path / "nothing.jsonl")
    done = shoal("report", str(tmp_path / "nothing.jsonl"))
    assert done.returncode == 2 and "no crawl output" in done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_report_is_written_after_ctrl_c(tmp_path: Path) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(req: object) -> Reply:
        started.set()
        release.wait(0.5)
        return Reply(body=html("slow"))

    out = tmp_path / "out.jsonl"
    routes: dict[str, object] = {"/": html("home", *[f"/s{i}" for i in range(100)])}
    routes.update({f"/s{i}": slow for i in range(100)})
    with Site(routes) as site:  # type: ignore[arg-type]
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out),
             "--concurrency", "2", "--report", str(tmp_path / "r.html")],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert started.wait(30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        release.set()
    assert proc.returncode == 130, err
    lines = out.read_text().splitlines()
    page = (tmp_path / "r.html").read_text()
    assert f'<div class="v" id="t-pages">{len(lines)}</div>' in page
    assert "report: " in err


def synthetic(path: Path, n: int) -> int:
    """``n`` records over 30 hosts, one in ten broken; returns how many are broken."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    broken = 0
    with path.open("w") as f:
        for i in range(n):
            status = 404 if i % 10 == 3 else 200
            broken += status == 404
            record = {
                "url": f"https://h{i % 30}.example/p/{i}",
                "final_url": f"https://h{i % 30}.example/p/{i}",
                "status": status,
                "depth": i % 7,
                "referrer": f"https://h{i % 30}.example/p/{i // 2}",
                "content_type": "text/html",
                "bytes": 1000 + i % 500,
                "elapsed": 0.005 + (i % 100) / 1000,
                "fetched_at": (start + timedelta(milliseconds=i * 5)).isoformat(
                    timespec="milliseconds"
                ),
                "title": f"page {i}",
                "error": "http_404" if status == 404 else None,
                "error_detail": None,
            }
            f.write(json.dumps(record) + "\n")
    return broken


def test_a_100k_page_crawl_gives_a_small_report_with_full_csv_lists(tmp_path: Path) -> None:
    out = tmp_path / "big.jsonl"
    broken = synthetic(out, 100_000)
    began = time.perf_counter()
    result = build_report(out, tmp_path / "big.html", max_rows=200)
    took = time.perf_counter() - began
    # Measured, not asserted (the machine is shared): shown with -s or on failure.
    print(f"100k records: report in {took:.2f}s, {result.html_bytes / 1024:.0f} KB HTML")
    page = (tmp_path / "big.html").read_text()
    assert result.pages == 100_000 and result.broken == broken == 10_000
    assert page.count('<tr><td class="url">https://') == 200  # capped broken table
    assert "Showing 200 of 10000" in page
    assert len(read_csv(result.csv["broken"])) == 10_000
    assert len(read_csv(result.csv["hosts"])) == 30
    # The page's size does not grow with the crawl: rows are capped, series re-binned.
    assert result.html_bytes < 400_000
    # 100k records at 5 ms apart: 500 s of crawling, 200 pages/s.
    assert '<div class="v" id="t-rate">200.0</div>' in page


def test_state_file_is_read_while_the_crawl_holds_it(
    crawled: tuple[Site, Path], tmp_path: Path
) -> None:
    """A running crawl holds the state's lock; the report reads beside it."""
    import fcntl

    _, out = crawled
    lock = Path(f"{out}.state.sqlite.lock")
    fd = lock.open("ab+")  # a crawl's lock file exists while it runs (removed at its end)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        build_report(out, tmp_path / "live.html")
    finally:
        lock.unlink()
        fd.close()
    assert "a crawl is running" in (tmp_path / "live.html").read_text()
    with sqlite3.connect(f"{out}.state.sqlite") as conn:  # untouched and still readable
        assert conn.execute("SELECT count(*) FROM urls").fetchone()[0] > 0


def test_markup_in_records_is_shown_not_run(tmp_path: Path) -> None:
    """A hostile site controls URLs, titles and error details: none of it becomes markup."""
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    out = tmp_path / "evil.jsonl"
    record = {
        "url": "http://127.0.0.1/a?" + evil,
        "final_url": "http://127.0.0.1/a?" + evil,
        "status": 404,
        "depth": 1,
        "referrer": "http://127.0.0.1/</script><script>alert(3)</script>",
        "bytes": 0,
        "elapsed": 0.01,
        "fetched_at": "2026-01-01T00:00:00.000+00:00",
        "title": evil,
        "error": "http_404",
        "error_detail": evil,
    }
    out.write_text(json.dumps(record) + "\n")
    build_report(out, tmp_path / "evil.html")
    page = (tmp_path / "evil.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # One <script> for Chart.js, one JSON island, one to draw: no more.
    assert page.count("<script") == 3


def test_pauses_between_runs_are_cut_from_the_crawling_time(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with out.open("w") as f:
        for run, start in enumerate((base, base + timedelta(hours=3))):
            for i in range(100):  # 100 pages over 10 s in each run
                at = start + timedelta(seconds=i / 10)
                f.write(json.dumps({
                    "url": f"http://127.0.0.1/{run}/{i}", "status": 200, "depth": 0,
                    "elapsed": 0.1, "bytes": 10, "error": None,
                    "fetched_at": at.isoformat(timespec="milliseconds"),
                }) + "\n")  # fmt: skip
    build_report(out, tmp_path / "runs.html")
    page = (tmp_path / "runs.html").read_text()
    assert "2 runs" in page
    # (9.9 s + one 0.1 s median latency) per run: 20 s of crawling, 10 pages/s.
    assert '<div class="v" id="t-rate">10.0</div>' in page
    assert '<div class="v" id="t-duration">20 s</div>' in page


def test_saved_bodies_give_every_page_that_links_to_a_broken_url(tmp_path: Path) -> None:
    out = tmp_path / "pages.jsonl"
    with broken_site() as site:
        done = shoal("crawl", site.url("/"), "-o", str(out), "--retries", "0", "-q",
                     "--save-bodies", "--concurrency", "1")  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = build_report(out, tmp_path / "r.html")
        pairs = {(p["url"], p["linked_from"], p["found_in"])
                 for p in read_csv(result.csv["referrers"])}  # fmt: skip
        home, a, a1 = site.url("/"), site.url("/a"), site.url("/a/1")
        missing, boom, gone = site.url("/missing"), site.url("/boom"), site.url("/gone")
    # /missing is linked from the home page (its record's referrer) and from /a too.
    assert pairs == {
        (missing, home, "record"),
        (missing, a, "page body"),
        (boom, home, "record"),
        (gone, a1, "record"),
    }
    page = (tmp_path / "r.html").read_text()
    assert f"{home}<br>{a}</td>" in page
    # Without bodies the report names the one referrer it has, and says so.
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        "".join(
            json.dumps({k: v for k, v in json.loads(line).items() if k != "body"}) + "\n"
            for line in out.read_text().splitlines()
        )
    )
    result = build_report(plain, tmp_path / "plain.html", state=None)
    assert {p["found_in"] for p in read_csv(result.csv["referrers"])} == {"record"}
    assert (
        "crawl with --save-bodies for every linking page" in (tmp_path / "plain.html").read_text()
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "sqlite"])
def test_a_url_retried_after_its_host_was_unreachable_counts_once(
    tmp_path: Path, suffix: str
) -> None:
    """Two runs while nothing listens on the start URL's port (each appends a held-back
    failure record), then a run with the site up: the report, status and the SQLite output
    count the URL once, as its latest record says."""
    port = _free_port()
    start = f"http://127.0.0.1:{port}/"
    out = tmp_path / f"pages.{suffix}"
    for _ in range(2):
        down = shoal("crawl", start, "-o", str(out), "-q")
        assert down.returncode == 1, down.stderr
    result = build_report(out, tmp_path / "down.html")
    assert (result.pages, result.broken) == (1, 1)
    status = shoal("status", str(out))
    assert status.returncode == 0, status.stderr
    assert "pages 1 (ok 0, redirects 0, failed 1) in 2 run(s)" in status.stdout
    assert "errors: connection 1\n" in status.stdout

    routes = {"/": html("home"), "/robots.txt": Reply(200, "", content_type="text/plain")}
    with Site(routes, port=port):  # type: ignore[arg-type]
        up = shoal("crawl", start, "-o", str(out), "-q")
    assert up.returncode == 0, up.stderr
    result = build_report(out, tmp_path / "up.html")
    assert (result.pages, result.broken) == (1, 0)
    assert read_csv(result.csv["broken"]) == []
    status = shoal("status", str(out), "--json")
    totals = json.loads(status.stdout)["totals"]
    assert (totals["pages"], totals["ok"], totals["failed"], totals["errors"]) == (1, 1, 0, {})
    if suffix == "sqlite":
        with sqlite3.connect(out) as db:
            rows = db.execute("SELECT url, status, error FROM records").fetchall()
        assert rows == [(start, 200, None)]
    else:  # append-only: every run's record is still there, in order
        if suffix == "csv":
            got = [(r["status"], r["error"]) for r in read_csv(out)]
        else:
            records = [json.loads(line) for line in out.read_text().splitlines()]
            got = [(str(r["status"] or ""), r["error"] or "") for r in records]
        assert got == [("", "connection"), ("", "connection"), ("200", "")]


def test_sqlite_elapsed_is_a_number_and_older_text_columns_still_read(tmp_path: Path) -> None:
    out = tmp_path / "pages.sqlite"
    with broken_site() as site:
        done = shoal("crawl", site.url("/"), "-o", str(out), "--retries", "0", "-q")
    assert done.returncode == 0, done.stderr
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(out) as db:
        kinds = db.execute("SELECT DISTINCT typeof(elapsed) FROM records").fetchall()
        assert kinds == [("real",)]
        # An output written before elapsed was REAL: the same rows, elapsed as text.
        (schema,) = db.execute("SELECT sql FROM sqlite_master WHERE name='records'").fetchone()
    with sqlite3.connect(old) as db:
        db.execute(schema.replace("elapsed REAL", "elapsed TEXT"))
        db.execute("ATTACH ? AS new", (str(out),))
        db.execute("INSERT INTO records SELECT * FROM new.records")
        assert db.execute("SELECT DISTINCT typeof(elapsed) FROM records").fetchall() == [("text",)]
    medians = []
    for path in (out, old):
        result = build_report(path, tmp_path / f"{path.stem}.html", state=None)
        (host,) = read_csv(result.csv["hosts"])
        medians.append(host["median_latency_ms"])
    assert medians[0] != "" and medians[0] == medians[1]


def test_held_back_records_of_a_5xx_robots_txt_count_once_each(tmp_path: Path) -> None:
    """Written as a crawl writes them (robots.txt answered 503 in two runs, then /a came
    through): each URL counts once, as its latest record says."""
    a, b = "http://h.test/a", "http://h.test/b"

    def held(url: str, at: str) -> dict[str, object]:
        return {"url": url, "final_url": url, "status": None, "error": "robots_http_503",
                "error_detail": "robots.txt answered 503", "fetched_at": at}  # fmt: skip

    records = [
        held(a, "2026-01-01T00:00:00"),
        held(b, "2026-01-01T00:00:01"),
        held(a, "2026-01-02T00:00:00"),
        held(b, "2026-01-02T00:00:01"),
        {"url": a, "final_url": a, "status": 200, "error": None, "fetched_at": "2026-01-03"},
    ]
    out = tmp_path / "pages.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = build_report(out, tmp_path / "r.html", state=None)
    assert (result.pages, result.broken) == (2, 1)
    assert [(r["url"], r["error"]) for r in read_csv(result.csv["broken"])] == [
        (b, "robots_http_503")
    ]


def test_a_page_cut_for_its_selectors_is_ok_not_broken(tmp_path: Path) -> None:
    from shoal.crawler import Crawler

    deep = "<html><title>deep</title><body>" + "<div>" * 10_000 + "<a href='/a'>a</a>"
    with Site({"/": deep, "/a": html("a"), "/robots.txt": Reply(404)}) as site:
        out = tmp_path / "o.jsonl"
        Crawler(site.url("/"), output=str(out), extract={"h1": "h1"}, progress=False).run()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert "nested deeper than 1024" in records[0]["truncated"], records[0]
    # An older build recorded such a page as the error parse_limit: not broken either.
    old = {**records[0], "url": site.url("/old"), "error": "parse_limit"}
    old["error_detail"] = "elements nested deeper than 1024; parsed the first 9 characters"
    with out.open("a") as f:
        f.write(json.dumps(old) + "\n")
    result = build_report(out, tmp_path / "r.html", state=None)
    assert result.pages == 3 and result.broken == 0
    assert read_csv(result.csv["broken"]) == []


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "sqlite"])
def test_after_a_recrawl_each_url_counts_once_as_its_latest_run_says(
    tmp_path: Path, suffix: str
) -> None:
    """Run 1: /fixed is a 404; run 2 (--recrawl): it is fixed, /gone is a 404 and /added
    is new. The report counts 4 pages (not 7), lists /gone only, and keeps each run's
    change counts."""
    routes = {"/": html("home", "/fixed", "/gone"), "/fixed": Reply(404, "no"),
              "/gone": html("gone"), "/robots.txt": Reply(404)}  # fmt: skip
    out = tmp_path / f"o.{suffix}"
    with Site(routes) as site:
        done = shoal("crawl", site.url("/"), "-o", str(out), "--retries", "0", "-q")
        assert done.returncode == 0, done.stderr
        site.routes["/"] = html("home", "/fixed", "/gone", "/added")
        site.routes["/fixed"] = html("fixed")
        site.routes["/gone"] = Reply(404, "gone")
        site.routes["/added"] = html("added")
        again = ("crawl", site.url("/"), "-o", str(out), "--retries", "0", "-q", "--recrawl")
        done = shoal(*again)
        assert done.returncode == 0, done.stderr
        result = build_report(out, tmp_path / "r.html")
        assert (result.pages, result.broken) == (4, 1)
        assert [b["url"] for b in read_csv(result.csv["broken"])] == [site.url("/gone")]
        (host,) = read_csv(result.csv["hosts"])
        assert (host["pages"], host["ok"], host["errors"]) == ("4", "3", "1")
        added = site.url("/added")
    # the recrawl section still shows run 2's changes (every record of the run)
    page = (tmp_path / "r.html").read_text()
    row = page.split('id="recrawls-table"')[1].split("</tr>")[1]
    assert row.split("</td>")[0].rsplit(">", 1)[1] == "2"
    assert f"new: {added}" in row


def test_a_post_and_a_get_of_one_url_are_two_pages_across_runs(tmp_path: Path) -> None:
    url = "http://h.test/form"
    records = [
        {"url": url, "status": 200, "fetched_at": "2026-01-01T00:00:00"},
        {"url": url, "method": "POST", "status": 500, "fetched_at": "2026-01-01T00:00:01"},
        {"url": url, "status": 200, "run": 2, "change": "unchanged",
         "fetched_at": "2026-01-02T00:00:00"},
        {"url": url, "method": "POST", "status": 200, "run": 2, "change": "changed",
         "fetched_at": "2026-01-02T00:00:01"},
        # only run 2 saw /other; run 3 saw the GET only, as a 404
        {"url": "http://h.test/other", "status": 200, "run": 2, "change": "new",
         "fetched_at": "2026-01-02T00:00:02"},
        {"url": url, "status": 404, "run": 3, "change": "gone",
         "fetched_at": "2026-01-03T00:00:00"},
    ]  # fmt: skip
    out = tmp_path / "pages.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = build_report(out, tmp_path / "r.html", state=None)
    assert (result.pages, result.broken) == (3, 1)
    assert [(b["url"], b["status"]) for b in read_csv(result.csv["broken"])] == [(url, "404")]
