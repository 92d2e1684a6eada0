"""combine_parts: one output from the parts of a shared crawl, each cut at its committed
offset. Real files; the last test takes the offsets from a real Redis."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from redis_server import RedisServer
from shoal import StateError, UsageError
from shoal.state import NewURL, RedisCrawlState, combine_parts


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
    with pytest.raises(UsageError, match="only jsonl and csv"):
        combine_parts([a], tmp_path / "o.warc.gz")
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
    a.submit([NewURL(f"{host}/{i}", host) for i in range(3)])
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
