"""The frontier on disk: resumable after any crash, with bounded memory.

Memory holds the per-host politeness state, at most ``memory_limit`` queued URLs, and
a :class:`~shoal.state.FingerprintSet` of every URL ever seen (~16 bytes each). URLs
discovered while memory is full are *spilled*: they exist only as rows in the state file
until memory drains below a quarter full and they are paged back in, oldest first.

``submit()`` only buffers the new rows; ``commit()`` (the writer thread, after the output
is written and flushed) writes them in one transaction with the finished URLs, the
output offset, the run's counts and the hosts' holds. A page's links are submitted before
its commit is handed to the writer, so they reach the file no later than the page: a
crash loses neither. A spilled URL can therefore be invisible to the pager for a moment;
when memory is empty but the disk still owes URLs that are not readable yet, ``lease()``
asks to be called again shortly rather than letting the crawl end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

from ...state import DONE, FAILED, FingerprintSet, RunCounts, StateStore, UrlRow, fingerprint
from ...state._jobs import HostPace
from ...state._store import FetchNote
from ._base import MAX_HOLD, Committed, JobKind, Outcome
from .memory import MemoryFrontier, _Host, _Job

__all__ = ["SqliteFrontier"]

_RECHECK = 0.02  # seconds until lease() looks again for spilled rows not yet committed
# After this many empty looks in a row (~5 s), trust the file over the in-memory count:
# the writer commits within milliseconds, so rows still missing then will never come.
_MAX_EMPTY_RECHECKS = 250


class SqliteFrontier(MemoryFrontier):
    durable = True  # its state file holds the output position, committed with the URLs

    def __init__(
        self,
        store: StateStore,
        *,
        per_host: int = 8,
        delay: float = 0.0,
        robots: bool = True,
        paces: Mapping[str, HostPace] | None = None,
        memory_limit: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(per_host=per_host, delay=delay, robots=robots, paces=paces, clock=clock)
        self.store = store
        self.memory_limit = memory_limit
        self._fps = FingerprintSet()
        for fp in store.fingerprints():
            self._fps.add(fp)
        store.prepare_resume()
        self._new_rows: list[UrlRow] = []  # submitted, for the next commit
        self._new_holds: list[tuple[str, float]] = []  # (host, wall-clock until)
        self._resume_holds(store.holds(), time.time())
        self._on_disk = store.queued_count()  # queued URLs not in memory
        self._cursor = 0  # highest seq paged in so far
        self._empty_rechecks = 0
        self._notes: dict[str, FetchNote] = {}  # lease id -> its fetch, for its commit
        # A recrawl's pages a sitemap's <lastmod> moved up (revisit_first): each once per
        # process; and those taken from disk ahead of the pager, which it then skips.
        # Both bounded by --max-pages (the caller's cap on what it moves up per run).
        self._moved_up: set[int] = set()
        self._early: set[int] = set()
        self._new_cookies: dict[str, str | None] = {}  # cookie key -> JSON (None: removed)

    def load_cookies(self) -> list[tuple[str, str]]:
        """The crawl's cookie jar as the state file holds it."""
        return self.store.cookies()

    def note_cookies(self, changes: Sequence[tuple[str, str | None]]) -> None:
        """The cookie jar's changes, written with the next commit: a cookie a page set
        is in the state no later than that page's record, so a resume has the session
        the pages it does not fetch again had."""
        with self._lock:
            self._new_cookies.update(changes)

    def note_fetch(self, lease_id: str, note: FetchNote) -> None:
        """What the fetch of a leased page leaves in the state (validators, digest), kept
        until the lease commits: written in the same transaction as its record, so a
        revisit never compares against a capture whose record was lost."""
        with self._lock:
            self._notes[lease_id] = note

    def _resume_holds(self, holds: dict[str, float], wall: float) -> None:
        """A host that asked for a pause in an earlier run gets it in this one too; one
        that asked for longer than a crawl waits is left alone for the whole run."""
        now = self._clock()
        for host, until in holds.items():
            wait = until - wall
            super()._hold(self._host(host), math.inf if wait > MAX_HOLD else wait, now)

    def _first_sight(self, url: str) -> int | None:
        fp = fingerprint(url)
        return fp if self._fps.add(fp) else None

    def _admit(self, job: _Job) -> None:
        """Queue a new job in memory, or, when memory is full, leave it on disk."""
        if job.kind is not JobKind.PAGE:
            # Only pages reach the state file: sitemaps are found again from robots.txt
            # after a resume, and so are the robots.txt files. A sitemap goes before its
            # host's pages: in a recrawl, its <lastmod>s say which of them to revisit first.
            self._enqueue(job, front=job.kind is JobKind.SITEMAP)
            return
        if self._pending >= self.memory_limit:
            job.spilled = True  # backpressure
            self._on_disk += 1
        else:
            self._enqueue(job, front=False)
        self._new_rows.append(_row(job))

    def _hold(self, host: _Host, seconds: float, now: float) -> None:
        super()._hold(host, seconds, now)
        self._new_holds.append((host.name, time.time() + seconds))  # kept across a resume

    def _take(
        self, now: float, limit: int, budget: int | None, notices: list[str]
    ) -> tuple[list[_Job], float | None]:
        if self._on_disk and self._pending < max(1, self.memory_limit // 4):
            self._page_in()
        jobs, ready_at = super()._take(now, limit, budget, notices)
        if not jobs and not self._pending and self._on_disk and ready_at is None:
            self._empty_rechecks += 1
            if self._empty_rechecks < _MAX_EMPTY_RECHECKS:
                return jobs, now + _RECHECK
            actual = self.store.spilled_count(self._cursor)
            notices.append(f"frontier expected {self._on_disk} URL(s) on disk, found {actual}")
            self._on_disk = actual
            self._empty_rechecks = 0
            return jobs, (now + _RECHECK if actual else None)
        self._empty_rechecks = 0
        return jobs, ready_at

    def read_robots(self, hosts: Sequence[str]) -> None:
        """Ask for the robots.txt of ``hosts`` even with none of their URLs queued: a
        recrawl run with nothing due reads their sitemaps for pages changed since."""
        with self._lock:
            now = self._clock()
            for name in hosts:
                self._relist(self._host(name), now)

    def revisit_first(self, changed: Sequence[tuple[str, float]]) -> int:
        """A recrawl: move the pages a sitemap says changed since their last fetch (URL,
        its <lastmod>) to the front of their hosts' queues: those queued in this run
        (in memory, or taken from disk now), and those an earlier run fetched and this one
        would not revisit (not due under --revisit-after). How many were moved up."""
        rows = self.store.revisit_rows([(fingerprint(url), lastmod) for url, lastmod in changed])
        if not rows:
            return 0
        moved = 0
        with self._lock:
            in_memory: dict[str, list[int]] = {}  # host -> fingerprints to find in its queue
            for found in rows:
                row = found.row
                if row.fp in self._moved_up:
                    continue
                if found.queued and not (row.spilled and found.seq > self._cursor):
                    # In memory (or leased, or fetched and not committed yet: then it is
                    # not in the queue, and stays where it is).
                    in_memory.setdefault(row.host, []).append(row.fp)
                    continue
                job = _Job(row.url, row.host, row.depth, row.referrer, fp=row.fp)
                if found.queued:  # still on disk: taken now, skipped by the pager later
                    job.spilled = True
                    self._early.add(row.fp)
                    self._on_disk -= 1
                self._moved_up.add(row.fp)
                self._enqueue(job, front=True)
                moved += 1
            for name, fps in in_memory.items():
                host = self._hosts.get(name)
                if host is None or not host.queue:
                    continue
                wanted = set(fps)
                first = [j for j in host.queue if j.fp in wanted]
                if first:
                    rest = [j for j in host.queue if j.fp not in wanted]
                    host.queue.clear()
                    host.queue.extend(first + rest)
                    self._moved_up.update(j.fp for j in first)
                    moved += len(first)
        return moved

    def _page_in(self) -> None:
        want = self.memory_limit - self._pending
        for seq, row in self.store.page_in(self._cursor, want):
            self._cursor = seq
            if row.fp in self._early:
                self._early.discard(row.fp)  # taken ahead of its turn (revisit_first)
                continue
            self._on_disk -= 1
            self._enqueue(
                _Job(
                    row.url,
                    row.host,
                    row.depth,
                    row.referrer,
                    fp=row.fp,
                    spilled=True,
                    request=row.request,
                ),
                front=False,
            )

    def commit(
        self,
        finished: Sequence[Committed],
        *,
        output: int | Sequence[int | None] | None = None,
        counts: object | None = None,
    ) -> None:
        if counts is not None and not isinstance(counts, RunCounts):
            raise TypeError("counts must be a RunCounts")
        with self._lock:
            self._check_commit(finished)
            added, self._new_rows = self._new_rows, []
            holds, self._new_holds = self._new_holds, []
            cookies, self._new_cookies = self._new_cookies, {}
            rows: list[tuple[UrlRow, int, int | None]] = []
            notes: list[tuple[int, FetchNote]] = []
            claimed: list[int] = []
            for lease, outcome, status in finished:
                job = self._leases[lease.id]
                note = self._notes.pop(lease.id, None)
                if outcome is Outcome.DEFER:
                    continue  # stays queued in the file: the next run tries it again
                if note is not None:
                    notes.append((job.fp, note))
                rows.append((_row(job), DONE if outcome is Outcome.DONE else FAILED, status))
                rows.extend(
                    (UrlRow(fingerprint(url), url, job.host, job.depth, job.url), DONE, None)
                    for url in job.claims
                )
                claimed.extend(fingerprint(url) for url in job.claims)
        # Outside the lock: only the writer thread commits, and workers must not wait on
        # the disk. The leases stay held until the transaction is in.
        self.store.commit(
            added,
            rows,
            output,
            counts=counts,
            holds=holds,
            notes=notes,
            claimed=claimed,
            cookies=list(cookies.items()),
        )
        with self._lock:
            self._apply_commit(finished)

    def close(self) -> None:
        # Cookie changes noted after the last commit (a robots.txt fetch's, the last
        # page's on an interrupted run): the writer is done, so they go in on their own.
        with self._lock:
            cookies, self._new_cookies = self._new_cookies, {}
        if cookies:
            self.store.commit((), (), None, cookies=list(cookies.items()))
        super().close()

    def _queued(self) -> int:
        return self._pending + self._parked + self._on_disk


def _row(job: _Job) -> UrlRow:
    return UrlRow(job.fp, job.url, job.host, job.depth, job.referrer, job.spilled, job.request)
