"""``shoal crawl --redis``, ``shoal status --redis`` and ``shoal combine`` as a user runs
them: real subprocesses, a real redis-server, a real site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from redis_server import RedisServer, running
from shoal import UsageError
from sites import Reply, Request, Site, html


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def small_site() -> Site:
    site = Site(host="127.0.0.2")
    site.routes["/"] = html("home", "/a", "/b")
    site.routes["/a"] = html("a", "/b", "/c")
    site.routes["/b"] = html("b")
    site.routes["/c"] = html("c")
    site.routes["/robots.txt"] = Reply(404, "none")
    return site


def crawl(
    server_url: str, site: Site, out: Path, *extra: str, crawl_id: str = "c"
) -> subprocess.CompletedProcess[str]:
    return shoal(
        "crawl", site.url("/"), "-o", str(out), "--redis", server_url, "--crawl-id", crawl_id,
        "--no-progress", *extra,
    )  # fmt: skip


def test_crawl_status_combine_and_a_restart_that_cuts_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with small_site() as site:
        part = tmp_path / "part.jsonl"
        done = crawl(redis_server.url, site, part)
        assert done.returncode == 0, done.stderr
        original = part.read_bytes()
        assert len(original.splitlines()) == 4
        status = shoal("status", "--redis", redis_server.url, "--crawl-id", "c", "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["status"] == "finished"
        assert report["done"] == 4
        (w,) = report["workers"].values()
        assert w["offset"] == len(original)
        assert report["hosts"][site.origin]["done"] == 4
        # A tail the worker never committed (it was killed after writing): the same command
        # again is its restart, and cuts the file back to the offset Redis holds.
        with part.open("ab") as f:
            f.write(b'{"url": "uncommitted"}\n')
        again = crawl(redis_server.url, site, part)
        assert again.returncode == 0, again.stderr
        assert part.read_bytes() == original
        # It says what it does: the file is kept and cut back, not replaced (no --overwrite
        # was given); and the crawl has nothing left, which is said instead of "pages 0".
        assert "overwrite" not in again.stderr and "replacing" not in again.stderr
        assert (
            f"resuming {part}: cutting back to the committed {len(original):,} bytes "
            "(23 bytes not committed; their pages are fetched again)"
        ) in again.stderr
        assert "crawl c is already complete: 4 URLs done, 0 failed" in again.stderr
        assert "pages/s" not in again.stderr
        out = tmp_path / "all.jsonl"
        combined = shoal(
            "combine", "--redis", redis_server.url, "--crawl-id", "c", str(part), "-o", str(out)
        )
        assert combined.returncode == 0, combined.stderr
        assert out.read_bytes() == original


def test_joining_a_finished_crawl_says_it_is_complete(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with small_site() as site:
        assert crawl(redis_server.url, site, tmp_path / "a.jsonl").returncode == 0
        fetched = site.count("/")
        late = crawl(redis_server.url, site, tmp_path / "b.jsonl")
        assert late.returncode == 0, late.stderr
        assert late.stderr.splitlines() == [
            "crawl c is already complete: 4 URLs done, 0 failed, nothing queued or leased; "
            "nothing to do (--recrawl crawls it again, fetching only what changed; to start "
            "over, start a new crawl with another --crawl-id)"
        ]
        assert site.count("/") == fetched
        assert (tmp_path / "b.jsonl").read_bytes() == b""
        summary = crawl(redis_server.url, site, tmp_path / "c.jsonl", "--json-summary")
        assert json.loads(summary.stderr.splitlines()[-1])["already_complete"] is True


def test_a_redis_that_may_lose_acknowledged_commits_is_refused_with_the_setting(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The README's settings are checked, not assumed: appendonly yes with appendfsync
    always (the test server's) or no runs; everysec or appendonly no is refused (exit 3)
    naming what to change, and nothing is written to Redis or to the output; with
    --allow-weak-durability it runs and warns what can be lost."""
    raw = redis.Redis(unix_socket_path=str(redis_server.socket))
    try:
        with small_site() as site:
            for fsync in ("always", "no"):
                raw.config_set("appendfsync", fsync)
                ok = crawl(redis_server.url, site, tmp_path / f"{fsync}.jsonl", crawl_id=fsync)
                assert ok.returncode == 0, ok.stderr
                assert "warning" not in ok.stderr and "durability" not in ok.stderr
            raw.config_set("appendfsync", "everysec")
            everysec = crawl(redis_server.url, site, tmp_path / "e.jsonl", crawl_id="e")
            assert everysec.returncode == 3, everysec.stderr
            assert "acknowledges: appendfsync everysec" in everysec.stderr
            assert "CONFIG SET appendfsync no" in everysec.stderr
            assert "--allow-weak-durability" in everysec.stderr
            raw.config_set("appendonly", "no")
            off = crawl(redis_server.url, site, tmp_path / "o.jsonl", crawl_id="o")
            assert off.returncode == 3, off.stderr
            assert "appendonly no (CONFIG SET appendonly yes)" in off.stderr
            assert raw.keys("shoal:{e}:*") == [] and raw.keys("shoal:{o}:*") == []
            assert not (tmp_path / "e.jsonl").exists() and not (tmp_path / "o.jsonl").exists()
            weak = crawl(
                redis_server.url, site, tmp_path / "w.jsonl", "--allow-weak-durability",
                crawl_id="w",
            )  # fmt: skip
            assert weak.returncode == 0, weak.stderr
            assert "warning: Redis at" in weak.stderr and "appendonly no" in weak.stderr
            # The test server saves no snapshot ("--save ''"): a restart loses everything.
            assert "a restart of this Redis loses the whole crawl" in weak.stderr
            assert len((tmp_path / "w.jsonl").read_text().splitlines()) == 4
            raw.config_set("appendonly", "yes")
            raw.config_set("appendfsync", "everysec")
            weak = crawl(
                redis_server.url, site, tmp_path / "w2.jsonl", "--allow-weak-durability",
                crawl_id="w2",
            )  # fmt: skip
            assert weak.returncode == 0, weak.stderr
            assert "a kill of this Redis may lose commits it acknowledged" in weak.stderr
            assert "those pages are fetched again" in weak.stderr
        alone = shoal("crawl", "http://127.0.0.2/", "--allow-weak-durability")
        assert alone.returncode == 2 and "--redis" in alone.stderr
    finally:
        raw.close()


