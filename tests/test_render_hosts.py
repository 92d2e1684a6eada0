"""A render mode per host: ``[hosts."NAME"] render = "never"|"auto"|"always"`` in
``--config FILE``, ``Crawler(hosts={NAME: HostSettings(render=...)})``.

Two hosts, A (127.0.0.1) and B (127.0.0.2), serve the same page: static text and links, and
a script that changes its h1 from "static" to "built". A host's own mode wins over
``--render`` for its pages, both ways; a host that asks for rendering starts the browser
even under ``--render never``.

Under CI a missing browser is a failure; elsewhere the tests are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rendering import records, shoal
from sites import Reply, Site

pytestmark = pytest.mark.usefixtures("browser")


# A page that stands on its own (text, links): --render auto leaves it static; its script
# changes only the h1, so a rendered record says "built" and a plain one "static".
TEXT = "A page of its own with enough words to read. " * 10
PAGE = (
    "<!doctype html><html><head><title>t</title></head><body><h1>static</h1>"
    f"<p>{TEXT}</p><a href='/x'>x</a> <a href='/y'>y</a> <a href='/z'>z</a>"
    "<script>document.querySelector('h1').textContent = 'built';</script></body></html>"
)


@pytest.fixture
def two_hosts() -> Iterator[tuple[Site, Site]]:
    routes = {"/": Reply(body=PAGE), "/robots.txt": Reply(404, "")}
    with Site(dict(routes)) as a, Site(dict(routes), host="127.0.0.2") as b:
        yield a, b


def crawl(a: Site, b: Site, work: Path, config: str, *args: str) -> dict[str, dict[str, object]]:
    (work / "crawl.toml").write_text(config)
    done = shoal("crawl", a.url("/"), b.url("/"), "-o", "pages.jsonl", "--max-depth", "0",
                 "--extract", "h=h1::text", "--no-state", "--config", "crawl.toml",
                 *args, cwd=work, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"a" if r["url"] == a.url("/") else "b": r for r in records(work / "pages.jsonl")}


def test_a_host_set_to_never_is_not_rendered_under_render_always(
    tmp_path: Path, two_hosts: tuple[Site, Site]
) -> None:
    a, b = two_hosts
    got = crawl(a, b, tmp_path, '[hosts."127.0.0.2"]\nrender = "never"\n', "--render", "always")
    assert (got["a"]["rendered"], got["a"]["h"], got["a"]["render_reason"]) == (
        True, "built", "always"
    )  # fmt: skip
    assert (got["b"]["rendered"], got["b"]["h"]) == (False, "static"), got["b"]


def test_a_host_set_to_always_is_rendered_under_render_auto(
    tmp_path: Path, two_hosts: tuple[Site, Site]
) -> None:
    a, b = two_hosts
    got = crawl(a, b, tmp_path, '[hosts."127.0.0.2"]\nrender = "always"\n', "--render", "auto")
    # A follows --render auto: a page that stands on its own is not rendered.
    assert (got["a"]["rendered"], got["a"]["h"], got["a"]["render_reason"]) == (
        False, "static", "static"
    )  # fmt: skip
    assert (got["b"]["rendered"], got["b"]["h"], got["b"]["render_reason"]) == (
        True, "built", "always"
    )  # fmt: skip


def test_a_host_that_renders_starts_the_browser_under_render_never(
    tmp_path: Path, two_hosts: tuple[Site, Site]
) -> None:
    from shoal.crawler import Crawler, HostSettings

    a, b = two_hosts
    out = tmp_path / "p.jsonl"
    Crawler([a.url("/"), b.url("/")], output=str(out), state=None, progress=False,
            max_depth=0, extract={"h": "h1::text"},
            hosts={"127.0.0.2": HostSettings(render="always")}).run()  # fmt: skip
    got = {"a" if r["url"] == a.url("/") else "b": r for r in records(out)}
    assert (got["a"]["rendered"], got["a"]["h"]) == (False, "static"), got["a"]
    assert (got["b"]["rendered"], got["b"]["h"]) == (True, "built"), got["b"]


def test_a_bad_render_mode_for_a_host_is_refused(tmp_path: Path) -> None:
    from shoal import UsageError
    from shoal.crawler import Crawler, HostSettings

    (tmp_path / "crawl.toml").write_text('[hosts."a.example"]\nrender = "sometimes"\n')
    done = shoal("crawl", "http://a.example/", "--config", "crawl.toml", "--no-state",
                 cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "render must be never, auto or always (got 'sometimes')" in done.stderr
    with pytest.raises(UsageError, match="render must be never, auto or always"):
        Crawler("http://a.example/", state=None, hosts={"a.example": {"render": "sometimes"}})
    with pytest.raises(UsageError, match="render must be never, auto or always"):
        Crawler("http://a.example/", state=None,
                hosts={"a.example": HostSettings(render="yes")})  # fmt: skip
