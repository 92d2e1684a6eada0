"""What a fetched URL becomes: output records and URLs to follow.

Without a page callback each fetched URL gives one record (the standard fields, plus
extracted fields); with one, the callback's dicts are the records and its strings (and
:class:`~shoal.Request` objects) are extra URLs to follow. Which callback a page goes
to is the routes' choice (``_routes``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from .._errors import UsageError
from ._fetch import Fetched
from ._page import Page
from ._request import Request
from ._routes import PageCallback, Routes
from ._schema import RECORD_FIELDS, RENDER_FIELDS, REQUEST_FIELDS, RUN_FIELDS
from ._urls import LinkResolver
from .frontier import Lease

__all__ = ["Followed", "PageCallback", "Records"]

# A request a callback gave, to follow: (canonical URL, its encoded fields).
Followed = tuple[str, str]

logger = logging.getLogger(__name__)

# Fields of a page's record besides RECORD_FIELDS, kept out of them so the SQLite table
# of an output begun by an older shoal still fits (SQLite keeps them in its ``data``).
PAGE_FIELDS = ("truncated", "robots")
# Names --extract may not take: they would overwrite (or, in CSV, repeat) a record field.
_RESERVED = (
    *RECORD_FIELDS,
    *PAGE_FIELDS,
    *RUN_FIELDS,
    *REQUEST_FIELDS,
    *RENDER_FIELDS,
    "body",
    "body_sha256",
)


class Records:
    def __init__(
        self,
        on_page: PageCallback | None,
        *,
        follow_links: bool,
        extract: Mapping[str, str],
        save_bodies: bool,
        rendering: bool = False,
    ) -> None:
        self.routes = Routes(on_page)
        self.rendering = rendering  # records carry "rendered" (RENDER_FIELDS)
        self.follow_links = follow_links
        self.extractors = _compile_extractors(extract)
        self.save_bodies = save_bodies

    @property
    def has_handler(self) -> bool:
        """Pages go to a callback (some do, at least): records are the callback's."""
        return self.routes.active

    @property
    def fields(self) -> list[str]:
        """A record's fields: standard fields, then the optional and extracted ones."""
        extra = ["body", "body_sha256"] if self.save_bodies else []
        render = list(RENDER_FIELDS) if self.rendering else []
        return [*RECORD_FIELDS, *PAGE_FIELDS, *render, *extra, *self.extractors]

    @property
    def columns(self) -> list[str]:
        """The CSV header: the standard fields, a recrawl's (run and change), then the
        optional and extracted ones."""
        extra = ["body", "body_sha256"] if self.save_bodies else []
        render = list(RENDER_FIELDS) if self.rendering else []
        return [*RECORD_FIELDS, *PAGE_FIELDS, *RUN_FIELDS, *render, *extra, *self.extractors]

    def build(
        self, job: Lease, fetched: Fetched, page: Page | None, error: str | None
    ) -> tuple[list[dict[str, Any]], list[str], list[Followed], bool]:
        """(records, URLs to follow, requests to follow, whether the callback failed)."""
        follow: list[str] = []
        requests: list[Followed] = []
        if page is not None and self.follow_links:
            follow.extend(page.links)
        handler = None
        if page is not None and self.routes.active:
            handler = self.routes.handler_for(page)
        if handler is not None and page is not None:
            records, extra, failure = self._call(job, page, handler)
            resolve = LinkResolver(page.base_url, page._refusals()).resolve
            for item in extra:
                if isinstance(item, str):
                    url = resolve(item)
                    if url:
                        follow.append(url)
                else:
                    url = resolve(item.url)
                    if url:
                        fields = item._encode()
                        if fields is None:
                            follow.append(url)
                        else:
                            requests.append((url, fields))
            if failure is not None:
                # The page's own record says the callback failed, so it is not lost.
                failed = self._standard(job, fetched, page, "callback")
                failed["error_detail"] = failure
                records.append(failed)
            return records, follow, requests, failure is not None
        # No callback, or a URL the callback never sees (an error, a redirect not
        # followed): the standard record, so every URL tried has one.
        return [self._standard(job, fetched, page, error)], follow, requests, False

    def _standard(
        self, job: Lease, fetched: Fetched, page: Page | None, error: str | None
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "url": job.url,
            "final_url": fetched.final_url,
            "status": fetched.status,
            "depth": job.depth,
            "referrer": job.referrer,
            "content_type": fetched.content_type or None,
            "bytes": len(fetched.body),
            "elapsed": round(fetched.elapsed, 4),
            "fetched_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "title": page.title if page is not None else None,
            "error": error,
            "error_detail": (fetched.detail or None) if error else None,
            "truncated": None,
            "robots": (list(page.robots) or None) if page is not None else None,
        }
        if job.request is not None:
            _request_fields(record, job)
        if self.rendering:
            record["rendered"] = fetched.rendered
            record["render_reason"] = fetched.render_reason
        if self.save_bodies:
            record["body"], record["body_sha256"] = _body_fields(fetched.body, page)
        for name, extract in self.extractors.items():
            record[name] = extract(page) if page is not None and page.is_html else None
        if page is not None:
            record["truncated"] = page.truncated  # after the extractors: set if they saw a cut
        if fetched.truncated:
            # A body kept cut rather than failed too_large (a rendered DOM past --max-bytes):
            # links and fields come from its first part only, which the record must say.
            cut = f"the body was cut at --max-bytes ({len(fetched.body)} bytes)"
            record["truncated"] = "; ".join(filter(None, (cut, record["truncated"])))
        return record

    def error_record(self, job: Lease, kind: str, detail: str) -> dict[str, Any]:
        """The record of a URL whose processing failed before a response was in hand."""
        record: dict[str, Any] = dict.fromkeys(self.fields)
        record.update(
            url=job.url,
            final_url=job.url,
            depth=job.depth,
            referrer=job.referrer,
            fetched_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            error=kind,
            error_detail=detail,
        )
        if job.request is not None:
            _request_fields(record, job)
        if self.rendering:
            record["rendered"] = False
        return record

    def _call(
        self, job: Lease, page: Page, handler: PageCallback
    ) -> tuple[list[dict[str, Any]], list[str | Request], str | None]:
        """(records, URLs and requests, None) or, if the callback raised, what it raised
        instead of None."""
        records: list[dict[str, Any]] = []
        urls: list[str | Request] = []
        routes = self.routes
        try:
            for value in _as_iterable(handler(page)):
                if isinstance(value, str):
                    urls.append(value)
                elif isinstance(value, Request):
                    routes.check_label(value.label)  # here: this page's record says so
                    urls.append(value)
                elif isinstance(value, dict):
                    # Checked here, on the worker: a record the writer cannot serialize
                    # would stop the whole crawl (and again after every resume).
                    json.dumps(value, allow_nan=False, default=str)
                    records.append(value)
                else:
                    raise TypeError(
                        f"on_page gave {type(value).__name__}; want dict, str or shoal.Request"
                    )
        except Exception as exc:
            logger.exception("on_page failed for %s", job.url)
            return records, urls, repr(exc)
        return records, urls, None


