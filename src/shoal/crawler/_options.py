"""Crawl options, shared by the Python API and the command line, with safe defaults."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .._errors import UsageError, literal
from .._version import __version__
from ..http import MAX_RETIRE_AFTER, RETIRE_AFTER, TRANSPORTS, Proxy, ProxyRules
from ..state._jobs import HostPace, pace_for
from ._headers import (
    HeaderError,
    HeaderRules,
    HeadersGiven,
    HostPattern,
    basic_auth,
    parse_headers,
)
from ._hosts import RENDER_MODES, HostSettings, host_settings, paces, settings_for
from ._option_error import OptionError
from ._urls import parse_start_url, refuse_credentials

__all__ = [
    "BOUNDED_FIELDS",
    "DEFAULT_USER_AGENT",
    "NEEDS_RENDER",
    "CrawlOptions",
    "OptionError",
    "check_bounds",
    "glob_hint",
]

DEFAULT_USER_AGENT = f"shoal/{__version__} (+https://github.com/shoal-crawler/shoal)"
# --render-resources: which hosts a rendered page's subresources may come from.
RENDER_RESOURCES = ("any", "scope")
# --render-script: a page script, not a program.
MAX_RENDER_SCRIPT = 1024 * 1024
# --render-scroll: steps per page (each bounded by the page's deadline anyway).
MAX_RENDER_SCROLL = 1000
# --render-block names -> the browser's resource types.
# The quiet window after the load event when none is given (render_wait None).
_QUIET_WINDOW = 0.5
_BLOCKABLE = {"images": "image", "fonts": "font", "media": "media"}
# A revisit interval past this is a typo (and past what a date can say): refused.
MAX_REVISIT_AFTER = 100 * 365.25 * 86400
# What the render options and Crawler's render_hook (no option: a callable) say without
# --render: one message for both, so either way the user learns of all three.
NEEDS_RENDER = "{render_script}, {render_scroll} and render_hook need {render} auto or always"


_AT_LEAST_ONE = (
    "concurrency",
    "per_host",
    "max_pages",
    "max_bytes",
    "memory_limit",
    "max_links_per_page",
    "proxy_max_failures",
)
_AT_LEAST_ZERO = ("max_depth", "retries", "max_redirects", "max_sitemaps", "delay")
_MORE_THAN_ZERO = ("timeout", "max_time")
# Options whose value alone is checked (a bound), before any check of two together: a
# config file's value is checked by :func:`check_bounds` too, where its line is known.
BOUNDED_FIELDS = (*_AT_LEAST_ONE, *_AT_LEAST_ZERO, *_MORE_THAN_ZERO)


def check_bounds(name: str, value: float | None) -> None:
    """OptionError if ``value`` is out of option ``name``'s bounds (see BOUNDED_FIELDS)."""
    if value is None:
        if name in _MORE_THAN_ZERO:
            return  # no timeout, no time limit
        raise OptionError(name, f"{{{name}}} must be a number, not None")
    if name in _AT_LEAST_ONE and value < 1:
        raise OptionError(name, f"{{{name}}} must be at least 1 (got {value})")
    if name in _AT_LEAST_ZERO and value < 0:
        raise OptionError(name, f"{{{name}}} must be at least 0 (got {value})")
    if name in _MORE_THAN_ZERO and value <= 0:
        raise OptionError(name, f"{{{name}}} must be more than 0 seconds (got {value})")
    if name == "proxy_max_failures" and value > MAX_RETIRE_AFTER:
        raise OptionError(
            name,
            f"{{proxy_max_failures}} must be at most {MAX_RETIRE_AFTER} (got {value}): a "
            "proxy that never works would keep its hosts",
        )


def glob_hint(pattern: str) -> str | None:
    """The regex a glob-looking ``pattern`` was probably meant as, or None.

    Offered only for a pattern that starts as a shell glob does (``*.html``, ``?x``):
    the one case where the user's intent is plain.
    """
    if not pattern or pattern[0] not in "*?":
        return None
    hint = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    try:
        re.compile(hint)
    except re.error:  # pragma: no cover - escaped text and .* always compile
        return None
    return hint


