"""A set of 64-bit URL fingerprints in 8-byte slots: ~16 bytes of RAM per URL.

A Python ``set`` of URL strings costs ~150 bytes per URL, a set of ints ~70; a crawl
that discovers tens of millions of URLs cannot afford either. This is an open-addressing
hash table over one ``array('Q')``, kept between 25% and 50% full, so each URL costs
16-32 bytes and never a Python object.

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
_MIN_CAPACITY = 1 << 12


def fingerprint(url: str) -> int:
    """A stable (across processes and runs) non-zero 64-bit fingerprint of a URL."""
    value = int.from_bytes(blake2b(url.encode(), digest_size=8).digest(), "little")
    return value or 1


class FingerprintSet:
    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        size = _MIN_CAPACITY
        while size < capacity * 2:
            size <<= 1
        self._slots = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._slots.itemsize * len(self._slots)

    def add(self, fp: int) -> bool:
        """Add a fingerprint; False if it was already present."""
        slots = self._slots
        mask = self._mask
        i = fp & mask
        while True:
            current = slots[i]
            if current == _EMPTY:
                slots[i] = fp
                self._count += 1
                if self._count * 2 > len(slots):
                    self._grow()
                return True
            if current == fp:
                return False
            i = (i + 1) & mask  # linear probing: cache-friendly, fine at <= 50% load

    def __contains__(self, fp: int) -> bool:
        slots = self._slots
        mask = self._mask
        i = fp & mask
        while True:
            current = slots[i]
            if current == fp:
                return True
            if current == _EMPTY:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        size = len(old) * 2
        self._slots = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0
        for fp in old:
            if fp != _EMPTY:
                self.add(fp)
