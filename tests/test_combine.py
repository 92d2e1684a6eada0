"""combine_parts: one output from the parts of a shared crawl, each cut at its committed
offset. Real files; the last test takes the offsets from a real Redis."""

from __future__ import annotations

import csv
import gzip
import io
import json
import socket
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from redis_server import RedisServer
from shoal import StateError, UsageError
from shoal.state import Candidate, RedisCrawlState, combine_parts


def jsonl(urls: list[str]) -> bytes:
    return b"".join(json.dumps({"url": u}).encode() + b"\n" for u in urls)


def part(path: Path, committed: bytes, tail: bytes = b"") -> tuple[Path, int]:
    """A part file: committed records, then an uncommitted tail (a killed worker's)."""
    path.write_bytes(committed + tail)
    return path, len(committed)


def test_jsonl_parts_are_cut_at_their_committed_offsets(tmp_path: Path) -> None:
    parts = [
        part(tmp_path / "a.jsonl", jsonl(["u1", "u2"]), jsonl(["u5"])),
        part(tmp_path / "b.jsonl", jsonl(["u3"]), b'{"url": "u6", "ti'),  # torn last line
        part(tmp_path / "c.jsonl", b"", jsonl(["u7"])),  # never committed anything
        part(tmp_path / "d.jsonl", jsonl(["u4"])),
    ]
    report = combine_parts(parts, tmp_path / "all.jsonl")
    lines = (tmp_path / "all.jsonl").read_bytes().splitlines()
    assert [json.loads(x)["url"] for x in lines] == ["u1", "u2", "u3", "u4"]
    assert [(r.lines, r.size - r.committed) for r in report] == [(2, 14), (1, 17), (0, 14), (1, 0)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.jsonl",
        "all.jsonl",
        "b.jsonl",
        "c.jsonl",
        "d.jsonl",
    ]  # no temporary file left behind


def test_csv_parts_keep_one_header_and_quoted_newlines(tmp_path: Path) -> None:
    def rows(*records: tuple[str, str]) -> bytes:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerows(records)
        return buf.getvalue().encode()

    header = rows(("url", "title"))
    parts = [
        part(tmp_path / "a.csv", header + rows(("u1", "one\nline two")), rows(("u9", "x"))),
        part(tmp_path / "b.csv", header + rows(("u2", "b"), ("u3", "c"))),
        part(tmp_path / "c.csv", b"", header),  # opened, never committed
    ]
    combine_parts(parts, tmp_path / "all.csv")
    with open(tmp_path / "all.csv", newline="") as f:
        got = list(csv.reader(f))
    assert got == [["url", "title"], ["u1", "one\nline two"], ["u2", "b"], ["u3", "c"]]


def test_parts_that_do_not_match_their_offsets_are_refused(tmp_path: Path) -> None:
    short = part(tmp_path / "short.jsonl", jsonl(["u1"]))
    with pytest.raises(StateError, match=r"shorter .* than its committed offset"):
        combine_parts([(short[0], short[1] + 5)], tmp_path / "out.jsonl")
    with pytest.raises(StateError, match="does not end a record"):
        combine_parts([(short[0], short[1] - 2)], tmp_path / "out.jsonl")
    h1 = part(tmp_path / "h1.csv", b"url,title\nu1,a\n")
    h2 = part(tmp_path / "h2.csv", b"url,status\nu2,200\n")
    with pytest.raises(StateError, match="another CSV header"):
        combine_parts([h1, h2], tmp_path / "out.csv")
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.csv").exists()
    assert len(list(tmp_path.iterdir())) == 3  # nothing half-written, no temporary left


def test_usage_errors(tmp_path: Path) -> None:
    a = part(tmp_path / "a.jsonl", jsonl(["u1"]))
    (tmp_path / "mine.jsonl").write_text("the user's own file\n")
    with pytest.raises(UsageError, match="exists"):
        combine_parts([a], tmp_path / "mine.jsonl")
    assert (tmp_path / "mine.jsonl").read_text() == "the user's own file\n"
    with pytest.raises(UsageError, match="also one of the parts"):
        combine_parts([a], a[0], overwrite=True)
    with pytest.raises(UsageError, match="cannot read part"):
        combine_parts([(tmp_path / "missing.jsonl", 0)], tmp_path / "o.jsonl")
    with pytest.raises(UsageError, match="no worker writes a sqlite part"):
        combine_parts([a], tmp_path / "o.sqlite")
    with pytest.raises(UsageError, match="only jsonl, csv and warc"):
        combine_parts([a], tmp_path / "o.jsonl", format="parquet")
    combine_parts([a], tmp_path / "mine.jsonl", overwrite=True)
    assert (tmp_path / "mine.jsonl").read_bytes() == jsonl(["u1"])


