"""Plain data, the entry format and redis-py plumbing of :mod:`shoal.state._redis`.

Nothing here imports redis-py at module level: ``import shoal.state`` must not load it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import RedisStateError, RedisUnavailable, UsageError
from ._fingerprints import FingerprintSet
from ._jobs import JobKind

if TYPE_CHECKING:
    import redis

__all__ = [
    "CrawlCounts",
    "HostTally",
    "KnownSeen",
    "WorkerInfo",
]

logger = logging.getLogger(__name__)

_KIND_CODE = {JobKind.PAGE: "p", JobKind.ROBOTS: "r", JobKind.SITEMAP: "s"}
_KIND_OF = {v: k for k, v in _KIND_CODE.items()}


@dataclass(frozen=True, slots=True)
class CrawlCounts:
    queued: int
    leased: int
    done: int
    failed: int
    hosts: int

    @property
    def pending(self) -> int:
        return self.queued + self.leased


@dataclass(frozen=True, slots=True)
class HostTally:
    queued: int
    in_flight: int
    done: int
    failed: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    worker_id: str
    epoch: int
    offset: int
    leases: int
    done: int
    failed: int
    idle_for: float | None  # seconds since it last spoke to Redis


class KnownSeen:
    """Fingerprints this client knows the crawl has seen (seen is never undone in a crawl),
    so that a page's links already seen cost no round trip and no Redis work: most links
    are. A :class:`FingerprintSet`, 10-15 bytes each; at ``cap`` it starts over (it only
    saves work, it never decides). Thread-safe."""

    def __init__(self, cap: int = 2_000_000) -> None:
        self._cap = cap
        self._lock = threading.Lock()
        self._set = FingerprintSet()

    def unknown(self, fps: Sequence[int]) -> list[int]:
        """The positions in ``fps`` of the fingerprints not known here."""
        with self._lock:
            known = self._set
            return [i for i, fp in enumerate(fps) if fp not in known]

    def learn(self, fps: Sequence[int]) -> None:
        with self._lock:
            if len(self._set) + len(fps) > self._cap:
                self._set = FingerprintSet()
            for fp in fps:
                self._set.add(fp)

    def clear(self) -> None:
        with self._lock:
            self._set = FingerprintSet()


def text(value: bytes | str) -> str:
    """A reply item as str (redis-py gives bytes with protocol 2)."""
    return value.decode() if isinstance(value, bytes) else value


def signed(fp: int) -> str:
    """Redis keeps a set of integers as an intset only for signed 64-bit values."""
    return str(fp - (1 << 64) if fp >= 1 << 63 else fp)


def entry(  # noqa: PLR0917 - an entry's fields, in their order
    attempt: int,
    kind: JobKind,
    depth: int,
    url: str,
    referrer: str | None,
    request: str | None = None,
) -> bytes:
    raw = url.encode()
    code = _KIND_CODE.get(kind)
    if code is None:
        raise ValueError(f"unknown job kind {kind!r}")
    head = f"{attempt} {code} {depth} {len(raw)} ".encode()
    out = head + raw + (referrer or "").encode()
    # A request's fields follow the referrer after a NUL (which no canonical URL holds):
    # the scripts read only an entry's first two fields, and a plain GET's entry is what
    # it always was (an older crawl's entries read the same).
    return out if request is None else out + b"\0" + request.encode()


def parse_entry(entry: bytes) -> tuple[int, JobKind, int, str, str | None, str | None]:
    attempt, code, depth, size, rest = entry.split(b" ", 4)
    n = int(size)
    tail = rest[n:]
    request = None
    if b"\0" in tail:
        tail, _, raw = tail.partition(b"\0")
        request = raw.decode()
    referrer = tail.decode()
    kind = _KIND_OF[code.decode()]
    return int(attempt), kind, int(depth), rest[:n].decode(), referrer or None, request


def ms(seconds: float | None) -> int:
    return -1 if seconds is None else max(0, round(seconds * 1000))


def shown(url: str) -> str:
    """The Redis URL for messages: never the password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def translated(url: str, what: str, reconnect_for: float) -> Iterator[None]:
    """redis-py's errors become shoal's, naming the URL (given without its password)."""
    import redis.exceptions as rex

    try:
        yield
    except rex.AuthenticationError as exc:
        if "required" in str(exc):
            raise RedisStateError(
                f"Redis at {url} needs a password ({exc}); "
                "give it in the URL: redis://:PASSWORD@host:port/db"
            ) from None
        raise RedisStateError(
            f"Redis at {url} refused the credentials ({exc}); check the password "
            "in the URL (redis://:PASSWORD@host:port/db)"
        ) from None
    except rex.ResponseError as exc:
        text = str(exc)
        if "SHOAL_GONE" in text:
            raise RedisStateError(
                f"the crawl's state is gone from Redis at {url}: deleted, evicted, or Redis "
                "restarted without its data (run Redis with appendonly yes)"
            ) from None
        if text.startswith("NOPERM") or "no permissions" in text:
            raise RedisStateError(
                f"Redis at {url} does not let this user do that ({what}: {text}); a shared "
                "crawl needs FCALL and FUNCTION LOAD among others (README, 'One crawl, many "
                "machines')"
            ) from None
        if "NOAUTH" in text or "WRONGPASS" in text:
            raise RedisStateError(
                f"Redis at {url} needs a password ({text}); "
                "give it in the URL: redis://:PASSWORD@host:port/db"
            ) from None
        raise RedisStateError(f"Redis at {url} failed {what}: {text}") from None
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        if what == "connecting":
            raise RedisUnavailable(f"cannot reach Redis at {url}: {exc}") from None
        raise RedisUnavailable(
            f"lost Redis at {url} ({what}) and could not reconnect within "
            f"{reconnect_for:g} s: {exc}; committed work is safe in Redis"
        ) from None
    except rex.RedisError as exc:
        raise RedisStateError(f"Redis at {url} failed {what}: {exc}") from None


