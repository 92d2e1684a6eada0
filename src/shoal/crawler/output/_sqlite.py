"""SQLite: a ``records`` table, keyed on the request that produced each row (idempotent)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..._errors import OutputError, UsageError, WriterError
from ...runtime import json_line
from ...state._jobs import job_key
from .._schema import RECORD_FIELDS
from ._base import Commit, OutputOptions
from ._file import OutputFile

__all__ = ["SqliteOutput", "open_format"]


# Columns of other types than TEXT. A table made before elapsed was REAL keeps its TEXT
# column when a crawl resumes into it (CREATE TABLE IF NOT EXISTS); readers convert it.
_COLUMN_TYPES = {"status": "INTEGER", "depth": "INTEGER", "bytes": "INTEGER", "elapsed": "REAL"}


def _sql_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str | bytes):
        return value
    return json_line(value)


class SqliteOutput:
    """A ``records`` table: the record fields as columns (extracted or callback fields as
    JSON in ``data``), indexed on url.

    Rows are keyed by the request that produced them (``source_url``: its URL for a plain
    GET, as always; ``METHOD digest URL`` for a POST, the key the frontier dedupes it by)
    and their position among its records, so a page fetched again after a resume replaces
    its own rows instead of adding to them, a callback may give several records for one
    page (or records without a url), and POSTs to one URL (or a POST and a GET of it) keep
    a row each. A GET's key is its URL, as before: an older output resumes as it was.
    """

    def __init__(self, target: OutputFile, fresh: bool) -> None:
        path = target.path
        self._target = target  # holds the flock until close
        try:
            if fresh and target.size():
                # Allowed by the caller (this crawl's own, or --overwrite): empty it in
                # place, so the locked file stays the one other crawls see.
                os.ftruncate(target.fd, 0)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path + suffix)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(f"{f} {_COLUMN_TYPES.get(f, 'TEXT')}" for f in RECORD_FIELDS)
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS records (source_url TEXT NOT NULL, "
                f"n INTEGER NOT NULL, {cols}, data TEXT, PRIMARY KEY (source_url, n))"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS records_url ON records (url)")
            # A recrawl's runs (#19): rows keyed by run too, and a view of the latest.
            self._history = _has_history(self._db)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot use {path} as SQLite output: {exc}") from None
        columns = ("source_url", "n", *RECORD_FIELDS, "data")
        self._insert_run = (
            f"INSERT OR REPLACE INTO records ({', '.join(columns)}, run, change) "
            f"VALUES ({', '.join('?' * (len(columns) + 2))})"
        )
        self._insert = (
            f"INSERT OR REPLACE INTO records ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )

    def write(self, commits: Sequence[Commit]) -> None:
        rows = []
        runs = []
        for commit in commits:
            finished = commit.finished
            source = "" if finished is None else job_key(finished.url, finished.request)
            for n, r in enumerate(commit.records):
                extra = {k: v for k, v in r.items() if k not in _COLUMNS}
                values = (_sql_value(r.get(f)) for f in RECORD_FIELDS)
                row = (source, n, *values, json_line(extra) if extra else None)
                if "run" in r:
                    runs.append((*row, r["run"], r.get("change")))
                else:
                    rows.append(row)
        if rows or runs:
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    if runs and not self._history:
                        _add_history(self._db)
                        self._history = True
                    if rows:
                        self._db.executemany(
                            self._insert_run if self._history else self._insert,
                            [(*row, 1, None) for row in rows] if self._history else rows,
                        )
                    if runs:
                        self._db.executemany(self._insert_run, runs)
            except sqlite3.Error as exc:
                raise WriterError(f"writing the SQLite output failed: {exc}") from exc

    def flush(self) -> None:
        pass  # every write() is its own committed transaction

    def position(self) -> int | None:
        return None

    def close(self) -> None:
        self._db.close()
        if self._target.fd >= 0:
            os.close(self._target.fd)
            self._target.fd = -1


_COLUMNS = frozenset((*RECORD_FIELDS, "run", "change"))


def _has_history(db: sqlite3.Connection) -> bool:
    return any(row[1] == "run" for row in db.execute("PRAGMA table_info(records)"))


def _add_history(db: sqlite3.Connection) -> None:
    """In the caller's transaction, at a recrawl's first record: ``records`` keyed by run
    too (``run`` 1 for the rows before, ``change`` NULL), so each run adds its rows
    (a page fetched again after a resume still replaces its own row of that run); and
    ``latest``, each source's (request's) rows of its latest run."""
    info = list(db.execute("PRAGMA table_info(records)"))
    old = ", ".join(row[1] for row in info)
    defs = ", ".join(f"{row[1]} {row[2] or 'TEXT'}{' NOT NULL' if row[3] else ''}" for row in info)
    db.execute(
        f"CREATE TABLE records_runs ({defs}, run INTEGER NOT NULL DEFAULT 1, change TEXT, "
        "PRIMARY KEY (source_url, run, n))"
    )
    db.execute(f"INSERT INTO records_runs ({old}) SELECT {old} FROM records")
    db.execute("DROP TABLE records")
    db.execute("ALTER TABLE records_runs RENAME TO records")
    db.execute("CREATE INDEX IF NOT EXISTS records_url ON records (url)")
    db.execute(
        "CREATE VIEW IF NOT EXISTS latest AS SELECT * FROM records AS r WHERE r.run = "
        "(SELECT max(run) FROM records WHERE source_url = r.source_url)"
    )


def open_format(target: OutputFile | None, options: OutputOptions) -> SqliteOutput:
    if target is None:
        raise UsageError("SQLite output needs a file: -o pages.sqlite")
    return SqliteOutput(target, options.fresh)
