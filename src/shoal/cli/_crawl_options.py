"""The options ``shoal crawl`` and ``shoal demo`` share: help, metavars and defaults.

Every default comes from :class:`CrawlOptions` (tests/test_help.py checks it); each
option's destination is the CrawlOptions field of the same name, so a value error raised
there can be reported with the flag that was typed (:func:`flag_for`).
"""

from __future__ import annotations

from typing import Any

import click

from ..crawler._options import CrawlOptions

__all__ = [
    "AUTH_PASSWORD_ENV",
    "FLAGS",
    "crawl_options",
    "flag_for",
    "form_env",
    "parse_form",
    "parse_extract",
    "parse_header_for",
]

# Where --auth USER finds its password (before asking on a terminal).
AUTH_PASSWORD_ENV = "SHOAL_AUTH_PASSWORD"
# Where --form NAME (no =VALUE) finds its value: SHOAL_FORM_ + NAME in capitals, each
# character that is not a letter or digit as "_" (--form password: SHOAL_FORM_PASSWORD).
FORM_ENV_PREFIX = "SHOAL_FORM_"


def form_env(name: str) -> str:
    """The environment variable ``--form NAME`` reads its value from."""
    return (
        FORM_ENV_PREFIX + "".join(c if c.isascii() and c.isalnum() else "_" for c in name).upper()
    )


def parse_form(values: tuple[str, ...]) -> dict[str, str | None]:
    """``--form NAME=VALUE`` values as the ``form`` mapping; ``--form NAME`` maps to None
    (the value is read from the environment or asked for, see form_env)."""
    out: dict[str, str | None] = {}
    for value in values:
        name, eq, given = value.partition("=")
        if not name.strip():
            raise click.BadParameter(f"{name!r}: want NAME=VALUE or NAME", param_hint="--form")
        out[name.strip()] = given if eq else None
    return out


def parse_extract(values: tuple[str, ...]) -> dict[str, str]:
    """``--extract NAME=SELECTOR`` values as the ``extract`` mapping."""
    out: dict[str, str] = {}
    for value in values:
        name, eq, selector = value.partition("=")
        if not eq or not name.strip() or not selector.strip():
            raise click.BadParameter(f"{value!r}: want NAME=SELECTOR", param_hint="--extract")
        out[name.strip()] = selector.strip()
    return out


