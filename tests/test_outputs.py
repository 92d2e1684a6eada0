"""Several outputs from one crawl (-o pages.jsonl -o crawl.warc.gz): each holds every
page exactly once, through kill -9 and resume; the set of outputs is the crawl's."""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import shoal
from shoal.crawler import Crawler
from shoal.state import StateStore, peek_identity, read_status
from sites import Site, html
from test_durable import (
    CONCURRENCY,
    PAGES,
    check_output,
    check_warc,
    graph_site,
    page_hits,
    shoal_cmd,
    wait_for_hits,
)

FIXTURES = Path(__file__).parent / "fixtures"


def two_outputs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "pages.jsonl", tmp_path / "crawl.warc.gz"


def shoal_run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def offsets(state: Path) -> list[int]:
    db = sqlite3.connect(state)
    try:
        return [n for (n,) in db.execute("SELECT offset FROM outputs ORDER BY n")]
    finally:
        db.close()


def test_two_outputs_each_hold_every_page_once(tmp_path: Path) -> None:
    jsonl, warc = two_outputs(tmp_path)
    with graph_site() as site:
        result = Crawler(
            site.url("/p0"), output=[str(jsonl), str(warc)], concurrency=CONCURRENCY
        ).run()
        check_output(jsonl, site)
        check_warc(warc, site)
    assert result.pages == PAGES
    state = Path(f"{jsonl}.state.sqlite")  # named after the first output
    assert not Path(f"{warc}.state.sqlite").exists()
    assert offsets(state) == [jsonl.stat().st_size, warc.stat().st_size]
    status = read_status(state)
    assert status["identity"]["outputs"] == [[str(jsonl), "jsonl"], [str(warc), "warc"]]
    assert status["outputs"] == [
        {"path": str(jsonl), "format": "jsonl", "offset": jsonl.stat().st_size},
        {"path": str(warc), "format": "warc", "offset": warc.stat().st_size},
    ]


