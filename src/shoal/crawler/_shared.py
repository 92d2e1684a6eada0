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

from .._errors import UsageError, literal
from ._options import CrawlOptions
from .frontier.redis import RedisFrontier
from .output import is_stream_path

__all__ = [
    "LEASE_TTL",
    "SharedCrawl",
    "check_shared",
    "connect_shared",
    "not_a_file",
    "worker_id_for",
]

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


def check_shared(shared: SharedCrawl, options: CrawlOptions, formats: Sequence[str]) -> None:
    """Refuse what a shared crawl cannot do (made by ``Crawler()``: nothing is connected
    or opened here; :func:`connect_shared` does that in ``run()``)."""
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
    if is_stream_path(output):
        raise UsageError.naming(not_a_file(output))


def not_a_file(output: str) -> str:
    """Why a device or pipe cannot be a shared crawl's output (a named pipe would also
    block whoever opens it to look, until a reader comes)."""
    return (
        literal(f"{output} is a device or pipe, not a file: ")
        + "{redis} needs an {output} file, which a restarted worker cuts back to what "
        "it committed"
    )


def connect_shared(
    shared: SharedCrawl, options: CrawlOptions, identity: Mapping[str, object]
) -> RedisFrontier:
    """Connect and join (or create) the crawl, checked by :func:`check_shared` before: the
    crawler's frontier, its worker looked up but *not registered*. The crawler registers
    it (:meth:`RedisFrontier.register`) only once the output is claimed, so a refused
    file never becomes "this worker's" (a worker id registered before is trusted to own
    its file, which a restart cuts back)."""
    url, crawl_id, output = shared.redis, shared.crawl_id, options.output_paths()[0]
    assert url is not None and crawl_id is not None and output is not None
    per_host, paces = options.shared_politeness()
    return RedisFrontier.open(
        url,
        crawl_id,
        shared.worker_id or worker_id_for(output),
        identity,
        per_host=per_host,
        delay=options.initial_delay,
        paces=paces,
        robots=options.robots,
        lease_ttl=shared.lease_ttl,
        allow_weak_durability=shared.allow_weak_durability,
        register=False,
    )
