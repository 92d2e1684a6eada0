"""The frontier in this process's memory: fast, and gone when the process ends.

Politeness is the frontier's job because it decides what is *ready*: a host is ready
when it has waiting URLs, fewer than ``per_host`` leases out (its own, where ``paces``
sets one), its robots.txt policy is known, and its delay since the last request has
passed. Hosts are kept in three places so that ``lease()`` never scans every host:
``_eligible`` (ready now, served round-robin), ``_timed`` (a heap by the time they
become ready), or nowhere (no URLs, or saturated; release() or submit() brings them back).

Every public method takes ``self._lock``: the crawler calls in from many threads without
a lock of its own. Leases of an in-process frontier expire only with the process (and
then the whole frontier is gone), so ``renew()`` only checks that they are still held.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..._errors import FrontierError
from ...state._jobs import HostPace, job_key, pace_for
from .._urls import host_key
from ._base import (
    MAX_HOLD,
    Candidate,
    Committed,
    FrontierStats,
    HostCounts,
    HostPolicy,
    JobKind,
    Lease,
    Outcome,
    Release,
    Released,
)

__all__ = ["MemoryFrontier"]

logger = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Job:
    """A queued or leased URL as the backend keeps it."""

    url: str
    host: str
    depth: int = 0
    referrer: str | None = None
    kind: JobKind = JobKind.PAGE
    attempt: int = 1
    fp: int = 0  # fingerprint (durable backend)
    spilled: bool = False  # durable backend: its row was written as living on disk only
    claims: tuple[str, ...] = ()  # redirect targets claimed by this job's attempts
    released: bool = False  # leased: the host slot was given back (commit still owed)
    request: str | None = None  # a request's encoded fields; None: a plain GET


@dataclass(slots=True, eq=False)
class _Host:
    name: str
    queue: deque[_Job] = field(default_factory=deque)
    in_flight: int = 0
    next_at: float = 0.0
    delay: float = 0.0
    limit: int = 8  # leases out at most: the crawl's per_host, or the host's own
    policy: HostPolicy | None = None
    robots_pending: bool = True  # until a policy is released; False with robots off
    robots_asked: bool = False
    robots_attempt: int = 1  # the next robots.txt lease's (a retry counts up, as a page's)
    listed: bool = False  # in _eligible or _timed
    done: int = 0
    failed: int = 0


class MemoryFrontier:
    """A frontier in this process's memory. ``clock`` is for tests (monotonic seconds)."""

    durable = False
    shared = False  # every lease of the crawl is this process's
    output_offset: int | None = None  # no output positions kept here
    known_worker = False

    def __init__(
        self,
        *,
        per_host: int = 8,
        delay: float = 0.0,
        robots: bool = True,
        paces: Mapping[str, HostPace] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_host < 1:
            raise ValueError("per_host must be >= 1")
        self.per_host = per_host
        self.delay = delay
        # Host pattern -> its own per_host and delay (state._jobs.pace_for matches them).
        self.paces = dict(paces or {})
        self.robots = robots
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._hosts: dict[str, _Host] = {}
        self._eligible: deque[_Host] = deque()
        self._timed: list[tuple[float, int, _Host]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._leases: dict[str, _Job] = {}
        self._pending = 0  # queued in memory
        # Queued URLs of hosts held for the rest of the run: counted, not kept (a durable
        # frontier has them in its file), so they neither fill memory nor block paging.
        self._parked = 0
        self._done = 0
        self._failed = 0

    # -- intake --------------------------------------------------------------------------

    def submit(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        accepted = []
        with self._lock:
            for c in candidates:
                request = c.request
                fp = self._first_sight(c.url if request is None else job_key(c.url, request))
                if fp is None:
                    continue
                job = _Job(c.url, host_key(c.url), c.depth, c.referrer, c.kind, fp=fp)
                if request is not None:
                    job.request = request
                self._admit(job)
                accepted.append(c)
        return accepted

    def claim(self, lease: Lease, url: str) -> bool:
        with self._lock:
            job = self._held(lease)
            if url in job.claims:
                return True  # this job's earlier attempt claimed it
            if self._first_sight(url) is None:
                return False
            job.claims = (*job.claims, url)
            return True

    def _first_sight(self, url: str) -> int | None:
        """Mark ``url`` (a job's key: see ``job_key``) seen: its fingerprint (0 here), or
        None if it was seen before."""
        if url in self._seen:
            return None
        self._seen.add(url)
        return 0

    def _admit(self, job: _Job) -> None:
        self._enqueue(job, front=False)

    def _host(self, name: str) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            pace = pace_for(self.paces, name)
            host = _Host(
                name,
                delay=self.delay if pace.delay is None else pace.delay,
                limit=pace.per_host or self.per_host,
                robots_pending=self.robots,
            )
            self._hosts[name] = host
        return host

    def _enqueue(self, job: _Job, *, front: bool) -> None:
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
        """Put a host where lease() will find it, if it could give out a job."""
        if host.listed or host.in_flight >= host.limit or host.next_at == math.inf:
            return
        if host.robots_pending:
            if host.robots_asked:
                return  # waiting for the robots lease's policy
        elif not host.queue:
            return
        host.listed = True
        if host.next_at > now:
            heapq.heappush(self._timed, (host.next_at, next(self._seq), host))
        else:
            self._eligible.append(host)

    # -- dispatch ------------------------------------------------------------------------

    def lease(self, n: int, budget: int | None = None) -> tuple[list[Lease], float | None]:
        notices: list[str] = []
        with self._lock:
            now = self._clock()
            jobs, ready_at = self._take(now, n, budget, notices)
            leases = []
            for job in jobs:
                lease_id = str(next(self._ids))
                self._leases[lease_id] = job
                leases.append(
                    Lease(
                        lease_id,
                        job.url,
                        job.host,
                        job.kind,
                        job.depth,
                        job.referrer,
                        job.attempt,
                        job.request,
                    )
                )
        for notice in notices:  # logging handlers are user code: never under the lock
            logger.warning("%s", notice)
        return leases, (None if ready_at is None else max(0.0, ready_at - now))

    def _take(
        self, now: float, limit: int, budget: int | None, notices: list[str]
    ) -> tuple[list[_Job], float | None]:
        """Up to ``limit`` jobs that may start at ``now``, and when the next may (under
        the lock)."""
        timed = self._timed
        fresh = 0
        while timed and timed[0][0] <= now:
            self._eligible.append(heapq.heappop(timed)[2])
        jobs: list[_Job] = []
        eligible = self._eligible
        # Hosts passed over only because this lease's page budget ran out: still ready,
        # put back in front below (a lease's budget is a share of the crawl's: another
        # thread's lease may hold the rest, and a host dropped here may never be asked
        # again). A budget of 0 means the crawl's is spent.
        held_back: list[_Host] = []
        while eligible and len(jobs) < limit:
            host = eligible.popleft()
            host.listed = False
            if host.in_flight >= host.limit:
                continue
            if host.next_at > now:
                self._relist(host, now)
                continue
            if host.robots_pending:
                if not host.robots_asked:
                    host.robots_asked = True
                    host.in_flight += 1
                    jobs.append(
                        _Job(
                            host.name + "/robots.txt",
                            host.name,
                            kind=JobKind.ROBOTS,
                            attempt=host.robots_attempt,
                        )
                    )
                continue
            if not host.queue:
                continue
            # Sitemaps spend the page budget too: an index of ever more sitemaps must not
            # make unbounded requests.
            first_try = host.queue[0].attempt == 1
            if first_try and budget is not None and fresh >= budget:
                if budget > 0:
                    held_back.append(host)
                # else the crawl's page budget is spent: only a retry (queued first) or a
                # release relists the host, so later leases do not scan it again.
                continue
            fresh += first_try
            job = host.queue.popleft()
            self._pending -= 1
            host.in_flight += 1
            host.next_at = now + host.delay
            jobs.append(job)
            self._relist(host, now)
        for host in reversed(held_back):
            host.listed = True
            eligible.appendleft(host)
        return jobs, (timed[0][0] if timed else None)

    def _held(self, lease: Lease) -> _Job:
        job = self._leases.get(lease.id)
        if job is None:
            raise FrontierError(f"lease {lease.id} ({lease.url}) is not held")
        return job

    def release(
        self, lease: Lease, release: Release, *, take: int = 0, budget: int | None = None
    ) -> Released:
        # Links first, as the crawler did before they rode on the release: the URL's
        # children are queued before the URL can be finished.
        added = self.submit(release.links) if release.links else []
        with self._lock:
            job = self._held(lease)
            if job.released:
                raise FrontierError(f"lease {lease.id} ({lease.url}) was released already")
            now = self._clock()
            host = self._host(job.host)
            host.in_flight -= 1
            job.released = True
            if release.policy is not None:
                host.policy = release.policy
                host.robots_pending = False
                delay = release.policy.crawl_delay
                if delay is not None and delay > host.delay:
                    host.delay = delay
            if job.kind is JobKind.ROBOTS:
                # robots.txt is a request to the host like any other: its first page waits
                # the delay after it (Crawl-delay included), as every page after a page does.
                host.next_at = max(host.next_at, now + host.delay)
            if release.hold_host_for is not None:
                self._hold(host, release.hold_host_for, now)
            if release.outcome is Outcome.RETRY and job.kind is JobKind.ROBOTS:
                # Not queued: a host with robots.txt pending asks for it afresh, when due.
                del self._leases[lease.id]
                host.robots_asked = False
                host.robots_attempt = job.attempt + 1
                host.next_at = max(host.next_at, now + (release.retry_in or 0.0))
            elif release.outcome is Outcome.RETRY:
                del self._leases[lease.id]
                job.attempt += 1
                job.released = False
                host.next_at = max(host.next_at, now + (release.retry_in or 0.0))
                self._enqueue(job, front=True)
            elif job.kind is not JobKind.PAGE:
                del self._leases[lease.id]  # robots.txt and sitemaps have no commit
            self._relist(host, now)
        if take > 0:
            jobs, ready_in = self.lease(take, budget)
            return Released(added, jobs, ready_in)
        return Released(added, [])

    def _hold(self, host: _Host, seconds: float, now: float) -> None:
        """Ask nothing of ``host`` for ``seconds``; past MAX_HOLD, not again in this run
        (its URLs stay queued, and the crawl may end without them)."""
        if seconds > MAX_HOLD:
            host.next_at = math.inf
            if host.queue:
                self._parked += len(host.queue)
                self._pending -= len(host.queue)
                host.queue.clear()
        else:
            host.next_at = max(host.next_at, now + seconds)

    def commit(
        self,
        finished: Sequence[Committed],
        *,
        output: int | Sequence[int | None] | None = None,
        counts: object | None = None,
    ) -> None:
        with self._lock:
            self._check_commit(finished)
            self._apply_commit(finished)

    def _check_commit(self, finished: Sequence[Committed]) -> None:
        ids = [lease.id for lease, _, _ in finished]
        if len(set(ids)) != len(ids):
            raise FrontierError("a lease appears twice in one commit")
        for lease, outcome, _ in finished:
            self._held(lease)
            if outcome not in (Outcome.DONE, Outcome.FAILED, Outcome.DEFER):
                raise FrontierError(f"a commit is done, failed or defer, not {outcome}")

    def _apply_commit(self, finished: Sequence[Committed]) -> None:
        now = self._clock()
        for lease, outcome, _ in finished:
            job = self._leases.pop(lease.id)
            host = self._host(job.host)
            if not job.released:  # committed without a release: free the slot too
                host.in_flight -= 1
                self._relist(host, now)
            if outcome is Outcome.DONE:
                host.done += 1
                self._done += 1
            else:
                host.failed += 1
                self._failed += 1

    def renew(self, leases: Sequence[Lease]) -> None:
        with self._lock:
            for lease in leases:
                self._held(lease)

    # -- host policy ---------------------------------------------------------------------

    def host_policy(self, host: str) -> HostPolicy | None:
        with self._lock:
            h = self._hosts.get(host)
            return None if h is None else h.policy

    def set_delay(self, host: str, seconds: float) -> None:
        with self._lock:
            self._host(host).delay = seconds

    # -- reporting -----------------------------------------------------------------------

    def _queued(self) -> int:
        return self._pending + self._parked

    def stats(self) -> FrontierStats:
        with self._lock:
            return FrontierStats(
                self._queued(), len(self._leases), self._done, self._failed, len(self._hosts)
            )

    def by_host(self) -> dict[str, HostCounts]:
        with self._lock:
            return {
                name: HostCounts(len(h.queue), h.in_flight, h.done, h.failed)
                for name, h in self._hosts.items()
            }

    def wait_idle(self) -> None:
        return  # every job of the crawl is in this process: nothing to wait for

    def close(self) -> None:
        with self._lock:
            self._eligible.clear()
            self._timed.clear()
