"""Routes: which handler a page goes to (``@crawler.route``).

A page goes to the route of its request's ``label`` if it has one (once any route is by
label: without one, a label is only data for the handler); else to the first
route whose glob matches its URL's path (in the order they were added); else to the
default handler (``Crawler(on_page=...)`` or ``@crawler.route()``); else it gets the
standard record, as a crawl with no handler gives every page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

from .._errors import UsageError
from ._page import Page
from ._request import MAX_LABEL
from ._urls import url_path

__all__ = ["PageCallback", "Routes"]

# A '?' then, before any '/', a '=': a query string, which a path glob never sees.
_QUERY = re.compile(r"\?[^/]*=")

# What a page callback may give back: records (dicts) to write, URLs (str) and
# shoal.Request objects to follow.
PageCallback = Callable[[Page], Iterable[Any] | dict[str, Any] | None]


class Routes:
    """The crawl's handlers. Added before the run starts; read-only (and so read without
    a lock by every worker) from then on."""

    def __init__(self, default: PageCallback | None = None) -> None:
        if default is not None and not callable(default):
            raise UsageError(f"on_page must be callable, not {type(default).__name__}")
        self.default = default
        self._labels: dict[str, PageCallback] = {}
        self._globs: list[tuple[str, PageCallback]] = []
        self.frozen = False

    @property
    def active(self) -> bool:
        return self.default is not None or bool(self._labels) or bool(self._globs)

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(self._labels)

    def add(self, label: str | None, glob: str | None, handler: PageCallback) -> None:
        if self.frozen:
            raise UsageError("routes are added before the crawl runs, not during it")
        if not callable(handler):
            raise UsageError(f"a route's handler must be callable, not {type(handler).__name__}")
        if label is not None and glob is not None:
            raise UsageError("a route is by label or by glob, not both")
        if label is not None:
            if not isinstance(label, str) or not label or len(label) > MAX_LABEL:
                raise UsageError(f"a route's label is a string of 1 to {MAX_LABEL} characters")
            if label in self._labels:
                raise UsageError(f"two routes for the label {label!r}")
            self._labels[label] = handler
        elif glob is not None:
            if not isinstance(glob, str) or not glob:
                raise UsageError("a route's glob is a non-empty string (matched against the path)")
            if not glob.startswith(("/", "*", "?", "[")):
                raise UsageError(
                    f"a route's glob is matched against the URL's path: {glob!r} never "
                    "matches one (paths begin with '/')"
                )
            if _QUERY.search(glob):
                # '?' is a glob's any-one-character: "/item?id=*" reads as a query but
                # would match paths only, never "/item?id=3".
                raise UsageError(
                    f"a route's glob is matched against the URL's path only, not its query: "
                    f"{glob!r} looks like one; route by the path (glob='/item*') or give the "
                    "request a label"
                )
            self._globs.append((glob, handler))
        else:
            if self.default is not None:
                raise UsageError(
                    "two default handlers: Crawler(on_page=...) and @crawler.route() are "
                    "the same thing; give one"
                )
            self.default = handler

    def check_label(self, label: str | None) -> None:
        """Once there are routes by label, a request's label must name one (checked when
        the request is given, so the page that gave it is the one whose record says so).
        Without any, a label is data for the handler (``page.request.label``)."""
        if label is not None and self._labels and label not in self._labels:
            known = ", ".join(sorted(map(repr, self._labels))) or "none"
            raise UsageError(f"no route for the label {label!r} (routes by label: {known})")

    def handler_for(self, page: Page) -> PageCallback | None:
        """The page's handler; None: the standard record."""
        label = page.request.label if page._request_fields is not None else None
        if label is not None and self._labels:
            handler = self._labels.get(label)
            if handler is None:
                return _no_route(self, label)
            return handler
        if self._globs:
            path = url_path(page.url)
            for glob, handler in self._globs:
                if fnmatchcase(path, glob):
                    return handler
        return self.default


def _no_route(routes: Routes, label: str) -> PageCallback:
    """A page whose label lost its route (a resumed crawl whose code changed): the page's
    record says so, as for a handler that failed."""

    def fail(page: Page) -> None:
        routes.check_label(label)

    return fail
