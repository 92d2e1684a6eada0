"""State versions: an older state file is migrated in place when a crawl opens it (a
backup beside it first, one transaction), a newer one is refused, a read-only command
never migrates; a shared crawl's Redis key layout of another version is refused.

Fixtures (tests/fixtures/, written by the release before schema versions were counted,
c7f4962, so by the code that shipped schema 1):
- ``schema1-pages.jsonl.state.sqlite``: a 2-page crawl of 4 stopped by --max-pages.
- ``schema1-stopped-pages.jsonl`` and its ``.state.sqlite``: ``shoal crawl URL -o
  pages.jsonl --max-pages 3 --concurrency 1`` of the site in ``SITE`` below (6 URLs, one a
  404), served on 127.0.0.1:38749; the test moves it to its own server's port.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from redis_server import RedisServer
from shoal import Crawler, RedisStateError, StateError, StateLocked, StateMismatch
from shoal.state import RedisCrawlState, StateStore, fingerprint, peek_identity
from shoal.state import _store as store
from sites import Reply, Site, html

FIXTURES = Path(__file__).parent / "fixtures"
SITE = {
    "/": html("home", "/a", "/b", "/c", "/missing"),
    "/a": html("a", "/d"),
    "/b": html("b"),
    "/c": html("c"),
    "/d": html("d", "/"),
    "/missing": Reply(404, "no"),
}
FIXTURE_ORIGIN = "127.0.0.1:38749"


def schema_of(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0])
    finally:
        db.close()


def dump(path: Path) -> list[str]:
    """Everything the file holds, schema and rows (what a reader sees, WAL included)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def tables(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


def backups(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".bak"))


def old_state(tmp_path: Path) -> Path:
    state = tmp_path / "old.state.sqlite"
    shutil.copy(FIXTURES / "schema1-pages.jsonl.state.sqlite", state)
    return state


def shoal_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=60
    )


def test_a_schema1_file_is_migrated_in_place_with_a_backup_beside_it(tmp_path: Path) -> None:
    state = old_state(tmp_path)
    before = dump(state)
    assert schema_of(state) == "1" and "outputs" not in tables(state)
    identity = peek_identity(state)
    assert identity is not None
    told: list[str] = []
    with StateStore.open(state, identity, announce=told.append) as opened:
        assert (opened.done_count(), opened.queued_count()) == (2, 2)
        assert opened.output_offsets() == [569]
    backup = tmp_path / "old.state.sqlite.v1.bak"
    assert told == [
        f"migrated the state file {state} from schema 1 to 4; "
        f"the file as it was is kept at {backup}"
    ]
    # The backup is the old file, whole and on its own (no -wal beside it needed).
    assert backups(tmp_path) == [backup.name]
    assert dump(backup) == before and schema_of(backup) == "1"
    assert not Path(f"{backup}-wal").exists()
    # The file is version 2: every table a version-2 file has, the outputs filled in.
    assert schema_of(state) == "4"
    assert {"runs", "holds", "held", "outputs"} <= tables(state)
    db = sqlite3.connect(state)
    assert db.execute("SELECT n, path, format, offset FROM outputs").fetchall() == [
        (0, identity["output"], "jsonl", 569)
    ]
    db.close()
    told.clear()
    with StateStore.open(state, identity, announce=told.append):  # opened again: as it is
        pass
    assert told == [] and backups(tmp_path) == [backup.name]


def test_a_new_file_is_what_a_migrated_file_is(tmp_path: Path) -> None:
    state = old_state(tmp_path)
    identity = peek_identity(state)
    assert identity is not None
    StateStore.open(state, identity).close()
    new = tmp_path / "new.state.sqlite"
    StateStore.open(new, identity).close()

    def schema(path: Path) -> dict[str, list[tuple[object, ...]]]:
        """Each table's and index's columns (the SQL text differs in spacing only)."""
        db = sqlite3.connect(path)
        try:
            names = db.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
            return {
                name: db.execute(
                    f"PRAGMA {'table_info' if kind == 'table' else 'index_xinfo'}({name})"
                ).fetchall()
                for kind, name in names
            }
        finally:
            db.close()

    assert schema(new) == schema(state)
    assert schema_of(new) == str(store.SCHEMA_VERSION) == "4"


