"""One streaming pass over a crawl's records: totals, chart series and the report's tables.

Memory is bounded by what the report shows, not by the crawl: counters per second of
crawl time, per status, per depth and per host, two fixed-size latency histograms per
host, the redirect sources (to join chains), and the first ``max_rows`` broken links.
Every broken link is handed to ``on_broken`` as it is read, so the full list goes to a
CSV file without being held.

A recrawl's output (``--recrawl``) holds a record of each URL per run; each URL counts once,
as its latest run says. That needs to know, at a record, whether a later run recorded its
URL again: :func:`latest_runs` reads the records once for that (a small integer per URL),
and the pass then skips each record a later run superseded. A crawl of one run needs
neither: :attr:`Aggregate.reruns` says when the pass met a second run without that map.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .._errors import ErrorKind
from ..crawler._stats import LatencyHistogram

__all__ = [
    "LATENCY_EDGES_MS",
    "Aggregate",
    "BrokenLink",
    "HostRow",
    "RedirectChain",
    "is_held_back",
    "latest_runs",
    "record_key",
]

# The authority of an absolute URL; 5x cheaper than urlsplit, which stays the fallback.
_NETLOC = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)").match
# A pause longer than this between two records starts a new run (a resumed crawl).
RUN_GAP = 300
# Points on the pages-over-time chart, at most: enough to see a stall, small to draw.
RATE_POINTS = 240
# Upper bounds of the latency histogram's bins, in milliseconds (the last bin is open).
LATENCY_EDGES_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)


@dataclass(slots=True)
class BrokenLink:
    url: str
    status: int | None
    kind: str
    detail: str
    referrer: str | None
    depth: int | None
    also_linked_from: list[str] = field(default_factory=list)  # from saved bodies


@dataclass(slots=True)
class HostRow:
    host: str
    pages: int = 0
    ok: int = 0
    errors: int = 0
    bytes: int = 0
    robots_skipped: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def median_ms(self) -> float | None:
        p = self.latency.percentile(50)
        return None if p is None else p * 1000


@dataclass(slots=True)
class RedirectChain:
    hops: list[str]
    statuses: list[int | None]
    outcome: str


@dataclass(slots=True)
class _Redirect:
    status: int | None
    target: str
    followed: bool  # fetched in place: the record's status is the target's


def error_kind(record: dict[str, Any]) -> str | None:
    """The record's error kind (``http_404``, ``timeout``, ...), or None if it is fine."""
    error = record.get("error")
    if error == ErrorKind.PARSE_LIMIT:
        error = None  # older shoal: the page was fetched, only its parse was cut
    if error:
        return str(error)
    status = record.get("status")
    if isinstance(status, int) and status >= 400:
        return f"http_{status}"
    return None


def record_key(url: str, record: dict[str, Any]) -> str:
    """What tells a record's request apart from another's (the frontier's ``job_key`` as
    far as a record says it): the URL, and the method when it is not GET (a POST and a GET
    of one URL are two pages). Two POSTs of one URL with different bodies share a key: a
    record does not carry the body."""
    method = record.get("method")
    if isinstance(method, str) and method and method.upper() != "GET":
        return f"{method.upper()} {url}"
    return url


def _run_of(record: dict[str, Any]) -> int:
    run = record.get("run")
    return run if isinstance(run, int) else 1  # a first run's JSONL records have none


def latest_runs(records: Iterable[dict[str, Any]]) -> dict[int, int]:
    """The latest run that recorded each request: ``hash(record_key)`` -> run.

    Keyed by the key's hash, not the key: a URL costs ~100 bytes here, not its length
    again (200,000 URLs, ~25 MB). Both passes run in one process, so ``hash`` is stable;
    a collision of two 64-bit hashes merely keeps a record of an older run out.
    """
    latest: dict[int, int] = {}
    get = latest.get
    for r in records:
        url = r.get("url")
        if not isinstance(url, str) or not url:
            continue
        key = hash(record_key(url, r))
        run = _run_of(r)
        if run > get(key, 0):
            latest[key] = run
    return latest


