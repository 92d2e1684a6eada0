"""What a worker does with one lease (:class:`Jobs`): robots.txt, a sitemap, or a page.

Each ``do_*`` returns the :class:`Release` for the frontier and the :class:`Commit` for
the writer (None: nothing to write); the caller releases first and then hands the
commit over, so the host's slot is free before the output's linger. A page goes through
named steps: policy (robots.txt), fetch, classify (retry or not), build (page and
records), count, submit links.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from .._errors import NoProxyLeft, UsageError
from .._url import split_url
from ..http import ErrorKind, ProxyRules, TransportError
from ..runtime._retry import RetryPolicy
from ..state import fingerprint
from ..state._jobs import job_key
from ..state._store import MAX_VALIDATOR, FetchNote, Prior
from ._cookies import CookieSync, FetchCookies
from ._fetch import Fetched, FetchRequest, Gate, HTTPFetcher, PageFetcher, no_side_requests
from ._gate import ROBOTS_MAX_REDIRECTS, HopGate, robots_gate
from ._headers import no_headers
from ._kinds import CrawlErrorKind, http_error
from ._login import MAX_LOGIN_REQUESTS, Login, LoginHook, redact
from ._logout import is_logout_url
from ._offsite import PrivateNetworks, SideRobots
from ._options import CrawlOptions
from ._page import Page, product_token
from ._records import Followed, Records
from ._request import Request
from ._robots import MAX_ROBOTS_BYTES, RobotsRules
from ._scripted import script_built
from ._sitemaps import MAX_SITEMAP_NESTING, parse_sitemap
from ._stats import CrawlResult
from ._urls import Scope, host_key, parse_start_url, why_refused
from .frontier import MAX_HOLD, Candidate, Frontier, JobKind, Lease, Outcome, Release
from .output import Commit
from .output._base import RefersTo

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# A proxy's failure too: by the retry, the host may have moved to another proxy.
_RETRYABLE_ERRORS = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.PROXY})
_MAX_BACKOFF = 60.0
_THROTTLE_CAP = 60.0  # the longest delay auto-throttle grows a host's to by itself
# A sitemap <lastmod> later than now by more than this is not a modification time (a
# clock this far off, or a made-up date): ignored.
_LASTMOD_SKEW = 300.0


@dataclass(frozen=True, slots=True)
class _Built:
    """What a response became: its records and the URLs to follow."""

    fetched: Fetched  # the response; its ``detail`` says why, if building it failed
    records: list[dict[str, object]]
    follow: list[str]
    error: str | None  # the error kind, if the response is a failure
    failed_by: str | None  # what the page counts as failed by (a callback's too)
    requests: list[Followed]  # shoal.Request objects the callback gave (not plain GETs)


@dataclass(slots=True)
class _Classified:
    """What the response means for the frontier, before any page is built."""

    retry_in: float | None  # not None: try again after this long (nothing is written)
    hold_for: float | None  # ask the host nothing for this long (Retry-After)
    too_long: bool  # Retry-After beyond what a crawl waits: recorded, host held
    login_required: str | None = None  # the login page even logged in: its detail


@dataclass(frozen=True, slots=True)
class Revisit:
    """A recrawl's run (``--recrawl``, run 2 or later): its number, for the records, and
    each URL's last fetch, to ask conditionally and to classify the answer."""

    run: int
    prior: Callable[[int], Prior | None]