def test_a_backup_never_replaces_a_file_beside_it(tmp_path: Path) -> None:
    state = old_state(tmp_path)
    taken = tmp_path / "old.state.sqlite.v1.bak"
    taken.write_text("not shoal's")
    identity = peek_identity(state)
    assert identity is not None
    told: list[str] = []
    StateStore.open(state, identity, announce=told.append).close()
    assert taken.read_text() == "not shoal's"
    assert backups(tmp_path) == ["old.state.sqlite.v1.1.bak", taken.name]
    assert told[0].endswith(f"kept at {tmp_path / 'old.state.sqlite.v1.1.bak'}")
    assert schema_of(tmp_path / "old.state.sqlite.v1.1.bak") == "1"


def test_no_migration_without_a_backup(tmp_path: Path) -> None:
    """Every free name taken (a folder nobody tidies): refused, the file as it was."""
    state = old_state(tmp_path)
    before = dump(state)
    names = ["old.state.sqlite.v1.bak"] + [f"old.state.sqlite.v1.{n}.bak" for n in range(1, 100)]
    for name in names:
        (tmp_path / name).write_text("")
    identity = peek_identity(state)
    assert identity is not None
    with pytest.raises(StateError, match="100 backups of it are already beside it"):
        StateStore.open(state, identity)
    assert dump(state) == before and backups(tmp_path) == sorted(names)


def test_the_backup_holds_what_only_the_wal_file_holds(tmp_path: Path) -> None:
    """A crawl killed before a checkpoint leaves its last commits in STATE-wal only: a
    copy of the main file would lose them, the backup must not."""
    state = old_state(tmp_path)
    identity = peek_identity(state)
    assert identity is not None
    writer = sqlite3.connect(state, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(
            "INSERT INTO urls VALUES (7, 99, 'http://wal.test/', 'http://wal.test', 0, NULL, 0, 1,"
            " NULL)"
        )
        assert os.path.getsize(f"{state}-wal") > 0
        StateStore.open(state, identity).close()
    finally:
        writer.close()
    db = sqlite3.connect(tmp_path / "old.state.sqlite.v1.bak")
    assert db.execute("SELECT url FROM urls WHERE fp=7").fetchall() == [("http://wal.test/",)]
    db.close()


def test_a_crawl_resumes_from_a_schema1_file_exactly_once(tmp_path: Path) -> None:
    """The release before versions stopped this crawl after 3 of its 6 URLs: this shoal
    migrates its state and finishes it, every URL in the output once, counts kept."""
    output, state = tmp_path / "pages.jsonl", tmp_path / "pages.jsonl.state.sqlite"
    with Site() as site:
        site.routes.update(SITE)
        origin = site.url("/").split("/")[2]
        _move_fixture(output, state, origin)
        told: list[str] = []
        crawler = Crawler(site.url("/"), output=str(output), progress=False)
        crawler.announce = told.append
        result = crawler.run()
        fetched = [path for path, _ in site.requests() if path != "/robots.txt"]
    assert told[0] == (
        f"migrated the state file {state} from schema 1 to 4; "
        f"the file as it was is kept at {state}.v1.bak"
    )
    assert sorted(fetched) == ["/c", "/d", "/missing"]  # only what the first run left
    records = [json.loads(line) for line in output.read_text().splitlines()]
    urls = [r["url"].removeprefix(f"http://{origin}") for r in records]
    assert sorted(urls) == sorted(SITE)  # each URL once: three from each run
    assert result.pages == 3
    with StateStore.open(state, crawler.identity()) as opened:
        totals = opened.totals()["totals"]
        assert (opened.done_count(), opened.queued_count()) == (6, 0)
        assert opened.output_offsets() == [output.stat().st_size]
    assert (totals["runs"], totals["pages"], totals["ok"], totals["failed"]) == (2, 6, 5, 1)
    assert schema_of(state) == "4" and schema_of(Path(f"{state}.v1.bak")) == "1"


def _move_fixture(output: Path, state: Path, origin: str) -> None:
    """The fixture crawl as if it had crawled ``origin`` into ``output``: URLs (and their
    fingerprints, which hash them) and the identity rewritten, the output offset moved to
    match the output's new length. Still schema 1: only the values change."""
    old_output = FIXTURES / "schema1-stopped-pages.jsonl"
    records = old_output.read_bytes()
    output.write_bytes(records.replace(FIXTURE_ORIGIN.encode(), origin.encode()))
    shutil.copy(FIXTURES / "schema1-stopped-pages.jsonl.state.sqlite", state)
    db = sqlite3.connect(state, isolation_level=None)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        assert meta["schema"] == "1" and int(meta["output_offset"]) == len(records)
        identity = json.loads(meta["identity"].replace(FIXTURE_ORIGIN, origin))
        identity["output"] = str(output)
        rows = db.execute("SELECT * FROM urls").fetchall()
        db.execute("BEGIN")
        db.execute("DELETE FROM urls")
        for _, seq, *texts, depth, referrer, state_, spilled, status in rows:
            url, host, ref = (t and t.replace(FIXTURE_ORIGIN, origin) for t in (*texts, referrer))
            db.execute(
                "INSERT INTO urls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    store._signed(fingerprint(url)),
                    seq,
                    url,
                    host,
                    depth,
                    ref,
                    state_,
                    spilled,
                    status,
                ),
            )
        db.execute("UPDATE meta SET value=? WHERE key='identity'", (json.dumps(identity),))
        db.execute(
            "UPDATE meta SET value=? WHERE key='output_offset'", (str(output.stat().st_size),)
        )
        db.execute("COMMIT")
    finally:
        db.close()


