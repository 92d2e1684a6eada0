"""Where a crawl's results go, all through the writer thread.

Workers hand the writer one :class:`Commit` per finished URL: its records, the URLs it
discovered, and the URL's final state. :class:`CrawlSink` writes a batch of commits to
the output, flushes it, and then (with a durable state) records in one SQLite
transaction the new URLs, the finished ones and the output's byte offset. A crash
between the two leaves output past the committed offset; a resume cuts it off and
fetches those URLs again, so every URL's records appear exactly once.

File outputs (JSONL, CSV, WARC) are written as bytes, so the offset is a byte offset;
the SQLite output is keyed on URL, so writing a record again replaces it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from .._errors import StateError, UsageError, WriterError
from ..runtime import json_line
from ..state import DONE, FAILED, StateStore, UrlRow
from ._fetch import Fetched
from ._frontier import CrawlJob

__all__ = ["RECORD_FIELDS", "Commit", "CrawlSink", "Output", "infer_format", "open_output"]

logger = logging.getLogger(__name__)

RECORD_FIELDS = (
    "url",
    "final_url",
    "status",
    "depth",
    "referrer",
    "content_type",
    "bytes",
    "elapsed",
    "fetched_at",
    "title",
    "error",
    "error_detail",
)
FORMATS = ("jsonl", "csv", "sqlite", "warc")


@dataclass(slots=True)
class Commit:
    """Everything one finished task changes, applied atomically by the writer thread."""

    records: list[dict[str, Any]] = field(default_factory=list)
    finished: CrawlJob | None = None
    failed: bool = False
    status: int | None = None
    added: list[CrawlJob] = field(default_factory=list)  # newly discovered URLs
    claimed: list[CrawlJob] = field(default_factory=list)  # redirect targets fetched in place
    exchange: Fetched | None = None  # the raw response, for WARC
    hold: tuple[str, float] | None = None  # (host, wall-clock until): Retry-After, kept


class Output(Protocol):
    def write(self, commits: Sequence[Commit]) -> None: ...

    def flush(self) -> None: ...

    def position(self) -> int | None:
        """Byte offset where committed output ends, or None if the output is idempotent."""

    def close(self) -> None: ...


def infer_format(path: str | None, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise UsageError(f"unknown format {given!r}; choose one of {', '.join(FORMATS)}")
        return given
    if path is None or path == "-":
        return "jsonl"
    name = path.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".sqlite", ".sqlite3", ".db")):
        return "sqlite"
    if name.endswith((".warc", ".warc.gz")):
        return "warc"
    return "jsonl"


class _FileOutput:
    """An append-only byte stream: a file (resumable at an offset) or stdout."""

    def __init__(self, path: str | None, resume_at: int | None) -> None:
        self.path = path
        if path is None:
            self._file: IO[bytes] = sys.stdout.buffer
            self._close = False
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "r+b" if resume_at and os.path.exists(path) else "wb")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot open output {path!r}: {exc.strerror or exc}") from None
        self._close = True
        if resume_at:
            size = self._file.seek(0, os.SEEK_END)
            if size < resume_at:
                self._file.close()
                raise StateError(
                    f"{path} is shorter ({size} bytes) than the crawl state says ({resume_at}); "
                    "was it changed? Run with --fresh to start over"
                )
            # Cut off whatever was written after the last commit (it is fetched again).
            self._file.truncate(resume_at)
            self._file.seek(resume_at)

    @property
    def at_start(self) -> bool:
        return self._file.tell() == 0 if self._close else True

    def _put(self, data: bytes) -> None:
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def position(self) -> int | None:
        return self._file.tell() if self._close else None

    def close(self) -> None:
        self._file.flush()
        if self._close:
            self._file.close()


class JsonlOutput(_FileOutput):
    def write(self, commits: Sequence[Commit]) -> None:
        lines = [json_line(r) + "\n" for c in commits for r in c.records]
        if lines:
            self._put("".join(lines).encode())


class CsvOutput(_FileOutput):
    """A stable header: the record fields, then extracted fields, in that order. Keys a
    record has beyond the header are dropped (with one warning), never shifted."""

    def __init__(self, path: str | None, resume_at: int | None, fields: Sequence[str]) -> None:
        super().__init__(path, resume_at)
        self.fields = list(fields)
        self._buffer = io.StringIO()
        self._csv = csv.DictWriter(
            self._buffer, self.fields, extrasaction="ignore", lineterminator="\n"
        )
        self._warned = False
        if self.at_start:
            self._csv.writeheader()

    def write(self, commits: Sequence[Commit]) -> None:
        for commit in commits:
            for record in commit.records:
                if not self._warned and set(record) - set(self.fields):
                    self._warned = True
                    logger.warning(
                        "CSV output drops fields not in its header: %s",
                        sorted(set(record) - set(self.fields)),
                    )
                self._csv.writerow({k: _cell(v) for k, v in record.items()})
        if self._buffer.tell():
            self._put(self._buffer.getvalue().encode())
            self._buffer.seek(0)
            self._buffer.truncate()


def _sql_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str | bytes):
        return value
    return json_line(value)


def _cell(value: Any) -> Any:
    return json_line(value) if isinstance(value, list | dict) else value


class SqliteOutput:
    """A ``records`` table: the record fields as columns (extracted or callback fields as
    JSON in ``data``), indexed on url.

    Rows are keyed by the URL that produced them and their position among its records, so
    a page fetched again after a resume replaces its own rows instead of adding to them,
    and a callback may give several records for one page (or records without a url).
    """

    def __init__(self, path: str, fresh: bool) -> None:
        try:
            if fresh and os.path.exists(path):
                os.unlink(path)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(
                f"{f} {'INTEGER' if f in ('status', 'depth', 'bytes') else 'TEXT'}"
                for f in RECORD_FIELDS
            )
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS records (source_url TEXT NOT NULL, "
                f"n INTEGER NOT NULL, {cols}, data TEXT, PRIMARY KEY (source_url, n))"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS records_url ON records (url)")
        except sqlite3.Error as exc:
            raise UsageError(f"cannot use {path!r} as SQLite output: {exc}") from None
        columns = ("source_url", "n", *RECORD_FIELDS, "data")
        self._insert = (
            f"INSERT OR REPLACE INTO records ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )

    def write(self, commits: Sequence[Commit]) -> None:
        rows = []
        for commit in commits:
            source = commit.finished.url if commit.finished is not None else ""
            for n, r in enumerate(commit.records):
                extra = {k: v for k, v in r.items() if k not in RECORD_FIELDS}
                values = (_sql_value(r.get(f)) for f in RECORD_FIELDS)
                rows.append((source, n, *values, json_line(extra) if extra else None))
        if rows:
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.executemany(self._insert, rows)
            except sqlite3.Error as exc:
                raise WriterError(f"writing the SQLite output failed: {exc}") from exc

    def flush(self) -> None:
        pass  # every write() is its own committed transaction

    def position(self) -> int | None:
        return None

    def close(self) -> None:
        self._db.close()


def open_output(
    path: str | None,
    fmt: str,
    fields: Sequence[str],
    *,
    user_agent: str,
    resume_at: int | None = None,
    fresh: bool = False,
) -> Output:
    """The output for a crawl; stdout when ``path`` is None or "-"."""
    target = None if path in (None, "-") else path
    if fmt == "csv":
        return CsvOutput(target, resume_at, fields)
    if fmt == "sqlite":
        if target is None:
            raise UsageError("SQLite output needs a file: -o pages.sqlite")
        return SqliteOutput(target, fresh)
    if fmt == "warc":
        if target is None:
            raise UsageError("WARC output needs a file: -o crawl.warc.gz")
        from ._warc import WarcOutput

        return WarcOutput(target, resume_at, user_agent)
    return JsonlOutput(target, resume_at)


def _row(job: CrawlJob) -> UrlRow:
    return UrlRow(job.fp, job.url, job.host, job.depth, job.referrer, job.spilled)


class CrawlSink:
    """The writer thread's sink: output first, then the state that points into it."""

    def __init__(self, output: Output, store: StateStore | None) -> None:
        self.output = output
        self.store = store

    def write_batch(self, entries: Sequence[Any]) -> None:
        commits: list[Commit] = [e for e in entries if isinstance(e, Commit)]
        self.output.write(commits)
        if self.store is None:
            return
        # The output must reach the OS before the state says it is there.
        self.output.flush()
        added = [_row(job) for c in commits for job in c.added]
        finished: list[tuple[UrlRow, int, int | None]] = []
        for c in commits:
            if c.finished is not None:
                finished.append((_row(c.finished), FAILED if c.failed else DONE, c.status))
            finished.extend((_row(job), DONE, None) for job in c.claimed)
        holds = [c.hold for c in commits if c.hold is not None]
        self.store.commit(added, finished, self.output.position(), holds)

    def flush(self) -> None:
        self.output.flush()

    def close(self) -> None:
        self.output.close()
