"""Data safety and honest outcomes, through the real command line (issue 8).

Each test runs ``python -m shoal`` as a subprocess and checks the exit code, what stderr
says, and the files on disk before and after.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sites import Reply, Request, Site, html


def shoal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=timeout
    )


def small_site() -> Site:
    return Site({"/": html("home", "/a", "/b"), "/a": html("A"), "/b": html("B", "/missing")})


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- never destroy data shoal did not write ----------------------------------------------


def test_an_existing_output_that_is_not_this_crawls_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    out.write_text('{"mine": 1}\n')
    with small_site() as site:
        proc = shoal("crawl", site.url("/"), "-o", str(out), "--no-progress")
        assert proc.returncode == 4, proc.stderr
        assert "--overwrite" in proc.stderr and "not this crawl's output" in proc.stderr
        assert out.read_text() == '{"mine": 1}\n'
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]
        proc = shoal("crawl", site.url("/"), "-o", str(out), "--no-state", "-q")
        assert proc.returncode == 4 and out.read_text() == '{"mine": 1}\n'
        proc = shoal("crawl", site.url("/"), "-o", str(out), "--overwrite")
        assert proc.returncode == 0, proc.stderr
        assert "--overwrite: replacing" in proc.stderr
        assert len(lines(out)) == 4 and {"mine": 1} not in lines(out)


def test_a_foreign_sqlite_database_is_never_deleted(tmp_path: Path) -> None:
    db = tmp_path / "mine.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (x)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    with small_site() as site:
        proc = shoal("crawl", site.url("/"), "-o", str(db), "-q")
        assert proc.returncode == 4 and "--overwrite" in proc.stderr
        proc = shoal("crawl", site.url("/"), "-o", str(db), "-q", "--fresh")
        assert proc.returncode == 4 and "--overwrite" in proc.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT x FROM notes").fetchall() == [("keep me",)]
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.db"]


def test_fresh_says_what_it_deletes_and_touches_only_its_own_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with small_site() as site:
        assert shoal("crawl", site.url("/"), "-o", str(out), "-q").returncode == 0
        proc = shoal("crawl", site.url("/"), "-o", str(out), "--fresh")
        assert proc.returncode == 0, proc.stderr
        assert f"--fresh: deleting the state {out}.state.sqlite and the output {out}" in (
            proc.stderr
        )
        assert len(lines(out)) == 4
        # Another file, with no state naming it as its output: --fresh alone is not enough.
        other = tmp_path / "other.jsonl"
        other.write_text("precious\n")
        proc = shoal("crawl", site.url("/"), "-o", str(other), "--fresh", "-q")
        assert proc.returncode == 4 and "--overwrite" in proc.stderr
        assert other.read_text() == "precious\n"


def test_mismatched_state_message_says_what_fresh_deletes(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with small_site() as site:
        assert shoal("crawl", site.url("/"), "-o", str(out), "-q").returncode == 0
        before = out.read_bytes()
        proc = shoal("crawl", site.url("/"), "-o", str(out), "--exclude", "b", "-q")
        assert proc.returncode == 3
        assert "--fresh, which deletes this state and the output" in proc.stderr
        assert "another --state" not in proc.stderr.replace("another -o and --state", "")
        # Following the old advice ("use another --state") must not cut the output.
        other = tmp_path / "other.sqlite"
        proc = shoal(
            "crawl", site.url("/"), "-o", str(out), "--exclude", "b", "--state", str(other), "-q"
        )
        assert proc.returncode == 4 and "--overwrite" in proc.stderr
        assert out.read_bytes() == before and not other.exists()


def test_corrupt_state_is_never_deleted_by_fresh_alone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    state = Path(f"{out}.state.sqlite")
    with small_site() as site:
        assert shoal("crawl", site.url("/"), "-o", str(out), "-q").returncode == 0
        before = out.read_bytes()
        state.write_bytes(b"garbage" * 1000)
        proc = shoal("crawl", site.url("/"), "-o", str(out), "-q")
        assert proc.returncode == 3 and "shoal leaves it as it is" in proc.stderr
        assert "use --fresh to start over" not in proc.stderr
        proc = shoal("crawl", site.url("/"), "-o", str(out), "-q", "--fresh")
        assert proc.returncode == 3
        assert out.read_bytes() == before and state.read_bytes() == b"garbage" * 1000
        proc = shoal("crawl", site.url("/"), "-o", str(out), "-q", "--fresh", "--overwrite")
        assert proc.returncode == 0, proc.stderr
        assert len(lines(out)) == 4


def test_two_crawls_never_write_one_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    gate = threading.Event()
    with small_site() as site:
        site.routes["/a"] = lambda req: (gate.wait(30), Reply(body=html("A")))[1]  # type: ignore[assignment]
        first = subprocess.Popen(
            [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out), "-q"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(3000):  # bounded: until the first crawl is inside /a
                if site.count("/a") or first.poll() is not None:
                    break
                threading.Event().wait(0.01)
            assert site.count("/a") == 1
            other_state = tmp_path / "second.sqlite"
            second = shoal("crawl", site.url("/"), "-o", str(out), "--state", str(other_state))
            assert second.returncode == 4
            assert "being written by another running crawl" in second.stderr
            assert not other_state.exists() and not Path(f"{other_state}.lock").exists()
            running = shoal("status", f"{out}.state.sqlite")
            assert running.returncode == 0 and ": running" in running.stdout
        finally:
            gate.set()
            _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    records = lines(out)
    assert len(records) == 4 and b"\0" not in out.read_bytes()


def test_status_of_an_output_points_to_its_state(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    with small_site() as site:
        assert shoal("crawl", site.url("/"), "-o", str(out), "-q").returncode == 0
    proc = shoal("status", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{out} is a crawl's output, not its state; reporting {out}.state.sqlite" in proc.stderr
    assert "finished" in proc.stdout
    lone = tmp_path / "lone.jsonl"
    lone.write_text("{}\n")
    proc = shoal("status", str(lone))
    assert proc.returncode == 3 and f"{lone}.state.sqlite" in proc.stderr
    assert "--fresh" not in proc.stderr


# -- every URL tried has a record, with the reason -----------------------------------------


def test_unreachable_robots_gives_records_exit_1_and_stays_retryable(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there now
    start = f"http://127.0.0.1:{port}/"
    out = tmp_path / "out.jsonl"
    cmd = ("crawl", start, "-o", str(out), "--no-progress", "--timeout", "5")
    proc = shoal(*cmd)
    assert proc.returncode == 1, proc.stderr
    assert "robots.txt could not be fetched (connection: " in proc.stderr
    assert "run the same command again" in proc.stderr
    [record] = lines(out)
    assert record["url"] == start and record["error"] == "connection"
    assert "robots.txt unreachable" in str(record["error_detail"])
    with Site({"/": html("home", "/a"), "/a": html("A")}, port=port) as site:
        proc = shoal(*cmd)
        assert proc.returncode == 0, proc.stderr
        assert "resuming: 0 done, 1 queued" in proc.stderr
        assert site.count("/") == 1 and site.count("/a") == 1
    records = lines(out)
    assert [r["error"] for r in records] == ["connection", None, None]
    # URLs that got an answer stay done: a third run fetches nothing.
    proc = shoal(*cmd)
    assert proc.returncode == 0 and "already complete: 2 pages" in proc.stderr


def test_unresolvable_host_is_a_dns_error_record(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    # .invalid never resolves (RFC 6761); --timeout bounds a resolver that does not answer.
    proc = shoal("crawl", "http://nothing.invalid/", "-o", str(out), "--timeout", "3", "-q")
    assert proc.returncode == 1
    [record] = lines(out)
    assert record["error"] in ("dns", "timeout") and record["error_detail"]


def test_untrusted_certificate_is_a_tls_error_record(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    out = tmp_path / "out.jsonl"
    with small_site() as site:
        site._server.socket = context.wrap_socket(site._server.socket, server_side=True)
        start = site.url("/").replace("http://", "https://")
        proc = shoal("crawl", start, "-o", str(out), "--no-progress", "--proxy", "none")
    assert proc.returncode == 1, proc.stderr
    assert "robots.txt could not be fetched (tls: " in proc.stderr
    [record] = lines(out)
    assert record["error"] == "tls" and "robots.txt unreachable" in str(record["error_detail"])


# -- resume and completion are announced ---------------------------------------------------


def test_resume_is_announced_and_totals_cover_every_run(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    routes: dict[str, object] = {"/": html("home", *[f"/p{i}" for i in range(6)])}
    routes.update({f"/p{i}": html(f"p{i}") for i in range(6)})
    with Site(routes) as site:  # type: ignore[arg-type]
        cmd = ("crawl", site.url("/"), "-o", str(out), "--no-progress", "--concurrency", "1")
        first = shoal(*cmd, "--max-pages", "3")
        assert first.returncode == 0, first.stderr
        assert "resuming" not in first.stderr
        second = shoal(*cmd)
        assert second.returncode == 0, second.stderr
        state = f"{out}.state.sqlite"
        assert f"resuming: 3 done, 4 queued (state: {state})" in second.stderr
        assert "all 2 runs: pages 7 (ok 7, redirects 0, failed 0)" in second.stderr
        third = shoal(*cmd)
        assert third.returncode == 0
        assert "already complete: 7 pages (use --fresh to crawl again" in third.stderr
        assert "latency p50 None" not in third.stderr
    status = shoal("status", state, "--json")
    report = json.loads(status.stdout)
    assert report["status"] == "finished" and report["totals"]["pages"] == 7
    assert [r["outcome"] for r in report["runs"]] == ["stopped: max_pages", "finished", "finished"]
    text = shoal("status", state).stdout
    assert "finished" in text and "pages 7 (ok 7, redirects 0, failed 0) in 3 run(s)" in text


# -- record fields are reserved ------------------------------------------------------------


def test_extract_names_and_sets(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    with small_site() as site:
        proc = shoal("crawl", site.url("/"), "-o", str(out), "--extract", "url=title::text")
        assert proc.returncode == 2 and "'url' is a record field" in proc.stderr
        assert not out.exists()
        proc = shoal("crawl", site.url("/"), "-o", str(out), "-q", "--extract", "h=title::text")
        assert proc.returncode == 0
        before = out.read_bytes()
        proc = shoal("crawl", site.url("/"), "-o", str(out), "-q", "--extract", "k=h1::text")
        assert proc.returncode == 3
        assert "--extract: h=title::text in the state, k=h1::text now" in proc.stderr
        assert out.read_bytes() == before


# -- quiet and exact at the edges ----------------------------------------------------------


def test_closed_stdout_stops_quietly(tmp_path: Path) -> None:
    routes: dict[str, object] = {"/": html("home", *[f"/p{i}" for i in range(300)])}
    routes.update({f"/p{i}": html(f"p{i}") for i in range(300)})
    with Site(routes) as site:  # type: ignore[arg-type]
        script = (
            f"{sys.executable} -m shoal crawl {site.url('/')} --no-progress 2>err.txt | head -2"
            "; echo ${PIPESTATUS[0]} > code.txt"
        )
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
    assert len(done.stdout.splitlines()) == 2
    code = int((tmp_path / "code.txt").read_text())
    err = (tmp_path / "err.txt").read_text()
    assert code in (0, 141), err
    assert len(err.splitlines()) <= 1 and "ERROR" not in err, err


def test_robots_disallowing_every_start_url_exits_1_and_says_so(tmp_path: Path) -> None:
    site = Site({"/": html("home"), "/robots.txt": Reply(body="User-agent: *\nDisallow: /\n")})
    with site:
        proc = shoal("crawl", site.url("/"), "-o", str(tmp_path / "o.jsonl"), "--no-progress")
    assert proc.returncode == 1
    assert "not one page fetched: robots.txt disallowed every URL this run tried" in proc.stderr


def test_an_unusable_state_leaves_no_output_behind(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "out.jsonl"
    proc = shoal("crawl", "http://127.0.0.1:9/", "-o", str(out), "--state", f"{blocker}/s")
    assert proc.returncode == 3 and "cannot create the state file" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("name", ["out.json", "out.xyz", "out"])
def test_unknown_output_suffix_is_refused(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    proc = shoal("crawl", "http://127.0.0.1:9/", "-o", str(out))
    assert proc.returncode == 2 and "--format" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_format_names_every_format(tmp_path: Path) -> None:
    with small_site() as site:
        proc = shoal("crawl", site.url("/"), "-o", str(tmp_path / "a.json"), "--format", "jsonl")
        assert proc.returncode == 0 and len(lines(tmp_path / "a.json")) == 4
        db = tmp_path / "a.out"
        proc = shoal("crawl", site.url("/"), "-o", str(db), "--format", "sqlite", "-q")
        assert proc.returncode == 0, proc.stderr
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (4,)
        conn.close()
        proc = shoal("crawl", site.url("/"), "-o", str(tmp_path / "w.x"), "--format", "warc")
        assert proc.returncode == 0, proc.stderr


def test_demo_counts_add_up() -> None:
    proc = shoal("demo", "--no-progress", "--json-summary")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stderr.strip().splitlines()[-1])
    assert summary["redirects"] >= 1
    assert summary["ok"] + summary["redirects"] + summary["failed"] == summary["pages"]


def test_warc_keeps_every_response(tmp_path: Path) -> None:
    from warcio.archiveiterator import ArchiveIterator

    def cookies(req: Request) -> Reply:
        return Reply(
            body=html("c"),
            headers={"Set-Cookie": "a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT"},
        )

    out = tmp_path / "out.warc.gz"
    site = Site(
        {
            "/": html("home", "/moved", "/missing", "/c"),
            "/moved": Reply(301, "", headers={"Location": "http://elsewhere.invalid/"}),
            "/c": cookies,
            "/robots.txt": Reply(body="User-agent: *\nAllow: /\n", content_type="text/plain"),
        }
    )
    with site:
        proc = shoal("crawl", site.url("/"), "-o", str(out), "--no-progress")
        assert proc.returncode == 0, proc.stderr
    statuses = {}
    with out.open("rb") as stream:
        for record in ArchiveIterator(stream, check_digests="raise"):
            if record.rec_type == "response":
                uri = record.rec_headers.get_header("WARC-Target-URI")
                statuses[uri.rsplit("/", 1)[-1]] = record.http_headers.get_statuscode()
                record.content_stream().read()
    assert statuses == {
        "robots.txt": "200",
        "": "200",
        "moved": "301",
        "missing": "404",
        "c": "200",
    }
    warcio = Path(sys.executable).parent / "warcio"
    check = subprocess.run([str(warcio), "check", str(out)], capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout


def test_warc_header_block_has_one_line_per_set_cookie(tmp_path: Path) -> None:
    from warcio.archiveiterator import ArchiveIterator

    from shoal.crawler._fetch import Fetched
    from shoal.crawler.output import Commit, OutputFile
    from shoal.crawler.output._warc import WarcOutput

    out = tmp_path / "x.warc.gz"
    fetched = Fetched(
        url="http://h/",
        final_url="http://h/",
        status=200,
        # How the HTTP client hands over repeated Set-Cookie lines: joined by LF.
        headers={"set-cookie": "a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT\nb=2", "x": "y"},
        body=b"hi",
    )
    warc = WarcOutput(OutputFile(str(out)), None, "ua")
    warc.write([Commit(exchange=fetched)])
    warc.close()
    with out.open("rb") as stream:
        [response] = [r for r in ArchiveIterator(stream) if r.rec_type == "response"]
        assert [v for k, v in response.http_headers.headers if k == "Set-Cookie"] == [
            "a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
            "b=2",
        ]


ON_PAGE_SCRIPT = """
import sys
from shoal import Crawler