class Jobs:
    """What a worker does with one lease, for one run of a crawl. Built by
    :meth:`Crawler.run` once the run's frontier and fetcher are known; it shares the
    crawl's lock and result with the crawler (the totals it counts into).

    ``delays`` (auto-throttle's delay per host) and ``crawl_delays`` (robots.txt's) are
    read by the crawler's live view, under the lock."""

    def __init__(
        self,
        options: CrawlOptions,
        *,
        scope: Scope,
        frontier: Frontier,
        fetcher: PageFetcher,
        guard: Callable[[str], None] | None,
        records: Records,
        formats: list[str],
        result: CrawlResult,
        lock: threading.Lock,
        stopping: Callable[[], bool],
        revisit: Revisit | None = None,
        headers: Callable[[str], Mapping[str, str]] = no_headers,
        proxies: ProxyRules | None = None,
        cookies: CookieSync | None = None,
    ) -> None:
        self.options = options
        self._headers_for = headers  # the user's headers for a URL (see _headers)
        self._proxies = proxies  # the transport's, to stop the crawl when none is left
        self._cookies = cookies  # the crawl's cookie jar and the state keeping it
        self._revisit = revisit
        # Where each page's validators and digest go (a state file's frontier only).
        self._note: Callable[[str, FetchNote], None] | None = getattr(frontier, "note_fetch", None)
        self.scope = scope
        self.frontier = frontier
        self._fetcher = fetcher
        self._guard = guard  # deny_private, when asked for
        self._records = records
        self.formats = formats
        # A body's SHA-1 serves only as a WARC payload digest (a later revisit record's):
        # hashed when this crawl writes WARC, or shares its state with workers that may.
        self._sha1 = "warc" in formats or bool(getattr(frontier, "shared", False))
        self.result = result
        self._lock = lock
        self._stopping = stopping  # the crawl is stopping: no more retries
        self._robots: dict[str, RobotsRules] = {}
        # robots.txt of hosts rendered pages load from but the crawl does not crawl.
        self._side_robots = SideRobots(
            self._side_robots_rules, wait=(ROBOTS_MAX_REDIRECTS + 1) * (options.timeout or 60.0)
        )
        self._private_networks = PrivateNetworks(min(options.timeout or 10.0, 10.0))
        self.delays: dict[str, float] = {}  # auto-throttle's current delay per host
        self.crawl_delays: dict[str, float] = {}  # robots.txt Crawl-delay, where given
        self._sitemaps_queued = 0
        self._sitemap_pages = 0
        self._lastmod_revisits = 0  # pages a sitemap's <lastmod> moved up in this run
        self._robots_agent = product_token(options.user_agent)
        # HTTPFetcher hands the gate canonical URLs: its hops are not canonicalized twice.
        self._canonical_hops = type(fetcher) is HTTPFetcher
        # A crawl without --render looks for a page built by script until it finds one
        # (then the summary suggests --render auto).
        self._hint_open = not options.renders()
        self._hint_looks = _HINT_LOOKS
        self.login: Login | None = None  # the crawl's login (see start_login)

    # -- logging in ----------------------------------------------------------------------

    def start_login(self, hook: LoginHook) -> Login:
        """Log in (before any page of the crawl); LoginFailed if that fails. From now on
        every page is checked for the login page (the session expired)."""
        sync = self._cookies
        login = Login(
            hook,
            self._login_fetch,
            self.scope,
            self._login_page,
            before_renew=None if sync is None else sync.refresh,
            # A login's requests each take up to the crawl's timeout: more is a hang.
            wait_for=self.options.timeout * (MAX_LOGIN_REQUESTS + 1),
            deadline=self.options.timeout * (MAX_LOGIN_REQUESTS + 1),
        )
        login.start()
        self.login = login
        return login

    def _login_fetch(self, url: str, request: Request | None) -> Fetched:
        """One login request: the crawl's fetcher, jar and headers; hops within scope
        (robots.txt not asked: see _login); never a page of the crawl. A POST's hops stay
        on its origin: a 307/308 would send its body (the password) on, and the gate
        cannot tell those from a 303."""
        scope = self.scope
        origin = host_key(url) if request is not None and request.method != "GET" else None

        def gate(target: str) -> str | None:
            if origin is not None and host_key(target) != origin:
                return "a login form's redirect to another origin"
            if not scope.allows_host(split_url(target).host):
                return "login redirect out of scope"
            return None

        return self._fetch(url, gate, JobKind.PAGE, request=request)

    def _login_page(self, fetched: Fetched) -> Page:
        return Page.over(
            fetched,
            depth=0,
            referrer=None,
            max_links=self.options.max_links_per_page,
            robots_agent=self._robots_agent,
        )

    def do(self, job: Lease) -> tuple[Release, Commit | None]:
        """The job's release for the frontier and its commit for the writer."""
        self._follow_run()
        if job.kind is JobKind.ROBOTS:
            return self._do_robots(job)
        if job.kind is JobKind.SITEMAP:
            return self._do_sitemap(job)
        release, commit = self._do_page(job)
        if self._revisit is not None and commit is not None:
            # Every record of a recrawl run names it.
            for record in commit.records:
                record.setdefault("run", self._revisit.run)
                record.setdefault("change", None)
        return release, commit

    def _follow_run(self) -> None:
        """A shared crawl's worker takes up the run of the jobs it was given: another
        worker may have begun the next recrawl run while this one waited (a run begins
        only once the one before has no work left, so no job of the old run is still in
        this worker's hands)."""
        leased: int = getattr(self.frontier, "leased_run", 0)
        prior = getattr(self.frontier, "prior", None)
        if leased > (1 if self._revisit is None else self._revisit.run) and prior is not None:
            self._revisit = Revisit(leased, prior)

    # -- fetching ------------------------------------------------------------------------

    def _fetch(
        self,
        url: str,
        gate: Gate,
        kind: JobKind,
        *,
        max_bytes: int | None = None,
        truncate: bool = False,
        side: Gate = no_side_requests,
        max_hops: int | None = None,
        headers: Mapping[str, str] | None = None,
        request: Request | None = None,
    ) -> Fetched:
        """Fetch through the crawl's fetcher, the gate kept whatever the fetcher: the
        first URL and every hop pass ``deny_private`` here, every hop the request's
        ``gate`` (and the hop limit and loop check), every side request ``side``; and a
        result that went where the gate did not let it is refused."""
        guard = self._guard
        if guard is not None:
            try:
                guard(url)
            except TransportError as exc:
                return Fetched(url, url, error=exc.kind, detail=exc.detail)
        sync, view = self._cookies, None
        if sync is not None:
            sync.before_fetch()
            view = FetchCookies(sync.jar)
        hops = HopGate(
            gate,
            guard,
            start=url,
            max_hops=self.options.max_redirects if max_hops is None else max_hops,
            side=side,
            canonical=self._canonical_hops,
            resubmit=request is not None and request.method != "GET",
            cookies=view,
        )
        limit = self.options.max_bytes if max_bytes is None else max_bytes
        if request is None:
            asked = FetchRequest(
                url,
                hops,
                limit,
                truncate,
                kind,
                side=hops.side,
                headers=headers or {},
                headers_for=self._headers_for,
                cookies=view,
            )
        else:
            asked = FetchRequest(
                url,
                hops,
                limit,
                truncate,
                kind,
                side=hops.side,
                headers=headers or {},
                headers_for=self._headers_for,
                method=request.method,
                body=request.body,
                request_headers=request.headers,
                cookies=view,
            )
        try:
            fetched = self._fetcher.fetch(asked)
        finally:
            if sync is not None:
                sync.after_fetch()  # the jar's changes to the state (none: nothing done)
        if fetched.error is not None and self._proxies is not None and self._proxies.exhausted:
            # Never recorded as the page's failure: the URL stays queued for a resume.
            raise NoProxyLeft(
                f"{self._proxies.why_exhausted()}; the crawl stopped rather than connect "
                "without one"
            )
        stray = hops.stray(url, fetched)
        if stray is None:
            return hops.settle(fetched)
        logger.warning("%s: the fetcher requested %s without the crawl's gate", url, stray)
        return Fetched(
            url,
            stray,
            error=ErrorKind.BLOCKED,
            detail=f"the fetcher requested {stray} without passing the crawl's gate",
        )

    # -- robots.txt ----------------------------------------------------------------------

    def _do_robots(self, job: Lease) -> tuple[Release, Commit | None]:
        fetched: Fetched | None = None
        try:
            # Its own size limit, not --max-bytes: see MAX_ROBOTS_BYTES.
            fetched = self._fetch(
                job.url,
                robots_gate(),
                job.kind,
                max_bytes=MAX_ROBOTS_BYTES,
                truncate=True,
            )
            rules = RobotsRules.from_fetch(fetched)
        except NoProxyLeft:
            raise
        except Exception as exc:
            logger.exception("robots.txt check failed for %s", job.url)
            rules = RobotsRules(
                deny_all=True,
                reason=f"robots.txt check failed: {exc!r}",
                error=CrawlErrorKind.INTERNAL,
                detail=repr(exc),
            )
        if (
            self._proxies is not None
            and fetched is not None
            and fetched.error in _RETRYABLE_ERRORS
            and job.attempt <= self.options.retries
            and not self._stopping()
        ):
            # Through proxies the failure may be the host's proxy dying: tried again, it goes
            # through the proxy that takes the host over, rather than the host's URLs being
            # held back for the whole run.
            with self._lock:
                self.result.retries += 1
            return Release(Outcome.RETRY, backoff(self.options.retry_backoff, job.attempt)), None
        if rules.reason:
            logger.info("%s: %s", job.url, rules.reason)
        if rules.note:
            with self._lock:
                self.result.notes.append(rules.note)
        if rules.error is not None:
            later = (
                "that host's URLs stay queued: run the same command again to retry them"
                if self._revisit is None
                else "that host's URLs are recorded as failed in this run; the next "
                "--recrawl revisits them"
            )
            with self._lock:
                self.result.notes.append(
                    f"{job.url} could not be fetched ({rules.error}: {rules.detail}); {later}"
                )
        sitemap_jobs: list[Candidate] = []
        if self.options.use_sitemaps:
            urls = _canonical(rules.sitemaps) or [job.host + "/sitemap.xml"]
            sitemap_jobs = [
                Candidate(u, kind=JobKind.SITEMAP) for u in urls if self.scope.allows(u)
            ]
        with self._lock:
            self._robots[job.host] = rules
        self._log_sitemap_cap(self._queue_sitemaps(sitemap_jobs))  # found again on resume
        policy = rules.policy(self.options.user_agent)
        if policy.crawl_delay:
            with self._lock:  # for the live view's count of hosts waiting on a delay
                self.crawl_delays[job.host] = policy.crawl_delay
        commit = None
        if "warc" in self.formats and fetched is not None and fetched.status is not None:
            commit = Commit(exchange=fetched)  # wget archives robots.txt too
        hold = None
        if rules.error is not None and fetched is not None and fetched.error is None:
            hold = fetched.retry_after  # a 429 or 5xx that says when to come back
        if hold is not None and commit is None:
            commit = Commit()  # a hold must reach the state file: an empty commit carries it
        return Release(Outcome.DONE, hold_host_for=hold, policy=policy), commit

    def _rules_for(self, host: str) -> RobotsRules | None:
        """The host's robots.txt rules: parsed here once, from the frontier's policy (the
        truth, which another process may have fetched)."""
        with self._lock:
            rules = self._robots.get(host)
        if rules is not None:
            return rules
        policy = self.frontier.host_policy(host)
        if policy is None:
            return None
        rules = RobotsRules.from_policy(policy)
        with self._lock:
            self._robots.setdefault(host, rules)
        return rules

    def _side_robots_rules(self, host: str) -> RobotsRules:
        """robots.txt of a host that only a rendered page's subresources come from: over
        the crawl's fetcher (its transport, ``deny_private``, that host's ``per_host``),
        its size bounded as the crawl's own robots.txt; never a job or a record."""
        fetched = self._fetch(
            host + "/robots.txt",
            robots_gate(),
            JobKind.ROBOTS,
            max_bytes=MAX_ROBOTS_BYTES,
            truncate=True,
        )
        return RobotsRules.from_fetch(fetched)

    # -- sitemaps ------------------------------------------------------------------------

    def _queue_sitemaps(self, jobs: list[Candidate]) -> int:
        """Queue the sitemap jobs that fit the per-run cap; how many did not fit."""
        with self._lock:
            room = max(0, self.options.max_sitemaps - self._sitemaps_queued)
            self._sitemaps_queued += room  # reserved; what was not new is given back
        added = self.frontier.submit(jobs[:room]) if room else []
        with self._lock:
            self._sitemaps_queued -= room - len(added)
        return max(0, len(jobs) - room)

    def _queue_sitemap_pages(self, jobs: list[Candidate]) -> list[Candidate]:
        """Queue sitemap pages, at most ``max_pages`` new ones per run: no more can be
        fetched in this run, and 1,000 sitemaps of 50,000 URLs each would fill memory and
        disk. A resume reads the sitemaps again and takes the next ones."""
        with self._lock:
            room = max(0, self.options.max_pages - self._sitemap_pages)
            self._sitemap_pages += room  # reserved; the unused part is given back below
        added: list[Candidate] = []
        start = 0
        left = room
        while left > 0 and start < len(jobs):
            chunk = jobs[start : start + left]
            start += len(chunk)
            got = self.frontier.submit(chunk)
            left -= len(got)
            added += got
        with self._lock:
            self._sitemap_pages -= left
        return added

    def _log_sitemap_cap(self, skipped: int) -> None:
        if skipped:  # logged outside the lock: logging handlers are user code
            logger.info("sitemap cap (%d) reached: %d skipped", self.options.max_sitemaps, skipped)

    def _do_sitemap(self, job: Lease) -> tuple[Release, Commit | None]:
        fetched = self._fetch(
            job.url,
            _SitemapRedirects(self, job),
            job.kind,
            side=_SideRequests(self, job, None),
        )
        if fetched.error is not None or fetched.status != 200:
            logger.info(
                "sitemap %s: %s", job.url, fetched.error or fetched.detail or fetched.status
            )
            if fetched.error is None and fetched.retry_after is not None:
                # A 429/503 that says when to come back: the host waits (pages too), and
                # the sitemap is asked again then, as a page would be.
                verdict = self._classify(job, fetched)
                hold = Commit() if verdict.hold_for is not None else None
                if verdict.retry_in is not None:
                    return Release(Outcome.RETRY, verdict.retry_in, verdict.hold_for), hold
                return Release(Outcome.FAILED, hold_host_for=verdict.hold_for), hold
            return Release(Outcome.FAILED), None
        pages, sitemaps, lastmods = parse_sitemap(fetched.body, self.options.max_bytes)
        if self._revisit is not None:
            self._revisit_changed(job, pages, lastmods)
        jobs = [Candidate(u, 0, job.url) for u in _canonical(pages) if self.scope.allows(u)]
        # A sitemap job's depth is its nesting below robots.txt (sitemaps have no link depth).
        nested = job.depth + 1
        children = [
            Candidate(u, nested, job.url, kind=JobKind.SITEMAP)
            for u in _canonical(sitemaps)
            if self.scope.allows(u)
        ]
        if children and nested > MAX_SITEMAP_NESTING:
            logger.info(
                "sitemap %s: nested deeper than %d, not followed", job.url, MAX_SITEMAP_NESTING
            )
            children = []
        added = self._queue_sitemap_pages(jobs)
        skipped = self._queue_sitemaps(children)
        with self._lock:
            self.result.discovered += len(added)
        self._log_sitemap_cap(skipped)
        # An empty commit: the new URLs reach the state file now, not with the next page.
        return Release(Outcome.DONE), (Commit() if added else None)

    def _revisit_changed(
        self, job: Lease, pages: list[str], lastmods: Sequence[float | None]
    ) -> None:
        """A recrawl: the sitemap's pages whose <lastmod> is newer than their last fetch
        are revisited first (moved to the front of their host's queue), and in this run
        even if --revisit-after has not made them due. A lastmod in the future is not a
        modification time: ignored. At most --max-pages of them per run."""
        revisit_first = getattr(self.frontier, "revisit_first", None)
        if revisit_first is None:
            return  # a frontier without it revisits in its own order
        latest = time.time() + _LASTMOD_SKEW
        changed: list[tuple[str, float]] = []
        for url, lastmod in zip(pages, lastmods, strict=True):
            if lastmod is None or lastmod > latest:
                continue
            for canonical in _canonical([url]):
                if self.scope.allows(canonical):
                    changed.append((canonical, lastmod))
        if not changed:
            return
        with self._lock:
            room = max(0, self.options.max_pages - self._lastmod_revisits)
            self._lastmod_revisits += room  # reserved; the unused part is given back below
        moved = revisit_first(changed[:room]) if room else 0
        with self._lock:
            self._lastmod_revisits -= room - moved
        if moved:
            logger.info("sitemap %s: %d page(s) changed since their last fetch", job.url, moved)

    # -- pages ---------------------------------------------------------------------------

    def _do_page(self, job: Lease) -> tuple[Release, Commit | None]:
        opts = self.options
        rules = self._rules_for(job.host) if opts.robots else None
        if rules is not None and rules.error is not None:
            return self._held_back(job, rules)
        if rules is not None and not rules.allowed(job.url, opts.user_agent):
            with self._lock:
                self.result.robots_denied += 1
            logger.info("skipped: robots.txt disallows %s", job.url)
            # A visit all the same: --revisit-after counts from it.
            if self._revisit is None:
                self._visited(job, None)
                return Release(Outcome.DONE), Commit(finished=job)
            was = self._revisit.prior(_fingerprint(job))
            self._visited(job, was)
            if was is None or (was.status is None and was.sha256 is None):
                return Release(Outcome.DONE), Commit(finished=job)  # denied all along
            # A recrawl says what became of every URL it knows: this one is not fetched.
            record = self._records.error_record(
                job, "robots_disallowed", "robots.txt now disallows it: not fetched"
            )
            record.update(run=self._revisit.run, change="disallowed")
            return Release(Outcome.DONE), Commit([record], finished=job, change="disallowed")
        prior = None
        if self._revisit is not None:
            prior = self._revisit.prior(_fingerprint(job))
        login = self.login
        seen = 0 if login is None else login.generation
        fetched = self._fetch_page(job, rules, prior)
        verdict = None
        if login is not None:
            fetched, verdict = self._logged_in(
                job, fetched, seen, lambda: self._fetch_page(job, rules, prior)
            )
        if verdict is None:
            verdict = self._classify(job, fetched)
        if verdict.retry_in is not None:
            with self._lock:
                self.result.retries += 1
            release = Release(Outcome.RETRY, verdict.retry_in, verdict.hold_for)
            # A hold must reach the state file: an empty commit carries it there.
            return release, (Commit() if verdict.hold_for is not None else None)
        built = self._build(job, fetched, verdict)
        fetched = built.fetched  # with the failure's detail, if building it failed
        self._count(job, fetched, built.failed_by, rules)
        if logger.isEnabledFor(logging.INFO):  # -v: one line per URL, never under the lock
            logger.info("%s", _page_line(job.url, fetched.status, built.error, fetched))
        outcome = Outcome.FAILED if built.error is not None else Outcome.DONE
        status = fetched.status
        # A 304 is believed only as the answer to the conditional request this URL sent:
        # not to an unconditional one, nor after a redirect (it speaks of another URL).
        not_modified = (
            status == 304
            and fetched.error is None
            and prior is not None
            and bool(_conditional(prior))
            and not _posted(job)
            and not fetched.redirects
        )
        # An error (transport, 5xx, 429, an unasked-for 304, a body past the limits) says
        # nothing of the page: the next run still compares against the last good capture.
        failed = not not_modified and _failed(fetched, built.error)
        if not_modified or (failed and prior is not None):
            assert prior is not None
            # The capture the 304 confirms, or the last good one a failure leaves standing:
            # what the state keeps for the next run to compare with.
            status = prior.status
        sha = sha1 = None
        if fetched.status is not None and not not_modified:
            sha = hashlib.sha256(fetched.body).digest()
            if self._sha1:
                sha1 = hashlib.sha1(fetched.body).digest()
        change = None
        if self._revisit is not None:
            change = "failed" if failed else _change(prior, fetched, sha, not_modified)
            for record in built.records:
                record.update(run=self._revisit.run, change=change)
        now = time.time()
        if failed:
            self._visited(job, prior)
        elif self._note is not None and fetched.status is not None:
            headers = fetched.headers
            # Validators belong to the URL that sent them: a redirected fetch's final URL's
            # would be sent back to the redirecting URL. A 304 keeps those stored unless it
            # carries new ones (None: keep), and keeps the final URL it confirms.
            own = fetched.final_url == job.url
            self._note(
                job.id,
                FetchNote(
                    _bounded(headers.get("etag")) if own else None,
                    _bounded(headers.get("last-modified")) if own else None,
                    sha,
                    sha1,
                    (prior.final_url if prior is not None else None)
                    if not_modified
                    else (None if own else fetched.final_url),
                    now,
                    keep_validators=not_modified,
                ),
            )
        warc = "warc" in self.formats
        refers = None
        if warc and change == "unchanged" and prior is not None and prior.captured_at:
            refers = RefersTo(
                "server-not-modified" if not_modified else "identical-payload-digest",
                prior.final_url or job.url,
                prior.captured_at,
                prior.sha1,
            )
        commit = Commit(
            built.records,
            finished=job,
            state=outcome,
            status=status,
            exchange=fetched if warc else None,
            page=True,
            error=built.failed_by,
            nbytes=len(fetched.body),
            change=change,
            fetched_at=now,
            refers_to=refers,
        )
        links = self._links(job, built.follow) if built.follow else ()
        if built.requests:
            links += self._requests(job, built.requests)
        return Release(outcome, hold_host_for=verdict.hold_for, links=links), commit

    def _logged_in(
        self, job: Lease, fetched: Fetched, seen: int, again: Callable[[], Fetched]
    ) -> tuple[Fetched, _Classified | None]:
        """The page as the logged-in user gets it: if it answered with the login page
        (the session expired), log in again (or wait for the re-login running) and fetch
        it once more. A page that still does is this URL's answer, not the crawl's end:
        tried again later (workers share a session: others may have used up the fresh
        one), then recorded ``login_required`` (a page the user may not see); or as
        answered if the session was alive (a login form in a sidebar). LoginFailed only
        when a login fails, or when pages of MAX_RELOGINS URLs in a row meet it."""
        login = self.login
        assert login is not None
        if not login.expired(job.url, fetched, self._login_page):
            login.logged_in_page()
            return fetched, None
        for _ in range(2):  # a session used up by other workers meanwhile: once more
            fresh = login.renew(seen, job.url)
            seen = login.generation
            fetched = again()
            if not login.expired(job.url, fetched, self._login_page):
                login.logged_in_page()
                return fetched, None
            if not fresh:
                # The login page showed no form: the session is alive, and this URL's
                # answer is its own (an expired one would have needed a form posted).
                login.logged_in_page()
                if not login.redirected(fetched):
                    return fetched, None  # a login form beside the page's content
                break
        else:
            if job.attempt <= self.options.retries and not self._stopping():
                return fetched, _Classified(
                    backoff(self.options.retry_backoff, job.attempt), None, False
                )
        logger.warning("%s answers with the login page even logged in: recorded", job.url)
        detail = redact(
            f"answered with the login page right after a login (HTTP {fetched.status}"
            + (f", at {fetched.final_url}" if fetched.final_url != job.url else "")
            + ")"
        )
        return fetched, _Classified(None, None, False, detail)

    def _visited(self, job: Lease, prior: Prior | None) -> None:
        """Record only when ``job``'s URL was last visited (--revisit-after counts from it),
        keeping its last good capture: a failure or a robots.txt denial is not due again
        at once, yet compares nothing."""
        if self._note is not None:
            final = prior.final_url if prior is not None else None
            self._note(job.id, FetchNote(None, None, None, None, final, time.time(), True))

    def _fetch_page(self, job: Lease, rules: RobotsRules | None, prior: Prior | None) -> Fetched:
        request = None if job.request is None else Request._decode(job.url, job.request)
        # A POST is sent again as it was: a conditional request is a GET's.
        conditional = None if _posted(job) else prior
        return self._fetch(
            job.url,
            _Redirects(self, job, rules, prior),
            job.kind,
            side=_SideRequests(self, job, rules),
            headers=_conditional(conditional),
            request=request,
        )

    def _classify(self, job: Lease, fetched: Fetched) -> _Classified:
        status = fetched.status
        retryable = fetched.error in _RETRYABLE_ERRORS or (
            fetched.error is None and status in _RETRYABLE_STATUS
        )
        if retryable and _posted(job):
            # A POST is sent again only if it never left (no connection could be made) or
            # the server said it did not handle it (429, 503): after a timeout, a dropped
            # connection, a 500, 502 or 504 it may have acted on it (RFC 9110 9.2.2).
            retryable = fetched.unsent if fetched.error is not None else status in (429, 503)
        asked = fetched.retry_after if fetched.error is None else None
        # A pause longer than a crawl waits: record it rather than hold and then drop it.
        too_long = asked is not None and asked > MAX_HOLD and status in _RETRYABLE_STATUS
        stopping = self._stopping()
        if retryable and not too_long and job.attempt <= self.options.retries and not stopping:
            wait = asked if asked is not None else backoff(self.options.retry_backoff, job.attempt)
            return _Classified(wait, asked, False)
        if too_long:
            logger.warning(
                "%s asked for a pause of %.0f s (Retry-After); its URLs wait for a later run",
                job.host,
                asked,
            )
            return _Classified(None, asked, True)
        hold = asked if status in (429, 503) and asked is not None else None
        return _Classified(None, hold, False)

    def _build(self, job: Lease, fetched: Fetched, verdict: _Classified) -> _Built:
        """The page over the response, and its records."""
        page: Page | None = None
        status = fetched.status
        error: str | None = fetched.error
        if verdict.too_long:
            error = CrawlErrorKind.RETRY_AFTER
            fetched = replace(fetched, detail=_retry_after_detail(fetched))
        elif verdict.login_required is not None:
            error = CrawlErrorKind.LOGIN_REQUIRED
            fetched = replace(fetched, detail=verdict.login_required)
        elif error is None and status is not None:
            if not 200 <= status < 400:
                error = http_error(status)
            elif 200 <= status < 300:
                page = Page.over(
                    fetched,
                    depth=job.depth,
                    referrer=job.referrer,
                    max_links=self.options.max_links_per_page,
                    robots_agent=self._robots_agent,
                )
                page._request_fields = job.request
        try:
            records, follow, requests, callback_failed = self._records.build(
                job, fetched, page, error
            )
            nofollow = page is not None and "nofollow" in page.robots
            if (follow or requests) and nofollow and self.options.obey_nofollow:
                logger.info("not following the links of %s: robots nofollow", job.url)
                follow, requests = [], []
        except Exception as exc:
            logger.exception("processing %s failed", job.url)
            error = CrawlErrorKind.PROCESSING
            fetched = replace(fetched, detail=repr(exc))
            records, follow, requests, callback_failed = self._records.build(
                job, fetched, None, error
            )
        if follow and self.login is not None and not self.options.follow_logout:
            follow = self._not_logout(job, page, follow)
        limit = self.options.max_links_per_page
        del follow[limit:]  # the callback's own URLs count too
        if requests:
            del requests[max(0, limit - len(follow)) :]
        if page is not None and page._refused is not None and page._refused.count:
            self._count_refused(job, page)
        if self._hint_open and page is not None and error is None and not fetched.rendered:
            self._look_for_script_built(page)
        failed_by = error or (CrawlErrorKind.CALLBACK if callback_failed else None)
        return _Built(
            fetched,
            records,
            follow,
            error,
            None if failed_by is None else str(failed_by),
            requests,
        )

    def _not_logout(self, job: Lease, page: Page | None, follow: list[str]) -> list[str]:
        """``follow`` without its logout links (see _login): by URL, or by the text of a
        link of the page. The login URL stays (a login page is never a logout)."""
        login = self.login
        assert login is not None
        by_text = page._logout_links() if page is not None else frozenset()
        kept: list[str] = []
        dropped: list[str] = []
        for url in follow:
            if (url in by_text or is_logout_url(url)) and not login.is_login_url(url):
                dropped.append(url)
            else:
                kept.append(url)
        if not dropped:
            return follow
        with self._lock:
            r = self.result
            first = r.logout_links == 0
            r.logout_links += len(dropped)
            r.first_logout_link = r.first_logout_link or dropped[0]
        if first:  # told once; the summary counts them
            logger.warning(
                "not following logout links while logged in (e.g. %s, linked from %s); "
                "--follow-logout follows them",
                dropped[0],
                job.url,
            )
        return kept

    def _look_for_script_built(self, page: Page) -> None:
        """One page of a static crawl: built by script? Near free on most pages: only one
        with few links (already found) is looked at further."""
        if len(page.links) >= _HINT_LINKS or not page.is_html:
            return
        with self._lock:
            # A bounded number of looks: a site of small static pages pays for a few only.
            self._hint_looks -= 1
            if self._hint_looks < 0:
                self._hint_open = False
                return
        why = script_built(page.text)
        if why is None:
            return
        with self._lock:
            if not self._hint_open:
                return
            self._hint_open = False
            self.result.notes.append(
                f"pages look built by JavaScript ({why}), e.g. {page.final_url}: their links "
                "and fields may be missing here; try --render auto"
            )

    def _count(
        self,
        job: Lease,
        fetched: Fetched,
        failed_by: str | None,
        rules: RobotsRules | None,
    ) -> None:
        """Add the page to the totals (each page counts once: ok + redirects + failed =
        pages; ``Commit.counts_as`` says the same for the state file's totals)."""
        status = fetched.status
        # The frontier takes what the throttle sets as the host's delay, Crawl-delay or not:
        # parsed here, outside the lock.
        floor = 0.0
        if self.options.auto_throttle and rules is not None:
            floor = rules.crawl_delay(self.options.user_agent) or 0.0
        with self._lock:
            r = self.result
            r.pages += 1
            r.bytes += len(fetched.body)
            r.latency.add(fetched.elapsed)
            if failed_by is not None:
                r.errors[failed_by] += 1
                r.first_error.setdefault(
                    failed_by, f"{job.url}: {fetched.detail}" if fetched.detail else job.url
                )
            elif status is not None and 300 <= status < 400 and status != 304:
                r.redirects += 1  # a redirect not followed (off-host, seen, ...)
            else:
                r.ok += 1
            delay = None
            if self.options.auto_throttle and status is not None:
                delay = self._throttle(job.host, fetched, status, floor)
        if delay is not None:
            self.frontier.set_delay(job.host, delay)

    def _links(self, job: Lease, follow: Sequence[str]) -> tuple[Candidate, ...]:
        """The page's in-scope links, for the frontier with the page's release."""
        depth = job.depth + 1
        in_scope = self.scope.allows_at(depth)
        return tuple(Candidate(url, depth, job.url) for url in follow if in_scope(url))

    def _requests(self, job: Lease, given: Sequence[Followed]) -> tuple[Candidate, ...]:
        """The in-scope requests a page's callback made (the same scope as its links)."""
        depth = job.depth + 1
        in_scope = self.scope.allows_at(depth)
        page = JobKind.PAGE
        return tuple(
            Candidate(url, depth, job.url, page, fields) for url, fields in given if in_scope(url)
        )

    def _held_back(self, job: Lease, rules: RobotsRules) -> tuple[Release, Commit]:
        """A URL whose host's robots.txt could not be fetched: a record saying why, but
        the URL is not finished in the state (DEFER), so running again retries it.

        In a recrawl run the URL is finished as ``failed`` instead, its one record of the
        run: left queued, it would be fetched when the run is next resumed and recorded
        again in the same run, and a robots.txt that stays down would hold the run open
        (no later run would revisit any other host). The state keeps its last capture,
        so the next run compares with that."""
        assert rules.error is not None
        detail = rules.detail
        if not detail.startswith("robots.txt"):
            detail = f"robots.txt unreachable: {detail}"
        record = self._records.error_record(job, rules.error, detail)
        with self._lock:
            r = self.result
            r.pages += 1
            r.errors[rules.error] += 1  # the cause is told once, in the summary's notes
        if self._revisit is not None:
            prior = self._revisit.prior(_fingerprint(job))
            self._visited(job, prior)  # a visit, as a failed fetch is (--revisit-after)
            record.update(run=self._revisit.run, change="failed")
            commit = Commit(
                [record],
                finished=job,
                state=Outcome.FAILED,
                status=None if prior is None else prior.status,  # the last good capture's
                page=True,
                error=rules.error,
                change="failed",
            )
            return Release(Outcome.FAILED), commit
        commit = Commit([record], finished=job, state=Outcome.DEFER, page=True, error=rules.error)
        return Release(Outcome.FAILED), commit

    def _count_refused(self, job: Lease, page: Page) -> None:
        """Links of the page that no request could fetch: never queued, counted and told
        (-v) here, so that they are not found to fail on every run."""
        refused = page._refusals()
        with self._lock:
            self.result.refused_links += refused.count
        first = refused.first
        if logger.isEnabledFor(logging.INFO) and first is not None:
            logger.info(
                "%s: %d link(s) refused, no request could fetch them; the first: %r (%s)",
                job.url,
                refused.count,
                first if len(first) <= 200 else first[:200] + "...",
                why_refused(page.base_url, first),
            )

    def _count_off_scope(self, target: str) -> None:
        with self._lock:
            self.result.out_of_scope_redirects += 1

    def _throttle(self, host: str, fetched: Fetched, status: int, floor: float) -> float:
        """Under the lock: the host's new auto-throttle delay (see ``throttled``)."""
        opts = self.options
        current = self.delays.get(host)
        if current is None:
            current = opts.host_initial_delay(host)
        new = throttled(opts, current, fetched.elapsed, status, floor, delay=opts.host_delay(host))
        self.delays[host] = new
        return new