def test_offsets_from_redis_give_every_page_once(redis_server: RedisServer, tmp_path: Path) -> None:
    """Two workers commit in Redis; one was killed after writing past its last commit and
    its lease went to the other. The committed offsets from Redis cut its tail."""
    host = "http://a.test"
    a = RedisCrawlState.open(redis_server.url, "c", {}, robots=False)
    b = RedisCrawlState.open(redis_server.url, "c", {}, robots=False)
    a.register("a")
    b.register("b")
    a.submit([Candidate(f"{host}/{i}") for i in range(3)])
    a.lease_ttl = 0.0
    (j1, j2, j3), _ = a.lease(3)
    a.commit([(j1.id, "done")], expected_offset=0, new_offset=len(jsonl([j1.url])))
    a_file = part(tmp_path / "a.jsonl", jsonl([j1.url]), jsonl([j2.url, j3.url]))[0]  # killed
    redone, _ = b.lease(3)  # a's leases expired: b does j2 and j3 again
    assert sorted(j.url for j in redone) == sorted([j2.url, j3.url])
    b_bytes = jsonl([j.url for j in redone])
    b.commit([(j.id, "done") for j in redone], expected_offset=0, new_offset=len(b_bytes))
    (tmp_path / "b.jsonl").write_bytes(b_bytes)
    offsets = {w.worker_id: w.offset for w in b.workers()}
    combine_parts(
        [(a_file, offsets["a"]), (tmp_path / "b.jsonl", offsets["b"])], tmp_path / "all.jsonl"
    )
    urls = [json.loads(x)["url"] for x in (tmp_path / "all.jsonl").read_bytes().splitlines()]
    assert sorted(urls) == sorted(f"{host}/{i}" for i in range(3))
    assert b.finished()
    a.close()
    b.close()