def on_page(page):
    if page.url.endswith("/a"):
        raise ValueError("boom")
    yield {"page": page.url, "h": page.css("title::text").get()}

Crawler(sys.argv[1], on_page=on_page, output=sys.argv[2], progress=False).run()
"""


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_on_page_failures_keep_their_record(tmp_path: Path, suffix: str) -> None:
    import csv

    out = tmp_path / f"out.{suffix}"
    with small_site() as site:
        proc = subprocess.run(
            [sys.executable, "-c", ON_PAGE_SCRIPT, site.url("/"), str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        if suffix == "jsonl":
            rows: list[dict[str, object]] = lines(out)
        else:
            with out.open() as f:
                header = next(csv.reader(f))
            # The header: the first record's keys, then the standard fields.
            assert header[:3] == ["page", "h", "url"] and "error_detail" in header
            rows = [dict(r) for r in csv.DictReader(out.open())]
    by_page = {r["page"]: r for r in rows if r.get("page")}
    assert set(by_page) == {site.url("/"), site.url("/b")}
    assert by_page[site.url("/b")]["h"] == "B"  # callback fields kept, in CSV too
    failed = {r["url"]: r for r in rows if r.get("error")}
    assert failed[site.url("/a")]["error"] == "callback"
    assert "boom" in str(failed[site.url("/a")]["error_detail"])
    assert failed[site.url("/missing")]["error"] == "http_404"


def test_devices_and_pipes_are_streams_without_state(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    with small_site() as site:
        proc = shoal("crawl", site.url("/"), "-o", str(fifo), "--no-progress")
        assert proc.returncode == 0, proc.stderr
        null = shoal("crawl", site.url("/"), "-o", os.devnull, "-q")
        assert null.returncode == 0, null.stderr
    reader.join(30)
    assert len(received[0].splitlines()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no state beside it
    assert not Path(f"{os.devnull}.state.sqlite").exists()


def test_a_robots_txt_answering_5xx_holds_urls_back_for_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    site = Site({"/": html("home"), "/robots.txt": Reply(503, "busy")})
    with site:
        cmd = ("crawl", site.url("/"), "-o", str(out), "--no-progress")
        proc = shoal(*cmd)
        assert proc.returncode == 1 and "robots.txt answered 503" in proc.stderr
        assert site.count("/") == 0
        [record] = lines(out)
        assert record["error"] == "robots_http_503"
        site.routes["/robots.txt"] = Reply(body="User-agent: *\nAllow: /\n")
        proc = shoal(*cmd)
        assert proc.returncode == 0 and "resuming: 0 done, 1 queued" in proc.stderr
        assert site.count("/") == 1
