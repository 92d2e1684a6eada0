"""Crawl statistics: counts, errors by kind, bytes, and latency percentiles.

Latencies go into a log-scale histogram (about 2% wide buckets) instead of a list,
so a crawl of millions of pages keeps a fixed few kilobytes for percentiles.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..http import ProxyStats

__all__ = ["CrawlResult", "LatencyHistogram"]

_PER_DOUBLING = 35  # buckets per factor of two: ~2% resolution


class LatencyHistogram:
    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0

    def add(self, seconds: float) -> None:
        micros = max(seconds * 1e6, 1.0)
        self._buckets[int(math.log2(micros) * _PER_DOUBLING)] += 1
        self.count += 1

    def percentile(self, p: float) -> float | None:
        """Seconds at or below which ``p`` percent of samples fall (bucket upper bound)."""
        if not self.count:
            return None
        rank = math.ceil(self.count * p / 100)
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return float(2 ** ((bucket + 1) / _PER_DOUBLING) / 1e6)
        return None


@dataclass
class CrawlResult:
    """What a crawl did. Returned by Crawler.run(), printed as the summary by the CLI."""

    pages: int = 0  # URLs tried (one record each): ok + redirects + failed
    ok: int = 0  # answered 2xx
    redirects: int = 0  # answered 3xx and not followed (off host, already seen, ...)
    errors: Counter[str] = field(default_factory=Counter)  # by kind, HTTP statuses as http_NNN
    bytes: int = 0
    retries: int = 0
    robots_denied: int = 0
    out_of_scope_redirects: int = 0
    # Links refused when found: no request could ever fetch them (no host, port 0...).
    refused_links: int = 0
    # Logout links not followed while logged in (follow_logout keeps them), and the first.
    logout_links: int = 0
    first_logout_link: str | None = None
    discovered: int = 0  # distinct URLs queued
    pending: int = 0  # still waiting when the crawl stopped (a state file's queued count)
    abandoned: int = 0  # requests left in flight by a second interrupt or at max_time
    elapsed: float = 0.0
    interrupted: bool = False
    stopped_by: str | None = None  # "max_pages", "max_time" or "interrupt" if not complete
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    first_error: dict[str, str] = field(default_factory=dict)  # kind: "URL: detail"
    notes: list[str] = field(default_factory=list)  # causes worth telling (robots.txt...)
    already_complete: bool = False  # resumed a crawl with nothing left to do
    totals: dict[str, Any] | None = None  # over every run of a durable crawl, this one too
    # Each proxy's requests and failures this run, in the order given (none: no proxy).
    proxies: list[ProxyStats] = field(default_factory=list)

    @property
    def pages_per_second(self) -> float:
        """Pages (ok, redirects and failed alike) per second of this run."""
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def failed(self) -> int:
        """Pages that ended in an error (any kind: see ``errors`` for the count of each)."""
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        """The result as plain JSON-ready values (what ``--json-summary`` prints):
        counts, errors by kind, latency percentiles in ms, and ``all_runs`` totals."""
        p50, p95 = self.latency.percentile(50), self.latency.percentile(95)
        return {
            "pages": self.pages,
            "ok": self.ok,
            "redirects": self.redirects,
            "failed": self.failed,
            "errors": dict(self.errors),
            "bytes": self.bytes,
            "retries": self.retries,
            "robots_denied": self.robots_denied,
            "refused_links": self.refused_links,
            "logout_links": self.logout_links,
            "discovered": self.discovered,
            "pending": self.pending,
            "abandoned": self.abandoned,
            "elapsed": round(self.elapsed, 3),
            "pages_per_second": round(self.pages_per_second, 1),
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "latency_p95_ms": None if p95 is None else round(p95 * 1000, 1),
            "interrupted": self.interrupted,
            "stopped_by": self.stopped_by,
            "already_complete": self.already_complete,
            "first_error": dict(self.first_error),
            "notes": list(self.notes),
            "all_runs": self.totals,
            "proxies": [
                {
                    "proxy": p.proxy,
                    "requests": p.requests,
                    "failures": p.failures,
                    "retired": p.retired is not None,
                }
                for p in self.proxies
            ],
        }

    def summary(self) -> str:
        """A few human-readable lines: pages and rate, latency, errors by kind with the
        first URL of each, why the crawl stopped, and totals over all runs when resumed.
        The CLI prints this to stderr at the end of a crawl."""
        d = self.as_dict()
        lines = [
            f"pages {d['pages']} (ok {d['ok']}, redirects {d['redirects']}, failed {d['failed']})"
            f" in {d['elapsed']}s = {d['pages_per_second']} pages/s, {_size(self.bytes)}",
        ]
        if self.latency.count:
            lines.append(
                f"latency p50 {d['latency_p50_ms']} ms, p95 {d['latency_p95_ms']} ms;"
                f" retries {self.retries}; robots.txt denied {self.robots_denied};"
                f" discovered {self.discovered}"
            )
        elif self.robots_denied:
            lines.append(f"robots.txt denied {self.robots_denied}")
        if self.errors:
            kinds = ", ".join(f"{k} {n}" for k, n in self.errors.most_common())
            lines.append(f"errors: {kinds}")
            for kind, _ in self.errors.most_common(3):
                if kind in self.first_error:
                    lines.append(f"  first {kind}: {self.first_error[kind]}")
        if self.refused_links:
            lines.append(
                f"links refused: {self.refused_links} (no request could fetch them: no host, "
                "port 0 or over 65535, too long; -v names the first of each page)"
            )
        if self.logout_links:
            lines.append(
                f"logout links not followed: {self.logout_links} (logged in; e.g. "
                f"{self.first_logout_link}; --follow-logout follows them)"
            )
        lines.extend(self.notes[:5])
        lines.extend(_proxy_lines(self.proxies))
        if self.stopped_by:
            lines.append(f"stopped by {self.stopped_by}; {self.pending} URL(s) not fetched")
        t = self.totals
        if t is not None and t.get("runs", 0) > 1:
            lines.append(
                f"all {t['runs']} runs: pages {t['pages']} (ok {t['ok']}, redirects "
                f"{t['redirects']}, failed {t['failed']}), {_size(t['bytes'])} "
                f"in {t['elapsed']}s"
            )
        return "\n".join(lines)


_PROXIES_SHOWN = 10


def _proxy_lines(proxies: list[ProxyStats]) -> list[str]:
    """Requests per proxy, and which were retired and why: for a pool, or a proxy retired."""
    retired = [p for p in proxies if p.retired is not None]
    if len(proxies) < 2 and not retired:
        return []
    shown = ", ".join(f"{p.proxy} {p.requests}" for p in proxies[:_PROXIES_SHOWN])
    more = len(proxies) - _PROXIES_SHOWN
    if more > 0:
        shown += f" and {more} more (--json-summary lists them all)"
    lines = [f"proxies: {len(proxies)}, {len(retired)} retired; requests: {shown}"]
    lines.extend(f"  retired {p.proxy}: {p.retired}" for p in retired[:5])
    return lines


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"
