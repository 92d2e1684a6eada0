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

import contextlib
import csv
import io
import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from .._errors import OutputError, StateError, UsageError, WriterError
from ..runtime import json_line
from ..state import RunCounts, peek_identity
from ._fetch import Fetched
from .frontier import Frontier, Lease, Outcome

__all__ = [
    "FORMATS",
    "RECORD_FIELDS",
    "Commit",
    "CrawlSink",
    "Output",
    "OutputFile",
    "claim_output",
    "is_stream_path",
    "infer_format",
    "open_output",
]

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
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jl": "jsonl",
    ".csv": "csv",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
    ".warc": "warc",
    ".warc.gz": "warc",
}


@dataclass(slots=True)
class Commit:
    """Everything one finished task changes, applied by the writer thread: its records
    go to the output, then the frontier commits the lease with the output position."""

    records: list[dict[str, Any]] = field(default_factory=list)
    finished: Lease | None = None  # a page lease, ended by this commit
    state: Outcome = Outcome.DONE  # what the lease ends as: DONE, FAILED or DEFER
    status: int | None = None
    exchange: Fetched | None = None  # the raw response, for WARC
    # What the URL counts as in the run's totals: "ok", "redirect" or "failed" (None: no
    # page, e.g. a robots.txt fetch); ``error`` is the failure's kind.
    outcome: str | None = None
    error: str | None = None
    nbytes: int = 0


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
    if is_stream_path(path):
        return "jsonl"  # /dev/null, /dev/stdout, a named pipe: a stream of lines
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    raise UsageError(
        f"cannot tell the output format from the name {path!r}: end it in .jsonl, .csv, "
        f".sqlite or .warc.gz, or give --format ({', '.join(FORMATS)})"
    )


def is_stream_path(path: str) -> bool:
    """An existing device or pipe: written as a stream, never locked, resumed or sized."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class OutputFile:
    """An output path opened without truncating it and locked (``flock``) until closed,
    so two crawls never write one file, whatever their state files."""

    def __init__(self, path: str) -> None:
        import fcntl

        self.path = path
        self.created = not os.path.exists(path)
        try:
            if self.created:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot open output {path}: {exc.strerror or exc}") from None
        # A device or pipe (/dev/null, /dev/stdout) holds no data to protect or resume:
        # it is written as a stream, and not locked (two crawls may both discard output).
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
        if not self.regular:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            busy = isinstance(exc, BlockingIOError)
            raise OutputError(
                f"{path} is being written by another running crawl"
                if busy
                else f"cannot lock output {path}: {exc.strerror or exc}"
            ) from None

    def size(self) -> int:
        return os.fstat(self.fd).st_size if self.regular else 0

    def abandon(self) -> None:
        """Close; delete the file only if this crawl created it (it holds nothing then)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.created:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def claim_output(
    output: str | None,
    state_path: str | None,
    *,
    fresh: bool,
    overwrite: bool,
    announce: Callable[[str], None],
) -> OutputFile | None:
    """Open and lock the output file (None for stdout), refusing one whose data is not
    this crawl's.

    The output is this crawl's when the state file names it as its output: then it is
    resumed, or with ``fresh`` discarded (and said so). Anything else already in the file
    is replaced only with ``overwrite``. A state file that is not shoal's is an error
    here, unless both ``fresh`` and ``overwrite`` ask to replace it.
    """
    path = output if output not in (None, "-") else None
    prior = None
    if state_path is not None:
        try:
            prior = peek_identity(state_path)
        except StateError:
            if not (fresh and overwrite):
                raise
    if path is None:
        return None
    claim = OutputFile(path)
    size = claim.size()
    if size == 0:
        return claim
    ours = prior is not None and prior.get("output") == os.path.abspath(path)
    if ours and not fresh:
        return claim  # resumed, or refused as another crawl's state when that is opened
    if overwrite:
        announce(f"--overwrite: replacing {path} ({size:,} bytes)")
        return claim
    if ours:
        announce(
            f"--fresh: deleting the state {state_path} and the output {path} "
            f"({size:,} bytes); starting over"
        )
        return claim
    claim.abandon()
    if state_path is None:
        where = "--no-state"
    elif prior is None:
        where = f"no crawl state for it at {state_path}"
    else:
        where = f"the crawl state {state_path} is for another output"
    raise OutputError(
        f"{path} already exists ({size:,} bytes) and is not this crawl's output ({where}); "
        "shoal will not replace it: choose another -o, or add --overwrite to replace it"
    )