def _check_regexes(name: str, patterns: Sequence[str]) -> None:
    if isinstance(patterns, str):
        raise OptionError(name, f"{{{name}}} takes a list of regexes, not one string")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            hint = glob_hint(pattern)
            how = (
                literal(f"; did you mean '{hint}'?") + " Or match the URL path with a glob: "
                f"{{{name}_glob}} " + literal(repr(pattern))
                if hint
                else ""
            )
            raise OptionError(
                name,
                f"{{{name}}} takes regular expressions (searched in the whole URL): "
                + literal(f"{pattern!r} is not one ({exc})")
                + how,
            ) from None


def _check_globs(name: str, patterns: Sequence[str]) -> None:
    """Refuse a glob fnmatch would quietly read otherwise than written: a ``[`` that opens
    a set never closed is taken as a literal ``[`` (so ``[`` matches only paths holding
    one), and an empty glob matches no path at all."""
    for pattern in patterns:
        if not pattern:
            raise OptionError(name, f"{{{name}}} '' is empty: it would match no URL path")
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i]
            i += 1
            if c != "[":
                continue
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":  # a "]" first in a set is part of it
                j += 1
            j = pattern.find("]", j)
            if j < 0:
                raise OptionError(
                    name,
                    f"{{{name}}} "
                    + literal(
                        f"{pattern!r} is not a valid glob: the '[' at character {i} opens a "
                        "set that is never closed with ']' (to match a '[' itself, write '[[]')"
                    ),
                )
            i = j + 1