def config_value(client: redis.Redis, name: str) -> str | None:
    """A server setting, or None where CONFIG is refused (managed Redis often renames it)."""
    import redis.exceptions as rex

    try:
        reply: dict[Any, Any] = dict(client.config_get(name))
    except rex.ResponseError:
        return None
    value = reply.get(name.encode(), reply.get(name))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def retry_for(seconds: float) -> Any:
    """redis-py's Retry with capped exponential backoff lasting about ``seconds``."""
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    base, cap = 0.05, 2.0  # at most 2 s between tries: a restarted Redis is found quickly
    retries, total, step = 0, 0.0, base
    while total < seconds:
        total += min(cap, step)
        step *= 2
        retries += 1
    return Retry(ExponentialBackoff(cap=cap, base=base), retries)


def connect(url: str, socket_timeout: float) -> redis.Redis:
    try:
        import redis
    except ImportError:
        raise UsageError("a shared crawl needs redis-py: pip install 'shoal[redis]'") from None
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=min(socket_timeout, 5.0),
            retry=retry_for(0.0),  # the first contact fails fast; open() sets the real one
            health_check_interval=30,
            client_name="shoal",
            protocol=2,  # the replies this module parses; redis-py 8 would pick RESP3
        )
    except ValueError as exc:
        raise UsageError(
            f"invalid Redis URL {shown(url)!r}: {exc} "
            "(expected redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... or unix:///PATH)"
        ) from None


def check_server(client: redis.Redis, url: str) -> None:
    """Refuse a Redis older than 7.0, or one that evicts keys (a crawl's queue and seen set
    would vanish under memory pressure)."""
    info = client.info("server")
    version = str(info.get("redis_version", "0"))
    if tuple(int(x) for x in re.findall(r"\d+", version)[:2]) < (7, 0):
        raise RedisStateError(
            f"Redis at {url} is version {version}; shoal needs Redis 7.0 or newer"
        )
    policy = config_value(client, "maxmemory-policy")
    if policy is None:
        logger.debug("CONFIG GET refused by %s; eviction policy not checked", url)
    elif policy.startswith("allkeys"):
        raise RedisStateError(
            f"Redis at {url} evicts keys (maxmemory-policy {policy}): a crawl's "
            "queue and seen set would be lost; use noeviction (or a volatile-* policy)"
        )


WEAK_DURABILITY_FLAG = "--allow-weak-durability (Python: allow_weak_durability=True)"


