"""URL canonicalization (w3lib semantics, faster) and crawl scope.

Two spellings of one resource must become one string, or the crawler fetches it twice:
scheme and host are lower-cased, default ports dropped, userinfo (``user:pw@``) dropped
(the HTTP client never sends it, so it only made one host look like many), dot segments
removed, the fragment dropped, query
arguments sorted (blank values kept), percent-escapes normalized (unreserved characters
decoded, hex upper-cased); the path keeps its case. Most links on a real page are
already canonical, so the common case is a handful of string checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from urllib.parse import quote, urljoin

from .._errors import InvalidURL
from .._url import DEFAULT_PORTS as _DEFAULT_PORTS
from .._url import URLParts, redact_userinfo, split_url
from ..state import host_key
from ._option_error import OptionError

__all__ = [
    "MAX_URL_LENGTH",
    "LinkResolver",
    "Refused",
    "Scope",
    "canonicalize",
    "host_key",
    "join_url",
    "parse_start_url",
    "refuse_credentials",
    "split_url",
    "suggest_url",
    "url_path",
    "why_refused",
]
# Characters a canonical path may hold as they are: RFC 3986 unreserved, sub-delims,
# ":", "@", "/" and "%" (escapes of reserved characters stay escaped).
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = "/:@!$'()*+,;-._~%?"
_SAFE_PATH_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + _PATH_SAFE.replace("%", "")
)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# Escapes that must stay escaped: decoding them would change what the URL means.
_KEEP_ESCAPED = {"2F", "3F", "23", "25", "26", "3D", "2B"}


def _normalize_escapes(part: str, safe: str) -> str:
    """Decode escapes of harmless characters, keep meaningful ones, quote the rest."""
    if "%" in part:

        def fix(m: re.Match[str]) -> str:
            hexa = m.group(1).upper()
            if hexa in _KEEP_ESCAPED or int(hexa, 16) < 0x21 or int(hexa, 16) > 0x7E:
                return "%" + hexa
            return chr(int(hexa, 16))

        part = _ESCAPE.sub(fix, part)
        # Bytes above 0x7E stay escaped; re-quoting leaves existing "%XX" alone.
        return quote(part, safe=safe)
    if all(c in _SAFE_PATH_CHARS for c in part):
        return part
    return quote(part, safe=safe)


def _canonical_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, _eq, value = pair.partition("=")
        key = _normalize_escapes(key.replace(" ", "+"), _QUERY_SAFE)
        value = _normalize_escapes(value.replace(" ", "+"), _QUERY_SAFE + "=")
        pairs.append((key, value))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _host(hostname: str) -> str:
    if hostname.isascii():
        return hostname
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"bad host name {hostname!r}") from exc


# Longer URLs are not followed: common servers reject request lines over 8 KB (nginx's and
# Apache's defaults), and a hostile page must not make the crawler hold or send megabytes
# per link. (Scrapy's default limit is 2083.)
MAX_URL_LENGTH = 8192


def canonicalize(url: str) -> str:
    """The canonical form of an absolute http(s) URL. Raises ValueError if malformed, of
    another scheme, or longer than MAX_URL_LENGTH."""
    if len(url) > 3 * MAX_URL_LENGTH:  # refused unparsed: a bound on the work per URL
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    parts = split_url(url.strip())
    scheme = parts.scheme
    if scheme not in _DEFAULT_PORTS:
        # The one gate every crawled URL passes: nothing but http(s) may reach the
        # frontier, the state file or a request line (file:, ftp:, gopher:, ws: ...).
        raise ValueError(f"scheme {scheme + ':' if scheme else 'missing'} is not crawled")
    if not parts.host:
        raise ValueError("no host")
    port = parts.port  # the userinfo is dropped: see shoal._url
    if port == 0:
        # A valid port number that no connection can be made to: refused here, when the
        # URL is found, rather than queued and failing on every run.
        raise ValueError("port 0 cannot be connected to")
    host = _host(parts.host)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    path = _normalize_escapes(parts.path, _PATH_SAFE) if parts.path else "/"
    if "/." in path:
        path = _remove_dot_segments(path)  # RFC 3986 6.2.2.3: /a/../b is /b
    query = _canonical_query(parts.query) if parts.query else ""
    result = f"{scheme}://{netloc}{path}?{query}" if query else f"{scheme}://{netloc}{path}"
    if len(result) > MAX_URL_LENGTH:
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    return result


_CANONICAL_TAIL = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~]*(\?[A-Za-z0-9/:@!$'()*+,;=\-._~&]*)?")


def _fast_canonical(origin: str, tail: str) -> str | None:
    """``origin + tail`` if that is already canonical, else None (the slow path decides).

    ``origin`` must be canonical; ``tail`` is a path with an optional query.
    """
    if not _CANONICAL_TAIL.fullmatch(tail) or "/." in tail or "?&" in tail or "&&" in tail:
        return None
    path, q, query = tail.partition("?")
    if q:
        if not query or query.endswith("&"):
            return None
        pairs = query.split("&")
        if any("=" not in p for p in pairs) or pairs != sorted(
            pairs, key=lambda p: p.split("=", 1)
        ):
            return None
    return origin + tail if path else None


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


# Process-wide caches here are safe to share between crawls and threads: each wraps a
# pure function of its arguments (a LinkResolver is never changed once built), is
# bounded, and lru_cache is thread-safe for concurrent calls (at worst two threads
# compute the same entry).
@lru_cache(maxsize=4096)
def _canonical_origin(raw: str) -> str | None:
    """``scheme://host[:port]`` made canonical; None if it is not a crawlable origin."""
    try:
        return canonicalize(raw + "/")[:-1]
    except ValueError:
        return None


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on an absolute path."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(out) > 1:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if path.endswith(("/.", "/..")):
        out.append("")
    joined = "/".join(out)
    return joined if joined.startswith("/") else "/" + joined


