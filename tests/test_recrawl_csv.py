"""A recrawl (#19) onto CSV output: each run's rows are appended with ``run`` and
``change`` columns, which every CSV has from its first row on; a CSV an older shoal wrote
(no such columns) is refused by a recrawl and left as it is."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import Crawler, OutputError
from shoal.report._read import OutputReader
from sites import html
from test_recrawl import LM1, Doc, VersionedSite, crawl


@pytest.fixture
def site() -> Iterator[VersionedSite]:
    """test_recrawl's site: validators of every kind, and pages to change, delete, add."""
    docs = {
        "/": Doc(html("home", "/a", "/b", "/c", "/d", "/e", "/f", "/x"), etag='"h1"'),
        "/a": Doc(html("a"), etag='"a1"', last_modified=LM1),
        "/b": Doc(html("b"), etag='W/"b1"'),
        "/c": Doc(html("c"), last_modified=LM1),
        "/d": Doc(html("d")),
        "/e": Doc(html("e"), etag='"e1"'),
        "/f": Doc(html("f")),
        "/x": Doc(html("x")),
    }
    with VersionedSite(docs) as s:
        yield s


def rows(out: Path) -> list[dict[str, str]]:
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def csv_run(out: Path, run: int) -> dict[str, dict[str, str]]:
    """The rows of one run by path; exactly one per URL."""
    mine = [r for r in rows(out) if r["run"] == str(run)]
    paths = ["/" + r["url"].split("/", 3)[3] for r in mine]
    assert len(paths) == len(set(paths)), sorted(paths)
    return dict(zip(paths, mine, strict=True))


