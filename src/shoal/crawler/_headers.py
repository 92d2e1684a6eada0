"""Headers the user adds to requests (``headers``, ``header_for``, ``auth``), and where each
may go.

Three kinds, each with its own reach (docs: README, "Headers and credentials"):

- ``headers`` (``-H``): every request, to every host, like ``curl -H``; except
  ``Authorization`` and ``Cookie``, which are credentials.
- credentials (``auth``, and ``Authorization``/``Cookie`` given in ``headers``): only to
  the *origins* of the start URLs (scheme, host and port exactly; an ``http`` start URL's
  also to ``https`` on the same host and default port, an upgrade), so never to another
  host and never from https down to http (what requests' CVE-2018-18074 got wrong).
- ``header_for``: only to the host named (``HOST`` every port of it, ``HOST:PORT`` one),
  over https; over plain http too if the pattern says ``http://`` (which means both: https
  is never less safe than http to the same host) or a start URL on that host is http.
  ``https://HOST`` is https only.

Whether a header goes with a request is decided for each request's own URL, the first
and every redirect hop alike (a redirect to another host is fetched as a job of that
host), robots.txt and sitemaps included: a URL never gets a header it may not have,
wherever it was found. Credentials and per-host headers are secrets: a WARC request
record shows their values as ``[redacted]`` (:meth:`RequestHeaders.recorded`), and no
log or error message holds them.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from .._errors import literal
from .._url import REDACTED, redact_userinfo, split_url
from ..state._jobs import host_key

__all__ = [
    "REDACTED",
    "HeaderError",
    "HeaderRules",
    "HostPattern",
    "RequestHeaders",
    "looks_like_header",
    "no_headers",
]

# Headers that are credentials wherever they are given: only the start URLs' origins get
# them (curl does the same for Authorization on a redirect to another host since 7.58).
CREDENTIALS = frozenset({"authorization", "cookie"})

# Headers shoal writes itself, or that would change what a response means: refused, with
# what to do instead ({name} placeholders are option names, see OptionError).
_OWNED = {
    "host": "shoal sends the Host of each URL",
    "content-length": "shoal sends GET requests without a body",
    "transfer-encoding": "shoal sends GET requests without a body",
    "connection": "shoal manages its connections (keep-alive)",
    "keep-alive": "shoal manages its connections (keep-alive)",
    "proxy-connection": "shoal manages its connections (keep-alive)",
    "upgrade": "shoal speaks HTTP/1.1 only",
    "te": "shoal reads chunked bodies only",
    "trailer": "shoal sends GET requests without a body",
    "expect": "shoal sends GET requests without a body",
    "accept-encoding": "shoal asks for what it can decode (gzip, deflate, br)",
    "proxy-authorization": "give the proxy's credentials in {proxy} http://USER:PASS@HOST:PORT",
    "user-agent": "use {user_agent}: it is also the name robots.txt rules are read for",
    "if-none-match": "a conditional request's 304 is no page: {recrawl} sends them itself",
    "if-modified-since": "a conditional request's 304 is no page: {recrawl} sends them itself",
    "if-match": "a conditional request may answer with no page",
    "if-unmodified-since": "a conditional request may answer with no page",
    "if-range": "a part of a body is no page",
    "range": "a part of a body is no page",
}

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# A header name longer than this is not repeated in a message (nor one that is no token):
# a value typed where a name goes ("Authorization Bearer TOKEN: x") may be a secret.
_NAME_SHOWN = 40
# What a host name in a host pattern may hold once IDNA-encoded (an IPv6 address aside):
# "%" (an escape), "\" (a path separator to some parsers) and the like are mistakes.
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_CACHE_HOSTS = 4096  # per-host answers kept (cleared when full: a crawl may meet millions)

Header = tuple[str, str]
HeadersGiven = Mapping[str, str] | Sequence[str | tuple[str, str]] | str | None


class HeaderError(ValueError):
    """A header, host pattern or credential that cannot be used. ``template`` names
    options as ``{field}`` placeholders (the caller makes it an OptionError); it never
    holds a header's value, which may be a secret."""

    def __init__(self, template: str) -> None:
        super().__init__(template)
        self.template = template
        named = re.search(r"(?<!\{)\{(\w+)\}", template)
        self.field = named.group(1) if named else "headers"  # the option it is about


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _check_text(where: str, what: str, text: str) -> None:
    """One line of visible ASCII, spaces and tabs: no CR, LF, NUL or other control
    character (a line break would let the value write headers of its own: header
    injection), and nothing beyond ASCII. RFC 9110 (5.5) leaves other bytes to each
    recipient's reading: "café" would go as Latin-1 bytes that a server may read as
    anything, and the WARC record could not show what was sent. The value, and the
    character, are not shown: they may be part of a secret."""
    for position, ch in enumerate(text, start=1):
        if (ch < " " and ch != "\t") or ch == "\x7f":
            name = {"\r": "CR", "\n": "LF", "\x00": "NUL"}.get(ch, "")
            raise HeaderError(
                where
                + literal(f"{what} holds the control character {name or hex(ord(ch))}: ")
                + "a header is one line"
            )
        if ch > "\x7f":
            raise HeaderError(
                where
                + literal(f"{what}: the value's {_ordinal(position)} character is not ASCII: ")
                + "a header value is visible ASCII, spaces and tabs (percent-encode the rest, "
                "as the server expects it)"
            )


