"""Requests survive: a pending POST with its body, headers, label and meta is kept by
every frontier (memory, the SQLite state file, Redis) and sent as it was made after a
kill -9 and a resume (#20)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from redis_server import RedisServer
from shoal import Request
from shoal.crawler import Candidate, JobKind, MemoryFrontier, SqliteFrontier
from shoal.state import StateStore
from sites import Reply, Site, html
from sites import Request as Got

SCRIPT = """
import sys
from shoal import Crawler, Request

site, out, phase, redis = sys.argv[1:5]
options = {}
if redis != "-":
    options = dict(redis=redis, crawl_id="c1", worker_id="w1", lease_ttl=1.0)
crawler = Crawler(site + "/", output=out, progress=False, robots=False, follow_links=False,
                  concurrency=2, **options)

@crawler.route(glob="/")
def start(page):
    if phase == "first":  # the resumed run must find the request in the state
        yield Request("/search", "POST", data={"q": "shoes", "n": "2"}, label="results",
                      meta={"q": "shoes", "deep": [1, {"a": None}]},
                      headers={"X-Search": "yes"})

@crawler.route("results")
def results(page):
    r = page.request
    yield {"method": r.method, "label": r.label, "meta": r.meta, "body": r.body.decode(),
           "x": r.headers.get("X-Search"), "title": page.title}

crawler.run()
"""


class HeldSearch:
    """/search answers a POST; the first one is held until released (the worker is
    killed meanwhile)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.got: list[tuple[str, bytes, str | None]] = []

    def __call__(self, req: Got) -> Reply:
        self.got.append((req.method, req.body, req.headers.get("X-Search")))
        if not self.arrived.is_set():
            self.arrived.set()
            self.release.wait(60)
        return Reply(body=html("results"))


def run_killed_then_resumed(tmp_path: Path, redis: str | None) -> list[dict[str, object]]:
    script = tmp_path / "crawl.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.jsonl"
    held = HeldSearch()
    with Site({"/": html("home"), "/search": held}) as site:
        try:
            args = [sys.executable, str(script), site.origin, str(out)]
            first = subprocess.Popen([*args, "first", redis or "-"], stderr=subprocess.DEVNULL)
            try:
                assert held.arrived.wait(60), "the POST never came"
                if redis is None:
                    wait_for_request_row(Path(f"{out}.state.sqlite"), first)
            finally:
                first.kill()  # kill -9: the POST's lease is never committed
                first.wait(30)
            done = subprocess.run(
                [*args, "second", redis or "-"], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stderr
        finally:
            held.release.set()
    body = b"q=shoes&n=2"
    assert held.got == [("POST", body, "yes"), ("POST", body, "yes")]
    return [json.loads(line) for line in out.read_text().splitlines()]


def wait_for_request_row(state: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the state file holds the POST (committed with the page that gave it)."""
    pause = threading.Event()
    for _ in range(3000):  # bounded: ~30 s
        if state.exists():
            db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
            try:
                n = db.execute("SELECT count(*) FROM urls WHERE request IS NOT NULL").fetchone()
            except sqlite3.Error:
                n = (0,)
            finally:
                db.close()
            if n[0]:
                return
        assert proc.poll() is None, "the crawl ended before the test could kill it"
        pause.wait(0.01)
    raise AssertionError("the POST never reached the state file")


EXPECTED = {
    "method": "POST",
    "label": "results",
    "meta": {"q": "shoes", "deep": [1, {"a": None}]},
    "body": "q=shoes&n=2",
    "x": "yes",
    "title": "results",
}


def test_kill_9_and_resume_keeps_a_pending_post_sqlite(tmp_path: Path) -> None:
    records = run_killed_then_resumed(tmp_path, None)
    assert [r for r in records if "method" in r] == [EXPECTED]


def test_kill_9_and_resume_keeps_a_pending_post_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    records = run_killed_then_resumed(tmp_path, redis_server.url)
    assert [r for r in records if "method" in r] == [EXPECTED]


def _encoded(meta: dict[str, object]) -> str:
    fields = Request("http://a.test/s", "POST", data={"q": "1"}, label="L", meta=meta)._encode()
    assert fields is not None
    return fields


@pytest.mark.parametrize("backend", ["memory", "sqlite", "sqlite-spilled"])
def test_every_field_comes_back_from_the_frontier(tmp_path: Path, backend: str) -> None:
    """A request's fields come back with its lease; a plain GET's row holds nothing more;
    the same URL as a GET and as a POST are two jobs."""
    fields = _encoded({"k": "v"})
    candidates = [
        Candidate("http://a.test/s", 1, "http://a.test/"),
        Candidate("http://a.test/s", 1, "http://a.test/", JobKind.PAGE, fields),
        Candidate("http://a.test/s", 1, "http://a.test/", JobKind.PAGE, fields),  # a dup
        Candidate("http://a.test/s", 1, "http://a.test/", JobKind.PAGE, _encoded({"k": "w"})),
    ]
    store = None
    if backend == "memory":
        frontier: MemoryFrontier = MemoryFrontier(robots=False)
    else:
        store = StateStore.open(tmp_path / "s.sqlite", {"start_urls": ["http://a.test/"]})
        limit = 1 if backend == "sqlite-spilled" else 100
        frontier = SqliteFrontier(store, robots=False, memory_limit=limit)
    try:
        added = frontier.submit(candidates)
        assert [c.request for c in added] == [None, fields]  # meta is not identity
        if store is not None:
            frontier.commit([], output=None)  # the new rows reach the file
            rows = store._read.execute("SELECT url, request FROM urls ORDER BY seq").fetchall()
            assert rows == [("http://a.test/s", None), ("http://a.test/s", fields)]
        got = []
        for _ in range(10):
            leases, _ = frontier.lease(10)
            got += leases
            if len(got) == 2:
                break
        assert sorted((lease.request or "") for lease in got) == ["", fields]
        decoded = Request._decode("http://a.test/s", fields)
        assert (decoded.method, decoded.body, decoded.label, decoded.meta) == (
            "POST",
            b"q=1",
            "L",
            {"k": "v"},
        )
    finally:
        frontier.close()
        if store is not None:
            store.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_retried_post_is_sent_again_as_it_was(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """A 503 retried: the request's fields ride the retry (Redis keeps them in the entry
    its retry queue holds, whose text has a line break)."""
    got: list[tuple[str, bytes]] = []

    def flaky(req: Got) -> Reply:
        got.append((req.method, req.body))
        if len(got) == 1:
            return Reply(503, "busy", {"Retry-After": "0"})
        return Reply(body=html("ok"))

    options: dict[str, object] = {}
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        options = {"redis": server.url, "crawl_id": "c1", "worker_id": "w1"}
    with Site({"/": html("home"), "/s": flaky}) as site:
        from shoal.crawler import Crawler

        def on_page(page: object) -> object:
            from shoal.crawler import Page

            assert isinstance(page, Page)
            if page.url.endswith("/"):
                return [Request("/s", "POST", data={"a": "1"}, meta={"m": "x\ny"})]
            return [{"meta": page.request.meta, "method": page.request.method}]

        out = tmp_path / "out.jsonl"
        Crawler(
            site.url("/"), output=str(out), on_page=on_page, progress=False, robots=False,
            retry_backoff=0.01, **options,  # type: ignore[arg-type]
        ).run()  # fmt: skip
    assert got == [("POST", b"a=1"), ("POST", b"a=1")]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [{"meta": {"m": "x\ny"}, "method": "POST"}]
