"""Durable crawls: kill -9 at random points, resume, and exactly-once output."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from sites import Reply, Request, Site, html

PAGES = 120
CONCURRENCY = 4
ROBOTS = Reply(body="User-agent: *\nAllow: /\n", content_type="text/plain")


def graph_site(padding: int = 0) -> Site:
    """PAGES pages, each linking to four others; every page reachable from /p0."""
    rng = random.Random(5)
    routes: dict[str, object] = {}
    for i in range(PAGES):
        links = {f"/p{(i + 1) % PAGES}", *(f"/p{rng.randrange(PAGES)}" for _ in range(3))}
        routes[f"/p{i}"] = _slow(html(f"page {i}", *sorted(links), extra="z" * padding))
    routes["/robots.txt"] = ROBOTS
    return Site(routes)  # type: ignore[arg-type]


def _slow(body: str):  # type: ignore[no-untyped-def]
    def reply(req: Request) -> Reply:
        threading.Event().wait(0.004)  # a little latency so kills land mid-crawl
        return Reply(body=body)

    return reply


def shoal_cmd(site: Site, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shoal",
        "crawl",
        site.url("/p0"),
        "-o",
        str(out),
        "--concurrency",
        str(CONCURRENCY),
        "-q",
        *extra,
    ]


def wait_for_hits(site: Site, n: int, proc: subprocess.Popen[bytes]) -> None:
    """Block until the server has seen n page requests (or the crawl ended)."""
    done = threading.Event()

    def watch() -> None:
        while proc.poll() is None and sum(site.paths().values()) < n:
            done.wait(0.002)
        done.set()

    t = threading.Thread(target=watch)
    t.start()
    t.join(60)


def committed_urls(out: Path, state: Path) -> set[str]:
    """URLs whose records lie before the committed offset: the crawl's finished work."""
    db = sqlite3.connect(state)
    try:
        offset = int(db.execute("SELECT value FROM meta WHERE key='output_offset'").fetchone()[0])
    finally:
        db.close()
    data = out.read_bytes()[:offset]
    return {json.loads(line)["url"] for line in data.decode().splitlines()}


def check_output(out: Path, site: Site) -> list[dict[str, object]]:
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # no torn or partial line
    urls = Counter(r["url"] for r in records)
    assert max(urls.values()) == 1, [u for u, n in urls.items() if n > 1]  # exactly once
    assert set(urls) == {site.url(f"/p{i}") for i in range(PAGES)}  # every reachable page
    return records


def page_hits(site: Site) -> Counter[str]:
    return Counter({p: n for p, n in site.paths().items() if p != "/robots.txt"})


