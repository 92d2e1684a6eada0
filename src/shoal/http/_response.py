"""Reading one HTTP/1.1 response for the client in ``_http``: the head and framing,
parsed by llhttp (``httptools``), and the body, decoded (gzip, deflate, br) with its
decoded size held to a cap. Every failure is a :class:`~shoal.TransportError` with a kind."""

from __future__ import annotations

import zlib
from contextlib import suppress
from enum import Enum
from typing import Any

import brotli
import httptools

from ._transport import JOINED_BY_LF, ErrorKind, Response, TransportError

__all__ = ["MAX_HEAD", "Body", "Reader"]

MAX_HEAD = 64 * 1024  # status line + headers; also chunk framing and trailers in a row
_MAX_HEADERS = 200
_MAX_INFORMATIONAL = 16  # 1xx responses skipped before the real one
_DRAIN = 64 * 1024  # an unwanted body up to this size is read to keep the connection


class Framing(Enum):
    """How a response's body is delimited (RFC 9112 section 6.3)."""

    NONE = "none"  # no body (204, 304); also "no head read yet"
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # read until the server closes the connection


# Module globals for the hot path: one global lookup each, not a class attribute lookup.
_NONE, _LENGTH, _CHUNKED, _CLOSE = Framing.NONE, Framing.LENGTH, Framing.CHUNKED, Framing.CLOSE


_SLACK_BYTES = 64 * 1024  # encoded bytes allowed beyond the decoded cap (see Body.feed)


class _Stop(Exception):
    """Raised in a parser callback to stop parsing: the response is settled."""


class _Full(Exception):
    """A body read with ``truncate`` reached max_bytes: what it holds is the response."""


class Body:
    """Collects a body, decoding it, with the decoded size held to max_bytes.

    Decompression output is capped per call (zlib max_length, brotli output_buffer_limit),
    so a decompression bomb never inflates much past max_bytes before it is rejected.
    With ``truncate`` a body that would pass max_bytes is cut there instead (``_Full``
    ends the read; ``truncated`` says so).
    """

    __slots__ = (
        "acc",
        "coding",
        "done",
        "first",
        "head",
        "max_bytes",
        "size",
        "truncate",
        "truncated",
        "wire",
        "zobj",
    )

    def __init__(self, coding: str, max_bytes: int, truncate: bool = False) -> None:
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            coding = "zlib"  # the stream's own header says which (see _wbits)
        elif coding == "identity":
            coding = ""
        elif coding not in ("", "br"):
            raise TransportError(ErrorKind.DECODE, f"unsupported Content-Encoding {coding!r}")
        self.coding = coding
        self.max_bytes = max_bytes
        self.size = self.wire = 0
        self.first = self.head = b""
        self.acc: bytearray | None = None
        self.done = False
        self.truncate = truncate
        self.truncated = False
        self.zobj: Any = brotli.Decompressor() if coding == "br" else None

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            self._over(data)
        if not self.first:
            self.first = data  # a one-piece body is returned without copying
        else:
            if self.acc is None:
                self.acc = bytearray(self.first)
            self.acc += data

    def _over(self, data: bytes) -> None:
        """``data`` takes the body past max_bytes: TOO_LARGE, or with ``truncate`` the part
        of it that fits is kept and ``_Full`` ends the read."""
        if not self.truncate:
            raise TransportError(ErrorKind.TOO_LARGE, f"body exceeds max_bytes {self.max_bytes}")
        data = data[: len(data) - (self.size - self.max_bytes)]
        self.size, self.truncated = self.max_bytes, True
        if not self.first:
            self.first = data
        else:
            if self.acc is None:
                self.acc = bytearray(self.first)
            self.acc += data
        raise _Full

    def feed(self, data: bytes) -> None:
        if not self.coding:
            self._emit(data)
            return
        self.wire += len(data)
        # Empty deflate blocks decode to nothing: cap the wire bytes too (incompressible
        # data grows by far less than 1/16 when "compressed").
        if self.wire > self.max_bytes + (self.max_bytes >> 4) + _SLACK_BYTES:
            if self.truncate:
                self.truncated = True
                raise _Full
            raise TransportError(
                ErrorKind.TOO_LARGE, f"encoded body exceeds max_bytes {self.max_bytes}"
            )
        if self.done:
            return  # bytes after the end of the compressed stream are ignored
        try:
            if self.coding == "br":
                self._unbrotli(data)
            else:
                self._inflate(data)
        except (zlib.error, brotli.error) as exc:
            raise TransportError(ErrorKind.DECODE, f"{self.coding}: {exc}") from None

    def _inflate(self, data: bytes) -> None:
        d = self.zobj
        while data:
            if d is None or d.eof:
                data = self.head + data
                if len(data) < 2:
                    self.head = data
                    return
                self.head = b""
                if d is not None and not data.startswith(b"\x1f\x8b"):
                    self.done = True  # junk after the stream: ignored, as browsers do
                    return
                d = self.zobj = zlib.decompressobj(_wbits(data))  # or the next gzip member
            self._emit(d.decompress(data, self.max_bytes - self.size + 1))
            data = d.unconsumed_tail or d.unused_data

    def _unbrotli(self, data: bytes) -> None:
        d = self.zobj
        out = d.process(data, output_buffer_limit=self.max_bytes - self.size + 1)
        self._emit(out)
        # Output is capped per call, so more may be pending without new input.
        while not d.is_finished() and (out or not d.can_accept_more_data()):
            out = d.process(b"", output_buffer_limit=self.max_bytes - self.size + 1)
            self._emit(out)
        self.done = d.is_finished()

    def finish(self) -> bytes:
        if self.truncated:
            return bytes(self.acc) if self.acc is not None else self.first
        if self.head and self.zobj is None:
            raise TransportError(ErrorKind.DECODE, "truncated compressed body")
        if self.coding == "zlib" and self.zobj is not None and not self.done:
            with suppress(zlib.error):  # lenient, like urllib3: a cut stream yields its start
                self._emit(self.zobj.flush())
        return bytes(self.acc) if self.acc is not None else self.first