class _Redirects:
    """The fetcher's redirect vetter for one page lease: None to follow a hop in place,
    or why not."""

    def __init__(
        self, steps: Jobs, job: Lease, rules: RobotsRules | None, prior: Prior | None = None
    ) -> None:
        self.steps = steps
        self.job = job
        self.rules = rules
        # A recrawl follows a redirect its last fetch followed to wherever it now leads,
        # a URL the state knows included (revisited on its own too: targets change between
        # runs); one that stopped at the hop stops again at a known URL, as it did then.
        self.again = prior is not None and not (prior.status and 300 <= prior.status < 400)

    def __call__(self, target: str) -> str | None:
        steps, job = self.steps, self.job
        login = steps.login
        if login is not None and login.is_login_url(target):
            # The session expired (see Jobs._logged_in): not a page to claim or follow.
            return "redirect to the login page"
        if not steps.scope.allows(target, job.depth):
            steps._count_off_scope(target)
            return "redirect out of scope"
        if host_key(target) != job.host:
            # Another host has its own robots.txt and politeness: queue it there (a
            # request's label and meta go along; its method, body and headers do not).
            moved = None
            if job.request is not None:
                posted = job_key(job.url, job.request) if _posted(job) else None
                moved = Request._decode(job.url, job.request)._moved(target, posted)
            candidate = Candidate(target, job.depth, job.url, JobKind.PAGE, moved)
            added = steps.frontier.submit([candidate])
            if added:
                with steps._lock:
                    steps.result.discovered += len(added)
            return "redirect to another host, queued"
        rules = self.rules
        if rules is not None and not rules.allowed(target, steps.options.user_agent):
            return "redirect target disallowed by robots.txt"
        if _posted(job):
            # A POST's hops are its own answer (post, redirect, get; or a 307/308 resending
            # it): fetched for it whatever URLs were seen, and claiming none, so a link to
            # the same URL is still crawled as a page of its own. Bounded all the same: a
            # POST job is fetched once, its chain by max_redirects and the loop check.
            return None
        if not steps.frontier.claim(job, target) and not self.again:
            return "redirect to an already-seen URL"
        return None


