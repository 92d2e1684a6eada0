"""Crawl again (#19): ``--recrawl`` revisits what the state knows with conditional
requests and says per URL what changed, against a real server that honours ETag (weak
ones too), If-Modified-Since, and changes, deletes and adds pages between runs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoal import Crawler, UsageError
from sites import Reply, Request, Site, html


@dataclass
class Doc:
    body: str
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200


class VersionedSite:
    """Pages the test edits between runs. Honours If-None-Match (weak comparison, as
    RFC 9110 has it for GET) and If-Modified-Since (an exact date match); ``lying``
    ignores both. Counts the body bytes it sends and the conditional headers it gets."""

    def __init__(self, docs: dict[str, Doc], robots: str = "User-agent: *\nAllow: /\n") -> None:
        self.docs = docs
        self.robots = robots
        self.lying = False
        self.always_304: set[str] = set()  # paths answering 304 (no validators) to anything
        self.bare_304 = False  # 304s carry no validators (as http.server's do)
        self.moved: dict[str, str] = {}  # path -> where it redirects (302)
        self.body_bytes = 0
        self.conditional: dict[str, dict[str, str]] = {}  # path -> headers of its last request
        self._lock = threading.Lock()
        self.site = Site()
        self.site.fallback = self._serve

    def _serve(self, req: Request) -> Reply:
        if req.path == "/robots.txt":
            return Reply(body=self.robots, content_type="text/plain")
        headers = {k.lower(): v for k, v in req.headers.items()}
        with self._lock:
            doc = self.docs.get(req.path)
            self.conditional[req.path] = {
                k: v for k, v in headers.items() if k in ("if-none-match", "if-modified-since")
            }
        if req.path in self.always_304:
            return Reply(304, b"", {"Content-Length": "0"}, content_type=None)
        if req.path in self.moved:
            return Reply(302, b"", {"Location": self.moved[req.path]})
        if doc is None:
            return Reply(404, "not found")
        sent: dict[str, str] = {}
        if doc.etag:
            sent["ETag"] = doc.etag
        if doc.last_modified:
            sent["Last-Modified"] = doc.last_modified
        if self.bare_304:
            sent304: dict[str, str] = {"Content-Length": "0"}
        else:
            sent304 = {**sent, "Content-Length": "0"}
        if doc.status == 200 and not self.lying:
            inm, ims = headers.get("if-none-match"), headers.get("if-modified-since")
            if inm is not None and doc.etag is not None:
                if _weak(inm) == _weak(doc.etag):
                    return Reply(304, b"", sent304, content_type=None)
            elif ims is not None and ims == doc.last_modified:
                return Reply(304, b"", sent304, content_type=None)
        body = doc.body.encode()
        with self._lock:
            self.body_bytes += len(body)
        return Reply(doc.status, body, sent)

    def url(self, path: str = "/") -> str:
        return self.site.url(path)

    def __enter__(self) -> VersionedSite:
        self.site.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.site.__exit__(*exc)


def _weak(tag: str) -> str:
    return tag.removeprefix("W/")


LM1 = "Sat, 05 Dec 2026 10:00:00 GMT"
LM2 = "Sun, 06 Dec 2026 10:00:00 GMT"


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def run_of(out: Path, run: int) -> dict[str, dict[str, object]]:
    """The records of one run by path; exactly one per URL."""
    mine = [r for r in records(out) if r.get("run", 1) == run]
    paths = [str(r["url"]).split(":", 2)[2].split("/", 1)[1] for r in mine]
    assert len(paths) == len(set(paths)), sorted(paths)
    return {"/" + p: r for p, r in zip(paths, mine, strict=True)}


def crawl(site: VersionedSite, out: Path, **kw: object) -> None:
    kw.setdefault("concurrency", 4)
    Crawler(site.url("/"), output=str(out), **kw).run()  # type: ignore[arg-type]


@pytest.fixture
def site() -> Iterator[VersionedSite]:
    docs = {
        "/": Doc(html("home", "/a", "/b", "/c", "/d", "/e", "/f", "/x"), etag='"h1"'),
        "/a": Doc(html("a"), etag='"a1"', last_modified=LM1),  # both validators
        "/b": Doc(html("b"), etag='W/"b1"'),  # a weak ETag
        "/c": Doc(html("c"), last_modified=LM1),  # Last-Modified only
        "/d": Doc(html("d")),  # no validators: the digest decides
        "/e": Doc(html("e"), etag='"e1"'),
        "/f": Doc(html("f")),
        "/x": Doc(html("x")),
    }
    with VersionedSite(docs) as s:
        yield s


def test_change_classes_match_the_server(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    crawl(site, out)
    first = records(out)
    assert len(first) == 8
    # Run 1 is a plain crawl: its records are as before (no run, no change).
    assert all("run" not in r and "change" not in r for r in first)

    docs = site.docs
    docs["/"] = Doc(html("home", "/a", "/b", "/c", "/d", "/n"), etag='"h2"')  # links /n
    docs["/a"] = Doc(html("a, edited"), etag='"a2"', last_modified=LM2)
    docs["/n"] = Doc(html("new", "/n2"))  # new, and a link from a new page is followed
    docs["/n2"] = Doc(html("new too"))
    docs["/e"].status = 404
    docs["/f"].status = 410
    site.robots = "User-agent: *\nDisallow: /x\n"
    crawl(site, out, recrawl=True)

    second = run_of(out, 2)
    truth = {
        "/": "changed",
        "/a": "changed",
        "/b": "unchanged",  # 304 to the weak ETag sent back as given
        "/c": "unchanged",  # 304 to If-Modified-Since
        "/d": "unchanged",  # 200 with the same body
        "/e": "gone",
        "/f": "gone",
        "/n": "new",
        "/n2": "new",
        "/x": "disallowed",
    }
    assert {p: r["change"] for p, r in second.items()} == truth
    assert {r["run"] for r in second.values()} == {2}
    assert second["/b"]["status"] == 304 and second["/c"]["status"] == 304
    assert second["/e"]["status"] == 404 and second["/f"]["status"] == 410
    assert site.site.count("/x") == 1  # robots.txt now disallows it: not fetched again
    assert site.site.count("/robots.txt") == 2  # fetched again by the recrawl
    assert site.conditional["/b"] == {"if-none-match": 'W/"b1"'}
    assert site.conditional["/a"] == {"if-none-match": '"a1"', "if-modified-since": LM1}
    assert site.conditional["/c"] == {"if-modified-since": LM1}
    assert site.conditional["/d"] == {}
    # The first run's records are left as they were: the output is appended to.
    assert records(out)[: len(first)] == first

    # Run 3 compares with what run 2 saw: /a's new capture, /e still gone (404 again).
    crawl(site, out, recrawl=True)
    third = run_of(out, 3)
    assert third["/a"]["change"] == "unchanged" and third["/e"]["change"] == "unchanged"
    assert third["/n"]["change"] == "unchanged" and third["/"]["change"] == "unchanged"
    assert site.conditional["/a"] == {"if-none-match": '"a2"', "if-modified-since": LM2}


def test_a_lying_etag_is_not_believed(tmp_path: Path) -> None:
    docs = {"/": Doc(html("home", "/a", "/b"), etag='"h"'), "/a": Doc(html("a"), etag='"same"')}
    docs["/b"] = Doc(html("b"), etag='"b"')
    with VersionedSite(docs) as site:
        out = tmp_path / "out.jsonl"
        crawl(site, out)
        # A new body under the old ETag, and no 304 whatever was asked.
        site.lying = True
        docs["/a"] = Doc(html("a, edited"), etag='"same"')
        crawl(site, out, recrawl=True)
        second = run_of(out, 2)
    assert second["/a"]["change"] == "changed"
    assert second["/b"]["change"] == "unchanged"  # same body: unchanged without a 304
    assert second["/b"]["status"] == 200


def test_an_unchanged_site_transfers_almost_nothing(tmp_path: Path) -> None:
    n = 40
    docs = {"/": Doc(html("home", *(f"/p{i}" for i in range(n))), etag='"home"')}
    for i in range(n):
        docs[f"/p{i}"] = Doc(html(f"p{i}", extra="y" * 4000), etag=f'W/"p{i}"')
    with VersionedSite(docs) as site:
        out = tmp_path / "out.jsonl"
        crawl(site, out)
        first = site.body_bytes
        site.body_bytes = 0
        crawl(site, out, recrawl=True)
        again = site.body_bytes
    second = run_of(out, 2)
    assert len(second) == n + 1
    assert {r["change"] for r in second.values()} == {"unchanged"}
    print(f"recrawl body bytes: {again} of {first} ({100 * again / first:.2f} %)")
    assert again <= 0.05 * first


def test_kill_9_mid_recrawl_then_rerun_is_exactly_once(tmp_path: Path) -> None:
    n = 80
    gate = threading.Event()  # released after the kill: the recrawl stalls mid-way

    docs = {"/": Doc(html("home", *(f"/p{i}" for i in range(n))), etag='"home"')}
    for i in range(n):
        docs[f"/p{i}"] = Doc(html(f"p{i}"), etag=f'"p{i}"')
    with VersionedSite(docs) as site:
        out = tmp_path / "out.jsonl"
        cmd = [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out), "-q"]
        cmd += ["--concurrency", "2"]
        assert subprocess.run(cmd, timeout=120, stderr=subprocess.PIPE).returncode == 0
        for i in range(0, n, 2):  # half the pages change
            docs[f"/p{i}"] = Doc(html(f"p{i} edited"), etag=f'"p{i}b"')
        served = threading.Semaphore(0)
        plain = site._serve

        def stalling(req: Request) -> Reply:
            if req.path.startswith("/p") and int(req.path[2:]) >= n // 2:
                served.release()
                gate.wait(60)  # the second half waits until the process is killed
            return plain(req)

        site.site.fallback = stalling
        proc = subprocess.Popen([*cmd, "--recrawl"], stderr=subprocess.DEVNULL)
        try:
            assert served.acquire(timeout=60)  # the recrawl is mid-way
            state = sqlite3.connect(f"{out}.state.sqlite")
            try:  # wait (bounded) until some revisits are committed
                for _ in range(600):
                    done = state.execute("SELECT count(*) FROM urls WHERE state>0").fetchone()
                    if done[0] >= 5:
                        break
                    threading.Event().wait(0.05)
            finally:
                state.close()
        finally:
            proc.kill()
            proc.wait(30)
            gate.set()
        site.site.fallback = plain
        partial = [r for r in records(out) if r.get("run") == 2]
        assert 0 < len(partial) < n + 1
        state = sqlite3.connect(f"{out}.state.sqlite")
        (committed,) = state.execute("SELECT sum(n) FROM changes WHERE generation=2").fetchone()
        state.close()
        loud = [c for c in cmd if c != "-q"]  # -q would hide the resume message
        again = subprocess.run([*loud, "--recrawl"], timeout=120, stderr=subprocess.PIPE)
        assert again.returncode == 0, again.stderr
        assert f"resuming run 2 of the recrawl: {committed} URLs revisited".encode() in (
            again.stderr
        ), again.stderr
    second = run_of(out, 2)  # exactly one record per URL for run 2
    assert len(second) == n + 1
    for i in range(n):
        assert second[f"/p{i}"]["change"] == ("changed" if i % 2 == 0 else "unchanged")
    assert not [r for r in records(out) if r.get("run", 1) > 2]
    # The run's counts in the state agree: each URL counted once, the kill notwithstanding.
    db = sqlite3.connect(f"{out}.state.sqlite")
    counted = dict(db.execute("SELECT change, n FROM changes WHERE generation=2").fetchall())
    db.close()
    assert counted == {"changed": n // 2, "unchanged": n // 2 + 1}  # "/" is unchanged


def test_a_version_2_state_migrates_and_recrawls(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    crawl(site, out)
    state = Path(f"{out}.state.sqlite")
    # The file as the release before this one left it: schema 2, none of what 3 added.
    db = sqlite3.connect(state)
    added = [row[1] for row in db.execute("PRAGMA table_info(urls)")][9:]  # after status
    assert added[:2] == ["etag", "last_modified"]
    for column in added:
        db.execute(f"ALTER TABLE urls DROP COLUMN {column}")
    db.execute("DELETE FROM meta WHERE key='generation'")
    db.execute("DROP TABLE changes")
    db.execute("UPDATE meta SET value='2' WHERE key='schema'")
    db.commit()
    db.close()
    told: list[str] = []
    site.docs["/e"].status = 404
    crawler = Crawler(site.url("/"), output=str(out), concurrency=4, recrawl=True)
    crawler.announce = told.append
    crawler.run()
    assert any("from schema 2 to 4" in m for m in told), told
    assert Path(f"{state}.v2.bak").exists()
    second = run_of(out, 2)
    assert len(second) == 8
    # Nothing of the captures was stored: no conditional request, every page fetched,
    # and (no digest to compare with) unknown, not changed; a 404 is still gone.
    assert second["/e"]["change"] == "gone"
    assert {r["change"] for p, r in second.items() if p != "/e"} == {"unknown"}
    status = subprocess.run(
        [sys.executable, "-m", "shoal", "status", str(state), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    (run2,) = json.loads(status.stdout)["recrawls"]
    assert run2["changed"] == 0 and run2["unknown"] == 7
    assert site.conditional["/a"] == {}
    crawl(site, out, recrawl=True)  # and the next recrawl has validators to send
    assert run_of(out, 3)["/b"]["change"] == "unchanged"
    assert site.conditional["/b"] == {"if-none-match": 'W/"b1"'}


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"output": "x.jsonl", "state": None}, "recrawl needs a state file"),
        ({"output": None}, "recrawl needs a state file"),
    ],
)
def test_what_recrawl_does_not_do_yet_is_refused(
    kw: dict[str, object], says: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError) as caught:
        Crawler("http://127.0.0.1:1/", recrawl=True, **kw)  # type: ignore[arg-type]
    assert says in str(caught.value)


def test_the_command_line_refuses_with_the_flag_names(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "crawl",
            "http://127.0.0.1:1/",
            "-o",
            str(tmp_path / "x.jsonl"),
            "--no-state",
            "--recrawl",
        ],
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--recrawl needs a state file" in proc.stderr


def test_sqlite_output_adds_each_runs_rows_and_a_latest_view(
    site: VersionedSite, tmp_path: Path
) -> None:
    out = tmp_path / "out.sqlite"
    crawl(site, out)
    site.docs["/a"] = Doc(html("a, edited"), etag='"a2"')
    site.docs["/e"].status = 410
    crawl(site, out, recrawl=True)
    crawl(site, out, recrawl=True)
    db = sqlite3.connect(out)
    try:
        by_run = dict(db.execute("SELECT run, count(*) FROM records GROUP BY run").fetchall())
        assert by_run == {1: 8, 2: 8, 3: 8}  # one row per URL and run
        changes = dict(db.execute("SELECT url, change FROM records WHERE run=2 AND url LIKE '%/_'"))
        assert changes[site.url("/a")] == "changed" and changes[site.url("/e")] == "gone"
        assert changes[site.url("/b")] == "unchanged"
        assert db.execute("SELECT count(*) FROM records WHERE run=1 AND change IS NULL").fetchone()
        latest = db.execute("SELECT run, count(*) FROM latest GROUP BY run").fetchall()
        assert latest == [(3, 8)]
        # run and change are columns, not in the JSON of extra fields.
        assert not db.execute("SELECT count(*) FROM records WHERE data LIKE '%change%'").fetchone()[
            0
        ]
    finally:
        db.close()


def age(state: Path, paths: list[str], site: VersionedSite, seconds: float) -> None:
    """Make the last fetch of ``paths`` ``seconds`` older (time passing, without a wait)."""
    db = sqlite3.connect(state)
    db.executemany(
        "UPDATE urls SET fetched_at = fetched_at - ? WHERE url = ?",
        [(seconds, site.url(p)) for p in paths],
    )
    db.commit()
    db.close()


def test_revisit_after_revisits_only_what_is_due(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    state = Path(f"{out}.state.sqlite")
    crawl(site, out)
    age(state, ["/a", "/b"], site, 7200)
    site.docs["/a"] = Doc(html("a, edited"), etag='"a2"')
    site.docs["/c"] = Doc(html("c, edited"))  # changed, but not due: not revisited
    crawl(site, out, recrawl=True, revisit_after=3600)
    second = run_of(out, 2)
    assert {p: r["change"] for p, r in second.items()} == {"/a": "changed", "/b": "unchanged"}
    assert site.site.count("/c") == 1

    # Nothing due now: the command adds nothing, exits 0 and says when the next URL is due.
    before = out.read_bytes()
    cmd = [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out)]
    proc = subprocess.run(
        [*cmd, "--recrawl", "--revisit-after", "1h"], stderr=subprocess.PIPE, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "nothing to revisit: every URL was fetched less than 1h ago" in proc.stderr
    assert "the next falls due at 20" in proc.stderr
    assert out.read_bytes() == before
    # The next run is 3, when something is due again.
    age(state, ["/c"], site, 7200)
    crawl(site, out, recrawl=True, revisit_after=3600)
    assert {p: r["change"] for p, r in run_of(out, 3).items()} == {"/c": "changed"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--recrawl", "--revisit-after", "6x"], "'6x' is not a duration"),
        (["--revisit-after", "6h"], "--revisit-after needs --recrawl"),
        (["--recrawl", "--revisit-after", "1000000w"], "at most 100 years"),
    ],
)
def test_revisit_after_bad_values_are_refused(args: list[str], says: str, tmp_path: Path) -> None:
    out = str(tmp_path / "x.jsonl")
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "crawl", "http://127.0.0.1:1/", "-o", out, *args],
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr


def test_status_shows_each_recrawl_runs_changes(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    crawl(site, out)
    site.docs["/a"] = Doc(html("a, edited"), etag='"a2"')
    site.docs["/e"].status = 404
    site.docs["/"] = Doc(html("home", "/a", "/b", "/c", "/d", "/e", "/f", "/x", "/n"))
    site.docs["/n"] = Doc(html("n"))
    crawl(site, out, recrawl=True)
    crawl(site, out, recrawl=True)
    cmd = [sys.executable, "-m", "shoal", "status"]
    proc = subprocess.run([*cmd, str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "recrawl run 2: new 1, changed 2, unchanged 5, gone 1" in proc.stdout
    assert "recrawl run 3: new 0, changed 0, unchanged 9, gone 0" in proc.stdout
    proc = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=60)
    runs = json.loads(proc.stdout)["recrawls"]
    assert runs[0] == {"run": 2, "new": 1, "changed": 2, "unchanged": 5, "gone": 1}


def warc_records(path: Path) -> list[dict[str, str]]:
    from warcio.archiveiterator import ArchiveIterator

    found = []
    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type in ("response", "revisit"):
                headers = dict(record.rec_headers.headers)
                http = record.http_headers
                headers["status"] = http.get_statuscode() if http is not None else None
                headers["body"] = record.content_stream().read().decode("utf-8", "replace")
                found.append(headers)
    return found


def test_warc_output_keeps_revisits_of_unchanged_pages(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "crawl.warc.gz"
    crawl(site, out)
    first = {r["WARC-Target-URI"]: r for r in warc_records(out)}
    site.docs["/a"] = Doc(html("a, edited"), etag='"a2"')
    crawl(site, out, recrawl=True)
    later = warc_records(out)[len(first) :]
    second = {r["WARC-Target-URI"]: r for r in later}
    assert len(later) == len(second) == 9  # robots.txt and the 8 pages, once each
    b, d, a = second[site.url("/b")], second[site.url("/d")], second[site.url("/a")]
    # A 304: server-not-modified, naming the capture it confirms.
    assert b["WARC-Type"] == "revisit" and b["status"] is None  # no HTTP headers: see _warc
    assert b["WARC-Payload-Digest"] == first[site.url("/b")]["WARC-Payload-Digest"]
    assert b["WARC-Profile"] == "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
    assert b["WARC-Refers-To-Target-URI"] == site.url("/b")
    assert b["WARC-Refers-To-Date"] == first[site.url("/b")]["WARC-Date"]
    # The same body again (no validators): identical-payload-digest, the original's digest.
    assert d["WARC-Type"] == "revisit" and d["status"] == "200" and d["body"] == ""
    assert d["WARC-Profile"] == "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
    assert d["WARC-Payload-Digest"] == first[site.url("/d")]["WARC-Payload-Digest"]
    assert d["WARC-Refers-To-Target-URI"] == site.url("/d")
    assert d["WARC-Refers-To-Date"] == first[site.url("/d")]["WARC-Date"]
    # A changed page: a full response with its new body.
    assert a["WARC-Type"] == "response" and "a, edited" in a["body"]
    # Run 3 still refers to run 1's capture of /d, and to run 2's of /a.
    crawl(site, out, recrawl=True)
    third = {r["WARC-Target-URI"]: r for r in warc_records(out)[len(first) + 9 :]}
    assert third[site.url("/d")]["WARC-Refers-To-Date"] == first[site.url("/d")]["WARC-Date"]
    assert third[site.url("/a")]["WARC-Refers-To-Date"] == a["WARC-Date"]
    check = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_pages_sha1_is_kept_only_for_a_warc(site: VersionedSite, tmp_path: Path) -> None:
    """The SHA-1 is a WARC payload digest only (a later 304's revisit record): a crawl
    that writes no WARC does not hash it, and still classifies by the SHA-256."""
    digests = {}
    for name in ("crawl.jsonl", "crawl.warc.gz"):
        out = tmp_path / name
        crawl(site, out)
        db = sqlite3.connect(f"{out}.state.sqlite")
        digests[name] = db.execute(
            "SELECT count(sha256), count(sha1) FROM urls WHERE status=200"
        ).fetchone()
        db.close()
    assert digests == {"crawl.jsonl": (8, 0), "crawl.warc.gz": (8, 8)}
    site.docs["/d"] = Doc(html("d, edited"))  # no validators: the SHA-256 tells
    crawl(site, tmp_path / "crawl.jsonl", recrawl=True)
    again = run_of(tmp_path / "crawl.jsonl", 2)
    assert again["/d"]["change"] == "changed" and again["/f"]["change"] == "unchanged"


def test_redirects_are_revisited_as_they_were_followed(tmp_path: Path) -> None:
    """/old redirects to /new (reached only so in run 1: claimed; a recrawl follows /old
    again and visits /new on its own too, its first capture of its own being new); /r
    redirects to /seen, which is also linked (fetched on its own, /r stops at the hop)."""
    docs = {
        "/": Doc(html("home", "/seen", "/old", "/r")),
        "/new": Doc(html("new")),
        "/seen": Doc(html("seen")),
    }
    with VersionedSite(docs) as site:
        plain = site._serve

        def serve(req: Request) -> Reply:
            if req.path in ("/old", "/r"):
                target = "/new" if req.path == "/old" else "/seen"
                return Reply(301, "", {"Location": target})
            return plain(req)

        site.site.fallback = serve
        out = tmp_path / "out.jsonl"
        crawl(site, out, concurrency=1)
        crawl(site, out, recrawl=True)
        second = run_of(out, 2)
        assert {p: r["change"] for p, r in second.items()} == {
            **dict.fromkeys(("/", "/seen", "/old", "/r"), "unchanged"),
            "/new": "new",
        }
        assert second["/old"]["final_url"] == site.url("/new")
        assert site.site.count("/new") == 3  # run 1 through /old; run 2 so and on its own


def test_report_shows_each_recrawl_runs_changes(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    crawl(site, out)
    site.docs["/a"] = Doc(html("a, edited"), etag='"a2"')
    site.docs["/f"].status = 410
    crawl(site, out, recrawl=True)
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "report", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    page = Path(f"{out}.report.html").read_text()
    row = page.split('id="recrawls-table"')[1].split("</tr>")[1]
    cells = [c.rsplit(">", 1)[1] for c in row.split("</td>")[:6]]
    assert cells == ["2", "0", "1", "6", "1", "0"]
    assert f"changed: {site.url('/a')}" in row and f"gone: {site.url('/f')}" in row


def test_max_pages_counts_each_recrawl_run(site: VersionedSite, tmp_path: Path) -> None:
    """--max-pages bounds one recrawl run: the rerun finishes it; URLs left done because
    they were not due do not use it up."""
    out = tmp_path / "out.jsonl"
    state = Path(f"{out}.state.sqlite")
    crawl(site, out, max_pages=8)
    age(state, ["/", "/a", "/b", "/c", "/d"], site, 7200)
    crawl(site, out, recrawl=True, revisit_after=3600, max_pages=3, concurrency=1)
    assert len(run_of(out, 2)) == 3
    crawl(site, out, recrawl=True, revisit_after=3600, max_pages=5, concurrency=1)
    assert len(run_of(out, 2)) == 5  # finished: the 5 due URLs, once each
    assert not [r for r in records(out) if r.get("run", 1) > 2]


def test_a_304_is_believed_only_when_asked_for(site: VersionedSite, tmp_path: Path) -> None:
    """/d sends no validators, so its revisit is unconditional: a 304 to it (or to a
    redirect's hop) says nothing and is not unchanged; the next run compares against the
    last good capture."""
    out = tmp_path / "out.jsonl"
    site.moved["/f"] = "/ft"
    site.docs["/ft"] = Doc(html("ft"), etag='"ft1"')
    crawl(site, out)
    site.always_304 |= {"/d", "/ft"}
    crawl(site, out, recrawl=True)
    second = run_of(out, 2)
    assert site.conditional["/d"] == {}
    assert second["/d"]["change"] == "failed"
    assert second["/f"]["change"] == "failed"
    assert second["/a"]["change"] == "unchanged"
    site.always_304.clear()
    crawl(site, out, recrawl=True)
    third = run_of(out, 3)
    assert third["/d"]["change"] == "unchanged"
    assert third["/f"]["change"] == "unchanged"


def test_a_304_without_validators_keeps_the_stored_ones(
    site: VersionedSite, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    site.bare_304 = True
    crawl(site, out)
    crawl(site, out, recrawl=True)
    assert run_of(out, 2)["/a"]["change"] == "unchanged"
    crawl(site, out, recrawl=True)
    assert run_of(out, 3)["/a"]["change"] == "unchanged"
    assert site.conditional["/a"] == {"if-none-match": '"a1"', "if-modified-since": LM1}
    assert site.conditional["/c"] == {"if-modified-since": LM1}


def test_a_redirects_target_validators_are_not_sent_to_it(tmp_path: Path) -> None:
    docs = {"/": Doc(html("home", "/hop")), "/t": Doc(html("t"), etag='"t1"')}
    with VersionedSite(docs) as site:
        site.moved["/hop"] = "/t"
        out = tmp_path / "out.jsonl"
        crawl(site, out, concurrency=1)
        crawl(site, out, recrawl=True)
        assert site.conditional["/hop"] == {}
        second = run_of(out, 2)
        assert second["/hop"]["change"] == "unchanged"
        assert second["/hop"]["final_url"] == site.url("/t")


def test_a_failed_revisit_keeps_the_last_good_capture(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    crawl(site, out)
    site.docs["/a"].status = 500
    site.docs["/d"].status = 503
    crawl(site, out, recrawl=True, retries=0)
    second = run_of(out, 2)
    assert second["/a"]["change"] == "failed" and second["/d"]["change"] == "failed"
    site.docs["/a"].status = site.docs["/d"].status = 200
    crawl(site, out, recrawl=True)
    third = run_of(out, 3)
    assert third["/a"]["change"] == "unchanged" and third["/d"]["change"] == "unchanged"
    assert site.conditional["/a"] == {"if-none-match": '"a1"', "if-modified-since": LM1}


@pytest.mark.parametrize("after", [float("inf"), float("nan"), 1e12, 0.0])
def test_revisit_after_must_be_finite_and_sane(after: float, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at most 100 years"):
        Crawler(
            "http://127.0.0.1:1/",
            output=str(tmp_path / "x.jsonl"),
            recrawl=True,
            revisit_after=after,
        )


def test_a_resumed_run_counts_only_its_own_revisits(site: VersionedSite, tmp_path: Path) -> None:
    """With --revisit-after, URLs not due stay done: the resume message and --max-pages
    count the URLs this run revisited, and a rerun past the limit says how to go on."""
    out = tmp_path / "out.jsonl"
    crawl(site, out)
    age(Path(f"{out}.state.sqlite"), ["/a", "/b", "/c"], site, 7200)
    crawl(site, out, recrawl=True, revisit_after=3600, max_pages=1, concurrency=1)
    assert len(run_of(out, 2)) == 1
    told: list[str] = []
    for limit in (1, 10_000):
        crawler = Crawler(
            site.url("/"),
            output=str(out),
            recrawl=True,
            revisit_after=3600,
            max_pages=limit,
            concurrency=1,
        )
        crawler.announce = told.append
        result = crawler.run()
        if limit == 1:
            assert result.stopped_by == "max_pages"
            assert any(
                "page limit reached: run 2 of the recrawl has revisited 1 URLs" in m
                and "a larger --max-pages finishes it" in m
                for m in told
            ), told
    assert any("resuming run 2 of the recrawl: 1 URLs revisited, 2 to go" in m for m in told)
    assert len(run_of(out, 2)) == 3


def test_urls_never_captured_are_not_due_at_once(tmp_path: Path) -> None:
    """A URL robots.txt has denied since run 1, or one that failed, was visited all the
    same: --revisit-after counts from then, so cron reaches "nothing to revisit"; a URL
    denied all along gets no "now disallows it" record."""
    docs = {"/": Doc(html("home", "/x", "/bad")), "/x": Doc(html("x")), "/bad": Doc("", status=500)}
    with VersionedSite(docs, robots="User-agent: *\nDisallow: /x\n") as site:
        out = tmp_path / "out.jsonl"
        crawl(site, out, retries=0)
        crawl(site, out, recrawl=True, retries=0)
        second = run_of(out, 2)
        assert "/x" not in second
        assert second["/bad"]["change"] == "failed"
        told: list[str] = []
        crawler = Crawler(site.url("/"), output=str(out), recrawl=True, revisit_after=3600)
        crawler.announce = told.append
        assert crawler.run().already_complete
        assert any("nothing to revisit" in m for m in told), told
        assert not [r for r in records(out) if r.get("run", 1) > 2]
        site.docs["/bad"].status = 200
        crawl(site, out, recrawl=True)
        assert run_of(out, 3)["/bad"]["change"] == "new"  # its first capture


def test_a_redirect_whose_target_changes_follows_it(tmp_path: Path) -> None:
    """/r leads to /t1, then /t2, then /t1 again: each run follows it to where it leads
    now (a target claimed in an earlier run is not seen for this one), and the targets
    are revisited on their own, so none is left behind."""
    docs = {"/": Doc(html("home", "/r")), "/t1": Doc(html("t1")), "/t2": Doc(html("t2"))}
    with VersionedSite(docs) as site:
        site.moved["/r"] = "/t1"
        out = tmp_path / "out.jsonl"
        crawl(site, out, concurrency=1)
        site.moved["/r"] = "/t2"
        crawl(site, out, recrawl=True, concurrency=1)
        second = run_of(out, 2)
        assert (second["/r"]["change"], second["/r"]["final_url"]) == ("changed", site.url("/t2"))
        assert "/t1" in second  # no longer reached through /r: visited on its own
        site.moved["/r"] = "/t1"
        crawl(site, out, recrawl=True, concurrency=1)
        third = run_of(out, 3)
        assert third["/r"]["status"] == 200
        assert (third["/r"]["change"], third["/r"]["final_url"]) == ("changed", site.url("/t1"))
        assert third["/t1"]["change"] == "unchanged" and "/t2" in third
        crawl(site, out, recrawl=True, concurrency=1)
        assert {p: r["change"] for p, r in run_of(out, 4).items()} == dict.fromkeys(
            ("/", "/r", "/t1", "/t2"), "unchanged"
        )