def _wbits(head: bytes) -> int:
    """zlib window bits for a stream starting with head: servers label gzip, zlib and
    raw deflate streams inconsistently, so trust the bytes rather than the label."""
    if head.startswith(b"\x1f\x8b"):
        return 16 + zlib.MAX_WBITS
    if head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS


class Reader:
    """Collects one response from llhttp's callbacks (httptools calls the ``on_*``
    methods while ``feed`` runs), deciding its framing and whether the connection may
    be kept. An error raised in a callback stops the parser and comes out of ``feed``.

    The caller appends what it feeds to ``pieces`` while ``head_done`` is False. Header
    fields are not taken from llhttp's per-field callbacks (a Python call per field,
    and unbounded buffering of trailer fields): once llhttp has validated the whole
    head, ``_fields`` splits its bytes, which the validation makes safe to do simply."""

    __slots__ = (
        "body",
        "body_bytes",
        "complete",
        "extra",
        "feed_data",
        "framing",
        "head_done",
        "headers",
        "informational",
        "keep",
        "max_bytes",
        "parser",
        "pieces",
        "raw",
        "read_body",
        "status",
        "truncate",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        # The one leniency: a bare LF ends a head line (RFC 9112 section 2.2 allows it).
        self.parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        self.feed_data = self.parser.feed_data
        self.start(0, False)

    def start(self, max_bytes: int, read_body: bool, truncate: bool = False) -> None:
        """Get ready for the next response on the connection. A connection carries a
        next request only after a clean response, which leaves llhttp ready for the
        next message: one parser serves the connection's whole life. ``truncate``: a
        body past max_bytes is cut there (see Body), not an error."""
        self.max_bytes = max_bytes
        self.read_body = read_body
        self.truncate = truncate
        self.headers: dict[str, str] = {}
        self.raw: list[str] = []  # the head's field lines, "Name: value"
        self.informational = self.status = self.body_bytes = 0
        self.pieces: list[bytes] = []  # what was received while the head was incomplete
        self.framing = _NONE
        self.head_done = self.complete = self.extra = self.keep = False
        self.body: Body | None = None

    # --- llhttp callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the response: never the next request's answer
            self.extra = True
            raise _Stop

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise TransportError(ErrorKind.PROTOCOL, "unrequested protocol switch (101)")
            self.informational += 1
            if self.informational > _MAX_INFORMATIONAL:
                raise TransportError(
                    ErrorKind.PROTOCOL, f"more than {_MAX_INFORMATIONAL} 1xx responses"
                )
            return  # llhttp ends a 1xx at its head; the next response follows
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise TransportError(ErrorKind.PROTOCOL, f"unsupported HTTP version {version}")
        self.status, self.head_done = status, True
        pieces = self.pieces
        headers, self.raw = _fields(
            pieces[0] if len(pieces) == 1 else b"".join(pieces), self.informational
        )
        self.headers = headers
        self.pieces = []
        # llhttp weighs the Connection header against the version (and a body read
        # until close) as RFC 9112 section 9.3 says.
        keep = parser.should_keep_alive()
        length = 0
        if status in (204, 304):
            framing = _NONE
        elif (te := headers.get("transfer-encoding")) is not None:
            if [t.strip().lower() for t in te.split(",")] != ["chunked"]:
                raise TransportError(
                    ErrorKind.PROTOCOL, f"unrequested Transfer-Encoding {te[:60]!r}"
                )
            framing = _CHUNKED
            if version == "1.0":  # RFC 9112 section 6.1: faulty framing, close after
                keep = False
        elif (value := headers.get("content-length")) is not None:
            framing, length = _LENGTH, int(value)  # llhttp checked the digits
        else:
            framing, keep = _CLOSE, False
        self.framing, self.keep = framing, keep
        if not self.read_body:
            if framing is _NONE:
                return
            if keep and framing is not _CLOSE and length <= _DRAIN:
                self.body = Body("", _DRAIN)  # read a small body to keep the connection
                return
            self.complete, self.keep = True, False
            raise _Stop
        if framing is _NONE:
            return
        body = self.body = Body(headers.get("content-encoding", ""), self.max_bytes, self.truncate)
        if framing is _LENGTH and not body.coding and length > self.max_bytes and not self.truncate:
            raise TransportError(
                ErrorKind.TOO_LARGE, f"Content-Length {length} exceeds max_bytes {self.max_bytes}"
            )

    def on_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        try:
            self.body.feed(data)  # type: ignore[union-attr]  # set with the head
        except _Full:
            # The rest of the body is never read: the connection cannot carry another.
            self.complete, self.keep = True, False
            raise _Stop from None

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True

    # --- the client's side --------------------------------------------------------------

    def failed(self, error: httptools.HttpParserError) -> None:
        """Settle a parser error: raise it as a TransportError unless the response was
        already complete (then what failed to parse came after it)."""
        cause = error.__context__
        if self.complete:
            if not isinstance(cause, _Stop):
                self.extra = True  # unparsable bytes after the response
            return
        if self.head_done and not self.read_body:
            self.complete, self.keep = True, False  # an unwanted body: drop the connection
            return
        if isinstance(cause, TransportError):
            raise cause from None
        where = "response head" if not self.head_done else "response body framing"
        raise TransportError(ErrorKind.PROTOCOL, f"bad {where}: {error}") from None

    def ended(self) -> None:
        """The server closed the connection before the response was complete."""
        if self.head_done and (self.framing is _CLOSE or not self.read_body):
            self.complete, self.keep = True, False  # the body reads until close
            return
        if not self.head_done:
            raise TransportError(ErrorKind.CONNECTION, "connection closed inside the response head")
        raise TransportError(
            ErrorKind.CONNECTION,
            f"connection closed after {self.body_bytes} body bytes, before the end",
        )

    def response(self) -> Response:
        body = self.body.finish() if self.read_body and self.body is not None else b""
        response = Response(self.status, self.headers, body, head_lines=self.raw)
        if self.body is not None and self.body.truncated:
            response.truncated = True
        return response


def _fields(buf: bytes, skip: int) -> tuple[dict[str, str], list[str]]:
    """The header fields of the head after the first ``skip`` (1xx) heads in ``buf``.

    llhttp accepted these heads, so: lines end with CRLF or a bare LF, no line folding,
    no CR elsewhere, every field line is ``token ":" value``, and the first empty line
    ends a head; it skips CR and LF before a head. Names are lower-cased; a repeated
    field is joined with ", " (set-cookie, x-robots-tag with "\n": ``JOINED_BY_LF``). Also
    returns the field lines as received (see ``Response.raw_headers``)."""
    start = 0
    while True:
        while buf[start : start + 1] in (b"\r", b"\n"):
            start += 1
        crlf = buf.find(b"\n\r\n", start)
        lf = buf.find(b"\n\n", start, len(buf) if crlf < 0 else crlf)
        end, skip_end = (lf, 2) if lf >= 0 else (crlf, 3)
        if end < 0:  # not a head llhttp would have accepted
            raise TransportError(ErrorKind.PROTOCOL, "no end of the response head")
        if not skip:
            break
        skip -= 1
        start = end + skip_end
    lines = buf[start:end].decode("latin-1").split("\n")
    if len(lines) > _MAX_HEADERS + 1:
        raise TransportError(ErrorKind.PROTOCOL, f"more than {_MAX_HEADERS} response headers")
    headers: dict[str, str] = {}
    del lines[0]  # the status line
    for line in lines:
        name, _, value = line.partition(":")
        name = name.lower()
        value = value.strip(" \t\r")  # OWS, and the CR of a CRLF; not latin-1 NBSP
        if (old := headers.get(name)) is None:
            headers[name] = value
        else:
            headers[name] = old + ("\n" if name in JOINED_BY_LF else ", ") + value
    return headers, lines