class Refused:
    """A page's http(s) links that no request could ever fetch (no host, port 0 or over
    65535, longer than MAX_URL_LENGTH...): how many, and the first, for the log."""

    __slots__ = ("count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, href: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = href


def _is_web_link(href: str) -> bool:
    """Does ``href`` mean an http(s) URL (absolute, scheme-relative or relative)? Not a
    fragment, nor a link of another scheme (mailto:, javascript:...)."""
    href = href.strip()
    if not href or href[0] == "#":
        return False
    m = _SCHEME.match(href)
    return m is None or href[: m.end() - 1].lower() in ("http", "https")


def why_refused(base: str, href: str) -> str:
    """Why ``href`` on a page at ``base`` cannot be fetched (for the log: not on the hot
    path)."""
    if len(href) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH} characters"
    href = href.strip()
    if href.startswith("//"):
        href = base[: base.find(":") + 1] + href
    # urljoin would lend an absolute URL with no host ("http:///x") the base's host.
    url = href if _SCHEME.match(href) else urljoin(base, href)
    try:
        canonicalize(url)
    except ValueError as exc:
        return str(exc)
    return "unusable URL"


class LinkResolver:
    """Resolves the links of one page against its (canonical) base URL.

    The general path (urljoin, then canonicalize) costs ~25 us a link; most links are
    root-relative, document-relative or absolute on a known origin, and for those this
    builds the canonical URL directly, falling back to the general path for anything
    unusual. ``refused``, if given, counts the http(s) links that resolve to nothing a
    request could fetch (a resolver that is shared, as the cached ones are, has none).
    """

    __slots__ = ("base", "directory", "origin", "path", "refused", "root", "scheme", "where")

    def __init__(self, base: str, refused: Refused | None = None) -> None:
        self.refused = refused
        self.base = base
        self.origin = host_key(base)
        self.scheme = base[: base.find(":")]
        self.path = base[len(self.origin) :].partition("?")[0] or "/"
        self.directory = self.path[: self.path.rfind("/") + 1]
        self.root = self.origin + "/"
        self.where = self.origin + self.directory

    def resolve(self, href: str) -> str | None:
        """The canonical absolute URL ``href`` points to, or None.

        Most hrefs resolve the same from every page in a directory (and root-relative
        ones from every page of the site), and the same links recur on page after page
        (navigation, footers), so results are cached by (directory, href).
        """
        if not href:
            return None
        if len(href) > MAX_URL_LENGTH:  # checked first: results are cached
            url = None
        else:
            first = href[0]
            if first == "?" or first.isspace():
                url = self._resolve(href)  # depends on the page's own name, or needs strip()
            else:
                url = _resolve_cached(self.root if first == "/" else self.where, href)
            if url is not None and len(url) <= MAX_URL_LENGTH:
                return url
        if self.refused is not None and _is_web_link(href):
            self.refused.add(href)
        return None

    def _resolve(self, href: str) -> str | None:
        href = href.strip()
        if not href or href[0] == "#":
            return None
        hash_at = href.find("#")
        if hash_at > 0:
            href = href[:hash_at]
        first = href[0]
        if first == "/":
            if href.startswith("//"):
                return self._absolute(f"{self.scheme}:{href}")
            return self._finish(self.origin, href)
        if first == "?":
            return self._finish(self.origin, self.path + href)
        if _SCHEME.match(href):
            scheme = href[: href.find(":")].lower()
            if scheme not in ("http", "https"):
                return None  # mailto:, javascript:, tel:, data:, ftp: ...
            return self._absolute(href)
        return self._finish(self.origin, self.directory + href)

    def _absolute(self, url: str) -> str | None:
        start = url.find("//")
        if start < 0 or start != url.find(":") + 1:
            return _general(self.base, url)  # "http:path" and other oddities
        end = len(url)
        for stop in "/?\\":
            pos = url.find(stop, start + 2)
            if 0 <= pos < end:
                end = pos
        origin = _canonical_origin(url[:end])
        if origin is None:
            return None
        tail = url[end:] or "/"
        if tail[0] != "/":
            return _general(self.base, url)
        return self._finish(origin, tail)

    def _finish(self, origin: str, tail: str) -> str | None:
        path, q, query = tail.partition("?")
        if "/." in path:
            path = _remove_dot_segments(path)
            tail = f"{path}?{query}" if q else path
        fast = _fast_canonical(origin, tail)
        if fast is not None:
            return fast
        try:
            return canonicalize(origin + tail)
        except ValueError:
            return None


