"""The crawler: a Pool whose tasks fetch URLs that the frontier says are ready.

Flow of one page: a worker takes a job, fetches it (redirects vetted hop by hop),
hands records to the writer thread, adds the page's in-scope links to the frontier,
reports the job finished, and *dispatches*: moves whatever the frontier now has ready
into the pool. Dispatch happens at the end of every task, so the crawl drives itself
with no scheduler thread and no polling. When every ready URL waits on a clock (a
per-host delay, Crawl-delay, Retry-After), dispatch puts a delayed wake-up task in the
pool instead; because that task is counted like any other, ``pool.join()`` returns
exactly when nothing is in flight, nothing is ready and nothing is waiting.

Invariant: if the frontier holds URLs, then a job is in flight, or a wake-up is queued,
or the crawl has hit a limit. Every path through ``_dispatch`` keeps it.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .._errors import JoinTimeout, StateError, UsageError, WriterError
from ..http import ErrorKind, make_transport
from ..runtime import Pool, ProgressDisplay, ProgressState, TaskContext, Writer
from ..state import StateStore
from ._durable import DurableFrontier
from ._fetch import Fetched, Fetcher
from ._frontier import MAX_HOLD, CrawlJob, Frontier, JobKind, MemoryFrontier
from ._gate import robots_gate, sitemap_gate
from ._options import CrawlOptions
from ._page import Page
from ._records import PageCallback, Records
from ._robots import RobotsRules
from ._sitemaps import MAX_SITEMAP_NESTING, parse_sitemap
from ._stats import CrawlResult
from ._urls import Scope, host_key, parse_start_url
from .output import Commit, CrawlSink, claim_output, infer_format, is_stream_path, open_output

__all__ = ["Crawler", "PageCallback"]

logger = logging.getLogger(__name__)


_WAKE = CrawlJob("", kind=JobKind.WAKE)
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRYABLE_ERRORS = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION})
# Group commit: the output writer waits up to this long to gather a batch, so a slow
# crawl pays one write, flush and state transaction per ~10 ms rather than per page
# (measured: ~15 % less CPU per page at 50 ms latency). Pages in that window are, after
# a kill, fetched again like the rest of the writer's (bounded) queue.
_OUTPUT_LINGER = 0.01
# At --max-time, work in flight gets this long to finish; then it is abandoned (a parse in
# C or a callback cannot be interrupted) and its URLs are fetched again on resume.
_MAX_TIME_GRACE = 2.0


@dataclass(slots=True)
class _Outcome:
    failed: bool = False
    retry_at: float | None = None
    hold_until: float | None = None


class Crawler:
    """Crawl from ``start_urls``; ``run()`` returns a :class:`CrawlResult`.

    ``on_page(page)`` may return or yield dicts (written as records) and URL strings
    (followed, if in scope). Without it each fetched URL gives one record with the
    standard fields plus any ``extract`` fields. Links on every HTML page are followed
    within scope unless ``follow_links=False``.

    Every option is a keyword parameter whose default comes from :class:`CrawlOptions`;
    the command line has the same names with dashes (``max_pages`` is ``--max-pages``;
    the few exceptions are listed in docs/api.md). Units: seconds for times, bytes for
    sizes.

    Args:
        start_urls: One URL or several: http(s) only; their hosts are the crawl's scope
            unless ``allow_domains`` says otherwise.
        on_page: Called with each fetched :class:`Page`; returns or yields records
            (dicts) and URLs to follow. Runs on worker threads.
        follow_links: Follow the links found on HTML pages (``on_page``'s URLs are
            followed either way).
        frontier: A frontier to queue URLs in instead of the built-in one.
        concurrency: Requests in flight in total.
        per_host: Requests in flight per host (at most ``concurrency``).
        delay: Seconds between requests to one host (a larger robots.txt Crawl-delay wins).
        max_pages: URLs fetched per run.
        max_depth: Link depth from a start URL (0: the start URLs only).
        max_bytes: Bytes per response body, after decompression; larger bodies are cut.
        max_time: Seconds for the whole run; None: no limit.
        max_redirects: Redirects followed from one URL.
        max_sitemaps: Sitemaps queued per run (each fetch also counts as a page).
        max_links_per_page: Links taken from one page or one ``on_page`` result.
        allow_domains: Domains to stay within, subdomains included (default: the start
            URLs' hosts, a leading ``www.`` dropped).
        include: Regexes searched in the whole URL: only URLs matching one are crawled.
        exclude: Regexes searched in the whole URL: matching URLs are skipped.
        include_glob: Shell globs (``*``, ``?``, ``[...]``) matched against the URL's path:
            only URLs whose path matches one are crawled.
        exclude_glob: Shell globs matched against the URL's path: matching URLs are skipped.
        robots: Obey robots.txt (False: ignore it; be sure you may).
        user_agent: The User-Agent header (also the name robots.txt rules are read for).
        timeout: Seconds per request, whole (connecting at most 10 of them).
        retries: Retries of a URL after a connection error, timeout, 429 or 5xx.
        retry_backoff: Seconds before the first retry (jittered 0.5-1.5x); doubles with
            each retry. A Retry-After from the server wins.
        extract: Fields added to each record: name -> CSS selector (``::text``,
            ``::attr(x)``) or ``xpath:EXPR``; a name ending in ``[]`` keeps every match.
        sitemaps: Also start from the sitemaps robots.txt names.
        auto_throttle: Adapt each host's delay to its latency.
        throttle_target: Requests in flight per host that auto-throttle aims at.
        throttle_start: Auto-throttle's first delay per host, in seconds.
        verify_tls: Verify TLS certificates.
        transport: HTTP client: ``"native"`` (shoal's own) or ``"urllib3"``.
        proxy: ``"env"``: http_proxy/https_proxy/no_proxy from the environment; None or
            ``"none"``: no proxy; otherwise the URL of one HTTP proxy for every request.
        deny_private: Connect only to public IP addresses (refusals are the error kind
            ``blocked``): for crawling URLs someone else chose.
        output: Output file (.jsonl, .csv, .sqlite, .warc.gz); None or ``"-"``: stdout.
        format: ``jsonl``, ``csv``, ``sqlite`` or ``warc``; None: from the file suffix.
        progress: Show the live progress line; None: when stderr is a terminal.
        grace: Seconds in-flight requests get to finish after the first Ctrl-C.
        state: Path of the state file that makes the crawl resumable; ``"auto"``:
            OUTPUT.state.sqlite (none for stdout); None: keep state in memory.
        fresh: Discard this crawl's existing state and output and start over.
        overwrite: Replace an existing output file that is not this crawl's.
        memory_limit: Queued URLs kept in memory; the rest wait in the state file.
        save_bodies: Add the response body and its SHA-256 to each record.

    Raises:
        UsageError: an option value is out of range (the message names the option);
            InvalidURL for a start URL that cannot be crawled.
    """

    def __init__(
        self,
        start_urls: str | Sequence[str],
        *,
        on_page: PageCallback | None = None,
        follow_links: bool = True,
        frontier: Frontier | None = None,
        concurrency: int = CrawlOptions.concurrency,
        per_host: int = CrawlOptions.per_host,
        delay: float = CrawlOptions.delay,
        max_pages: int = CrawlOptions.max_pages,
        max_depth: int = CrawlOptions.max_depth,
        max_bytes: int = CrawlOptions.max_bytes,
        max_time: float | None = CrawlOptions.max_time,
        max_redirects: int = CrawlOptions.max_redirects,
        max_sitemaps: int = CrawlOptions.max_sitemaps,
        max_links_per_page: int = CrawlOptions.max_links_per_page,
        allow_domains: Sequence[str] = CrawlOptions.allow_domains,
        include: Sequence[str] = CrawlOptions.include,
        exclude: Sequence[str] = CrawlOptions.exclude,
        include_glob: Sequence[str] = CrawlOptions.include_glob,
        exclude_glob: Sequence[str] = CrawlOptions.exclude_glob,
        robots: bool = CrawlOptions.robots,
        user_agent: str = CrawlOptions.user_agent,
        timeout: float = CrawlOptions.timeout,
        retries: int = CrawlOptions.retries,
        retry_backoff: float = CrawlOptions.retry_backoff,
        extract: Mapping[str, str] | None = None,
        sitemaps: bool = CrawlOptions.sitemaps,
        auto_throttle: bool = CrawlOptions.auto_throttle,
        throttle_target: float = CrawlOptions.throttle_target,
        throttle_start: float = CrawlOptions.throttle_start,
        verify_tls: bool = CrawlOptions.verify_tls,
        transport: str = CrawlOptions.transport,
        proxy: str | None = CrawlOptions.proxy,
        deny_private: bool = CrawlOptions.deny_private,
        output: str | None = CrawlOptions.output,
        format: str | None = CrawlOptions.format,
        progress: bool | None = CrawlOptions.progress,
        grace: float = CrawlOptions.grace,
        state: str | None = CrawlOptions.state,
        fresh: bool = CrawlOptions.fresh,
        overwrite: bool = CrawlOptions.overwrite,
        memory_limit: int = CrawlOptions.memory_limit,
        save_bodies: bool = CrawlOptions.save_bodies,
    ) -> None:
        if isinstance(start_urls, str):
            start_urls = [start_urls]
        if not start_urls:
            raise UsageError("give at least one start URL")
        self.options = CrawlOptions(
            concurrency=concurrency,
            per_host=per_host,
            delay=delay,
            max_pages=max_pages,
            max_depth=max_depth,
            max_bytes=max_bytes,
            max_time=max_time,
            max_redirects=max_redirects,
            max_sitemaps=max_sitemaps,
            max_links_per_page=max_links_per_page,
            allow_domains=allow_domains,
            include=include,
            exclude=exclude,
            include_glob=include_glob,
            exclude_glob=exclude_glob,
            robots=robots,
            user_agent=user_agent,
            timeout=timeout,
            retries=retries,
            retry_backoff=retry_backoff,
            extract={} if extract is None else extract,
            sitemaps=sitemaps,
            auto_throttle=auto_throttle,
            throttle_target=throttle_target,
            throttle_start=throttle_start,
            verify_tls=verify_tls,
            transport=transport,
            proxy=proxy,
            deny_private=deny_private,
            output=output,
            format=format,
            progress=progress,
            grace=grace,
            state=state,
            fresh=fresh,
            overwrite=overwrite,
            memory_limit=memory_limit,
            save_bodies=save_bodies,
        )
        opts = self.options
        self.start_urls = [parse_start_url(u) for u in start_urls]
        self.scope = Scope.for_start_urls(
            self.start_urls,
            allow_domains=opts.allow_domains,
            include=opts.include,
            exclude=opts.exclude,
            max_depth=opts.max_depth,
            include_glob=opts.include_glob,
            exclude_glob=opts.exclude_glob,
        )
        self._records = Records(
            on_page, follow_links=follow_links, extract=opts.extract, save_bodies=opts.save_bodies
        )
        self.format = infer_format(opts.output, opts.format)
        self._given_frontier = frontier
        self.frontier: Frontier = frontier or MemoryFrontier(
            per_host=opts.per_host, delay=opts.initial_delay, robots=opts.robots
        )
        self.state_path = _state_path(opts.state, opts.output)
        self._store: StateStore | None = None
        self.result = CrawlResult()
        self._lock = threading.Lock()
        self._robots: dict[str, RobotsRules] = {}
        self._delays: dict[str, float] = {}  # auto-throttle's current delay per host
        self._in_flight = 0
        self._hosts_busy: dict[str, int] = {}  # host -> requests in flight (live view)
        self._taken = 0
        self._sitemaps_queued = 0
        self._sitemap_pages = 0
        self._wake_at: float | None = None
        self._deadline: float | None = None
        self._stopping = False
        self._abandoned = False  # --max-time left tasks running: their writes are moot
        self._fatal: BaseException | None = None
        self._pool: Pool[CrawlJob] | None = None
        self._writer: Writer | None = None
        self._fetcher: Fetcher | None = None
        # Where "resuming...", "already complete" and what --fresh discards are told;
        # the command line prints them, the library logs them.
        self.announce: Callable[[str], None] = lambda message: logger.info("%s", message)

    @property
    def record_fields(self) -> list[str]:
        """The fields of each record: the standard ones plus ``extract`` names."""
        return self._records.fields

    def identity(self) -> dict[str, object]:
        """What makes a state file belong to this crawl (checked when resuming)."""
        output = self.options.output
        identity: dict[str, object] = {
            "start_urls": sorted(self.start_urls),
            "scope": self.options.scope_key(),
            "output": os.path.abspath(output) if output and output != "-" else None,
            "format": self.format,
        }
        if self.options.extract:
            # Records of another extract set would not fit the output (CSV columns).
            identity["extract"] = dict(self.options.extract)
        return identity

    def _open_outputs(self) -> Writer:
        opts = self.options
        resume_at = None
        fresh = True
        claim = claim_output(
            opts.output,
            self.state_path,
            fresh=opts.fresh,
            overwrite=opts.overwrite,
            announce=self.announce,
        )
        try:
            if self.state_path is not None:
                self._store = StateStore.open(
                    self.state_path,
                    self.identity(),
                    fresh=opts.fresh,
                    replace_foreign=opts.fresh and opts.overwrite,
                )
            if self._store is not None:
                fresh = self._store.created
                if not fresh:
                    resume_at = self._store.output_offset
                    self._announce_resume(self._store)
                if self._given_frontier is None:
                    self.frontier = DurableFrontier(
                        self._store,
                        per_host=opts.per_host,
                        delay=opts.initial_delay,
                        robots=opts.robots,
                        memory_limit=opts.memory_limit,
                    )
            output = open_output(
                claim,
                self.format,
                self.record_fields,
                user_agent=opts.user_agent,
                resume_at=resume_at,
                fresh=fresh,
                header_from_first_record=self._records.on_page is not None,
            )
            if self._store is not None:
                self._store.start_run()
        except BaseException:
            # Leave nothing behind: no state, lock or output file this call created.
            if self._store is not None:
                self._store.discard()
                self._store = None
            if claim is not None:
                claim.abandon()
            raise
        # A short queue: what waits in it at a crash is fetched again on resume, so the
        # backlog is kept to two commits per worker (workers wait if the output lags).
        return Writer(
            sink=CrawlSink(output, self._store),
            name="shoal-output",
            maxsize=2 * opts.concurrency,
            linger=_OUTPUT_LINGER,
        )

    def _announce_resume(self, store: StateStore) -> None:
        done, queued = store.done_count(), store.queued_count()
        if queued == 0 and done > 0:
            self.result.already_complete = True
            output = self.options.output
            what = f"{output} and its state" if output not in (None, "-") else "its state"
            self.announce(
                f"already complete: {done} pages (use --fresh to crawl again; it deletes {what})"
            )
        else:
            self.announce(f"resuming: {done} done, {queued} queued (state: {self.state_path})")

    # -- running -------------------------------------------------------------------------

    def run(self) -> CrawlResult:
        """Crawl until nothing is left or a limit is reached.

        KeyboardInterrupt (Ctrl-C) stops intake, lets in-flight requests finish within
        ``grace`` seconds, writes what they produced, and propagates; ``self.result``
        then says what was done and ``interrupted`` is True.
        """
        opts = self.options
        self._writer = self._open_outputs()
        self._fetcher = Fetcher(
            make_transport(
                opts.transport,
                per_host=opts.per_host,
                connect_timeout=min(opts.timeout, 10.0),
                read_timeout=opts.timeout,
                verify_tls=opts.verify_tls,
                proxies=opts.proxy_rules(),
                deny_private=opts.deny_private,
            ),
            user_agent=opts.user_agent,
            timeout=opts.timeout,
            max_bytes=opts.max_bytes,
            max_redirects=opts.max_redirects,
        )
        started = time.monotonic()
        if opts.max_time is not None:
            self._deadline = started + opts.max_time
        self._pool = Pool(
            self._handle,
            workers=opts.concurrency,
            errors="log",
            name="crawl",
            output=self._writer,
            grace=opts.grace,
        )
        progress = ProgressDisplay(
            self._progress_state,
            description="crawl",
            unit="pages",
            enabled=_progress_enabled(opts.progress, opts.output),
        )
        interrupted = False
        try:
            progress.start()
            with self._lock:
                added = self.frontier.add(CrawlJob(url) for url in self.start_urls)
                self.result.discovered += len(added)
            self._writer.write(Commit(added=added))
            self._dispatch()
            self._join()
        except KeyboardInterrupt:
            interrupted = True
            with self._lock:
                self._stopping = True
                self.result.interrupted = True
                self.result.stopped_by = "interrupt"
            self._pool.shutdown()
            raise
        finally:
            progress.stop()
            self._finish(started, interrupted)
        if self._fatal is not None:
            raise self._fatal
        return self.result

    def _join(self) -> None:
        """``pool.join()``; with --max-time, noticed here too, not only when a task ends
        (every worker may be busy in one long parse, callback or download)."""
        assert self._pool is not None
        if self._deadline is None:
            self._pool.join()
            return
        try:
            self._pool.join(timeout=self._deadline + _MAX_TIME_GRACE - time.monotonic())
        except JoinTimeout:
            notices: list[str] = []
            with self._lock:
                self._stopping = self._abandoned = True
                self._stop("max_time", notices)
            for notice in notices:
                logger.warning("%s", notice)
            self._pool.shutdown(grace=0)

    def _finish(self, started: float, interrupted: bool) -> None:
        assert self._pool is not None and self._writer is not None and self._fetcher is not None
        if not interrupted and not self._abandoned:
            self._pool.close()
        self.result.elapsed = time.monotonic() - started
        with self._lock:
            self.result.pending = self.frontier.pending()
        try:
            self._writer.close()
        except WriterError as exc:
            if self._fatal is None:
                self._fatal = exc
        finally:
            self._fetcher.close()
            self.frontier.close()
            if self._store is not None:
                self._close_run(self._store, interrupted)

    def _close_run(self, store: StateStore, interrupted: bool) -> None:
        """Record how this run ended and read the totals over all runs, then close."""
        r = self.result
        if interrupted:
            outcome = "interrupted"
        elif self._fatal is not None:
            outcome = "failed"
        elif r.stopped_by is not None:
            outcome = f"stopped: {r.stopped_by}"
        else:
            outcome = "finished"
        try:
            store.end_run(outcome)
            r.totals = store.totals()["totals"]
        except StateError as exc:
            logger.warning("could not record the end of this run: %s", exc)
        finally:
            store.close()

    def _progress_state(self) -> ProgressState:
        with self._lock:
            r = self.result
            done = r.pages
            pending = self.frontier.pending()
            in_flight = self._in_flight
            hosts = len(self._hosts_busy)
            errors = tuple(r.errors.most_common())
            failed = r.failed
        total = done + pending + in_flight
        # This run fetches at most max_pages: past that, the queue is not work left.
        bounded = total >= self.options.max_pages
        deadline = self._deadline
        return ProgressState(
            done=done,
            total=min(total, self.options.max_pages),
            failed=failed,
            note=f"queued {pending}, hosts {hosts}",
            bounded=bounded,
            errors=errors,
            time_left=None if deadline is None else deadline - time.monotonic(),
        )

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        assert self._pool is not None
        now = time.monotonic()
        jobs: list[CrawlJob] = []
        wake_in: float | None = None
        notices: list[str] = []
        with self._lock:
            if self._stopping:
                return
            free = self.options.concurrency - self._in_flight
            if self._deadline is not None and now >= self._deadline:
                self._stop("max_time", notices)
                free = 0
            budget = max(0, self.options.max_pages - self._taken)
            if budget == 0 and self.frontier.pending():
                self._stop("max_pages", notices)  # retries of counted pages still run
            if free > 0:
                jobs, next_at = self.frontier.take(now, free, fresh_limit=budget)
                for job in jobs:
                    if job.kind is not JobKind.ROBOTS and job.attempt == 1:
                        self._taken += 1
                    self._hosts_busy[job.host] = self._hosts_busy.get(job.host, 0) + 1
                self._in_flight += len(jobs)
                if next_at is not None and (self._wake_at is None or next_at < self._wake_at):
                    if self._deadline is not None:
                        next_at = min(next_at, self._deadline)
                    self._wake_at = next_at
                    wake_in = max(next_at - now, 0.0005)
            notices += self.frontier.drain_notices()
        for notice in notices:  # logging handlers are user code: never under the lock
            logger.warning("%s", notice)
        for job in jobs:
            self._pool.put(job)
        if wake_in is not None:
            self._pool.put(_WAKE, delay=wake_in)

    def _stop(self, reason: str, notices: list[str]) -> None:
        if self.result.stopped_by is None:
            self.result.stopped_by = reason
            if reason == "max_pages":
                limit = f"the page limit ({self.options.max_pages} pages, --max-pages)"
            else:
                limit = f"the time limit ({self.options.max_time:g} s, --max-time)"
            notices.append(f"stopping: {limit} reached")

    # -- one task ------------------------------------------------------------------------

    def _handle(self, job: CrawlJob, ctx: TaskContext[CrawlJob]) -> None:
        if job is _WAKE:
            with self._lock:
                if self._wake_at is not None and self._wake_at <= time.monotonic() + 0.001:
                    self._wake_at = None
            self._dispatch()
            return
        outcome = _Outcome(failed=True)
        try:
            if job.kind is JobKind.ROBOTS:
                outcome = self._do_robots(job)
            elif job.kind is JobKind.SITEMAP:
                outcome = self._do_sitemap(job)
            else:
                outcome = self._do_page(job)
        except WriterError as exc:
            if not self._abandoned:  # else: the crawl ended without this task, by design
                self._fail_crawl(exc)
        except Exception as exc:
            # A bug or an input nothing anticipated: record the URL as failed, so that it
            # is neither lost nor fetched again by every resume, and carry on.
            logger.exception("crawling %s failed", job.url)
            if job.kind is JobKind.PAGE and self._writer is not None:
                record = self._records.error_record(job, "internal", repr(exc))
                with self._lock:
                    self.result.pages += 1
                    self.result.errors["internal"] += 1
                    self.result.first_error.setdefault("internal", f"{job.url}: {exc!r}")
                self._writer.write(
                    Commit([record], finished=job, failed=True, outcome="failed", error="internal")
                )
        finally:
            now = time.monotonic()
            with self._lock:
                self._in_flight -= 1
                busy = self._hosts_busy.get(job.host, 0) - 1
                if busy > 0:
                    self._hosts_busy[job.host] = busy
                else:
                    self._hosts_busy.pop(job.host, None)
                if outcome.hold_until is not None:
                    self.frontier.hold_host(job.host, outcome.hold_until)
                self.frontier.finish(job, now, failed=outcome.failed, retry_at=outcome.retry_at)
            self._dispatch()

    def _fail_crawl(self, exc: BaseException) -> None:
        with self._lock:
            self._stopping = True
            first = self._fatal is None
            if first:
                self._fatal = exc
        if first:  # every worker sees the failed writer: say it once
            logger.debug("stopping the crawl: %s", exc)
        assert self._pool is not None
        self._pool.cancel()

    def _do_robots(self, job: CrawlJob) -> _Outcome:
        assert self._fetcher is not None
        fetched: Fetched | None = None
        try:
            fetched = self._fetcher.fetch(job.url, robots_gate())
            rules = RobotsRules.from_fetch(fetched)
        except Exception as exc:
            logger.exception("robots.txt check failed for %s", job.url)
            rules = RobotsRules(
                deny_all=True,
                reason=f"robots.txt check failed: {exc!r}",
                error="internal",
                detail=repr(exc),
            )
        if rules.reason:
            logger.info("%s: %s", job.url, rules.reason)
        if rules.error is not None:
            with self._lock:
                self.result.notes.append(
                    f"{job.url} could not be fetched ({rules.error}: {rules.detail}); "
                    "that host's URLs stay queued: run the same command again to retry them"
                )
        if self.format == "warc" and fetched is not None and fetched.status is not None:
            assert self._writer is not None
            self._writer.write(Commit(exchange=fetched))  # wget archives robots.txt too
        host = job.host
        sitemap_jobs: list[CrawlJob] = []
        if self.options.sitemaps:
            urls = _canonical(rules.sitemaps) or [host + "/sitemap.xml"]
            sitemap_jobs = [CrawlJob(u, kind=JobKind.SITEMAP) for u in urls if self.scope.allows(u)]
        with self._lock:
            self._robots[host] = rules
            self.frontier.robots_known(host, rules.crawl_delay(self.options.user_agent))
            skipped = self._queue_sitemaps(sitemap_jobs)  # found again on resume: not saved
        self._log_sitemap_cap(skipped)
        return _Outcome()

    def _queue_sitemaps(self, jobs: list[CrawlJob]) -> int:
        """Queue the sitemap jobs that fit the per-run cap (under the lock); how many did
        not fit."""
        room = max(0, self.options.max_sitemaps - self._sitemaps_queued)
        self._sitemaps_queued += len(self.frontier.add(jobs[:room]))
        return max(0, len(jobs) - room)

    def _queue_sitemap_pages(self, jobs: list[CrawlJob]) -> list[CrawlJob]:
        """Queue sitemap pages, at most ``max_pages`` new ones per run (under the lock):
        no more can be fetched in this run, and 1,000 sitemaps of 50,000 URLs each would
        fill memory and disk. A resume reads the sitemaps again and takes the next ones."""
        added: list[CrawlJob] = []
        room = self.options.max_pages - self._sitemap_pages
        start = 0
        while room > 0 and start < len(jobs):
            chunk = jobs[start : start + room]
            start += len(chunk)
            got = self.frontier.add(chunk)
            room -= len(got)
            added += got
        self._sitemap_pages += len(added)
        return added

    def _log_sitemap_cap(self, skipped: int) -> None:
        if skipped:  # logged outside the lock: logging handlers are user code
            logger.info("sitemap cap (%d) reached: %d skipped", self.options.max_sitemaps, skipped)

    def _do_sitemap(self, job: CrawlJob) -> _Outcome:
        assert self._fetcher is not None and self._writer is not None
        fetched = self._fetcher.fetch(job.url, sitemap_gate(self.scope, self._count_off_scope))
        if fetched.error is not None or fetched.status != 200:
            logger.info(
                "sitemap %s: %s", job.url, fetched.error or fetched.detail or fetched.status
            )
            return _Outcome(failed=True)
        pages, sitemaps = parse_sitemap(fetched.body, self.options.max_bytes)
        jobs = [CrawlJob(u, 0, job.url) for u in _canonical(pages) if self.scope.allows(u)]
        # A sitemap job's depth is its nesting below robots.txt (sitemaps have no link depth).
        nested = job.depth + 1
        children = [
            CrawlJob(u, nested, job.url, kind=JobKind.SITEMAP)
            for u in _canonical(sitemaps)
            if self.scope.allows(u)
        ]
        if children and nested > MAX_SITEMAP_NESTING:
            logger.info(
                "sitemap %s: nested deeper than %d, not followed", job.url, MAX_SITEMAP_NESTING
            )
            children = []
        with self._lock:
            added = self._queue_sitemap_pages(jobs)
            skipped = self._queue_sitemaps(children)
            self.result.discovered += len(added)
        self._log_sitemap_cap(skipped)
        self._writer.write(Commit(added=added))
        return _Outcome()

    def _do_page(self, job: CrawlJob) -> _Outcome:
        assert self._fetcher is not None and self._writer is not None
        opts = self.options
        rules = self._robots.get(job.host) if opts.robots else None
        if rules is not None and rules.error is not None:
            return self._held_back(job, rules)
        if rules is not None and not rules.allowed(job.url, opts.user_agent):
            with self._lock:
                self.result.robots_denied += 1
            logger.info("skipped: robots.txt disallows %s", job.url)
            self._writer.write(Commit(finished=job))
            return _Outcome()
        elsewhere: list[CrawlJob] = []  # redirect targets queued on their own host
        claimed: list[CrawlJob] = []  # redirect targets fetched in place
        fetched = self._fetcher.fetch(
            job.url, follow=lambda target: self._vet_redirect(job, target, elsewhere, claimed)
        )
        status = fetched.status
        retryable = fetched.error in _RETRYABLE_ERRORS or (
            fetched.error is None and status in _RETRYABLE_STATUS
        )
        asked = fetched.retry_after if fetched.error is None else None
        # A pause longer than a crawl waits: record it rather than hold and then drop it.
        too_long = asked is not None and asked > MAX_HOLD and status in _RETRYABLE_STATUS
        now = time.monotonic()
        if retryable and not too_long and job.attempt <= opts.retries and not self._stopping:
            wait = asked
            if wait is None:
                wait = opts.retry_backoff * 2 ** (job.attempt - 1) * random.uniform(0.5, 1.5)
            with self._lock:
                self.result.retries += 1
            hold = now + wait if asked is not None else None
            if asked is not None:
                self._writer.write(Commit(hold=(job.host, time.time() + asked)))
            # The retry may follow the same redirects: let it past its own claims.
            job.claims = (*job.claims, *(c.url for c in claimed))
            return _Outcome(retry_at=now + wait, hold_until=hold)
        hold = None
        if too_long:
            hold = math.inf
            logger.warning(
                "%s asked for a pause of %.0f s (Retry-After); its URLs wait for a later run",
                job.host,
                asked,
            )
        elif status in (429, 503) and asked is not None:
            hold = now + asked  # the host asked for a pause

        page: Page | None = None
        error: str | None = fetched.error
        if too_long:
            error, fetched.detail = "retry_after", _retry_after_detail(fetched, asked)
        elif error is None and status is not None:
            if not 200 <= status < 400:
                error = f"http_{status}"
            elif 200 <= status < 300:
                page = Page(
                    url=job.url,
                    final_url=fetched.final_url,
                    status=status,
                    headers=fetched.headers,
                    body=fetched.body,
                    depth=job.depth,
                    referrer=job.referrer,
                    elapsed=fetched.elapsed,
                    max_links=opts.max_links_per_page,
                )
        try:
            if page is not None and page.parse_cut is not None:
                error, fetched.detail = "parse_limit", page.parse_cut  # still has a record
            records, follow, callback_failed = self._records.build(job, fetched, page, error)
        except Exception as exc:
            logger.exception("processing %s failed", job.url)
            error, fetched.detail = "processing", repr(exc)
            records, follow, callback_failed = self._records.build(job, fetched, None, error)
        del follow[opts.max_links_per_page :]  # the callback's own URLs count too
        depth = job.depth + 1
        in_scope = self.scope.allows_at(depth)
        # Each page counts once: ok + redirects + failed = pages.
        if error is not None or callback_failed:
            counted, kind = "failed", error or "callback"
        elif status is not None and 300 <= status < 400:
            counted, kind = "redirect", None  # a redirect not followed (off-host, seen, ...)
        else:
            counted, kind = "ok", None
        with self._lock:
            r = self.result
            r.pages += 1
            r.bytes += len(fetched.body)
            r.latency.add(fetched.elapsed)
            if kind is not None:
                r.errors[kind] += 1
                r.first_error.setdefault(
                    kind, f"{job.url}: {fetched.detail}" if fetched.detail else job.url
                )
            elif counted == "redirect":
                r.redirects += 1
            else:
                r.ok += 1
            added = self.frontier.add_links(follow, depth, job.url, in_scope) if follow else []
            r.discovered += len(added)
            if opts.auto_throttle and status is not None:
                self._throttle(job.host, fetched, status)
        if logger.isEnabledFor(logging.INFO):  # -v: one line per URL, never under the lock
            logger.info("%s", _page_line(job.url, status, error, len(fetched.body), fetched))
        self._writer.write(
            Commit(
                records,
                finished=job,
                failed=error is not None,
                status=status,
                added=elsewhere + added,
                claimed=claimed,
                exchange=fetched if self.format == "warc" else None,
                outcome=counted,
                error=kind,
                nbytes=len(fetched.body),
                hold=(job.host, time.time() + asked) if asked is not None and hold else None,
            )
        )
        return _Outcome(failed=error is not None, hold_until=hold)

    def _held_back(self, job: CrawlJob, rules: RobotsRules) -> _Outcome:
        """A URL whose host's robots.txt could not be fetched: a record saying why, but
        the URL is not marked finished in the state, so running again retries it."""
        assert self._writer is not None and rules.error is not None
        detail = rules.detail
        if not detail.startswith("robots.txt"):
            detail = f"robots.txt unreachable: {detail}"
        record = self._records.error_record(job, rules.error, detail)
        with self._lock:
            r = self.result
            r.pages += 1
            r.errors[rules.error] += 1  # the cause is told once, in the summary's notes
        self._writer.write(Commit([record], outcome="failed", error=rules.error))
        return _Outcome(failed=True)

    def _vet_redirect(
        self, job: CrawlJob, target: str, elsewhere: list[CrawlJob], claimed: list[CrawlJob]
    ) -> str | None:
        """None to follow a redirect hop in place, or why not."""
        if not self.scope.allows(target, job.depth):
            self._count_off_scope(target)
            return "redirect out of scope"
        if host_key(target) != job.host:
            # Another host has its own robots.txt and politeness: queue it there.
            with self._lock:
                added = self.frontier.add([CrawlJob(target, job.depth, job.url)])
                self.result.discovered += len(added)
            elsewhere.extend(added)
            return "redirect to another host, queued"
        rules = self._robots.get(job.host)
        if rules is not None and not rules.allowed(target, self.options.user_agent):
            return "redirect target disallowed by robots.txt"
        target_job = CrawlJob(target, job.depth, job.url)
        if target in job.claims:
            claimed.append(target_job)  # claimed by this job's earlier, retried attempt
            return None
        with self._lock:
            if not self.frontier.claim(target_job):
                return "redirect to an already-seen URL"
        claimed.append(target_job)
        return None

    def _count_off_scope(self, target: str) -> None:
        with self._lock:
            self.result.out_of_scope_redirects += 1

    def _throttle(self, host: str, fetched: Fetched, status: int) -> None:
        """Scrapy-style auto-throttle: aim for ``throttle_target`` requests in flight."""
        opts = self.options
        current = self._delays.get(host, opts.initial_delay)
        target = fetched.elapsed / opts.throttle_target
        new = (current + target) / 2
        if status != 200 and new < current:
            new = current  # errors must never speed a crawl up
        new = min(max(new, opts.delay), 60.0)
        self._delays[host] = new
        self.frontier.set_delay(host, new)


def _page_line(url: str, status: int | None, error: str | None, size: int, f: Fetched) -> str:
    """``200   12.3 KB    45 ms  URL`` (plus where it redirected, or why it failed)."""
    code = str(status) if status is not None else "---"
    if size >= 1024 * 1024:
        shown = f"{size / 1024 / 1024:.1f} MB"
    elif size >= 1024:
        shown = f"{size / 1024:.1f} KB"
    else:
        shown = f"{size} B"
    line = f"{code} {shown:>9} {f.elapsed * 1000:>6.0f} ms  {url}"
    if f.final_url != url:
        line += f" -> {f.final_url}"
    if error is not None and not error.startswith("http_"):
        line += f"  ({error}: {f.detail})" if f.detail else f"  ({error})"
    return line


def _progress_enabled(progress: bool | None, output: str | None) -> bool | None:
    """None (auto: stderr is a terminal), unless records go to a terminal on stdout:
    then the records are the display, and a bar would be drawn through them."""
    if progress is not None:
        return progress
    if output in (None, "-"):
        isatty = getattr(sys.stdout, "isatty", None)
        if isatty is not None and isatty():
            return False
    return None


def _retry_after_detail(fetched: Fetched, asked: float | None) -> str:
    header = fetched.headers.get("retry-after", "")
    shown = header if len(header) <= 64 else header[:64] + "..."
    return (
        f"HTTP {fetched.status}, Retry-After: {shown} ({asked:.0f} s); a crawl waits at "
        f"most {MAX_HOLD:.0f} s, so the host is not asked again before then"
    )


def _canonical(urls: list[str]) -> list[str]:
    """Canonical forms of absolute http(s) URLs from a sitemap; anything else is dropped."""
    out = []
    for url in urls:
        try:
            out.append(parse_start_url(url))
        except UsageError:
            logger.debug("sitemap entry skipped: %r", url)
    return out


def _state_path(state: str | None, output: str | None) -> str | None:
    """``auto``: beside a file output, none for stdout, a device or a pipe (no offsets to
    resume at); None: keep state in memory only."""
    if state != "auto":
        return state
    if output is None or output == "-" or is_stream_path(output):
        return None
    return output + ".state.sqlite"
