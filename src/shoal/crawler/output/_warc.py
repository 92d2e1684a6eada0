"""WARC 1.1 output via warcio: a request and a response record per response received,
whatever its status (3xx, 4xx and 5xx too) and robots.txt included, as ``wget --warc-file``
keeps them. A rendered page (``--render``) is its HTTP response, then a request and a
response record for each response its browser loaded (``Exchange.archive``); a repeat of a
URL and body this process already wrote is a revisit record naming that capture.

Each record is its own gzip member, so the file offset after any record is a valid
place to cut: a resume truncates the file to the last committed offset and appends.
The response block holds the *decoded* payload (Content-Encoding undone, so digests and
replays see the real document); its headers are rewritten to match.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.client import responses

from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from ..._errors import UsageError
from ..._url import split_url
from ..._version import __version__
from .._request import secret_fields
from ._base import Commit, Exchange, OutputOptions, RefersTo
from ._file import FileOutput, OutputFile

__all__ = ["WarcOutput", "open_format"]

_DROPPED = {"content-encoding", "transfer-encoding", "content-length"}
# Form fields and headers whose values are secrets: a WARC request record keeps the
# request for replay, but these values as "[redacted]" (the marker of every secret shoal
# keeps out of a file; docs/api.md says so). Also a form's password inputs, by any name.
_SECRET = re.compile(r"pass|pwd|secret|token|api[-_]?key|auth|session|cookie", re.IGNORECASE)
_REDACTED = "[redacted]"
# Header names that are secrets whatever their value.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# Subresource captures remembered (URL and payload digest) so that a repeat is a revisit
# record: ~100 bytes each.
_MAX_SEEN = 100_000


class WarcOutput(FileOutput):
    def __init__(
        self,
        target: OutputFile,
        resume_at: int | None,
        user_agent: str,
        request_headers: Callable[[str], Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        super().__init__(target, resume_at)
        # The user's headers of a URL's request (-H, --header-for, --auth), their secrets
        # already redacted: a request record shows what was sent, never a credential.
        self._user_headers = request_headers
        path = target.path
        self._request_headers = [
            ("User-Agent", user_agent),
            ("Accept-Encoding", "gzip, deflate, br"),
        ]
        self._writer = WARCWriter(self._file, gzip=True, warc_version="1.1")
        self._seen: dict[tuple[str, bytes], float] = {}
        if self.at_start:
            info = self._writer.create_warcinfo_record(
                path.rsplit("/", 1)[-1], {"software": f"shoal/{__version__}", "format": "WARC 1.1"}
            )
            self._writer.write_record(info)

    def write(self, commits: Sequence[Commit]) -> None:
        for commit in commits:
            fetched = commit.exchange
            if fetched is None:
                continue
            if not fetched.archive:
                self._write_exchange(commit, fetched, commit.refers_to)
                continue
            # A rendered page: its HTTP response, then what the browser loaded for it. A
            # recrawl's verdict (unchanged) is about the DOM, not these bytes: each is
            # written as itself, a repeat of what this file already holds as a revisit.
            first, *loaded = fetched.archive
            self._write_exchange(commit, first, None)
            for exchange in loaded:
                self._write_exchange(commit, exchange, self._repeat_of(commit, exchange))

    def _repeat_of(self, commit: Commit, exchange: Exchange) -> RefersTo | None:
        """The capture this file already holds of the same URL and body (a script every
        page loads), or None (then it is remembered, up to ``_MAX_SEEN`` of them). Only
        this process's: a resume cut the file back to a batch, so it starts afresh."""
        if exchange.status is None or exchange.error is not None or exchange.truncated:
            return None
        key = (exchange.final_url, hashlib.sha1(exchange.body).digest())
        seen = self._seen.get(key)
        if seen is not None:
            return RefersTo("identical-payload-digest", key[0], seen)
        if len(self._seen) < _MAX_SEEN:
            self._seen[key] = time.time() if commit.fetched_at is None else commit.fetched_at
        return None

    def _write_exchange(self, commit: Commit, fetched: Exchange, refers: RefersTo | None) -> None:
        if fetched.status is None or fetched.error is not None:
            return  # no response, or only part of one (too large, undecodable)
        url = fetched.final_url
        if 300 <= fetched.status < 400 and not fetched.redirects:
            # A redirect not followed: final_url names its target; the response
            # came from the URL asked for.
            url = fetched.url
        date = _warc_date(commit.fetched_at)
        headers = _header_lines(fetched.headers)
        headers.append(("Content-Length", str(len(fetched.body))))
        status = f"{fetched.status} {responses.get(fetched.status, 'Unknown')}"
        http_headers = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
        warc_headers = {"WARC-Date": date}
        if fetched.truncated:  # cut at its size limit (WARC 1.1, 5.13)
            warc_headers["WARC-Truncated"] = "length"
        if refers is not None:
            response = self._revisit(url, fetched.body, refers, http_headers, warc_headers)
        else:
            response = self._writer.create_warc_record(
                url,
                "response",
                payload=io.BytesIO(fetched.body),
                http_headers=http_headers,
                warc_headers_dict=warc_headers,
            )
        parts = split_url(url)
        fields = [("Host", parts.authority), *self._request_headers]
        if self._user_headers is not None:
            fields = _with_user_headers(fields, self._user_headers(url))
        sent = fetched.request_body
        if fetched.request_headers:
            own = [(k, _redacted_header(k, v)) for k, v in fetched.request_headers.items()]
            fields = _with_user_headers(fields, own)
        if sent is not None:
            finished = commit.finished
            secret = secret_fields(None if finished is None else finished.request)
            sent = redacted_body(sent, fetched.request_headers, secret)
            fields.append(("Content-Length", str(len(sent))))
        request_headers = StatusAndHeaders(
            f"{fetched.method} {parts.target} HTTP/1.1", fields, is_http_request=True
        )
        request = self._writer.create_warc_record(
            url,
            "request",
            payload=io.BytesIO(sent or b""),
            http_headers=request_headers,
            warc_headers_dict={"WARC-Date": date},
        )
        self._writer.write_request_response_pair(request, response)

    def _revisit(
        self,
        url: str,
        body: bytes,
        refers: RefersTo,
        http_headers: StatusAndHeaders,
        warc_headers: dict[str, str],
    ) -> ArcWarcRecord:
        """A revisit record for a recrawl's unchanged page, naming the capture (WARC 1.1,
        6.7): the response headers of a 200 with the same body, none for a 304. The
        payload digest is the capture's: this body's (the same SHA-256, so the same SHA-1
        warcio gave it), or for a 304 the SHA-1 the state kept."""
        warc_headers = {
            **warc_headers,
            "WARC-Refers-To-Target-URI": refers.uri,
            "WARC-Refers-To-Date": _warc_date(refers.date),
        }
        if refers.profile == "server-not-modified":
            warc_headers["WARC-Profile"] = _NOT_MODIFIED
            if refers.sha1 is not None:
                # The capture's payload digest: replay tools (pywb) find it by digest.
                warc_headers["WARC-Payload-Digest"] = _sha1_digest(refers.sha1)
            # No HTTP headers: the 304's would be replayed as the page (pywb takes a
            # revisit's own headers over its capture's), not the capture they confirm.
            return self._writer.create_warc_record(
                url, "revisit", length=0, warc_headers_dict=warc_headers
            )
        digest = _sha1_digest(hashlib.sha1(body).digest())
        record: ArcWarcRecord = self._writer.create_revisit_record(
            url,
            digest,
            refers.uri,
            _warc_date(refers.date),
            http_headers=http_headers,
            warc_headers_dict={"WARC-Date": warc_headers["WARC-Date"]},
        )
        return record


_NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"


def _sha1_digest(sha1: bytes) -> str:
    """As warcio labels a payload: ``sha1:`` and base32."""
    return "sha1:" + base64.b32encode(sha1).decode()


def redacted_body(
    body: bytes, headers: Mapping[str, str], secret: frozenset[str] = frozenset()
) -> bytes:
    """A form body with the values of password-like fields (and of the fields named in
    ``secret``) replaced by ``[redacted]``, every other byte as sent (a field in another
    charset than UTF-8 stays as it was); any other body (JSON, bytes a callback made)
    as sent."""
    from urllib.parse import quote_plus, unquote_plus

    kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if not kind.lower().startswith("application/x-www-form-urlencoded"):
        return body
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return body
    marker = quote_plus(_REDACTED)
    out = []
    for pair in text.split("&"):
        name, eq, _ = pair.partition("=")
        plain = unquote_plus(name, errors="replace")
        secret_value = eq and (plain in secret or _SECRET.search(plain))
        out.append(f"{name}={marker}" if secret_value else pair)
    return "&".join(out).encode("ascii")


def _redacted_header(name: str, value: str) -> str:
    lowered = name.lower()
    return _REDACTED if lowered in _SECRET_HEADERS or _SECRET.search(lowered) else value


def _warc_date(when: float | None) -> str:
    at = datetime.now(UTC) if when is None else datetime.fromtimestamp(when, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _header_lines(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """One (name, value) per header line. Repeated Set-Cookie and X-Robots-Tag values
    arrive joined by LF (``shoal.http._transport.JOINED_BY_LF``): each becomes its own
    line, and no value keeps a CR or LF, which would break the WARC record's header
    block."""
    lines: list[tuple[str, str]] = []
    for name, value in headers.items():
        if name in _DROPPED:
            continue
        for part in value.split("\n"):
            clean = part.replace("\r", " ").strip()
            lines.append((name.title(), clean))
    return lines


def _with_user_headers(
    own: list[tuple[str, str]], user: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """shoal's request headers with the user's over them (names without case)."""
    given = {name.lower() for name, _ in user}
    return [h for h in own if h[0].lower() not in given] + list(user)


def open_format(target: OutputFile | None, options: OutputOptions) -> WarcOutput:
    if target is None:
        raise UsageError("WARC output needs a file: -o crawl.warc.gz")
    return WarcOutput(target, options.resume_at, options.user_agent, options.request_headers)
