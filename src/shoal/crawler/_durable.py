"""The frontier on disk: resumable after any crash, with bounded memory.

Memory holds the per-host politeness state, at most ``memory_limit`` queued URLs, and
a :class:`~shoal.state.FingerprintSet` of every URL ever seen (~16 bytes each). URLs
discovered while memory is full are *spilled*: they exist only as rows in the state file
until memory drains below a quarter full and they are paged back in, oldest first.

Rows reach the file through the writer thread (see ``output.CrawlSink``), so a spilled
URL can be invisible to the pager for a moment after it was added. When memory is empty
but the disk still owes URLs that are not readable yet, ``take()`` asks to be called
again shortly rather than letting the crawl end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from ..state import FingerprintSet, StateStore, fingerprint
from ._frontier import MAX_HOLD, CrawlJob, JobKind, MemoryFrontier

__all__ = ["DurableFrontier"]

_RECHECK = 0.02  # seconds until take() looks again for spilled rows not yet committed
# After this many empty looks in a row (~5 s), trust the file over the in-memory count:
# the writer commits within milliseconds, so rows still missing then will never come.
_MAX_EMPTY_RECHECKS = 250


class DurableFrontier(MemoryFrontier):
    def __init__(
        self,
        store: StateStore,
        *,
        per_host: int = 8,
        delay: float = 0.0,
        robots: bool = True,
        memory_limit: int = 50_000,
    ) -> None:
        super().__init__(per_host=per_host, delay=delay, robots=robots)
        self.store = store
        self.memory_limit = memory_limit
        self._fps = FingerprintSet()
        for fp in store.fingerprints():
            self._fps.add(fp)
        store.prepare_resume()
        self._resume_holds(store.holds(), time.time(), time.monotonic())
        self._on_disk = store.queued_count()  # queued URLs not in memory
        self._cursor = 0  # highest seq paged in so far
        self._empty_rechecks = 0

    def _resume_holds(self, holds: dict[str, float], wall: float, now: float) -> None:
        """A host that asked for a pause in an earlier run gets it in this one too; one
        that asked for longer than a crawl waits is left alone for the whole run."""
        for host, until in holds.items():
            wait = until - wall
            self.hold_host(host, math.inf if wait > MAX_HOLD else now + wait)

    def _first_sight(self, job: CrawlJob) -> bool:
        if not job.fp:
            job.fp = fingerprint(job.url)
        return self._fps.add(job.fp)

    def add(self, jobs: Iterable[CrawlJob]) -> list[CrawlJob]:
        added = []
        for job in jobs:
            if self._first_sight(job):
                self._admit(job)
                added.append(job)
        return added

    def add_links(
        self, urls: Iterable[str], depth: int, referrer: str, allowed: Callable[[str], bool]
    ) -> list[CrawlJob]:
        fps = self._fps
        added = []
        for url in urls:
            fp = fingerprint(url)
            if fp in fps or not allowed(url):
                continue
            fps.add(fp)
            job = CrawlJob(url, depth, referrer, fp=fp)
            self._admit(job)
            added.append(job)
        return added

    def _admit(self, job: CrawlJob) -> None:
        """Queue a new job in memory, or, when memory is full, leave it on disk."""
        if self._pending >= self.memory_limit and job.kind is JobKind.PAGE:
            # Backpressure. Only pages spill: they alone reach the state file (sitemaps
            # are found again from robots.txt after a resume).
            job.spilled = True
            self._on_disk += 1
        else:
            self._enqueue(job, front=False)

    def take(
        self, now: float, limit: int, fresh_limit: int | None = None
    ) -> tuple[list[CrawlJob], float | None]:
        if self._on_disk and self._pending < max(1, self.memory_limit // 4):
            self._page_in()
        jobs, next_at = super().take(now, limit, fresh_limit)
        if not jobs and not self._pending and self._on_disk and next_at is None:
            self._empty_rechecks += 1
            if self._empty_rechecks < _MAX_EMPTY_RECHECKS:
                return jobs, now + _RECHECK
            actual = self.store.spilled_count(self._cursor)
            # Logged by the caller, outside its lock (logging handlers are user code).
            self._notices.append(
                f"frontier expected {self._on_disk} URL(s) on disk, found {actual}"
            )
            self._on_disk = actual
            self._empty_rechecks = 0
            return jobs, (now + _RECHECK if actual else None)
        self._empty_rechecks = 0
        return jobs, next_at

    def _page_in(self) -> None:
        want = self.memory_limit - self._pending
        for seq, row in self.store.page_in(self._cursor, want):
            self._cursor = seq
            self._on_disk -= 1
            job = CrawlJob(row.url, row.depth, row.referrer, fp=row.fp)
            self._enqueue(job, front=False)

    def pending(self) -> int:
        return super().pending() + self._on_disk

    def close(self) -> None:
        super().close()
