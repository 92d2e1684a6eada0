"""The Redis functions behind :class:`~shoal.state.RedisCrawlState`: one library, read from
the package's ``lua/`` files when this module is imported (a Redis state is opened).

Every change to a crawl's shared state is one of these functions, so each is atomic: no
other client sees a half-done step, and a worker killed between two calls leaves the state
whole. What each step guarantees is described in ``_redis.py``; the key layout and the Lua
itself are in ``lua/prelude.lua`` and the files after it. ``KEYS[1]`` of every call is the
crawl's prefix ``shoal:{<crawl id>}:``; functions build the other key names from it. They
all share its hash tag, hence one hash slot (what Redis Cluster needs of the keys one call
touches).
"""

from __future__ import annotations

from importlib import resources

from ._redis_batch import Library

__all__ = ["LIBRARY", "LIBRARY_FILES", "read_files"]

# Loaded as one chunk in this order: the shared helpers first (each file uses the locals of
# the ones before it), then one file per function, each registering itself (its arguments
# are described at its top).
LIBRARY_FILES = (
    "prelude.lua",  # key layout, per-call setup, register()
    "seen.lua",  # the seen set: linear hashing over intset buckets
    "jobs.lua",  # entries, leases, events, scheduling a host, leasing jobs
    "init.lua",
    "register.lua",
    "submit.lua",
    "claim.lua",
    "claim_for.lua",
    "lease.lua",
    "release.lua",
    "commit.lua",
    "renew.lua",
    "set_delay.lua",
)


def read_files() -> list[tuple[str, str]]:
    """The library's files (name, text), from the installed package."""
    folder = resources.files("shoal.state").joinpath("lua")
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in LIBRARY_FILES]


LIBRARY = Library("shoal", read_files())