def test_a_crawl_resumes_from_a_schema3_file_exactly_once(tmp_path: Path) -> None:
    """Schema 3 -> 4 (#20: a queued URL may be a request): the file is migrated with a
    backup, its rows are plain GETs (request NULL) whose fingerprints still dedupe, and the
    crawl finishes fetching only what the first run left."""
    output, state = tmp_path / "pages.jsonl", tmp_path / "pages.jsonl.state.sqlite"
    with Site() as site:
        site.routes.update(SITE)
        origin = site.url("/").split("/")[2]
        _move_schema3_fixture(output, state, origin)
        assert schema_of(state) == "3"
        told: list[str] = []
        crawler = Crawler(site.url("/"), output=str(output), progress=False)
        crawler.announce = told.append
        result = crawler.run()
        fetched = [path for path, _ in site.requests() if path != "/robots.txt"]
    assert told[0] == (
        f"migrated the state file {state} from schema 3 to 4; "
        f"the file as it was is kept at {state}.v3.bak"
    )
    assert sorted(fetched) == ["/c", "/d", "/missing"]  # only what the first run left
    urls = [json.loads(line)["url"] for line in output.read_text().splitlines()]
    assert sorted(u.removeprefix(f"http://{origin}") for u in urls) == sorted(SITE)
    assert result.pages == 3
    assert schema_of(state) == "4" and schema_of(Path(f"{state}.v3.bak")) == "3"
    db = sqlite3.connect(state)
    try:
        assert db.execute("SELECT count(*) FROM urls WHERE request IS NOT NULL").fetchone() == (0,)
    finally:
        db.close()


def _move_schema3_fixture(output: Path, state: Path, origin: str) -> None:
    """As _move_fixture, for the schema-3 fixture (every text column moved to ``origin``,
    fingerprints recomputed)."""
    old = "127.0.0.1:38750"
    records = (FIXTURES / "schema3-stopped-pages.jsonl").read_bytes()
    output.write_bytes(records.replace(old.encode(), origin.encode()))
    shutil.copy(FIXTURES / "schema3-stopped-pages.jsonl.state.sqlite", state)
    db = sqlite3.connect(state, isolation_level=None)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        assert meta["schema"] == "3" and int(meta["output_offset"]) == len(records)
        identity = json.loads(meta["identity"].replace(old, origin))
        identity["output"] = str(output)
        rows = db.execute("SELECT * FROM urls").fetchall()
        db.execute("BEGIN")
        db.execute("DELETE FROM urls")
        for row in rows:
            moved = [v.replace(old, origin) if isinstance(v, str) else v for v in row]
            moved[0] = store._signed(fingerprint(moved[2]))
            db.execute(f"INSERT INTO urls VALUES ({', '.join('?' * len(moved))})", moved)
        db.execute("UPDATE meta SET value=? WHERE key='identity'", (json.dumps(identity),))
        size = output.stat().st_size
        db.execute("UPDATE meta SET value=? WHERE key='output_offset'", (str(size),))
        db.execute("UPDATE outputs SET path=?, offset=? WHERE n=0", (str(output), size))
        db.execute("COMMIT")
    finally:
        db.close()


def _raises(exc: BaseException) -> Callable[[sqlite3.Connection], None]:
    def step(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE halfway (x)")  # done before it fails: must not stay
        conn.execute("UPDATE meta SET value='changed' WHERE key='output_offset'")
        raise exc

    return step


@pytest.mark.parametrize(
    "failure",
    [
        sqlite3.OperationalError("database or disk is full"),
        RuntimeError("a step that breaks"),
    ],
    ids=["disk-full", "step-raises"],
)
def test_a_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, failure: BaseException
) -> None:
    state = old_state(tmp_path)
    before = dump(state)
    identity = peek_identity(state)
    assert identity is not None
    steps = (store._migrate_1_to_2, _raises(failure))  # 1 -> 2 works, 2 -> 3 fails
    with pytest.raises(StateError) as caught:
        StateStore.open(state, identity, migrations=steps)
    message = str(caught.value)
    assert f"migrating {state} from state schema 1 to 3 failed ({failure})" in message
    assert "rolled back: the file is as it was (schema 1)" in message
    assert caught.value.exit_code == 3
    assert dump(state) == before  # neither step's work stays, nor the version
    assert backups(tmp_path) == []  # the file is as it was: no copy of it piles up
    assert not Path(f"{state}.lock").exists()
    told: list[str] = []
    StateStore.open(state, identity, announce=told.append).close()  # this shoal's steps
    assert schema_of(state) == "4" and len(told) == 1


