"""--render auto, the static crawl's hint, and what acts on a rendered page (#18).

auto fetches every page over HTTP and renders only those that look built by script (or
those of a host/folder where rendering was learned to find more): the app-shell shop is
crawled completely, while the static pages of a mixed site are not rendered (counted on
the server: the browser asks for a page's scripts only when it renders it). A crawl
without --render says in its summary when pages look script-built. --render-scroll,
--render-script and Crawler(render_hook=...) act on the page before its DOM is read.

Under CI a missing browser is a failure; elsewhere the browser tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from rendering import LISTS, PER_LIST, by_path, crawl, shoal, shop
from shoal import Crawler
from shoal.crawler._scripted import RenderLearner, script_built
from sites import Reply, Request, Site

# -- the app-shell shop under auto -------------------------------------------------------


@pytest.mark.usefixtures("browser")
def test_auto_crawls_the_app_shell_shop_completely(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = shop
        done = shoal("crawl", site.url("/"), "-o", "pages.jsonl", "--render", "auto",
                     "--extract", "name=h1::text", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    got = by_path(tmp_path / "pages.jsonl")
    items = {f"/item/{i}" for i in range(1, LISTS * PER_LIST + 1)}
    lists = {f"/list/{n}" for n in range(2, LISTS + 1)}
    assert set(got) == {"/", *lists, *items}
    for path, record in got.items():
        assert record["rendered"] is True and record["render_reason"] == "app-shell", record
        want = f"Item {path.split('/')[2]}" if path in items else f"List {path[6:] or 1}"
        assert record["name"] == want, record
    assert "--render auto" not in done.stderr  # the hint is for crawls that do not render


# -- a mixed site: 80 % static pages carrying analytics, 20 % app shells -------------------

ANALYTICS = "<script src='/analytics.js'></script>"
APP = """
const n = location.pathname.split('/')[2];
document.getElementById('app').innerHTML =
  '<h1>App ' + n + '</h1><a href="/blog/1">blog</a> <a href="/app/' + n + '/more">more</a>';
"""


def mixed(request: Request) -> Reply:
    path = request.path
    if path == "/analytics.js":
        return Reply(body="window.dataLayer = [];", content_type="application/javascript")
    if path == "/app.js":
        return Reply(body=APP, content_type="application/javascript")
    if path.startswith("/app/"):
        return Reply(body='<html><head><title>app</title></head><body><div id="app"></div>'
                          '<script src="/app.js"></script></body></html>')  # fmt: skip
    if path in ("/", *(f"/blog/{i}" for i in range(1, 9))):
        links = "".join(f'<a href="/blog/{i}">post {i}</a> ' for i in range(1, 9))
        links += '<a href="/app/1">app 1</a> <a href="/app/2">app 2</a>'
        text = "<p>" + "A static article that stands on its own. " * 30 + "</p>"
        return Reply(body=f"<html><head><title>{path}</title>{ANALYTICS}</head>"
                          f"<body><h1>{path}</h1>{text}{links}</body></html>")  # fmt: skip
    return Reply(404, "no")


@pytest.mark.usefixtures("browser")
def test_auto_leaves_the_static_pages_of_a_mixed_site_unrendered(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = mixed
        got = crawl(site.url("/"), tmp_path / "o.jsonl", render="auto", max_depth=1,
                    extract={"name": "h1::text"})  # fmt: skip
        hits = site.paths()
    static = ["/", *(f"/blog/{i}" for i in range(1, 9))]
    assert set(got) == {*static, "/app/1", "/app/2"}
    for path in static:
        assert got[path]["rendered"] is False and got[path]["render_reason"] == "static"
        assert got[path]["name"] == path
    for n in (1, 2):
        app = got[f"/app/{n}"]
        assert app["rendered"] is True and app["render_reason"] == "app-shell", app
        assert app["name"] == f"App {n}"
    # The browser asked for the app's script once per app page, and for the analytics
    # only to learn (a probe of the host's top level, two of /blog/), not for every page.
    assert hits["/app.js"] == 2
    assert hits["/analytics.js"] <= 3


# -- learning: pages that look whole, but whose script adds much ---------------------------

HALF = """
const more = Array.from({length: 8}, (_, i) =>
  '<a href="/half/x' + i + '">x' + i + '</a>').join(' ');
