"""Exactly once per run (#19) when robots.txt cannot be read during a recrawl: its host's
URLs get one record each for that run (``failed``, keeping their last capture), the run
finishes, and the next run compares with the last good capture."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from sites import Reply, Request, html
from test_recrawl import Doc, VersionedSite, crawl, records


def by_run(out: Path) -> dict[int, list[dict[str, object]]]:
    if out.suffix == ".csv":
        with out.open(newline="") as f:
            found: list[dict[str, object]] = [dict(r) for r in csv.DictReader(f)]
        for r in found:
            r["run"] = int(str(r["run"]))
    else:
        found = records(out)
    runs: dict[int, list[dict[str, object]]] = {}
    for r in found:
        runs.setdefault(int(r.get("run") or 1), []).append(r)  # type: ignore[call-overload]
    return runs


def path_of(record: dict[str, object]) -> str:
    return "/" + str(record["url"]).split("/", 3)[3]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_robots_503_in_a_recrawl_gives_one_record_per_url(suffix: str, tmp_path: Path) -> None:
    docs = {
        "/": Doc(html("home", "/a", "/b", "/c")),
        "/a": Doc(html("a"), etag='"a1"'),
        "/b": Doc(html("b")),
        "/c": Doc(html("c")),
    }
    with VersionedSite(docs) as site:
        out = tmp_path / f"out.{suffix}"
        crawl(site, out)
        plain = site._serve
        robots_asked = 0

        def serve(req: Request) -> Reply:
            nonlocal robots_asked
            if req.path == "/robots.txt":
                robots_asked += 1
                if robots_asked == 1:  # the recrawl's first robots.txt fetch only
                    return Reply(503, "busy", content_type="text/plain")
            return plain(req)

        site.site.fallback = serve
        docs["/a"] = Doc(html("a, edited"), etag='"a2"')
        docs["/c"].status = 404
        crawl(site, out, recrawl=True, retries=0)
        crawl(site, out, recrawl=True, retries=0)
        assert robots_asked == 2
    runs = by_run(out)
    # Run 2: robots.txt answered 503, so nothing was fetched; each URL once, as failed.
    second = {path_of(r): r for r in runs[2]}
    assert len(second) == len(runs[2]) == 4
    assert {(r["change"], r["error"]) for r in second.values()} == {("failed", "robots_http_503")}
    # Run 3 (robots.txt readable again) compares with run 1's captures: a failed run
    # changes nothing of what the state keeps.
    third = {path_of(r): r for r in runs[3]}
    assert len(third) == len(runs[3]) == 4
    assert {p: r["change"] for p, r in third.items()} == {
        "/": "unchanged",
        "/a": "changed",
        "/b": "unchanged",
        "/c": "gone",
    }
    assert set(runs) == {1, 2, 3}
    db = sqlite3.connect(f"{out}.state.sqlite")
    try:
        counted = db.execute("SELECT generation, change, n FROM changes ORDER BY 1, 2").fetchall()
        assert counted == [(2, "failed", 4), (3, "changed", 1), (3, "gone", 1), (3, "unchanged", 2)]
        assert db.execute("SELECT count(*) FROM urls WHERE state=0").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM held").fetchone() == (0,)
    finally:
        db.close()
