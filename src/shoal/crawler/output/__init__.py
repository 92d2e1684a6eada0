"""Where a crawl's records go: the base (``Output``, ``Commit``, ``CrawlSink``, choosing a
format), output files (claiming, locking, resuming at an offset), and one module per
format, imported only when that format is used:

    _base    Output protocol, Commit, CrawlSink (output, then state), infer_format, open_output
    _file    OutputFile, claim_output: the file a crawl may write, and its byte stream
    _jsonl   JSON Lines
    _csv     CSV
    _sqlite  a SQLite table keyed on URL
    _warc    WARC 1.1 (warcio)
"""

from ._base import (
    FORMATS,
    RECORD_FIELDS,
    Commit,
    CrawlSink,
    Exchange,
    Output,
    OutputOptions,
    check_recrawl,
    infer_format,
    open_output,
)
from ._file import FileOutput, OutputFile, claim_output, is_stream_path

__all__ = [
    "FORMATS",
    "RECORD_FIELDS",
    "Commit",
    "CrawlSink",
    "Exchange",
    "FileOutput",
    "Output",
    "OutputFile",
    "OutputOptions",
    "check_recrawl",
    "claim_output",
    "infer_format",
    "is_stream_path",
    "open_output",
]