document.getElementById('more').innerHTML = more;
"""


def half(request: Request) -> Reply:
    if request.path == "/half.js":
        return Reply(body=HALF, content_type="application/javascript")
    if request.path == "/robots.txt":
        return Reply(404, "")
    links = "".join(f'<a href="/half/{i}">page {i}</a> ' for i in range(8))
    text = "<p>" + "Server-side text of a page that a script completes. " * 20 + "</p>"
    return Reply(
        body=f"<html><head><title>h</title></head><body>{text}{links}"
        '<div id="more"></div><script src="/half.js"></script></body></html>'
    )


@pytest.mark.usefixtures("browser")
def test_auto_learns_to_render_a_folder_where_rendering_finds_more(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = half
        got = crawl(site.url("/half/0"), tmp_path / "o.jsonl", render="auto", max_depth=1)
    assert script_built(half(Request("/half/0", {})).body) is None  # type: ignore[arg-type]
    reasons = sorted(str(r["render_reason"]) for r in got.values())
    # The first page was rendered to learn and found 8 more links: the folder is
    # rendered from then on, and the links only scripts build were all followed.
    assert got["/half/0"]["render_reason"] == "probe" and got["/half/0"]["rendered"] is True
    assert {f"/half/x{i}" for i in range(8)} <= set(got)
    assert reasons == ["learned"] * (len(got) - 1) + ["probe"], reasons


def test_the_learner_is_bounded_and_stops_after_probes_that_gain_nothing() -> None:
    learner = RenderLearner(probes=2, max_prefixes=3)
    first, second = learner.verdict("http://a/b/1"), learner.verdict("http://a/b/2")
    assert first.probe and second.probe
    # Both probes are out and no wait is left: a probe as well, never left static.
    assert learner.verdict("http://a/b/3").probe
    learner.learn("http://a/b/1", False)
    learner.learn("http://a/b/2", None)  # a failed render: its probe is handed out again
    assert learner.verdict("http://a/b/4").probe
    learner.learn("http://a/b/4", False)
    assert learner.verdict("http://a/b/5") == learner.verdict("http://a/b/6")
    assert not learner.verdict("http://a/b/5").render
    for host in "cdefg":
        learner.verdict(f"http://{host}/x/1")
    assert len(learner) == 3


def test_analytics_on_a_full_page_is_not_script_built() -> None:
    full = mixed(Request("/blog/1", {})).body
    assert isinstance(full, str) and script_built(full) is None
    shell = '<html><body><div id="root"></div><script src="/main.js"></script></body></html>'
    assert script_built(shell) == "app-shell"
    asks = (
        "<html><body><noscript>You need to enable JavaScript to run this app."
        '</noscript><p>Loading</p><a href="/x">x</a><script src="/m.js"></script>'
    )
    assert script_built(asks) == "noscript"
    # Hostile: unclosed elements and tags are read in one pass.
    assert script_built("<script>" + "<" * 300_000) == "app-shell"


# -- the hint of a crawl without --render ------------------------------------------------


def test_a_static_crawl_of_script_built_pages_suggests_render_auto(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = shop
        done = shoal("crawl", site.url("/"), "-o", "o.jsonl", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        url = site.url("/")
    assert "pages look built by JavaScript (app-shell)" in done.stderr
    assert f"e.g. {url}" in done.stderr and "try --render auto" in done.stderr


def test_a_static_site_with_analytics_gets_no_hint(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = mixed
        done = shoal("crawl", site.url("/"), "-o", "o.jsonl", "--exclude", "/app/",
                     "--json-summary", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    assert summary["pages"] == 9
    assert not any("JavaScript" in n for n in summary["notes"])


# -- scroll, script, hook ----------------------------------------------------------------

FEED = """<!doctype html><html><head><title>feed</title></head><body><div id="feed"></div>
<script>
let page = 0, busy = false;
async function more() {
  if (busy || page >= 4) return;
  busy = true;
  page += 1;
  const d = await (await fetch('/api/feed/' + page)).json();
  document.getElementById('feed').insertAdjacentHTML('beforeend', d.map(i =>
    '<div style="height:400px"><a href="/post/' + i + '">post ' + i + '</a></div>').join(''));
  busy = false;
}
window.addEventListener('scroll', () => {
  if (innerHeight + scrollY >= document.body.scrollHeight - 200) more();
});
more();
</script></body></html>"""

MORE = """<!doctype html><html><head><title>more</title></head><body>
<ul id="list"></ul><button id="more">load more</button>
<script>
let page = 0;
async function load() {
  page += 1;
  const d = await (await fetch('/api/feed/' + page)).json();
  document.getElementById('list').insertAdjacentHTML('beforeend',
    d.map(i => '<li><a href="/post/' + i + '">post ' + i + '</a></li>').join(''));
  if (page >= 4) document.getElementById('more').remove();
}
document.getElementById('more').addEventListener('click', load);
load();
</script></body></html>"""

CLICK_MORE = """
if (location.pathname === '/feed') throw new Error('no button here');
for (let round = 0; round < 10; round++) {
  const button = document.getElementById('more');
  if (!button) break;
  const before = document.querySelectorAll('#list li').length;
  button.click();
  for (let i = 0; i < 100 && document.querySelectorAll('#list li').length === before; i++)
    await new Promise(r => setTimeout(r, 20));
}
"""


def feed(request: Request) -> Reply:
    path = request.path
    if path == "/feed":
        return Reply(body=FEED)
    if path == "/more":
        return Reply(body=MORE)
    if path.startswith("/api/feed/"):
        n = int(path.split("/")[3])
        return Reply(body=json.dumps(list(range(5 * n - 4, 5 * n + 1))),
                     content_type="application/json")  # fmt: skip
    if path.startswith("/post/"):  # not HTML: fetched, never rendered (a quicker test)
        return Reply(body=f"post {path}", content_type="text/plain")
    return Reply(404, "")


ALL_POSTS = {f"/post/{i}" for i in range(1, 21)}


def posts(got: dict[str, dict[str, Any]]) -> set[str]:
    return {p for p in got if p.startswith("/post/")}


@pytest.mark.usefixtures("browser")
def test_render_scroll_reaches_the_end_of_an_infinite_list(tmp_path: Path) -> None:
    with Site() as site:
        site.fallback = feed
        got = crawl(site.url("/feed"), tmp_path / "o.jsonl", render="always", max_depth=1,
                    render_scroll=10)  # fmt: skip
    assert posts(got) == ALL_POSTS
    assert got["/feed"]["rendered"] is True


@pytest.mark.usefixtures("browser")
def test_render_script_clicks_load_more_and_a_throw_is_the_pages_error(tmp_path: Path) -> None:
    script = tmp_path / "more.js"
    script.write_text(CLICK_MORE)
    with Site() as site:
        site.fallback = feed
        done = shoal("crawl", site.url("/more"), site.url("/feed"), "-o", "o.jsonl",
                     "--render", "always", "--max-depth", "1", "--render-script", str(script),
                     cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    got = by_path(tmp_path / "o.jsonl")
    assert posts(got) == ALL_POSTS and got["/more"]["rendered"] is True
    record = got["/feed"]  # the script threw there: none of its posts were followed
    assert record["error"] == "render_script" and "no button here" in record["error_detail"]
    assert record["rendered"] is False


def test_a_missing_render_script_is_a_usage_error(tmp_path: Path) -> None:
    done = shoal("crawl", "http://127.0.0.1:9/", "--render", "always",
                 "--render-script", str(tmp_path / "nope.js"), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--render-script" in done.stderr and "nope.js" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_render_options_without_render_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="need render"):
        Crawler("http://127.0.0.1:9/", state=None, render_scroll=3)


@pytest.mark.usefixtures("browser")
def test_a_render_hook_acts_on_the_page_and_its_failures_are_recorded(tmp_path: Path) -> None:
    seen: list[str] = []

    async def click_more(page: Any) -> None:
        seen.append(page.url)
        while await page.locator("#more").count():
            before = await page.locator("#list li").count()
            await page.click("#more")
            await page.wait_for_function(
                f"() => document.querySelectorAll('#list li').length > {before}"
            )

    with Site() as site:
        site.fallback = feed
        got = crawl(site.url("/more"), tmp_path / "o.jsonl", render="always", max_depth=1,
                    render_hook=click_more)  # fmt: skip
    assert posts(got) == ALL_POSTS and seen == [site.url("/more")]

    async def broken_or_hung(page: Any) -> None:
        if page.url.endswith("/more"):
            raise ValueError("hook bug")
        await asyncio.sleep(3600)  # past the page's deadline: cancelled

    with Site() as site:
        site.fallback = feed
        Crawler([site.url("/more"), site.url("/feed")], state=None, progress=False,
                output=str(tmp_path / "bad.jsonl"), render="always", max_depth=0,
                render_timeout=10, render_hook=broken_or_hung).run()  # fmt: skip
    got = by_path(tmp_path / "bad.jsonl")
    for path, detail in (("/more", "hook bug"), ("/feed", "deadline")):
        record = got[path]
        assert record["error"] == "render_hook" and detail in record["error_detail"], record
