"""Requests, not only URLs: what a page callback may give besides a URL string.

A :class:`Request` is a URL with a method (GET or POST), a body, headers of its own, a
``label`` (which route handles its page) and ``meta`` (JSON data carried to that page).
It travels through the frontier encoded as one string (see :meth:`Request._encode`), kept
by every backend with the URL (memory, the state file, Redis) so a resumed or shared
crawl sends it as it was made. A plain GET with none of these is encoded as nothing at
all: its cost in the frontier is a URL's, as before.

The encoding's first line is what tells the request apart from others of its URL (method
and a digest of the body; empty for a GET): ``state._jobs.job_key`` makes it part of the
key a frontier dedupes by, so a GET's fingerprint is its URL's, as it always was.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urldefrag, urlencode, urljoin, urlsplit

from .._errors import UsageError

__all__ = [
    "MAX_BODY",
    "MAX_FORM_FIELDS",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_LABEL",
    "MAX_META",
    "METHODS",
    "Request",
]

METHODS = ("GET", "POST")
# Bounds on what one request may carry: each is kept in the crawl's state with its URL
# (and, shared, in Redis), so none may grow without limit.
MAX_BODY = 256 * 1024  # bytes of a body
MAX_META = 64 * 1024  # bytes of meta as JSON
MAX_HEADERS = 32  # header fields of a request's own
MAX_HEADER_BYTES = 8 * 1024  # bytes of those fields, names and values together
MAX_LABEL = 100  # characters of a label
MAX_FORM_FIELDS = 1000  # fields of a form Request.from_form reads

FORM_TYPE = "application/x-www-form-urlencoded"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that frame the request or name its target: the client writes them, and a
# request's own could make the bytes on the wire say something else.
_FRAMING = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "trailer", "upgrade"}
)
# Submit-like inputs: only the one clicked is sent.
_CLICKABLE = frozenset({"submit", "image", "reset", "button"})

FormData = Mapping[str, "str | Iterable[str] | None"] | Iterable[tuple[str, str]]


class _FormPage(Protocol):
    """What :meth:`Request.from_form` reads of a page (a :class:`~shoal.Page`)."""

    @property
    def final_url(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def encoding(self) -> str: ...
    def xpath(self, query: str) -> Any: ...
    def css(self, query: str) -> Any: ...


class Request:
    """A request a page callback gives the crawler (``yield shoal.Request(...)``).

    ``method`` is GET or POST. ``data`` a mapping (or a sequence of name/value pairs) is
    form-encoded: the body of a POST (with Content-Type
    ``application/x-www-form-urlencoded`` unless ``headers`` name one), the query of a
    GET (replacing the URL's own); bytes are a POST's body as given. ``headers`` are
    sent with this request only (never with a redirect to another host, which is queued
    as a request of its own without them). ``label`` picks the route that handles the
    page (``@crawler.route(label)``); ``meta`` is data (JSON: it is kept in the crawl's
    state) handed back as ``page.request.meta``. A relative URL is resolved against the
    page that gave it. Dedupe: two requests are the same if URL, method and body are;
    headers, label and meta do not count, so a GET is deduped with its URL's links.

    Raises UsageError for anything out of bounds (method, sizes, headers, meta that is
    not JSON), naming the problem.
    """

    __slots__ = ("_secret", "body", "headers", "label", "meta", "method", "url")

    url: str
    method: str
    headers: dict[str, str]
    body: bytes | None
    label: str | None
    meta: dict[str, Any]
    # Names of form fields whose values are secrets (a form's password inputs): a WARC
    # request record redacts them, besides the names that look secret.
    _secret: tuple[str, ...]

    def __init__(
        self,
        url: str,
        method: str = "GET",
        *,
        headers: Mapping[str, str] | None = None,
        data: FormData | bytes | None = None,
        label: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise UsageError(f"Request: url must be a non-empty string, not {url!r}")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise UsageError(f"Request: method {method!r} is not one of {', '.join(METHODS)}")
        method = method.upper()
        own = _checked_headers(headers or {})
        body: bytes | None = None
        if isinstance(data, bytes | bytearray | memoryview):
            if method == "GET":
                raise UsageError("Request: a GET has no body; give data as fields, or POST")
            body = bytes(data)
        elif data is not None:
            if isinstance(data, str):
                raise UsageError("Request: data is a mapping of form fields or bytes, not str")
            encoded = urlencode(_pairs(data))
            if method == "GET":
                url = urldefrag(url)[0].split("?", 1)[0] + ("?" + encoded if encoded else "")
            else:
                body = encoded.encode("ascii")
                if not any(name.lower() == "content-type" for name in own):
                    own["Content-Type"] = FORM_TYPE
        elif method == "POST":
            body = b""
        if body is not None and len(body) > MAX_BODY:
            raise UsageError(f"Request: a body of {len(body)} bytes is over {MAX_BODY}")
        if label is not None:
            if not isinstance(label, str) or not label or len(label) > MAX_LABEL:
                raise UsageError(
                    f"Request: label must be a string of 1 to {MAX_LABEL} characters, "
                    f"not {label!r:.120}"
                )
            if not label.isprintable():
                raise UsageError(f"Request: label {label!r:.120} has control characters")
        self.url = url
        self.method = method
        self.headers = own
        self.body = body
        self.label = label
        self.meta = _checked_meta(meta)
        self._secret = ()

    # -- the frontier's form --------------------------------------------------------------

    def _encode(self) -> str | None:
        """The fields the frontier keeps with the URL: None for a plain GET; else a line
        naming what else dedupes it (method and body digest; empty for a GET), then
        JSON with the fields that are not their defaults."""
        fields: dict[str, Any] = {}
        ident = ""
        if self.method != "GET":
            body = self.body or b""
            ident = f"{self.method} {hashlib.blake2b(body, digest_size=16).hexdigest()}"
            fields["m"] = self.method
            if body:
                fields["b"] = base64.b64encode(body).decode("ascii")
        if self.headers:
            fields["h"] = list(self.headers.items())
        if self.label is not None:
            fields["l"] = self.label
        if self.meta:
            fields["d"] = self.meta
        if self._secret and self.body:
            fields["s"] = list(self._secret)
        if not fields:
            return None
        return ident + "\n" + json.dumps(fields, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def _decode(cls, url: str, encoded: str | None) -> Request:
        """The request a frontier's job stands for (its URL canonical already)."""
        request = cls.__new__(cls)
        request.url = url
        request.method = "GET"
        request.headers = {}
        request.body = None
        request.label = None
        request.meta = {}
        request._secret = ()
        if encoded is None:
            return request
        fields = json.loads(encoded.partition("\n")[2])
        request.method = fields.get("m", "GET")
        if request.method != "GET":
            request.body = base64.b64decode(fields.get("b", ""))
        request.headers = dict(fields.get("h", ()))
        request.label = fields.get("l")
        request.meta = fields.get("d", {})
        request._secret = tuple(fields.get("s", ()))
        return request

    def _moved(self, url: str, posted: str | None = None) -> str | None:
        """The encoded request a redirect of this one to another host queues there: its
        label and meta go along; its headers, method and body never do (they were made
        for this host: a 307/308 across hosts is queued as a GET, so a form's fields,
        maybe a password, never reach a host they were not meant for).

        ``posted``: the dedupe key of the POST that redirected (``job_key``). The GET
        after a POST is that POST's answer, not a link: its identity is the POST's, so it
        is fetched even if its URL was crawled already (or another POST led there)."""
        moved = Request._decode(url, None)
        moved.label, moved.meta = self.label, self.meta
        encoded = moved._encode()
        if posted is None:
            return encoded
        ident = "GET " + hashlib.blake2b(posted.encode(), digest_size=16).hexdigest()
        return ident + ("\n{}" if encoded is None else encoded)

    # -- forms -----------------------------------------------------------------------------

    @classmethod
    def from_form(
        cls,
        page: _FormPage,
        formdata: FormData | None = None,
        *,
        form: int | str | None = None,
        click: bool = True,
        headers: Mapping[str, str] | None = None,
        label: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Request:
        """The request that submitting a form of ``page`` makes, as a browser would.

        ``form`` picks the form: its index among the page's forms, or a CSS selector
        (default: the first form). Sent: every enabled named field with its value as the
        page has it (hidden ones too, such as CSRF tokens; checked boxes and radios;
        selected options, or a single select's first; textareas), then, with ``click``,
        the first named submit button. ``formdata`` sets fields (a value None removes
        one; a list sends the name repeatedly). The action is resolved against the page
        (none: the page's own URL); its method is GET (the fields become the query) or
        POST (form-encoded body). Refused with UsageError: no such form, an action that
        is not http(s) (``javascript:``), a multipart form (file uploads), more than
        MAX_FORM_FIELDS fields. The crawl's scope still decides whether it is sent."""
        if formdata is not None and isinstance(formdata, str | bytes):
            raise UsageError(
                "from_form: formdata is a mapping of fields or a list of (name, value) pairs, "
                f"not {type(formdata).__name__}"
            )
        node = _pick_form(page, form)
        button = _clicked(page, node) if click else None
        # The clicked button's formaction, formmethod and formenctype win over the form's.
        attrs = dict(node.attrib)
        if button is not None:
            for name in ("action", "method", "enctype"):
                value = button.get("form" + name)
                if value is not None:
                    attrs[name] = value
        method = (attrs.get("method") or "get").strip().upper()
        if method not in METHODS:
            raise UsageError(f"the form's method {method!r:.40} submits nothing (GET or POST)")
        enctype = (attrs.get("enctype") or FORM_TYPE).strip().lower()
        if method == "POST" and enctype.startswith("multipart/"):
            raise UsageError("the form is multipart/form-data (file uploads): not supported")
        if method == "POST" and enctype.startswith("text/plain"):
            raise UsageError(
                "the form is text/plain (no server can parse it reliably): not supported"
            )
        action = (attrs.get("action") or "").strip()
        url = urljoin(page.base_url, action) if action else page.final_url
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise UsageError(f"the form's action {action!r:.80} is not an http(s) URL")
        pairs = _form_fields(page, node)
        pairs = _overridden(pairs, formdata, _clicked_pairs(button))
        pairs = _pairs(pairs)  # the checks of a Request's data: str names and values
        # As a browser: the fields in the form's accept-charset or the page's encoding, a
        # character it lacks as an HTML character reference.
        charset = _form_charset(attrs.get("accept-charset"), page.encoding)
        encoded = urlencode(pairs, encoding=charset, errors="xmlcharrefreplace")
        url = urldefrag(url)[0]
        if method == "GET":
            request = cls(
                url.split("?", 1)[0] + ("?" + encoded if encoded else ""),
                headers=headers,
                label=label,
                meta=meta,
            )
        else:
            own = dict(headers or {})
            if not any(name.lower() == "content-type" for name in own):
                own["Content-Type"] = FORM_TYPE
            request = cls(
                url, method, headers=own, data=encoded.encode("ascii"), label=label, meta=meta
            )
        request._secret = _password_fields(page, node)
        return request

    # -- the rest ----------------------------------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        return (self.url, self.method, self.headers, self.body, self.label, self.meta)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # meta is a dict: mutable

    def __repr__(self) -> str:
        extra = ""
        if self.body:
            extra += f", {len(self.body)} bytes"
        if self.label is not None:
            extra += f", label={self.label!r}"
        return f"Request({self.method} {self.url!r}{extra})"


def _pairs(data: FormData) -> list[tuple[str, str]]:
    items: Iterable[Any] = data.items() if isinstance(data, Mapping) else data
    out: list[tuple[str, str]] = []
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise UsageError(f"Request: form data {item!r:.80} is not a name and a value") from None
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if not isinstance(name, str) or not isinstance(v, str):
                raise UsageError(
                    f"Request: form field {name!r:.60} = {v!r:.60}: names and values are str"
                )
            out.append((name, v))
    return out


def _checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise UsageError(f"Request: {len(headers)} headers, more than {MAX_HEADERS}")
    size = 0
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise UsageError(f"Request: {name!r:.60} is not a header name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise UsageError(f"Request: header {name}: the value must be a str on one line")
        if not value.isascii() and not _latin1(value):
            raise UsageError(f"Request: header {name}: the value is not latin-1")
        if name.lower() in _FRAMING:
            raise UsageError(
                f"Request: the header {name} is the client's to write, not a request's"
            )
        size += len(name) + len(value)
        out[name] = value
    if size > MAX_HEADER_BYTES:
        raise UsageError(f"Request: headers of {size} bytes, more than {MAX_HEADER_BYTES}")
    return out


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _checked_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise UsageError(f"Request: meta must be a dict, not {type(meta).__name__}")
    try:
        text = json.dumps(dict(meta), allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        # Kept in the crawl's state: only what JSON holds survives a resume.
        raise UsageError(
            f"Request: meta must be JSON data (it is kept in the state): {exc}"
        ) from None
    if len(text.encode()) > MAX_META:
        raise UsageError(
            f"Request: meta of {len(text.encode())} bytes as JSON, more than {MAX_META}"
        )
    # The page gets meta back as JSON gives it (a tuple comes back a list): the same
    # whether the request waited in memory, in a state file or in Redis.
    value: dict[str, Any] = json.loads(text)
    return value


# -- forms ------------------------------------------------------------------------------


def _pick_form(page: _FormPage, form: int | str | None) -> Any:
    try:
        return _find_form(page, form)
    except ValueError as exc:  # parsel's: a page that is not HTML (JSON) has no forms
        raise UsageError(f"no <form> on {page.final_url}: {exc}") from None


def _find_form(page: _FormPage, form: int | str | None) -> Any:
    if isinstance(form, str):
        found = page.css(form)
        if not found:
            raise UsageError(f"no element matches {form!r:.80} on {page.final_url}")
        node = found[0].root
        if getattr(node, "tag", None) != "form":
            raise UsageError(f"{form!r:.80} on {page.final_url} is not a <form>")
        return node
    forms = page.xpath("//form")
    index = 0 if form is None else form
    if isinstance(index, bool) or not isinstance(index, int):
        raise UsageError(f"form= is an index or a CSS selector, not {form!r:.60}")
    if not forms:
        raise UsageError(f"no <form> on {page.final_url}")
    if not -len(forms) <= index < len(forms):
        raise UsageError(f"form={index}: {page.final_url} has {len(forms)} form(s)")
    return forms[index].root


def _controls(page: _FormPage, form: Any) -> list[Any]:
    """The form's controls in document order: those inside it, and those outside that
    name it (``form="ID"``). Bounded: a page of thousands of inputs is refused."""
    query = ".//input|.//select|.//textarea|.//button"
    form_id = form.get("id")
    # A control inside that names another form (form="OTHER") is that form's.
    nodes = [n for n in form.xpath(query) if n.get("form") in (None, form_id)]
    if form_id:
        inside = set(nodes)
        outside = [n.root for n in page.xpath("//*[@form]")[: MAX_FORM_FIELDS + 1]]
        nodes += [n for n in outside if n.get("form") == form_id and n not in inside]
    if len(nodes) > MAX_FORM_FIELDS:
        raise UsageError(f"the form has {len(nodes)} fields, more than {MAX_FORM_FIELDS}")
    return nodes


def _form_fields(page: _FormPage, form: Any) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for node in _controls(page, form):
        name = node.get("name")
        if not name or _disabled(node):
            continue
        tag = node.tag
        if tag == "input":
            kind = (node.get("type") or "text").strip().lower()
            if kind in _CLICKABLE or kind == "file":
                continue
            if kind in ("checkbox", "radio"):
                if node.get("checked") is None:
                    continue
                pairs.append((name, node.get("value") if node.get("value") is not None else "on"))
            else:
                pairs.append((name, node.get("value") or ""))
        elif tag == "textarea":
            pairs.append((name, _textarea_value("".join(node.itertext()))))
        elif tag == "select":
            pairs.extend((name, value) for value in _selected(node))
    return pairs


def _password_fields(page: _FormPage, form: Any) -> tuple[str, ...]:
    """The names of the form's password inputs, whatever they are called (``pw``)."""
    names = []
    for node in _controls(page, form):
        if node.tag == "input" and (node.get("type") or "").strip().lower() == "password":
            name = node.get("name")
            if name and name not in names:
                names.append(name)
    return tuple(names)


def secret_fields(encoded: str | None) -> frozenset[str]:
    """The secret form fields of a frontier's encoded request (see ``Request._secret``)."""
    if encoded is None or '"s":' not in encoded:
        return frozenset()
    names = json.loads(encoded.partition("\n")[2]).get("s", ())
    return frozenset(n for n in names if isinstance(n, str))


def _selected(select: Any) -> list[str]:
    options = [o for o in select.iter("option") if o.get("disabled") is None]
    chosen = [o for o in options if o.get("selected") is not None]
    if select.get("multiple") is None:
        chosen = chosen[-1:] or options[:1]  # a single select shows its last selected
    return [_option_value(o) for o in chosen]


def _option_value(option: Any) -> str:
    value = option.get("value")
    if value is not None:
        return str(value)
    return " ".join("".join(option.itertext()).split())


def _disabled(node: Any) -> bool:
    """Disabled itself, or inside a disabled <fieldset> but not in its first <legend>."""
    if node.get("disabled") is not None:
        return True
    child = node
    for parent in node.iterancestors():
        if parent.tag == "form":
            return False
        if parent.tag == "fieldset" and parent.get("disabled") is not None:
            legend = next((c for c in parent if c.tag == "legend"), None)
            if legend is None or child is not legend:
                return True
        child = parent
    return False


def _textarea_value(text: str) -> str:
    """A textarea's value as a browser submits it: the newline right after the start tag
    is not part of it, and line breaks go as CRLF."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\n"):
        text = text[1:]
    return text.replace("\n", "\r\n")


def _clicked(page: _FormPage, form: Any) -> Any:
    """The button a click submits with: the first submit button or image that sends
    something (a named submit, or an image, whose click point is sent)."""
    for node in _controls(page, form):
        if _disabled(node) or node.tag not in ("input", "button"):
            continue
        kind = (node.get("type") or ("submit" if node.tag == "button" else "text")).strip()
        kind = kind.lower()
        if kind == "image" and node.tag == "input":
            return node
        if kind == "submit" and node.get("name"):
            return node
    return None


def _clicked_pairs(button: Any) -> list[tuple[str, str]]:
    """What clicking ``button`` adds: its name and value; for an image, the point
    clicked (0, 0) as ``name.x`` and ``name.y`` (``x`` and ``y`` without a name)."""
    if button is None:
        return []
    name = button.get("name") or ""
    if button.tag == "input" and (button.get("type") or "").strip().lower() == "image":
        prefix = name + "." if name else ""
        return [(prefix + "x", "0"), (prefix + "y", "0")]
    return [(name, button.get("value") or "")]


def _form_charset(accept: str | None, page_encoding: str) -> str:
    """The encoding a browser submits a form in: the first usable one of its
    accept-charset, else the page's; UTF-8 for a UTF-16/32 page or an unknown name."""
    for given in [*(accept or "").replace(",", " ").split(), page_encoding]:
        try:
            name = codecs.lookup(given).name
        except (LookupError, ValueError):
            continue
        if name.startswith(("utf-16", "utf-32")):
            return "utf-8"
        return name
    return "utf-8"


def _overridden(
    pairs: list[tuple[str, str]], formdata: FormData | None, clicked: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The form's fields with ``formdata``'s in their place (first position kept), new
    names after them, a None value removing the field; then the clicked button."""
    given: dict[str, list[Any] | None] = {}
    if formdata is not None:
        items: Iterable[Any] = formdata.items() if isinstance(formdata, Mapping) else formdata
        for item in items:
            try:
                name, value = item
            except (TypeError, ValueError):
                raise UsageError(f"from_form: {item!r:.80} is not a name and a value") from None
            if value is None:
                given[name] = None
                continue
            # One value, or several (a list): anything else is refused by _pairs, by name.
            many = isinstance(value, list | tuple)
            values = list(value) if many else [value]
            given[name] = (given.get(name) or []) + values
    out: list[tuple[str, str]] = []
    placed: set[str] = set()
    for name, value in pairs:
        if name not in given:
            out.append((name, value))
        elif name not in placed:
            placed.add(name)
            out.extend((name, v) for v in given[name] or ())
    for name, wanted in given.items():
        if name not in placed:
            out.extend((name, v) for v in wanted or ())
    out.extend(pair for pair in clicked if pair[0] not in given)
    return out
