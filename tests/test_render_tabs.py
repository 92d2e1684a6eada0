"""Kept tabs and the waits of a rendered page (#18).

- A tab whose page ended well serves the next page of its context: a crawl of many
  pages opens few tabs. A page left behind that will not let its tab go (an endless
  script started after its DOM was read, a ``beforeunload`` that would keep it) costs
  the next page a new tab, never its render; the requests a page left behind still
  makes are refused, never served as the next page's.
- With ``--render-wait-for`` the DOM is read once the selector matches: no quiet window
  waits on requests that never end (``--render-wait`` asks for one explicitly). A
  selector that is not CSS (Playwright's ``text=``) still works. Without it, the quiet
  window waits for a request shoal is still fetching for the page.
- ``--render-memory``'s measure: the resident size bounds the proportional share from
  above, and stands for it only under the budget.

Under CI a missing browser is a failure; elsewhere the browser tests are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rendering import CHROMIUM, no_browser_left, records, shoal, short_tmpdirs
from shoal.crawler import CrawlOptions
from shoal.crawler._render import _descendants, _tree_memory_mb
from sites import Reply, Request, Site

pytestmark = pytest.mark.usefixtures("browser")


def page(title: str, body: str = "", head: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}</body></html>"
    )


def built(title: str, *links: str) -> str:
    """A page whose h1 and links a script writes."""
    anchors = "".join(f"<a href='{link}'>{link}</a>" for link in links)
    return page(
        title,
        "<div id=app></div><script>document.getElementById('app').innerHTML = "
        f'"<h1>{title}</h1>{anchors}";</script>',
    )


LEAF = [f"/p{i}" for i in range(12)]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    with short_tmpdirs(1, "shoal-tabs-") as made:
        yield made[0]


def crawl(
    site: Site, start: str, work: Path, short: Path, *extra: str, timeout: float = 180
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, object]]]:
    env = {**os.environ, "TMPDIR": str(short)}
    done = shoal(
        "crawl", site.url(start), "-o", "pages.jsonl", "--render", "always",
        "--browser", CHROMIUM, "--render-concurrency", "1", "--concurrency", "1",
        "--retries", "0", "--extract", "h=h1::text", "--no-state", "--overwrite", "-vv",
        *extra, cwd=work, env=env, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = records(work / "pages.jsonl")
    by = {str(r["url"]).removeprefix(site.origin): r for r in out}
    assert len(by) == len(out), [r["url"] for r in out]  # each page once
    return done, by


def counted(title: str, *links: str) -> str:
    """A page whose script writes its h1, its links, and how many documents its tab has
    shown (the tab's history: a new tab has one)."""
    anchors = "".join(f"<a href='{link}'>{link}</a>" for link in links)
    return page(
        title,
        "<div id=app></div><script>document.getElementById('app').innerHTML = "
        f'"<h1>{title}</h1><p id=n>" + history.length + "</p>{anchors}";</script>',
    )


def test_a_crawl_keeps_its_tabs_between_pages(tmp_path: Path, short_tmp: Path) -> None:
    routes: dict[str, object] = {"/": counted("home", *LEAF), "/robots.txt": Reply(404, "")}
    routes.update({path: counted(path) for path in LEAF})
    with Site(routes) as site:  # type: ignore[arg-type]
        _done, by = crawl(
            site, "/", tmp_path, short_tmp, "--render-wait-for", "h1", "--extract", "n=#n::text"
        )
    assert set(by) == {"/", *LEAF}
    for path in LEAF:
        assert by[path]["rendered"] is True and by[path]["h"] == path, by[path]
    # 13 pages, one at a time: one tab serves them all (a tab per page would show a
    # history of one or two on every page).
    shown = sorted(int(str(r["n"])) for r in by.values())
    assert shown[-1] >= 12, shown
    assert not no_browser_left(short_tmp.name)


def test_a_page_that_will_not_let_go_costs_the_next_page_a_new_tab_not_its_render(
    tmp_path: Path, short_tmp: Path
) -> None:
    """One tab, pages one at a time: each hostile page is followed by ordinary ones."""

    def spam(request: Request) -> Reply:
        return Reply(body="{}", content_type="application/json")

    order = ["/hang", "/p0", "/stay", "/p1", "/spam", "/p2", "/p3"]
    routes: dict[str, object] = {
        # Each page links the next, so the one tab goes through them in this order.
        "/": built("home", order[0]),
        # Its DOM is read at once (the selector is in); the loop starts a moment later,
        # in the tab it leaves behind.
        "/hang": built("hang", "/p0")[: -len("</body></html>")]
        + "<script>setTimeout(() => { while (true) {} }, 50);</script></body></html>",
        "/stay": built("stay", "/p1")[: -len("</body></html>")]
        + "<script>addEventListener('beforeunload', e => { e.preventDefault();"
        " e.returnValue = 'stay'; });</script></body></html>",
        "/spam": built("spam", "/p2")[: -len("</body></html>")]
        + "<script>setInterval(() => fetch('/api/spam?' + Math.random()), 5);"
        "</script></body></html>",
        "/p0": built("/p0", "/stay"),
        "/p1": built("/p1", "/spam"),
        "/p2": built("/p2", "/p3"),
        "/p3": built("/p3"),
        "/robots.txt": Reply(404, ""),
    }
    with Site(routes) as site:  # type: ignore[arg-type]
        site.fallback = lambda r: spam(r) if r.path.startswith("/api/spam") else Reply(404, "")
        _done, by = crawl(
            site, "/", tmp_path, short_tmp, "--render-wait-for", "h1", "--render-timeout", "20"
        )
    assert set(by) == {"/", *order}
    for path in ("/p0", "/p1", "/p2", "/p3"):
        assert by[path]["error"] is None, by[path]
        assert by[path]["rendered"] is True and by[path]["h"] == path, by[path]
    # The hostile pages' own outcomes are honest either way: read before their scripts
    # turned on the tab (the usual case), or out of time.
    for path in ("/hang", "/stay", "/spam"):
        assert by[path]["error"] in (None, "render_timeout"), by[path]
    assert not no_browser_left(short_tmp.name)


def test_wait_for_reads_the_dom_without_waiting_on_requests_that_never_end(
    tmp_path: Path, short_tmp: Path
) -> None:
    release = threading.Event()

    def held(request: Request) -> Reply:
        release.wait(120)  # answered only once the test is over
        return Reply(body="{}", content_type="application/json")

    routes: dict[str, object] = {
        "/": page(
            "held",
            "<h1>ready</h1><p id=item>Item 3</p><script>fetch('/api/held');</script>",
        ),
        "/api/held": held,
        "/robots.txt": Reply(404, ""),
    }
    with Site(routes) as site:  # type: ignore[arg-type]
        try:
            # A quiet window would wait for /api/held until the soft deadline (over 400
            # s); the run's own bound (90 s) would end it first.
            for selector in ("h1", "text=Item 3"):
                _done, by = crawl(
                    site, "/", tmp_path, short_tmp, "--render-wait-for", selector,
                    "--render-timeout", "600", timeout=90,
                )  # fmt: skip
                assert by["/"]["rendered"] is True and by["/"]["h"] == "ready", by["/"]
        finally:
            release.set()
    assert not no_browser_left(short_tmp.name)


def test_the_quiet_window_waits_for_a_request_still_being_answered(
    tmp_path: Path, short_tmp: Path
) -> None:
    """The quiet window counts a request from the moment the route handler takes it, not
    from the browser's events about it (none came while shoal was still fetching it)."""

    def slow(request: Request) -> Reply:
        time.sleep(2)  # a slow server: far longer than the quiet window
        return Reply(body='{"late": "late"}', content_type="application/json")

    routes: dict[str, object] = {
        "/": page(
            "slow",
            "<h1>ready</h1><p id=late></p><script>fetch('/api/slow').then(r => r.json())"
            ".then(d => document.getElementById('late').textContent = d.late);</script>",
        ),
        "/api/slow": slow,
        "/robots.txt": Reply(404, ""),
    }
    with Site(routes) as site:  # type: ignore[arg-type]
        _done, by = crawl(
            site, "/", tmp_path, short_tmp, "--extract", "late=#late::text",
            "--render-timeout", "60",
        )  # fmt: skip
    assert by["/"]["rendered"] is True and by["/"]["late"] == "late", by["/"]


def test_the_quiet_window_is_off_with_a_selector_unless_asked_for() -> None:
    assert CrawlOptions(render="always").quiet_window() == 0.5
    assert CrawlOptions(render="always", render_wait_for="h1").quiet_window() == 0.0
    both = CrawlOptions(render="always", render_wait=0.2, render_wait_for="h1")
    assert both.quiet_window() == 0.2
    assert CrawlOptions(render="always", render_wait=0).quiet_window() == 0.0


def test_the_memory_measure_bounds_the_share_from_above() -> None:
    held = "import sys; x = b'x' * (64 << 20); print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", held], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "ready"  # its 64 MB written: resident
        assert child.pid in _descendants(os.getpid())
        resident = _tree_memory_mb(os.getpid(), float("inf"))  # under any budget: the bound
        share = _tree_memory_mb(os.getpid(), 0.0)  # over a budget of 0: the share itself
        assert resident >= share > 60, (resident, share)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(10)
