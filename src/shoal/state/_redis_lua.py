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

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Literal, NamedTuple

from ._redis_batch import Library

__all__ = ["LIBRARY", "LIBRARY_FILES", "NONE", "PARK", "Call", "Link", "Note", "read_files"]

# Loaded as one chunk in this order: the shared helpers first (each file uses the locals of
# the ones before it), then one file per function, each registering itself (its arguments
# are described at its top).
LIBRARY_FILES = (
    "prelude.lua",  # key layout, per-call setup, register()
    "seen.lua",  # the seen set: linear hashing over intset buckets
    "jobs.lua",  # entries, leases, events, scheduling a host, leasing jobs
    "visits.lua",  # each URL's last fetch, for recrawls
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
    "recrawl.lua",
    "lastmod.lua",
)


def read_files() -> list[tuple[str, str]]:
    """The library's files (name, text), from the installed package."""
    folder = resources.files("shoal.state").joinpath("lua")
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in LIBRARY_FILES]


LIBRARY = Library("shoal", read_files())


# -- the calls -----------------------------------------------------------------------------
# One builder per function: it names the function and lays out its ARGV from keyword
# arguments, in the order the function's file documents at its top. The wire stays flat
# (positional strings: what FCALL carries, no encoding to pay for on either side); the
# sentinels of "none" (-1 for a number, '' for a policy) are written here and nowhere else.

Arg = str | int | bytes
Link = tuple[str, str, bytes]
"""A URL to queue: (signed fingerprint, host key ``scheme://host[:port]``, entry)."""

NONE = -1  # a number argument's "none", as the Lua reads it
PARK = -2  # release's hold_ms: park the host for the rest of the crawl (not a duration)


class Call(NamedTuple):
    """One call: the function's name (``lua/<name in lower case>.lua``) and its ARGV."""

    name: str
    args: list[Arg]


def _opt(value: int | None) -> int:
    return NONE if value is None else value


def _links(links: Sequence[Link]) -> list[Arg]:
    out: list[Arg] = [len(links)]
    for fp, host, entry in links:
        out += [fp, host, entry]
    return out


def init(
    *,
    version: str,
    identity: str,
    per_host: int,
    delay_ms: int,
    robots: bool,
    bucket_target: int,
    paces: Sequence[tuple[str, int | None, int | None]] = (),
) -> Call:
    """``paces``: (host pattern, per_host, delay_ms) with None for the crawl's value."""
    flat: list[Arg] = [len(paces)]
    for pattern, limit, delay in paces:
        flat += [pattern, _opt(limit), _opt(delay)]
    return Call("INIT", [version, identity, per_host, delay_ms, int(robots), bucket_target, *flat])


def register(*, worker: str) -> Call:
    return Call("REGISTER", [worker])


def submit(*, links: Sequence[Link]) -> Call:
    return Call("SUBMIT", _links(links))


def claim(*, fingerprints: Sequence[str]) -> Call:
    return Call("CLAIM", list(fingerprints))


def claim_for(*, job: str, url: str, keep_ms: int) -> Call:
    return Call("CLAIM_FOR", [job, url, keep_ms])


def lease(
    *, worker: str, epoch: str, n: int, budget: int | None, ttl_ms: int, request: str
) -> Call:
    return Call("LEASE", [worker, epoch, n, _opt(budget), ttl_ms, request])


def release(
    *,
    worker: str,
    epoch: str,
    lease_id: str,
    outcome: str,
    retry_ms: int,
    hold_ms: int | None,
    policy: Literal["none", "txt"] | None,
    robots_txt: bytes,
    crawl_delay_ms: int | None,
    links: Sequence[Link],
    take: int,
    budget: int | None,
    ttl_ms: int,
    request: str,
) -> Call:
    return Call(
        "RELEASE",
        [
            *(worker, epoch, lease_id, outcome, retry_ms, _opt(hold_ms)),
            *(policy or "", robots_txt, _opt(crawl_delay_ms)),
            *_links(links),
            *(take, _opt(budget), ttl_ms, request),
        ],
    )


def commit(
    *,
    worker: str,
    epoch: str,
    token: str,
    expected_offset: int,
    new_offset: int,
    claims: Sequence[str],
    targets: Sequence[tuple[str, bytes]] = (),
    changes: Mapping[str, int] | None = None,
    finished: Sequence[tuple[str, str, str, int | None, Note | None]],
) -> Call:
    """``targets``: (signed fingerprint, entry); ``finished``: (lease id, done | failed,
    signed fingerprint, status, note)."""
    args: list[Arg] = [worker, epoch, token, str(expected_offset), str(new_offset)]
    args += [len(claims), *claims]
    args.append(len(targets))
    for fp, target in targets:
        args += [fp, target]
    changes = changes or {}
    args.append(len(changes))
    for change, n in changes.items():
        args += [change, n]
    for lease_id, outcome, fp, status, note in finished:
        args += [lease_id, outcome, fp, "" if status is None else status]
        args += _NO_NOTE if note is None else note
    return Call("COMMIT", args)


Note = tuple[str, bytes, bytes, bytes, bytes, bytes, int]
"""A fetch's note for a URL's visit (lua/visits.lua): keep ('1': a 304, '0'), ETag,
Last-Modified, SHA-256, SHA-1 (b'': none), final URL (b'': the URL), fetched µs (wall
clock)."""
_NO_NOTE: list[Arg] = ["-", b"", b"", b"", b"", b"", -1]


def recrawl(*, start: bool, cut_us: int | None, count: int) -> Call:
    return Call("RECRAWL", [int(start), _opt(cut_us), count])


def lastmod(*, changed: Sequence[tuple[str, int]]) -> Call:
    return Call("LASTMOD", [x for fp, lastmod_us in changed for x in (fp, lastmod_us)])


def renew(*, worker: str, epoch: str, ttl_ms: int, lease_ids: Sequence[str]) -> Call:
    return Call("RENEW", [worker, epoch, ttl_ms, *lease_ids])


def set_delay(*, host: str, delay_ms: int) -> Call:
    return Call("SET_DELAY", [host, delay_ms])
