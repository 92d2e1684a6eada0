"""One run's outputs and state file around the dispatch loop: opening them (resuming
both where the last run left off) and recording how the run ended.

:class:`~shoal.crawler.Crawler` builds one :class:`RunSession` per run and hands it what
it needs; the session knows nothing of dispatch or fetching.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from .._errors import StateError, UsageError
from ..runtime import Writer
from ..state import StateStore
from ..state._store import Prior
from ._options import CrawlOptions
from ._shared import not_a_file
from ._stats import CrawlResult
from .frontier import Frontier, SqliteFrontier
from .frontier.redis import RedisFrontier
from .output import (
    CrawlSink,
    Output,
    OutputFile,
    check_recrawl,
    claim_output,
    is_stream_path,
    open_output,
)

logger = logging.getLogger(__name__)

# Group commit: the output writer waits up to this long to gather a batch, so a slow
# crawl pays one write, flush and state transaction per ~10 ms rather than per page
# (measured: ~15 % less CPU per page at 50 ms latency). Pages in that window are, after
# a kill, fetched again like the rest of the writer's (bounded) queue.
_OUTPUT_LINGER = 0.01


class RunSession:
    """One run's outputs and state file: claimed and opened before the first fetch (each
    output resumed at the offset the state committed), and the run's end recorded after
    the last write. Built by :meth:`Crawler.run` with what it needs; after :meth:`open`,
    ``frontier`` is the run's frontier (a SQLite one over the state file unless one was
    given) and ``store`` the state file (None: no state file)."""

    def __init__(
        self,
        options: CrawlOptions,
        *,
        formats: list[str],
        state_path: str | None,
        frontier: Frontier,
        given_frontier: Frontier | None,
        result: CrawlResult,
        announce: Callable[[str], None],
        register: Callable[[], int] | None = None,
        request_headers: Callable[[str], Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.options = options
        # The user's headers a URL's request carried, secrets redacted (WARC records).
        self._request_headers = request_headers
        self.formats = formats
        self.state_path = state_path
        self.frontier = frontier
        self._given_frontier = given_frontier
        self.result = result
        self.announce = announce
        # A shared crawl's worker, registered once its output is claimed (see open()).
        self._register = register
        self.store: StateStore | None = None
        self.earlier_pages = 0  # pages earlier runs of this crawl finished (not held back)
        # The crawl's run as records name it: 1, then one more per --recrawl.
        self.generation = 1
        # A recrawl run begun with nothing due under --revisit-after, to read the sitemaps
        # for pages changed since their last fetch; undone at the end if it found none.
        self.lastmod_only = False
        # A URL's last fetch (by fingerprint), for a recrawl run's conditional requests
        # and change classes: the state file's, or the shared crawl's.
        self.prior: Callable[[int], Prior | None] | None = None

    @property
    def resumable(self) -> bool:
        return self.store is not None or self.frontier.durable

    def open(
        self, identity: dict[str, object], fields: list[str], *, header_from_first_record: bool
    ) -> Writer:
        """Claim and lock every output, open the state, and open each output at its
        committed offset; on any failure, leave nothing behind that this call created.
        The writer thread's sink writes to them."""
        opts = self.options
        paths = opts.output_paths()
        resume_at: list[int | None] = [None] * len(paths)
        fresh = True
        # A shared frontier (Redis) holds this worker's committed output offset: the
        # output is resumed at it when the frontier knows this worker from before (it
        # registered only after claiming that file, so the file is the worker's).
        given = self._given_frontier
        shared_known = given.known_worker if given is not None and given.shared else None
        claims: list[OutputFile | None] = []
        outputs: list[Output] = []
        try:
            for path in paths:
                claims.append(
                    claim_output(
                        path,
                        self.state_path,
                        fresh=opts.fresh,
                        overwrite=opts.overwrite,
                        announce=self.announce,
                        shared_worker=shared_known,
                    )
                )
            if self._register is not None:
                if claims[0] is not None and not claims[0].regular:
                    # Made a pipe since Crawler() checked: it could not be cut back.
                    raise UsageError.naming(not_a_file(claims[0].path))
                # The output is this worker's now (checked and locked): only now may the
                # worker id stand for it. Registering first would make a refused file "the
                # worker's" to the next attempt, which would cut it back (kill -9 at any
                # step leaves either no registration or a file this worker claimed).
                self._register()
            shared_offset = None if given is None else given.output_offset
            if shared_offset is not None:
                resume_at[0], fresh = shared_offset, shared_offset == 0
                if shared_known and claims[0] is not None:
                    self._announce_shared_resume(claims[0].path, claims[0].size(), shared_offset)
            if self.state_path is not None:
                self.store = StateStore.open(
                    self.state_path,
                    identity,
                    fresh=opts.fresh,
                    replace_foreign=opts.fresh and opts.overwrite,
                    announce=self.announce,
                )
            if self.store is not None:
                fresh = self.store.created
                if not fresh:
                    resume_at = list(self.store.output_offsets())
                    if opts.recrawl:
                        # Before the state moves on to the next run: an output that
                        # cannot take it is refused with both files as they were.
                        for claim, fmt in zip(claims, self.formats, strict=True):
                            check_recrawl(claim, fmt)
                        self._start_recrawl(self.store)
                    generation = self.generation = self.store.generation
                    if generation > 1:
                        # --max-pages counts this run of the recrawl: the URLs it has
                        # committed (not those left done as not due, nor claimed ones).
                        self.earlier_pages = self.store.generation_pages()
                    else:
                        # --max-pages is the crawl's: earlier runs' pages count against
                        # it, but only those with a final outcome. A URL held back by an
                        # unreachable robots.txt stays queued and is taken again this
                        # run: its record would otherwise use up budget, and count twice.
                        totals = self.store.totals()["totals"]
                        self.earlier_pages = int(totals["pages"]) - self.store.held_count()
                    if not opts.recrawl:
                        self._announce_resume(self.store)
                if self._given_frontier is None:
                    self.frontier = SqliteFrontier(
                        self.store,
                        per_host=opts.per_host,
                        delay=opts.initial_delay,
                        paces=opts.paces(),
                        robots=opts.robots,
                        memory_limit=opts.memory_limit,
                    )
            for claim, fmt, at in zip(claims, self.formats, resume_at, strict=True):
                outputs.append(
                    open_output(
                        claim,
                        fmt,
                        fields,
                        user_agent=opts.user_agent,
                        request_headers=self._request_headers,
                        resume_at=at,
                        fresh=fresh,
                        header_from_first_record=header_from_first_record,
                    )
                )
            if self.store is not None:
                self.store.start_run()
        except BaseException:
            # Leave nothing behind: no state, lock or output file this call created.
            for output in outputs:
                with contextlib.suppress(Exception):  # the first failure is what is raised
                    output.close()
            if self.store is not None:
                self.store.discard()
                self.store = None
            for claim in claims:
                if claim is not None:
                    claim.abandon()
            raise
        if given is not None and shared_offset is not None:
            # A Redis crawl's run is joined first: a recrawl run it begins has work.
            joined = not isinstance(given, RedisFrontier) or self._join_shared_run(given)
            if joined:
                self._check_shared_complete(given)
        elif self.store is not None:
            self.prior = self.store.prior
        # A short queue: what waits in it at a crash is fetched again on resume, so the
        # backlog is kept to two commits per worker (workers wait if the output lags).
        return Writer(
            sink=CrawlSink(outputs, self.frontier, durable=self.resumable),
            name="shoal-output",
            maxsize=2 * opts.concurrency,
            linger=_OUTPUT_LINGER,
        )

    def _join_shared_run(self, frontier: RedisFrontier) -> bool:
        """A shared crawl's run: join it (taking steps of a recrawl's fill in progress,
        which any worker finishes), or with ``--recrawl`` begin the next recrawl run once
        the crawl has no work left. Every worker of a run agrees on its number, which the
        shared state holds. False: nothing to do (said why)."""
        opts = self.options
        after = opts.revisit_after
        run = frontier.recrawl(
            start=opts.recrawl, fetched_before=None if after is None else time.time() - after
        )
        self.generation = run.run
        if run.run > 1:
            self.prior = frontier.prior
        name = f"crawl {frontier.crawl_id}"
        if run.what == "started":
            what = "the" if after is None else f"the due (last fetched over {_span(after)} ago)"
            self.announce(
                f"recrawl: run {run.run} of {name} revisits {what} {run.queued} URLs it knows"
            )
        elif run.what == "unfinished":
            self.announce(
                f"{name} has work left in run {run.run} ({run.queued} URLs queued or "
                "leased): joining it (a new recrawl run begins once it is over)"
            )
        elif run.what == "nothing":
            assert after is not None
            self.result.already_complete = True
            due = None if run.oldest is None else run.oldest + after
            self.announce(
                f"nothing to revisit in {name}: every URL was fetched less than {_span(after)} "
                f"ago (--revisit-after);{_next_due(due)}"
            )
            return False
        return True

    def _announce_shared_resume(self, path: str, size: int, offset: int) -> None:
        """A restarted worker of a shared crawl keeps its file up to the offset Redis holds
        (a tail past it was never committed: those pages go to a worker again)."""
        if size > offset:
            self.announce(
                f"resuming {path}: cutting back to the committed {offset:,} bytes "
                f"({size - offset:,} bytes not committed; their pages are fetched again)"
            )
        elif size == offset:  # (a shorter file is refused when the output opens)
            self.announce(f"resuming {path} at its committed {offset:,} bytes")

    def _check_shared_complete(self, frontier: Frontier) -> None:
        """A shared crawl with work done and nothing queued or leased anywhere is over:
        seeding it again adds nothing (every start URL is seen), so this run has nothing
        to do. Said here, before the run, rather than as a summary of 0 pages."""
        counts = frontier.stats()
        if counts.pending or not (counts.done or counts.failed):
            return  # running, or created and not seeded yet
        self.result.already_complete = True
        crawl = getattr(frontier, "crawl_id", None)
        name = f"crawl {crawl}" if crawl is not None else "the shared crawl"
        self.announce(
            f"{name} is already complete: {counts.done:,} URLs done, {counts.failed:,} failed, "
            "nothing queued or leased; nothing to do (--recrawl crawls it again, fetching "
            "only what changed; to start over, start a new crawl with another --crawl-id)"
        )

    def _start_recrawl(self, store: StateStore) -> None:
        """``--recrawl``: finish the recrawl run a kill or Ctrl-C left unfinished (URLs of
        it still queued), else start the next run with every URL the state knows queued.
        Run 1's queued URLs (an interrupted first crawl) are not a recrawl's: they are
        revisited as the next run's (new, as nothing was fetched for them)."""
        queued = store.queued_count()
        generation = store.generation
        if generation > 1 and queued:
            # This run's committed URLs: done ones not due (--revisit-after) are not its.
            revisited = store.generation_pages()
            limit = self.options.max_pages
            if revisited >= limit:
                # --max-pages counts a recrawl run's URLs over every invocation of it.
                self.result.stopped_by = "max_pages"
                self.announce(
                    f"page limit reached: run {generation} of the recrawl has revisited "
                    f"{revisited} URLs (--max-pages {limit} counts each run's); {queued} "
                    "URL(s) of it stay queued: a larger --max-pages finishes it"
                )
                return
            self.announce(
                f"resuming run {generation} of the recrawl: {revisited} URLs "
                f"revisited, {queued} to go (state: {self.state_path})"
            )
            return
        after = self.options.revisit_after
        started = store.begin_generation(None if after is None else time.time() - after)
        if started is None:
            assert after is not None
            opts = self.options
            if opts.use_sitemaps and opts.robots:
                # A page whose sitemap <lastmod> is newer than its last fetch is due all
                # the same: read the sitemaps in a run of their own.
                started = store.begin_generation(time.time() - after, even_if_none_due=True)
                assert started is not None
                self.lastmod_only = True
                self.announce(
                    f"no URL was fetched over {_span(after)} ago (--revisit-after): run "
                    f"{started} reads the sitemaps for pages changed since their last fetch"
                )
                return
            self._nothing_due(store, after)
            return
        what = "the" if after is None else f"the due (last fetched over {_span(after)} ago)"
        self.announce(
            f"recrawl: run {started} revisits {what} {store.queued_count()} URLs the state "
            f"knows (state: {self.state_path})"
        )

    def _nothing_due(self, store: StateStore, after: float) -> None:
        due = store.next_due(after)
        when = (
            ""
            if due is None
            else (
                " the next falls due at "
                + datetime.fromtimestamp(due, UTC).isoformat(timespec="seconds")
                + f" (in {_span(due - time.time())})"
            )
        )
        self.result.already_complete = True
        self.announce(
            f"nothing to revisit: every URL was fetched less than {_span(after)} ago "
            f"(--revisit-after);{when}"
        )

    def _announce_resume(self, store: StateStore) -> None:
        done, queued = store.done_count(), store.queued_count()
        if queued == 0 and done > 0:
            self.result.already_complete = True
            files = [p for p in self.options.output_paths() if p not in (None, "-")]
            what = f"{' and '.join(files)} and its state" if files else "its state"
            self.announce(
                f"already complete: {done} pages (use --fresh to crawl again; it deletes {what}; "
                "--recrawl crawls again, fetching only what changed)"
            )
        elif self.earlier_pages >= self.options.max_pages:
            # Nothing to fetch in this run: said as a limit, not as a crawl that failed.
            self.result.stopped_by = "max_pages"
            self.announce(
                f"page limit reached: earlier runs finished {self.earlier_pages} pages "
                f"(--max-pages {self.options.max_pages}); {queued} URL(s) stay queued: "
                "a larger --max-pages continues the crawl"
            )
        else:
            self.announce(f"resuming: {done} done, {queued} queued (state: {self.state_path})")

    def close(self, interrupted: bool, fatal: BaseException | None) -> None:
        """Record how this run ended and read the totals over all runs, then close the
        state file (the outputs are closed by the writer)."""
        store = self.store
        if store is None:
            return
        r = self.result
        if interrupted:
            outcome = "interrupted"
        elif fatal is not None:
            outcome = "failed"
        elif r.stopped_by is not None:
            outcome = f"stopped: {r.stopped_by}"
        else:
            outcome = "finished"
        try:
            # No sitemap named a changed page (or the run ended before one was revisited):
            # the run added nothing, so the next one takes its number.
            if self.lastmod_only and store.forget_generation() and not interrupted:
                after = self.options.revisit_after
                assert after is not None
                self._nothing_due(store, after)
            store.end_run(outcome)
            r.totals = store.totals()["totals"]
            # What `shoal status` will call queued (abandoned leases included).
            r.pending = store.queued_count()
        except StateError as exc:
            logger.warning("could not record the end of this run: %s", exc)
        finally:
            store.close()


def _next_due(due: float | None) -> str:
    if due is None:
        return ""
    return (
        " the next falls due at "
        + datetime.fromtimestamp(due, UTC).isoformat(timespec="seconds")
        + f" (in {_span(due - time.time())})"
    )


def _span(seconds: float) -> str:
    """``45s``, ``12m``, ``5h 3m``, ``2d 4h``: a duration for a person."""
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def progress_enabled(progress: bool | None, output: str | None) -> bool | None:
    """None (auto: stderr is a terminal), unless records go to a terminal on stdout:
    then the records are the display, and a bar would be drawn through them."""
    if progress is not None:
        return progress
    if output in (None, "-"):
        isatty = getattr(sys.stdout, "isatty", None)
        if isatty is not None and isatty():
            return False
    return None


def state_path_for(state: str | None, output: str | None) -> str | None:
    """``auto``: beside a file output, none for stdout, a device or a pipe (no offsets to
    resume at); None: keep state in memory only."""
    if state != "auto":
        return state
    if output is None or output == "-" or is_stream_path(output):
        return None
    return output + ".state.sqlite"