# ~300 bytes an entry: 16k entries cost ~5 MB, a fixed price for skipping most resolving.
# Shared process-wide: safe for the reasons given at _canonical_origin.
@lru_cache(maxsize=1 << 14)
def _resolve_cached(where: str, href: str) -> str | None:
    return _resolver(where)._resolve(href)


@lru_cache(maxsize=1024)  # shared process-wide: see _canonical_origin
def _resolver(where: str) -> LinkResolver:
    return LinkResolver(where)


def _general(base: str, href: str) -> str | None:
    try:
        absolute = urljoin(base, href)
        if absolute.split(":", 1)[0].lower() not in ("http", "https"):
            return None
        return canonicalize(absolute)
    except ValueError:
        return None


def join_url(base: str, href: str) -> str | None:
    """Resolve a link against a canonical base URL and canonicalize it; None for anything
    uncrawlable (other schemes, fragments only, malformed)."""
    return LinkResolver(base).resolve(href)


def parse_start_url(url: str) -> str:
    """Validate a URL given by a user and return it canonical; raise InvalidURL if unusable."""
    raw = url.strip()
    if not raw:
        raise InvalidURL(url, "empty")
    if "://" not in raw:
        hint = suggest_url(raw)
        hint = redact_userinfo(hint) if hint else hint
        raise InvalidURL(url, f"no scheme (did you mean {hint} ?)" if hint else "no scheme")
    scheme = raw.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(url, f"unsupported scheme {scheme!r}; only http and https are crawled")
    try:
        return canonicalize(raw)
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None


