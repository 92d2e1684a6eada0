"""CSV: a header, then one row per record."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from typing import Any

from ..._errors import OutputError, literal
from ...runtime import json_line
from .._schema import RUN_FIELDS
from ._base import Commit, OutputOptions
from ._file import FileOutput, OutputFile

__all__ = ["CsvOutput", "check_recrawl", "open_format"]

logger = logging.getLogger(__name__)

# A header line longer than this is not one shoal wrote (as in ``shoal combine``).
_MAX_HEADER = 1 << 20


class CsvOutput(FileOutput):
    """A stable header: the record fields, a recrawl's ``run`` and ``change``, then
    extracted fields, in that order. With a page callback (``from_first_record``) the
    header is the first record's keys followed by the standard fields it lacks. A resumed
    crawl keeps the header already in the file (one an older shoal wrote may lack ``run``
    and ``change``: a recrawl refuses it, see :func:`check_recrawl`). Keys a record has
    beyond the header are dropped (with one warning), never shifted. A record without
    ``run`` is the first run's: its row says 1, as the SQLite output's rows do."""

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
        self._runs = "run" in fields
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
                row = {k: _cell(v) for k, v in record.items()}
                if self._runs and record.get("run") is None:
                    row["run"] = 1
                self._csv.writerow(row)
        if self._buffer.tell():
            self._put(self._buffer.getvalue().encode())
            self._buffer.seek(0)
            self._buffer.truncate()


def _cell(value: Any) -> Any:
    return json_line(value) if isinstance(value, list | dict) else value


def check_recrawl(target: OutputFile | None) -> None:
    """Refuse a recrawl onto a CSV whose header has no ``run`` and ``change`` columns
    (written by a shoal from before recrawls kept CSV history): its rows could not say
    which run they are of, and rewriting the header would move every committed byte
    offset, so the file is left as it is. Called before the recrawl touches the state."""
    if target is None or not target.regular or target.size() == 0:
        return
    head = os.pread(target.fd, _MAX_HEADER, 0)
    line = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    header = next(csv.reader([line]), [])
    missing = [f for f in RUN_FIELDS if f not in header]
    if not missing:
        return
    columns = " and ".join(missing) + (" columns" if len(missing) > 1 else " column")
    raise OutputError.naming(
        literal(
            f"{target.path} was written by an older shoal: its CSV header has no "
            f"{columns}, which a recrawl writes in every row; shoal will not rewrite it "
            "(the state's byte offsets point into it). To recrawl, "
            "start this crawl again with "
        )
        + "{fresh=True}"
        + literal(
            " (it deletes this output and its state; copy the file away first to keep it), "
            "or crawl into another output and recrawl that; without "
        )
        + "{recrawl}"
        + literal(" the crawl resumes into this file as before")
    )


def open_format(target: OutputFile | None, options: OutputOptions) -> CsvOutput:
    return CsvOutput(target, options.resume_at, options.fields, options.header_from_first_record)
