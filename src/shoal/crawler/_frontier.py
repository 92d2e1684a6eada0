"""The frontier: which URLs were seen, which wait, and when each host may be asked again.

:class:`Frontier` is the seam between the crawler and where its state lives. This
module has the in-memory implementation; the SQLite one (durable, resumable) and the
Redis one (shared by many processes) implement the same methods.

Politeness is the frontier's job because it decides what is *ready*: a host is ready
when it has waiting URLs, fewer than ``per_host`` requests in flight, its robots.txt
is known, and its delay since the last request has passed. Hosts are kept in three
places so that ``take()`` never scans every host: ``_eligible`` (ready now, served
round-robin), ``_timed`` (a heap by the time they become ready), or nowhere (no URLs,
or saturated; finish() or add() brings them back).

Implementations need not be thread-safe: the crawler calls them under its own lock.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ._urls import host_key

__all__ = ["MAX_HOLD", "CrawlJob", "Frontier", "HostCounts", "JobKind", "MemoryFrontier"]

# The longest pause a host may impose (Retry-After) that a crawl waits out. A host that
# asks for longer is not asked again in this run (see hold_host).
MAX_HOLD = 300.0


class JobKind(StrEnum):
    PAGE = "page"
    ROBOTS = "robots"
    SITEMAP = "sitemap"
    WAKE = "wake"  # no URL: a delayed task that only dispatches (see _crawler)


@dataclass(slots=True)
class CrawlJob:
    url: str
    depth: int = 0
    referrer: str | None = None
    kind: JobKind = JobKind.PAGE
    attempt: int = 1
    fp: int = 0  # fingerprint, set by a durable frontier
    spilled: bool = False  # True: kept on disk, not in memory, until paged in
    claims: tuple[str, ...] = ()  # redirect targets this job claimed before a retry
    _host: str = ""

    @property
    def host(self) -> str:
        """``scheme://host[:port]``, computed once: the frontier asks for it often."""
        if not self._host:
            self._host = host_key(self.url)
        return self._host


@dataclass(slots=True)
class HostCounts:
    queued: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0


class Frontier(Protocol):
    """Where a crawl keeps its URLs. Every URL enters at most once (``add`` dedupes)."""

    def add(self, jobs: Iterable[CrawlJob]) -> list[CrawlJob]:
        """Queue the jobs whose URL was never seen; return those (to be persisted)."""

    def add_links(
        self, urls: Iterable[str], depth: int, referrer: str, allowed: Callable[[str], bool]
    ) -> list[CrawlJob]:
        """``add`` for the links of a page: the seen-check comes first (most links on a
        page were seen before), then ``allowed`` (scope), and only then a job is made."""

    def claim(self, job: CrawlJob) -> bool:
        """Mark ``job.url`` seen without queueing it (a redirect target fetched in place).
        False if it was seen already."""

    def take(
        self, now: float, limit: int, fresh_limit: int | None = None
    ) -> tuple[list[CrawlJob], float | None]:
        """Up to ``limit`` jobs that may start now, and when the next waiting one may
        (None when nothing waits on a clock). At most ``fresh_limit`` of them are first
        attempts of pages or sitemaps (the page budget); retries are never held back by it."""

    def finish(
        self, job: CrawlJob, now: float, *, failed: bool = False, retry_at: float | None = None
    ) -> None:
        """A taken job is over; with ``retry_at`` it goes back to wait until then."""

    def robots_known(self, host: str, delay: float | None) -> None:
        """The host's robots.txt is in: release its URLs, with its Crawl-delay if any."""

    def set_delay(self, host: str, delay: float) -> None:
        """Change a host's delay between requests (auto-throttle)."""

    def hold_host(self, host: str, until: float) -> None:
        """Ask nothing of ``host`` before ``until`` (Retry-After); ``math.inf``: not again
        in this run (its URLs stay queued, and the crawl may end without them)."""

    def pending(self) -> int:
        """URLs waiting, in any host's queue."""

    def by_host(self) -> dict[str, HostCounts]: ...

    def drain_notices(self) -> list[str]:
        """Warnings gathered under the caller's lock, for the caller to log outside it."""

    def close(self) -> None: ...


@dataclass(slots=True, eq=False)
class _Host:
    name: str
    queue: deque[CrawlJob] = field(default_factory=deque)
    in_flight: int = 0
    next_at: float = 0.0
    delay: float = 0.0
    robots_pending: bool = True  # until robots_known(); False from the start with robots off
    robots_asked: bool = False
    listed: bool = False  # in _eligible or _timed
    done: int = 0
    failed: int = 0


