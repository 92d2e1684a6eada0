"""Every exception shoal raises on purpose descends from :class:`ShoalError`.

Errors from the libraries underneath (sqlite3, urllib3, httptools) are translated where
shoal calls them, so ``except shoal.ShoalError`` is enough to catch anything shoal
means to report::

    ShoalError
    ├── PoolClosed            put() on a pool that no longer takes work
    ├── QueueFull             put(timeout=...) found no room in time
    ├── JoinTimeout           join(timeout=...) ran out (also a TimeoutError)
    ├── TaskError             a task failed for good; .item, .attempts, __cause__
    ├── TaskErrorGroup        every failure of a "collect" pool (also an ExceptionGroup)
    ├── RetryLater            raised by a handler: run this task again after a backoff
    ├── WriterError           the writer's sink failed; nothing more is accepted (exit code 4)
    ├── TransportError        one HTTP request failed; .kind (an ErrorKind) says how
    ├── NoProxyLeft           every proxy of the crawl was retired: it stopped (exit code 5)
    ├── LoginFailed           the crawl's login failed: it stopped, never crawling anonymously (6)
    ├── UsageError            a bad option or argument (exit code 2)
    │   └── InvalidURL        a URL that cannot be crawled
    ├── OutputError           the output cannot be used, or is not this crawl's (exit code 4)
    └── StateError            the crawl state cannot be used (exit code 3)
        ├── StateLocked       another crawl holds the state file
        ├── StateMismatch     the state file was made with other scope options
        │   └── CrawlMismatch a shared crawl (Redis) was started with other options
        ├── FrontierError     the frontier refused a change (a lease no longer held)
        │   └── StaleCommit   a commit refused: its lease or output position moved on
        └── RedisStateError   the crawl's Redis cannot be used (refused, too old, ...)
            └── RedisUnavailable  Redis cannot be reached (or the connection was lost)

Each error carries ``exit_code``, which the command line uses as its exit status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Self

from ._url import redact_userinfo

__all__ = [
    "CrawlMismatch",
    "ErrorKind",
    "InvalidURL",
    "JoinTimeout",
    "LoginFailed",
    "NoProxyLeft",
    "OutputError",
    "PoolClosed",
    "QueueFull",
    "RedisStateError",
    "RedisUnavailable",
    "RetryLater",
    "ShoalError",
    "FrontierError",
    "StaleCommit",
    "StateError",
    "StateLocked",
    "StateMismatch",
    "TaskError",
    "TaskErrorGroup",
    "TransportError",
    "UsageError",
    "WriterError",
]


class ShoalError(Exception):
    """Root of every error shoal raises on purpose."""

    exit_code: int = 1
    # A message that names options, as ``{name}`` placeholders (see :meth:`naming`).
    template: str | None = None

    @classmethod
    def naming(cls, template: str) -> Self:
        """An error whose message names options: ``{max_depth}``, ``{overwrite=True}``.

        ``str()`` spells them as the Python API does (``max_depth``, ``overwrite=True``);
        :meth:`named` lets the command line spell them as flags (``--max-depth``,
        ``--overwrite``). Literal braces in ``template`` are doubled (:func:`literal`)."""
        error = cls(template.format_map(_Spelling(lambda key: key)))
        error.template = template
        return error

    def named(self, spell: Callable[[str], str]) -> str:
        """The message with every option it names spelled by ``spell``."""
        if self.template is None:
            return str(self)
        return self.template.format_map(_Spelling(spell))


class _Spelling(dict[str, str]):
    def __init__(self, spell: Callable[[str], str]) -> None:
        super().__init__()
        self._spell = spell

    def __missing__(self, key: str) -> str:
        return self._spell(key)


def literal(text: str) -> str:
    """``text`` made safe to put in a :meth:`ShoalError.naming` template."""
    return text.replace("{", "{{").replace("}", "}}")


class PoolClosed(ShoalError):
    """The pool was closed, cancelled or failed; it takes no more tasks."""


class QueueFull(ShoalError):
    """A bounded put() found no room within its timeout."""


class JoinTimeout(ShoalError, TimeoutError):
    """join(timeout=...) returned before every task finished."""


def _shown(obj: object) -> str:
    # A worker builds a TaskError for every failure: a __repr__ that raises must not take
    # the failure (and the worker) down with it, or join() would wait for it forever.
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001 - any broken __repr__
        return f"<{type(obj).__name__} object: repr() failed>"


class TaskError(ShoalError):
    """A task failed for good (after any retries). The original error is ``__cause__``."""

    def __init__(self, item: Any, error: BaseException, attempts: int = 1) -> None:
        shown = f"task {_shown(item)} failed after {attempts} attempt(s): {_shown(error)}"
        super().__init__(shown)
        self.item = item
        self.error = error
        self.attempts = attempts
        self.__cause__ = error


class TaskErrorGroup(ExceptionGroup[TaskError], ShoalError):
    """All the failures a pool with ``errors="collect"`` saw, one TaskError each."""

    def __new__(cls, message: str, errors: Sequence[TaskError]) -> TaskErrorGroup:
        return super().__new__(cls, message, errors)

    def derive(self, excs: Sequence[TaskError]) -> TaskErrorGroup:  # type: ignore[override]
        return TaskErrorGroup(self.message, excs)

    @property
    def errors(self) -> list[TaskError]:
        """The failures, flat (a group made by shoal never nests)."""
        return [e for e in self.exceptions if isinstance(e, TaskError)]

    @property
    def items(self) -> list[Any]:
        """The items of the failed tasks."""
        return [e.item for e in self.errors]


class RetryLater(ShoalError):
    """Raise from a handler to have the task run again, after ``after`` seconds if given.

    Raise it ``from`` the underlying error so the final TaskError can name it.
    """

    def __init__(self, reason: str = "retry requested", *, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class WriterError(ShoalError):
    """The writer's sink raised; the writer accepts nothing more. ``__cause__`` says why.

    Its exit code is 4, the output's: to a script, a sink that failed mid-crawl (a full
    disk) is an output problem like one that could not be opened. Declared here, not set
    by the command line at import, so the library and the CLI agree without import order."""

    exit_code = 4


class ErrorKind(StrEnum):
    """How a request failed. The values are the ``error`` strings of the records, so
    they are part of the output format: never rename one."""

    TIMEOUT = "timeout"  # connect, read or the request's whole deadline
    DNS = "dns"  # the host name did not resolve (or resolving timed out)
    CONNECTION = "connection"  # refused, reset, closed early, bad host name
    TLS = "tls"  # handshake or certificate
    PROXY = "proxy"  # the proxy refused CONNECT, closed the tunnel, wants credentials
    TOO_LARGE = "too_large"  # the body would exceed max_bytes (decoded)
    PROTOCOL = "protocol"  # not HTTP/1.x as RFC 9112 frames it; an unsendable request
    DECODE = "decode"  # a Content-Encoding that is unknown or does not decode
    BLOCKED = "blocked"  # deny_private: the host is (or resolves to) a non-public address
    # Set by the fetcher (redirects), never raised by a transport:
    BAD_REDIRECT = "bad_redirect"
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    # Set by the browser fetcher (--render): the page's hard deadline passed before its
    # DOM was read, or its tab (or the whole browser) crashed.
    RENDER_TIMEOUT = "render_timeout"
    RENDER_CRASH = "render_crash"
    # The user's code in a rendered page failed: --render-script threw, or
    # Crawler(render_hook=...) raised or overran the page's deadline.
    RENDER_SCRIPT = "render_script"
    RENDER_HOOK = "render_hook"
    # Set by the crawler on a page's record (besides the patterns "http_<status>" for a
    # 4xx/5xx page and "robots_http_<status>" for a robots.txt answered 5xx):
    RETRY_AFTER = "retry_after"  # the host asked for a pause longer than the crawl allows
    # Written by earlier builds for a page cut at a parse bound; such a page is now
    # fetched fine, its record saying so in ``truncated`` (the report reads old files so).
    PARSE_LIMIT = "parse_limit"
    PROCESSING = "processing"  # the page callback or link extraction raised
    INTERNAL = "internal"  # shoal's own code failed on the page


class TransportError(ShoalError):
    """One HTTP request failed. ``kind`` says how (an :class:`ErrorKind`), ``detail`` is
    the human-readable reason. Every transport raises only this, whatever library it
    sits on. ``unsent``: the request never left (no connection: a lookup, connect or TLS
    handshake that failed), so sending it again cannot repeat it, whatever its method."""

    def __init__(self, kind: ErrorKind, detail: str, *, unsent: bool = False) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail
        self.unsent = unsent

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class NoProxyLeft(ShoalError):
    """Every proxy the crawl was given failed too often in a row and was retired: the crawl
    stopped rather than go on without one (which would show the machine's own address).
    The URLs not fetched stay queued: with working proxies, the same crawl resumes."""

    exit_code = 5


class LoginFailed(ShoalError):
    """The crawl's login (``login``) failed: at the start, or when logging in again after
    the session expired. The crawl stopped rather than go on as an anonymous user; what
    was fetched is saved, and the URLs not fetched stay queued for a resume."""

    exit_code = 6


class UsageError(ShoalError):
    """A bad argument or option."""

    exit_code = 2


class InvalidURL(UsageError):
    """A URL that shoal cannot crawl (bad syntax, unsupported scheme, no host)."""

    def __init__(self, url: str, reason: str) -> None:
        shown = redact_userinfo(url)  # a password in the URL is not repeated
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        super().__init__(f"invalid URL {shown!r}: {reason}")
        self.url = url
        self.reason = reason


class OutputError(ShoalError):
    """The output cannot be opened, is in use by another crawl, or holds data that is not
    this crawl's (shoal replaces that only when told to, with ``overwrite``)."""

    exit_code = 4


class StateError(ShoalError):
    """The crawl state file cannot be opened, read or written."""

    exit_code = 3


class StateLocked(StateError):
    """Another running crawl holds this state file."""


class StateMismatch(StateError):
    """The state file belongs to a crawl with other start URLs or scope options."""


class FrontierError(StateError):
    """The frontier refused a change: a lease that is no longer held (it expired and its
    URL was given out again), released twice, or committed with an unknown outcome."""


class CrawlMismatch(StateMismatch):
    """A crawl of this id exists in Redis with other scope or politeness options."""


class StaleCommit(FrontierError):
    """A commit was refused, nothing of it applied: one of its leases expired and went to
    another worker, or the stored output position is not the one the commit started from
    (another process registered with this worker id). The records it covers must be cut
    from the output, since another worker fetches those URLs again. ``committed_offset`` is
    the offset Redis holds for this worker when that is the reason: cut the output back to it."""

    committed_offset: int | None = None


class RedisStateError(StateError):
    """The crawl's Redis cannot be used: it refused the password, is older than 7.0, evicts
    keys, or answered with an error."""


class RedisUnavailable(RedisStateError):
    """Redis cannot be reached, or the connection was lost and did not come back in time."""