def _check_user_agent(value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise OptionError("user_agent", "{user_agent} must not be empty")
    bad = next((ch for ch in value if (ch < " " and ch != "\t") or ch == "\x7f"), None)
    if bad is not None:
        raise OptionError(
            "user_agent",
            "{user_agent} "
            + literal(f"must be one line of text: it holds the control character {bad!r}"),
        )
    if any(ord(ch) > 0xFF for ch in value):
        raise OptionError(
            "user_agent", "{user_agent} must be ASCII (or Latin-1): it is sent as a header"
        )


@dataclass
class CrawlOptions:
    """Every knob of a crawl. Each limit has a default that keeps a crawl bounded.

    ``max_pages`` (10,000), ``max_depth`` (50), ``max_bytes`` per response (10 MB after
    decompression) and ``timeout`` per request (30 s) are always on; ``max_time`` for the
    whole crawl is off unless given.
    """

    concurrency: int = 16
    per_host: int = 8
    delay: float = 0.0
    max_pages: int = 10_000
    max_depth: int = 50
    max_bytes: int = 10 * 1024 * 1024
    max_time: float | None = None
    max_redirects: int = 10
    max_sitemaps: int = 1_000  # sitemaps queued per run (each fetch also counts as a page)
    max_links_per_page: int = 10_000  # links taken from one page (or one callback's return)
    allow_domains: Sequence[str] = ()
    include: Sequence[str] = ()  # regexes searched in the whole URL
    exclude: Sequence[str] = ()
    include_glob: Sequence[str] = ()  # shell globs (fnmatch) matched against the URL path
    exclude_glob: Sequence[str] = ()
    robots: bool = True
    # Follow no link of a page whose <meta name="robots"> or X-Robots-Tag says nofollow.
    obey_nofollow: bool = True
    user_agent: str = DEFAULT_USER_AGENT
    # Headers for every request, to every host ("Name: value" strings, (name, value) pairs
    # or a mapping); Authorization and Cookie among them are credentials: start URLs'
    # origins only. Not shown in repr: they may hold secrets.
    headers: HeadersGiven = field(default=(), repr=False)
    # host -> headers for that host only ("HOST" every port, "HOST:PORT" one,
    # "http://HOST" to allow plain http): a secret, redacted in WARC request records.
    header_for: Mapping[str, HeadersGiven] = field(default_factory=dict, repr=False)
    # HTTP Basic credentials ("USER:PASSWORD" or a pair), for the start URLs' origins only.
    auth: str | tuple[str, str] | None = field(default=None, repr=False)
    timeout: float = 30.0
    retries: int = 2
    retry_backoff: float = 0.5
    extract: Mapping[str, str] = field(default_factory=dict)
    sitemaps: bool = False
    # Fetch the start URLs and what the sitemaps list, and follow no link found in a page.
    sitemaps_only: bool = False
    auto_throttle: bool = False
    throttle_target: float = 2.0  # requests in flight per host that auto-throttle aims at
    throttle_start: float = 1.0  # auto-throttle's first delay per host, before any latency is known
    verify_tls: bool = True
    transport: str = "native"  # HTTP client: "native" (shoal's own) or "urllib3"
    # "env": http_proxy/https_proxy/no_proxy from the environment; None: no proxy;
    # otherwise the URL of one proxy for every request, or a list of them (a pool).
    # Left out of repr(): a proxy URL may hold a password.
    proxy: str | Sequence[str] | None = field(default="env", repr=False)
    # A file of proxy URLs, one a line (# comments): a pool, with those of ``proxy``.
    proxy_file: str | None = None
    # Failures in a row (refused, reset, timed out connecting, not HTTP, 407) that retire a
    # proxy; at most MAX_RETIRE_AFTER.
    proxy_max_failures: int = RETIRE_AFTER
    # Connect only to public IP addresses (checked after every lookup): for crawls of
    # URLs someone else chose, so no link, redirect or DNS answer reaches 127.0.0.1,
    # the local network or a cloud metadata address. Refusals are error kind "blocked".
    deny_private: bool = False
    # One output file, or several (a list), each written with every record; None: stdout.
    output: str | Sequence[str] | None = None
    format: str | None = None  # with one output only: each of several has its suffix's
    progress: bool | None = None  # None: on when stderr is a terminal
    grace: float = 10.0  # seconds in-flight requests get after the first Ctrl-C
    state: str | None = "auto"  # path of the state file; "auto": <output>.state.sqlite
    fresh: bool = False  # discard this crawl's existing state and output; start over
    overwrite: bool = False  # replace an existing output that is not this crawl's
    memory_limit: int = 20_000  # queued URLs kept in memory; the rest wait on disk
    save_bodies: bool = False  # add the response body and its SHA-256 to each record
    # After a finished or interrupted crawl: crawl again (run N+1), revisiting every URL
    # the state knows with conditional requests; records say what changed.
    recrawl: bool = False
    # With recrawl: revisit only URLs last fetched longer ago than this (seconds).
    revisit_after: float | None = None
    # Host pattern ("example.com", "example.com:8080") -> its own settings (HostSettings,
    # or a mapping of its fields): per_host and delay override the crawl's for that host.
    hosts: Mapping[str, HostSettings | Mapping[str, object]] = field(default_factory=dict)
    # The crawl's cookie jar (RFC 6265, kept in the state): True on, False off, or the
    # path of a Netscape cookies.txt to start it with (curl -c, wget --save-cookies).
    cookies: bool | str = True
    # Write the jar to this cookies.txt when the crawl ends (replacing only a cookies.txt).
    save_cookies: str | None = None
    # Render pages in a headless Chromium (#18): "never", "auto" (the pages that look
    # built by script, and the prefixes where rendering was learned to pay), "always".
    # The render_* limits bound each page; see crawler/_render.py.
    render: str = "never"
    render_timeout: float = 30.0  # hard wall-clock seconds per rendered page
    render_concurrency: int = 4  # browser pages at once
    # After the load event, the DOM is read once the page's own requests have been quiet
    # this long (always capped by render_timeout). None: 0.5 s, or none at all when
    # render_wait_for names what to wait for.
    render_wait: float | None = None
    render_wait_for: str | None = None  # a CSS selector to wait for (capped likewise)
    # Resource types the browser never requests: "images,fonts,media", or "none".
    render_block: str = "images,fonts,media"
    browser: str | None = None  # Chromium or Chrome; None: found on PATH
    # Log in before the crawl (and again when the session expires): the login page's URL,
    # whose form is filled with ``form`` (field -> value: secrets, never shown), or a
    # hook ``login(session)`` (see _login). ``login_form``: a CSS selector of the form
    # (default: the first with a password input); ``login_check``: text the page the
    # login answers with must hold.
    login: str | Callable[..., object] | None = field(default=None, repr=False)
    form: Mapping[str, str] = field(default_factory=dict, repr=False)
    login_form: str | None = None
    login_check: str | None = None
    # Logged in, a link whose URL or text says logout is not followed (it would end the
    # session, and a login follow each one): True follows them all the same.
    follow_logout: bool = False
    render_scroll: int = 0  # scroll steps per page (lazy, infinite scroll), within its deadline
    render_script: str | None = None  # a JavaScript file run in each page before the DOM is read
    # MB the browser's process tree may hold (PSS, from /proc) before new pages wait.
    render_memory: int = 2048
    # Where a rendered page's subresources (scripts, XHR, CSS) may come from: "any" host
    # (a CDN, an API host; each under its robots.txt, --per-host and --deny-private), or
    # only the crawl's "scope". Pages are the scope's either way.
    render_resources: str = "any"
    _proxies: ProxyRules | None = field(default=None, init=False, repr=False, compare=False)
    _login_url: str | None = field(default=None, init=False, repr=False, compare=False)
    _header_rules: HeaderRules = field(default=HeaderRules(), init=False, repr=False, compare=False)
    _paces: dict[str, HostPace] = field(default_factory=dict, init=False, repr=False, compare=False)
    _floors: dict[str, HostPace] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # per_host and the paces as configured, before this process's concurrency caps them:
    # what a shared (Redis) crawl compares across workers of any --concurrency.
    _shared_per_host: int = field(default=0, init=False, repr=False, compare=False)
    _shared_paces: dict[str, HostPace] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in BOUNDED_FIELDS:
            check_bounds(name, getattr(self, name))
        if self.transport not in TRANSPORTS:
            names = " or ".join(TRANSPORTS)
            raise OptionError(
                "transport", "unknown {transport} " + literal(f"{self.transport!r}: {names}")
            )
        if self.deny_private and self.transport != "native":
            raise OptionError("deny_private", "{deny_private} needs {transport} native")
        for name in ("include", "exclude"):
            _check_regexes(name, getattr(self, name))
        for name in ("allow_domains", "include_glob", "exclude_glob"):
            if isinstance(getattr(self, name), str):
                raise OptionError(name, f"{{{name}}} takes a list of strings, not one string")
        for name in ("include_glob", "exclude_glob"):
            _check_globs(name, getattr(self, name))
        _check_user_agent(self.user_agent)
        self._check_outputs()
        if self.revisit_after is not None:
            if not self.recrawl:
                raise OptionError("revisit_after", "{revisit_after} needs {recrawl}")
            if not 0 < self.revisit_after <= MAX_REVISIT_AFTER:  # nan fails this too
                raise OptionError(
                    "revisit_after",
                    "{revisit_after} must be more than 0 seconds and at most 100 years "
                    f"(got {self.revisit_after})",
                )
        if isinstance(self.cookies, str) and not self.cookies:
            raise OptionError("cookies", "{cookies} '' names no file")
        if self.save_cookies is not None and self.cookies is False:
            raise OptionError("save_cookies", "{save_cookies} needs the cookie jar on")
        if self.sitemaps_only and not self.robots:
            # Sitemaps are found through robots.txt (its Sitemap: lines, else /sitemap.xml).
            raise OptionError(
                "sitemaps_only",
                "{sitemaps_only} finds the sitemaps through "
                "robots.txt: it cannot be used with {robots} off",
            )
        self._check_render()
        self._check_login()
        self._proxies = self._make_proxy_rules()  # a bad proxy fails here, before any work
        self._shared_per_host = self.per_host
        self.per_host = min(self.per_host, self.concurrency)
        self.hosts = host_settings(self.hosts)
        self._shared_paces = paces(
            self.hosts,
            concurrency=None,
            auto_throttle=self.auto_throttle,
            throttle_start=self.throttle_start,
        )
        self._paces = paces(
            self.hosts,
            concurrency=self.concurrency,
            auto_throttle=self.auto_throttle,
            throttle_start=self.throttle_start,
        )
        # The delays as configured (auto-throttle's floors), before throttle_start.
        self._floors = paces(self.hosts, concurrency=self.concurrency)
        try:
            self._header_rules = HeaderRules.build(
                self.headers, _with_host_headers(self.header_for, self.hosts), self.auth
            )
        except HeaderError as exc:
            raise OptionError(exc.field, exc.template) from None

    def _check_render(self) -> None:
        if self.render not in RENDER_MODES:
            raise OptionError(
                "render", "{render} " + literal(f"{self.render!r}: want never, auto or always")
            )
        if self.render == "never" and (self.render_script is not None or self.render_scroll):
            given = "render_script" if self.render_script is not None else "render_scroll"
            raise OptionError(given, NEEDS_RENDER)
        if not 0 <= self.render_scroll <= MAX_RENDER_SCROLL:
            raise OptionError(
                "render_scroll", f"{{render_scroll}} must be from 0 to {MAX_RENDER_SCROLL}"
            )
        if self.render_resources not in RENDER_RESOURCES:
            raise OptionError(
                "render_resources",
                "{render_resources} " + literal(f"{self.render_resources!r}: want any or scope"),
            )
        if not self.render_timeout > 0:  # nan too
            raise OptionError("render_timeout", "{render_timeout} must be more than 0 seconds")
        if self.render_concurrency < 1:
            raise OptionError("render_concurrency", "{render_concurrency} must be at least 1")
        if self.render_memory < 1:
            raise OptionError("render_memory", "{render_memory} must be at least 1 MB")
        if self.render_wait is not None and not 0 <= self.render_wait < self.render_timeout:
            raise OptionError(
                "render_wait", "{render_wait} must be at least 0 and less than {render_timeout}"
            )
        self.render_blocked()  # a bad list fails here

    def render_script_source(self) -> str | None:
        """The text of ``render_script`` (read once, when the crawl starts), or None."""
        if self.render_script is None:
            return None
        try:
            with open(self.render_script, "rb") as f:
                data = f.read(MAX_RENDER_SCRIPT + 1)
        except OSError as exc:
            raise OptionError(
                "render_script",
                "{render_script} " + literal(f"{self.render_script}: {exc.strerror or exc}"),
            ) from None
        if len(data) > MAX_RENDER_SCRIPT:
            raise OptionError(
                "render_script",
                "{render_script} "
                + literal(f"{self.render_script}")
                + f" is over {MAX_RENDER_SCRIPT // 1024} KB: a page script, not a program",
            )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise OptionError(
                "render_script", "{render_script} " + literal(self.render_script) + " is not UTF-8"
            ) from None

    def quiet_window(self) -> float:
        """Seconds the page's requests must be quiet before its DOM is read: render_wait
        as given; by default 0.5, or none when render_wait_for says what to wait for."""
        if self.render_wait is not None:
            return self.render_wait
        return 0.0 if self.render_wait_for else _QUIET_WINDOW

    def render_blocked(self) -> frozenset[str]:
        """The browser resource types --render-block names (Playwright's names)."""
        text = self.render_block.strip()
        if text == "none":
            return frozenset()
        out: set[str] = set()
        for name in text.split(","):
            kind = _BLOCKABLE.get(name.strip())
            if kind is None:
                raise OptionError(
                    "render_block",
                    "{render_block} "
                    + literal(f"{name.strip()!r}: want a list of images, fonts, media, or none"),
                )
            out.add(kind)
        return frozenset(out)

    def _check_login(self) -> None:
        if self.login is None:
            for name in ("login_form", "login_check"):
                if getattr(self, name) is not None:
                    raise OptionError(name, f"{{{name}}} needs {{login}} (the login page's URL)")
            if self.form:
                raise OptionError("form", "{form} needs {login} (the login page's URL)")
            return
        if not isinstance(self.form, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in self.form.items()
        ):
            raise OptionError("form", "{form} maps field names to str values")
        if callable(self.login):
            for name in ("form", "login_form", "login_check"):
                if getattr(self, name):
                    raise OptionError(
                        name, f"{{{name}}} is for a login URL: a login hook fills its own form"
                    )
        elif isinstance(self.login, str):
            if self.login_check is not None and not self.login_check.strip():
                raise OptionError("login_check", "{login_check} '' checks nothing")
            if self.login_form is not None and not self.login_form.strip():
                raise OptionError("login_form", "{login_form} '' selects nothing")
            self._login_url = parse_start_url(self.login)
            refuse_credentials(self.login)
        else:
            raise OptionError("login", "{login} is the login page's URL or a hook")
        if self.cookies is False:
            raise OptionError(
                "login", "{login} keeps its session in the cookie jar: not with {cookies=False}"
            )

    def login_url(self) -> str | None:
        """``login``'s URL, canonical (None: no login, or a hook). Whether its host is in
        the crawl's scope is the crawler's to check: the scope comes from the start URLs."""
        return self._login_url

    def output_paths(self) -> list[str | None]:
        """Every output, the first one first ([None] for stdout)."""
        if self.output is None or isinstance(self.output, str):
            return [self.output]
        return list(self.output)

    def _check_outputs(self) -> None:
        if self.output is None or isinstance(self.output, str):
            return
        paths = list(self.output)
        if not paths:
            raise OptionError("output", "{output} is an empty list: give a file (or None: stdout)")
        if len(paths) == 1:
            return
        seen: set[str] = set()
        for path in paths:
            if not isinstance(path, str) or path in ("", "-"):
                raise OptionError(
                    "output",
                    "with several {output}, each must be a file: "
                    + literal(f"{path!r} is not (stdout takes one output)"),
                )
            full = os.path.abspath(path)
            if full in seen:
                raise OptionError("output", "{output} names " + literal(f"{path!r} twice"))
            seen.add(full)
        if self.format is not None:
            raise OptionError(
                "format",
                "{format} applies to a single {output}: with several, each output's format "
                "comes from its name (.jsonl, .csv, .sqlite, .warc.gz)",
            )

    def proxy_rules(self) -> ProxyRules | None:
        return self._proxies

    def header_rules(self) -> HeaderRules:
        """``headers``, ``header_for`` and ``auth``, checked (see ``_headers``)."""
        return self._header_rules

    def _make_proxy_rules(self) -> ProxyRules | None:
        urls = self._proxy_urls()
        try:
            if urls == "env":
                rules = ProxyRules.from_environment()
            elif urls is None:
                rules = None
            else:
                rules = ProxyRules.pool(urls, retire_after=self.proxy_max_failures)
        except ValueError as exc:
            where = " (from the environment)" if urls == "env" else ""
            raise UsageError(f"{exc}{where}") from None
        if rules is not None and self.transport != "native":
            raise OptionError(
                "proxy",
                "the urllib3 HTTP client does not go through proxies: use {transport} native"
                + (" or {proxy} none" if urls == "env" else ""),
            )
        return rules

    def _proxy_urls(self) -> str | list[str] | None:
        """ "env", None (no proxy) or the pool's URLs: ``proxy``'s, then ``proxy_file``'s.
        The default "env" with a file is the file's pool alone."""
        given = self.proxy
        listed = [given] if given is None or isinstance(given, str) else list(given)
        words = [
            "none" if u is None else u.strip().lower()
            for u in listed
            if u is None or u.strip().lower() in ("env", "none")
        ]
        if words:
            if len(listed) > 1:
                raise OptionError(
                    "proxy",
                    "{proxy} " + literal(f"{words[0]!r}") + " stands alone, not with proxy URLs",
                )
            if words[0] == "none":
                if self.proxy_file is not None:
                    raise OptionError("proxy_file", "{proxy} none and {proxy_file} contradict")
                return None
            if self.proxy_file is None:
                return "env"
            listed = []
        elif not listed and self.proxy_file is None:
            raise OptionError("proxy", "{proxy} is an empty list: give proxy URLs, or None")
        urls = [u for u in listed if u is not None]
        if self.proxy_file is not None:
            urls.extend(read_proxy_file(self.proxy_file))
        return urls

    @property
    def initial_delay(self) -> float:
        """Per-host delay before anything is known about the host."""
        return max(self.delay, self.throttle_start) if self.auto_throttle else self.delay

    def paces(self) -> dict[str, HostPace]:
        """Host pattern -> the frontier's per_host and first delay for the hosts it matches
        (only patterns that change either)."""
        return dict(self._paces)

    def shared_politeness(self) -> tuple[int, dict[str, HostPace]]:
        """``per_host`` and :meth:`paces` as configured, not capped by ``concurrency``: the
        workers of a shared crawl compare these, so one of another ``--concurrency`` joins
        (each still has no more in flight than its own concurrency)."""
        return self._shared_per_host, dict(self._shared_paces)

    def host_settings(self, host: str) -> HostSettings:
        """The ``hosts`` settings of host key ``host`` (``scheme://host[:port]``), merged
        from its ``name:port`` and ``name`` patterns; a None field is the crawl's option."""
        return settings_for(self.hosts, host)  # type: ignore[arg-type]

    def host_delay(self, host: str) -> float:
        """The delay configured for host key ``host`` (``scheme://host[:port]``): its
        own, else ``delay``. Auto-throttle never goes below it."""
        own = pace_for(self._floors, host).delay
        return self.delay if own is None else own

    def host_initial_delay(self, host: str) -> float:
        """:attr:`initial_delay` for host key ``host``."""
        own = pace_for(self._paces, host).delay
        return self.initial_delay if own is None else own

    def host_render(self, host: str) -> str:
        """The render mode of host key ``host``: its own (``hosts``), else ``render``."""
        own = self.host_settings(host).render if self.hosts else None
        return self.render if own is None else own

    def renders(self) -> bool:
        """Whether any page of the crawl may be rendered: ``render``, or a host's own."""
        return self.render != "never" or any(
            isinstance(s, HostSettings) and s.render not in (None, "never")
            for s in self.hosts.values()
        )

    def host_per_host(self, host: str) -> int:
        """The per-host limit of host key ``host``: its own, else ``per_host``."""
        own = pace_for(self._paces, host).per_host
        return self.per_host if own is None else own

    @property
    def most_per_host(self) -> int:
        """The largest per-host limit of any host (connections kept per host)."""
        return max([self.per_host, *(p.per_host or 0 for p in self._paces.values())])

    def scope_key(self) -> dict[str, object]:
        """The options that change which URLs belong to the crawl (checked on resume)."""
        key: dict[str, object] = {
            "allow_domains": sorted(self.allow_domains),
            "include": list(self.include),
            "exclude": list(self.exclude),
            "max_depth": self.max_depth,
            "robots": self.robots,
        }
        if not self.obey_nofollow:  # only when used: older state files still match
            key["obey_nofollow"] = False
        # Added only when used, so state files written before globs existed still match.
        if self.include_glob:
            key["include_glob"] = list(self.include_glob)
        if self.exclude_glob:
            key["exclude_glob"] = list(self.exclude_glob)
        if self.sitemaps_only:
            key["sitemaps_only"] = True
        return key

    @property
    def use_sitemaps(self) -> bool:
        return self.sitemaps or self.sitemaps_only


def read_proxy_file(path: str) -> list[str]:
    """The proxy URLs in ``path``: one a line; blank lines and comments (from a ``#`` that
    starts the line or follows a space) skipped. A bad line is an OptionError naming the
    file and the line, and showing no credentials."""

    def bad(why: str) -> OptionError:
        return OptionError("proxy_file", "{proxy_file} " + literal(f"{path}{why}"))

    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(_MAX_PROXY_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise bad(f": cannot be read ({reason})") from None
    if len(text) > _MAX_PROXY_FILE:
        raise bad(f": over {_MAX_PROXY_FILE} characters, too long for a list of proxies")
    urls: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = _COMMENT.sub("", line).strip()
        if not entry:
            continue
        if any(ch.isspace() for ch in entry):
            raise bad(f", line {number}: one proxy URL a line (this one holds a space)")
        try:
            Proxy.parse(entry)
        except ValueError as exc:
            raise bad(f", line {number}: {exc}") from None
        urls.append(entry)
    if not urls:
        raise bad(" names no proxy (give one URL a line: http://[user:password@]host:port)")
    return urls


_COMMENT = re.compile(r"(^|\s)#.*")
_MAX_PROXY_FILE = 16 * 1024 * 1024  # characters: some 300,000 proxies

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``10m``, ``6h``, ``1d`` (also ``s``, ``w``; a bare number is seconds);
    ValueError naming the forms for anything else."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration: give a number and a unit, like 30s, 10m, 6h, 1d"
        ) from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{text!r}: a duration must be more than 0")
    return seconds


def _with_host_headers(
    header_for: Mapping[str, HeadersGiven], hosts: Mapping[str, HostSettings]
) -> Mapping[str, HeadersGiven]:
    """``header_for`` with the ``headers`` of each ``hosts`` table folded in: one rule per
    host, so the credential rules of ``header_for`` hold for both. A header that both
    name comes from ``header_for`` (the command line's ``--header-for`` wins over a
    config file's table)."""
    if not any(s.headers or s.auth for s in hosts.values()):
        return header_for
    if not isinstance(header_for, Mapping):
        return header_for  # HeaderRules.build says what is wrong with it
    merged: dict[str, HeadersGiven] = dict(header_for)
    # The table and header_for may spell one host two ways ("Example.com", "example.com").
    spelled: dict[HostPattern, str] = {}
    for text in merged:
        with contextlib.suppress(HeaderError):
            if isinstance(text, str):
                spelled.setdefault(HostPattern.parse(text), text)
    for pattern, settings in hosts.items():
        own = dict(settings.headers or {})
        if settings.auth is not None:
            if any(name.lower() == "authorization" for name in own):
                raise HeaderError(
                    "{hosts} "
                    + literal(f"{pattern!r}: give auth or an Authorization header, not both")
                )
            auth = settings.auth
            pair = auth if isinstance(auth, str) else (auth[0], auth[1])  # a TOML array too
            own["Authorization"] = basic_auth(pair)
        if not own:
            continue
        try:
            key = spelled.get(HostPattern.parse(pattern), pattern)
        except HeaderError:
            key = pattern  # HeaderRules.build reports it
        given = merged.get(key)
        if given is None:
            merged[key] = own
            continue
        try:
            override = parse_headers(given, "header_for")
        except HeaderError:
            continue  # HeaderRules.build reports it with the option's own name
        names = {name.lower() for name, _ in override}
        table = [(k, v) for k, v in own.items() if k.lower() not in names]
        merged[key] = [*table, *override]
    return merged