def test_other_scope_options_are_refused_by_name(redis_server: RedisServer, tmp_path: Path) -> None:
    with small_site() as site:
        assert crawl(redis_server.url, site, tmp_path / "a.jsonl").returncode == 0
        other = crawl(redis_server.url, site, tmp_path / "b.jsonl", "--max-depth", "1")
        assert other.returncode == 3
        assert "scope" in other.stderr and "another --crawl-id" in other.stderr
        assert not (tmp_path / "b.jsonl").exists() or (tmp_path / "b.jsonl").stat().st_size == 0


def test_unreachable_redis_and_a_wrong_password_exit_3(tmp_path: Path) -> None:
    with small_site() as site:
        gone = crawl(f"unix://{tmp_path}/none.sock", site, tmp_path / "a.jsonl")
        assert gone.returncode == 3
        assert "cannot reach Redis" in gone.stderr
        with running(tmp_path / "r", password="sesame") as server:
            url = server.url.replace(":sesame@", "")
            refused = crawl(url, site, tmp_path / "b.jsonl")
            assert refused.returncode == 3
            assert "password" in refused.stderr
            assert "sesame" not in refused.stderr


def test_redis_needs_a_crawl_id_and_an_offset_output(tmp_path: Path) -> None:
    no_id = shoal(
        "crawl", "http://127.0.0.2/", "-o", str(tmp_path / "a.jsonl"), "--redis", "redis://x"
    )
    assert no_id.returncode == 2 and "--crawl-id" in no_id.stderr
    sqlite = shoal(
        "crawl", "http://127.0.0.2/", "-o", str(tmp_path / "a.sqlite"),
        "--redis", "redis://x", "--crawl-id", "c",
    )  # fmt: skip
    assert sqlite.returncode == 2 and "offsets" in sqlite.stderr


