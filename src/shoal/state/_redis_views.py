"""The read-only views of a shared crawl (counts, hosts, workers) and its explicit delete:
what ``shoal status --redis`` and the frontier's stats read, apart from the functions that
change the crawl. Mixed into :class:`~shoal.state._redis.RedisCrawlState`."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import TYPE_CHECKING

from ._jobs import HostPolicy
from ._redis_support import CrawlCounts, HostTally, KnownSeen, WorkerInfo, text

if TYPE_CHECKING:
    import redis

__all__ = ["CrawlViews"]


class CrawlViews:
    """Reads of one crawl's keys; each view is a few round trips, none a function call."""

    # Set by RedisCrawlState.
    _client: redis.Redis
    _lock: threading.Lock
    _policies: dict[str, HostPolicy]
    _known: KnownSeen
    prefix: str
    crawl_id: str
    worker_id: str | None

    def _guard(self, what: str) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def output_offset(self, worker_id: str | None = None) -> int:
        """The committed output offset of ``worker_id`` (this worker by default); 0 if none."""
        worker = worker_id or self.worker_id
        if worker is None:
            raise RuntimeError("register() a worker id first")
        with self._guard("reading the output offset"):
            value = self._client.hget(f"{self.prefix}w:{worker}", "offset")
        return int(value) if value is not None else 0

    # -- reporting -----------------------------------------------------------------------

    def stats(self) -> CrawlCounts:
        """Counts in one round trip, one consistent snapshot."""
        with self._guard("reading counts"):
            pipe = self._client.pipeline(transaction=True)
            pipe.hmget(f"{self.prefix}meta", "pending", "done", "failed")
            pipe.hlen(f"{self.prefix}l")
            pipe.scard(f"{self.prefix}hosts")
            counts, leased, hosts = pipe.execute()
        pending, d, f = (int(x or 0) for x in counts)
        # The functions keep pending (queued + leased) and the leases; queued is the rest.
        return CrawlCounts(pending - int(leased), int(leased), d, f, int(hosts))

    def finished(self) -> bool:
        """True exactly when no work is left anywhere in the crawl (:meth:`work_left`)."""
        return self.work_left() == 0

    def work_left(self) -> int:
        """Queued or leased URLs, less those of parked hosts (a Retry-After longer than a
        crawl waits: they are never given out in this crawl). Parked hosts only grow in
        number, so a host parked between the two round trips is counted as work: late,
        never early."""
        with self._guard("reading counts"):
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(f"{self.prefix}meta", "pending")
            pipe.smembers(f"{self.prefix}parked")
            pending, parked = pipe.execute()
            if not parked:  # the usual case: one round trip, as stats() is
                return int(pending or 0)
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(f"{self.prefix}meta", "pending")
            for host in sorted(text(h) for h in parked):
                pipe.llen(f"{self.prefix}q:{host}")
                pipe.hget(f"{self.prefix}h:{host}", "dl")
            pending, *held = pipe.execute()
        return int(pending or 0) - sum(int(x or 0) for x in held)

    def seen_count(self) -> int:
        with self._guard("reading counts"):
            return int(self._client.hget(f"{self.prefix}meta", "sn") or 0)

    def by_host(self) -> dict[str, HostTally]:
        """Per-host counts (several round trips; not one snapshot)."""
        out: dict[str, HostTally] = {}
        with self._guard("reading host counts"):
            hosts = sorted(text(h) for h in self._client.sscan_iter(f"{self.prefix}hosts"))
            for start in range(0, len(hosts), 500):
                chunk = hosts[start : start + 500]
                pipe = self._client.pipeline(transaction=False)
                for h in chunk:
                    pipe.hmget(f"{self.prefix}h:{h}", "inflight", "done", "failed", "dl")
                    pipe.llen(f"{self.prefix}q:{h}")
                replies = pipe.execute()
                for i, h in enumerate(chunk):
                    inflight, done, failed, dl = (int(x or 0) for x in replies[2 * i])
                    out[h] = HostTally(replies[2 * i + 1] + dl, inflight, done, failed)
        return out

    def workers(self) -> list[WorkerInfo]:
        """Every worker that ever registered, with its committed offset and counts."""
        out = []
        with self._guard("reading workers"):
            now_s, now_us = self._client.time()
            now = now_s * 1000 + now_us // 1000
            # A lease record starts with its worker's id (the layout in lua/prelude.lua).
            held = Counter(
                text(rec.split(b"\n", 1)[0])
                for _, rec in self._client.hscan_iter(f"{self.prefix}l", count=1000)
            )
            for w in sorted(text(x) for x in self._client.smembers(f"{self.prefix}workers")):
                epoch, offset, done, failed, seen = self._client.hmget(
                    f"{self.prefix}w:{w}", "epoch", "offset", "done", "failed", "seen"
                )
                leases = held[w]
                idle = (now - int(seen)) / 1000 if seen is not None else None
                out.append(
                    WorkerInfo(
                        w,
                        int(epoch or 0),
                        int(offset or 0),
                        int(leases),
                        int(done or 0),
                        int(failed or 0),
                        idle,
                    )
                )
        return out

    def delete_crawl(self) -> int:
        """Delete every key of this crawl (queue, seen set, offsets): only on an explicit
        request, never as part of closing. Returns the number of keys deleted."""
        deleted = 0
        with self._guard("deleting the crawl"):
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=f"shoal:{{{self.crawl_id}}}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(self._client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self._client.unlink(*batch))
        with self._lock:
            self._policies.clear()
            self._known.clear()
        return deleted