def test_csv_appends_each_run_with_run_and_change(site: VersionedSite, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    crawl(site, out)
    first = out.read_bytes()
    header = first.split(b"\n", 1)[0].decode().split(",")
    assert header[:3] == ["url", "final_url", "status"] and {"run", "change"} <= set(header)
    # Run 1: every row says run 1, with no change (nothing to compare with), as the
    # SQLite output's rows of run 1 do; JSONL records of run 1 carry neither field.
    assert {(r["run"], r["change"]) for r in rows(out)} == {("1", "")}
    assert len(rows(out)) == 8

    docs = site.docs
    docs["/"] = Doc(html("home", "/a", "/b", "/c", "/d", "/n"), etag='"h2"')
    docs["/a"] = Doc(html("a, edited"), etag='"a2"')
    docs["/n"] = Doc(html("new", "/n2"))
    docs["/n2"] = Doc(html("new too"))
    docs["/e"].status = 404
    docs["/f"].status = 410
    site.robots = "User-agent: *\nDisallow: /x\n"
    crawl(site, out, recrawl=True)
    second = csv_run(out, 2)
    truth = {
        "/": "changed",
        "/a": "changed",
        "/b": "unchanged",
        "/c": "unchanged",
        "/d": "unchanged",
        "/e": "gone",
        "/f": "gone",
        "/n": "new",
        "/n2": "new",
        "/x": "disallowed",
    }
    assert {p: r["change"] for p, r in second.items()} == truth
    assert second["/e"]["status"] == "404" and second["/f"]["status"] == "410"
    assert second["/b"]["status"] == "304"
    assert out.read_bytes().startswith(first)  # appended: run 1's rows as they were
    assert out.read_bytes().count(b"\nurl,") == 0  # one header

    crawl(site, out, recrawl=True)
    third = csv_run(out, 3)
    assert third["/a"]["change"] == "unchanged" and third["/n2"]["change"] == "unchanged"
    assert third["/e"]["change"] == "unchanged"  # still 404: nothing changed since run 2

    # The report reads the runs back (run as a number) and counts their changes.
    read = list(OutputReader(out))
    assert {r["run"] for r in read} == {1, 2, 3}
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
    assert cells == ["2", "2", "2", "3", "2", "1"]  # run, new, changed, unchanged, gone, other


def test_csv_with_a_page_callback_has_the_run_columns(tmp_path: Path) -> None:
    docs = {"/": Doc(html("home", "/a")), "/a": Doc(html("a"), etag='"a1"')}
    with VersionedSite(docs) as site:
        out = tmp_path / "out.csv"

        def on_page(page: object) -> dict[str, object]:
            return {"page": page.url, "h": page.css("title::text").get()}  # type: ignore[attr-defined]

        for again in (False, True):
            Crawler(site.url("/"), output=str(out), on_page=on_page, recrawl=again).run()
    header = out.read_text().split("\n", 1)[0].split(",")
    assert header[:2] == ["page", "h"] and header[-2:] == ["run", "change"]
    # (A 304 has no page for the callback: its row is the standard record.)
    got = sorted(
        (r["run"], (r["page"] or r["url"]).rsplit("/", 1)[1], r["change"]) for r in rows(out)
    )
    assert got == [("1", "", ""), ("1", "a", ""), ("2", "", "unchanged"), ("2", "a", "unchanged")]


def _as_older_shoal_wrote_it(out: Path) -> None:
    """Drop the run and change columns, as a CSV from before them, and move the state's
    committed offset to match (the state of that crawl named its own file's size)."""
    table = list(csv.reader(out.open(newline="")))
    keep = [i for i, name in enumerate(table[0]) if name not in ("run", "change")]
    with out.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for row in table:
            writer.writerow([row[i] for i in keep])
    size = out.stat().st_size
    db = sqlite3.connect(f"{out}.state.sqlite")
    db.execute("UPDATE outputs SET offset=?", (size,))
    db.execute("UPDATE meta SET value=? WHERE key='output_offset'", (str(size),))
    db.commit()
    db.close()


def test_a_recrawl_refuses_a_csv_without_run_columns(
    site: VersionedSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.csv"
    state = Path(f"{out}.state.sqlite")
    crawl(site, out, max_pages=3)
    _as_older_shoal_wrote_it(out)
    # A plain resume keeps the header it finds: its rows have no run (nor a warning).
    crawl(site, out)
    assert "run" not in out.read_text().split("\n", 1)[0].split(",")
    assert len(rows(out)) == 8 and all(None not in r for r in rows(out))
    assert "drops fields" not in caplog.text
    read = list(OutputReader(out))  # the report reads this shape too: no run, run 1's
    assert len(read) == 8 and all(r.get("run") is None for r in read)
    before = out.read_bytes()

    cmd = [sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out), "--recrawl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert "written by an older shoal: its CSV header has no run and change columns" in (
        proc.stderr
    )
    assert "--fresh" in proc.stderr and "without --recrawl" in proc.stderr
    # Nothing moved: the output, and the state still at run 1 with nothing queued.
    assert out.read_bytes() == before
    db = sqlite3.connect(state)
    try:
        assert db.execute("SELECT value FROM meta WHERE key='generation'").fetchone() == ("1",)
        assert db.execute("SELECT count(*) FROM urls WHERE state=0").fetchone() == (0,)
    finally:
        db.close()
    assert site.site.count("/robots.txt") == 2  # the two crawls'; the refusal fetched nothing
    try:
        Crawler(site.url("/"), output=str(out), recrawl=True).run()
    except OutputError as exc:
        assert "fresh=True" in str(exc)
    else:
        raise AssertionError("a recrawl onto an old CSV was not refused")
    assert out.read_bytes() == before
    # The fix the message names: --fresh starts over, with the new header.
    crawl(site, out, fresh=True)
    crawl(site, out, recrawl=True)
    assert len(csv_run(out, 2)) == 8


def test_combine_joins_csv_parts_with_run_columns(site: VersionedSite, tmp_path: Path) -> None:
    from shoal import StateError
    from shoal.state import combine_parts

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    crawl(site, a)
    crawl(site, b)
    joined = tmp_path / "all.csv"
    combine_parts([(a, a.stat().st_size), (b, b.stat().st_size)], joined)
    assert len(rows(joined)) == 16 and {r["run"] for r in rows(joined)} == {"1"}
    assert {r["run"] for r in OutputReader(joined)} == {1}
    # A part an older shoal wrote (no run and change columns) has another header: refused.
    _as_older_shoal_wrote_it(b)
    with pytest.raises(StateError, match="another CSV header"):
        combine_parts([(a, a.stat().st_size), (b, b.stat().st_size)], tmp_path / "x.csv")
