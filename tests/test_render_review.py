"""--render after review of kept tabs and the page's waits (#18).

- An http:// page stays http:// in the browser (Chromium's HTTPS-Upgrades would load it
  over https, from another server or none): seen through a forward proxy, since loopback
  addresses are never upgraded.
- The page a kept tab leaves behind stops (loads, timers, frames; what its unload
  handlers send is not sent): none of its requests is served, or archived, as the next
  page's.
- A render hook that registers on the page (``expose_function``) runs on every page:
  with a hook, each page has a tab of its own.
- The waits hold when the page replaces what they use (``addEventListener``,
  ``MutationObserver``): the init script took the browser's own first.

Under CI a missing browser is a failure; elsewhere the browser tests are skipped.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any

import pytest

from rendering import CHROMIUM
from shoal import Crawler
from shoal.crawler import _render
from sites import Reply, Request, Site

pytestmark = pytest.mark.usefixtures("browser")


def page(title: str, body: str = "", head: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}</body></html>"
    )


def built(title: str, link: str | None, extra: str = "") -> str:
    anchor = f"<a href='{link}'>{link}</a>" if link else ""
    return page(
        title,
        "<div id=app></div><script>document.getElementById('app').innerHTML = "
        f'"<h1>{title}</h1>{anchor}";</script>{extra}',
    )


def crawl(start: str, out: Path, **options: Any) -> list[dict[str, Any]]:
    import json

    options.setdefault("render", "always")
    options.setdefault("render_concurrency", 1)
    options.setdefault("concurrency", 1)
    options.setdefault("retries", 0)
    Crawler(start, output=str(out), state=None, progress=False, browser=CHROMIUM, **options).run()
    if out.suffix != ".jsonl":
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_an_http_page_is_not_upgraded_to_https(tmp_path: Path) -> None:
    seen: list[str] = []

    def proxied(request: Request) -> Reply:
        seen.append(request.path)
        if request.path.endswith("/robots.txt"):
            return Reply(404, "")
        if request.path.endswith("/app.js"):
            script = "document.getElementById('p').textContent += ' app.js ran';"
            return Reply(body=script, content_type="application/javascript")
        return Reply(
            body=page(
                "p",
                "<h1 id=p></h1><script src=/app.js></script><script>"
                "document.getElementById('p').textContent += location.protocol;</script>",
            )
        )

    with Site({}) as proxy:
        proxy.fallback = proxied
        out = crawl(
            "http://shoal-upgrade.example.com/", tmp_path / "p.jsonl", proxy=proxy.origin,
            max_depth=0, extract={"p": "#p::text"},
        )  # fmt: skip
    assert len(out) == 1 and out[0]["rendered"] is True, out
    # The script ran (from the http:// server), and the page saw itself on http:.
    assert out[0]["p"] == " app.js ranhttp:", out[0]
    assert any(path.endswith("/app.js") for path in seen), seen


def test_the_page_a_kept_tab_leaves_is_never_served_as_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept: list[tuple[str, str]] = []
    keep = _render._keep
    lock = threading.Lock()

    def noted(job: Any, request: Any, got: Any) -> None:
        with lock:
            kept.append((job.url, request.url))
        keep(job, request, got)

    monkeypatch.setattr(_render, "_keep", noted)
    poll = (
        "<script>setInterval(() => fetch('/api/poll?from=' + location.pathname), 1);"
        "addEventListener('pagehide', () => fetch('/api/bye?from=' + location.pathname,"
        " {keepalive: true}));</script>"
    )
    routes: dict[str, object] = {
        "/": built("home", "/a"),
        "/a": built("a", "/b", poll),
        "/b": built("b", "/c", poll),
        "/c": built("c", "/d", poll),
        "/d": built("d", None),
        "/robots.txt": Reply(404, ""),
    }
    with Site(routes) as site:  # type: ignore[arg-type]
        site.fallback = lambda r: Reply(body="{}", content_type="application/json")
        crawl(site.url("/"), tmp_path / "p.warc.gz", render_wait_for="h1")
        origin = site.origin
    wrong = collections.Counter()
    for page_url, url in kept:
        if "from=" in url and url.split("from=")[-1] != page_url.removeprefix(origin):
            wrong[(url.removeprefix(origin), page_url.removeprefix(origin))] += 1
    assert not wrong, wrong


def test_a_render_hook_that_registers_on_the_page_runs_on_every_page(tmp_path: Path) -> None:
    links = "".join(f"<a href='/p{i}'>p{i}</a>" for i in range(4))
    routes: dict[str, object] = {"/": page("home", "<h1>home</h1>" + links)}
    routes.update({f"/p{i}": page(f"p{i}", f"<h1>p{i}</h1>") for i in range(4)})
    routes["/robots.txt"] = Reply(404, "")

    async def hook(browser_page: Any) -> None:
        await browser_page.expose_function("shoalSeen", lambda x: x)

    with Site(routes) as site:  # type: ignore[arg-type]
        out = crawl(site.url("/"), tmp_path / "p.jsonl", render_hook=hook)
    assert len(out) == 5
    for record in out:
        assert record["error"] is None and record["rendered"] is True, record


def test_the_waits_hold_when_the_page_replaces_what_they_use(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(request: Request) -> Reply:
        release.wait(2)  # a slow script: the load event comes once it has
        return Reply(body="1;", content_type="application/javascript")

    routes: dict[str, object] = {
        "/": page(
            "replaced",
            "<a href='/o'>o</a><h1>x</h1><script>window.addEventListener = function () {};"
            "</script><script async src='/slow.js'></script>",
        ),
        "/o": page(
            "observer",
            "<script>window.MutationObserver = undefined; setTimeout(() => "
            "document.body.insertAdjacentHTML('beforeend', '<h1>late</h1>'), 300);</script>",
        ),
        "/slow.js": slow,
        "/robots.txt": Reply(404, ""),
    }
    done = threading.Event()
    out: list[dict[str, Any]] = []

    def run() -> None:
        try:
            # A wait the page broke would last until the soft deadline (over 400 s).
            records = crawl(
                site.url("/"),
                tmp_path / "p.jsonl",
                render_wait_for="h1",
                render_timeout=600,
                extract={"h": "h1::text"},
            )
            out.extend(records)
        finally:
            done.set()

    with Site(routes) as site:  # type: ignore[arg-type]
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        finished = done.wait(120)
        release.set()
        worker.join(30)
    assert finished, "a broken wait held the page to its deadline"
    by = {str(r["url"]).rsplit("/", 1)[-1]: r for r in out}
    assert by[""]["rendered"] is True and by[""]["h"] == "x", by[""]
    assert by["o"]["error"] is None and by["o"]["h"] == "late", by["o"]
