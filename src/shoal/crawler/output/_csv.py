"""CSV: a header, then one row per record."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from typing import Any

from ...runtime import json_line
from ._base import Commit, OutputOptions
from ._file import FileOutput, OutputFile

__all__ = ["CsvOutput", "open_format"]

logger = logging.getLogger(__name__)


class CsvOutput(FileOutput):
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


def _cell(value: Any) -> Any:
    return json_line(value) if isinstance(value, list | dict) else value


def open_format(target: OutputFile | None, options: OutputOptions) -> CsvOutput:
    return CsvOutput(target, options.resume_at, options.fields, options.header_from_first_record)