def _shown_name(name: str) -> str | None:
    """A header name as a message may repeat it, or None if it must not be: not a token,
    or longer than a name usually is (a value typed where the name goes)."""
    if len(name) > _NAME_SHOWN or any(ch not in _TOKEN for ch in name):
        return None
    return name


def parse_header(item: str | tuple[str, str], option: str, n: int) -> Header:
    """``'Name: value'`` (or a ``(name, value)`` pair) checked: the name a token, the
    value one line with no leading or trailing blanks."""
    where = f"{{{option}}}: the {_ordinal(n)} header"
    if isinstance(item, str):
        name, colon, value = item.partition(":")
        if not colon:
            raise HeaderError(where + literal(" has no ':' (give 'Name: value')"))
    elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
        name, value = item
    else:
        raise HeaderError(where + literal(" is not 'Name: value' nor a (name, value) pair"))
    name, value = name.strip(), value.strip(" \t")
    if not name:
        raise HeaderError(where + literal(" has no name before its ':'"))
    if any(ch not in _TOKEN for ch in name):
        # Not repeated: "Authorization Bearer TOKEN: x" has its secret in the name.
        why = "a space" if any(ch.isspace() for ch in name) else "a character a name may not"
        raise HeaderError(
            where
            + literal(f"'s name (before the ':') holds {why}: ")
            + "a name is one word of letters, digits and -!#$%&'*+.^_`|~ (give 'Name: value')"
        )
    label = f" ({name})" if _shown_name(name) else ""
    _check_text(where, label, value)
    if not value:
        raise HeaderError(where + literal(f"{label} has an empty value"))
    # "Content_Length" too: some servers read "_" in a name as "-" (CGI, nginx's option).
    owned = _OWNED.get(name.lower().replace("_", "-"))
    if owned is not None:
        raise HeaderError(where + literal(f" is {name}, which shoal does not take: ") + owned)
    return name, value


