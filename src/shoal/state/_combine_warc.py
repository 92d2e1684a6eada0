"""Checking a WARC part of a shared crawl up to its committed offset.

A worker's WARC output is a run of gzip members, one WARC record each (warcio's
``WARCWriter(gzip=True)``), and it commits the file offset after a batch's last record:
always the end of a member. What a killed worker wrote after its last commit may end
inside a member (torn by the kill), and that tail is cut.

warcio alone cannot tell whether a prefix ends on a member boundary: its reader takes a
truncated member without complaint (and drops a record torn in its header). So the
prefix is walked member by member with zlib on its way to warcio's parser: it must be
whole members only, each holding exactly one valid WARC record whose digests match.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import BinaryIO

from .._errors import StateError

__all__ = ["check_warc_part"]

_GZIP = 16 + zlib.MAX_WBITS  # a gzip header and trailer around each member
_OUT = 1 << 20  # decompressed bytes per step: a member's output is never held whole


class _Prefix:
    """The first ``limit`` bytes of a part for warcio to read, counting the gzip members
    they hold on the way (their decompressed bytes are thrown away)."""

    def __init__(self, path: Path, f: BinaryIO, limit: int) -> None:
        self._path = path
        self._f = f
        self._left = limit
        self._pos = 0
        self._member: zlib._Decompress | None = None
        self._start = 0  # where the member being read began
        self.members = 0

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._f.read(n)
        if len(data) < n:
            raise StateError(f"{self._path} became shorter while it was read")
        self._walk(data)
        self._pos += len(data)
        self._left -= len(data)
        return data

    def _walk(self, data: bytes) -> None:
        end = self._pos + len(data)  # the file offset just past ``data``
        while data:
            if self._member is None:
                self._member = zlib.decompressobj(_GZIP)
                self._start = end - len(data)
                self.members += 1
            member = self._member
            try:
                member.decompress(data, _OUT)
            except zlib.error as exc:
                raise StateError(
                    f"{self._path}: the gzip member at byte {self._start} is damaged or not "
                    f"gzip ({exc}); shoal writes each WARC record as its own gzip member"
                ) from None
            if member.eof:
                data = member.unused_data
                self._member = None
            else:
                data = member.unconsumed_tail

    @property
    def in_member(self) -> bool:
        """The bytes read so far end inside a gzip member."""
        return self._member is not None


def check_warc_part(path: Path, f: BinaryIO, committed: int) -> int:
    """The number of WARC records in the first ``committed`` bytes of ``f``, after
    checking that they are whole gzip members, one valid WARC record each. Raises
    :class:`StateError` naming ``path`` otherwise. ``f`` is read from where it is."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    prefix = _Prefix(path, f, committed)
    records = 0
    try:
        # 'raise': a block or payload digest that does not match its record is an error,
        # as ``warcio check`` reports it.
        for record in ArchiveIterator(prefix, check_digests="raise"):
            if record.format != "warc":
                raise ArchiveLoadFailed(f"an {record.format} record, not a WARC one")
            records += 1
    except StateError:
        raise
    except (ArchiveLoadFailed, ValueError, EOFError, OSError) as exc:
        # warcio reads ahead, so a member torn at the offset may show up as a parse error.
        torn = prefix.in_member and prefix.tell() == committed
        why = " ".join(str(exc).split())  # warcio's messages span lines
        raise StateError(
            f"{path} is not a valid WARC stream up to its committed offset {committed}"
            + (" (it ends inside a gzip member)" if torn else "")
            + f": {why[:300]}; is it the part of this worker?"
        ) from None
    if prefix.tell() != committed:  # warcio stopped early: something it took for the end
        raise StateError(
            f"{path} is not a valid WARC stream up to its committed offset {committed}: "
            f"it ends at byte {prefix.tell()}; is it the part of this worker?"
        )
    if prefix.in_member:
        raise StateError(
            f"{path} does not end a gzip member at its committed offset {committed}: "
            "is it the part of this worker?"
        )
    if records != prefix.members:
        raise StateError(
            f"{path} holds {records} WARC records in {prefix.members} gzip members up to "
            f"its committed offset: shoal writes one record per member, so it cannot be "
            "cut at a record boundary"
        )
    return records
