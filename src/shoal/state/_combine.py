"""One output from the part files of a shared crawl, each read up to its committed offset.

Every worker of a shared crawl writes its own output file (a *part*) and commits, with each
batch of finished URLs, the byte offset its part has reached. Bytes past that offset belong
to URLs whose commit never happened (the worker was killed, or its lease had expired):
another worker fetched them again, so they are cut here. What remains of all parts holds
every page of the crawl exactly once.

Formats whose parts can be cut at a byte offset on a record boundary: JSONL and CSV (a
record ends with a line end) and WARC (each record is its own gzip member; the prefix is
checked to be whole members, one valid record each). WARC parts are joined as they are:
each part's warcinfo record stays in front of the records it describes (a WARC file may
hold several; the spec has a warcinfo record describe the records after it, up to the
next one), which keeps the worker each record came from and copies every record byte for
byte. When every part ends exactly at its committed offset (each worker exited normally),
JSONL and WARC parts need no cutting and ``cat`` gives the same result; CSV parts still
each start with a header, which this writes once.

SQLite outputs have no byte offset to commit: a shared crawl refuses them, so there are no
SQLite parts to combine.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .._errors import StateError, UsageError
from ._combine_warc import check_warc_part

__all__ = ["CombinedPart", "combine_parts"]

_CHUNK = 1 << 20
_MAX_HEADER = 1 << 20  # a CSV header longer than this is not one shoal wrote


@dataclass(frozen=True, slots=True)
class CombinedPart:
    path: str
    committed: int  # the offset committed for this part
    size: int  # the part's size on disk: anything past ``committed`` was cut
    written: int  # bytes of it copied to the output (its header excluded, for CSV)
    lines: int  # line ends among them (JSONL: records)
    records: int | None = None  # WARC: the records among them (None for JSONL and CSV)


_SUFFIXES = {
    ".csv": "csv",
    ".warc": "warc",
    ".warc.gz": "warc",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
}


def _format(output: Path, given: str | None) -> str:
    if given is None:
        name = output.name.lower()
        given = next((f for s, f in _SUFFIXES.items() if name.endswith(s)), "jsonl")
    if given == "sqlite":
        # The same reason, in the same words, as a shared crawl refusing a sqlite -o.
        raise UsageError(
            "cannot combine sqlite outputs: a shared crawl (--redis) needs an output with "
            "byte offsets (jsonl, csv or warc), so no worker writes a sqlite part"
        )
    if given not in ("jsonl", "csv", "warc"):
        raise UsageError(
            f"cannot combine {given} outputs by committed offset: only jsonl, csv and warc "
            "parts can be cut at a record boundary"
        )
    return given


_NAMES = {"jsonl": "JSONL", "csv": "CSV", "warc": "WARC"}
_EXAMPLES = {"jsonl": "pages.jsonl", "csv": "pages.csv", "warc": "pages.warc.gz"}


def _part_format(f: BinaryIO) -> str:
    """What a part that holds records was written as, from its first bytes: a WARC part
    starts with a gzip member, a JSONL part with ``{``, a CSV part with its header."""
    head = f.read(5)
    f.seek(0)
    if head.startswith(b"\x1f\x8b") or head == b"WARC/":
        return "warc"  # an uncompressed one is refused by the WARC check, with its reason
    return "jsonl" if head.lstrip()[:1] == b"{" else "csv"


def _check_part(
    path: Path, committed: int, f: BinaryIO, fmt: str, out: Path
) -> tuple[int, int | None]:
    """The part's size, and for WARC its records up to ``committed``; ``f`` is left at 0."""
    size = os.fstat(f.fileno()).st_size
    if size < committed:
        raise StateError(
            f"{path} is shorter ({size} bytes) than its committed offset ({committed}): "
            "records the crawl counts as written are missing; was the file changed?"
        )
    if committed and (kind := _part_format(f)) != fmt:
        # Parts are copied byte for byte, never converted: one format in, the same out.
        raise StateError(
            f"{path} is a {_NAMES[kind]} part: {_NAMES[kind]} parts cannot be combined into "
            f"a {_NAMES[fmt]} output ({out}); combine them into one of their own format "
            f"(-o {_EXAMPLES[kind]})"
        )
    if fmt == "warc":
        records = check_warc_part(path, f, committed) if committed else 0
        f.seek(0)
        return size, records
    if committed:
        f.seek(committed - 1)
        if f.read(1) != b"\n":
            raise StateError(
                f"{path} does not end a record at its committed offset {committed}: "
                "is it the part of this worker?"
            )
        f.seek(0)
    return size, None


def _header(path: Path, f: BinaryIO, committed: int) -> bytes:
    line = f.readline(min(committed, _MAX_HEADER))
    if not line.endswith(b"\n"):
        raise StateError(f"{path} has no CSV header line before its committed offset")
    return line


def _copy(src: BinaryIO, dst: BinaryIO, count: int) -> int:
    lines = 0
    while count > 0:
        data = src.read(min(_CHUNK, count))
        if not data:
            raise StateError(f"{src.name} became shorter while it was read")
        dst.write(data)
        lines += data.count(b"\n")
        count -= len(data)
    return lines


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``out``. Without ``overwrite`` a hard link puts it in
    place only if nothing is there, so a file created at ``out`` since the check at the
    start is refused too, not replaced."""
    if overwrite:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise UsageError(f"{out} exists; pass overwrite to replace it") from None
    except OSError:
        # No hard links here (some network and FUSE file systems): check, then rename.
        if out.exists():
            raise UsageError(f"{out} exists; pass overwrite to replace it") from None
        os.replace(tmp, out)


def combine_parts(
    parts: Sequence[tuple[str | os.PathLike[str], int]],
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    overwrite: bool = False,
) -> list[CombinedPart]:
    """Write ``output`` from ``parts``, each ``(path, committed offset)``, in the order
    given. ``format`` (``jsonl``, ``csv`` or ``warc``) defaults to the output's extension.

    Every part is checked before anything is written (present, at least as long as its
    committed offset, a record ending there, the same CSV header; for WARC, whole gzip
    members up to the offset, each one valid WARC record); the output is built
    under a temporary name and renamed into place, so a failure leaves no half output.
    An existing ``output`` is replaced only with ``overwrite=True``.
    """
    out = Path(output)
    fmt = _format(out, format)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; pass overwrite to replace it")
    paths = [Path(p) for p, _ in parts]
    for p in paths:
        if out.exists() and p.exists() and p.samefile(out):
            raise UsageError(f"the output {out} is also one of the parts")
    opened: list[BinaryIO] = []
    tmp: Path | None = None
    try:
        sizes = []
        records = []
        for p, (_, committed) in zip(paths, parts, strict=True):
            if committed < 0:
                raise UsageError(f"{p}: a committed offset cannot be negative")
            try:
                reader: BinaryIO = open(p, "rb")  # noqa: SIM115  (closed in finally)
            except OSError as exc:
                raise UsageError(f"cannot read part {p}: {exc.strerror or exc}") from None
            opened.append(reader)
            size, count = _check_part(p, committed, reader, fmt, out)
            sizes.append(size)
            records.append(count)
        header: bytes | None = None
        skips = []
        for p, f, (_, committed) in zip(paths, opened, parts, strict=True):
            skip = 0
            if fmt == "csv" and committed:
                line = _header(p, f, committed)
                if header is None:
                    header = line
                elif line != header:
                    raise StateError(f"{p} has another CSV header than {paths[0]}: {line!r}")
                skip = len(line)
            skips.append(skip)
        report = []
        try:
            fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
            tmp = Path(name)
            with os.fdopen(fd, "wb") as dst:
                if header is not None:
                    dst.write(header)
                for p, f, (_, committed), size, skip, count in zip(
                    paths, opened, parts, sizes, skips, records, strict=True
                ):
                    f.seek(skip)
                    lines = _copy(f, dst, committed - skip)
                    report.append(
                        CombinedPart(str(p), committed, size, committed - skip, lines, count)
                    )
                dst.flush()
                os.fsync(dst.fileno())
            _publish(tmp, out, overwrite)
        except OSError as exc:
            raise StateError(f"cannot write {out}: {exc.strerror or exc}") from None
        return report
    finally:
        for f in opened:
            f.close()
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
