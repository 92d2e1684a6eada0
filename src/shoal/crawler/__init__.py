"""The crawler, built on the runtime: fetch, follow links in scope, dedupe, be polite.

It sits above ``shoal.runtime`` (its pool and writer thread), ``shoal.state`` (the SQLite
state file) and ``shoal.http`` (the transport it fetches through). Inside: the engine
(``_crawler``), the in-memory and durable frontiers, the scope gate and URL handling,
robots.txt and sitemaps, page parsing and records, and ``output`` (one module per format).
"""

from ._crawler import Crawler, PageCallback
from ._frontier import CrawlJob, Frontier, HostCounts, JobKind, MemoryFrontier
from ._options import DEFAULT_USER_AGENT, CrawlOptions
from ._page import Page
from ._stats import CrawlResult
from ._urls import Scope, canonicalize, parse_start_url

__all__ = [
    "DEFAULT_USER_AGENT",
    "CrawlJob",
    "CrawlOptions",
    "CrawlResult",
    "Crawler",
    "Frontier",
    "HostCounts",
    "JobKind",
    "MemoryFrontier",
    "Page",
    "PageCallback",
    "Scope",
    "canonicalize",
    "parse_start_url",
]