def kill_and_resume(tmp_path: Path, seed: int, kills: int = 2, fmt: str = "jsonl") -> None:
    rng = random.Random(seed)
    suffix = {"jsonl": "jsonl", "warc": "warc.gz", "sqlite": "sqlite"}[fmt]
    out = tmp_path / f"out.{suffix}"
    state = Path(f"{out}.state.sqlite")
    with graph_site() as site:
        for _ in range(kills):
            before = page_hits(site)
            proc = subprocess.Popen(shoal_cmd(site, out), stderr=subprocess.DEVNULL)
            wait_for_hits(site, sum(before.values()) + rng.randint(1, PAGES // 2), proc)
            proc.kill()
            proc.wait(30)
            if fmt == "jsonl":
                finished = committed_urls(out, state)
                resumed_from = page_hits(site)
        proc = subprocess.run(shoal_cmd(site, out), stderr=subprocess.PIPE, timeout=120)
        assert proc.returncode == 0, proc.stderr
        hits = page_hits(site)
        if fmt == "jsonl":
            check_output(out, site)
            # Nothing finished before the last kill was fetched again after it.
            again = {site.url(p) for p, n in hits.items() if n > resumed_from[p]}
            assert not (again & finished)
        repeats = sum(n - 1 for n in hits.values())
        # Only requests in flight, or fetched but still in the writer's queue (at most two
        # per worker) or batch, at each kill are fetched again.
        assert repeats <= kills * 4 * CONCURRENCY, hits
        if fmt == "warc":
            check_warc(out, site)
        if fmt == "sqlite":
            db = sqlite3.connect(out)
            urls = [u for (u,) in db.execute("SELECT url FROM records")]
            db.close()
            assert sorted(urls) == sorted({site.url(f"/p{i}") for i in range(PAGES)})


def check_warc(out: Path, site: Site) -> None:
    from warcio.archiveiterator import ArchiveIterator

    targets: Counter[str] = Counter()
    with out.open("rb") as stream:
        for record in ArchiveIterator(stream, check_digests="raise"):
            if record.rec_type == "response":
                targets[record.rec_headers.get_header("WARC-Target-URI")] += 1
                record.content_stream().read()
    # robots.txt is archived too, once per run (as wget does); each page exactly once.
    robots = site.url("/robots.txt")
    assert targets.pop(robots, 0) >= 1
    assert set(targets) == {site.url(f"/p{i}") for i in range(PAGES)}
    assert max(targets.values()) == 1
    warcio = Path(sys.executable).parent / "warcio"  # the CLI installed beside this python
    for command in ("check", "index"):
        done = subprocess.run(
            [str(warcio), command, str(out)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("seed", range(3))
def test_kill_9_then_resume_is_exactly_once(tmp_path: Path, seed: int) -> None:
    kill_and_resume(tmp_path, seed)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(100, 125))
def test_kill_9_stress(tmp_path: Path, seed: int) -> None:
    kill_and_resume(tmp_path, seed, kills=3)


@pytest.mark.parametrize("fmt", ["warc", "sqlite"])
def test_kill_9_resume_other_outputs(tmp_path: Path, fmt: str) -> None:
    kill_and_resume(tmp_path, seed=7, kills=2, fmt=fmt)


def test_sigint_saves_and_resume_refetches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with graph_site() as site:
        proc = subprocess.Popen(shoal_cmd(site, out), stderr=subprocess.PIPE)
        wait_for_hits(site, PAGES // 3, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        status = subprocess.run(
            [sys.executable, "-m", "shoal", "status", f"{out}.state.sqlite", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        report = json.loads(status.stdout)
        assert report["done"] > 0 and report["queued"] > 0 and not report["running"]
        proc2 = subprocess.run(shoal_cmd(site, out), stderr=subprocess.PIPE, timeout=120)
        assert proc2.returncode == 0, proc2.stderr
        check_output(out, site)
        assert max(page_hits(site).values()) == 1  # the drained run lost nothing in flight


def _file_size_limit(limit: int):  # type: ignore[no-untyped-def]
    def apply() -> None:  # in the child: writes past the limit fail with EFBIG, like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("limit", [20_000, 400_000])
def test_disk_full_stops_cleanly_and_resumes(tmp_path: Path, limit: int) -> None:
    """20 KB: the state file cannot even be set up; 400 KB: the output or the state file
    fills up mid-crawl. Either way: a clear error, a non-zero exit, and a resume that
    completes the crawl with every page exactly once."""
    out = tmp_path / "out.jsonl"
    cmd_extra = ("--state", str(tmp_path / "s.sqlite"), "--save-bodies")
    with graph_site(padding=3000) as site:
        proc = subprocess.run(
            shoal_cmd(site, out, *cmd_extra),
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            preexec_fn=_file_size_limit(limit),
        )
        assert proc.returncode in (3, 4), proc.stderr
        assert "shoal: error:" in proc.stderr and (
            "disk" in proc.stderr or "too large" in proc.stderr
        ), proc.stderr
        if limit > 100_000:
            assert 0 < out.stat().st_size <= limit  # it got going before the disk filled up
        proc = subprocess.run(
            shoal_cmd(site, out, *cmd_extra), stderr=subprocess.PIPE, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        check_output(out, site)


def test_corrupt_and_foreign_state_files(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    state = tmp_path / "bad.sqlite"
    state.write_bytes(b"this is not a database" * 100)
    with graph_site() as site:
        proc = subprocess.run(
            shoal_cmd(site, out, "--state", str(state)), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 3 and "corrupt or not a shoal state file" in proc.stderr
        assert state.read_bytes().startswith(b"this is not")  # left as it was
        foreign = tmp_path / "foreign.sqlite"
        sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
        proc = subprocess.run(
            shoal_cmd(site, out, "--state", str(foreign)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 3 and "not a shoal state file" in proc.stderr
        assert sum(page_hits(site).values()) == 0


def test_state_made_with_other_scope_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with graph_site() as site:
        assert subprocess.run(shoal_cmd(site, out, "--max-pages", "5"), timeout=60).returncode == 0
        proc = subprocess.run(
            shoal_cmd(site, out, "--exclude", "p9"), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 3 and "--fresh" in proc.stderr
        assert "--exclude: none in the state, p9 now" in " ".join(proc.stderr.split())
        proc = subprocess.run(shoal_cmd(site, out, "--exclude", "p9", "--fresh"), timeout=120)
        assert proc.returncode == 0


def test_a_running_crawl_locks_its_state(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    gate = threading.Event()
    with graph_site() as site:
        body = site.routes["/p0"]
        site.routes["/p0"] = lambda req: (gate.wait(30), body(req))[1]  # type: ignore[operator]
        first = subprocess.Popen(shoal_cmd(site, out), stderr=subprocess.DEVNULL)
        try:
            wait_for_hits(site, 2, first)  # robots.txt and /p0: the first crawl is running
            second = subprocess.run(
                shoal_cmd(site, out), capture_output=True, text=True, timeout=60
            )
            # The output is locked first (exit 4), whatever state file the second names.
            assert second.returncode == 4, second.stderr
            assert "being written by another running crawl" in second.stderr
        finally:
            gate.set()
            first.wait(120)
        assert first.returncode == 0


def _unwritable_state_dir(tmp_path: Path, how: str) -> Path:
    """A directory the state file cannot be created in. Root ignores file modes (CI runs
    as root), but not a path that runs through a regular file: that fails for anyone."""
    if how == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root ignores file permissions")
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory\n")
    return blocker / "state"


@pytest.mark.parametrize("how", ["read-only", "under-a-file"])
def test_read_only_state_directory(tmp_path: Path, how: str) -> None:
    where = _unwritable_state_dir(tmp_path, how)
    out = tmp_path / "o.jsonl"
    try:
        with graph_site() as site:
            proc = subprocess.run(
                shoal_cmd(site, out, "--state", str(where / "s.sqlite")),
                capture_output=True,
                text=True,
                timeout=60,
            )
            hits = page_hits(site)
        assert proc.returncode == 3, proc.stderr
        assert f"cannot create the state file {where / 's.sqlite'}" in proc.stderr
        assert "Traceback" not in proc.stderr
        # Refused before any work: nothing fetched, no output, no stray file, the blocking
        # file untouched.
        assert not hits and not out.exists()
        top = where if how == "read-only" else where.parent
        assert [p.name for p in tmp_path.iterdir()] == [top.name]
        if how == "read-only":
            assert not any(where.iterdir())
        else:
            assert top.read_text() == "a file, not a directory\n"
    finally:
        if how == "read-only":
            where.chmod(0o755)


def test_spilled_urls_are_paged_back_in_order(tmp_path: Path) -> None:
    """With room for 5 queued URLs in memory, the rest wait in SQLite and still all come
    back, each fetched once, oldest first: one request at a time to one host, pages are
    fetched in the order they were discovered, spilled or not."""
    from shoal.crawler import Crawler

    out = tmp_path / "out.jsonl"
    leaves = [f"/a{i}" for i in range(40)]
    routes: dict[str, object] = {"/": html("home", *leaves), "/robots.txt": ROBOTS}
    routes.update({leaf: html(leaf) for leaf in leaves})
    with Site(routes) as site:  # type: ignore[arg-type]
        result = Crawler(
            site.url("/"), output=str(out), memory_limit=5, concurrency=1, progress=False
        ).run()
        fetched = [path for path, _ in site.hits]
    assert fetched == ["/robots.txt", "/", *leaves]
    assert result.pages == 41 and result.pending == 0
    assert [json.loads(line)["url"] for line in out.read_text().splitlines()] == [
        site.url(path) for path in ["/", *leaves]
    ]


def test_spilled_urls_all_come_back_once_under_concurrency(tmp_path: Path) -> None:
    from shoal.crawler import Crawler

    out = tmp_path / "out.jsonl"
    with graph_site() as site:
        result = Crawler(
            site.url("/p0"), output=str(out), memory_limit=5, concurrency=4, progress=False
        ).run()
        check_output(out, site)
        assert max(page_hits(site).values()) == 1
    assert result.pages == PAGES and result.pending == 0


def test_save_bodies_records_text_and_digest(tmp_path: Path) -> None:
    import hashlib

    from shoal.crawler import Crawler

    out = tmp_path / "out.jsonl"
    body = html("page 0", "/p1")
    with Site({"/p0": body, "/p1": Reply(body=b"\x00\x01", content_type="image/png")}) as site:
        Crawler(site.url("/p0"), output=str(out), save_bodies=True, progress=False).run()
    records = {r["url"].rsplit("/", 1)[1]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["p0"]["body"] == body
    assert records["p0"]["body_sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert records["p1"]["body"] == "base64:AAE="


def test_durable_frontier_never_waits_forever_for_rows_that_never_come(tmp_path: Path) -> None:
    """A spilled URL whose commit never reaches the file (a crashed writer, a bug) must not
    keep the crawl polling forever: after ~5 s of empty looks the file's count wins."""
    from shoal.crawler.frontier import Candidate, Outcome, Release, SqliteFrontier
    from shoal.crawler.frontier.sqlite import _MAX_EMPTY_RECHECKS
    from shoal.state import StateStore

    with StateStore.open(tmp_path / "s.sqlite", {"test": 1}) as store:
        frontier = SqliteFrontier(store, robots=False, memory_limit=1, clock=lambda: 0.0)
        frontier.submit([Candidate("http://a.example/1"), Candidate("http://a.example/2")])
        jobs, _ = frontier.lease(10)
        assert [j.url for j in jobs] == ["http://a.example/1"]  # the second one spilled
        frontier.release(jobs[0], Release(Outcome.DONE))  # never committed: rows stay unwritten
        for _ in range(_MAX_EMPTY_RECHECKS - 1):
            jobs, ready_in = frontier.lease(10)
            assert not jobs and ready_in is not None  # still hoping the row will be committed
        jobs, ready_in = frontier.lease(10)
        assert not jobs and ready_in is None and frontier.stats().queued == 0