@pytest.mark.parametrize("seed", range(2))
def test_kill_9_then_resume_keeps_both_outputs_exactly_once(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    jsonl, warc = two_outputs(tmp_path)
    with graph_site() as site:
        for _ in range(2):
            before = sum(page_hits(site).values())
            proc = subprocess.Popen(
                shoal_cmd(site, jsonl, "-o", str(warc)), stderr=subprocess.DEVNULL
            )
            wait_for_hits(site, before + rng.randint(1, PAGES // 2), proc)
            proc.kill()
            proc.wait(30)
        done = subprocess.run(
            shoal_cmd(site, jsonl, "-o", str(warc)), stderr=subprocess.PIPE, timeout=120
        )
        assert done.returncode == 0, done.stderr
        check_output(jsonl, site)
        check_warc(warc, site)  # valid under warcio check and index, each page once
        repeats = sum(n - 1 for n in page_hits(site).values())
        assert repeats <= 2 * 4 * CONCURRENCY


def test_a_changed_set_of_outputs_is_refused(tmp_path: Path) -> None:
    jsonl, warc = two_outputs(tmp_path)
    other = tmp_path / "more.csv"
    with graph_site() as site:
        first = shoal_cmd(site, jsonl, "--max-pages", "5")
        assert subprocess.run(first, timeout=60).returncode == 0
        size = jsonl.stat().st_size
        for extra in (["-o", str(warc)], ["-o", str(warc), "-o", str(other)]):
            proc = subprocess.run(
                shoal_cmd(site, jsonl, *extra), capture_output=True, text=True, timeout=60
            )
            assert proc.returncode == 3, proc.stderr
            assert "outputs: " in proc.stderr and str(jsonl) in proc.stderr, proc.stderr
            assert not warc.exists() and not other.exists()  # nothing left behind
        assert jsonl.stat().st_size == size
        # And back: a two-output crawl resumed with one output is refused too.
        both = tmp_path / "both"
        both.mkdir()
        a, b = two_outputs(both)
        made = subprocess.run(shoal_cmd(site, a, "-o", str(b), "--max-pages", "5"), timeout=60)
        assert made.returncode == 0
        proc = subprocess.run(shoal_cmd(site, a), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3 and "outputs: " in proc.stderr and str(b) in proc.stderr
        # --fresh starts over with the new set.
        again = subprocess.run(shoal_cmd(site, jsonl, "-o", str(warc), "--fresh"), timeout=120)
        assert again.returncode == 0
        check_output(jsonl, site)
        check_warc(warc, site)


def test_each_output_keeps_the_no_clobber_rules(tmp_path: Path) -> None:
    jsonl, warc = two_outputs(tmp_path)
    warc.write_bytes(b"someone else's archive")
    with Site() as site:
        site.routes.update({"/": html("home")})
        proc = shoal_run("crawl", site.url("/"), "-o", str(jsonl), "-o", str(warc), "-q")
        assert proc.returncode == 4, proc.stderr
        assert f"{warc} already exists" in proc.stderr and "--overwrite" in proc.stderr
        assert warc.read_bytes() == b"someone else's archive"
        assert not jsonl.exists() and not Path(f"{jsonl}.state.sqlite").exists()
        proc = shoal_run(
            "crawl", site.url("/"), "-o", str(jsonl), "-o", str(warc), "-q", "--overwrite"
        )
        assert proc.returncode == 0, proc.stderr
    assert warc.read_bytes()[:2] == b"\x1f\x8b"
    assert len(jsonl.read_text().splitlines()) == 1  # and the first output has its record


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "a.jsonl", "-o", "b.csv", "--format", "csv"], "--format applies to a single"),
        (["-o", "a.jsonl", "-o", "./a.jsonl"], "names './a.jsonl' twice"),
        (["-o", "-", "-o", "b.csv"], "each must be a file"),
        (["-o", "/dev/null", "-o", "b.csv"], "put a file first"),
        (
            ["-o", "a.jsonl", "-o", "b.csv", "--redis", "redis://127.0.0.1:9/0", "--crawl-id", "x"],
            "--redis takes one -o",
        ),
    ],
)
def test_what_several_outputs_cannot_do_is_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = shoal_run("crawl", "http://127.0.0.1:9/", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_refuses_format_with_several_outputs() -> None:
    with pytest.raises(shoal.UsageError, match=r"^format applies to a single output"):
        Crawler("http://127.0.0.1:9/", output=["a.jsonl", "b.csv"], format="csv")


def test_status_and_report_find_the_state_from_any_output(tmp_path: Path) -> None:
    jsonl, warc = two_outputs(tmp_path)
    csv = tmp_path / "pages.csv"
    with Site() as site:
        site.routes.update({"/": html("home", "/a"), "/a": html("a")})
        Crawler(site.url("/"), output=[str(warc), str(jsonl), str(csv)], progress=False).run()
    state = Path(f"{warc}.state.sqlite")
    for given in (warc, jsonl, csv):
        proc = shoal_run("status", str(given))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"{state}: finished"), proc.stdout
    proc = shoal_run("report", str(csv))
    assert proc.returncode == 0, proc.stderr
    assert f"state file: <code>{state}</code>" in Path(f"{csv}.report.html").read_text()


def test_a_state_file_from_before_several_outputs_opens(tmp_path: Path) -> None:
    """A schema-1 state written by the release before outputs were a table (fixture made
    by that code: a 2-page crawl of 4 stopped by --max-pages) opens, gains the table in
    place with its one output at the committed offset, and stays this crawl's."""
    state = tmp_path / "old.state.sqlite"
    shutil.copy(FIXTURES / "schema1-pages.jsonl.state.sqlite", state)
    identity = peek_identity(state)
    assert identity is not None and "outputs" not in identity
    with StateStore.open(state, identity) as store:
        assert store.output_offsets() == [store.output_offset] == [569]
        assert (store.done_count(), store.queued_count()) == (2, 2)
    db = sqlite3.connect(state)
    rows = db.execute("SELECT n, path, format, offset FROM outputs").fetchall()
    db.close()
    assert rows == [(0, identity["output"], "jsonl", 569)]
    with StateStore.open(state, identity) as store:  # opened again: unchanged
        assert store.output_offsets() == [569]
    with pytest.raises(shoal.StateMismatch, match="outputs: "):
        StateStore.open(
            state, {**identity, "outputs": [[identity["output"], "jsonl"], ["x", "warc"]]}
        )
