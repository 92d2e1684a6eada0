"""Joining a crawl shared through Redis: what ``Crawler(redis=..., crawl_id=...)`` checks
and opens, the same for the Python API and ``shoal crawl --redis`` (which only passes its
options on).

A worker's default id is ``<hostname>:<absolute output path>`` (when that is printable
ASCII without spaces and at most 200 characters; otherwise ``<hostname>:h<hash>:<file
name>``): the same crawl started again on the same machine with the same output is that
worker's restart, and cuts its output back to the offset Redis holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._errors import OutputError, UsageError, literal
from ._options import CrawlOptions
from .frontier.redis import RedisFrontier

__all__ = ["LEASE_TTL", "SharedCrawl", "join_shared", "worker_id_for"]

_PRINTABLE = re.compile(r"[!-~]{1,200}")
LEASE_TTL = 60.0  # seconds: the default lease_ttl


@dataclass(frozen=True, slots=True)
class SharedCrawl:
    """The Redis options of a ``Crawler`` (see its docstring)."""

    redis: str | None = None
    crawl_id: str | None = None
    worker_id: str | None = None
    lease_ttl: float = LEASE_TTL
    allow_weak_durability: bool = False

    def check_unshared(self) -> None:
        """Without ``redis``, the options that only a shared crawl takes are an error."""
        if self.redis is not None:
            return
        for name, given in (
            ("crawl_id", self.crawl_id is not None),
            ("worker_id", self.worker_id is not None),
            ("allow_weak_durability", self.allow_weak_durability),
            ("lease_ttl", self.lease_ttl != LEASE_TTL),
        ):
            if given:
                raise UsageError.naming(f"{{{name}}} applies to a crawl shared through {{redis}}")


def worker_id_for(output: str) -> str:
    """The default worker id of the worker writing ``output``."""
    path = os.path.abspath(output)
    host = socket.gethostname() or "localhost"
    wid = f"{host}:{path}"
    if _PRINTABLE.fullmatch(wid):
        return wid
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    name = re.sub(r"[^!-~]", "_", os.path.basename(path))[:60] or "out"
    return f"{host}:h{digest}:{name}"[:200]


def join_shared(
    shared: SharedCrawl,
    options: CrawlOptions,
    formats: Sequence[str],
    identity: Mapping[str, object],
) -> RedisFrontier:
    """Check what a shared crawl cannot do, then join (or create) it: the crawler's
    frontier. Nothing is opened when a check fails."""
    url = shared.redis
    assert url is not None
    if shared.crawl_id is None:
        raise UsageError.naming("{redis} needs {crawl_id} (the shared crawl's name)")
    outputs = options.output_paths()
    if len(outputs) > 1:
        raise UsageError.naming(
            "{redis} takes one {output}: each worker writes its own output file (combine "
            "the parts with shoal combine, into any format)"
        )
    output = outputs[0]
    if output in (None, "-"):
        raise UsageError.naming("{redis} needs an {output} file: each worker writes its own")
    assert output is not None
    if formats[0] == "sqlite":
        raise UsageError.naming(
            "{redis} needs an output with byte offsets (jsonl, csv or warc), not sqlite"
        )
    if options.state not in (None, "auto"):
        raise UsageError.naming("{redis} keeps the crawl's state in Redis: do not give {state}")
    if options.fresh:
        raise UsageError.naming(
            "{fresh=True} does not apply to a shared crawl: use a new {crawl_id}"
        )
    if shared.lease_ttl < 1:
        raise UsageError.naming("{lease_ttl} must be at least 1 second")
    _not_in_use(output)
    return RedisFrontier.open(
        url,
        shared.crawl_id,
        shared.worker_id or worker_id_for(output),
        identity,
        per_host=options.per_host,
        delay=options.initial_delay,
        robots=options.robots,
        lease_ttl=shared.lease_ttl,
        allow_weak_durability=shared.allow_weak_durability,
    )


def _not_in_use(path: str) -> None:
    """Refuse an output another running worker writes *before* joining the crawl: joining
    as its worker id would fence that live worker (its commits refused from then on)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # absent (or unreadable: the crawler's own claim reports it)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError.naming(
            f"{literal(path)} is being written by another running crawl (this worker would "
            "take over its worker id and stop it); choose another {output}"
        ) from None
    except OSError:
        pass
    finally:
        os.close(fd)