def parse_headers(given: HeadersGiven, option: str) -> tuple[Header, ...]:
    """Headers as a mapping, a list of ``'Name: value'`` strings or pairs, or one string."""
    items: Iterable[str | tuple[str, str]]
    if given is None:
        return ()
    if isinstance(given, str):
        items = [given]
    elif isinstance(given, Mapping):
        items = list(given.items())
    else:
        items = given
    out: list[Header] = []
    seen: set[str] = set()
    for n, item in enumerate(items, start=1):
        name, value = parse_header(item, option, n)
        if name.lower() in seen:
            # Cookie pairs are joined with "; " (RFC 6265 5.4), other lists with ", ".
            glue = "; " if name.lower() == "cookie" else ", "
            shown = _shown_name(name) or f"the {_ordinal(n)} header's name"
            raise HeaderError(
                f"{{{option}}} "
                + literal(f"gives {shown} twice: give it once (join the values with {glue!r})")
            )
        seen.add(name.lower())
        out.append((name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class HostPattern:
    """``[SCHEME://]HOST[:PORT]``: a host name (or IP address) matches every port of it
    unless a port is given; without a scheme, https (and http only where a start URL on
    that host is http: see the module's docstring); ``http://`` both, ``https://`` https
    only."""

    host: str  # as canonical URLs spell it: lower case, IDNA, IPv6 without brackets
    port: int | None = None
    scheme: str | None = None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        if looks_like_header(text):
            # Not repeated: it is most likely the header, value and all (the two swapped).
            raise HeaderError(
                "{header_for} takes HOST first, then 'NAME: VALUE': its host looks like a "
                "header (are the two swapped?)"
            )
        redacted = redact_userinfo(text)
        shown = literal(repr(redacted if len(redacted) <= 100 else redacted[:100] + "..."))
        raw = text.strip()
        scheme = None
        if "://" in raw:
            scheme, _, raw = raw.partition("://")
            scheme = scheme.lower()
            if scheme not in ("http", "https"):
                raise HeaderError(f"{{header_for}} host {shown}: only http:// or https://")
        raw = raw[:-1] if raw.endswith("/") else raw
        if not raw or any(ch in raw for ch in "/?#@ \t") or "*" in raw:
            raise HeaderError(
                f"{{header_for}} host {shown} is not HOST, HOST:PORT or SCHEME://HOST[:PORT] "
                "(a host is matched exactly, without wildcards or paths)"
            )
        if raw.count(":") > 1 and not raw.startswith("["):
            bracketed = f"[{raw}]" if _is_ipv6(raw) else "[ADDRESS]"
            raise HeaderError(
                f"{{header_for}} host {shown}: "
                + literal(f"an IPv6 address is written in brackets: {bracketed!r}")
                + literal(f" (or '{bracketed}:PORT')")
            )
        try:
            parts = split_url(f"{scheme or 'http'}://{raw}/")
            host = parts.host
            if not host.isascii():  # as canonical URLs spell it (``_urls.canonicalize``)
                host = host.encode("idna").decode("ascii")
        except (ValueError, UnicodeError) as exc:
            raise HeaderError(f"{{header_for}} host {shown}: " + literal(str(exc))) from None
        if not host:
            raise HeaderError(f"{{header_for}} host {shown} has no host name")
        if ":" in host:
            if not _is_ipv6(host):
                raise HeaderError(f"{{header_for}} host {shown}: not an IPv6 address")
        else:
            bad = next((ch for ch in host if ch not in _HOST_CHARS), None)
            if bad is not None:
                raise HeaderError(
                    f"{{header_for}} host {shown}: "
                    + literal(f"a host name may not hold {bad!r} ")
                    + "(letters, digits, '-', '_' and '.'; an IDN as typed or as xn--)"
                )
        if parts.port == 0:
            raise HeaderError(f"{{header_for}} host {shown}: port 0 cannot be connected to")
        return cls(host, parts.port, scheme)

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        """``port`` is the effective one (the scheme's default when none is written)."""
        if host != self.host:
            return False
        if self.port is not None and port != self.port:
            return False
        # http://HOST sends over https too: never less safe than http to the same host.
        return self.scheme != "https" or scheme == "https"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = host if self.port is None else f"{host}:{self.port}"
        return where if self.scheme is None else f"{self.scheme}://{where}"


def looks_like_header(text: str) -> bool:
    """``text``, given as a host, is rather a header: ``Name: value`` (a blank after the
    colon), or ``Name:value`` where no port follows (``X-Key:abc``; not ``host:8080``,
    ``http://``, ``fe80::1``)."""
    name, colon, rest = text.strip().partition(":")
    if not colon or not name or any(ch not in _TOKEN for ch in name):
        return False
    if rest[:1].isspace():
        return True
    if not rest or "." in name or "@" in rest or rest.startswith(("/", ":")):
        return False  # "host.test:x", "user:pw@host", "http://", "fe80::1"
    return not rest.isdigit()


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def basic_auth(auth: str | tuple[str, str]) -> str:
    """The ``Authorization`` value of HTTP Basic (RFC 7617, UTF-8) for ``USER:PASSWORD``
    or ``(user, password)``; a missing password is an error here (the command line asks
    for it or reads it from the environment before)."""
    if isinstance(auth, str):
        user, colon, password = auth.partition(":")
        if not colon:
            raise HeaderError(
                "{auth} " + literal(f"{user!r} has no password: give 'USER:PASSWORD'")
            )
    elif isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(x, str) for x in auth):
        user, password = auth
        if ":" in user:
            raise HeaderError("{auth}: the user name may not hold ':' (Basic cannot carry it)")
    else:
        raise HeaderError("{auth} takes 'USER:PASSWORD' or a (user, password) pair")
    if not user:
        raise HeaderError("{auth} has an empty user name")
    for what, text in (("user name", user), ("password", password)):
        bad = next((ch for ch in text if ch < " " or ch == "\x7f"), None)
        if bad is not None:
            raise HeaderError("{auth}: " + literal(f"the {what} holds a control character"))
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


@dataclass(frozen=True, slots=True, repr=False)
class HeaderRules:
    """The user's headers, checked: what :class:`CrawlOptions` makes of ``headers``,
    ``header_for`` and ``auth`` (the per-host part is the structure a config file's host
    tables fill: one :class:`HostPattern` and its headers per entry)."""

    common: tuple[Header, ...] = ()  # every request
    credentials: tuple[Header, ...] = ()  # the start URLs' origins only
    per_host: tuple[tuple[HostPattern, tuple[Header, ...]], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.common or self.credentials or self.per_host)

    def __repr__(self) -> str:  # names only: the values may be secrets
        hosts = ", ".join(f"{p}: {[n for n, _ in h]}" for p, h in self.per_host)
        return (
            f"HeaderRules(common={[n for n, _ in self.common]}, "
            f"credentials={[n for n, _ in self.credentials]}, per_host={{{hosts}}})"
        )

    @classmethod
    def build(
        cls,
        headers: HeadersGiven,
        header_for: Mapping[str, HeadersGiven] | None,
        auth: str | tuple[str, str] | None,
    ) -> HeaderRules:
        """Raises HeaderError (its template names the option) for anything unusable."""
        common: list[Header] = []
        credentials: list[Header] = []
        for name, value in parse_headers(headers, "headers"):
            (credentials if name.lower() in CREDENTIALS else common).append((name, value))
        if auth is not None:
            if any(name.lower() == "authorization" for name, _ in credentials):
                raise HeaderError("give {auth} or an Authorization header in {headers}, not both")
            credentials.append(("Authorization", basic_auth(auth)))
        if header_for is None:
            header_for = {}
        if not isinstance(header_for, Mapping):
            raise HeaderError(
                "{header_for} takes a mapping: host -> headers (e.g. "
                + literal("{'api.example.com': {'X-Api-Key': '...'}})")
            )
        # Two spellings of one host ("Example.com", "example.com") are one entry, as the
        # same spelling repeated on the command line is: a name in both is given twice.
        per_host: dict[HostPattern, list[str | tuple[str, str]]] = {}
        for text, given in header_for.items():
            if not isinstance(text, str):
                raise HeaderError("{header_for} " + literal(f"host {text!r} is not a string"))
            pattern = HostPattern.parse(text)
            parsed = parse_headers(given, "header_for")
            per_host.setdefault(pattern, []).extend(parsed)
        checked = ((p, parse_headers(h, "header_for")) for p, h in per_host.items())
        return cls(tuple(common), tuple(credentials), tuple((p, h) for p, h in checked if h))


_NONE: Mapping[str, str] = MappingProxyType({})


def no_headers(url: str) -> Mapping[str, str]:
    """The headers of a crawl that adds none."""
    return _NONE


class RequestHeaders:
    """The crawl's :class:`HeaderRules` against its start URLs: which headers each URL's
    request carries (:meth:`for_url`) and how a WARC request record shows them
    (:meth:`recorded`). Thread-safe (a race on the cache only computes twice)."""

    def __init__(self, rules: HeaderRules, start_urls: Sequence[str]) -> None:
        self.rules = rules
        origins = {host_key(u) for u in start_urls}
        # An http start URL's credentials may go to https on the same host (an upgrade:
        # http://site redirecting to https://site is common), never the other way.
        for origin in list(origins):
            if origin.startswith("http://") and split_url(origin).port is None:
                origins.add("https://" + origin[len("http://") :])
        self._origins = frozenset(origins)
        # (host, effective port) of the start URLs given over plain http: a pattern with
        # no scheme may send its headers over http to those.
        self._plain: set[tuple[str, int | None]] = set()
        for url in start_urls:
            parts = split_url(url)
            if parts.scheme == "http":
                self._plain.add((parts.host, parts.effective_port))
        self._cache: dict[str, tuple[tuple[str, str, bool], ...]] = {}
        self.empty = rules.empty
        self._common = dict(rules.common)

    def _headers(self, url: str) -> tuple[tuple[str, str, bool], ...]:
        """(name, value, secret) of each header a request for ``url`` carries."""
        origin = host_key(url)
        cached = self._cache.get(origin)
        if cached is not None:
            return cached
        rules = self.rules
        out: dict[str, tuple[str, str, bool]] = {}  # lower-cased name -> header: later wins
        for name, value in rules.common:
            out[name.lower()] = (name, value, False)
        if origin in self._origins:
            for name, value in rules.credentials:
                out[name.lower()] = (name, value, True)
        if rules.per_host:
            parts = split_url(origin)
            port = parts.effective_port
            plain_host = any(h == parts.host for h, _ in self._plain)
            # A pattern that pins a port is more specific than one that does not: applied
            # after it, so it wins.
            for pinned in (False, True):
                for pattern, headers in rules.per_host:
                    if (pattern.port is not None) != pinned:
                        continue
                    if not pattern.matches(parts.scheme, parts.host, port):
                        continue
                    if parts.scheme == "http" and pattern.scheme is None:
                        plain = (parts.host, port) in self._plain if pinned else plain_host
                        if not plain:
                            continue  # never over plain http unless asked for
                    for name, value in headers:
                        out[name.lower()] = (name, value, True)
        result = tuple(out.values())
        if len(self._cache) >= _CACHE_HOSTS:
            self._cache.clear()
        self._cache[origin] = result
        return result

    def for_url(self, url: str) -> Mapping[str, str]:
        """The headers a request for ``url`` (canonical http(s)) carries besides shoal's own."""
        if not self.rules.credentials and not self.rules.per_host:
            return self._common
        return {name: value for name, value, _ in self._headers(url)}

    def recorded(self, url: str) -> list[Header]:
        """The headers of :meth:`for_url` as a WARC request record shows them: the values
        of credentials and per-host headers replaced by ``[redacted]``."""
        if self.empty:
            return []
        return [(name, REDACTED if secret else value) for name, value, secret in self._headers(url)]

    def headers_for(self) -> Callable[[str], Mapping[str, str]]:
        """:meth:`for_url`, or :func:`no_headers` for a crawl that adds none."""
        return no_headers if self.empty else self.for_url