class _SitemapRedirects:
    """The redirect gate of one sitemap lease: in scope, and the host's robots.txt and
    politeness, as a page's hops. A hop to another host is queued there as a sitemap of
    its own (that host's robots.txt and delays apply), not taken in place."""

    def __init__(self, steps: Jobs, job: Lease) -> None:
        self.steps = steps
        self.job = job

    def __call__(self, target: str) -> str | None:
        steps, job = self.steps, self.job
        if not steps.scope.allows(target):
            steps._count_off_scope(target)
            return "sitemap redirect out of scope"
        if host_key(target) != job.host:
            candidate = Candidate(target, job.depth, job.url, kind=JobKind.SITEMAP)
            steps._log_sitemap_cap(steps._queue_sitemaps([candidate]))
            return "sitemap redirect to another host, queued"
        rules = steps._rules_for(job.host) if steps.options.robots else None
        if rules is not None and not rules.allowed(target, steps.options.user_agent):
            return "sitemap redirect target disallowed by robots.txt"
        return None


class _SideRequests:
    """The side-request check for one lease: may the fetcher request a URL beside the page
    (a browser's XHR, script, stylesheet, image)? A side request is not a page of the
    crawl: nothing is claimed, queued or counted (a link to the same URL is still crawled
    as a page of its own), and scope, which says which pages the crawl visits, does not
    bound it unless ``render_resources`` is ``scope``. robots.txt does: the page's host's,
    a crawled host's as the crawl read it, and any other host's read here once (a CDN, an
    API host); with ``scope``, a host whose robots.txt the crawl has not read yet is
    refused (its rules are unknown). ``deny_private`` is checked by the caller
    (``HopGate.side``) and, for a host out of scope, before its robots.txt is asked for;
    without it, such a host passes the private-network rule first (``_offsite``)."""

    def __init__(self, steps: Jobs, job: Lease, rules: RobotsRules | None) -> None:
        self.steps = steps
        self.job = job
        self.rules = rules

    def __call__(self, target: str) -> str | None:
        steps = self.steps
        if steps.options.render_resources == "scope":
            return self._in_scope(target)
        host = host_key(target)
        rules = self.rules if host == self.job.host else None
        if rules is None and not steps.scope.allows_host(split_url(target).host):
            # A host out of scope has no robots.txt job (and the frontier is not asked: a
            # Redis round trip per request of a CDN). A private one is not asked either.
            if steps._guard is not None:
                steps._guard(target)
            else:
                why = steps._private_networks.why_not(self.job.host, target)
                if why is not None:
                    return f"side request to {why}"
            if not steps.options.robots:
                return None
            rules = steps._side_robots.rules(host)
        if not steps.options.robots:
            return None
        if rules is None:
            rules = steps._rules_for(host) or steps._side_robots.rules(host)
        if rules.error is not None or not rules.allowed(target, steps.options.user_agent):
            return "side request disallowed by robots.txt"
        return None

    def _in_scope(self, target: str) -> str | None:
        """``render_resources="scope"``: in scope, under robots.txt the crawl has read."""
        steps = self.steps
        if not steps.scope.allows(target):
            return "side request out of scope"
        if not steps.options.robots:
            return None
        host = host_key(target)
        rules = self.rules if host == self.job.host else None
        if rules is None:
            rules = steps._rules_for(host)
        if rules is None:
            return "side request to a host whose robots.txt is not read yet"
        if rules.error is not None or not rules.allowed(target, steps.options.user_agent):
            return "side request disallowed by robots.txt"
        return None


