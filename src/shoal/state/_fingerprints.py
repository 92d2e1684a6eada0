"""A set of 64-bit URL fingerprints in 8-byte slots: 10-15 bytes of RAM per URL.

A Python ``set`` of URL strings costs ~150 bytes per URL, a set of ints ~70; a crawl
that discovers tens of millions of URLs cannot afford either. This is an open-addressing
hash table over one ``array('Q')``, kept between 53% and 80% full (it grows by half when
full), so each URL costs 10-15 bytes and never a Python object. While it grows, the old
and the new array exist together for a moment (~25 bytes per URL).

Two different URLs share a 64-bit BLAKE2b fingerprint with probability ~n^2 / 2^65:
about 1 in 370,000 for a crawl of ten million URLs. A collision would make the crawler
skip one URL, never fetch one twice.

Not thread-safe: its owner serializes access (the crawler calls it under its lock).
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

__all__ = ["FingerprintSet", "fingerprint"]

_EMPTY = 0  # fingerprint 0 is remapped to 1 so that 0 can mark a free slot
_MIN_SLOTS = 4099
# Linear probing stays cheap up to ~80% full (about 3 probes for a hit, 13 for a miss);
# growing by half rather than doubling keeps the table between 53% and 80% full.
_MAX_LOAD = 0.8
_GROWTH = 1.5


def fingerprint(url: str) -> int:
    """A stable (across processes and runs) non-zero 64-bit fingerprint of a URL."""
    value = int.from_bytes(blake2b(url.encode(), digest_size=8).digest(), "little")
    return value or 1


class FingerprintSet:
    def __init__(self, capacity: int = 0) -> None:
        size = max(_MIN_SLOTS, int(capacity / _MAX_LOAD) + 1)
        self._slots = array("Q", bytes(8 * size))
        self._size = size
        self._limit = int(size * _MAX_LOAD)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._slots.itemsize * len(self._slots)

    def add(self, fp: int) -> bool:
        """Add a fingerprint; False if it was already present."""
        slots = self._slots
        size = self._size
        i = fp % size
        while True:
            current = slots[i]
            if current == _EMPTY:
                slots[i] = fp
                self._count += 1
                if self._count > self._limit:
                    self._grow()
                return True
            if current == fp:
                return False
            i += 1  # linear probing: cache-friendly
            if i == size:
                i = 0

    def __contains__(self, fp: int) -> bool:
        slots = self._slots
        size = self._size
        i = fp % size
        while True:
            current = slots[i]
            if current == fp:
                return True
            if current == _EMPTY:
                return False
            i += 1
            if i == size:
                i = 0

    def _grow(self) -> None:
        old = self._slots
        size = int(self._size * _GROWTH) | 1  # odd sizes spread "fp % size" better
        slots = array("Q", bytes(8 * size))
        for fp in old:
            if fp != _EMPTY:
                i = fp % size
                while slots[i] != _EMPTY:
                    i = i + 1 if i + 1 < size else 0
                slots[i] = fp
        self._slots = slots
        self._size = size
        self._limit = int(size * _MAX_LOAD)
