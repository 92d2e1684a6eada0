"""One crawl's state in Redis, shared by any number of worker processes on any machines.

:class:`RedisCrawlState` is the Redis half of the frontier seam (``docs/design.md``): it
speaks the job types of ``_jobs.py`` (Candidate in, Lease out, HostPolicy, Released), the
same the crawler's frontier seam uses, and knows nothing of the crawler, which adapts it.
redis-py is imported when a state is opened, never by ``import shoal`` or ``import
shoal.state``. Needs Redis >= 7.0, nothing but its core.

The key layout is drawn in ``lua/prelude.lua``, where the functions name the keys.

Semantics, each step one call of a Lua function (``lua/<name>.lua``, loaded by
``_redis_lua.py``), times from the server's ``TIME``:

- ``pending`` = queued (lists + delayed retries) + leased (``HLEN`` of the leases), kept
  exact by every function, so the crawl is over exactly when it is 0 (:meth:`finished`). A
  worker submits a page's links *before* committing the page, so pending never touches 0
  while work can still grow.
- **Seen**: linear hashing over intset buckets. A bucket splits when the average passes ~40%
  of ``set-max-intset-entries``, so buckets stay intsets: ~9 bytes a URL on Redis 7.0
  (``bench/redis_memory.py``; a plain SET of the fingerprints costs ~70, scrapy-redis's
  dupefilter ~90). Buckets are chosen by the fingerprint's low bits, computed in Lua from
  its decimal digits (Lua numbers are doubles).
- **Lease**: reclaims expired leases first (the URL goes back to the front of its host, one
  more attempt, the slot is freed), moves due retries back (both only once the earliest
  expiry or retry time has passed), then takes from hosts in
  ``ready`` with the oldest start first: a host gives a job if it has fewer than ``per_host``
  in flight and its next start has passed, and each take sets its next start to now + its
  delay. A host whose robots.txt is unknown gives exactly one ROBOTS job for the whole crawl
  and none of its pages until that job's release stores the policy.
- **Release** (immediate, the moment the response is in): frees the slot, holds the host
  (Retry-After), stores a robots policy (Crawl-delay raises the host's delay) or re-queues a
  retry after its wait. A DONE/FAILED lease stays held until committed; a ROBOTS lease ends
  at release and is never committed.
- **Commit** (on the writer, after the records are written): all or nothing. Refused
  (:class:`~shoal.StaleCommit`) if any lease is no longer this worker's or the stored output
  offset is not ``expected_offset``; else marks the URLs done/failed, drops the leases and
  stores the new offset. A commit carries a token made from its content, so the same commit
  sent again (a reply lost with the connection) is recognised and not counted twice.
- **Waiting**: ``lease`` returns how long until a clock makes something ready (a host's
  delay, a retry, a lease expiry); :meth:`wait` blocks on the ``events`` stream until
  another worker changes something (queues URLs, frees a slot, commits). Together they let
  a worker wait for the end of the crawl without polling.
- **Lost replies**: redis-py resends a command when the connection drops (capped backoff for
  ``reconnect_for`` seconds). Every function is safe to run twice: submit/claim dedupe (a URL
  the first run queued is then reported as not new), release and renew are idempotent, a
  lease request resent gets the reply it had, a commit resent is recognised by its token.
- **Workers**: ``register(worker_id)`` starts a new epoch of that worker: leases of the old
  one come back at once, and the old process (if it lives on) is fenced: its commits are
  refused. Worker ids must be unique among live workers; reusing one means "I am its restart".
- Nothing here deletes a crawl's data except :meth:`delete_crawl`, which must be called by
  name. ``close()`` only disconnects.

Redis settings (README, "One crawl, many machines"): ``appendonly yes`` with ``appendfsync
always`` (nothing acknowledged is lost, even in a machine crash) or ``no`` (nothing is lost
when Redis is killed; a machine crash rolls the crawl back to an earlier, consistent moment:
a worker whose file is then ahead of its offset gets StaleCommit with ``committed_offset``
and cuts back). Never ``everysec``: with a lagging fsync Redis answers before it writes. On
7.0 also ``aof-load-truncated no`` and ``redis-check-aof --fix`` before a restart after a
crash (7.0 cuts a torn tail inside a call's MULTI block; the restart then applies half a
call: the restart tests found it). :meth:`RedisCrawlState.open` checks these settings and
refuses others, or ones it cannot read, unless ``allow_weak_durability``.
``maxmemory-policy`` must not evict (``allkeys-*`` is refused at open). Redis Cluster is
not supported yet (functions derive key names from ``KEYS[1]``; the hash tag keeps them in
one slot for when it is).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .._errors import CrawlMismatch, RedisStateError, StaleCommit, UsageError
from . import _redis_lua as lua
from ._fingerprints import fingerprint
from ._jobs import Candidate, HostPace, HostPolicy, JobKind, Lease, Released, host_key, job_key
from ._redis_batch import ScriptBatcher
from ._redis_support import (
    CrawlCounts,
    HostTally,
    KnownSeen,
    WorkerInfo,
    check_durability,
    check_server,
    config_value,
    connect,
    entry,
    identity_differs,
    ms,
    parse_entry,
    retry_for,
    shown,
    signed,
    text,
    translated,
)
from ._redis_views import CrawlViews

if TYPE_CHECKING:
    import redis

__all__ = [
    "CrawlCounts",
    "HostTally",
    "RecrawlRun",
    "RedisCrawlState",
    "Visit",
    "WorkerInfo",
]

logger = logging.getLogger(__name__)

# 3 (#19): each committed URL's visit (P v) and the recrawl run counter (meta gen): an
# older worker would commit URLs a recrawl then never revisits.
_LAYOUT_VERSION = "3"
_CRAWL_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
_WORKER_ID = re.compile(r"[!-~]{1,200}")  # printable ASCII, no spaces or newlines
_HOST = re.compile(r"[a-z][a-z0-9+.-]*://[!-~]+")  # no spaces or newlines: key names
_SUBMIT_CHUNK = 1000
_POLICY_CACHE = 65536
_WAIT_CAP = 5.0  # seconds; see wait()
# A robots.txt that could not be fetched is stored as a policy with this text prefix (a
# host's hash keeps text and delay only), and no robots.txt file starts with NUL.
_UNREACHABLE = "\x00shoal-unreachable\x00"

Outcome = Literal["done", "failed", "retry"]
_FILL_STEP = 500  # URLs (or hosts) one step of a recrawl's fill looks at


class RecrawlRun(NamedTuple):
    """What :meth:`RedisCrawlState.recrawl` found: ``started`` (run ``run`` queued
    ``queued`` URLs), ``nothing`` (none due; ``oldest``: the earliest last fetch among
    them, wall-clock seconds), ``unfinished`` (run ``run`` has ``queued`` URLs of work
    left: it goes on), or ``run`` (no fill: run ``run`` is going on or over)."""

    what: str
    run: int
    queued: int
    oldest: float | None = None


class Visit(NamedTuple):
    """The last fetch of one URL in a shared crawl (``P v``, ``lua/visits.lua``); times
    in wall-clock seconds. ``keep``: the fetch was a 304 (validators it lacks are kept).
    Read back, ``run`` is the last run that queued or committed the URL."""

    status: int | None
    etag: str | None
    last_modified: str | None
    sha256: bytes | None
    sha1: bytes | None
    final_url: str | None
    fetched_at: float | None
    captured_at: float | None = None
    keep: bool = False
    run: int = 0


VisitNote = tuple[str, int | None, Visit | None]
"""What a commit keeps of one finished lease for its URL's visit: (URL, status, fetch)."""