def check_durability(client: redis.Redis, url: str, *, allow_weak: bool) -> None:
    """Refuse a Redis that may lose commits it acknowledged, or whose settings cannot be
    read, unless ``allow_weak``: then warn with what can be lost.

    The exactly-once guarantee needs every acknowledged commit to survive a kill of Redis:
    ``appendonly yes`` with ``appendfsync no`` or ``always`` (both write the AOF before
    answering; ``everysec`` may answer first when an fsync lags), and on 7.0
    ``aof-load-truncated no`` (7.0 loads a torn tail inside a call's MULTI block as half
    a call). A managed Redis may refuse CONFIG GET: ``appendonly`` is then read from INFO
    persistence, ``appendfsync`` cannot be read at all."""
    weak: list[str] = []  # "setting value (how to fix)"
    unread: list[str] = []
    losses: list[str] = []
    config_refused = False
    rolls_back = False  # Redis may come back at an earlier, consistent moment of the crawl
    appendonly = config_value(client, "appendonly")
    if appendonly is None:
        config_refused = True
        aof = client.info("persistence").get("aof_enabled")
        appendonly = None if aof is None else ("yes" if str(aof) == "1" else "no")
    if appendonly is None:
        unread.append("appendonly")
    elif appendonly != "yes":
        weak.append("appendonly no (CONFIG SET appendonly yes)")
        save = None if config_refused else config_value(client, "save")
        if save == "":
            losses.append(
                "a restart of this Redis loses the whole crawl (nothing is saved): its "
                "workers stop (exit 3) and their files are no crawl's any more"
            )
        else:
            rolls_back = True
            losses.append(
                "a restart of this Redis takes the crawl back to its last RDB snapshot, if any"
            )
    if appendonly != "no":
        fsync = None if config_refused else config_value(client, "appendfsync")
        if fsync is None:
            unread.append("appendfsync")
        elif fsync not in ("no", "always"):
            rolls_back = True
            weak.append(
                f"appendfsync {fsync} (CONFIG SET appendfsync no; or always, which also "
                "survives a machine crash)"
            )
            losses.append(
                "a kill of this Redis may lose commits it acknowledged (the last second or "
                "more when its disk lags)"
            )
    version = str(client.info("server").get("redis_version", "0"))
    if tuple(int(x) for x in re.findall(r"\d+", version)[:2]) == (7, 0):
        truncated = None if config_refused else config_value(client, "aof-load-truncated")
        if truncated is None:
            unread.append("aof-load-truncated (Redis 7.0)")
        elif truncated != "no":
            weak.append(f"aof-load-truncated {truncated} (CONFIG SET aof-load-truncated no)")
            losses.append(
                "after a crash, Redis 7.0 may load half of a crawl's last call (leases and "
                "offsets that no worker wrote)"
            )
    if not weak and not unread:
        return
    if weak:
        what = f"Redis at {url} is not set to keep every commit it acknowledges: "
        what += "; ".join(weak)
        consequence = "; ".join(losses)
        if rolls_back:
            consequence += (
                "; the crawl then goes back to an earlier moment: a worker whose file is "
                "ahead of it stops (exit 3) and, restarted, cuts its file back, and those "
                "pages are fetched again"
            )
    else:
        what = (
            f"Redis at {url} does not show {', '.join(unread)} (CONFIG GET refused, as managed "
            "Redis services do): shoal cannot check that commits it acknowledges survive a kill"
        )
        consequence = (
            "unless the server runs appendonly yes with appendfsync no or always, a kill of "
            "it may lose acknowledged commits and pages are fetched again"
        )
    if unread and weak:
        what += f"; and it does not show {', '.join(unread)} (CONFIG GET refused)"
    if not allow_weak:
        fix = "change the settings (also in redis.conf)" if weak else "check the settings"
        raise RedisStateError(
            f"{what}. The shared crawl's exactly-once output needs appendonly yes with "
            f"appendfsync no or always (on 7.0 also aof-load-truncated no): {fix}, or accept "
            f"weaker durability with {WEAK_DURABILITY_FLAG}"
        )
    logger.warning("%s; running anyway (weak durability accepted): %s", what, consequence)


def identity_differs(theirs: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """What a joining worker's settings change of the crawl's stored ones ("per_host, depth
    (it has per_host=2, depth=3)"), None when they agree. ``delay`` is in ms."""
    diffs = [k for k in ("per_host", "delay", "robots") if theirs[k] != ours[k]]
    a, b = theirs["identity"], ours["identity"]
    diffs += sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not diffs:
        return None
    stored = {**theirs, **a}
    if "delay" in diffs:
        stored["delay"] = theirs["delay"] / 1000
    have = ", ".join(f"{k}={stored.get(k)!r}" for k in diffs)
    return f"{', '.join(diffs)} (it has {have})"