def test_ctrl_c_during_a_migration_rolls_it_back(tmp_path: Path) -> None:
    state = old_state(tmp_path)
    before = dump(state)
    identity = peek_identity(state)
    assert identity is not None
    steps = (store._migrate_1_to_2, _raises(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        StateStore.open(state, identity, migrations=steps)
    assert dump(state) == before and backups(tmp_path) == []


def test_a_file_of_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    state = tmp_path / "new.state.sqlite"
    identity = {"output": None, "start_urls": ["http://a.test/"]}
    StateStore.open(state, identity).close()
    db = sqlite3.connect(state)
    db.execute("UPDATE meta SET value='5' WHERE key='schema'")
    db.commit()
    db.close()
    before = dump(state)
    with pytest.raises(StateError) as caught:
        StateStore.open(state, identity)
    message = str(caught.value)
    assert "was written by a newer shoal: it has state schema 5" in message
    assert "reads schema 4 and older. Upgrade shoal to resume this crawl" in message
    assert caught.value.exit_code == 3
    assert dump(state) == before and backups(tmp_path) == []
    # shoal status says the same (exit 3), rather than guessing at what it cannot read.
    proc = shoal_run("status", str(state))
    assert proc.returncode == 3, proc.stdout
    assert "state schema 5" in proc.stderr and "reads schema 4 and older" in proc.stderr


def test_a_file_a_running_crawl_holds_is_never_migrated(tmp_path: Path) -> None:
    state = old_state(tmp_path)
    before = dump(state)
    identity = peek_identity(state)
    assert identity is not None
    held = store._lock(state)  # what a running crawl holds (flock on STATE.lock)
    try:
        with pytest.raises(StateLocked):
            StateStore.open(state, identity)
    finally:
        store._unlock(state, held)
    assert dump(state) == before and backups(tmp_path) == []


def test_a_file_of_another_crawl_is_refused_before_it_is_migrated(tmp_path: Path) -> None:
    state = old_state(tmp_path)
    before = dump(state)
    identity = peek_identity(state)
    assert identity is not None
    with pytest.raises(StateMismatch):
        StateStore.open(state, {**identity, "start_urls": ["http://other.test/"]})
    assert dump(state) == before and backups(tmp_path) == []


def test_status_reads_an_older_file_without_migrating_it(tmp_path: Path) -> None:
    state = old_state(tmp_path)
    before = dump(state)
    proc = shoal_run("status", str(state))
    assert proc.returncode == 0, proc.stderr
    assert "urls: done 2, failed 0, queued 2 of 4 discovered" in proc.stdout
    assert (
        "state schema 1 (older): the next crawl run migrates it to 4 in place, after copying "
        f"it to {state}.v1.bak"
    ) in proc.stdout
    proc = shoal_run("status", "--json", str(state))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schema"] == 1
    assert dump(state) == before and backups(tmp_path) == []
    assert schema_of(state) == "1"


# -- Redis ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "fix"),
    [
        ("2", "an older shoal started it: finish it with that shoal"),
        ("4", "a newer shoal started it: upgrade shoal here to join it"),
    ],
)
def test_a_shared_crawl_of_another_layout_is_refused(
    redis_server: RedisServer, stored: str, fix: str
) -> None:
    """The key layout is never migrated in place (workers of the other shoal may be on
    it): refused, naming both versions and what to do."""
    import redis

    state = RedisCrawlState.open(redis_server.url, "c1", {"scope": "x"}, robots=False)
    prefix = state.prefix
    state.close()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.hset(f"{prefix}meta", "version", stored)
    finally:
        client.close()
    with pytest.raises(RedisStateError) as caught:
        RedisCrawlState.open(redis_server.url, "c1", {"scope": "x"}, robots=False)
    message = str(caught.value)
    assert f"has state layout '{stored}'; this shoal uses '3': {fix}" in message
    assert "or crawl again under another --crawl-id" in message