# A page with this many links stands on its own: not looked at for the hint.
_HINT_LINKS = 10
# Pages with few links looked at for the hint, at most (~0.1 ms each where they carry scripts).
_HINT_LOOKS = 1000


def throttled(
    opts: CrawlOptions,
    current: float,
    elapsed: float,
    status: int,
    floor: float,
    *,
    delay: float | None = None,
) -> float:
    """Scrapy-style auto-throttle: aim for ``throttle_target`` requests in flight; the
    host's new delay after a response that took ``elapsed`` seconds, never under the
    host's ``delay`` (its own, from ``hosts``; else --delay) nor ``floor`` (the host's
    robots.txt Crawl-delay, which wins if larger). Slow answers raise it to 60 s at most,
    or to the host's own delay when that is longer (a cap is never under it)."""
    target = elapsed / opts.throttle_target
    new = (current + target) / 2
    if status != 200 and new < current:
        new = current  # errors must never speed a crawl up
    lowest = max(opts.delay if delay is None else delay, floor)
    return min(max(new, lowest), max(_THROTTLE_CAP, lowest))


def _posted(job: Lease) -> bool:
    """The job is not a GET: its request's first line names its method (a GET's is empty,
    or ``GET ...`` for the GET a POST's redirect to another host queued)."""
    return job.request is not None and not job.request.startswith(("\n", "GET "))