def _visit_args(v: VisitNote | None) -> tuple[str, int | None, lua.Note | None]:
    """(signed fingerprint, status, note) of one finished lease for COMMIT ('': no visit
    is kept, for callers that give none)."""
    if v is None:
        return "", None, None
    url, status, f = v
    fp = signed(fingerprint(url))
    if f is None:
        return fp, status, None
    note: lua.Note = (
        "1" if f.keep else "0",
        _raw(f.etag),
        _raw(f.last_modified),
        f.sha256 or b"",
        f.sha1 or b"",
        _raw(f.final_url),
        -1 if f.fetched_at is None else _micros(f.fetched_at),
    )
    return fp, status, note


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(when: float) -> int:
    """Wall-clock seconds as whole microseconds, rounded as a WARC-Date of the same time
    is (``datetime.fromtimestamp``): a revisit's WARC-Refers-To-Date must be its capture's
    date exactly. Read back (÷ 10^6), a time of this century rounds to the same µs."""
    return (datetime.fromtimestamp(when, UTC) - _EPOCH) // _MICROSECOND


def _raw(value: str | None) -> bytes:
    """A header value or URL as stored: whatever a fetcher decoded it to comes back the
    same (``surrogatepass``: nothing a server sends can make the commit fail)."""
    return b"" if value is None else value.encode("utf-8", "surrogatepass")


def _text(raw: bytes) -> str | None:
    return raw.decode("utf-8", "surrogatepass") or None


def parse_visit(raw: bytes) -> Visit:
    head = raw.split(b" ", 9)
    run, status, fetched, captured = (int(x) for x in head[:4])
    lengths = [int(x) for x in head[4:9]]
    rest, fields, at = head[9], [], 0
    for n in lengths:
        fields.append(rest[at : at + n])
        at += n
    etag, lm, sha, sha1, final = fields
    return Visit(
        None if status < 0 else status,
        _text(etag),
        _text(lm),
        sha or None,
        sha1 or None,
        _text(final),
        None if fetched < 0 else fetched / 1_000_000,
        None if captured < 0 else captured / 1_000_000,
        run=run,
    )


