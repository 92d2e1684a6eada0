"""Reading a crawl's output back, one record at a time, whatever format it was written in.

Records stream: a report over millions of pages holds only its aggregates. A line that
cannot be read (a JSONL file cut off by a killed crawl that was never resumed) is
counted, not fatal. The crawl's state file, when there is one, adds what the records do
not carry: URLs skipped by robots.txt and URLs still queued.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sqlite3
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from .._errors import StateError, UsageError

__all__ = ["OutputReader", "StateFacts", "read_state_facts"]

_INT_FIELDS = ("status", "depth", "bytes", "run")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_BODY = 64 << 20  # of a WARC page read for its links: more than any crawl keeps

logger = logging.getLogger(__name__)


def _sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(_SQLITE_MAGIC):
        return "sqlite"
    name = path.name.lower()
    if head.startswith(_GZIP_MAGIC) or head.startswith(b"WARC/") or ".warc" in name:
        return "warc"
    if name.endswith(".csv"):
        return "csv"
    return "jsonl"


class OutputReader:
    """Iterate the records of a shoal output file (JSONL, CSV, SQLite or WARC)."""

    def __init__(self, path: str | os.PathLike[str], *, bodies: bool = False) -> None:
        """``bodies``: WARC only, give each HTML page's decoded body as ``body`` (for the
        report's pass that finds every page linking to a broken URL)."""
        self.path = Path(path)
        if not self.path.exists():
            raise UsageError(f"no crawl output at {self.path}")
        if not self.path.is_file():
            raise UsageError(f"{self.path} is not a file")
        try:
            self.format = _sniff(self.path)
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self.bodies = bodies
        self.unreadable = 0  # lines or rows that were not a record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            if self.format == "sqlite":
                yield from self._sqlite()
            elif self.format == "warc":
                yield from self._warc()
            elif self.format == "csv":
                yield from self._csv()
            else:
                yield from self._jsonl()
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def _jsonl(self) -> Iterator[dict[str, Any]]:
        loads = json.loads
        # Text mode: json.loads then skips guessing each line's encoding.
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = loads(line)
                except ValueError:
                    self.unreadable += 1
                    continue
                if isinstance(record, dict):
                    yield record
                else:
                    self.unreadable += 1

    def _csv(self) -> Iterator[dict[str, Any]]:
        # Fields may hold page titles of any length; the default 128 KB cap is not ours.
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with self.path.open(newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                record: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
                try:
                    for name in _INT_FIELDS:
                        if record.get(name) is not None:
                            record[name] = int(record[name])
                    if record.get("elapsed") is not None:
                        record["elapsed"] = float(record["elapsed"])
                except (TypeError, ValueError):
                    self.unreadable += 1
                    continue
                yield record

    def _warc(self) -> Iterator[dict[str, Any]]:
        """A record per response record, built from what a WARC holds: the URL, the status,
        the Content-Type, the payload's length, the WARC-Date. No depth, referrer, latency
        or title, and no record at all for a URL that got no response (its failure is in
        the state file only). robots.txt responses are the crawler's own, not pages."""
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        with self.path.open("rb") as f:
            records = ArchiveIterator(f)
            while True:
                try:
                    rec = next(records)
                except StopIteration:
                    return
                except (ArchiveLoadFailed, ValueError, EOFError, zlib.error) as exc:
                    # A torn last record (a killed crawl that was never resumed): the
                    # records before it stand, what follows cannot be found.
                    logger.info("%s: stopped at an unreadable WARC record: %s", self.path, exc)
                    self.unreadable += 1
                    return
                record = self._warc_record(rec)
                if record is not None:
                    yield record

    def _warc_record(self, rec: Any) -> dict[str, Any] | None:
        if rec.rec_type != "response" or rec.http_headers is None:
            return None
        url = rec.rec_headers.get_header("WARC-Target-URI")
        if not url or urlsplit(url).path == "/robots.txt":
            return None
        http = rec.http_headers
        try:
            status: int | None = int(http.get_statuscode())
        except (TypeError, ValueError):
            self.unreadable += 1
            return None
        final_url = url
        location = http.get_header("Location")
        if status is not None and 300 <= status < 400 and location:
            final_url = urljoin(url, location.strip())  # a redirect not followed: its target
        content_type = http.get_header("Content-Type")
        stream = rec.content_stream()
        # shoal writes the decoded payload and its length; count it when there is none.
        length = http.get_header("Content-Length")
        body = b""
        html = bool(content_type) and "html" in content_type.lower()
        if self.bodies and html and status is not None and 200 <= status < 300:
            body = stream.read(_MAX_BODY)
            nbytes: int | None = len(body)
        elif length is not None and length.strip().isdigit():
            nbytes = int(length)
        else:
            nbytes = 0
            while chunk := stream.read(1 << 16):
                nbytes += len(chunk)
        record: dict[str, Any] = {
            "url": url,
            "final_url": final_url,
            "status": status,
            "depth": None,
            "referrer": None,
            "content_type": content_type,
            "bytes": nbytes,
            "elapsed": None,
            "fetched_at": rec.rec_headers.get_header("WARC-Date"),
            "title": None,
            "error": None,
            "error_detail": None,
        }
        if body:
            record["body"] = body.decode("utf-8", errors="replace")
        return record

    def _sqlite(self) -> Iterator[dict[str, Any]]:
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as exc:
            raise UsageError(f"cannot open {self.path}: {exc}") from None
        try:
            try:
                cursor = conn.execute("SELECT * FROM records ORDER BY rowid")
            except sqlite3.Error as exc:
                raise UsageError(
                    f"{self.path} is not a shoal SQLite output (no records table: {exc})"
                ) from None
            names = [d[0] for d in cursor.description]
            try:
                for row in cursor:
                    record = dict(zip(names, row, strict=True))
                    elapsed = record.get("elapsed")
                    if isinstance(elapsed, str):
                        # A file written before the column was REAL holds it as text.
                        try:
                            record["elapsed"] = float(elapsed)
                        except ValueError:
                            record["elapsed"] = None
                    yield record
            except sqlite3.Error as exc:
                raise UsageError(f"reading {self.path} failed: {exc}") from None
        finally:
            conn.close()


@dataclass
class StateFacts:
    """What the crawl's state file knows beyond the records."""

    path: str
    queued: int = 0
    # URLs finished without a response: robots.txt said no (or, for a redirect target,
    # it was fetched in place and appears as some record's final_url; the reader of the
    # records removes those).
    no_response: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    running: bool = False


def read_state_facts(path: str | os.PathLike[str]) -> StateFacts:
    """Read-only: the crawl may still be running (WAL lets us read beside it)."""
    from ..state import read_status

    status = read_status(path)  # validates the file, says whether a crawl holds it
    facts = StateFacts(str(path), queued=int(status["queued"]), running=bool(status["running"]))
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            for url, host, referrer in conn.execute(
                "SELECT url, host, referrer FROM urls WHERE state=1 AND status IS NULL"
            ):
                facts.no_response[url] = (host, referrer)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StateError(f"reading {path} failed: {exc}") from None
    return facts
