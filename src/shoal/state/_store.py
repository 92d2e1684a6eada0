"""A crawl's durable state in one SQLite file (WAL mode).

Tables: ``meta`` (what crawl this is, where its output stands) and ``urls`` (one row per
URL ever discovered, keyed by its 64-bit fingerprint, with its state: queued, done or
failed). Everything a crawl learns reaches the file through :meth:`StateStore.commit`,
one transaction per writer batch, so the file always holds a consistent cut: the
output's committed byte offset together with exactly the URLs whose records lie before it.

Connections: one for writing (used only by the writer thread) and one for reading
(used under the crawler's lock to page queued URLs back into memory). WAL lets the
reader run while a write is in progress, and lets ``shoal status`` read a running crawl.

A lock file beside the database (``flock``) keeps two crawls from sharing one state.
sqlite3 errors never leave this module: they become :class:`~shoal.StateError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import StateError, StateLocked, StateMismatch

__all__ = ["QUEUED", "DONE", "FAILED", "StateStore", "UrlRow", "read_status"]

QUEUED, DONE, FAILED = 0, 1, 2
_SCHEMA_VERSION = "1"
_APP = "shoal-crawl-state"

# Hosts that asked for a pause (Retry-After), until a wall-clock time: a resume must not
# ask them again at once. Added after schema 1 shipped: files without it gain it on open.
_HOLDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (host TEXT PRIMARY KEY, until REAL NOT NULL);
"""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    fp INTEGER PRIMARY KEY,          -- 64-bit fingerprint, stored signed
    seq INTEGER NOT NULL,            -- discovery order, assigned at commit
    url TEXT NOT NULL,
    host TEXT NOT NULL,
    depth INTEGER NOT NULL,
    referrer TEXT,
    state INTEGER NOT NULL,          -- 0 queued, 1 done, 2 failed
    spilled INTEGER NOT NULL,        -- 1: lives only here until paged into memory
    status INTEGER                   -- final HTTP status, if any
);
-- Partial: only URLs waiting on disk are indexed, so marking the (many) in-memory URLs
-- done never touches this index.
CREATE INDEX IF NOT EXISTS urls_spilled ON urls (seq) WHERE state=0 AND spilled=1;
"""
    + _HOLDS_SCHEMA
)


@dataclass(slots=True)
class UrlRow:
    fp: int
    url: str
    host: str
    depth: int
    referrer: str | None
    spilled: bool = False


def _signed(fp: int) -> int:
    return fp - (1 << 64) if fp >= (1 << 63) else fp


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if "disk is full" in message or "disk I/O" in message:
            raise StateError(f"{what}: {message} (committed work is safe)") from exc
        if "not a database" in message or "malformed" in message:
            raise StateError(
                f"{what}: the state file is corrupt or not a shoal state file "
                f"({message}); use --fresh to start over"
            ) from exc
        if "readonly" in message or "unable to open" in message:
            raise StateError(f"{what}: cannot write the state file ({message})") from exc
        raise StateError(f"{what}: {message}") from exc


class StateStore:
    """Open with :meth:`open`; closed with :meth:`close` (or as a context manager)."""

    def __init__(
        self,
        path: Path,
        write: sqlite3.Connection,
        read: sqlite3.Connection,
        lock_fd: int,
        created: bool,
    ) -> None:
        self.path = path
        self._write = write
        self._read = read
        self._lock_fd = lock_fd
        self.created = created
        self._next_seq = 1 + (self._scalar("SELECT max(seq) FROM urls") or 0)

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], identity: Mapping[str, Any], *, fresh: bool = False
    ) -> StateStore:
        """Open (or create) the state at ``path`` for the crawl that ``identity`` names.

        Raises StateLocked if another live process holds it, StateMismatch if it was made
        for another crawl, StateError if it cannot be used at all.
        """
        path = Path(path)
        lock_fd = _lock(path)
        conns: list[sqlite3.Connection] = []
        try:
            if fresh:
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(f"{path}{suffix}")
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        raise StateError(
                            f"cannot remove {path}{suffix} for --fresh: {exc.strerror or exc}"
                        ) from None
            created = not path.exists()
            if created:
                _create(path, identity)
            conns.append(_connect(path))
            conns.append(_connect(path))
            write, read = conns
            _check(path, read, identity)
            with _translated(f"opening {path}"):
                write.executescript(_HOLDS_SCHEMA)
            return cls(path, write, read, lock_fd, created)
        except BaseException:
            for conn in conns:
                conn.close()
            os.close(lock_fd)
            raise

    # -- reading -------------------------------------------------------------------------

    def _scalar(self, sql: str, *args: Any) -> Any:
        with _translated("reading the state file"):
            row = self._read.execute(sql, args).fetchone()
        return row[0] if row else None

    @property
    def output_offset(self) -> int:
        return int(self._scalar("SELECT value FROM meta WHERE key='output_offset'") or 0)

    def fingerprints(self) -> Iterator[int]:
        with _translated("reading the state file"):
            for (fp,) in self._read.execute("SELECT fp FROM urls"):
                yield _unsigned(fp)

    def queued_count(self) -> int:
        return int(self._scalar("SELECT count(*) FROM urls WHERE state=0") or 0)

    def prepare_resume(self) -> None:
        """Everything still queued lives on disk until paged in (memory is empty now)."""
        with _translated("resuming"), self._write:
            self._write.execute("UPDATE urls SET spilled=1 WHERE state=0 AND spilled=0")

    def holds(self) -> dict[str, float]:
        """Hosts that asked not to be asked again before a wall-clock time still ahead."""
        with _translated("reading the state file"):
            rows = self._read.execute(
                "SELECT host, until FROM holds WHERE until > ?", (time.time(),)
            ).fetchall()
        return dict(rows)

    def spilled_count(self, after_seq: int) -> int:
        return int(
            self._scalar(
                "SELECT count(*) FROM urls WHERE state=0 AND spilled=1 AND seq>?", after_seq
            )
            or 0
        )

    def page_in(self, after_seq: int, limit: int) -> list[tuple[int, UrlRow]]:
        """Up to ``limit`` spilled queued URLs after ``after_seq``: (seq, row) pairs."""
        with _translated("reading the state file"):
            rows = self._read.execute(
                "SELECT seq, fp, url, host, depth, referrer FROM urls "
                "WHERE state=0 AND spilled=1 AND seq>? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [
            (seq, UrlRow(_unsigned(fp), url, host, depth, ref, True))
            for seq, fp, url, host, depth, ref in rows
        ]

    # -- writing (the writer thread only) --------------------------------------------------

    def commit(
        self,
        added: Iterable[UrlRow],
        finished: Iterable[tuple[UrlRow, int, int | None]],
        output_offset: int | None,
        holds: Iterable[tuple[str, float]] = (),
    ) -> None:
        """One transaction: new URLs, final states, where the output now ends, and hosts'
        holds (host, wall-clock time until which it must not be asked)."""
        holds = list(holds)
        with _translated("writing the state file"), self._write:
            if holds:
                self._write.executemany(
                    "INSERT INTO holds VALUES (?, ?) ON CONFLICT(host) DO UPDATE SET "
                    "until=max(until, excluded.until)",
                    holds,
                )
            rows = [(*self._row_head(row), QUEUED, int(row.spilled)) for row in added]
            if rows:
                self._write.executemany(
                    "INSERT OR IGNORE INTO urls VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)", rows
                )
            done = [(*self._row_head(row), state, status) for row, state, status in finished]
            if done:
                # Upsert: a page can finish before the batch that discovered it commits.
                self._write.executemany(
                    "INSERT INTO urls VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT(fp) DO "
                    "UPDATE SET state=excluded.state, status=excluded.status",
                    done,
                )
            if output_offset is not None:
                self._write.execute(
                    "UPDATE meta SET value=? WHERE key='output_offset'", (str(output_offset),)
                )

    def _row_head(self, row: UrlRow) -> tuple[int, int, str, str, int, str | None]:
        """The leading columns of a row (fp, seq, url, host, depth, referrer), taking the
        next sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        return _signed(row.fp), seq, row.url, row.host, row.depth, row.referrer

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._read.close()
        with contextlib.suppress(sqlite3.Error):
            self._write.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            self._write.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check(path: Path, conn: sqlite3.Connection, identity: Mapping[str, Any]) -> None:
    with _translated("reading the state file"):
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as exc:
            raise StateError(
                f"{path} is not a shoal state file ({exc}); "
                "use --fresh to start over or choose another --state"
            ) from None
    if meta.get("app") != _APP:
        raise StateError(f"{path} is not a shoal state file; use another --state path")
    if meta.get("schema") != _SCHEMA_VERSION:
        raise StateError(
            f"{path} has state schema {meta.get('schema')}; this shoal reads {_SCHEMA_VERSION}"
        )
    try:
        theirs = json.loads(meta["identity"])
    except (KeyError, ValueError):
        raise StateError(f"{path} is damaged (no crawl identity); use --fresh") from None
    ours = json.loads(json.dumps(identity, sort_keys=True))
    if theirs != ours:
        diffs = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise StateMismatch(
            f"{path} belongs to a crawl with other {', '.join(diffs)} "
            f"(it has {', '.join(f'{k}={theirs.get(k)!r}' for k in diffs)}); "
            "run with --fresh to start over, or use another --state"
        )