def _as_iterable(value: Any) -> Iterator[Any]:
    if value is None:
        return iter(())
    if isinstance(value, dict | str | Request):
        return iter((value,))
    return iter(value)


def _request_fields(record: dict[str, Any], job: Lease) -> None:
    """A request's method and label in its record, when not a GET's / when it has one.
    Never its body or headers: a login form's body holds a password (the WARC request
    record has the body, its password-like fields redacted)."""
    request = Request._decode(job.url, job.request)
    if request.method != "GET":
        record["method"] = request.method
    if request.label is not None:
        record["label"] = request.label


def _body_fields(body: bytes, page: Page | None) -> tuple[str, str]:
    """The body as text when it is text (else base64) and its SHA-256, for --save-bodies."""
    digest = hashlib.sha256(body).hexdigest()
    if page is not None and (page.is_html or page.content_type.startswith("text/")):
        return page.text, digest
    return "base64:" + base64.b64encode(body).decode("ascii"), digest


def _compile_extractors(spec: Mapping[str, str]) -> dict[str, Callable[[Page], Any]]:
    """NAME=SELECTOR pairs: CSS by default, ``xpath:`` for XPath; NAME[] takes all matches."""
    extractors: dict[str, Callable[[Page], Any]] = {}
    for raw_name, selector in spec.items():
        many = raw_name.endswith("[]")
        name = raw_name[:-2] if many else raw_name
        if not name or not selector:
            raise UsageError(f"bad --extract {raw_name}={selector}: want NAME=SELECTOR")
        if name in _RESERVED:
            raise UsageError(
                f"--extract {raw_name}: {name!r} is a record field; choose another name "
                f"(reserved: {', '.join(_RESERVED)})"
            )
        is_xpath = selector.startswith("xpath:")
        query = selector[6:] if is_xpath else selector
        _check_selector(query, is_xpath, raw_name)

        def extract(page: Page, q: str = query, x: bool = is_xpath, m: bool = many) -> Any:
            found = page.xpath(q) if x else page.css(q)
            return found.getall() if m else found.get()

        extractors[name] = extract
    return extractors


def _check_selector(query: str, is_xpath: bool, name: str) -> None:
    from parsel import Selector

    try:
        probe = Selector(text="<html></html>")
        probe.xpath(query) if is_xpath else probe.css(query)
    except Exception as exc:  # noqa: BLE001 - parsel raises several kinds for bad syntax
        raise UsageError(f"bad selector for --extract {name}: {exc}") from None