def warc_part(path: Path, urls: list[str], *, committed: int) -> tuple[Path, int, list[int]]:
    """A WARC part as a worker writes it: a warcinfo record, then a request and a response
    record per page, each its own gzip member; ``committed`` pages of it were committed.
    Returns the path, the committed offset and the offset after each page."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with path.open("wb") as f:
        writer = WARCWriter(f, gzip=True, warc_version="1.1")
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test"}))
        ends = [f.tell()]
        for name in urls:
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], "HTTP/1.1")
            url = f"http://a.test/{name}"  # warcio parses HTTP headers of http(s) records only
            response = writer.create_warc_record(
                url, "response", payload=io.BytesIO(f"<p>{url}</p>".encode()), http_headers=http
            )
            request = writer.create_warc_record(
                url,
                "request",
                payload=io.BytesIO(b""),
                http_headers=StatusAndHeaders("GET / HTTP/1.1", [], is_http_request=True),
            )
            writer.write_request_response_pair(request, response)
            ends.append(f.tell())
    return path, ends[committed], ends


def gzip_members(data: bytes) -> list[bytes]:
    members = []
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        d.decompress(data)
        members.append(data[: len(data) - len(d.unused_data)])
        data = d.unused_data
    return members


def warc_records(path: Path) -> list[tuple[str, str | None]]:
    from warcio.archiveiterator import ArchiveIterator

    with path.open("rb") as f:
        return [
            (r.rec_type, r.rec_headers.get_header("WARC-Target-URI"))
            for r in ArchiveIterator(f, check_digests="raise")
        ]


def warcio_check(path: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from warcio.cli import main; main(['check', '-v', sys.argv[1]])"
    return subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_warc_parts_are_cut_at_their_committed_offsets(tmp_path: Path) -> None:
    a, a_at, a_ends = warc_part(tmp_path / "a.warc.gz", ["u1", "u2", "u5"], committed=2)
    with a.open("ab") as f:  # killed mid-record: half a gzip member after u5
        f.write((a.read_bytes()[a_ends[1] : a_ends[2]])[:150])
    b, b_at, _ = warc_part(tmp_path / "b.warc.gz", ["u3", "u4"], committed=2)
    c = warc_part(tmp_path / "c.warc.gz", ["u6"], committed=0)[0]  # never committed
    report = combine_parts([(a, a_at), (b, b_at), (c, 0)], tmp_path / "all.warc.gz")
    out = tmp_path / "all.warc.gz"
    records = warc_records(out)
    responses = [u for kind, u in records if kind == "response"]
    assert responses == [f"http://a.test/u{i}" for i in (1, 2, 3, 4)]
    # Each part's warcinfo stays in front of the records it describes.
    assert [k for k, _ in records].count("warcinfo") == 2
    assert records[0][0] == "warcinfo" and records[5][0] == "warcinfo"
    assert out.read_bytes() == a.read_bytes()[:a_at] + b.read_bytes()
    assert [(r.records, r.size > r.committed) for r in report] == [(5, True), (5, False), (0, True)]
    checked = warcio_check(out)
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.count("digest pass") == len(records) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.warc.gz", "all.warc.gz", "b.warc.gz", "c.warc.gz",
    ]  # fmt: skip


def test_warc_parts_that_are_not_whole_records_are_refused(tmp_path: Path) -> None:
    a, a_at, ends = warc_part(tmp_path / "a.warc.gz", ["u1", "u2"], committed=2)
    out = tmp_path / "all.warc.gz"
    for inside in (a_at - 1, ends[1] + 30, 10):
        with pytest.raises(StateError, match=rf"a\.warc\.gz .*committed offset {inside}"):
            combine_parts([(a, inside)], out)
    plain = tmp_path / "plain.warc"
    warc = gzip.decompress(a.read_bytes())  # the same records, not compressed
    plain.write_bytes(warc)
    with pytest.raises(StateError, match=r"plain\.warc: the gzip member at byte 0"):
        combine_parts([(plain, len(warc))], out)
    whole = tmp_path / "whole.warc.gz"  # every record in one gzip member
    whole.write_bytes(gzip.compress(warc))
    with pytest.raises(StateError, match=r"whole\.warc\.gz"):
        combine_parts([(whole, whole.stat().st_size)], out)
    text = tmp_path / "text.warc.gz"
    text.write_bytes(gzip.compress(b"not a warc\n"))
    with pytest.raises(StateError, match=r"text\.warc\.gz is not a valid WARC stream"):
        combine_parts([(text, text.stat().st_size)], out)
    # A response whose block no longer matches its digest, in its own intact gzip member.
    bad = tmp_path / "bad.warc.gz"
    response, request = gzip_members(a.read_bytes()[ends[0] : ends[1]])
    assert b"WARC-Type: response" in gzip.decompress(response)
    changed = gzip.decompress(response).replace(b"/u1</p>", b"/XX</p>")
    bad.write_bytes(a.read_bytes()[: ends[0]] + gzip.compress(changed) + request)
    with pytest.raises(StateError, match=r"bad\.warc\.gz .*digest"):
        combine_parts([(bad, bad.stat().st_size)], out)
    with pytest.raises(
        StateError, match=r"a\.warc\.gz is a WARC part: WARC parts cannot be combined into a JSONL"
    ):
        combine_parts([(a, a_at)], tmp_path / "all.jsonl")
    assert not out.exists() and not (tmp_path / "all.jsonl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_output_is_never_put_over_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    from shoal.state._combine import _publish

    tmp = tmp_path / ".all.jsonl.x.tmp"
    tmp.write_text("combined\n")
    out = tmp_path / "all.jsonl"
    out.write_text("the user's own file\n")  # created after combine_parts' first check
    with pytest.raises(UsageError, match="exists"):
        _publish(tmp, out, overwrite=False)
    assert out.read_text() == "the user's own file\n"
    _publish(tmp, out, overwrite=True)
    assert out.read_text() == "combined\n"


def test_parts_of_another_format_than_the_output_are_refused_by_name(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """``shoal combine m-*.jsonl -o mixc.csv``: the parts are JSONL, the output CSV; the
    message names the part, its format and the output's (it said "another CSV header")."""
    host = "http://a.test"
    parts = []
    for n in (1, 2):
        state = RedisCrawlState.open(redis_server.url, "c", {}, robots=False)
        path = tmp_path / f"m-{n}.jsonl"
        state.register(f"box:{path}")
        state.submit([Candidate(f"{host}/{n}")])
        (job,), _ = state.lease(1)
        data = jsonl([job.url])
        state.commit([(job.id, "done")], expected_offset=0, new_offset=len(data))
        path.write_bytes(data)
        parts.append(str(path))
        state.close()
    out = tmp_path / "mixc.csv"
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "combine", "--redis", redis_server.url, "--crawl-id", "c",
         *parts, "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == StateError.exit_code, done.stderr
    assert (
        f"{parts[0]} is a JSONL part: JSONL parts cannot be combined into a CSV output "
        f"({out})" in done.stderr
    )
    assert "header" not in done.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # The same parts into a JSONL output: every page once.
    into = tmp_path / "all.jsonl"
    ok = subprocess.run(
        [sys.executable, "-m", "shoal", "combine", "--redis", redis_server.url, "--crawl-id", "c",
         *parts, "-o", str(into)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert into.read_bytes() == jsonl([f"{host}/1", f"{host}/2"])


def test_a_shared_crawl_of_an_unreachable_host_combines_to_one_record_per_url(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A shared crawl is one run: a URL held back (robots.txt unreachable) is finished as
    failed, so a second worker does not record it again and combine holds it once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    parts = [str(tmp_path / f"m-{n}.jsonl") for n in (1, 2)]
    for path in parts:
        done = subprocess.run(
            [sys.executable, "-m", "shoal", "crawl", f"http://127.0.0.1:{port}/", "--redis",
             redis_server.url, "--crawl-id", "c", "-o", path, "-q"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stderr
    out = tmp_path / "all.jsonl"
    combined = subprocess.run(
        [sys.executable, "-m", "shoal", "combine", "--redis", redis_server.url, "--crawl-id",
         "c", *parts, "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert combined.returncode == 0, combined.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["url"], r["error"]) for r in records] == [
        (f"http://127.0.0.1:{port}/", "connection")
    ]