def _fingerprint(job: Lease) -> int:
    """The job's row in the state: its URL's for a GET, its request's for a POST."""
    return fingerprint(job.url if job.request is None else job_key(job.url, job.request))


def backoff(base: float, attempt: int) -> float:
    """Seconds before retry ``attempt`` of a page: the runtime's capped exponential
    backoff with full jitter (one formula for pool tasks and crawl retries)."""
    return RetryPolicy(base=base, cap=_MAX_BACKOFF).delay(attempt)


def _page_line(url: str, status: int | None, error: str | None, f: Fetched) -> str:
    """``200   12.3 KB    45 ms  URL`` (plus where it redirected, or why it failed)."""
    size = len(f.body)
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


def _retry_after_detail(fetched: Fetched) -> str:
    asked = fetched.retry_after or 0.0
    header = fetched.headers.get("retry-after", "")
    shown = header if len(header) <= 64 else header[:64] + "..."
    return (
        f"HTTP {fetched.status}, Retry-After: {shown} ({asked:.0f} s); a crawl waits at "
        f"most {MAX_HOLD:.0f} s, so the host is not asked again before then"
    )


def _failed(fetched: Fetched, error: str | None) -> bool:
    """Whether a recrawl fetch failed rather than saw the page: a transport error, a
    limit, a 5xx or 429, or a 304 nobody asked for."""
    if fetched.error is not None or fetched.status is None:
        return True
    status = fetched.status
    if status >= 500 or status in {429, 304}:
        return True
    return error is not None and not 400 <= status < 500