class MemoryFrontier:
    """A frontier in this process's memory: fast, and gone when the process ends."""

    def __init__(self, *, per_host: int = 8, delay: float = 0.0, robots: bool = True) -> None:
        if per_host < 1:
            raise ValueError("per_host must be >= 1")
        self.per_host = per_host
        self.delay = delay
        self.robots = robots
        self._seen: set[str] = set()
        self._hosts: dict[str, _Host] = {}
        self._eligible: deque[_Host] = deque()
        self._timed: list[tuple[float, int, _Host]] = []
        self._seq = itertools.count()
        self._pending = 0
        # Queued URLs of hosts held for the rest of the run: counted, not kept (a durable
        # frontier has them in its file), so they neither fill memory nor block paging.
        self._parked = 0
        self._notices: list[str] = []

    # -- intake --------------------------------------------------------------------------

    def add(self, jobs: Iterable[CrawlJob]) -> list[CrawlJob]:
        added = []
        for job in jobs:
            if self._first_sight(job):
                self._enqueue(job, front=False)
                added.append(job)
        return added

    def add_links(
        self, urls: Iterable[str], depth: int, referrer: str, allowed: Callable[[str], bool]
    ) -> list[CrawlJob]:
        seen = self._seen
        added = []
        for url in urls:
            if url in seen or not allowed(url):
                continue  # out-of-scope URLs are not remembered: they would only cost memory
            seen.add(url)
            job = CrawlJob(url, depth, referrer)
            self._enqueue(job, front=False)
            added.append(job)
        return added

    def claim(self, job: CrawlJob) -> bool:
        return self._first_sight(job)

    def _first_sight(self, job: CrawlJob) -> bool:
        """Mark the job's URL seen; False if it was seen before."""
        if job.url in self._seen:
            return False
        self._seen.add(job.url)
        return True

    def _host(self, name: str) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            host = _Host(name, delay=self.delay, robots_pending=self.robots)
            self._hosts[name] = host
        return host

    def _enqueue(self, job: CrawlJob, *, front: bool) -> None:
        host = self._host(job.host)
        if host.next_at == math.inf:
            self._parked += 1
            return
        if front:
            host.queue.appendleft(job)
        else:
            host.queue.append(job)
        self._pending += 1
        self._relist(host, 0.0)

    def _relist(self, host: _Host, now: float) -> None:
        """Put a host where take() will find it, if it could give out a job."""
        if host.listed or host.in_flight >= self.per_host or host.next_at == math.inf:
            return
        if host.robots_pending:
            if host.robots_asked:
                return  # waiting for robots_known()
        elif not host.queue:
            return
        host.listed = True
        if host.next_at > now:
            heapq.heappush(self._timed, (host.next_at, next(self._seq), host))
        else:
            self._eligible.append(host)

    # -- dispatch ------------------------------------------------------------------------

    def take(
        self, now: float, limit: int, fresh_limit: int | None = None
    ) -> tuple[list[CrawlJob], float | None]:
        timed = self._timed
        fresh = 0
        while timed and timed[0][0] <= now:
            self._eligible.append(heapq.heappop(timed)[2])
        jobs: list[CrawlJob] = []
        eligible = self._eligible
        while eligible and len(jobs) < limit:
            host = eligible.popleft()
            host.listed = False
            if host.in_flight >= self.per_host:
                continue
            if host.next_at > now:
                self._relist(host, now)
                continue
            if host.robots_pending:
                if not host.robots_asked:
                    host.robots_asked = True
                    host.in_flight += 1
                    jobs.append(CrawlJob(host.name + "/robots.txt", kind=JobKind.ROBOTS))
                continue
            if not host.queue:
                continue
            # Sitemaps spend the page budget too: an index of ever more sitemaps must not
            # make unbounded requests.
            first_try = host.queue[0].attempt == 1 and host.queue[0].kind is not JobKind.ROBOTS
            if first_try and fresh_limit is not None and fresh >= fresh_limit:
                continue  # the page budget is spent; only a retry (queued first) relists it
            fresh += first_try
            job = host.queue.popleft()
            self._pending -= 1
            host.in_flight += 1
            host.next_at = now + host.delay
            jobs.append(job)
            self._relist(host, now)
        return jobs, (timed[0][0] if timed else None)

    def finish(
        self, job: CrawlJob, now: float, *, failed: bool = False, retry_at: float | None = None
    ) -> None:
        host = self._host(job.host)
        host.in_flight -= 1
        if job.kind is JobKind.PAGE:
            if retry_at is not None:
                job.attempt += 1
                host.next_at = max(host.next_at, retry_at)
                host.queue.appendleft(job)
                self._pending += 1
            elif failed:
                host.failed += 1
            else:
                host.done += 1
        self._relist(host, now)

    def robots_known(self, host: str, delay: float | None) -> None:
        h = self._host(host)
        h.robots_pending = False
        if delay is not None and delay > h.delay:
            h.delay = delay
        self._relist(h, 0.0)

    def set_delay(self, host: str, delay: float) -> None:
        self._host(host).delay = delay

    def hold_host(self, host: str, until: float) -> None:
        h = self._host(host)
        h.next_at = max(h.next_at, until)
        if until == math.inf and h.queue:
            self._parked += len(h.queue)
            self._pending -= len(h.queue)
            h.queue.clear()

    # -- reporting -----------------------------------------------------------------------

    def pending(self) -> int:
        return self._pending + self._parked

    def by_host(self) -> dict[str, HostCounts]:
        return {
            name: HostCounts(len(h.queue), h.in_flight, h.done, h.failed)
            for name, h in self._hosts.items()
        }

    def drain_notices(self) -> list[str]:
        notices, self._notices = self._notices, []
        return notices

    def close(self) -> None:
        self._eligible.clear()
        self._timed.clear()
