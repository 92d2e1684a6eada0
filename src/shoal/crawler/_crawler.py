"""The crawler: a Pool whose tasks fetch URLs that the frontier says are ready.

Reading ``Crawler.run()`` top-down tells the story. A run is made of three parts: the
fetcher (``_fetch``: a :class:`PageFetcher`, over a transport), the run's session
(``_session``: outputs and state file, resumed where the last run left off) and its jobs
(``_jobs``: what a worker does with one lease). The crawler owns the dispatch loop and
the task handler that joins them.

Flow of one page: a worker leases a job, fetches it (redirects vetted hop by hop through
the crawl's gate), submits the page's in-scope links to the frontier, *releases* the
lease (the host's slot is free again), hands the records and the lease's *commit* to the
writer thread, and *dispatches*: moves whatever the frontier now has ready into the
pool. Dispatch happens at the end of every task, so the crawl drives itself
with no scheduler thread and no polling. When every ready URL waits on a clock (a
per-host delay, Crawl-delay, Retry-After), dispatch puts a delayed wake-up task in the
pool instead; because that task is counted like any other, ``pool.join()`` returns
exactly when nothing is in flight, nothing is ready and nothing is waiting.

Invariant: if the frontier holds URLs, then a job is in flight, or a wake-up is queued,
or the crawl has hit a limit. Every path through ``_dispatch`` keeps it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeGuard, cast, overload

from .._errors import (
    JoinTimeout,
    LoginFailed,
    NoProxyLeft,
    StateError,
    UsageError,
    WriterError,
    literal,
)
from .._url import split_url
from ..http import ProxyRules, Resolver, Transport, make_transport
from ..runtime import Pool, ProgressDisplay, ProgressState, TaskContext, Writer
from ._cookies import Cookie, CookieJar, CookieSync, check_save_path, read_cookies_file
from ._fetch import FetcherFactory, FetchSetup, HTTPFetcher, PageFetcher
from ._gate import PublicOnly
from ._headers import HeadersGiven, RequestHeaders
from ._hosts import HostSettings
from ._jobs import Jobs, Revisit
from ._kinds import CrawlErrorKind
from ._login import FormLogin, Login, LoginHook
from ._options import NEEDS_RENDER, CrawlOptions
from ._records import Records
from ._routes import PageCallback
from ._scripted import RenderHook
from ._session import RunSession, progress_enabled, state_path_for
from ._shared import LEASE_TTL, SharedCrawl, check_shared, connect_shared
from ._stats import CrawlResult
from ._urls import Scope, host_key, parse_start_url, refuse_credentials
from .frontier import (
    Candidate,
    Frontier,
    JobKind,
    Lease,
    MemoryFrontier,
    Outcome,
    Release,
)
from .output import Commit, infer_format, is_stream_path

__all__ = ["Crawler", "PageCallback"]

logger = logging.getLogger(__name__)


# No URL: a delayed task that only dispatches (see _dispatch); known by identity.
_WAKE = Lease("wake", "", "", JobKind.PAGE, 0, None, 0)
# At --max-time, work in flight gets this long to finish; then it is abandoned (a parse in
# C or a callback cannot be interrupted) and its URLs are fetched again on resume.
_MAX_TIME_GRACE = 2.0


class Crawler:
    """Crawl from ``start_urls``; ``run()`` returns a :class:`CrawlResult`.

    ``on_page(page)`` may return or yield dicts (written as records), URL strings and
    :class:`~shoal.Request` objects (followed, if in scope). Pages can go to several
    handlers instead: :meth:`route` (``on_page`` is then the default route). Without
    one each fetched URL gives one record with the standard fields plus any ``extract``
    fields. Links on every HTML page are followed
    within scope unless ``follow_links=False``.

    A Crawler runs once: a second ``run()`` raises UsageError, however the first ended
    (tasks a ``max_time`` stop abandoned may still be running on it). A crawl with a
    state file is continued by a new Crawler with the same options, which resumes it.

    Every option is a keyword parameter whose default comes from :class:`CrawlOptions`;
    the command line has the same names with dashes (``max_pages`` is ``--max-pages``;
    the few exceptions are listed in docs/api.md). Units: seconds for times, bytes for
    sizes.

    Args:
        start_urls: One URL or several: http(s) only; their hosts are the crawl's scope
            unless ``allow_domains`` says otherwise.
        on_page: Called with each fetched :class:`Page`; returns or yields records
            (dicts), URLs and :class:`~shoal.Request` objects to follow. Runs on worker
            threads. The default route (see :meth:`route`).
        follow_links: Follow the links found on HTML pages (``on_page``'s URLs are
            followed either way).
        frontier: Where the URLs live. A frontier given here owns the crawl's state: the
            crawler opens no state file of its own (``state`` must be left ``"auto"`` or
            None) and does not resume the output; without it the crawler uses a SQLite
            frontier in the state file (or a memory one with no state).
        redis: Share the crawl through the Redis at this URL (``redis://[:PASSWORD@]HOST:
            PORT/DB`` or ``unix:///path``): every ``Crawler`` (in any process, on any
            machine) with the same ``redis``, ``crawl_id`` and scope works on one crawl,
            each writing its own ``output`` (jsonl, csv or warc; ``shoal combine`` joins
            them). ``Crawler()`` checks these options; ``run()`` joins the crawl
            (registering this worker only once its output is claimed) and leaves it.
        crawl_id: The shared crawl's name (with ``redis``).
        worker_id: This worker's name in the shared crawl (default: ``HOSTNAME:ABSOLUTE-
            OUTPUT-PATH``; the same name again is that worker's restart).
        lease_ttl: Seconds a dead worker's URLs stay leased before another worker takes
            them (with ``redis``; live workers renew theirs).
        allow_weak_durability: Run on a Redis that may lose commits it acknowledged (see
            README, "One crawl, many machines"), with a warning.
        concurrency: Requests in flight in total.
        per_host: Requests in flight per host (at most ``concurrency``).
        delay: Seconds between requests to one host (a larger robots.txt Crawl-delay wins).
        max_pages: URLs fetched by the crawl: with a state file, over all its runs (a
            resume fetches what is left; a larger value extends the crawl; a URL held
            back by an unreachable robots.txt counts once it is fetched).
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
        obey_nofollow: Follow no link of a page whose robots meta tag or X-Robots-Tag
            header says nofollow (False: follow them anyway).
        user_agent: The User-Agent header (also the name robots.txt rules are read for).
        headers: Headers for every request to every host: ``{"Accept-Language": "fr"}``
            or a list of ``"Name: value"`` strings (or pairs). ``Authorization`` and
            ``Cookie`` among them are credentials: sent to the start URLs' origins only,
            like ``auth``. Others are not secret: sent everywhere, kept in WARC request
            records. shoal's own headers (Host, User-Agent: see ``user_agent``,
            Accept-Encoding, Connection, conditional ones...) are refused.
        header_for: Headers for one host only: ``{"api.example.com": {"X-Api-Key":
            key}}``. A key ``HOST`` matches every port of it, ``HOST:PORT`` one port;
            sent over https, and over plain http only if the key says ``http://HOST``
            or a start URL on that host is http. Treated as secrets (redacted in WARC
            records); the more specific wins over ``headers`` and ``auth``.
        auth: HTTP Basic credentials, ``"USER:PASSWORD"`` or ``(user, password)``: sent
            only to the start URLs' origins (scheme, host and port; an http start URL's
            also to https on the same host), never to another host or from https down
            to http, whatever redirects say; redacted in WARC records.
        timeout: Seconds per request, whole (connecting at most 10 of them).
        retries: Retries of a URL after a connection error, timeout, 429 or 5xx.
        retry_backoff: Seconds before the first retry (jittered 0.5-1.5x); doubles with
            each retry. A Retry-After from the server wins.
        extract: Fields added to each record: name -> CSS selector (``::text``,
            ``::attr(x)``) or ``xpath:EXPR``; a name ending in ``[]`` keeps every match.
        sitemaps: Also start from the sitemaps robots.txt names.
        sitemaps_only: Fetch the start URLs and the pages the sitemaps list (robots.txt's
            Sitemap: lines, else /sitemap.xml), following no link found in a page
            (``on_page``'s URLs are still followed). Needs ``robots``.
        auto_throttle: Adapt each host's delay to its latency.
        throttle_target: Requests in flight per host that auto-throttle aims at.
        throttle_start: Auto-throttle's first delay per host, in seconds.
        verify_tls: Verify TLS certificates.
        transport: HTTP client: ``"native"`` (shoal's own) or ``"urllib3"``, or a
            :class:`~shoal.http.Transport` object (e.g. :class:`~shoal.http.MockTransport`
            to test ``on_page`` without a server), which the caller owns and closes;
            such an object makes its own connections, so ``proxy`` must be left as is.
        fetcher: What fetches each URL: a :class:`PageFetcher`, which the caller owns
            (it brings its own transport: ``transport`` must be left as is), or a
            factory called as the run starts with a :class:`FetchSetup` (the options
            and the crawl's transport) whose fetcher the crawler closes at the run's
            end. None: :class:`HTTPFetcher` over ``transport``. Scope, robots.txt,
            politeness and ``deny_private`` hold whatever the fetcher.
        proxy: ``"env"``: http_proxy/https_proxy/no_proxy from the environment; None or
            ``"none"``: no proxy; otherwise the URL of an HTTP proxy
            (``http://[user:password@]host:port``), or a list of them: a pool, in which
            each host name goes through one proxy (the same in every process), and a proxy
            that fails ``proxy_max_failures`` times in a row is retired, its hosts moving
            to the others. With none left the crawl stops (:class:`~shoal.NoProxyLeft`),
            never connecting without one. The environment's no_proxy hosts are fetched
            directly, as curl does.
        proxy_file: A file of proxy URLs, one a line (``#`` comments): a pool, with
            ``proxy``'s URLs if given.
        proxy_max_failures: Failures in a row (refused, reset, timed out connecting,
            an answer that is not HTTP, 407) that retire a proxy, 1 to 100; any answer
            from it starts the count again.
        deny_private: Connect only to public IP addresses (refusals are the error kind
            ``blocked``): for crawling URLs someone else chose.
        output: Output file (.jsonl, .csv, .sqlite, .warc.gz); None or ``"-"``: stdout. A
            list of files: every record goes to each (e.g. ``["pages.jsonl",
            "crawl.warc.gz"]``), each resumed at its own committed offset; the state is
            named after the first.
        format: ``jsonl``, ``csv``, ``sqlite`` or ``warc``; None: from the file suffix.
            Only with one output (several take their formats from their suffixes).
        progress: Show the live progress line; None: when stderr is a terminal.
        grace: Seconds in-flight requests get to finish after the first Ctrl-C.
        state: Path of the state file that makes the crawl resumable; ``"auto"``:
            OUTPUT.state.sqlite (none for stdout); None: keep state in memory.
        fresh: Discard this crawl's existing state and output and start over.
        overwrite: Replace an existing output file that is not this crawl's.
        memory_limit: Queued URLs kept in memory; the rest wait in the state file.
        save_bodies: Add the response body and its SHA-256 to each record.
        recrawl: After a finished or interrupted crawl with this output and state, crawl
            again (run N+1): revisit every URL the state knows with conditional requests,
            follow links from new and changed pages, and append one record per URL with
            ``run`` and ``change`` (``new``, ``changed``, ``unchanged``, ``gone``;
            ``disallowed`` if robots.txt now says so). Running it again after an
            interruption finishes that run. Needs a state file, or ``redis`` (the
            workers of a shared crawl share its recrawl runs).
        revisit_after: With ``recrawl``: seconds; only URLs last fetched longer ago are
            revisited (a run with none due adds nothing and says when the next is due).
        hosts: Settings per host: a host name (every port of it) or ``name:port`` ->
            a :class:`HostSettings` or a mapping of its fields (``{"per_host": 1,
            "delay": 2.0}``), which override the crawl's options for the hosts it matches.
        cookies: The crawl's cookie jar (RFC 6265; kept in the state file, so a resume
            keeps the session, and shared by ``redis`` workers): True on, False off, or
            the path of a Netscape cookies.txt (``curl -c``, ``wget --save-cookies``, a
            browser exporter) to start it with. Cookie values never reach the records,
            the log or the WARC request records.
        save_cookies: Write the jar to this cookies.txt when the run ends (atomically;
            an existing file there must be a cookies.txt).
        render: ``"always"``: load every HTML page (a 2xx answer) in a headless Chromium
            and take its title, links and ``extract`` fields from the DOM its scripts
            built; records then carry ``rendered`` and ``render_reason``. ``"auto"``:
            only the pages that look built by script, and those of a host (or folder)
            where rendering was learned to find more. ``"never"``: plain HTTP only.
            Needs ``pip install 'shoal[render]'`` and a Chromium (``apt-get install
            chromium``); not with ``fetcher``. A WARC output also gets every response
            the browser loaded for a page. A host's own ``render`` (``hosts``) wins
            over this for its pages.
        render_timeout: Seconds per rendered page, a hard limit: past it the page is
            recorded ``render_timeout`` (a crashed tab: ``render_crash``).
        render_concurrency: Browser pages at once.
        render_wait: After the load event the DOM is read once the page's own requests
            have been quiet this many seconds (capped by ``render_timeout``); None:
            0.5, or 0 when ``render_wait_for`` is given.
        render_wait_for: A CSS selector: the DOM is read once an element matching it is
            in the page (capped likewise).
        render_block: Resource types the browser never requests: ``"images,fonts,media"``
            or a part of it, or ``"none"``.
        browser: The Chromium or Chrome to render with (a path or a name on PATH);
            None: ``chromium`` or ``chrome`` found on PATH.
        login: Log in before the crawl (README: Logging in): the login page's URL (on a
            host in scope), whose form is filled with ``form`` and submitted; or a hook
            ``login(session)`` given a :class:`~shoal.crawler.LoginSession` (``get``,
            ``submit``, ``post``) that returns True once logged in. A failure stops the
            crawl with :class:`~shoal.LoginFailed`; a page that later answers with the
            login page (the session expired) makes it log in again and fetch that page
            once more. Needs the cookie jar.
        form: With a login URL: field name -> value set in its form over the page's own
            (hidden fields such as CSRF tokens are kept). Secrets: never logged, never
            written anywhere.
        login_form: A CSS selector of the login form (default: the first form with a
            password input).
        login_check: Text the page the login answers with must contain (besides not
            showing the login form again).
        follow_logout: With a login, follow logout links too (by default a link whose URL
            path or query names a logout, or whose text says "Log out", "Sign out"...,
            is not followed: it would end the session).
        render_scroll: Scroll steps per rendered page (lazy and infinite-scroll pages),
            each waiting for the page's requests to settle; all within ``render_timeout``.
        render_script: A JavaScript file run in each rendered page before its DOM is
            read (its promise awaited), e.g. to click "load more"; read once at the start.
        render_hook: ``async def hook(page)``, given each rendered Playwright page before
            its DOM is read. It runs on the browser's own thread and event loop (call no
            blocking code in it) within the page's deadline; what it raises is recorded
            as the page's ``render_hook`` error.
        render_memory: MB the browser's process tree may hold (its PSS, read from
            /proc) before new pages wait for pages under way to end.
        render_resources: ``"any"``: a rendered page's subresources (scripts, XHR,
            stylesheets) may come from any host (a CDN, an API host), each under that
            host's robots.txt, ``per_host`` and ``deny_private``; never pages of the
            crawl. ``"scope"``: only from hosts in the crawl's scope.

    Raises:
        UsageError: an option value is out of range (the message names the option);
            InvalidURL for a start URL that cannot be crawled; also a start URL outside
            ``allow_domains`` or matched by ``exclude``/``exclude_glob`` (one that does
            not match ``include``/``include_glob`` is fetched: it may be a hub page).
    """

    def __init__(
        self,
        start_urls: str | Sequence[str],
        *,
        on_page: PageCallback | None = None,
        follow_links: bool = True,
        frontier: Frontier | None = None,
        redis: str | None = None,
        crawl_id: str | None = None,
        worker_id: str | None = None,
        lease_ttl: float = LEASE_TTL,
        allow_weak_durability: bool = False,
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
        obey_nofollow: bool = CrawlOptions.obey_nofollow,
        user_agent: str = CrawlOptions.user_agent,
        headers: HeadersGiven = CrawlOptions.headers,
        header_for: Mapping[str, HeadersGiven] | None = None,
        auth: str | tuple[str, str] | None = CrawlOptions.auth,
        timeout: float = CrawlOptions.timeout,
        retries: int = CrawlOptions.retries,
        retry_backoff: float = CrawlOptions.retry_backoff,
        extract: Mapping[str, str] | None = None,
        sitemaps: bool = CrawlOptions.sitemaps,
        sitemaps_only: bool = CrawlOptions.sitemaps_only,
        auto_throttle: bool = CrawlOptions.auto_throttle,
        throttle_target: float = CrawlOptions.throttle_target,
        throttle_start: float = CrawlOptions.throttle_start,
        verify_tls: bool = CrawlOptions.verify_tls,
        transport: str | Transport = CrawlOptions.transport,
        fetcher: PageFetcher | FetcherFactory | None = None,
        proxy: str | Sequence[str] | None = CrawlOptions.proxy,
        proxy_file: str | None = CrawlOptions.proxy_file,
        proxy_max_failures: int = CrawlOptions.proxy_max_failures,
        deny_private: bool = CrawlOptions.deny_private,
        output: str | Sequence[str] | None = CrawlOptions.output,
        format: str | None = CrawlOptions.format,
        progress: bool | None = CrawlOptions.progress,
        grace: float = CrawlOptions.grace,
        state: str | None = CrawlOptions.state,
        fresh: bool = CrawlOptions.fresh,
        overwrite: bool = CrawlOptions.overwrite,
        memory_limit: int = CrawlOptions.memory_limit,
        save_bodies: bool = CrawlOptions.save_bodies,
        recrawl: bool = CrawlOptions.recrawl,
        revisit_after: float | None = CrawlOptions.revisit_after,
        hosts: Mapping[str, HostSettings | Mapping[str, object]] | None = None,
        cookies: bool | str = CrawlOptions.cookies,
        save_cookies: str | None = CrawlOptions.save_cookies,
        render: str = CrawlOptions.render,
        render_timeout: float = CrawlOptions.render_timeout,
        render_concurrency: int = CrawlOptions.render_concurrency,
        render_wait: float | None = CrawlOptions.render_wait,
        render_wait_for: str | None = CrawlOptions.render_wait_for,
        render_block: str = CrawlOptions.render_block,
        browser: str | None = CrawlOptions.browser,
        login: str | LoginHook | None = CrawlOptions.login,
        form: Mapping[str, str] | None = None,
        login_form: str | None = CrawlOptions.login_form,
        login_check: str | None = CrawlOptions.login_check,
        follow_logout: bool = CrawlOptions.follow_logout,
        render_scroll: int = CrawlOptions.render_scroll,
        render_script: str | None = CrawlOptions.render_script,
        render_hook: RenderHook | None = None,
        render_memory: int = CrawlOptions.render_memory,
        render_resources: str = CrawlOptions.render_resources,
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
            obey_nofollow=obey_nofollow,
            user_agent=user_agent,
            headers=headers,
            header_for={} if header_for is None else header_for,
            auth=auth,
            timeout=timeout,
            retries=retries,
            retry_backoff=retry_backoff,
            extract={} if extract is None else extract,
            sitemaps=sitemaps,
            sitemaps_only=sitemaps_only,
            auto_throttle=auto_throttle,
            throttle_target=throttle_target,
            throttle_start=throttle_start,
            verify_tls=verify_tls,
            # A transport object stands in for the native client's place in the options.
            transport=transport if isinstance(transport, str) else "native",
            proxy=proxy,
            proxy_file=proxy_file,
            proxy_max_failures=proxy_max_failures,
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
            recrawl=recrawl,
            revisit_after=revisit_after,
            hosts={} if hosts is None else hosts,
            cookies=cookies,
            save_cookies=save_cookies,
            render=render,
            render_timeout=render_timeout,
            render_concurrency=render_concurrency,
            render_wait=render_wait,
            render_wait_for=render_wait_for,
            render_block=render_block,
            browser=browser,
            login=login,
            form={} if form is None else form,
            login_form=login_form,
            login_check=login_check,
            follow_logout=follow_logout,
            render_scroll=render_scroll,
            render_script=render_script,
            render_memory=render_memory,
            render_resources=render_resources,
        )
        opts = self.options
        self._transport = None if isinstance(transport, str) else transport
        if self._transport is not None and (
            proxy not in (CrawlOptions.proxy, None, "none") or proxy_file is not None
        ):
            given = "proxy_file" if proxy_file is not None else "proxy"
            raise UsageError(
                "a transport object makes its own connections: give it the proxy, not "
                f"Crawler({given}=...)"
            )
        if _is_fetcher(fetcher) and transport != CrawlOptions.transport:
            raise UsageError(
                "a fetcher given as an object fetches by itself: give it the transport, not "
                "Crawler(transport=...) (a fetcher factory gets the crawl's transport)"
            )
        if opts.renders():
            from ._render import check_render

            # Before anything is opened: a missing browser or extra is a usage error.
            check_render(opts, fetcher_given=fetcher is not None, formats=infer_formats(opts))
            if fetcher is None:
                script = opts.render_script_source()
                fetcher = functools.partial(_browser_fetcher, script=script, hook=render_hook)
        elif render_hook is not None:  # the render options were checked with the others
            raise UsageError.naming(NEEDS_RENDER)
        self._fetcher_given = fetcher
        self.start_urls = [parse_start_url(u) for u in start_urls]
        for url in start_urls:
            refuse_credentials(url)
        self.scope = Scope.for_start_urls(
            self.start_urls,
            allow_domains=opts.allow_domains,
            include=opts.include,
            exclude=opts.exclude,
            max_depth=opts.max_depth,
            include_glob=opts.include_glob,
            exclude_glob=opts.exclude_glob,
        )
        for url in self.start_urls:
            self.scope.check_start_url(url)  # a start URL the scope shuts out is a usage error
        # Which of the user's headers each URL gets (credentials: the start URLs' origins).
        self._headers = RequestHeaders(opts.header_rules(), self.start_urls)
        # A bad cookies file or a --save-cookies path that cannot be written fails here,
        # before anything is opened.
        self._cookie_file: list[Cookie] = []
        if isinstance(opts.cookies, str):
            self._cookie_file = read_cookies_file(opts.cookies)
        if opts.save_cookies is not None:
            check_save_path(opts.save_cookies)
        self._jar: CookieJar | None = None  # the run's cookie jar
        self._login: Login | None = None  # the run's login, if one is asked for
        # The login URL's own checks are the options'; its scope comes from the start URLs.
        self._login_url = opts.login_url()
        if self._login_url is not None and not self.scope.allows_host(
            split_url(self._login_url).host
        ):
            raise UsageError.naming(
                f"the {{login}} URL {literal(self._login_url)} is outside the crawl's "
                "scope: its host is not a start URL's host nor in {allow_domains}"
            )
        self._cookie_sync: CookieSync | None = None  # and the state keeping it
        self._records = Records(
            on_page,
            follow_links=follow_links and not opts.sitemaps_only,
            extract=opts.extract,
            save_bodies=opts.save_bodies,
            rendering=opts.renders(),
        )
        outputs = opts.output_paths()
        if len(outputs) > 1 and is_stream_path(str(outputs[0])):
            # The state is named after the first output; a stream keeps none, and the
            # other files could then never be resumed.
            raise UsageError(
                f"the first of several outputs names the crawl's state: {outputs[0]} is a "
                "device or pipe, not a file; put a file first"
            )
        self.formats = [infer_format(path, opts.format) for path in outputs]
        self.format = self.formats[0]
        if frontier is not None and opts.state not in (None, "auto"):
            raise UsageError(
                "a frontier given to Crawler(frontier=...) keeps the crawl's state itself: "
                f"do not give a state file too (state={opts.state!r})"
            )
        shared = SharedCrawl(redis, crawl_id, worker_id, lease_ttl, allow_weak_durability)
        shared.check_unshared()
        # A shared crawl is joined by run(), not here: a crawler never run (or whose run
        # fails) leaves no connection or thread behind.
        self._shared: SharedCrawl | None = None
        if redis is not None:
            if frontier is not None:
                raise UsageError("give redis= or frontier=, not both")
            check_shared(shared, opts, self.formats)
            self._shared = shared
        self._given_frontier = frontier
        if opts.recrawl:
            _check_recrawl(opts, self.formats, redis, frontier)
        # A shared crawl's is the Redis frontier run() connects.
        self.frontier: Frontier = frontier or MemoryFrontier(
            per_host=opts.per_host,
            delay=opts.initial_delay,
            robots=opts.robots,
            paces=opts.paces(),
        )
        # Named after the first output: adding outputs to a crawl's command keeps its name.
        self.state_path = (
            None
            if frontier is not None or redis is not None
            else state_path_for(opts.state, outputs[0])
        )
        self.result = CrawlResult()
        # The crawl's one lock: the result's totals and the live counters below, shared
        # with this run's Jobs.
        self._lock = threading.Lock()
        self._in_flight = 0
        self._hosts_busy: dict[str, int] = {}  # host -> requests in flight (live view)
        # host -> when its delay after its last request ends (live view: a host between
        # two requests of a --delay crawl is active too); pruned as it grows.
        self._hosts_waiting: dict[str, float] = {}
        self._prune_waiting_at = 64
        self._taken = 0
        self._earlier_pages = 0  # a resumed crawl's pages from earlier runs
        # First tries promised to leases in flight (the dispatcher's, and each finishing
        # job's for its successor): budget = max_pages - taken - reserved, so two threads
        # leasing at once never take more than --max-pages together.
        self._reserved = 0
        self._wake_at: float | None = None
        self._deadline: float | None = None
        self._ran = False  # a Crawler runs once (see run())
        # The frontier's last queue count read: the result's if it cannot be read at the end.
        self._last_queued = 0
        self._stopping = False
        self._abandoned = False  # --max-time left tasks running: their writes are moot
        self._fatal: BaseException | None = None
        self._pool: Pool[Lease] | None = None
        # One thread dispatches at a time, outside self._lock; a request made meanwhile
        # is picked up by that thread (see _dispatch).
        self._dispatching = threading.Lock()
        self._dispatch_wanted = False
        self._writer: Writer | None = None
        # One run's parts, made by run(): its outputs and state file, and what a worker
        # does with a job (fetching through the run's fetcher).
        self._session: RunSession | None = None
        self._jobs: Jobs | None = None
        self._run_closes: list[Callable[[], None]] = []  # what this run built, to close
        self._proxies: ProxyRules | None = None  # the proxies of the transport it built
        # Where "resuming...", "already complete" and what --fresh discards are told;
        # the command line prints them, the library logs them.
        self.announce: Callable[[str], None] = lambda message: logger.info("%s", message)

    @property
    def record_fields(self) -> list[str]:
        """The fields of each record: the standard ones plus ``extract`` names."""
        return self._records.fields

    @overload
    def route(self, label: PageCallback, /) -> PageCallback: ...

    @overload
    def route(
        self, label: str | None = None, *, glob: str | None = None
    ) -> Callable[[PageCallback], PageCallback]: ...

    def route(
        self, label: str | PageCallback | None = None, *, glob: str | None = None
    ) -> Callable[[PageCallback], PageCallback] | PageCallback:
        """A decorator: the pages of requests labelled ``label``
        (``shoal.Request(url, label=...)``), or, with ``glob``, of URLs whose path matches
        it (``"/product/*"``; the first match in the order added) go to the decorated
        handler; ``route()`` with neither is the default, as ``on_page`` is (giving both
        is an error). A label wins over globs; a page nothing matches gets the standard
        record. Once there is a route by label, a request labelled with no route fails
        the callback that gave it (the record says so); without one, labels are only data
        (``page.request.label``). Routes are added before :meth:`run`. A bare
        ``@crawler.route`` (no parentheses) is ``@crawler.route()``."""
        if callable(label) and glob is None:
            self._records.routes.add(None, None, label)
            return label
        if label is not None and not isinstance(label, str):
            raise UsageError(f"a route's label is a string, not {type(label).__name__}")
        named = label

        def add(handler: PageCallback) -> PageCallback:
            self._records.routes.add(named, glob, handler)
            return handler

        return add

    def identity(self) -> dict[str, object]:
        """What makes a state file belong to this crawl (checked when resuming)."""
        paths = [
            os.path.abspath(p) if p and p != "-" else None for p in self.options.output_paths()
        ]
        identity: dict[str, object] = {
            "start_urls": sorted(self.start_urls),
            "scope": self.options.scope_key(),
            "output": paths[0],
            "format": self.format,
        }
        if len(paths) > 1:
            # Only with several, so a one-output crawl's state from before still matches.
            identity["outputs"] = [[p, f] for p, f in zip(paths, self.formats, strict=True)]
        if self.options.renders():
            # Rendered records carry "rendered" (a CSV column): another mode would not fit.
            identity["render"] = self.options.render
        if self.options.extract:
            # Records of another extract set would not fit the output (CSV columns).
            identity["extract"] = dict(self.options.extract)
        return identity

    # -- running -------------------------------------------------------------------------

    def run(self) -> CrawlResult:
        """Crawl until nothing is left or a limit is reached.

        KeyboardInterrupt (Ctrl-C) stops intake, lets in-flight requests finish within
        ``grace`` seconds, writes what they produced, and propagates; ``self.result``
        then says what was done and ``interrupted`` is True.

        A Crawler runs once: a second ``run()`` raises UsageError. A crawl with a state
        file continues where this run left off in a new ``Crawler`` with the same options.

        Whatever ends the run (an exception included), its outputs are written and closed,
        and its fetcher, frontier and state file closed, before ``run()`` returns or raises.
        """
        with self._lock:
            ran, self._ran = self._ran, True
        if ran:
            # Tasks a --max-time run abandoned may still be running on this object, and
            # its fetcher and frontier are closed: a second run would share their state.
            raise UsageError(
                "this Crawler has run already: a Crawler runs once (to continue a crawl "
                "with a state file, make a new Crawler with the same options: it resumes "
                "where the last run left off)"
            )
        opts = self.options
        self._records.routes.frozen = True  # read by every worker without a lock from now
        # 1. The shared crawl joined (its worker not registered yet), the fetcher (and its
        # transport), then the outputs and the state file.
        joined = None
        if self._shared is not None:
            joined = connect_shared(self._shared, opts, self.identity())
            self.frontier = self._given_frontier = joined
        try:
            fetcher, guard = self._open_fetcher()
            session = self._session = RunSession(
                opts,
                formats=self.formats,
                state_path=self.state_path,
                frontier=self.frontier,
                given_frontier=self._given_frontier,
                result=self.result,
                announce=self.announce,
                register=None if joined is None else joined.register,
                request_headers=None if self._headers.empty else self._headers.recorded,
            )
            self._writer = session.open(
                self.identity(),
                self._records.columns,
                header_from_first_record=self._records.has_handler,
            )
        except BaseException:
            self._close_fetcher()
            if joined is not None:
                joined.close()
            raise
        self.frontier = session.frontier  # a SQLite frontier over the state file
        revisit = None
        if session.prior is not None and session.generation > 1:
            revisit = Revisit(session.generation, session.prior)
        if session.earlier_pages:  # --max-pages is the crawl's, over all its runs
            self._earlier_pages = self._taken = session.earlier_pages
        started = time.monotonic()
        interrupted = False
        progress: ProgressDisplay | None = None
        # From here on everything opened so far (writer, fetcher, frontier, state file) is
        # closed by _finish, however the run ends: building the pool may fail too.
        try:
            # 2. The cookie jar, with what the state holds (a resumed or shared crawl's
            # session) and then the cookies file's (given for this run: they win).
            cookies = None
            if opts.cookies is not False:
                jar = self._jar = CookieJar()
                frontier = self.frontier
                cookies = CookieSync(
                    jar,
                    load=getattr(frontier, "load_cookies", None),
                    store=getattr(frontier, "note_cookies", None),
                    version=(
                        getattr(frontier, "cookies_version", None)
                        if getattr(frontier, "shared", False)
                        else None
                    ),
                )
                cookies.start()
                self._cookie_sync = cookies
                if self._cookie_file:
                    jar.add(self._cookie_file)
            # 3. What a worker does with a job: fetch it through the gate, build its records.
            self._jobs = Jobs(
                opts,
                scope=self.scope,
                frontier=self.frontier,
                fetcher=fetcher,
                guard=guard,
                records=self._records,
                formats=self.formats,
                result=self.result,
                lock=self._lock,
                stopping=self._is_stopping,
                revisit=revisit,
                headers=self._headers.headers_for(),
                proxies=self._proxies,
                cookies=cookies,
            )
            # 3b. The login, before any page of the crawl (README: Logging in).
            if opts.login is not None:
                self._login = self._jobs.start_login(self._login_hook())
            # 4. The pool runs _handle on each leased job; _dispatch keeps it fed (see above).
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
                enabled=progress_enabled(opts.progress, opts.output_paths()[0]),
            )
            progress.start()
            if self.result.stopped_by is None:  # else earlier runs spent --max-pages
                added = self.frontier.submit([Candidate(url) for url in self.start_urls])
                with self._lock:
                    self.result.discovered += len(added)
                read_robots = getattr(self.frontier, "read_robots", None)
                if session.lastmod_only and read_robots is not None:
                    # Nothing is queued: the start hosts' robots.txt leads to their sitemaps.
                    read_robots(sorted({host_key(url) for url in self.start_urls}))
                self._writer.write(Commit())  # the start URLs reach the state file now
                self._dispatch()
                self._join()
        except KeyboardInterrupt:
            interrupted = True
            with self._lock:
                self._stopping = True
                self.result.interrupted = True
                self.result.stopped_by = "interrupt"
            if self._pool is not None:
                self._drain_after_interrupt()
            raise
        except BaseException as exc:
            with self._lock:
                self._stopping = True
                if self._fatal is None:  # the state file records a failed run
                    self._fatal = exc
            if self._pool is not None:
                self._pool.cancel()  # nothing more starts; tasks in flight end
            raise
        finally:
            try:
                if progress is not None:
                    progress.stop()
            finally:
                self._finish(started, interrupted)
        with self._lock:
            fatal = self._fatal
        if fatal is not None:
            raise fatal
        return self.result

    def _login_hook(self) -> LoginHook:
        opts = self.options
        if callable(opts.login):
            return opts.login
        assert self._login_url is not None
        jar = self._jar
        return FormLogin(
            self._login_url,
            opts.form,
            selector=opts.login_form,
            check=opts.login_check,
            had_cookies=lambda: jar is not None and bool(jar),
        )

    def _open_fetcher(self) -> tuple[PageFetcher, Callable[[str], None] | None]:
        """This run's fetcher (and the transport under it, if it needs one), and the
        ``deny_private`` check every request passes whatever the fetcher."""
        opts = self.options
        resolver = Resolver() if opts.deny_private else None
        given = self._fetcher_given
        # A transport or fetcher object looks hosts up itself: every address must be public.
        strict = given is not None or self._transport is not None
        guard = (
            None
            if resolver is None
            else PublicOnly(resolver, min(opts.timeout, 10.0), strict=strict)
        )
        if _is_fetcher(given):
            return given, guard  # the caller's: not closed here
        transport = self._transport
        if transport is None:
            self._proxies = opts.proxy_rules()
            transport = make_transport(
                opts.transport,
                per_host=opts.most_per_host,
                connect_timeout=min(opts.timeout, 10.0),
                read_timeout=opts.timeout,
                verify_tls=opts.verify_tls,
                proxies=self._proxies,
                deny_private=opts.deny_private,
                resolver=resolver,  # one lookup per host for the check and the connection
            )
            self._run_closes.append(transport.close)
        # Not a fetcher object (returned above): a factory.
        factory = HTTPFetcher.from_setup if given is None else cast(FetcherFactory, given)
        fetcher = factory(
            FetchSetup(
                opts,
                transport,
                archive="warc" in self.formats,
                shared=bool(getattr(self.frontier, "shared", False)),
            )
        )
        self._run_closes.append(fetcher.close)
        return fetcher, guard

    def _is_stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def _close_fetcher(self) -> None:
        closes, self._run_closes = self._run_closes, []
        for close in reversed(closes):  # the fetcher, then its transport
            try:
                close()
            except Exception:
                logger.exception("closing the fetcher failed")

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
            self._pool.shutdown(grace=0, log=False)
            self._abandon_in_flight("stopping at the time limit")

    def _drain_after_interrupt(self) -> None:
        """The first interrupt: requests in flight get ``grace`` seconds to finish and be
        written; what is queued is left queued. A second interrupt meanwhile (the
        KeyboardInterrupt raised out of shutdown) abandons them at once."""
        assert self._pool is not None
        with self._lock:
            in_flight = self._in_flight
        queued = (
            "queued URLs stay queued for the resume"
            if self._resumable()
            else "queued URLs are not fetched (this crawl keeps no state to resume from)"
        )
        try:
            # Inside the try: a user who reads this line and interrupts again at once
            # must reach the "interrupted again" path, even before shutdown() is entered.
            self.announce(
                f"interrupted: finishing {in_flight} request(s) in flight (at most "
                f"{self.options.grace:g} s; interrupt again to quit at once); {queued}"
            )
            self._pool.shutdown(log=False)
        except KeyboardInterrupt:
            self._abandon_in_flight("interrupted again")
            raise
        self._abandon_in_flight(f"still in flight after {self.options.grace:g} s")

    def _abandon_in_flight(self, why: str) -> None:
        """Say how many requests are left running, unwritten (their URLs were never
        committed, so a durable crawl still has them queued)."""
        with self._lock:
            n = self._in_flight
            if n:
                self._abandoned = True
                self.result.abandoned = n
        if n:
            fate = "stay queued for the resume" if self._resumable() else "are not fetched"
            self.announce(f"{why}: {n} request(s) in flight abandoned; their URLs {fate}")

    def _resumable(self) -> bool:
        session = self._session
        return session.resumable if session is not None else self.frontier.durable

    def _finish(self, started: float, interrupted: bool) -> None:
        """Stop the pool, count what is left, and close everything the run opened, each
        step whatever the others do: the writer first (its last commits reach the state
        file), then the fetcher, the frontier and the state file. A failure here becomes
        the run's error (the first one; the rest are logged), raised by run() after the
        closes, unless another exception is on its way out already."""
        assert self._writer is not None and self._session is not None
        writer, session = self._writer, self._session

        def count() -> None:
            with self._lock:
                abandoned = self._abandoned
            if self._pool is not None and not interrupted and not abandoned:
                self._pool.close()
            try:
                self._queued()
            finally:  # lost (a shared frontier's Redis gone): the last count read
                with self._lock:  # abandoned tasks may still be counting
                    self.result.elapsed = time.monotonic() - started
                    # Abandoned leases were never finished: not fetched either (a state
                    # file counts them as queued; session.close takes its count).
                    self.result.pending = self._last_queued + self.result.abandoned
                    if self._proxies is not None:
                        self.result.proxies = self._proxies.stats()
                    login = self._login
                    if login is not None and login.logins > 1:
                        self.result.notes.append(
                            f"logged in {login.logins} times: the session expired "
                            f"{login.logins - 1} time(s), each page fetched again logged in"
                        )

        def close_session() -> None:
            with self._lock:
                fatal = self._fatal
            session.close(interrupted, fatal)

        def settle_cookies() -> None:
            # Only a fresher expiry is at stake: a state that cannot take it now fails
            # the run at its own step, not here.
            if self._cookie_sync is not None:
                try:
                    self._cookie_sync.finish()
                except StateError as exc:
                    logger.warning("could not store the cookies' last expiries: %s", exc)

        def save_cookies() -> None:
            jar, path = self._jar, self.options.save_cookies
            if jar is not None and path is not None:
                try:
                    n = jar.save(path)
                except OSError as exc:
                    raise UsageError(
                        f"cannot save cookies to {path}: {exc.strerror or exc}"
                    ) from None
                logger.info("saved %d cookie(s) to %s", n, path)

        interrupt: BaseException | None = None
        steps = (
            count,
            writer.close,
            self._close_fetcher,
            settle_cookies,
            self.frontier.close,
            close_session,
            save_cookies,
        )
        for step in steps:
            try:
                step()
            except Exception as exc:
                with self._lock:
                    first = self._fatal is None
                    if first:
                        self._fatal = exc
                # A writer's error is the one that failed the crawl: said once.
                if not first and not isinstance(exc, WriterError):
                    logger.error("ending the run: %s", exc, exc_info=exc)
            except BaseException as exc:  # noqa: BLE001 - Ctrl-C: close the rest, then raise it
                interrupt = interrupt or exc
        if interrupt is not None:
            raise interrupt

    def _queued(self) -> int:
        """The frontier's queue count, kept as the last one read."""
        queued = self.frontier.stats().queued
        with self._lock:
            self._last_queued = queued
        return queued

    def _progress_state(self) -> ProgressState:
        """The live view: called by the progress display's thread."""
        pending = self._queued()
        with self._lock:
            r = self.result
            done = r.pages
            in_flight = self._in_flight
            # Active: a request in flight, or waiting on the host's delay for the next.
            self._prune_waiting(time.monotonic())
            hosts = len(self._hosts_busy.keys() | self._hosts_waiting.keys())
            errors = tuple(r.errors.most_common())
            failed = r.failed
        total = done + pending + in_flight
        # This run fetches at most what earlier runs left of max_pages: past that, the
        # queue is not work left.
        budget = max(self.options.max_pages - self._earlier_pages, 0)
        bounded = total >= budget
        deadline = self._deadline
        return ProgressState(
            done=done,
            total=min(total, budget),
            failed=failed,
            note=f"queued {pending}, hosts {hosts}",
            bounded=bounded,
            errors=errors,
            time_left=None if deadline is None else deadline - time.monotonic(),
        )

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self, *, asked: bool = False) -> None:
        """Move whatever the frontier has ready into the pool. One thread at a time
        dispatches, without self._lock held while it asks the frontier; a thread that
        finds another dispatching leaves a request (``_dispatch_wanted``) that one picks
        up before it lets go. ``asked``: the caller has set the request, under the lock."""
        if not asked:
            with self._lock:
                self._dispatch_wanted = True
        while self._dispatching.acquire(blocking=False):
            try:
                while self._dispatch_once():
                    pass
            finally:
                self._dispatching.release()
            with self._lock:
                if not self._dispatch_wanted:
                    return
            # Asked for between our last look and the release: go round again.
        # Another thread is dispatching: it sees the request before it lets go.

    def _dispatch_once(self) -> bool:
        """One round of dispatch; True if another was asked for meanwhile."""
        now = time.monotonic()
        notices: list[str] = []
        with self._lock:
            self._dispatch_wanted = False
            if self._stopping:
                return False
            free = self.options.concurrency - self._in_flight
            if self._deadline is not None and now >= self._deadline:
                self._stop("max_time", notices)
                free = 0
            spent = self._taken >= self.options.max_pages
            free, reserved = self._reserve(free)
        if spent and self._queued():
            with self._lock:
                self._stop("max_pages", notices)  # retries of counted pages still run
        jobs: list[Lease] = []
        ready_in: float | None = None
        if free > 0:
            # Only this thread dispatches, so `free` cannot shrink meanwhile (a successor
            # lease only refills the slot its own job leaves).
            try:
                jobs, ready_in = self.frontier.lease(free, reserved)
            except StateError as exc:
                # A shared frontier lost for good (Redis gone past its reconnect time):
                # ending quietly would look like a finished crawl.
                self._accept([], None, reserved, now)
                self._fail_crawl(exc)
                return False
        again = self._accept(jobs, ready_in, reserved, now)
        for notice in notices:  # logging handlers are user code: never under the lock
            logger.warning("%s", notice)
        return again

    def _reserve(self, slots: int) -> tuple[int, int]:
        """Under the lock: how many of ``slots`` may be leased now, and the first tries
        reserved for them (budget = max_pages - taken - reserved)."""
        reserved = max(0, min(slots, self.options.max_pages - self._taken - self._reserved))
        self._reserved += reserved
        if reserved == 0 and self._taken < self.options.max_pages:
            # Other leases in flight hold what is left of the budget: a lease with budget 0
            # would read as "spent" to the frontier. Their tasks dispatch again as they end.
            slots = 0
        return slots, reserved

    def _accept(self, jobs: list[Lease], ready_in: float | None, reserved: int, now: float) -> bool:
        """Count leased jobs in, hand them to the pool and schedule the next wake-up;
        ``reserved``: the first tries promised to that lease, now settled. True if a
        dispatch was asked for meanwhile."""
        assert self._pool is not None
        wake_in: float | None = None
        with self._lock:
            self._reserved -= reserved
            for job in jobs:
                if job.kind is not JobKind.ROBOTS and job.attempt == 1:
                    self._taken += 1
                self._hosts_busy[job.host] = self._hosts_busy.get(job.host, 0) + 1
                self._note_delay(job.host, now)
            self._in_flight += len(jobs)
            if ready_in is not None:
                next_at = now + ready_in
                if self._wake_at is None or next_at < self._wake_at:
                    if self._deadline is not None:
                        next_at = min(next_at, self._deadline)
                    self._wake_at = next_at
                    wake_in = max(next_at - now, 0.0005)
            again = self._dispatch_wanted
        for job in jobs:
            self._pool.put(job)
        if wake_in is not None:
            self._pool.put(_WAKE, delay=wake_in)
        return again

    def _note_delay(self, host: str, now: float) -> None:
        """Under the lock, as a job for ``host`` starts: until when the host waits on its
        delay (as the frontier counts it: from the start of the request), for the live
        view's count of active hosts."""
        assert self._jobs is not None
        delay = self._jobs.delays.get(host)  # auto-throttle's, Crawl-delay included
        if delay is None:
            initial = self.options.host_initial_delay(host)
            delay = max(initial, self._jobs.crawl_delays.get(host, 0.0))
        if delay <= 0:
            return
        self._hosts_waiting[host] = now + delay
        if len(self._hosts_waiting) >= self._prune_waiting_at:
            self._prune_waiting(now)
            self._prune_waiting_at = 2 * len(self._hosts_waiting) + 64

    def _prune_waiting(self, now: float) -> None:
        for name in [h for h, until in self._hosts_waiting.items() if until <= now]:
            del self._hosts_waiting[name]

    def _stop(self, reason: str, notices: list[str]) -> None:
        if self.result.stopped_by is None:
            self.result.stopped_by = reason
            if reason == "max_pages":
                limit = f"the page limit ({self.options.max_pages} pages, --max-pages)"
            else:
                limit = f"the time limit ({self.options.max_time:g} s, --max-time)"
            notices.append(f"stopping: {limit} reached")

    # -- one task ------------------------------------------------------------------------

    def _handle(self, job: Lease, ctx: TaskContext[Lease]) -> None:
        if job is _WAKE:
            # A shared frontier whose work is all in other processes' hands blocks here
            # until the crawl changes (bounded), rather than being polled.
            try:
                self.frontier.wait_idle()
            except Exception as exc:  # noqa: BLE001 - the lease below reports it
                logger.debug("waiting for other workers failed: %s", exc)
            with self._lock:
                if self._wake_at is not None and self._wake_at <= time.monotonic() + 0.001:
                    self._wake_at = None
                self._dispatch_wanted = True
            self._dispatch(asked=True)
            return
        assert self._jobs is not None
        release = Release(Outcome.FAILED)
        commit: Commit | None = None
        try:
            try:
                release, commit = self._jobs.do(job)
            except WriterError:
                raise
            except (NoProxyLeft, LoginFailed) as exc:
                # The crawl stops; the URL goes back to the queue, not to the output.
                self._fail_crawl(exc)
                release, commit = Release(Outcome.RETRY, 0.0), None
            except Exception as exc:  # noqa: BLE001 - logged in _internal_error
                commit = self._internal_error(job, exc)
            self._end(job, release, commit)
        except WriterError as exc:
            with self._lock:
                abandoned = self._abandoned
            if not abandoned:  # else: the crawl ended without this task, by design
                self._fail_crawl(exc)
        finally:
            with self._lock:
                self._in_flight -= 1
                busy = self._hosts_busy.get(job.host, 0) - 1
                if busy > 0:
                    self._hosts_busy[job.host] = busy
                else:
                    self._hosts_busy.pop(job.host, None)
                self._dispatch_wanted = True
            self._dispatch(asked=True)

    def _end(self, job: Lease, release: Release, commit: Commit | None) -> None:
        """Release first (the host's slot is free now), then hand the commit to the writer.

        The slot this job leaves goes straight to the next job where one is ready, leased
        in the same step: a shared frontier then costs one round trip a page, and no
        thread waits for the dispatcher's."""
        now = time.monotonic()
        with self._lock:
            running = not self._stopping and (self._deadline is None or now < self._deadline)
            # With the budget spent, the successor may still be a retry.
            take, reserved = self._reserve(1 if running else 0)
        try:
            done = self.frontier.release(job, release, take=take, budget=reserved)
        except Exception:
            self._accept([], None, reserved, now)
            # The frontier failed (a bug, or a networked one's link): this lease is lost
            # to this process; it is given out again when it expires.
            logger.exception("releasing %s failed", job.url)
            return
        # With a job for the slot, a "more may be ready" is the dispatcher's to act on
        # (it runs as this task ends, and leases only for slots that are free).
        self._accept(done.jobs, None if done.jobs else done.ready_in, reserved, now)
        if done.added:
            with self._lock:
                self.result.discovered += len(done.added)
        if done.lost:
            logger.warning(
                "the lease of %s expired and went to another worker: its result is not "
                "written here",
                job.url,
            )
            return
        if commit is not None:
            assert self._writer is not None
            self._writer.write(commit)

    def _internal_error(self, job: Lease, exc: Exception) -> Commit | None:
        """A bug or an input nothing anticipated: record the URL as failed, so that it
        is neither lost nor fetched again by every resume, and carry on."""
        logger.exception("crawling %s failed", job.url)
        if job.kind is not JobKind.PAGE:
            return None
        kind = CrawlErrorKind.INTERNAL
        record = self._records.error_record(job, kind, repr(exc))
        with self._lock:
            self.result.pages += 1
            self.result.errors[kind] += 1
            self.result.first_error.setdefault(kind, f"{job.url}: {exc!r}")
        return Commit([record], finished=job, state=Outcome.FAILED, page=True, error=str(kind))

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


