"""Where crawl records go: JSONL or CSV sinks for the writer thread."""

from __future__ import annotations

import csv
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .._errors import UsageError
from ..runtime import TextSink, json_line

__all__ = ["RECORD_FIELDS", "CsvSink", "infer_format", "open_sink"]

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
)
FORMATS = ("jsonl", "csv", "sqlite", "warc")


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


class CsvSink:
    """CSV with a stable header: the record fields, then extracted fields, in that order.

    Keys a record has beyond the header are dropped (with one warning), never shifted
    into other columns.
    """

    def __init__(self, stream: TextIO, fields: Sequence[str] | None, *, close_stream: bool) -> None:
        self.stream = stream
        self.fields = list(fields) if fields else None
        self.close_stream = close_stream
        self._writer: csv.DictWriter[str] | None = None
        self._warned = False
        self._buffer = io.StringIO()

    def write_batch(self, entries: Sequence[Any]) -> None:
        for entry in entries:
            if isinstance(entry, str):
                continue  # text lines have no place in a CSV file
            if self._writer is None:
                self.fields = self.fields or list(entry)
                self._writer = csv.DictWriter(
                    self._buffer, self.fields, extrasaction="ignore", lineterminator="\n"
                )
                if not self.stream.seekable() or self.stream.tell() == 0:
                    self._writer.writeheader()
            if not self._warned and self.fields is not None and set(entry) - set(self.fields):
                self._warned = True
                logger.warning(
                    "CSV output drops fields not in its header: %s",
                    sorted(set(entry) - set(self.fields)),
                )
            self._writer.writerow({k: _cell(v) for k, v in entry.items()})
        self.stream.write(self._buffer.getvalue())
        self._buffer.seek(0)
        self._buffer.truncate()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
        if self.close_stream:
            self.stream.close()


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json_line(value)
    return value


def open_sink(path: str | None, fmt: str, fields: Sequence[str], *, append: bool = False) -> Any:
    """A sink for the writer thread. stdout when ``path`` is None or "-"."""
    if path is None or path == "-":
        stream: TextIO = sys.stdout
        close = False
    else:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            stream = open(path, "a" if append else "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(f"cannot open output {path!r}: {exc.strerror or exc}") from None
        close = True
    if fmt == "csv":
        return CsvSink(stream, fields, close_stream=close)
    return TextSink(stream, close_stream=close)
