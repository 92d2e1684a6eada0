"""--render auto, after review: what a page as sent is taken for, the pages of a folder
seen while it is being learned, and the links of a page its script moves elsewhere.

- A full page that carries a comments widget's ``<noscript>Please enable JavaScript to
  view the comments</noscript>`` is static; an app shell's ``<noscript>`` still marks it.
- ``<svg/>`` and ``<svg ... />`` are empty, as a browser reads them, not an opening whose
  closer never comes (which cut the rest of the page out); ``<script .../>`` still runs
  to its end tag, as in a browser.
- A page of a folder whose probes are still rendering waits for their verdict (or is
  probed too), never recorded static for good meanwhile.
- A page whose script moves it to another page or to a download keeps the links of the
  document as served.

Under CI a missing browser is a failure; elsewhere the browser tests are skipped.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from rendering import crawl
from shoal.crawler._scripted import RenderLearner, Verdict, script_built
from sites import Reply, Request, Site

# -- what a page as sent is taken for ------------------------------------------------------

DISQUS = (
    '<div id="disqus_thread"></div><script src="/embed.js"></script>'
    "<noscript>Please enable JavaScript to view the "
    '<a href="https://disqus.com/?ref_noscript">comments powered by Disqus.</a></noscript>'
)
ARTICLE = "".join(
    "<p>" + "A long article, written and served whole by the server itself. " * 8 + "</p>"
    for _ in range(12)
)


def article(extra: str = "", links: int = 5) -> str:
    nav = "".join(f'<a href="/post/{i}">post {i}</a> ' for i in range(links))
    return (
        '<!doctype html><html><head><title>post</title><script src="/analytics.js"></script>'
        f"</head><body>{extra}<h1>post</h1>{ARTICLE}{nav}{DISQUS}</body></html>"
    )


def test_a_full_page_with_a_comments_noscript_is_static() -> None:
    assert script_built(article()) is None
    assert script_built(article(links=3)) is None
    # An app's own <noscript> with nothing of the page's own is still script-built.
    cra = (
        '<!doctype html><html><head><script defer src="/static/js/main.js"></script></head>'
        "<body><noscript>You need to enable JavaScript to run this app.</noscript>"
        '<div id="root"></div></body></html>'
    )
    assert script_built(cra) == "noscript"
    # A little text and a few links beside such a <noscript>: not a page of its own.
    short = article().replace(ARTICLE, "<p>" + "Loading the app. " * 20 + "</p>")
    assert script_built(short) == "noscript"


@pytest.mark.parametrize(
    "svg",
    [
        "<svg/>",
        '<svg class="icon" viewBox="0 0 1 1" />',
        '<svg data-x="a>b" aria-hidden="true"/>',  # a ">" in a quoted value is not the end
        '<SVG width="1"\n/>',
    ],
)
def test_a_self_closing_svg_does_not_cut_out_the_page(svg: str) -> None:
    assert script_built(article(extra=svg, links=12)) is None


def test_cut_out_elements_are_read_as_a_browser_reads_them() -> None:
    full = article(links=12)
    # An unquoted value's "/" is the value's: the SVG runs to its closer, and the rest
    # of the page is there.
    assert script_built(full.replace("<h1>", "<svg a=b/><path/></svg><h1>")) is None
    # A custom element named like one is no SVG: nothing cut out.
    assert script_built(full.replace("<h1>", "<svg-icon></svg-icon><h1>")) is None
    # <!--> is a whole (empty) comment.
    assert script_built(full.replace("<h1>", "<!--><h1>")) is None
    # HTML ignores the "/" of <script .../>: the script runs to its end tag, here none,
    # so the text and links after it are the script's (a browser shows none of them).
    nav = "".join(f'<a href="/post/{i}">post {i}</a> ' for i in range(12))
    shell = f'<html><body><script src="/app.js"/><h1>post</h1>{ARTICLE}{nav}</body></html>'
    assert script_built(shell) == "app-shell"
    assert script_built(shell.replace("/>", "></script>")) is None


@pytest.mark.usefixtures("browser")
def test_full_pages_with_svg_icons_and_a_comments_noscript_are_not_rendered(
    tmp_path: Path,
) -> None:
    def blog(request: Request) -> Reply:
        if request.path.endswith(".js"):
            return Reply(body="window.x = 1;", content_type="application/javascript")
        if request.path == "/robots.txt":
            return Reply(404, "")
        return Reply(body=article(extra='<svg class="logo" /><svg/>', links=6))

    with Site() as site:
        site.fallback = blog
        got = crawl(site.url("/"), tmp_path / "o.jsonl", render="auto", max_depth=1)
    assert set(got) == {"/", *(f"/post/{i}" for i in range(6))}
    for record in got.values():
        assert record["render_reason"] == "static" and record["rendered"] is False, record


# -- a folder's pages seen while its probes render ------------------------------------------


class _Gated(threading.Condition):
    """The learner's condition, telling the test when a page starts to wait."""

    def __init__(self, lock: Any, waiting: threading.Event) -> None:
        super().__init__(lock)
        self._waiting = waiting

    def wait(self, timeout: float | None = None) -> bool:
        self._waiting.set()
        return super().wait(timeout)


