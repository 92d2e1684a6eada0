"""The compact seen-set: exact membership, growth, stable fingerprints, bytes per URL."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from shoal.state import FingerprintSet, _fingerprints, fingerprint


def test_membership_and_growth() -> None:
    rng = random.Random(1)
    fps = FingerprintSet()
    values = [rng.getrandbits(64) or 1 for _ in range(50_000)]
    for v in values:
        assert fps.add(v)
    assert len(fps) == 50_000
    assert all(v in fps for v in values)
    assert not any(fps.add(v) for v in values[:1000])  # already there
    absent = [rng.getrandbits(64) or 1 for _ in range(1000)]
    assert sum(v in fps for v in absent) == 0
    assert 10 <= fps.nbytes / len(fps) <= 16  # 53-80% full


# Fingerprints are stored in state files: a resumed crawl (another process, another
# Python, another machine) must compute the same ones, so they are pinned here.
KNOWN = {
    "http://example.com/": 0x06AD9D0C164122FB,
    "https://example.com/a?b=1": 0x3EED3AF2C146D8D6,
    "http://xn--bcher-kva.example/\u00e9": 0x129FBB081D98D785,
}

_CHILD = """
import sys
from shoal.state import fingerprint
for url in sys.stdin.read().splitlines():
    print(fingerprint(url))
"""


def test_fingerprints_are_stable_and_nonzero(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {url: fingerprint(url) for url in KNOWN} == KNOWN
    urls = [*KNOWN, *(f"http://x/{i}" for i in range(1000))]
    here = [fingerprint(url) for url in urls]
    assert len(set(here)) == len(urls) and all(0 < fp < 2**64 for fp in here)
    # Two other processes with different string hash seeds: nothing may depend on hash().
    for seed in ("1", "2"):
        child = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input="\n".join(urls),
            capture_output=True,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONIOENCODING": "utf-8"},
            timeout=60,
        )
        assert child.returncode == 0, child.stderr
        assert [int(line) for line in child.stdout.split()] == here
    # 0 marks a free slot in a FingerprintSet, so a URL whose hash is 0 gets 1 instead.
    # No known URL hashes to 0: a hash that always gives 0 stands in for one.
    monkeypatch.setattr(_fingerprints, "blake2b", _ZeroHash)
    assert fingerprint("http://example.com/") == 1


class _ZeroHash:
    def __init__(self, data: bytes, *, digest_size: int) -> None:
        self.size = digest_size

    def digest(self) -> bytes:
        return bytes(self.size)