class RedisCrawlState(CrawlViews):
    """The shared state of one crawl in Redis; see the module docstring for the layout.

    Open with :meth:`open`. Thread-safe: redis-py's client keeps a connection pool and every
    change is one function call. Call :meth:`register` once before the worker methods.
    """

    def __init__(
        self,
        client: redis.Redis,
        url: str,
        crawl_id: str,
        *,
        lease_ttl: float,
        reconnect_for: float,
        socket_timeout: float = 30.0,
    ) -> None:
        self._client = client
        self._url = shown(url)
        self.crawl_id = crawl_id
        self.prefix = f"shoal:{{{crawl_id}}}:"
        self.lease_ttl = lease_ttl
        self._reconnect_for = reconnect_for
        self._batcher: ScriptBatcher | None = None  # from open(), once the crawl is joined
        self._lock = threading.Lock()
        self._policies: dict[str, HostPolicy] = {}
        self._known = KnownSeen()
        self._sitemap_run = 1  # the run recrawl() joined: sitemaps are seen once per run
        self._requests = itertools.count(1)
        self._nonce = os.urandom(6).hex()  # request ids of this client, unique to it
        self._socket_timeout = socket_timeout
        self._last_event = (0, 0)
        # The latest run whose jobs this client leased (0: none yet): a worker that joined
        # run N and waited may lease the jobs of a run N + 1 another worker began.
        self.run = 0
        self.worker_id: str | None = None
        self.epoch: str | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        crawl_id: str,
        identity: Mapping[str, Any],
        *,
        per_host: int = 8,
        delay: float = 0.0,
        robots: bool = True,
        paces: Mapping[str, HostPace] | None = None,
        lease_ttl: float = 60.0,
        reconnect_for: float = 30.0,
        socket_timeout: float = 30.0,
        allow_weak_durability: bool = False,
    ) -> RedisCrawlState:
        """Connect to the Redis at ``url`` and join (or create) crawl ``crawl_id``.

        ``identity`` (scope options, JSON-able) and the politeness settings ``per_host``,
        ``delay`` and ``robots``, and ``paces`` (host pattern -> that host's own per_host
        and delay, which the Lua gives each host when it first sees it), are stored by the
        first process; a later one with other values is refused with
        :class:`~shoal.CrawlMismatch` naming them. A lost connection
        is retried with capped exponential backoff for ``reconnect_for`` seconds before
        :class:`~shoal.RedisUnavailable`; the first connection is tried only briefly.

        A Redis whose settings may lose commits it acknowledged (``appendonly no``,
        ``appendfsync everysec``; on 7.0 ``aof-load-truncated yes``), or that does not
        show them, is refused with :class:`~shoal.RedisStateError` naming the setting;
        ``allow_weak_durability`` runs on it with a warning that says what can be lost.
        """
        if not _CRAWL_ID.fullmatch(crawl_id):
            raise UsageError(
                f"invalid crawl id {crawl_id!r}: use 1-100 letters, digits, '.', '_' or '-'"
            )
        if per_host < 1:
            raise UsageError("per_host must be >= 1")
        client = connect(url, socket_timeout)
        state = cls(
            client,
            url,
            crawl_id,
            lease_ttl=lease_ttl,
            reconnect_for=reconnect_for,
            socket_timeout=socket_timeout,
        )
        try:
            state._check_server()
            with state._guard("connecting"):
                check_durability(client, state._url, allow_weak=allow_weak_durability)
            state._join(identity, per_host=per_host, delay=delay, robots=robots, paces=paces)
        except BaseException:
            client.close()
            raise
        client.set_retry(retry_for(reconnect_for))
        state._batcher = ScriptBatcher(client, state.prefix, lua.LIBRARY)
        return state

    def _check_server(self) -> None:
        with self._guard("connecting"):
            check_server(self._client, self._url)

    def _join(
        self,
        identity: Mapping[str, Any],
        *,
        per_host: int,
        delay: float,
        robots: bool,
        paces: Mapping[str, HostPace] | None = None,
    ) -> None:
        table = [
            (pattern, pace.per_host, None if pace.delay is None else ms(pace.delay))
            for pattern, pace in sorted((paces or {}).items())
        ]
        if table:
            # Compared as part of the identity (only when given: crawls without them
            # still match): every worker must pace every host alike.
            identity = {**identity, "hosts": {p: [n, d] for p, n, d in table}}
        ours = {
            "identity": json.loads(json.dumps(identity, sort_keys=True)),
            "per_host": per_host,
            "delay": ms(delay),
            "robots": robots,
        }
        # Buckets of the seen set split at 40% of the server's intset limit (see the Lua).
        limit = config_value(self._client, "set-max-intset-entries")
        target = max(16, int(int(limit or 512) * 0.4))
        reply = self._run(
            lua.init(
                version=_LAYOUT_VERSION,
                identity=json.dumps(ours["identity"], sort_keys=True),
                per_host=per_host,
                delay_ms=ours["delay"],
                robots=robots,
                bucket_target=target,
                paces=table,
            )
        )
        if reply[0] == b"created":
            logger.info("created crawl %s in %s", self.crawl_id, self._url)
            return
        version, ident, theirs_per_host, theirs_delay, theirs_robots = (
            x.decode() for x in reply[1:]
        )
        if version != _LAYOUT_VERSION:
            # Never migrated in place: workers of the other shoal may be running on it
            # (docs/design.md, "State versions").
            if version.isdigit() and int(version) < int(_LAYOUT_VERSION):
                how = "an older shoal started it: finish it with that shoal"
            else:
                how = "a newer shoal started it: upgrade shoal here to join it"
            raise RedisStateError(
                f"crawl {self.crawl_id!r} in {self._url} has state layout {version!r}; "
                f"this shoal uses {_LAYOUT_VERSION!r}: {how}, or crawl again under "
                "another --crawl-id"
            )
        theirs = {
            "identity": json.loads(ident),
            "per_host": int(theirs_per_host),
            "delay": int(theirs_delay),
            "robots": theirs_robots == "1",
        }
        differs = identity_differs(theirs, ours)
        if differs:
            raise CrawlMismatch(
                f"crawl {self.crawl_id!r} in {self._url} was started with other {differs}; "
                "use the same options, or another --crawl-id"
            )

    # -- plumbing ------------------------------------------------------------------------

    def _guard(self, what: str) -> contextlib.AbstractContextManager[None]:
        return translated(self._url, what, self._reconnect_for)

    def _run(self, call: lua.Call) -> Any:
        with self._guard(call.name.lower()):
            if self._batcher is not None:
                return self._batcher.call(call.name, call.args)
            return lua.LIBRARY.call(self._client, call.name, self.prefix, call.args)

    def _request_id(self) -> str:
        """Unique to this client: a call that leases stores it with its reply, so the same
        request sent again (its reply lost with the connection) gets that reply."""
        with self._lock:
            request = next(self._requests)
        return f"{request}.{self._nonce}"

    def _me(self) -> tuple[str, str]:
        if self.worker_id is None or self.epoch is None:
            raise RuntimeError("register() a worker id first")
        return self.worker_id, self.epoch

    def _fenced(self) -> StaleCommit:
        return StaleCommit(
            f"worker {self.worker_id!r} of crawl {self.crawl_id!r} was registered again by "
            "another process: this one must stop"
        )

    # -- workers -------------------------------------------------------------------------

    def register(self, worker_id: str) -> int:
        """Become ``worker_id`` (a new epoch of it) and return its committed output offset:
        a restarted worker cuts its output back to it. Leases the worker held before come
        back to the queue at once."""
        if not _WORKER_ID.fullmatch(worker_id):
            raise UsageError(f"invalid worker id {worker_id!r}: 1-200 printable ASCII, no spaces")
        epoch, offset, back = self._run(lua.register(worker=worker_id))
        if back:
            logger.info(
                "worker %s: %d leases of its last run went back to the queue", worker_id, back
            )
        self.worker_id, self.epoch = worker_id, str(epoch)
        return int(offset)

    # -- the frontier --------------------------------------------------------------------

    def submit(self, urls: Sequence[Candidate]) -> list[bool]:
        """Dedupe and queue, atomically per URL; True for each URL that was new.

        Safe to repeat (seeding by every worker): a URL is queued at most once per crawl.
        After a lost connection the call is retried; a URL the lost attempt queued is then
        reported as not new."""
        out: list[bool] = []
        for start in range(0, len(urls), _SUBMIT_CHUNK):
            chunk = urls[start : start + _SUBMIT_CHUNK]
            fps, sent, links = self._unknown(chunk)
            replies = [bool(x) for x in self._run(lua.submit(links=links))] if sent else []
            out += self._merged(len(chunk), sent, replies, fps)
        return out

    def _unknown(self, urls: Sequence[Candidate]) -> tuple[list[int], list[int], list[lua.Link]]:
        """The fingerprints of ``urls``, the positions of those this client does not know
        as seen, and those as links to queue (fingerprint, host, entry): the host is
        worked out only for these (most links are known)."""
        for u in urls:
            if u.kind is JobKind.ROBOTS:
                raise ValueError("robots jobs are made by lease(), not submitted")
        fps = [fingerprint(self._dedupe_key(u)) for u in urls]
        sent = self._known.unknown(fps)
        links: list[lua.Link] = []
        for i in sent:
            u = urls[i]
            host = host_key(u.url)
            if not _HOST.fullmatch(host):
                raise ValueError(f"not an absolute URL with a scheme://host[:port]: {u.url!r}")
            item = entry(1, u.kind, u.depth, u.url, u.referrer, u.request)
            links.append((signed(fps[i]), host, item))
        return fps, sent, links

    def _dedupe_key(self, u: Candidate) -> str:
        """What the seen set knows a URL by. A sitemap of a recrawl run is seen once per
        run, not once per crawl: each run reads it again for its <lastmod>s (it has no
        visit, so the fill does not queue it)."""
        # The run this worker began or joined, or a later one whose jobs it was given
        # (it joined before another worker began that run): a sitemap found in run N is
        # run N's, whoever reads the robots.txt that names it.
        run = max(self._sitemap_run, self.run)
        if u.kind is JobKind.SITEMAP and run > 1:
            return f"{u.url} run {run}"
        return u.url if u.request is None else job_key(u.url, u.request)

    def _merged(self, n: int, sent: list[int], replies: list[bool], fps: list[int]) -> list[bool]:
        """Per URL: new or not (a URL known here as seen is not new); the sent ones are
        known as seen from now on."""
        out = [False] * n
        for i, new in zip(sent, replies, strict=True):
            out[i] = new
        self._known.learn([fps[i] for i in sent])
        return out

    def claim(self, url: str) -> bool:
        """Mark ``url`` seen without queueing it; False if it was seen already."""
        fp = fingerprint(url)
        new = bool(self._run(lua.claim(fingerprints=[signed(fp)]))[0])
        self._known.learn([fp])
        return new

    def claim_for(self, job_url: str, url: str) -> bool:
        """:meth:`claim` of a redirect target that the job for ``job_url`` (its key,
        ``job_key``: the URL of a plain GET) fetches in
        place; True also when an earlier attempt of that job claimed it (a redo follows
        the same redirects). The job's claims (``P jc:<fingerprint>``) end with its
        commit (``claimed_by``), or after a week if that never comes."""
        fp = fingerprint(url)
        week = 7 * 86400 * 1000
        reply = self._run(
            lua.claim_for(job=signed(fingerprint(job_url)), url=signed(fp), keep_ms=week)
        )
        self._known.learn([fp])
        return bool(reply)

    def claim_many(self, urls: Sequence[str]) -> list[bool]:
        """:meth:`claim` for many URLs in one step."""
        out: list[bool] = []
        for start in range(0, len(urls), _SUBMIT_CHUNK * 3):
            fps = [fingerprint(u) for u in urls[start : start + _SUBMIT_CHUNK * 3]]
            out += [bool(x) for x in self._run(lua.claim(fingerprints=[signed(x) for x in fps]))]
            self._known.learn(fps)
        return out

    def lease(self, n: int, budget: int | None = None) -> tuple[list[Lease], float | None]:
        """Up to ``n`` jobs that may start now, at most ``budget`` of them first tries of
        pages, each leased for ``lease_ttl`` seconds; and the seconds until a clock may make
        something ready (None: nothing waits on a clock; see :meth:`wait` for the rest).
        ``budget`` is the caller's (a per-process ``--max-pages``); retries and robots
        jobs never count against it. Sent again after a lost reply, the request gets the
        reply it had, not a second set of leases."""
        jobs, ready_in, expires_in = self.lease_timed(n, budget)
        if expires_in is not None and (ready_in is None or expires_in < ready_in):
            ready_in = expires_in
        return jobs, ready_in

    def lease_timed(
        self, n: int, budget: int | None = None
    ) -> tuple[list[Lease], float | None, float | None]:
        """:meth:`lease`, with its clocks apart: seconds until a host's delay or a retry's
        wait may make a job ready, and seconds until the first lease expires (None: none)."""
        worker, epoch = self._me()
        reply = self._run(
            lua.lease(
                worker=worker,
                epoch=epoch,
                n=n,
                budget=budget,
                ttl_ms=ms(self.lease_ttl),
                request=self._request_id(),
            )
        )
        if reply[0] == b"fenced":
            raise self._fenced()
        return self._leased(reply)

    def _leased(self, reply: Sequence[Any]) -> tuple[list[Lease], float | None, float | None]:
        """LEASE's reply (also the tail of RELEASE's): jobs, ready_in, expires_in."""
        self._saw(text(reply[1]))
        run = int(reply[3])
        with self._lock:
            self.run = max(self.run, run)
        jobs = []
        for i in range(4, len(reply), 3):
            attempt, kind, depth, url, referrer, request = parse_entry(reply[i + 2])
            host = reply[i + 1].decode()
            jobs.append(
                Lease(reply[i].decode(), url, host, kind, depth, referrer, attempt, request)
            )
        ready_in = None if reply[0] < 0 else reply[0] / 1000
        expires_in = None if reply[2] < 0 else reply[2] / 1000
        return jobs, ready_in, expires_in

    def _saw(self, event_id: str) -> None:
        ms_part, _, seq = event_id.partition("-")
        seen = (int(ms_part), int(seq or 0))
        with self._lock:
            self._last_event = max(self._last_event, seen)

    def wait(self, timeout: float) -> bool:
        """Block until something changed in the crawl since the last :meth:`lease` of this
        client (a URL queued or given back, a host slot freed, a commit: pending may have
        reached 0), or ``timeout`` seconds passed (at most 5); True when something changed.
        A change that came between that lease and this call returns at once: no wake-up is
        lost. Changes are written for waiters only after a lease that gave fewer jobs than
        it was asked for (the only time there is reason to wait), so call it after one.

        ``ready_in`` from :meth:`lease` covers clocks (delays, retries, lease expiries);
        this covers the other workers. Wait ``min(ready_in, a cap)`` with it."""
        with self._lock:
            since = "{}-{}".format(*self._last_event)
        # The block must end before the socket's own timeout would call the link dead, and
        # within the window in which the functions write events for waiters (WAIT_WINDOW_MS in
        # lua/jobs.lua): a longer block could sleep through a change.
        cap = min(_WAIT_CAP, self._socket_timeout - 1)
        block = max(1, round(min(timeout, cap) * 1000))
        with self._guard("waiting for changes"):
            reply: Any = self._client.xread({f"{self.prefix}events": since}, count=1, block=block)
        if not reply:
            return False
        entries = reply[0][1]
        if entries:
            self._saw(text(entries[-1][0]))
        return True

    def release(
        self,
        lease_id: str,
        outcome: Outcome,
        *,
        retry_in: float | None = None,
        hold_host_for: float | None = None,
        policy: HostPolicy | None = None,
    ) -> bool:
        """The fetch is over: free the host's slot now. ``retry`` re-queues the URL after
        ``retry_in`` seconds (one attempt more); ``hold_host_for`` asks the host nothing
        for that long; a ROBOTS lease released done/failed must carry the host's
        ``policy``, and ends here. False if the lease is no longer this worker's (it
        expired and went elsewhere: its result must not be written). Idempotent."""
        done = self.release_with_links(
            lease_id, outcome, (), retry_in=retry_in, hold_host_for=hold_host_for, policy=policy
        )
        return not done.lost

    def release_with_links(
        self,
        lease_id: str,
        outcome: Outcome,
        links: Sequence[Candidate],
        *,
        retry_in: float | None = None,
        hold_host_for: float | None = None,
        park: bool = False,
        policy: HostPolicy | None = None,
        take: int = 0,
        budget: int | None = None,
    ) -> Released:
        """:meth:`submit` ``links`` (the page's), then :meth:`release`, then (``take`` > 0)
        :meth:`lease` up to ``take`` jobs with ``budget``: one round trip a page. The
        links are queued whatever the release's answer (they are real links). ``park``
        (instead of ``hold_host_for``): the host is not asked again in this crawl; its URLs
        stay queued and are not :meth:`work_left`."""
        worker, epoch = self._me()
        if outcome not in ("done", "failed", "retry"):
            raise ValueError(f"unknown outcome {outcome!r}")
        # Past one chunk the leading links go ahead on their own, still before the release.
        head = len(links) - (len(links) - 1) % _SUBMIT_CHUNK - 1 if links else 0
        before = self.submit(links[:head]) if head else []
        tail = links[head:]
        fps, sent, tail_links = self._unknown(tail)
        pol: Literal["none", "txt"] | None = None
        robots_txt, cdelay = b"", None
        if policy is not None:
            rules = policy.robots_txt
            if policy.unreachable is not None:
                rules = _UNREACHABLE + json.dumps(list(policy.unreachable))
            pol = "none" if rules is None else "txt"
            robots_txt = (rules or "").encode("utf-8", "surrogatepass")
            cdelay = None if policy.crawl_delay is None else ms(policy.crawl_delay)
        reply = self._run(
            lua.release(
                worker=worker,
                epoch=epoch,
                lease_id=lease_id,
                outcome=outcome,
                retry_ms=ms(retry_in if retry_in is not None else 0.0),
                hold_ms=lua.PARK
                if park
                else (None if hold_host_for is None else ms(hold_host_for)),
                policy=pol,
                robots_txt=robots_txt,
                crawl_delay_ms=cdelay,
                links=tail_links,
                take=take,
                budget=budget,
                ttl_ms=ms(self.lease_ttl),
                request=self._request_id(),
            )
        )
        new = self._merged(len(tail), sent, [bool(x) for x in reply[1 : 1 + len(sent)]], fps)
        if take > 0:
            jobs, ready_in, expires_in = self._leased(reply[1 + len(sent) :])
        else:
            jobs, ready_in, expires_in = [], None, None
        added = [c for c, fresh in zip(links, before + new, strict=True) if fresh]
        return Released(added, jobs, ready_in, not reply[0], expires_in)

    def commit(
        self,
        finished: Sequence[tuple[str, Literal["done", "failed"]]],
        *,
        expected_offset: int,
        new_offset: int,
        claimed_by: Sequence[str] = (),
        visits: Sequence[VisitNote | None] | None = None,
        changes: Mapping[str, int] | None = None,
        targets: Sequence[tuple[str, str, int]] = (),
    ) -> bool:
        """Durably finish leases ``(lease id, "done"|"failed")`` whose records now lie in
        this worker's output before ``new_offset``, the output having been at
        ``expected_offset`` at the last commit. All or nothing; raises
        :class:`~shoal.StaleCommit` when refused. Returns False when this same commit had
        already been applied (sent again after a lost reply), True otherwise.
        ``claimed_by``: URLs of committed jobs that claimed redirect targets
        (:meth:`claim_for`): those claims end here (else they expire after a week).
        ``visits``: per finished lease, (its URL, status, its fetch or None), kept
        as that URL's visit for the next recrawl run (every committed URL is kept, with
        or without one); ``changes``: a recrawl run's URLs by change, added to the run's
        counts; ``targets``: (URL, referrer, depth) of redirect targets the committed jobs
        fetched in place, kept as URLs the crawl knows (a recrawl revisits them too)."""
        worker, epoch = self._me()
        ids = [lease_id for lease_id, _ in finished]
        if len(set(ids)) != len(ids):
            raise ValueError("a lease appears twice in one commit")
        token = hashlib.blake2b(
            f"{expected_offset} {new_offset} {' '.join(ids)}".encode(), digest_size=12
        ).hexdigest()
        for _, outcome in finished:
            if outcome not in ("done", "failed"):
                raise ValueError(f"a commit is done or failed, not {outcome!r}")
        reply = self._run(
            lua.commit(
                worker=worker,
                epoch=epoch,
                token=token,
                expected_offset=expected_offset,
                new_offset=new_offset,
                claims=[signed(fingerprint(url)) for url in claimed_by],
                targets=[
                    (signed(fingerprint(url)), entry(1, JobKind.PAGE, depth, url, referrer))
                    for url, referrer, depth in targets
                ],
                finished=[
                    (lease_id, outcome, *_visit_args(v))
                    for (lease_id, outcome), v in zip(
                        finished, visits or [None] * len(finished), strict=True
                    )
                ],
                changes=changes,
            )
        )
        status = reply[0].decode()
        if status == "ok":
            return True
        if status == "dup":
            return False
        if status == "fenced":
            raise self._fenced()
        if status == "offset":
            error = StaleCommit(
                f"commit refused: worker {worker!r} has output offset {reply[1].decode()} "
                f"committed in Redis, not {expected_offset}"
            )
            error.committed_offset = int(reply[1])
            raise error
        if status == "robots":
            raise ValueError(f"lease {reply[1].decode()} is a robots job: it ends at release")
        raise StaleCommit(
            f"commit refused: lease {reply[1].decode()} is no longer held by worker {worker!r} "
            "(it expired and its URL went back to the queue)"
        )

    # -- recrawls ------------------------------------------------------------------------

    def recrawl(self, *, start: bool, fetched_before: float | None = None) -> RecrawlRun:
        """Join the crawl's recrawl run, taking steps of a fill in progress until it ends;
        ``start``: begin the next run (every URL the crawl knows queued again, with
        ``fetched_before`` (wall-clock seconds) only those fetched before it) if the
        current one has no work left. Each step is one call over a bounded slice of the
        crawl's URLs, so a crawl of any size fills in bounded memory; a worker killed
        mid-fill leaves it for the next worker that joins (each URL is queued once a run).
        """
        cut = None if fetched_before is None else round(fetched_before * 1_000_000)
        while True:
            reply = self._run(lua.recrawl(start=start, cut_us=cut, count=_FILL_STEP))
            what = reply[0].decode()
            if what != "fill":
                break
        run = int(reply[1])
        self._sitemap_run = run
        if what == "started":
            return RecrawlRun("started", run, int(reply[2]))
        if what == "nothing":
            due = int(reply[2])
            return RecrawlRun("nothing", run, 0, None if due < 0 else due / 1_000_000)
        if what == "unfinished":
            return RecrawlRun("unfinished", run, int(reply[2]))
        return RecrawlRun("run", run, 0)

    def revisit_first(self, changed: Sequence[tuple[str, float]]) -> int:
        """A recrawl run: the pages a sitemap says changed since their last fetch (URL, its
        <lastmod> in wall-clock seconds) go to the front of their hosts' queues, queued in
        this run if it had not (not due), each once per run (``lua/lastmod.lua``). One
        call for them all; how many were moved up."""
        if not changed:
            return 0
        pairs = [(signed(fingerprint(url)), int(when * 1_000_000)) for url, when in changed]
        return int(self._run(lua.lastmod(changed=pairs)))

    def visit(self, fp: int) -> Visit | None:
        """The last fetch of the URL whose fingerprint is ``fp`` (None: never fetched)."""
        with self._guard("reading a visit"):
            raw: Any = self._client.hget(f"{self.prefix}v", str(signed(fp)))
        return None if raw is None else parse_visit(raw)

    def generation(self) -> int:
        """The crawl's current run as records name it: 1, then one more per recrawl run."""
        with self._guard("reading the run"):
            raw: Any = self._client.hget(f"{self.prefix}meta", "gen")
        return int(raw or 1)

    def recrawl_runs(self) -> list[dict[str, Any]]:
        """Each recrawl run's URLs by change, as :func:`~shoal.state.recrawl_runs`."""
        with self._guard("reading recrawl counts"):
            raw: Any = self._client.hgetall(f"{self.prefix}changes")
        runs: dict[int, dict[str, Any]] = {}
        for key, n in raw.items():
            run, _, change = text(key).partition(" ")
            row = runs.setdefault(
                int(run),
                {"run": int(run), **dict.fromkeys(("new", "changed", "unchanged", "gone"), 0)},
            )
            row[change] = int(n)
        return [runs[r] for r in sorted(runs)]

    def renew(self, lease_ids: Sequence[str]) -> list[str]:
        """Extend this worker's leases by ``lease_ttl`` (the heartbeat of long fetches);
        returns the ids that are no longer its own."""
        worker, epoch = self._me()
        lost = self._run(
            lua.renew(worker=worker, epoch=epoch, ttl_ms=ms(self.lease_ttl), lease_ids=lease_ids)
        )
        return [x.decode() for x in lost]

    def host_policy(self, host: str) -> HostPolicy | None:
        """The host's stored robots policy, None while unknown. Cached once known: a policy
        never changes within a crawl."""
        with self._lock:
            cached = self._policies.get(host)
        if cached is not None:
            return cached
        with self._guard("reading a host policy"):
            pol, text, cdelay = self._client.hmget(
                f"{self.prefix}h:{host}", "pol", "rtxt", "cdelay"
            )
        if pol is None:
            return None
        rules = (
            text.decode("utf-8", "surrogatepass")
            if pol == b"txt" and isinstance(text, bytes)
            else None
        )
        delay = int(cdelay) / 1000 if cdelay is not None else None
        if rules is not None and rules.startswith(_UNREACHABLE):
            kind, detail = json.loads(rules[len(_UNREACHABLE) :])
            policy = HostPolicy(None, delay, unreachable=(kind, detail))
        else:
            policy = HostPolicy(rules, delay)
        with self._lock:
            if len(self._policies) >= _POLICY_CACHE:
                self._policies.clear()
            self._policies[host] = policy
        return policy

    def set_delay(self, host: str, seconds: float) -> None:
        """Set the host's delay between request starts, for every worker (auto-throttle)."""
        if not _HOST.fullmatch(host):
            raise ValueError(f"not a scheme://host[:port] key: {host!r}")
        self._run(lua.set_delay(host=host, delay_ms=ms(seconds)))

    # -- the crawl's cookie jar ------------------------------------------------------------
    #
    # A hash of the crawl's cookies (field: the cookie's key, value: it as JSON) and a
    # counter bumped by every change. Workers read the hash when they start and again
    # only when the counter moved; last writer wins per cookie. Keys no older worker
    # reads: no layout bump.

    def cookies(self) -> list[tuple[str, str]]:
        """Every cookie of the crawl's shared jar: (key, the cookie as JSON)."""
        with self._guard("reading the cookie jar"):
            stored = self._client.hgetall(f"{self.prefix}cookies")
        return [(text(k), text(v)) for k, v in stored.items()]

    def cookies_version(self) -> int:
        """The jar's change counter: another value means another worker changed it."""
        with self._guard("reading the cookie jar"):
            value = self._client.get(f"{self.prefix}cookies:v")
        return int(value or 0)

    def store_cookies(self, changes: Sequence[tuple[str, str | None]]) -> int:
        """Apply a jar's changes (key, JSON; None: removed; '': expired in that worker's
        jar) in one round trip; the change counter after it. A cookie that expired in a
        worker's jar is removed only if the shared copy has expired too: another worker
        may have stored a later one (a rolling session's) that this one had not read, and
        the removal must not take it (WATCH: a copy written meanwhile is seen)."""
        key = f"{self.prefix}cookies"
        put: dict[Any, Any] = {k: v for k, v in changes if v}
        gone = [k for k, v in changes if v is None]
        expired = [k for k, v in changes if v == ""]
        with self._guard("writing the cookie jar"):
            if expired:
                counter = self._store_expired(key, put, gone, expired)
                if counter is not None:
                    return counter
            pipe = self._client.pipeline(transaction=False)  # the counter is a hint
            if put:
                pipe.hset(key, mapping=put)
            if gone:
                pipe.hdel(key, *gone)
            pipe.incr(f"{self.prefix}cookies:v")
            replies = pipe.execute()
        return int(replies[-1])

    def _store_expired(
        self, key: str, put: dict[Any, Any], gone: list[str], expired: list[str]
    ) -> int | None:
        """store_cookies with ``expired`` removed where the shared copy has expired too;
        None when other workers kept writing the jar meanwhile (those removals are only
        tidying: expired copies are never sent, so they may wait for the next one)."""
        from redis.exceptions import WatchError

        now = time.time()  # the clock the jars' expiries are in
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_COOKIE_TRIES):
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    stored = pipe.hmget(key, expired)
                    dead = [k for k, v in zip(expired, stored, strict=True) if _expired(v, now)]
                    pipe.multi()
                    if put:
                        pipe.hset(key, mapping=put)
                    if gone or dead:
                        pipe.hdel(key, *gone, *dead)
                    pipe.incr(f"{self.prefix}cookies:v")
                    return int(pipe.execute()[-1])
                except WatchError:
                    continue
        return None

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Disconnect. The crawl's data stays in Redis."""
        if self._batcher is not None:
            self._batcher.close()
        self._client.close()

    def __enter__(self) -> RedisCrawlState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# Tries at removing expired cookies while other workers write the jar (each lost try
# means another worker wrote it meanwhile): bounded, then left for a later change.
_COOKIE_TRIES = 5


def _expired(stored: Any, now: float) -> bool:
    """Whether a shared jar's copy of a cookie (its JSON, or None: not there) has expired."""
    if stored is None:
        return False
    try:
        expires = json.loads(stored).get("expires")
    except (ValueError, AttributeError):
        return False  # not a cookie a shoal wrote: not this worker's to remove
    return isinstance(expires, int | float) and expires <= now