def parse_header_for(values: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """``--header-for HOST 'NAME: VALUE'`` values as the ``header_for`` mapping (checked
    by CrawlOptions)."""
    out: dict[str, list[str]] = {}
    for host, header in values:
        out.setdefault(host, []).append(header)
    return out


_MiB = 1024 * 1024


def crawl_options(f: Any) -> Any:
    """Decorate a click command with the options shared by ``crawl`` and ``demo``."""
    d = CrawlOptions
    decorators = [
        click.option(
            "-o",
            "--output",
            metavar="FILE",
            multiple=True,
            help="Output file: .jsonl, .csv, .sqlite or .warc.gz (the suffix picks the "
            "format). Repeatable: every record goes to each (-o pages.jsonl -o crawl.warc.gz), "
            "the state is named after the first. An existing file that is not this crawl's "
            "is refused (see --overwrite).  [default: stdout, as JSON lines]",
        ),
        click.option(
            "--format",
            "format",
            type=click.Choice(["jsonl", "csv", "sqlite", "warc"]),
            help="Output format, whatever the file is called (one -o only).  "
            "[default: from the -o suffix]",
        ),
        click.option(
            "--overwrite",
            is_flag=True,
            default=d.overwrite,
            help="Replace an existing output file that is not this crawl's (its data is lost).",
        ),
        click.option(
            "--concurrency",
            type=int,
            metavar="N",
            default=d.concurrency,
            show_default=True,
            help="Requests in flight in total.",
        ),
        click.option(
            "--per-host",
            type=int,
            metavar="N",
            default=d.per_host,
            show_default=True,
            help="Requests in flight per host (at most --concurrency).",
        ),
        click.option(
            "--delay",
            type=float,
            metavar="SECONDS",
            default=d.delay,
            show_default=True,
            help="Seconds between requests to one host (a larger robots.txt Crawl-delay wins).",
        ),
        click.option(
            "--max-pages",
            type=int,
            metavar="N",
            default=d.max_pages,
            show_default=True,
            help="Stop after fetching N URLs in this run (a resumed crawl fetches up to N more).",
        ),
        click.option(
            "--max-depth",
            type=int,
            metavar="N",
            default=d.max_depth,
            show_default=True,
            help="Follow links at most N clicks away from a start URL (0: start URLs only).",
        ),
        click.option(
            "--max-bytes",
            type=int,
            metavar="BYTES",
            default=d.max_bytes,
            help="Largest response body kept, counted after decompression; longer ones are "
            f"cut.  [default: {d.max_bytes} = {d.max_bytes / _MiB:g} MiB]",
        ),
        click.option(
            "--max-time",
            type=float,
            metavar="SECONDS",
            default=d.max_time,
            help="Stop the crawl after this many seconds (resumable).  [default: no limit]",
        ),
        click.option(
            "--allow-domain",
            "allow_domains",
            metavar="DOMAIN",
            multiple=True,
            default=d.allow_domains,
            help="Stay within DOMAIN and its subdomains (repeatable).  "
            "[default: the start URLs' hosts]",
        ),
        click.option(
            "--include",
            metavar="REGEX",
            multiple=True,
            default=d.include,
            help="Only crawl URLs this regular expression matches, searched anywhere in "
            "the URL (repeatable: any one may match).",
        ),
        click.option(
            "--exclude",
            metavar="REGEX",
            multiple=True,
            default=d.exclude,
            help="Skip URLs this regular expression matches, searched anywhere in the URL "
            "(repeatable).",
        ),
        click.option(
            "--include-glob",
            metavar="GLOB",
            multiple=True,
            default=d.include_glob,
            help="Only crawl URLs whose path matches this shell glob, e.g. '/docs/*' "
            "(repeatable: any one may match).",
        ),
        click.option(
            "--exclude-glob",
            metavar="GLOB",
            multiple=True,
            default=d.exclude_glob,
            help="Skip URLs whose path matches this shell glob, e.g. '*.pdf' (repeatable).",
        ),
        click.option(
            "--robots/--no-robots",
            default=d.robots,
            show_default=True,
            help="Obey robots.txt (--no-robots ignores it: be sure you may).",
        ),
        click.option(
            "--obey-nofollow/--ignore-nofollow",
            default=d.obey_nofollow,
            show_default=True,
            help="Follow no link of a page whose robots meta tag or X-Robots-Tag header "
            "says nofollow (--ignore-nofollow follows them).",
        ),
        click.option(
            "--user-agent",
            metavar="TEXT",
            default=d.user_agent,
            show_default=True,
            help="User-Agent header, also the name robots.txt rules are read for.",
        ),
        click.option(
            "-H",
            "--header",
            "headers",
            metavar="'NAME: VALUE'",
            multiple=True,
            default=d.headers,
            help="Header sent with every request, to every host (repeatable), as curl -H; "
            "kept in WARC request records. Authorization and Cookie are credentials: "
            "they go only where --auth goes.",
        ),
        click.option(
            "--header-for",
            "header_for",
            nargs=2,
            metavar="HOST 'NAME: VALUE'",
            multiple=True,
            help="Header sent to HOST only (repeatable): HOST is every port of it, HOST:PORT "
            "one. Over https; over plain http too when an http start URL is on HOST. "
            "http://HOST: over http and https; https://HOST: https only. A secret: redacted "
            "in WARC records, never logged.",
        ),
        click.option(
            "--auth",
            metavar="USER[:PASSWORD]",
            default=d.auth,
            help="HTTP Basic credentials, sent only to the start URLs' hosts (the same "
            "scheme and port; never to another host, nor from https down to http). Without "
            f":PASSWORD it is read from ${AUTH_PASSWORD_ENV}, else asked for on a terminal.",
        ),
        click.option(
            "--timeout",
            type=float,
            metavar="SECONDS",
            default=d.timeout,
            show_default=True,
            help="Seconds per request, whole (connecting at most 10 of them).",
        ),
        click.option(
            "--retries",
            type=int,
            metavar="N",
            default=d.retries,
            show_default=True,
            help="Retries of a URL after a connection error, timeout, 429 or 5xx, with "
            "growing delays.",
        ),
        click.option(
            "--extract",
            multiple=True,
            metavar="NAME=SELECTOR",
            help="Field to add to each record: CSS (::text, ::attr(x)) or xpath:EXPR; "
            "NAME[] keeps every match (repeatable).",
        ),
        click.option(
            "--sitemaps",
            is_flag=True,
            default=d.sitemaps,
            help="Also start from the sitemaps robots.txt names.",
        ),
        click.option(
            "--sitemaps-only",
            is_flag=True,
            default=d.sitemaps_only,
            help="Fetch the start URLs and the pages the sitemaps list (robots.txt "
            "Sitemap: lines, else /sitemap.xml); follow no link found in a page.",
        ),
        click.option(
            "--max-sitemaps",
            type=int,
            metavar="N",
            default=d.max_sitemaps,
            show_default=True,
            help="Sitemaps queued per run (each fetch also counts toward --max-pages).",
        ),
        click.option(
            "--max-links-per-page",
            type=int,
            metavar="N",
            default=d.max_links_per_page,
            show_default=True,
            help="Links taken from one page; the rest are ignored.",
        ),
        click.option(
            "--auto-throttle",
            is_flag=True,
            default=d.auto_throttle,
            help="Adapt each host's delay to its latency: it starts at "
            f"{d.throttle_start:g} s (or --delay, if larger); after each response it moves "
            f"halfway to the response time / {d.throttle_target:g} (about "
            f"{d.throttle_target:g} requests in flight per host), never below --delay or "
            "robots.txt's Crawl-delay, never above 60 s, and never shorter after an answer "
            "other than 200.",
        ),
        click.option(
            "--transport",
            "--http-client",
            "transport",
            type=click.Choice(["native", "urllib3"]),
            default=d.transport,
            show_default=True,
            help="HTTP client to fetch with: native (shoal's own) or urllib3. "
            "(--http-client is the old name.)",
        ),
        click.option(
            "--proxy",
            metavar="URL",
            multiple=True,
            help="HTTP proxy for every request (http://[user:pass@]host:port), or 'none'. "
            "Repeatable: a pool, each host sticky to one proxy; one that keeps failing is "
            "retired and its hosts move to the others; with none left the crawl stops "
            "(exit 5), never going out without one. Hosts in the environment's no_proxy "
            "are fetched directly.  "
            "[default: http_proxy, https_proxy and no_proxy from the environment]",
        ),
        click.option(
            "--proxy-file",
            metavar="FILE",
            default=d.proxy_file,
            help="Proxy URLs for the pool, one a line (# comments), with any --proxy; "
            "keeps their passwords off the command line.",
        ),
        click.option(
            "--proxy-max-failures",
            type=int,
            metavar="N",
            default=d.proxy_max_failures,
            show_default=True,
            help="Retire a proxy after N failures in a row (refused, reset, timed out "
            "connecting, not HTTP, 407), N at most 100; any answer from it starts the count "
            "again.",
        ),
        click.option(
            "--deny-private",
            is_flag=True,
            default=d.deny_private,
            help="Connect only to public IP addresses (no loopback, private, link-local...): "
            "for crawling URLs you did not choose. Refusals are error kind 'blocked'.",
        ),
        click.option(
            "--cookies",
            "cookies",
            metavar="FILE",
            help="Start the cookie jar with the cookies of FILE, a Netscape cookies.txt "
            "(curl -c, wget --save-cookies, browser exporters). The jar is on anyway: it "
            "keeps what sites set (RFC 6265), in the state, so a resume keeps the session.",
        ),
        click.option(
            "--no-cookies",
            is_flag=True,
            help="No cookie jar: send no cookie, keep none a site sets.",
        ),
        click.option(
            "--save-cookies",
            metavar="FILE",
            default=d.save_cookies,
            help="Write the cookie jar to FILE (a cookies.txt) when the crawl ends; an "
            "existing FILE must be a cookies.txt.",
        ),
        click.option(
            "--login",
            metavar="URL",
            default=d.login,
            help="Log in before the crawl: fetch URL (on a host in scope), fill its login "
            "form (hidden fields such as CSRF tokens kept) with the --form values, submit "
            "it; log in again when a page later answers with the login page. A failed login "
            "stops the crawl (exit code 6).",
        ),
        click.option(
            "--form",
            "form",
            metavar="NAME[=VALUE]",
            multiple=True,
            help="A field of the login form (repeatable). Without =VALUE the value is read "
            f"from ${FORM_ENV_PREFIX}NAME (--form password: ${FORM_ENV_PREFIX}PASSWORD), "
            "else asked for on a terminal. Secrets: never logged or written.",
        ),
        click.option(
            "--login-form",
            metavar="SELECTOR",
            default=d.login_form,
            help="CSS selector of the login form.  [default: the first form with a password input]",
        ),
        click.option(
            "--login-check",
            metavar="PHRASE",
            default=d.login_check,
            help="PHRASE the page the login answers with must contain (it must not show the "
            "login form again either).",
        ),
        click.option(
            "--follow-logout",
            is_flag=True,
            default=d.follow_logout,
            help="With --login, follow logout links too (by default a link whose URL names "
            "logout/signout/logoff or whose text says Log out/Sign out is not followed: "
            "it would end the session).",
        ),
        click.option(
            "--state",
            "state",
            metavar="PATH",
            help="Crawl state file, which makes the crawl resumable.  "
            "[default: FILE.state.sqlite for -o FILE; none for stdout]",
        ),
        click.option(
            "--no-state", is_flag=True, help="Keep the state in memory: the crawl cannot resume."
        ),
        click.option(
            "--fresh",
            is_flag=True,
            default=d.fresh,
            help="Start over: delete this crawl's state and its output (another file at "
            "-o needs --overwrite too).",
        ),
        click.option(
            "--recrawl",
            is_flag=True,
            default=d.recrawl,
            help="Crawl again after a finished or interrupted crawl: revisit every URL the "
            "state knows (conditional requests), append one record per URL with its run and "
            "change (new, changed, unchanged, gone). Rerun to finish an interrupted recrawl.",
        ),
        click.option(
            "--revisit-after",
            type=_Duration(),
            metavar="DURATION",
            default=d.revisit_after,
            help="With --recrawl: revisit only URLs last fetched longer ago than DURATION "
            "(30s, 10m, 6h, 1d); with nothing due, add nothing and say when the next is.",
        ),
        click.option(
            "--save-bodies",
            is_flag=True,
            default=d.save_bodies,
            help="Add each response body and its SHA-256 to the records.",
        ),
        click.option(
            "--render",
            type=click.Choice(["never", "always", "auto"]),
            default=d.render,
            show_default=True,
            help="Load HTML pages in a headless Chromium and read links and --extract "
            "fields from the DOM its scripts built: always; auto (only pages that look built "
            "by script, and where rendering was learned to find more); or never. "
            "Needs a Chromium (apt-get install chromium) and pip install 'shoal[render]'.",
        ),
        click.option(
            "--render-timeout",
            type=float,
            metavar="SECONDS",
            default=d.render_timeout,
            show_default=True,
            help="Hard limit per rendered page; past it the page is recorded render_timeout.",
        ),
        click.option(
            "--render-concurrency",
            type=int,
            metavar="N",
            default=d.render_concurrency,
            show_default=True,
            help="Browser pages at once.",
        ),
        click.option(
            "--render-wait",
            type=float,
            metavar="SECONDS",
            default=d.render_wait,
            help="After the load event, read the DOM once the page's requests have been "
            "quiet this long (capped by --render-timeout). Default: 0.5, or 0 with "
            "--render-wait-for.",
        ),
        click.option(
            "--render-wait-for",
            metavar="SELECTOR",
            default=d.render_wait_for,
            help="Read the DOM once an element matching this CSS selector is in the page "
            "(capped by --render-timeout); the quiet window is then off unless "
            "--render-wait is given.",
        ),
        click.option(
            "--render-block",
            metavar="LIST",
            default=d.render_block,
            show_default=True,
            help="Resource types the browser never requests: images, fonts, media, "
            "comma-separated; none keeps everything.",
        ),
        click.option(
            "--render-scroll",
            type=int,
            metavar="N",
            default=d.render_scroll,
            show_default=True,
            help="Scroll each rendered page to its bottom up to N times (lazy and infinite "
            "scroll), waiting for its requests each time; within --render-timeout.",
        ),
        click.option(
            "--render-script",
            metavar="FILE.js",
            default=d.render_script,
            help="Run this JavaScript in each rendered page before its DOM is read (a "
            'promise is awaited), e.g. to click "load more"; a throw is the page\'s '
            "render_script error.",
        ),
        click.option(
            "--browser",
            metavar="PATH",
            default=d.browser,
            help="The Chromium or Chrome to render with.  [default: chromium or chrome on PATH]",
        ),
        click.option(
            "--render-memory",
            type=int,
            metavar="MB",
            default=d.render_memory,
            show_default=True,
            help="Memory the browser's processes may hold (PSS) before new pages wait.",
        ),
        click.option(
            "--render-resources",
            type=click.Choice(["any", "scope"]),
            default=d.render_resources,
            show_default=True,
            help="Where a rendered page's scripts, XHR and stylesheets may come from: any "
            "host (a CDN, an API; under its robots.txt, --per-host and --deny-private), or "
            "only the crawl's scope. Pages are the scope's either way.",
        ),
        click.option("--no-progress", is_flag=True, help="No progress line, even on a terminal."),
        click.option("--json-summary", is_flag=True, help="Print the summary to stderr as JSON."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
        click.option(
            "-v",
            "--verbose",
            count=True,
            help="-v: one log line per URL (status, size, time); -vv: debug.",
        ),
        click.option(
            "--log-file",
            metavar="PATH",
            help="Append the log (one line per URL, warnings, errors) to PATH.",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


class _Duration(click.ParamType[float]):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        from ..crawler._options import parse_duration

        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


# Where a CrawlOptions field is not "--" + its name with dashes.
FLAGS = {"allow_domains": "--allow-domain", "output": "-o/--output", "headers": "-H/--header"}


def flag_for(field: str) -> str:
    """The command-line spelling of the CrawlOptions field ``field``."""
    return FLAGS.get(field, "--" + field.replace("_", "-"))