def _check_recrawl(
    opts: CrawlOptions, formats: list[str], redis: str | None, frontier: Frontier | None
) -> None:
    """What ``recrawl`` does not do yet is refused before anything is opened."""
    if frontier is not None:
        raise UsageError.naming("{recrawl} needs the crawl's state file, not Crawler(frontier=...)")
    outputs = opts.output_paths()
    first = outputs[0]
    if redis is None and (
        opts.state is None
        or (opts.state == "auto" and (first in (None, "-") or is_stream_path(str(first))))
    ):
        raise UsageError.naming(
            "{recrawl} needs a state file: the one an earlier crawl to a file output left "
            "(-o FILE keeps FILE.state.sqlite)"
        )


def infer_formats(opts: CrawlOptions) -> list[str]:
    return [infer_format(path, opts.format) for path in opts.output_paths()]


def _browser_fetcher(
    setup: FetchSetup, *, script: str | None, hook: RenderHook | None
) -> PageFetcher:
    """--render: the browser fetcher (its module, and Playwright, loaded only then)."""
    from ._render import BrowserFetcher

    return BrowserFetcher(setup, script=script, hook=hook)


def _is_fetcher(given: object) -> TypeGuard[PageFetcher]:
    """A fetcher object, not a factory (a class is a factory even though it has the
    methods a runtime protocol check looks for)."""
    return given is not None and not isinstance(given, type) and isinstance(given, PageFetcher)