def _bounded(validator: str | None) -> str | None:
    """A validator as the server sent it, or None past MAX_VALIDATOR characters (its URL
    is then revisited unconditionally: the body's digest still tells a change)."""
    if validator is None or len(validator) > MAX_VALIDATOR:
        return None
    return validator


def _conditional(prior: Prior | None) -> dict[str, str]:
    """The conditional headers for a revisit: the stored ETag exactly as given (a weak
    ``W/`` one included) and Last-Modified, both when both were stored."""
    headers: dict[str, str] = {}
    if prior is None:
        return headers
    if prior.etag:
        headers["If-None-Match"] = prior.etag
    if prior.last_modified:
        headers["If-Modified-Since"] = prior.last_modified
    return headers


def _change(prior: Prior | None, fetched: Fetched, sha: bytes | None, not_modified: bool) -> str:
    """``new``, ``changed``, ``unchanged`` or ``gone``: this fetch against the last. A 304
    (to a conditional request) or the same decoded body, status and final URL is
    unchanged whatever the validators say; 404/410 for a URL that was ok is gone."""
    if prior is None:
        return "new"
    if not_modified:
        return "unchanged"
    status = fetched.status
    was_ok = prior.status is not None and 200 <= prior.status < 300
    if was_ok and fetched.error is None and status in (404, 410):
        return "gone"
    if prior.sha256 is None:
        # Last fetched before the state kept digests (schema 2; no fetch time either):
        # nothing to compare with. Else it was visited but never captured (a failure, a
        # robots.txt denial): this is its first capture.
        return "unknown" if prior.fetched_at is None else "new"
    final = None if fetched.final_url == fetched.url else fetched.final_url
    same = (
        fetched.error is None
        and status == prior.status
        and sha == prior.sha256
        and final == prior.final_url
    )
    return "unchanged" if same else "changed"


def _canonical(urls: list[str]) -> list[str]:
    """Canonical forms of absolute http(s) URLs from a sitemap; anything else is dropped."""
    out = []
    for url in urls:
        try:
            out.append(parse_start_url(url))
        except UsageError:
            logger.debug("sitemap entry skipped: %r", url)
    return out
