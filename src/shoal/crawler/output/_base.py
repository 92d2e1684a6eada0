"""Where a crawl's results go, all through the writer thread.

Workers hand the writer one :class:`Commit` per finished URL: its records and the lease
it ends. :class:`CrawlSink` writes a batch of commits to the output, flushes it, and then
has the frontier commit the batch's leases together with the output's byte offset (a
durable frontier does that in one SQLite transaction). A crash between the two leaves
output past the committed offset; a resume cuts it off and fetches those URLs again, so
every URL's records appear exactly once.

File outputs (JSONL, CSV, WARC) are written as bytes, so the offset is a byte offset;
the SQLite output is keyed on URL, so writing a record again replaces it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..._errors import UsageError
from ...state import RunCounts
from .._schema import RECORD_FIELDS
from ..frontier._base import Frontier, Lease, Outcome
from ._file import OutputFile, is_stream_path

__all__ = [
    "FORMATS",
    "RECORD_FIELDS",
    "Commit",
    "CrawlSink",
    "Exchange",
    "Output",
    "OutputOptions",
    "RefersTo",
    "check_recrawl",
    "infer_format",
    "open_output",
]

FORMATS = ("jsonl", "csv", "sqlite", "warc")
# Each format's module, imported on first use: warcio loads only for a WARC crawl.
_MODULES = {"jsonl": "._jsonl", "csv": "._csv", "sqlite": "._sqlite", "warc": "._warc"}
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


class Exchange(Protocol):
    """One fetch as an archive (WARC) sees it: the response, after any redirects."""

    @property
    def url(self) -> str: ...
    @property
    def final_url(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def redirects(self) -> Sequence[str]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def truncated(self) -> bool: ...  # the body is only the start of the response's
    # The request that got the response (its last hop's): method, body (None: none), and
    # the request's own headers (a shoal.Request's).
    @property
    def method(self) -> str: ...
    @property
    def request_body(self) -> bytes | None: ...
    @property
    def request_headers(self) -> Mapping[str, str]: ...
    # Written instead of this one when not empty (a rendered page: its HTTP response,
    # then every response the browser loaded for it).
    @property
    def archive(self) -> Sequence[Exchange]: ...


@dataclass(frozen=True, slots=True)
class RefersTo:
    """The capture a WARC revisit record stands for: ``profile`` is
    ``server-not-modified`` (a 304) or ``identical-payload-digest`` (the same body)."""

    profile: str
    uri: str  # its WARC-Target-URI
    date: float  # its WARC-Date, wall clock
    sha1: bytes | None = None  # its payload's SHA-1 (a 304's revisit has no body to hash)


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything one finished task changes, applied by the writer thread: its records
    go to the output, then the frontier commits the lease with the output position."""

    records: list[dict[str, Any]] = field(default_factory=list)
    finished: Lease | None = None  # a page lease, ended by this commit
    state: Outcome = Outcome.DONE  # what the lease ends as: DONE, FAILED or DEFER
    status: int | None = None
    exchange: Exchange | None = None  # the raw response, for WARC
    # A page for the run's totals (not a robots.txt fetch, nor a URL robots.txt denies):
    # it counts as failed if ``error`` (the failure's kind) is set, else as a redirect
    # for a 3xx status (one not followed), else ok.
    page: bool = False
    error: str | None = None
    nbytes: int = 0
    change: str | None = None  # a recrawl run's page: new, changed, unchanged, gone...
    fetched_at: float | None = None  # wall clock: the WARC-Date of its response
    # An unchanged page of a recrawl: a WARC revisit record naming the capture, not a
    # response with the body again.
    refers_to: RefersTo | None = None

    @property
    def counts_as(self) -> str | None:
        """``ok``, ``redirect`` or ``failed`` for a page; None for anything else."""
        if not self.page:
            return None
        if self.error is not None:
            return "failed"
        if self.status is not None and 300 <= self.status < 400:
            return "redirect"
        return "ok"


