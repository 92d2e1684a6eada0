"""The compact seen-set: exact membership, growth, stable fingerprints, bytes per URL."""

from __future__ import annotations

import random

from shoal.state import FingerprintSet, fingerprint


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


def test_fingerprints_are_stable_and_nonzero() -> None:
    assert fingerprint("http://example.com/") == fingerprint("http://example.com/")
    assert fingerprint("http://example.com/a") != fingerprint("http://example.com/b")
    assert all(fingerprint(f"http://x/{i}") > 0 for i in range(1000))
