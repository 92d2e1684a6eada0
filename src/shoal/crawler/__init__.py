"""The crawler, built on the runtime: fetch, follow links in scope, dedupe, be polite."""

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