def _waiting_verdict(
    learner: RenderLearner, url: str
) -> tuple[threading.Thread, list[Verdict | BaseException]]:
    waiting = threading.Event()
    learner._changed = _Gated(learner._lock, waiting)
    got: list[Verdict | BaseException] = []

    def ask() -> None:
        try:
            got.append(learner.verdict(url, 60.0))
        except BaseException as exc:  # the old learner took no wait: a failure to see
            got.append(exc)
            waiting.set()

    thread = threading.Thread(target=ask)
    thread.start()
    assert waiting.wait(10)
    return thread, got


def test_a_page_seen_while_the_probes_render_waits_for_their_verdict() -> None:
    learner = RenderLearner(probes=1)
    assert learner.verdict("http://a/b/1").probe
    thread, got = _waiting_verdict(learner, "http://a/b/2")
    learner.learn("http://a/b/1", True)
    thread.join(10)
    assert got == [Verdict(render=True)]
    # A probe that comes back unanswered (its render failed) is handed to a waiting page.
    learner = RenderLearner(probes=1)
    assert learner.verdict("http://a/c/1").probe
    thread, got = _waiting_verdict(learner, "http://a/c/2")
    learner.learn("http://a/c/1", None)
    thread.join(10)
    assert got == [Verdict(probe=True)]
    # No time left to wait: probed as well, never left static while nothing is known.
    assert learner.verdict("http://a/c/3", 0.0) == Verdict(probe=True)
    learner.learn("http://a/c/2", False)
    learner.learn("http://a/c/3", False)
    assert learner.verdict("http://a/c/4", 60.0) == Verdict(render=False)


HALF = """
const more = Array.from({length: 8}, (_, i) =>
  '<a href="/half/x' + i + '">x' + i + '</a>').join(' ');
document.getElementById('more').innerHTML = more;
"""


@pytest.mark.usefixtures("browser")
def test_pages_of_a_folder_met_while_it_is_probed_are_rendered_too(tmp_path: Path) -> None:
    pages = [f"/half/{i}" for i in range(8)]
    all_asked = threading.Event()

    def half(request: Request) -> Reply:
        if request.path == "/half.js":
            # Held until every page of the folder was fetched: the probes are still
            # rendering when the other pages ask what to do.
            all_asked.wait(30)
            return Reply(body=HALF, content_type="application/javascript")
        if request.path == "/robots.txt":
            return Reply(404, "")
        if all(site.count(p) for p in pages):
            all_asked.set()
        links = "".join(f'<a href="/half/{i}">page {i}</a> ' for i in range(8))
        text = "<p>" + "Server-side text of a page that a script completes. " * 20 + "</p>"
        return Reply(
            body=f"<html><head><title>h</title></head><body>{text}{links}"
            '<div id="more"></div><script src="/half.js"></script></body></html>'
        )

    with Site() as site:
        site.fallback = half
        got = crawl([site.url(p) for p in pages], tmp_path / "o.jsonl", render="auto",
                    max_depth=0, concurrency=8, per_host=8)  # fmt: skip
    assert all_asked.is_set()
    assert set(got) == set(pages)
    reasons = sorted(str(r["render_reason"]) for r in got.values())
    assert all(r["rendered"] is True for r in got.values()), reasons
    assert set(reasons) <= {"probe", "learned"} and "learned" in reasons, reasons


# -- a page its script moves elsewhere ----------------------------------------------------


def moving(request: Request) -> Reply:
    path = request.path
    if path == "/robots.txt":
        return Reply(404, "")
    if path == "/":
        return Reply(body='<html><body><a href="/to-page">p</a> <a href="/to-file">f</a>'
                          ' <a href="/to-quiet">q</a></body></html>')  # fmt: skip
    if path == "/to-quiet":  # says nofollow: its links stay unfollowed, moved or not
        return Reply(body='<html><head><meta name="robots" content="nofollow"></head><body>'
                          '<a href="/c1">c1</a><script>location.href = "/dest2";</script>'
                          "</body></html>")  # fmt: skip
    if path in ("/to-page", "/to-file"):
        own = "a" if path == "/to-page" else "b"
        target = "/dest" if path == "/to-page" else "/file.bin"
        return Reply(body=f'<html><body><h1>{path}</h1><a href="/{own}1">1</a> '
                          f'<a href="{own}2">2</a><script>location.href = "{target}";</script>'
                          "</body></html>")  # fmt: skip
    if path in ("/dest", "/dest2"):
        return Reply(body='<html><body><h1>dest</h1><a href="/d1">d1</a></body></html>')
    if path == "/file.bin":
        return Reply(body=b"\x00" * 512, content_type="application/octet-stream")
    return Reply(body=f"<html><body><h1>{path}</h1></body></html>")


@pytest.mark.usefixtures("browser")
def test_a_page_its_script_moves_keeps_the_links_it_was_served_with(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = moving
        got = crawl(site.url("/"), tmp_path / "o.jsonl", render="always", max_depth=2)
    moved = got["/to-page"]
    assert moved["final_url"] == site.url("/dest") and moved["rendered"] is True, moved
    download = got["/to-file"]
    assert download["final_url"] == site.url("/file.bin"), download
    assert download["rendered"] is False and download["bytes"] == 512, download
    # The links of both documents as served are followed, and the destination's own.
    assert {"/a1", "/a2", "/b1", "/b2", "/d1"} <= set(got), sorted(got)
    assert got["/to-quiet"]["final_url"] == site.url("/dest2") and "/c1" not in got
