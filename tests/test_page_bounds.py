"""Bounded work per page: links taken per page, CPU spent parsing pathological nesting,
and --max-time noticed while a parse runs. Real servers on 127.0.0.1, real subprocesses
for peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from sites import Reply, Site, html

CAREFUL = ["--timeout", "5", "--retries", "1", "--max-pages", "2000", "-q", "--json-summary"]

# The child reports its own peak RSS (VmHWM) on exit (see test_memory.py for why).
CHILD = textwrap.dedent(
    """
    import atexit, sys
    def report():
        status = open("/proc/self/status").read()
        print("VmHWM_kB", status.split("VmHWM:")[1].split()[0], file=sys.stderr, flush=True)
    atexit.register(report)
    from shoal.cli import main
    sys.argv = ["shoal", *sys.argv[1:]]
    main()
    """
)


def run_cli(args: list[str], timeout: float = 240) -> tuple[int, float, dict[str, Any]]:
    """(exit code, peak RSS in MB, JSON summary) of a crawl in a child process."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=timeout
    )
    lines = proc.stderr.splitlines()
    rss = next(int(x.split()[1]) / 1024 for x in lines if x.startswith("VmHWM_kB"))
    summary = next((json.loads(x) for x in lines if x.startswith("{")), {})
    return proc.returncode, rss, summary


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


LINK_DENSE = "".join(f'<a href="/p/{i:07d}">.</a>' for i in range(450_000)).encode()


# A page's links counted by a callback, in a child (for its peak RSS): the whole page is
# parsed, whatever --max-links-per-page takes from it.
COUNT_LINKS = textwrap.dedent(
    """
    import json, sys
    from shoal.crawler import Crawler
    seen = {}
    def on_page(page):
        seen.update(n=len(page.links), last=page.links[-1], title=page.title)
        return None
    Crawler(sys.argv[1], on_page=on_page, follow_links=False, max_links_per_page=10**6,
            max_bytes=20_000_000, progress=False, state=None).run()
    status = open("/proc/self/status").read()
    seen["rss_kb"] = int(status.split("VmHWM:")[1].split()[0])
    print(json.dumps(seen))
    """
)


def test_a_link_dense_10mb_page_is_parsed_to_the_end_within_256mb(tmp_path: Path) -> None:
    body = b"<html><title>dense</title><body>" + LINK_DENSE + b"</body></html>"
    assert len(body) > 10_000_000
    with Site({"/": Reply(body=body), "/robots.txt": Reply(404, "")}) as site:
        site.fallback = Reply(body=html("leaf"))
        out = tmp_path / "o.jsonl"
        # The last --max-pages wins: fetching 20 of the 10,000 links is enough here.
        args = ["crawl", site.url("/"), "-o", str(out), *CAREFUL, "--max-pages", "20"]
        args += ["--max-bytes", "20000000"]
        code, rss, summary = run_cli(args)
        counted = subprocess.run(
            [sys.executable, "-c", COUNT_LINKS, site.url("/")],
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert code == 0, summary
    print(f"crawl peak RSS {rss:.0f} MB")
    assert rss <= 256, rss
    assert summary["discovered"] == 1 + 10_000  # the default cap on links per page
    assert summary["failed"] == 0 and summary["ok"] == 20, summary
    home = records(out)[0]
    assert home["bytes"] == len(body) and home["title"] == "dense"
    assert home["error"] is None and home["truncated"] is None
    assert counted.returncode == 0, counted.stderr
    seen = json.loads(counted.stdout.splitlines()[-1])
    print(f"every link: peak RSS {seen['rss_kb'] / 1024:.0f} MB")
    assert seen["n"] == 450_000 and seen["last"] == site.url("/p/0449999"), seen
    assert seen["title"] == "dense" and seen["rss_kb"] <= 256 * 1024, seen


NESTED = (
    '<html><title>deep</title><body><a href="/before">b</a>'
    + "<div>" * 100_000
    + '<a href="/after">a</a>'
    + "</div>" * 100_000
    + "</body></html>"
)


def test_pathological_nesting_is_parsed_to_the_end_and_a_cut_for_selectors_noted(
    tmp_path: Path,
) -> None:
    import resource

    assert len(NESTED) > 1_100_000
    with Site({"/": NESTED, "/robots.txt": Reply(404, "")}) as site:
        site.fallback = Reply(body=html("leaf"))
        out = tmp_path / "o.jsonl"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        code, rss, summary = run_cli(["crawl", site.url("/"), "-o", str(out), *CAREFUL])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Links from the whole page, the one 100,000 elements deep included.
        assert site.count("/before") == 1 and site.count("/after") == 1
        # --extract builds one whole tree, of the part before the cut: the record says so.
        extracted = tmp_path / "x.jsonl"
        args = ["crawl", site.url("/"), "-o", str(extracted), *CAREFUL, "--max-depth", "0"]
        xcode, _, xsummary = run_cli([*args, "--extract", "links[]=a::attr(href)"])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"crawl CPU {cpu:.1f} s, peak RSS {rss:.0f} MB")  # not asserted: timing varies
    assert code == 0 and summary["failed"] == 0 and summary["ok"] == 3, summary
    assert rss <= 256, rss
    home = next(r for r in records(out) if r["url"] == site.url("/"))
    assert home["error"] is None and home["error_detail"] is None
    assert home["truncated"] is None  # nothing taken from the page missed anything
    assert home["title"] == "deep" and home["status"] == 200
    assert xcode == 0 and xsummary["failed"] == 0 and xsummary["ok"] == 1, xsummary
    (x,) = records(extracted)
    assert x["error"] is None and x["links"] == ["/before"]
    assert "nested deeper than 1024" in x["truncated"], x