def refuse_credentials(url: str) -> None:
    """Refuse a start URL that carries credentials (``http://user:pw@host/``): curl and
    wget send them as Basic auth, shoal would drop them (and crawl as nobody, in
    silence). The URL is shown without its password."""
    if split_url(url.strip()).userinfo:
        shown = _braces(repr(redact_userinfo(url.strip())))
        raise OptionError(
            "auth",
            f"the start URL {shown} holds credentials (USER:PASSWORD@), which shoal does not "
            "send from a URL: give them with {auth} (sent only to the start URLs' origins)",
        )


# "http//host", "http:/host", "https:host", "http///host": a scheme whose "://" was mistyped.
_MISTYPED_SCHEME = re.compile(r"(https?)(?::/|/{1,3}|:(?=[A-Za-z]))(?=[^/])(.*)", re.I | re.S)
# "example.com/path", "localhost:8000": a host (and port) with the scheme left out.
_BARE_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*(:[0-9]{1,5})?([/?].*)?", re.S)


def suggest_url(raw: str) -> str | None:
    """The URL a user who typed ``raw`` (no "://") most likely meant, or None.

    A suggestion is made only when it is a crawlable URL with a plausible host, so
    ``http//host/`` gets ``http://host/`` (never ``http://http//host/``) and ``/path``
    gets nothing.
    """
    m = _MISTYPED_SCHEME.fullmatch(raw)
    if m:
        candidate = f"{m.group(1).lower()}://{m.group(2)}"
    elif "//" not in raw and _BARE_HOST.fullmatch(raw):
        candidate = "http://" + raw
    else:
        return None
    try:
        canonicalize(candidate)
    except ValueError:
        return None
    host = split_url(candidate).host
    if host in ("", "http", "https") or not (_BARE_HOST.fullmatch(host) or ":" in host):
        return None
    return candidate


_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.I)


def _is_ip_like(host: str) -> bool:
    """An IPv6 literal, or a host whose last label is a number: resolvers read "127.1"
    and "0x7f.1" as IPv4 addresses (as the WHATWG URL standard does), and no DNS name
    ends in a number, so these must never match a domain suffix."""
    if ":" in host:
        return True
    return _NUMERIC_LABEL.fullmatch(host.rstrip(".").rpartition(".")[2]) is not None


def _braces(text: str) -> str:
    """``text`` made safe in an OptionError template (whose ``{name}`` are options)."""
    return text.replace("{", "{{").replace("}", "}}")


def _domain_of(url: str) -> str:
    return split_url(url).host


def url_path(url: str) -> str:
    """The path of a canonical URL (what ``include_glob``/``exclude_glob`` match)."""
    start = url.find("/", url.find("//") + 2)
    if start < 0:
        return "/"
    end = url.find("?", start)
    return url[start:] if end < 0 else url[start:end]