def slow_site(links: int) -> Site:
    """A host whose every page takes 50 ms and links to /p0 .. /p<links-1>: a crawl of it
    is still running when the test acts."""
    site = Site(host="127.0.0.2")

    def slow(_: object) -> Reply:
        time.sleep(0.05)
        return Reply(body=html("page", *(f"/p{j}" for j in range(links))))

    site.fallback = slow  # type: ignore[assignment]
    site.routes["/robots.txt"] = Reply(404, "none")
    return site


def test_a_worker_registered_again_elsewhere_stops_with_exit_3(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    site = slow_site(links=40)
    with site:
        args = [
            sys.executable, "-m", "shoal", "crawl", site.url("/"), "--redis", redis_server.url,
            "--crawl-id", "c", "--no-progress", "--worker-id", "same", "--per-host", "1",
        ]  # fmt: skip
        first = subprocess.Popen(
            [*args, "-o", str(tmp_path / "a.jsonl")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while site.count("/p3") == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            # Another process becomes worker "same" (here: the test, through the state API).
            from shoal.state import RedisCrawlState

            raw = RedisCrawlState(
                redis.Redis(unix_socket_path=str(redis_server.socket)),
                redis_server.url,
                "c",
                lease_ttl=60,
                reconnect_for=1,
            )
            raw.register("same")
            raw.close()
            _, err = first.communicate(timeout=60)
            assert first.returncode == 3, err
            assert "registered again by another process" in err
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)


def test_the_same_command_twice_at_once_leaves_the_running_worker_alone(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    site = slow_site(links=30)
    with site:
        out = tmp_path / "a.jsonl"
        args = [
            "crawl", site.url("/"), "--redis", redis_server.url, "--crawl-id", "c",
            "--no-progress", "--per-host", "1", "-o", str(out),
        ]  # fmt: skip
        first = subprocess.Popen(
            [sys.executable, "-m", "shoal", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while site.count("/p3") == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            second = shoal(*args)
            assert second.returncode == 4, second.stderr
            assert "another running crawl" in second.stderr
            _, err = first.communicate(timeout=60)
            assert first.returncode == 0, err
            urls = [json.loads(line)["url"] for line in out.read_text().splitlines()]
            assert len(urls) == len(set(urls)) == 31
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)


def test_warc_parts_of_a_worker_killed_mid_crawl_combine_to_every_page_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Worker A is killed (SIGKILL) while it waits on a page, leaving a torn gzip member
    past its committed offset; worker B finishes the crawl (A's leases expire). combine
    cuts A's tail and the result holds each response once and passes ``warcio check``."""
    from warcio.archiveiterator import ArchiveIterator

    from shoal.cli._redis import status_report

    gate = threading.Event()
    pages = [f"/p{i}" for i in range(10)]
    site = Site(host="127.0.0.2")
    site.routes["/"] = html("home", *pages)
    site.routes["/robots.txt"] = Reply(404, "none")

    def page(request: Request) -> Reply:
        if int(request.path[2:]) >= 4:
            gate.wait(30)  # A is killed while it waits here
        return Reply(body=html(request.path))

    site.fallback = page  # type: ignore[assignment]
    a, b = tmp_path / "a.warc.gz", tmp_path / "b.warc.gz"
    opts = ("--per-host", "1", "--lease-ttl", "1")
    with site:
        first = subprocess.Popen(
            [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(a),
             "--redis", redis_server.url, "--crawl-id", "c", "--no-progress", *opts],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            committed = 0
            while time.monotonic() < deadline and not (committed and site.count("/p4")):
                time.sleep(0.05)
                try:
                    workers = status_report(redis_server.url, "c")["workers"]
                except UsageError:  # A has not created the crawl yet
                    workers = {}
                committed = max((w["offset"] for w in workers.values()), default=0)
            assert committed and site.count("/p4"), "worker A never committed a page"
        finally:
            first.kill()
            first.wait(10)
        with a.open("ab") as f:  # the kill tore a record: half a gzip member
            f.write(a.read_bytes()[:120])
        gate.set()
        done = crawl(redis_server.url, site, b, *opts)
        assert done.returncode == 0, done.stderr
        out = tmp_path / "all.warc.gz"
        combined = shoal(
            "combine", "--redis", redis_server.url, "--crawl-id", "c", str(a), str(b),
            "-o", str(out),
        )  # fmt: skip
        assert combined.returncode == 0, combined.stderr
        assert "1 cut back to their committed offset" in combined.stderr
    (w_a,) = [w for wid, w in status_report(redis_server.url, "c")["workers"].items()
              if wid.endswith("a.warc.gz")]  # fmt: skip
    assert 0 < w_a["offset"] < a.stat().st_size
    with out.open("rb") as f:
        records = [
            (r.rec_type, r.rec_headers.get_header("WARC-Target-URI"))
            for r in ArchiveIterator(f, check_digests="raise")
        ]
    responses = sorted(uri for kind, uri in records if kind == "response")
    assert responses == sorted(site.url(p) for p in ["/", "/robots.txt", *pages])
    assert [kind for kind, _ in records].count("warcinfo") == 2  # one per part
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from warcio.cli import main; main(sys.argv[1:])",
         "check", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout
    # A part changed inside its committed prefix is refused by name (exit 3), and the
    # existing output is left alone without --overwrite (exit 2).
    data = bytearray(a.read_bytes())
    data[w_a["offset"] // 2] ^= 0xFF
    a.write_bytes(bytes(data))
    again = shoal(
        "combine", "--redis", redis_server.url, "--crawl-id", "c", str(a), str(b),
        "-o", str(tmp_path / "again.warc.gz"),
    )  # fmt: skip
    assert again.returncode == 3 and str(a) in again.stderr, again.stderr
    assert not (tmp_path / "again.warc.gz").exists()
    kept = out.read_bytes()
    twice = shoal(
        "combine", "--redis", redis_server.url, "--crawl-id", "c", str(a), str(b), "-o", str(out)
    )
    assert twice.returncode == 2 and "exists" in twice.stderr
    assert out.read_bytes() == kept


def test_combine_says_why_there_are_no_sqlite_parts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with small_site() as site:
        assert crawl(redis_server.url, site, tmp_path / "a.jsonl").returncode == 0
    refused = shoal(
        "combine", "--redis", redis_server.url, "--crawl-id", "c", str(tmp_path / "a.jsonl"),
        "-o", str(tmp_path / "all.sqlite"),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "byte offsets (jsonl, csv or warc)" in refused.stderr


def test_a_file_that_is_not_the_workers_is_left_alone_on_every_attempt(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    out = tmp_path / "part.jsonl"
    precious = b"precious user data, not a crawl output\n"
    out.write_bytes(precious)
    with small_site() as site:
        # A refused attempt must not make the file the worker's for the next one.
        attempts = [crawl(redis_server.url, site, out) for _ in range(2)]
        assert out.read_bytes() == precious
        assert site.count("/") == 0
    for refused in attempts:
        assert refused.returncode == 4, refused.stderr
        assert "this worker of the shared crawl never wrote it" in refused.stderr
        assert "--overwrite" in refused.stderr


def test_a_named_pipe_as_the_output_is_refused_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    fifo = tmp_path / "part.jsonl"
    os.mkfifo(fifo)
    with small_site() as site:
        refused = crawl(redis_server.url, site, fifo)  # bounded: shoal() times out
    assert refused.returncode == 2, refused.stderr
    assert "device or pipe, not a file" in refused.stderr and "--redis" in refused.stderr