def test_max_time_stops_a_crawl_while_a_page_is_still_being_processed(
    tmp_path: Path,
) -> None:
    import threading

    from shoal.crawler import Crawler, Page

    release = threading.Event()
    entered = threading.Event()
    left = threading.Event()

    def slow(page: Page) -> None:
        # Stands for any uninterruptible work on a worker: a parse in C, a callback.
        entered.set()
        release.wait(30)
        left.set()

    with Site({"/": html("home", "/a"), "/a": html("a"), "/robots.txt": Reply(404)}) as site:
        try:
            result = Crawler(
                site.url("/"),
                on_page=slow,
                output=str(tmp_path / "o.jsonl"),
                max_time=1,
                timeout=5,
                retries=1,
                progress=False,
            ).run()
            still_busy = not left.is_set()
        finally:
            release.set()
    assert entered.is_set()
    assert still_busy, "run() waited for the page instead of stopping at --max-time"
    assert result.stopped_by == "max_time"


N = 30_000
HOSTILE = {
    "nested divs": "<div>" * N,
    "p then div": "<p><div>" * N,
    "formatting with attributes": "".join(f"<b id={i}>" for i in range(N)),
    "spans over ignored end tags": "<span>" + "<div></span>" * N,
    "options in one select": "<select>" + "<option>x</option>" * N,
    "html breaking out of svg": "<svg>" + "<div/>" * N,
    "svg style is not raw text": "<svg><style>" + "<div>" * N,
    "mathml text integration": "<math><mi>" + "<div>" * N,
    "nested tables": "<table><tr><td>" * N,
}
ORDINARY = {
    "sloppy table": "<table>" + "<tr><td>a<td>b" * N + "</table>",
    "unclosed list items": "<ul>" + "<li>x" * N + "</ul>",
    "definition list": "<dl>" + "<dt>a<dd>b" * N + "</dl>",
    "svg icons": ("<svg>" + "<g><path d='x'/></g>" * 20 + "</svg>") * (N // 20),
    "tags in scripts": "<script>" + "'<div>'+" * N + "</script>" + "<p>x</p>" * N,
    "tags in comments": "<!--" + "<div>" * N + "-->" + "<p>x" * N,
    "paragraphs in divs": "<div><p>a<p>b</div>" * N,
    "many small selects": ("<select>" + "<option>x" * 100 + "</select>") * (N // 100),
}


def test_every_link_of_a_hostile_page_is_found_in_linear_work() -> None:
    from shoal.crawler._html import parse_html

    # Ten times the depth that cost lexbor seconds in one parse; the pieces cost little.
    for name, text in {**HOSTILE, **ORDINARY}.items():
        page = '<title>t</title><a href="/first">' + text * 3 + '<a href="/last">x</a>'
        found = parse_html(page)
        assert found.title == "t" and found.hrefs[0] == "/first", name
        assert found.hrefs[-1] == "/last", name


def test_pathological_nesting_is_cut_for_selectors_and_ordinary_pages_are_not() -> None:
    from shoal.crawler._html import bounded
    from shoal.crawler._nesting import MAX_NESTING, MAX_OPTIONS

    for name, text in HOSTILE.items():
        kept, cut = bounded(text)
        assert cut is not None, name
        assert len(kept) < len(text) // 2, name
        assert f"deeper than {MAX_NESTING}" in cut or f"{MAX_OPTIONS} options" in cut, name
    for name, text in ORDINARY.items():
        kept, cut = bounded(text)
        assert cut is None and kept == text, name


def test_links_per_page_are_capped_callback_urls_included(tmp_path: Path) -> None:
    from shoal.crawler import Crawler, Page

    links = [f"/p{i}" for i in range(50)]

    def on_page(page: Page) -> Any:
        yield {"url": page.url}
        yield from page.links
        yield from ("/extra1", "/extra2")  # beyond the cap too

    with Site({"/": html("home", *links), "/robots.txt": Reply(404)}) as site:
        site.fallback = Reply(body=html("leaf"))
        result = Crawler(
            site.url("/"),
            output=str(tmp_path / "o.jsonl"),
            max_links_per_page=5,
            timeout=5,
            retries=1,
            max_pages=2000,
            progress=False,
        ).run()
        fetched = {p for p in site.paths() if p.startswith("/p")}
        assert fetched == {f"/p{i}" for i in range(5)}
        cb = Crawler(
            site.url("/"),
            on_page=on_page,
            output=str(tmp_path / "c.jsonl"),
            max_links_per_page=3,
            max_depth=1,
            timeout=5,
            retries=1,
            progress=False,
        ).run()
    assert result.discovered == 1 + 5
    assert cb.discovered == 1 + 3