@dataclass
class Scope:
    """Which URLs a crawl may fetch.

    A URL is in scope when its host is one of ``domains`` or below one of them (a leading
    "www." on a start URL also admits the bare domain), it matches every ``include`` pattern
    list (any one of them) and none of ``exclude``, and its depth is within ``max_depth``.
    ``include``/``exclude`` are regexes searched in the whole URL; ``include_glob``/
    ``exclude_glob`` are shell globs matched against the URL's path (``*.html``, ``/docs/*``).
    """

    domains: Sequence[str]
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    max_depth: int | None = None
    include_glob: Sequence[str] = ()
    exclude_glob: Sequence[str] = ()
    _include: list[re.Pattern[str]] = field(init=False, repr=False)
    _exclude: list[re.Pattern[str]] = field(init=False, repr=False)
    _suffixes: tuple[str, ...] = field(init=False, repr=False)
    _exact: frozenset[str] = field(init=False, repr=False)
    _origin_allowed: Callable[[str], bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._include = [re.compile(p) for p in self.include]
            self._exclude = [re.compile(p) for p in self.exclude]
        except re.error as exc:
            from .._errors import UsageError

            raise UsageError(f"bad include/exclude regex: {exc}") from None
        domains = {d.lower().strip(".").strip("[]") for d in self.domains if d}
        self._exact = frozenset(domains)
        self._suffixes = tuple("." + d for d in domains)
        self._origin_allowed = lru_cache(maxsize=4096)(self._check_origin)

    @classmethod
    def for_start_urls(
        cls,
        start_urls: Iterable[str],
        *,
        allow_domains: Iterable[str] = (),
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        max_depth: int | None = None,
        include_glob: Sequence[str] = (),
        exclude_glob: Sequence[str] = (),
    ) -> Scope:
        domains = list(allow_domains)
        if not domains:
            for url in start_urls:
                host = _domain_of(url)
                domains.append(host.removeprefix("www."))
        return cls(domains, include, exclude, max_depth, include_glob, exclude_glob)

    def allows_host(self, host: str) -> bool:
        host = host.strip("[]")
        if host in self._exact:
            return True
        # An IP address is matched exactly: "--allow-domain 1.1" must not admit 127.0.1.1.
        return not _is_ip_like(host) and host.endswith(self._suffixes)

    def allows(self, url: str, depth: int = 0) -> bool:
        """Is a canonical URL at ``depth`` in scope? Only http(s) URLs ever are."""
        if self.max_depth is not None and depth > self.max_depth:
            return False
        if not self._origin_allowed(host_key(url)):
            return False
        if self._include and not any(p.search(url) for p in self._include):
            return False
        if any(p.search(url) for p in self._exclude):
            return False
        if self.include_glob or self.exclude_glob:
            path = url_path(url)
            if self.include_glob and not any(fnmatchcase(path, g) for g in self.include_glob):
                return False
            return not any(fnmatchcase(path, g) for g in self.exclude_glob)
        return True

    def check_start_url(self, url: str) -> None:
        """Refuse (OptionError, naming the option) a canonical start URL that this scope
        shuts out: one outside ``allow_domains``, or matched by ``exclude`` or
        ``exclude_glob``. Crawling from it would fetch that one page and follow nothing,
        with no word of why. Not matching ``include``/``include_glob`` is allowed: a start
        page is often the hub whose links lead to what is included (start URLs are
        fetched whatever those say)."""
        shown = _braces(repr(url if len(url) <= 200 else url[:200] + "..."))
        if not self._origin_allowed(host_key(url)):
            host = _braces(split_url(url).host)
            domains = _braces(", ".join(self.domains))
            raise OptionError(
                "allow_domains",
                f"the start URL {shown} is outside the crawl's scope: its host {host} is not "
                f"within {{allow_domains}} {domains} (add {{allow_domains}} {host}, or check "
                "the spelling)",
            )
        for pattern, regex in zip(self.exclude, self._exclude, strict=True):
            if regex.search(url):
                raise OptionError(
                    "exclude",
                    f"the start URL {shown} is excluded by {{exclude}} " + _braces(repr(pattern)),
                )
        path = url_path(url)
        for glob in self.exclude_glob:
            if fnmatchcase(path, glob):
                raise OptionError(
                    "exclude_glob",
                    f"the start URL {shown} is excluded by {{exclude_glob}} "
                    + _braces(f"{glob!r} (its path {path!r} matches)"),
                )

    def allows_at(self, depth: int) -> Callable[[str], bool]:
        """``allows`` for URLs found at one depth: a predicate for the frontier."""
        if self.max_depth is not None and depth > self.max_depth:
            return lambda url: False
        if not (self._include or self._exclude or self.include_glob or self.exclude_glob):
            origin_allowed = self._origin_allowed
            return lambda url: origin_allowed(host_key(url))
        return lambda url: self.allows(url, depth)

    def _check_origin(self, origin: str) -> bool:
        if not origin.startswith(("http://", "https://")):
            return False
        try:
            parts: URLParts = split_url(origin)
        except ValueError:
            return False
        return self.allows_host(parts.host)