def _create(path: Path, identity: Mapping[str, Any]) -> None:
    """Build a new state file beside ``path`` and rename it into place: a state file
    either does not exist or is complete, even if the disk fills up halfway."""
    tmp = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        with _translated("creating the state file"):
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(_SCHEMA)
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("app", _APP),
                        ("schema", _SCHEMA_VERSION),
                        ("identity", json.dumps(identity, sort_keys=True)),
                        ("output_offset", "0"),
                        ("created_at", str(time.time())),
                    ],
                )
            finally:
                conn.close()
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(f"cannot create the state file {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _connect(path: Path) -> sqlite3.Connection:
    with _translated(f"opening {path}"):
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.isolation_level = "DEFERRED"  # `with conn:` wraps a transaction
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a killed process loses nothing committed; power loss may lose
        # the last transactions but never corrupts the file.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn


def _lock(path: Path) -> int:
    import fcntl

    lock_path = f"{path}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"cannot create the state file {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateLocked(f"{path} is in use by another running crawl") from None
    except OSError as exc:
        os.close(fd)
        raise StateError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
    return fd


def read_status(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Progress of the crawl whose state is at ``path``, running or not (read-only)."""
    path = Path(path)
    if not path.exists():
        raise StateError(f"no state file at {path}")
    with _translated(f"reading {path}"):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("app") != _APP:
                raise StateError(f"{path} is not a shoal state file")
            totals = dict.fromkeys(("queued", "done", "failed"), 0)
            hosts: dict[str, dict[str, int]] = {}
            names = {QUEUED: "queued", DONE: "done", FAILED: "failed"}
            for host, state, n in conn.execute(
                "SELECT host, state, count(*) FROM urls GROUP BY host, state"
            ):
                totals[names[state]] += n
                hosts.setdefault(host, dict.fromkeys(("queued", "done", "failed"), 0))
                hosts[host][names[state]] = n
        except sqlite3.OperationalError as exc:
            raise StateError(f"{path} is not a shoal state file ({exc})") from None
        finally:
            conn.close()
    running = _is_locked(path)
    return {
        "state": str(path),
        "running": running,
        **totals,
        "hosts": hosts,
        "identity": json.loads(meta.get("identity", "{}")),
        "output_offset": int(meta.get("output_offset", 0)),
    }


def _is_locked(path: Path) -> bool:
    import fcntl

    try:
        fd = os.open(f"{path}.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