class _FileOutput:
    """An append-only byte stream: a locked file (resumable at an offset) or stdout."""

    def __init__(self, target: OutputFile | None, resume_at: int | None) -> None:
        self.path = target.path if target is not None else None
        self._stream = True  # no offsets: stdout, a device or a pipe
        if target is None:
            self._file: IO[bytes] = sys.stdout.buffer
            self._close = False
            return
        fd, target.fd = target.fd, -1  # the file object owns it (and the lock) now
        self._close = True
        if not target.regular:
            self._file = os.fdopen(fd, "wb")
            return
        self._stream = False
        self._file = os.fdopen(fd, "r+b")
        size = self._file.seek(0, os.SEEK_END)
        if resume_at and size < resume_at:
            self._file.close()
            raise StateError(
                f"{self.path} is shorter ({size} bytes) than the crawl state says ({resume_at}); "
                "was it changed? shoal leaves both as they are (--fresh deletes the state "
                "and the output and starts over)"
            )
        # Resuming: cut off whatever was written after the last commit (it is fetched
        # again). Starting: the caller has made sure what is there may go.
        self._file.truncate(resume_at or 0)
        self._file.seek(resume_at or 0)

    @property
    def at_start(self) -> bool:
        return True if self._stream else self._file.tell() == 0

    def _put(self, data: bytes) -> None:
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def position(self) -> int | None:
        return None if self._stream else self._file.tell()

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
    """A stable header: the record fields, then extracted fields, in that order. With a
    page callback (``from_first_record``) the header is the first record's keys followed
    by the standard fields it lacks. A resumed crawl keeps the header already in the file.
    Keys a record has beyond the header are dropped (with one warning), never shifted."""

    def __init__(
        self,
        target: OutputFile | None,
        resume_at: int | None,
        fields: Sequence[str],
        from_first_record: bool = False,
    ) -> None:
        super().__init__(target, resume_at)
        self.fields = list(fields)
        self._buffer = io.StringIO()
        self._warned = False
        self._header_pending = self.at_start
        if resume_at:
            self._file.seek(0)
            header = next(csv.reader([self._file.readline().decode()]), None)
            self._file.seek(resume_at)
            if header:
                self.fields = header
        if self._header_pending and not from_first_record:
            self._start(self.fields)
        elif not self._header_pending:
            self._start(self.fields, write_header=False)

    def _start(self, fields: list[str], write_header: bool = True) -> None:
        self.fields = fields
        self._csv = csv.DictWriter(
            self._buffer, self.fields, extrasaction="ignore", lineterminator="\n"
        )
        if write_header:
            self._csv.writeheader()
        self._header_pending = False

    def write(self, commits: Sequence[Commit]) -> None:
        for commit in commits:
            for record in commit.records:
                if self._header_pending:
                    first = list(record)
                    self._start(first + [f for f in self.fields if f not in record])
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
            raise OutputError(f"cannot use {path} as SQLite output: {exc}") from None
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
        if self._target.fd >= 0:
            os.close(self._target.fd)
            self._target.fd = -1


def open_output(
    target: OutputFile | None,
    fmt: str,
    fields: Sequence[str],
    *,
    user_agent: str,
    resume_at: int | None = None,
    fresh: bool = False,
    header_from_first_record: bool = False,
) -> Output:
    """The output for a crawl, on a claimed file; stdout when ``target`` is None."""
    if fmt == "csv":
        return CsvOutput(target, resume_at, fields, header_from_first_record)
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


class CrawlSink:
    """The writer thread's sink: output first, then the frontier's commit that points
    into it. ``durable``: the frontier keeps state on disk, so the output is flushed to
    the OS first and its position goes with the commit."""

    def __init__(self, output: Output, frontier: Frontier, *, durable: bool) -> None:
        self.output = output
        self.frontier = frontier
        self.durable = durable

    def write_batch(self, entries: Sequence[Any]) -> None:
        commits: list[Commit] = [e for e in entries if isinstance(e, Commit)]
        self.output.write(commits)
        finished = [(c.finished, c.state, c.status) for c in commits if c.finished is not None]
        if not self.durable:
            if finished:
                self.frontier.commit(finished)
            return
        # The output must reach the OS before the state says it is there.
        self.output.flush()
        counts = RunCounts(errors={})
        for c in commits:
            if c.outcome is not None:
                counts.pages += 1
                counts.bytes += c.nbytes
                if c.outcome == "ok":
                    counts.ok += 1
                elif c.outcome == "redirect":
                    counts.redirects += 1
                else:
                    counts.failed += 1
                if c.error is not None:
                    assert counts.errors is not None
                    counts.errors[c.error] = counts.errors.get(c.error, 0) + 1
        self.frontier.commit(finished, output=self.output.position(), counts=counts)

    def flush(self) -> None:
        self.output.flush()

    def close(self) -> None:
        self.output.close()