class Output(Protocol):
    def write(self, commits: Sequence[Commit]) -> None: ...

    def flush(self) -> None: ...

    def position(self) -> int | None:
        """Byte offset where committed output ends, or None if the output is idempotent."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """What a format may need to open its output."""

    fields: Sequence[str]
    user_agent: str
    resume_at: int | None = None
    fresh: bool = False
    header_from_first_record: bool = False
    # The user's headers sent with a URL's request, as a record may show them (secrets
    # already redacted); None: none are added.
    request_headers: Callable[[str], Sequence[tuple[str, str]]] | None = None


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


def open_output(
    target: OutputFile | None,
    fmt: str,
    fields: Sequence[str],
    *,
    user_agent: str,
    resume_at: int | None = None,
    fresh: bool = False,
    header_from_first_record: bool = False,
    request_headers: Callable[[str], Sequence[tuple[str, str]]] | None = None,
) -> Output:
    """The output for a crawl, on a claimed file; stdout when ``target`` is None."""
    if fmt not in _MODULES:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    module = importlib.import_module(_MODULES[fmt], __package__)
    options = OutputOptions(
        fields, user_agent, resume_at, fresh, header_from_first_record, request_headers
    )
    output: Output = module.open_format(target, options)
    return output


def check_recrawl(target: OutputFile | None, fmt: str) -> None:
    """Refuse (OutputError) an existing output a recrawl cannot append its runs to: a
    format's ``check_recrawl``, if it has one (CSV: a header without run and change)."""
    module = importlib.import_module(_MODULES[fmt], __package__)
    check = getattr(module, "check_recrawl", None)
    if check is not None:
        check(target)


class CrawlSink:
    """The writer thread's sink: outputs first, then the frontier's commit that points
    into them. ``durable``: the frontier keeps state on disk, so every output is flushed
    to the OS first and their positions go with the commit (one transaction: a resume
    cuts each output back to the same batch)."""

    def __init__(
        self, outputs: Output | Sequence[Output], frontier: Frontier, *, durable: bool
    ) -> None:
        self.outputs = list(outputs) if isinstance(outputs, Sequence) else [outputs]
        self.frontier = frontier
        self.durable = durable

    def write_batch(self, entries: Sequence[Any]) -> None:
        commits: list[Commit] = [e for e in entries if isinstance(e, Commit)]
        for output in self.outputs:
            output.write(commits)
        finished = [(c.finished, c.state, c.status) for c in commits if c.finished is not None]
        if not self.durable:
            if finished:
                self.frontier.commit(finished)
            return
        # The outputs must reach the OS before the state says they are there.
        for output in self.outputs:
            output.flush()
        counts = RunCounts(errors={})
        for c in commits:
            counted = c.counts_as
            if c.change is not None and c.state is not Outcome.DEFER:
                counts.changes = counts.changes or {}
                counts.changes[c.change] = counts.changes.get(c.change, 0) + 1
            if counted is not None:
                counts.pages += 1
                counts.bytes += c.nbytes
                if counted == "ok":
                    counts.ok += 1
                elif counted == "redirect":
                    counts.redirects += 1
                else:
                    counts.failed += 1
                if c.error is not None:
                    assert counts.errors is not None
                    counts.errors[c.error] = counts.errors.get(c.error, 0) + 1
                if c.state is Outcome.DEFER and c.finished is not None:
                    counts.held_back = counts.held_back or []
                    counts.held_back.append((c.finished.url, c.error or "held_back"))
        positions = [output.position() for output in self.outputs]
        position = positions[0] if len(positions) == 1 else positions
        self.frontier.commit(finished, output=position, counts=counts)

    def flush(self) -> None:
        for output in self.outputs:
            output.flush()

    def close(self) -> None:
        failure: BaseException | None = None
        for output in self.outputs:  # each is closed (and unlocked) even if one fails
            try:
                output.close()
            except Exception as exc:  # noqa: BLE001 - the first is raised below
                failure = failure or exc
        if failure is not None:
            raise failure
