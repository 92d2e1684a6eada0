"""The Redis frontier: one crawl shared by many processes, on any machines.

:class:`RedisFrontier` adapts :class:`~shoal.state._redis.RedisCrawlState` (which speaks
the same job types, ``shoal.state._jobs``, and does every change in one Lua function) to
the crawler's :class:`Frontier` seam. ``Crawler(redis=..., crawl_id=...)`` opens one.
What it adds on this side:

- **Exactly-once output per worker.** Each worker writes its own output file; every
  commit carries the byte offset the batch started from and the one it ends at, and Redis
  refuses it (:class:`~shoal.StaleCommit`) unless the first is the offset it holds. A
  refused commit stops this worker with that error (exit 3): its file past the committed
  offset holds records of leases it no longer owns, and ``shoal combine`` (or a restart of
  the worker, which cuts its file back to the offset) never reads past it.
- **Exact completion.** A worker with nothing leasable while the crawl's pending count is
  above 0 (another worker holds leases that may add links, or a retry waits) is told
  "look again now" (``ready_in`` 0) and the crawler's wake-up then blocks in
  :meth:`wait_idle` on the crawl's change stream, bounded by the next clock, so it neither
  polls hot nor ends early; when pending reaches 0 ``lease`` returns ``ready_in`` None and
  the crawl ends here by itself.
- **Heartbeat.** A daemon timer renews this process's open leases every ``lease_ttl / 3``
  so long fetches are not reclaimed; it never keeps the crawl from ending.
- **Host policy** (robots.txt text, crawl delay) lives in Redis, so robots.txt is fetched
  once per host per crawl. A robots.txt that could not be fetched is stored as such (its
  pages are recorded as held back by every worker); in a Redis crawl a held-back (DEFER)
  page is finished as failed, since the crawl is one run.

redis-py is imported only by :meth:`RedisFrontier.open` (through the state module).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..._errors import FrontierError
from ...state._jobs import HostPace, job_key
from ...state._store import FetchNote, Prior
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

if TYPE_CHECKING:
    from ...state._redis import RecrawlRun, RedisCrawlState, Visit, VisitNote

__all__ = ["RedisFrontier"]

logger = logging.getLogger(__name__)

# A worker waiting on other workers wakes at least this often (a change stream read is
# bounded too), to notice expired leases of dead workers and its own --max-time.
_IDLE_CAP = 5.0
# With jobs of its own in flight, a worker looks for other ready hosts at least this often.
_BUSY_CAP = 1.0


class RedisFrontier:
    """A :class:`Frontier` on a registered :class:`RedisCrawlState`.

    ``offset`` is this worker's committed output offset (what :meth:`open` got from
    ``register``); ``known`` says whether the worker id had registered before (its output
    file is then this crawl's, to be cut back to ``offset``). With ``worker_id``, the
    worker is not registered yet: :meth:`register` does it (and starts the heartbeat).
    """

    durable = True  # the crawler flushes the output before each commit and passes offsets
    shared = True  # many processes lease from one crawl: see Frontier.shared

    def __init__(
        self,
        state: RedisCrawlState,
        *,
        offset: int = 0,
        known: bool = False,
        worker_id: str | None = None,
    ) -> None:
        self.state = state
        self.output_offset = offset
        self.known_worker = known
        self._unregistered = worker_id  # the id register() takes; None: registered
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}  # this process's open leases (the heartbeat's)
        # held leases that claimed redirect targets: lease id -> the targets
        self._claimed: dict[str, list[str]] = {}
        self._notes: dict[str, FetchNote] = {}  # lease id -> its fetch, for its commit
        self._idle_for: float | None = None  # set when the last lease() found only others' work
        self._closed = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, name="shoal-lease-heartbeat", daemon=True
        )
        if worker_id is None:
            self._heartbeat.start()

    @classmethod
    def open(
        cls,
        url: str,
        crawl_id: str,
        worker_id: str,
        identity: Mapping[str, Any],
        *,
        per_host: int = 8,
        delay: float = 0.0,
        robots: bool = True,
        paces: Mapping[str, HostPace] | None = None,
        lease_ttl: float = 60.0,
        reconnect_for: float = 30.0,
        allow_weak_durability: bool = False,
        register: bool = True,
    ) -> RedisFrontier:
        """Join (or create) crawl ``crawl_id`` at the Redis ``url`` as ``worker_id``.
        ``identity`` is the crawler's (:meth:`Crawler.identity`); its ``output`` is not
        part of the crawl's, every worker having its own. A Redis that may lose commits
        it acknowledged is refused unless ``allow_weak_durability`` (see
        :meth:`RedisCrawlState.open`). ``register=False``: only look the worker up
        (``known_worker``, ``output_offset``); :meth:`register` makes it this process's
        once its output is claimed (the crawler's order: a worker id must never come to
        stand for a file that was refused)."""
        from ...state._redis import RedisCrawlState

        # Each worker has its own output: the rest of the crawler's identity is shared.
        shared = {k: v for k, v in identity.items() if k != "output"}
        state = RedisCrawlState.open(
            url,
            crawl_id,
            shared,
            per_host=per_host,
            delay=delay,
            robots=robots,
            paces=paces,
            lease_ttl=lease_ttl,
            reconnect_for=reconnect_for,
            allow_weak_durability=allow_weak_durability,
        )
        try:
            before = [w for w in state.workers() if w.worker_id == worker_id]
            if not register:
                offset = before[0].offset if before else 0
                return cls(state, offset=offset, known=bool(before), worker_id=worker_id)
            offset = state.register(worker_id)
        except BaseException:
            state.close()
            raise
        return cls(state, offset=offset, known=bool(before))

    def register(self) -> int:
        """Become the worker (a new epoch: a process still running as it is fenced) and
        start the heartbeat; return its committed output offset. Once only."""
        worker_id = self._unregistered
        if worker_id is None:
            return self.output_offset
        self.output_offset = self.state.register(worker_id)
        self._unregistered = None
        self._heartbeat.start()
        return self.output_offset

    @property
    def crawl_id(self) -> str:
        return self.state.crawl_id

    # -- heartbeat -----------------------------------------------------------------------

    def _beat(self) -> None:
        period = max(0.05, self.state.lease_ttl / 3)
        while not self._closed.wait(period):
            with self._lock:
                held = list(self._held.values())
            if not held:
                continue
            try:
                lost = self.state.renew([lease.id for lease in held])
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                logger.warning("renewing %d leases failed: %s", len(held), exc)
                continue
            if lost:
                logger.warning("%d leases of this worker expired and went elsewhere", len(lost))

    # -- recrawls ------------------------------------------------------------------------

    def recrawl(self, *, start: bool, fetched_before: float | None = None) -> RecrawlRun:
        """Join the crawl's current run (finishing a recrawl's fill in progress); with
        ``start``, begin the next recrawl run when the current one has no work left."""
        return self.state.recrawl(start=start, fetched_before=fetched_before)

    def revisit_first(self, changed: Sequence[tuple[str, float]]) -> int:
        """A recrawl: move the pages a sitemap says changed since their last fetch (URL,
        its <lastmod>) to the front of their hosts' queues, queueing in this run those it
        would not revisit (not due); each once per run, whichever worker reads the sitemap.
        How many were moved up."""
        return self.state.revisit_first(changed)

    @property
    def leased_run(self) -> int:
        """The latest run whose jobs this worker leased (0: none yet). A worker that
        joined run N and waited for work may be given run N + 1's, which another worker
        began meanwhile: its records then name run N + 1, as Redis counts them."""
        return self.state.run

    def prior(self, fp: int) -> Prior | None:
        """The last fetch of the URL ``fp`` names, as a state file's
        :meth:`~shoal.state.StateStore.prior` (None: never fetched)."""
        v = self.state.visit(fp)
        if v is None or (v.status is None and v.fetched_at is None):
            return None
        return Prior(
            v.status,
            v.etag,
            v.last_modified,
            v.sha256,
            v.final_url,
            v.fetched_at,
            v.captured_at,
            v.sha1,
        )

    def note_fetch(self, lease_id: str, note: FetchNote) -> None:
        """What the fetch of a leased page leaves in the URL's visit, kept until the lease
        commits (in the same call as its record's offset)."""
        with self._lock:
            self._notes[lease_id] = note

    # -- the seam ------------------------------------------------------------------------

    def submit(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        if not candidates:
            return []
        new = self.state.submit(candidates)
        return [c for c, fresh in zip(candidates, new, strict=True) if fresh]

    def claim(self, lease: Lease, url: str) -> bool:
        self._mine(lease)
        claimed = self.state.claim_for(job_key(lease.url, lease.request), url)
        with self._lock:
            self._claimed.setdefault(lease.id, []).append(url)
        return claimed

    def lease(self, n: int, budget: int | None = None) -> tuple[list[Lease], float | None]:
        got, ready_in, expires_in = self.state.lease_timed(n, budget)
        return self._leased(got, ready_in, expires_in, budget)

    def _leased(
        self,
        got: list[Lease],
        ready_in: float | None,
        expires_in: float | None,
        budget: int | None,
    ) -> tuple[list[Lease], float | None]:
        jobs = got
        # The crawler's pool waits for a scheduled wake-up before it can end: so never
        # hand back a long one, nor one for a lease expiry while jobs of this worker run
        # (each of them dispatches again as it ends, and that lease reclaims expired ones).
        idle: float | None = None
        if jobs:
            # A short wake-up catches other hosts' clocks meanwhile.
            ready_in = None if ready_in is None else min(ready_in, _BUSY_CAP)
        elif budget == 0:
            ready_in = None  # this worker's --max-pages is spent: it ends with its own work
        elif self.state.work_left() > 0:
            if expires_in is not None and (ready_in is None or expires_in < ready_in):
                ready_in = expires_in
            # Others hold the work (or it waits on a clock): look again at once, and let
            # the wake-up block on the change stream until something happens.
            idle = _IDLE_CAP if ready_in is None else min(ready_in, _IDLE_CAP)
            ready_in = 0.0
        else:
            ready_in = None  # the crawl is over
        with self._lock:
            for job in jobs:
                self._held[job.id] = job
            self._idle_for = idle
        return jobs, ready_in

    def wait_idle(self) -> None:
        """Called by the crawler's wake-up before it leases again: when the last lease()
        found only other workers' work, block until the crawl changes (or the next clock)."""
        with self._lock:
            idle, self._idle_for = self._idle_for, None
        if idle is not None and idle > 0:
            self.state.wait(idle)

    def release(
        self, lease: Lease, release: Release, *, take: int = 0, budget: int | None = None
    ) -> Released:
        self._mine(lease)
        outcome: Literal["done", "failed", "retry"]
        if release.outcome is Outcome.RETRY:
            outcome = "retry"
        elif release.outcome is Outcome.DONE:
            outcome = "done"
        elif release.outcome is Outcome.FAILED:
            outcome = "failed"
        else:
            raise FrontierError(f"a release is done, failed or retry, not {release.outcome}")
        if lease.kind is JobKind.ROBOTS and outcome != "retry" and release.policy is None:
            raise FrontierError(f"the robots lease of {lease.host} needs a policy")
        done = self.state.release_with_links(
            lease.id,
            outcome,
            release.links,
            retry_in=release.retry_in,
            hold_host_for=release.hold_host_for,
            park=release.hold_host_for is not None and release.hold_host_for > MAX_HOLD,
            policy=release.policy,
            take=take,
            budget=budget,
        )
        jobs: list[Lease] = []
        ready_in: float | None = None
        if take > 0:
            jobs, ready_in = self._leased(done.jobs, done.ready_in, done.expires_in, budget)
        if outcome == "retry" or lease.kind is not JobKind.PAGE or done.lost:
            with self._lock:
                self._held.pop(lease.id, None)
                self._notes.pop(lease.id, None)
                self._claimed.pop(lease.id, None)  # a retry keeps its claims in Redis
        # A lost lease is not an error raised here: the jobs leased with it are this
        # worker's either way, and the crawler must run them.
        return done._replace(jobs=jobs, ready_in=ready_in)

    def commit(
        self,
        finished: Sequence[Committed],
        *,
        output: int | Sequence[int | None] | None = None,
        counts: object | None = None,
    ) -> None:
        if output is not None and not isinstance(output, int):
            raise FrontierError("a Redis crawl's worker writes one output, not several")
        if output is None:
            raise FrontierError("a Redis crawl needs an output with offsets (jsonl, csv, warc)")
        items: list[tuple[str, Literal["done", "failed"]]] = []
        visits: list[VisitNote] = []
        for lease, outcome, _ in finished:
            if outcome is Outcome.DONE:
                items.append((lease.id, "done"))
            elif outcome in (Outcome.FAILED, Outcome.DEFER):
                items.append((lease.id, "failed"))
            else:
                raise FrontierError(f"a commit is done, failed or defer, not {outcome}")
        with self._lock:
            # Checked here, not only in Redis: the same commit sent twice has the same
            # token, and Redis takes it for a resend of a lost reply (and answers ok).
            for lease, _, status in finished:
                if lease.id not in self._held:
                    raise FrontierError(f"lease {lease.id} ({lease.url}) is not held here")
                # Keyed as the job is (a POST by its request, a GET by its URL), as prior()
                # reads it back.
                key = job_key(lease.url, lease.request)
                visits.append((key, status, _visit(self._notes.get(lease.id))))
            expected = self.output_offset
            claimed = [
                job_key(lease.url, lease.request)
                for lease, _, _ in finished
                if lease.id in self._claimed
            ]
            targets = [
                (url, lease.url, lease.depth)
                for lease, _, _ in finished
                for url in self._claimed.get(lease.id, ())
            ]
        if not items and output == expected:
            return
        changes = getattr(counts, "changes", None)
        # Raises StaleCommit (a FrontierError): the writer fails and the crawl stops.
        self.state.commit(
            items,
            expected_offset=expected,
            new_offset=output,
            claimed_by=claimed,
            visits=visits,
            changes=changes,
            targets=targets,
        )
        with self._lock:
            self.output_offset = output
            for lease, _, _ in finished:
                self._held.pop(lease.id, None)
                self._claimed.pop(lease.id, None)
                self._notes.pop(lease.id, None)

    def renew(self, leases: Sequence[Lease]) -> None:
        lost = self.state.renew([lease.id for lease in leases])
        if lost:
            raise FrontierError(f"{len(lost)} leases are no longer this worker's")

    def host_policy(self, host: str) -> HostPolicy | None:
        return self.state.host_policy(host)

    def set_delay(self, host: str, seconds: float) -> None:
        self.state.set_delay(host, seconds)

    def load_cookies(self) -> list[tuple[str, str]]:
        return self.state.cookies()

    def cookies_version(self) -> int:
        return self.state.cookies_version()

    def note_cookies(self, changes: Sequence[tuple[str, str | None]]) -> int:
        """Written at once (a shared jar: other workers read it); the change counter."""
        return self.state.store_cookies(changes)

    def stats(self) -> FrontierStats:
        c = self.state.stats()
        return FrontierStats(c.queued, c.leased, c.done, c.failed, c.hosts)

    def by_host(self) -> dict[str, HostCounts]:
        return {
            h: HostCounts(t.queued, t.in_flight, t.done, t.failed)
            for h, t in self.state.by_host().items()
        }

    def close(self) -> None:
        """Stop the heartbeat and disconnect; the crawl's data stays in Redis."""
        self._closed.set()
        started = self._heartbeat.ident is not None
        if started and self._heartbeat is not threading.current_thread():
            self._heartbeat.join()
        self.state.close()

    def _mine(self, lease: Lease) -> None:
        with self._lock:
            if lease.id not in self._held:
                raise FrontierError(f"lease {lease.id} of {lease.url} is not held here")


def _visit(note: FetchNote | None) -> Visit | None:
    from ...state._redis import Visit

    if note is None:
        return None
    return Visit(
        None,
        note.etag,
        note.last_modified,
        note.sha256,
        note.sha1,
        note.final_url,
        note.fetched_at,
        keep=note.keep_validators,
    )
