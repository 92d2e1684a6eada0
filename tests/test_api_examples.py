"""Every ```python block of docs/api.md runs, and passes its own asserts.

Each block runs as a script in a subprocess of its own (a fresh interpreter, a temporary
working directory for the files it writes). Blocks that crawl use the placeholder
``https://example.com/``, which this test replaces with the URL of a local site served
from tests/sites.py (``/`` links to ``/a``, ``/b`` and ``/docs/c.html``; ``/a`` has an h1), so
no example leaves the machine.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from redis_server import RedisServer
from sites import Reply, Request, Site, html

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
PLACEHOLDER = "https://example.com/"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), re.M | re.S)
LINKED = ("/", "/a", "/b", "/docs/c.html")  # what a crawl from / reaches
SEARCH = """<html><body><form action="/search" method="post">
<input type="hidden" name="csrf" value="t0ken"><input name="q"><button>Go</button>
</form></body></html>"""


def _search(request: Request) -> Reply:
    """/search: a search form (GET) that answers a POST with its CSRF token by links to
    two products per term."""
    if request.method != "POST":
        return Reply(body=SEARCH)
    form = parse_qs(request.body.decode())
    if form.get("csrf") != ["t0ken"]:
        return Reply(403, "bad token")
    term = form.get("q", [""])[0]
    hits = "".join(f'<a class="hit" href="/product/{term}-{i}">{i}</a>' for i in (1, 2))
    return Reply(body=f"<html><body>{hits}</body></html>")


PAGES: dict[str, Any] = {
    "/": html("home", "/a", "/b", "/docs/c.html"),
    "/a": html("A", extra="<h1>Hello</h1>"),
    "/b": html("B"),
    "/docs/c.html": html("C"),
    # Reached only by the requests-and-routes example (nothing links here).
    "/search": _search,
    **{
        f"/product/{t}-{i}": html("p", extra=f"<h1>{t} {i}</h1>")
        for t in ("red", "blue")
        for i in (1, 2)
    },
}


def _shoal_names_used(code: str) -> set[str]:
    """The names an example takes from shoal: ``shoal.X`` and ``from shoal[.sub] import X``
    (whole names: ``map`` is not found in ``MapIterator`` or in a comment)."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "shoal":
                used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "shoal":
            used.update(alias.name for alias in node.names)
    return used


def test_the_doc_has_an_example_per_public_class() -> None:
    used = set().union(*(_shoal_names_used(code) for code in BLOCKS))
    for name in ("Crawler", "Page", "CrawlResult", "CrawlOptions", "Pool", "TaskContext",
                 "RetryPolicy", "ErrorPolicy", "TaskErrorGroup", "Writer", "Pipeline", "Stage",
                 "map", "MapIterator", "PoolStats", "ShutdownReport", "InvalidURL",
                 "Request"):  # fmt: skip
        assert name in used, name
    assert _shoal_names_used("import shoal\n# map MapIterator\nshoal.MapIterator") == {
        "MapIterator"
    }


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_runs(code: str, tmp_path: Path) -> None:
    with Site(PAGES) as site:
        script = tmp_path / "example.py"
        script.write_text(code.replace(PLACEHOLDER, site.url("/")))
        env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert done.returncode == 0, done.stdout + done.stderr


README = DOC.parent.parent / "README.md"


def test_readme_on_page_example_follows_only_the_urls_it_yields(tmp_path: Path) -> None:
    """The README's crawler example yields the /docs/ links as the URLs to follow: run it
    against a local site and check that no other link of the page was fetched."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.M | re.S)
    (code,) = [b for b in blocks if "on_page=on_page" in b and PLACEHOLDER in b]
    with Site(PAGES) as site:
        script = tmp_path / "example.py"
        script.write_text(code.replace(PLACEHOLDER, site.url("/")))
        env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        fetched = set(site.paths()) - {"/robots.txt", "/sitemap.xml"}
    assert done.returncode == 0, done.stdout + done.stderr
    assert fetched == {"/", "/docs/c.html"}
    records = (tmp_path / "docs.jsonl").read_text().splitlines()
    assert len(records) == 2


def test_every_public_method_has_a_docstring() -> None:
    import inspect

    import shoal

    missing = []
    for name in [*shoal.__all__, "map"]:  # map: public, kept out of __all__
        obj = getattr(shoal, name)
        if not inspect.isclass(obj):
            if callable(obj) and not obj.__doc__:
                missing.append(name)
            continue
        if not obj.__doc__:
            missing.append(name)
        if issubclass(obj, BaseException):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            func = value.fget if isinstance(value, property) else value
            func = getattr(func, "__func__", func)
            if callable(func) and not getattr(func, "__doc__", None):
                missing.append(f"{name}.{attr}")
    assert not missing, missing


def test_readme_shared_crawl_example_runs_as_two_workers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The README's Python worker of a shared crawl, run as two processes at once (each in
    its own folder, so its own output and worker id): every page once across both parts."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.M | re.S)
    (code,) = [b for b in blocks if "crawl_id=" in b]
    with Site(PAGES) as site:
        code = code.replace(PLACEHOLDER, site.url("/"))
        code = code.replace("redis://queue-host:6379/0", redis_server.url)
        env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
        workers = []
        for name in ("w1", "w2"):
            folder = tmp_path / name
            folder.mkdir()
            (folder / "worker.py").write_text(code)
            workers.append(
                subprocess.Popen(
                    [sys.executable, "worker.py"],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        outs = [w.communicate(timeout=120)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outs
        assert site.count("/robots.txt") == 1
    urls = []
    for name in ("w1", "w2"):
        part = tmp_path / name / "part-1.jsonl"
        urls += [json.loads(line)["url"] for line in part.read_text().splitlines()]
    assert sorted(urls) == sorted(site.url(p) for p in LINKED)
