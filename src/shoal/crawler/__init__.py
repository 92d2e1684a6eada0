"""The crawler, built on the runtime: fetch, follow links in scope, dedupe, be polite.

It sits above ``shoal.runtime`` (its pool and writer thread), ``shoal.state`` (the SQLite
state file) and ``shoal.http`` (the transport it fetches through). Inside: the engine
(``_crawler``), the fetcher seam (``_fetch``: ``PageFetcher``, ``HTTPFetcher``),
``frontier`` (where a crawl's URLs live: the seam, and the memory and SQLite backends),
the scope gate and URL handling,
robots.txt and sitemaps, page parsing and records, and ``output`` (one module per format).
"""

from ._crawler import Crawler, PageCallback
from ._fetch import Fetched, FetcherFactory, FetchRequest, FetchSetup, HTTPFetcher, PageFetcher
from ._hosts import HostSettings
from ._login import LoginSession
from ._options import DEFAULT_USER_AGENT, CrawlOptions
from ._page import Page
from ._request import Request
from ._stats import CrawlResult
from ._urls import Scope, canonicalize, parse_start_url
from .frontier import (
    Candidate,
    Frontier,
    FrontierStats,
    HostCounts,
    HostPolicy,
    JobKind,
    Lease,
    MemoryFrontier,
    Outcome,
    Release,
    SqliteFrontier,
)

__all__ = [
    "DEFAULT_USER_AGENT",
    "Candidate",
    "CrawlOptions",
    "CrawlResult",
    "Crawler",
    "FetchRequest",
    "FetchSetup",
    "Fetched",
    "FetcherFactory",
    "Frontier",
    "FrontierStats",
    "HostCounts",
    "HTTPFetcher",
    "HostPolicy",
    "HostSettings",
    "JobKind",
    "Lease",
    "LoginSession",
    "MemoryFrontier",
    "Outcome",
    "Page",
    "PageCallback",
    "PageFetcher",
    "Release",
    "Request",
    "Scope",
    "SqliteFrontier",
    "canonicalize",
    "parse_start_url",
]