def is_held_back(record: dict[str, Any]) -> bool:
    """A record of a URL held back because its host's robots.txt could not be fetched
    (unreachable, or a 5xx): the URL stayed queued, and a later run that retries it writes
    another record for it, which supersedes this one. Recognised by what such a record has
    always said (no status, an error whose detail starts "robots.txt"), so files written
    before this rule are read the same way."""
    if record.get("status") is not None or not record.get("error"):
        return False
    detail = record.get("error_detail")
    return isinstance(detail, str) and detail.startswith("robots.txt")


class Aggregate:
    def __init__(
        self,
        *,
        max_rows: int,
        on_broken: Callable[[BrokenLink], None] | None = None,
        no_response: dict[str, tuple[str, str | None]] | None = None,
        latest: dict[int, int] | None = None,
    ) -> None:
        """``latest``: :func:`latest_runs` of the same records, for an output holding
        more than one run; records of a run older than their URL's latest are skipped
        (their run's change counts stay)."""
        self.max_rows = max_rows
        self._on_broken = on_broken
        self.pages = 0
        self.ok = 0
        self.redirected = 0
        self.failed = 0
        self.bytes = 0
        self.skipped_records = 0  # records without a url (a custom on_page callback's)
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.depths: Counter[int] = Counter()
        self.latency = LatencyHistogram()
        self.latency_bins = [0] * (len(LATENCY_EDGES_MS) + 1)
        self.hosts: dict[str, HostRow] = {}
        self.broken: list[BrokenLink] = []
        self.broken_total = 0
        # broken URL -> its record's referrer: to find every other page linking to it
        self.broken_urls: dict[str, str | None] = {}
        self.has_bodies = False  # --save-bodies records: links can be read from pages
        # "YYYY-MM-DDTHH:MM:SS" -> [records, earliest and latest full timestamps]
        self._seconds: dict[str, list[Any]] = {}
        self._redirects: dict[str, _Redirect] = {}
        self._next: dict[str, str] = {}  # redirect source -> the record that continued it
        self._landing: dict[str, int | None] = {}  # status where a continued chain ended
        self._continued: set[str] = set()
        # URLs the state file saw finish without a response: robots.txt skips, once the
        # redirect targets among them (they appear as some record's final_url) are removed.
        self._no_response = dict(no_response or {})
        # URL -> its latest held-back record, not yet counted (see add)
        self._held: dict[str, dict[str, Any]] = {}
        # A recrawl's runs (records with run and change): run -> change -> URLs, and the
        # first max_rows changed (new, changed, gone) URLs of each run.
        self.recrawls: dict[int, Counter[str]] = {}
        self.changed_pages: dict[int, list[tuple[str, str]]] = {}
        self._latest = latest
        # A record of a second run met without ``latest``: the counts so far may count a
        # URL twice, and the pass stops (add_all) for the caller to read again with it.
        self.reruns = False

    # -- the pass ------------------------------------------------------------------------

    def add_all(self, records: Iterable[dict[str, Any]]) -> None:
        """Add every record, then finish; stops early when :attr:`reruns` is set (read
        the records again into an Aggregate given :func:`latest_runs`)."""
        for record in records:
            self.add(record)
            if self.reruns:
                return
        self.finish()

    def add(self, r: dict[str, Any]) -> None:
        url = r.get("url")
        if not isinstance(url, str) or not url:
            self.skipped_records += 1
            return
        run, change = r.get("run"), r.get("change")
        if isinstance(run, int) and isinstance(change, str):
            self.recrawls.setdefault(run, Counter())[change] += 1
            if change in ("new", "changed", "gone"):
                listed = self.changed_pages.setdefault(run, [])
                if len(listed) < self.max_rows:
                    listed.append((change, url))
        if self._latest is None:
            if isinstance(run, int) and run > 1:
                self.reruns = True
                return
        elif _run_of(r) < self._latest.get(hash(record_key(url, r)), 0):
            return  # a later run recorded this request again: that record counts
        if is_held_back(r):
            # The URL stayed queued and the next run records it again: only its latest
            # record counts, so this one waits (for a later record of the URL, or finish).
            self._held.pop(url, None)
            self._held[url] = r
            return
        if self._held:
            self._held.pop(url, None)
        self._add(r, url)

    def finish(self) -> None:
        """Count the held-back records no later record replaced (after the last add)."""
        held, self._held = self._held, {}
        for url, r in held.items():
            # The state says the URL finished without a response (robots.txt, once
            # fetched, disallowed it): it is a skip now, not a failure.
            if url not in self._no_response:
                self._add(r, url)

    def _add(self, r: dict[str, Any], url: str) -> None:
        status = r.get("status")
        if not isinstance(status, int):
            status = None
        final_url = r.get("final_url") or url
        self.pages += 1
        nbytes = r.get("bytes")
        if isinstance(nbytes, int):
            self.bytes += nbytes
        else:
            nbytes = 0
        kind = error_kind(r)
        m = _NETLOC(url)
        host = m.group(1) if m else urlsplit(url).netloc
        row = self.hosts.get(host)
        if row is None:
            row = self.hosts[host] = HostRow(host)
        row.pages += 1
        row.bytes += nbytes
        elapsed = r.get("elapsed")
        if isinstance(elapsed, int | float) and status is not None:
            self.latency.add(float(elapsed))
            row.latency.add(float(elapsed))
            self.latency_bins[_latency_bin(float(elapsed) * 1000)] += 1
        depth = r.get("depth")
        if isinstance(depth, int):
            self.depths[depth] += 1
        fetched_at = r.get("fetched_at")
        if isinstance(fetched_at, str) and len(fetched_at) >= 19:
            second = self._seconds.get(fetched_at[:19])
            if second is None:
                self._seconds[fetched_at[:19]] = [1, fetched_at, fetched_at]
            else:
                second[0] += 1
                if fetched_at < second[1]:
                    second[1] = fetched_at
                elif fetched_at > second[2]:
                    second[2] = fetched_at
        self.statuses[str(status) if status is not None else "no response"] += 1

        if not self.has_bodies:
            body = r.get("body")
            self.has_bodies = (
                isinstance(body, str) and bool(body) and not body.startswith("base64:")
            )
        if kind is not None:
            self.failed += 1
            row.errors += 1
            self.errors[kind] += 1
            self._broken(r, url, status, kind)
        elif status is not None and 200 <= status < 300:
            self.ok += 1
            row.ok += 1

        self._no_response.pop(url, None)
        if final_url != url:
            self._no_response.pop(final_url, None)
        if final_url != url or (status is not None and 300 <= status < 400):
            self.redirected += 1
            followed = not (status is not None and 300 <= status < 400)
            self._redirects[url] = _Redirect(status, final_url, followed)
        referrer = r.get("referrer")
        if isinstance(referrer, str):
            source = self._redirects.get(referrer)
            if source is not None and not source.followed and source.target == url:
                self._next[referrer] = url
                self._continued.add(url)
                self._landing[url] = status

    def _broken(self, r: dict[str, Any], url: str, status: int | None, kind: str) -> None:
        self.broken_total += 1
        referrer = r.get("referrer")
        self.broken_urls[url] = referrer if isinstance(referrer, str) else None
        depth = r.get("depth")
        link = BrokenLink(
            url=url,
            status=status,
            kind=kind,
            detail=str(r.get("error_detail") or ""),
            referrer=referrer if isinstance(referrer, str) else None,
            depth=depth if isinstance(depth, int) else None,
        )
        if len(self.broken) < self.max_rows:
            self.broken.append(link)
        if self._on_broken is not None:
            self._on_broken(link)

    # -- results -------------------------------------------------------------------------

    def robots_skipped(self) -> list[tuple[str, str, str | None]]:
        """(url, host, referrer) of URLs robots.txt kept the crawler from."""
        return [(url, host, ref) for url, (host, ref) in self._no_response.items()]

    def host_rows(self) -> list[HostRow]:
        """Every host, most pages first, with its robots.txt skips counted in."""
        skipped: Counter[str] = Counter()
        for _url, host, _ref in self.robots_skipped():
            skipped[urlsplit(host).netloc or host] += 1
        for netloc in skipped:
            if netloc not in self.hosts:
                self.hosts[netloc] = HostRow(netloc)
        for row in self.hosts.values():
            row.robots_skipped = skipped.get(row.host, 0)
        return sorted(self.hosts.values(), key=lambda h: (-h.pages, h.host))

    def redirect_chains(self) -> list[RedirectChain]:
        chains = []
        for head, first in self._redirects.items():
            if head in self._continued:
                continue  # shown inside the chain that led to it
            hops, statuses = [head], [first.status]
            cur, entry = head, first
            outcome = "followed"
            for _ in range(64):  # chains are short; a bound keeps a cycle from hanging us
                hops.append(entry.target)
                if entry.followed:
                    outcome = "followed"
                    break
                nxt = self._next.get(cur)
                if nxt is None:
                    outcome = "not followed here (other host, scope, robots.txt or seen)"
                    break
                cur = nxt
                following = self._redirects.get(cur)
                if following is None:
                    statuses.append(self._landing.get(cur))
                    outcome = "followed (queued on its host)"
                    break
                statuses.append(following.status)
                entry = following
            chains.append(RedirectChain(hops, statuses, outcome))
        return chains

    def runs(self) -> list[tuple[float, float, list[tuple[float, int]]]]:
        """(start epoch, end epoch, [(epoch second, records)]) per run of the crawl.

        A run lasts from its first record to its last, plus one median latency (the
        first record is written when its fetch ends, not when it starts).
        """
        if not self._seconds:
            return []
        seconds = []
        for stamp, (n, first, last) in self._seconds.items():
            try:
                seconds.append((_epoch(stamp), n, _precise(first), _precise(last)))
            except ValueError:
                continue
        seconds.sort()
        lead = self.latency.percentile(50) or 0.0
        runs: list[tuple[float, float, list[tuple[float, int]]]] = []
        current: list[tuple[float, int, float, float]] = []

        def close() -> None:
            start = current[0][2] - lead
            end = max(current[-1][3], start + 0.001)
            runs.append((start, end, [(t, n) for t, n, _, _ in current]))

        for entry in seconds:
            if current and entry[0] - current[-1][0] > RUN_GAP:
                close()
                current = []
            current.append(entry)
        if current:
            close()
        return runs

    def rate_series(self) -> tuple[list[float], list[float], list[float], float]:
        """Pages/s over active crawl time (pauses between runs cut out).

        Returns (x seconds, pages/s, run start offsets, active duration).
        """
        runs = self.runs()
        duration = sum(end - start for start, end, _ in runs)
        if not runs:
            return [], [], [], 0.0
        width = max(1, math.ceil(duration / RATE_POINTS))
        xs: list[float] = []
        ys: list[float] = []
        starts: list[float] = []
        offset = 0.0
        for start, end, seconds in runs:
            starts.append(offset)
            buckets: Counter[int] = Counter()
            for t, n in seconds:
                buckets[int(max(t - start, 0) // width)] += n
            for b in range(max(1, math.ceil((end - start) / width))):
                span = min(width, end - start - b * width)
                xs.append(round(offset + b * width, 3))
                ys.append(round(buckets.get(b, 0) / span, 3) if span > 0 else 0.0)
            offset += end - start
        return xs, ys, starts, duration


def _latency_bin(ms: float) -> int:
    for i, edge in enumerate(LATENCY_EDGES_MS):
        if ms < edge:
            return i
    return len(LATENCY_EDGES_MS)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp + "+00:00").timestamp()


def _precise(stamp: str) -> float:
    when = datetime.fromisoformat(stamp)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
