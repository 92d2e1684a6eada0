"""The frontier seam: what the crawler asks of the place its URLs live.

The crawler calls a frontier from many worker threads and the writer thread *without*
holding a lock of its own, so every backend is thread-safe inside (its own lock, or one
atomic script per change for a networked one). Every time that crosses this seam is a
duration ("seconds from now"): each backend keeps its own clock, so a backend shared by
many processes can use one clock for all of them.

A job goes through two phases. :meth:`Frontier.release` is immediate, on the worker, the
moment the response is in: it frees the host's politeness slot, applies holds and
schedules a retry. :meth:`Frontier.commit` is durable, on the output writer thread,
after the job's records are written: it marks the URL done or failed together with the
output position that now holds its records. A crash between the two loses nothing: the
lease is still open and its URL is given out again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ...state import Candidate, HostPolicy, JobKind, Lease, Released
from ...state._jobs import HostPace

__all__ = [
    "MAX_HOLD",
    "Candidate",
    "Committed",
    "Frontier",
    "FrontierStats",
    "HostCounts",
    "HostPace",
    "HostPolicy",
    "JobKind",
    "Lease",
    "Outcome",
    "Release",
    "Released",
]

# The longest pause a host may impose (Retry-After) that a crawl waits out. A host that
# asks for longer is not asked again in this run (its URLs stay queued for a later one).
MAX_HOLD = 300.0


class Outcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    RETRY = "retry"  # release only: the URL waits ``retry_in`` seconds, one attempt more
    # commit only: over for this run but not finished (its host's robots.txt could not be
    # fetched): a durable backend keeps the URL queued for the next run.
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Release:
    """What the worker knows the moment a fetch is over."""

    outcome: Outcome
    retry_in: float | None = None  # seconds, with RETRY
    hold_host_for: float | None = None  # seconds: ask this host nothing for this long
    policy: HostPolicy | None = None  # with a ROBOTS lease: the host's rules
    # The links the page gave, submitted with the release (before it, atomically for a
    # networked backend): one round trip a page instead of two.
    links: tuple[Candidate, ...] = ()


@dataclass(frozen=True, slots=True)
class FrontierStats:
    """Cheap counts (O(1), or one round trip)."""

    queued: int  # waiting, in memory or on disk (hosts held for the run included)
    leased: int  # given out and not yet over
    done: int
    failed: int
    hosts: int

    @property
    def pending(self) -> int:
        """Work left: the crawl is over when this is 0 and nothing is in flight here."""
        return self.queued + self.leased


@dataclass(slots=True)
class HostCounts:
    queued: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0


# (lease, DONE / FAILED / DEFER, final HTTP status if any)
Committed = tuple[Lease, Outcome, int | None]


class Frontier(Protocol):
    """Where a crawl keeps its URLs. Every URL enters at most once."""

    @property
    def durable(self) -> bool:
        """State outlives this process: the crawler flushes the output before each
        commit and passes its position with it."""

    @property
    def shared(self) -> bool:
        """Other processes lease from the same crawl (Redis). What that changes, on
        purpose, in what the caller sees (``tests/test_frontier.py`` holds each backend to
        its flag):

        - :meth:`lease` that gives nothing while work remains anywhere returns ready_in 0
          ("look again"), and :meth:`wait_idle` then blocks until the crawl changes or the
          next clock (another process's release can make work ready at any moment); with
          jobs given, ready_in is at most 1 s.
        - Clocks are the shared store's (the Redis server's ``TIME``), not this process's.
        - ``budget`` is this process's share only (``--max-pages`` is per worker).
        - :meth:`commit` needs this worker's output position (an int): exactly-once output
          is per worker. A DEFER is finished as failed (a shared crawl is one run).
        - :meth:`release` tells ``lost`` when the lease expired and went to another
          process."""

    @property
    def output_offset(self) -> int | None:
        """A shared frontier's committed output position of this worker, where its
        output resumes; None when the frontier keeps no output positions."""

    @property
    def known_worker(self) -> bool:
        """This worker id wrote output for the crawl before: its file is the crawl's, to
        be cut back to :attr:`output_offset` (not a stranger's file to refuse)."""

    def wait_idle(self) -> None:
        """Called by the crawler's wake-up before it leases again. A shared frontier whose
        last :meth:`lease` found only other processes' work blocks here (bounded) until
        the crawl changes; any other returns at once."""

    def submit(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Atomically dedupe and queue; return the candidates that were new."""

    def claim(self, lease: Lease, url: str) -> bool:
        """Mark ``url`` seen without queueing it: a redirect target ``lease`` fetches in
        place. It is finished with the lease's commit. True also when an earlier attempt
        of the same job claimed it (a retry follows the same redirects)."""

    def lease(self, n: int, budget: int | None = None) -> tuple[list[Lease], float | None]:
        """Up to ``n`` jobs that may start now; at most ``budget`` of them first tries of
        pages or sitemaps (retries are never held back by it). Second value: seconds until
        the next waiting job may be ready (None: nothing waits on a clock)."""

    def release(
        self, lease: Lease, release: Release, *, take: int = 0, budget: int | None = None
    ) -> Released:
        """Immediate, on the worker: submit ``release.links`` (as :meth:`submit`, also
        when the lease turns out not to be held: they are real links), then free the host
        slot, apply holds, schedule a retry, store a host policy. ROBOTS and SITEMAP
        leases and retries end here; a PAGE lease released DONE or FAILED ends at its
        commit. Then, with ``take`` > 0, :meth:`lease` ``(take, budget)``: the worker
        that finished a job takes the next one in the same step (one round trip a page
        for a networked backend)."""

    def commit(
        self,
        finished: Sequence[Committed],
        *,
        output: int | Sequence[int | None] | None = None,
        counts: object | None = None,
    ) -> None:
        """Durable, on the writer thread, after the records are written: the finished
        page leases and the output position that now includes their records (None for an
        idempotent output; a crawl with several outputs gives each one's, in order), plus
        what the batch adds to the run's totals (a durable backend stores them in the same
        transaction). All or nothing; a lease that is no longer held is refused with
        :class:`~shoal.FrontierError`."""

    def renew(self, leases: Sequence[Lease]) -> None:
        """Extend live leases (the heartbeat of long fetches)."""

    def host_policy(self, host: str) -> HostPolicy | None:
        """The host's stored rules, None until its robots.txt lease was released."""

    def set_delay(self, host: str, seconds: float) -> None:
        """Change a host's delay between requests (auto-throttle)."""

    def stats(self) -> FrontierStats: ...

    def by_host(self) -> dict[str, HostCounts]: ...

    def close(self) -> None: ...
