"""The crawl's cookie jar: RFC 6265 (section 5) storage and matching, bounded.

Not ``http.cookiejar``: its rules are Netscape's and RFC 2965's (a Domain attribute
matched with dots added or stripped, "effective request-host" for dotless names,
public suffixes guessed from the shape of the name), and a crawler of hostile servers
needs 6265's algorithm as written plus a public suffix list. What is taken:

- Set-Cookie is parsed by 6265's algorithm (5.2): ``name=value`` then attributes; Expires
  (the 5.1.1 date algorithm; a date it cannot read is ignored), Max-Age (wins over
  Expires), Domain, Path, Secure, HttpOnly. SameSite is ignored: every request a crawler
  makes is its own top-level navigation.
- Domain (5.3): a host may set a cookie for itself (host-only) or for a domain it is in,
  never for a public suffix (``co.uk``, ``github.io``; the list of the ``publicsuffixlist``
  package, bundled, loaded on the first cookie) unless that suffix is the host itself
  (then host-only). An IP address host only ever gets host-only cookies. Ports are
  ignored, as 6265 says.
- As browsers do (RFC 6265bis): a Secure cookie only from https and only sent over https;
  ``__Secure-`` and ``__Host-`` prefixes held to their rules; an expiry at most 400 days
  ahead; a name or value with a control character is refused.
- Bounds, as browsers': a cookie's name and value at most 4096 bytes, a Set-Cookie line
  at most 8192, at most 180 cookies per site (registrable domain) and 3000 in all; past
  a bound the oldest cookie goes (expired ones first). A request's Cookie header holds
  at most 64 KB of them (the longest paths, then the oldest, first).

Cookies are sent only where 6265 says (domain, path, Secure, expiry). The jar keeps what
changed since it was last asked (:meth:`CookieJar.changes`), so the crawl state stores
only changes; a jar with no cookie costs one truth test per request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._errors import UsageError
from .._url import split_url

__all__ = [
    "MAX_COOKIE_BYTES",
    "MAX_COOKIES",
    "MAX_COOKIES_PER_SITE",
    "Cookie",
    "CookieJar",
    "FetchCookies",
    "read_cookies_file",
    "with_cookie",
]

MAX_COOKIE_BYTES = 4096  # name + value, as browsers count
MAX_SET_COOKIE = 8192  # a longer Set-Cookie line is ignored before it is parsed
MAX_COOKIES_PER_SITE = 180
MAX_COOKIES = 3000
MAX_COOKIE_HEADER = 64 * 1024  # a request's Cookie header: the first cookies up to this
MAX_ATTRIBUTE = 1024  # a longer Domain or Path value is ignored (6265bis)
MAX_AGE = 400 * 86400  # an expiry is capped at 400 days ahead (6265bis)
_NETSCAPE_HEADER = "# Netscape HTTP Cookie File"
# In CookieJar.changes(): a cookie removed because it expired (not because a server or a
# bound removed it): a shared state keeps a later copy another worker stored.
EXPIRED = ""

# A cookie-octet-ish check: no control character but HTAB (6265bis 5.6 step 4).
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# 5.1.1: the date's tokens are separated by these delimiters.
_DATE_DELIMS = re.compile(r"[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+")
_TIME = re.compile(r"(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\D.*)?$")
_DAY = re.compile(r"(\d{1,2})(?:\D.*)?$")
_YEAR = re.compile(r"(\d{2,4})(?:\D.*)?$")
_MAX_AGE = re.compile(r"-?[0-9]+")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


@dataclass(slots=True)
class Cookie:
    """One stored cookie (6265 5.3). ``domain`` is lower-case, without a leading dot;
    ``expires`` is a Unix time (None: ends with the crawl's session, which for a crawl
    kept in a state file is the crawl, resumes included)."""

    name: str
    value: str
    domain: str
    path: str = "/"
    host_only: bool = True
    secure: bool = False
    http_only: bool = False
    expires: float | None = None
    created: float = 0.0
    # When a response last set it (Unix time): of two copies of one cookie (two workers'
    # of a shared jar), the one set later is the current one.
    last_set: float = 0.0

    @property
    def key(self) -> str:
        """The stored identity (6265: name, domain and path), as the crawl state keys it."""
        return f"{self.domain}\t{self.path}\t{self.name}"

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> Cookie:
        return cls(**json.loads(text))


_psl: Any = None
_psl_lock = threading.Lock()


def _public_suffixes() -> Any:
    """The public suffix list, loaded once (~0.1 s) by the first cookie that needs it."""
    global _psl
    if _psl is None:
        with _psl_lock:
            if _psl is None:
                from publicsuffixlist import PublicSuffixList

                _psl = PublicSuffixList()
    return _psl


def is_public_suffix(domain: str) -> bool:
    return bool(_public_suffixes().is_public(domain))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _site(domain: str) -> str:
    """What the per-site bound counts by: the registrable domain (or the name itself)."""
    if _is_ip(domain):
        return domain
    return str(_public_suffixes().privatesuffix(domain) or domain)


def domain_match(host: str, domain: str) -> bool:
    """6265 5.1.3: ``host`` is ``domain`` or a name under it (never for an IP address)."""
    if host == domain:
        return True
    return host.endswith(domain) and host[-len(domain) - 1] == "." and not _is_ip(host)


def path_match(request_path: str, cookie_path: str) -> bool:
    """6265 5.1.4."""
    if request_path == cookie_path:
        return True
    if not request_path.startswith(cookie_path):
        return False
    return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"


def default_path(path: str) -> str:
    """6265 5.1.4: the directory of the request's path."""
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rindex("/")]


def parse_cookie_date(text: str) -> float | None:
    """6265 5.1.1: a Unix time, or None for a date the algorithm does not accept."""
    found_time = found_day = found_month = found_year = False
    hour = minute = second = day = month = year = 0
    for token in _DATE_DELIMS.split(text[:256])[:32]:
        if not token:
            continue
        if not found_time and (m := _TIME.match(token)):
            found_time = True
            hour, minute, second = (int(g) for g in m.groups())
        elif not found_day and (m := _DAY.match(token)):
            found_day, day = True, int(m.group(1))
        elif not found_month and token[:3].lower() in _MONTHS:
            found_month, month = True, _MONTHS.index(token[:3].lower()) + 1
        elif not found_year and (m := _YEAR.match(token)):
            found_year, year = True, int(m.group(1))
    if not (found_time and found_day and found_month and found_year):
        return None
    if 70 <= year <= 99:
        year += 1900
    elif 0 <= year <= 69:
        year += 2000
    if not 1 <= day <= 31 or year < 1601 or hour > 23 or minute > 59 or second > 59:
        return None
    import calendar  # here: a crawl that gets no cookie never loads it

    try:
        return float(calendar.timegm((year, month, day, hour, minute, second)))
    except (OverflowError, ValueError):
        return None


def parse_set_cookie(line: str, now: float) -> Cookie | None:
    """The cookie one Set-Cookie value describes, its domain and path as given (empty:
    none given), or None for a line 6265 ignores. ``expires`` is relative to ``now``."""
    if len(line) > MAX_SET_COOKIE:
        return None
    pair, _, rest = line.partition(";")
    name, eq, value = pair.partition("=")
    if not eq:
        return None  # 6265 5.2 step 3 (6265bis would take a nameless cookie)
    name, value = name.strip(" \t"), value.strip(" \t")
    if not name or _CTL.search(name) or _CTL.search(value):
        return None
    if (
        len(name.encode("utf-8", "surrogateescape")) + len(value.encode("utf-8", "surrogateescape"))
        > MAX_COOKIE_BYTES
    ):
        return None
    cookie = Cookie(name, value, domain="", path="", created=now, last_set=now)
    max_age: float | None = None
    expires: float | None = None
    for attribute in rest.split(";")[:64]:
        key, _, val = attribute.partition("=")
        key, val = key.strip(" \t").lower(), val.strip(" \t")
        if key == "expires":
            when = parse_cookie_date(val)
            if when is not None:
                expires = when
        elif key == "max-age":
            if _MAX_AGE.fullmatch(val):
                seconds = int(val) if len(val) < 19 else (-1 if val[0] == "-" else MAX_AGE)
                max_age = now + seconds if seconds > 0 else 0.0
        elif key == "domain":
            if val and len(val) <= MAX_ATTRIBUTE:
                cookie.domain = val.removeprefix(".").lower()
        elif key == "path":
            if val.startswith("/") and len(val) <= MAX_ATTRIBUTE:
                cookie.path = val
            else:
                cookie.path = ""  # 5.2.4: the last Path attribute wins, a bad one as none
        elif key == "secure":
            cookie.secure = True
        elif key == "httponly":
            cookie.http_only = True
    cookie.expires = max_age if max_age is not None else expires
    if cookie.expires is not None and cookie.expires > now + MAX_AGE:
        cookie.expires = now + MAX_AGE
    return cookie


class CookieJar:
    """Thread-safe. Every worker asks it for a request's Cookie header and hands it the
    Set-Cookie values each response carries."""

    def __init__(self, *, clock: Any = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._all: dict[str, Cookie] = {}  # key -> cookie, oldest first
        self._by_domain: dict[str, dict[str, Cookie]] = {}
        self._by_site: dict[str, dict[str, Cookie]] = {}
        # What changed since changes() was last called: key -> cookie, None (removed) or
        # EXPIRED (removed because it expired: see changes()).
        self._changed: dict[str, Cookie | str | None] = {}
        self.dirty = False  # read without the lock on the hot path: a hint
        # The expiry the state holds for each cookie, as far as this jar knows (what it
        # loaded or last handed over): a refreshed expiry is stored again once it moved
        # far enough from this.
        self._stored_expiry: dict[str, float | None] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Cookie]:
        with self._lock:
            return iter(list(self._all.values()))

    # -- sending -----------------------------------------------------------------------

    def header_for(self, url: str) -> str | None:
        """The Cookie header for a request of ``url`` (canonical http(s)), or None."""
        if not self._all:
            return None
        parts = split_url(url)
        host, path, secure = parts.host.lower(), parts.path or "/", parts.scheme == "https"
        now = self._clock()
        found: list[Cookie] = []
        expired: list[Cookie] = []
        ip = _is_ip(host)
        with self._lock:
            domain = host
            while True:
                stored = self._by_domain.get(domain)
                if stored:
                    for cookie in stored.values():
                        if cookie.expires is not None and cookie.expires <= now:
                            expired.append(cookie)
                        elif (
                            (not cookie.host_only or domain == host)
                            and (secure or not cookie.secure)
                            and path_match(path, cookie.path)
                        ):
                            found.append(cookie)
                dot = domain.find(".")
                if dot < 0 or ip:
                    break
                domain = domain[dot + 1 :]
            for cookie in expired:
                self._remove(cookie, expired=True)
        if not found:
            return None
        # 5.4 step 2: longer paths first, then the earlier made.
        found.sort(key=lambda c: (-len(c.path), c.created))
        pairs, size = [], 0
        for c in found:
            pair = f"{c.name}={c.value}"
            if not pair.isascii():
                pair = _octets(pair)
            size += len(pair) + 2
            if size > MAX_COOKIE_HEADER:
                break  # what a site stored up to the bounds would be a 700 KB header
            pairs.append(pair)
        return "; ".join(pairs) or None

    # -- receiving ---------------------------------------------------------------------

    def receive(self, url: str, set_cookie: str) -> bool:
        """Store what the Set-Cookie values (joined by newlines, as a Response's headers
        hold them) of a response to ``url`` set; True when the cookies sent from now on
        change (a cookie added, its value changed, or one removed)."""
        parts = split_url(url)
        host, secure = parts.host.lower(), parts.scheme == "https"
        now = self._clock()
        changed = False
        for line in set_cookie.split("\n")[:200]:
            cookie = parse_set_cookie(line, now)
            if cookie is None or not self._admit(cookie, host, parts.path or "/", secure):
                continue
            with self._lock:
                if not secure and self._shadows_secure(cookie):
                    continue
                changed = self._store(cookie, now) or changed
        return changed

    def _admit(self, cookie: Cookie, host: str, path: str, secure: bool) -> bool:
        """6265 5.3 steps 4-11 (and 6265bis' Secure and prefix rules): fill in the
        cookie's domain and path, or refuse it."""
        if cookie.secure and not secure:
            return False  # 6265bis 5.6 step 8: only a secure origin sets a Secure cookie
        given = cookie.domain
        if given:
            if is_public_suffix(given):
                if given != host:
                    return False  # never for co.uk, github.io, com ...
                given = ""
            elif not domain_match(host, given):
                return False
        if given and not _is_ip(host):
            cookie.domain, cookie.host_only = given, False
        else:
            cookie.domain, cookie.host_only = host, True
        if not cookie.path:
            cookie.path = default_path(path)
        # 6265bis 4.1.3: the prefixes are matched whatever their case (a server that
        # sets __HOST-x is held to __Host- rules, as browsers do).
        name = cookie.name[:9].lower()
        if name.startswith("__secure-") and not cookie.secure:
            return False
        host_rules = cookie.secure and cookie.host_only and cookie.path == "/"
        return host_rules or not name.startswith("__host-")

    def _shadows_secure(self, cookie: Cookie) -> bool:
        """Under the lock: 6265bis 5.7 step 16. A response over http may not set (nor
        remove) a cookie of a Secure cookie's name whose domain and path overlap it:
        otherwise a plain-http page (anyone on the path) overwrites an https session."""
        name = cookie.name
        for other in self._by_site.get(_site(cookie.domain), {}).values():
            if (
                other.secure
                and other.name == name
                and (
                    domain_match(other.domain, cookie.domain)
                    or domain_match(cookie.domain, other.domain)
                )
                and path_match(cookie.path, other.path)
            ):
                return True
        return False

    def _store(self, cookie: Cookie, now: float) -> bool:
        """Under the lock: 5.3 steps 11-12, then the bounds."""
        key = cookie.key
        old = self._all.get(key)
        if cookie.expires is not None and cookie.expires <= now:
            if old is None:
                return False
            self._remove(old)
            return True
        if old is not None:
            cookie.created = old.created
            self._remove(old, noted=False)
        self._add(cookie)
        if old is None or self._differs(old, cookie, now):
            self._note(cookie)
        self._bound(cookie)
        return old is None or old.value != cookie.value

    def _differs(self, old: Cookie, new: Cookie, now: float) -> bool:
        """Whether the state must store ``new`` over ``old``. A server that sets the same
        cookie with Max-Age on every page (a rolling session) moves only its expiry,
        which is stored again once it has moved a quarter of the cookie's lifetime (an
        hour at most): the state is written on a change, not on every page, and what it
        holds never lags more than that behind, so a resume or another worker finds the
        session alive while the server still has it."""
        if (old.value, old.secure, old.http_only, old.host_only) != (
            new.value,
            new.secure,
            new.http_only,
            new.host_only,
        ):
            return True
        stored = self._stored_expiry.get(new.key, old.expires)
        if stored is None or new.expires is None:
            return stored is not new.expires
        return abs(new.expires - stored) >= min(3600.0, (new.expires - now) / 4)

    def _note(self, cookie: Cookie) -> None:
        """Under the lock: the state must store ``cookie``."""
        self._changed[cookie.key] = cookie
        self._stored_expiry[cookie.key] = cookie.expires
        self.dirty = True

    def _add(self, cookie: Cookie) -> None:
        key = cookie.key
        self._all[key] = cookie
        self._by_domain.setdefault(cookie.domain, {})[key] = cookie
        self._by_site.setdefault(_site(cookie.domain), {})[key] = cookie

    def _remove(self, cookie: Cookie, *, noted: bool = True, expired: bool = False) -> None:
        """Under the lock. ``noted``: the state must remove it too (else it is being
        replaced, or the state knows already); ``expired``: it goes because it expired."""
        key = cookie.key
        if self._all.pop(key, None) is None:
            return
        for index, group in (
            (self._by_domain, cookie.domain),
            (self._by_site, _site(cookie.domain)),
        ):
            stored = index.get(group)
            if stored is not None:
                stored.pop(key, None)
                if not stored:
                    del index[group]
        if noted:
            self._stored_expiry.pop(key, None)
            self._changed[key] = EXPIRED if expired else None
            self.dirty = True

    def _bound(self, added: Cookie) -> None:
        """The per-site and total bounds: expired cookies go first, then the oldest."""
        site = self._by_site.get(_site(added.domain), {})
        if len(site) > MAX_COOKIES_PER_SITE:
            self._evict(site, MAX_COOKIES_PER_SITE)
        if len(self._all) > MAX_COOKIES:
            self._evict(self._all, MAX_COOKIES)

    def _evict(self, group: dict[str, Cookie], keep: int) -> None:
        now = self._clock()
        for cookie in [c for c in group.values() if c.expires is not None and c.expires <= now]:
            self._remove(cookie, expired=True)
        while len(group) > keep:
            self._remove(next(iter(group.values())))

    # -- loading, saving and the crawl state ---------------------------------------------

    def add(self, cookies: Iterable[Cookie], *, noted: bool = True) -> None:
        """Put cookies in as they are (from a cookies file or the crawl state), the
        bounds kept. ``noted=False``: they are what the state holds already."""
        now = self._clock()
        with self._lock:
            for cookie in cookies:
                if cookie.expires is not None and cookie.expires <= now:
                    continue
                old = self._all.get(cookie.key)
                if old is not None:
                    self._remove(old, noted=False)
                self._add(cookie)
                if noted:
                    self._note(cookie)
                else:
                    self._stored_expiry[cookie.key] = cookie.expires
                self._bound(cookie)

    def changes(self) -> list[tuple[str, str | None]]:
        """What changed since the last call, as the crawl state stores it: (key, the
        cookie as JSON; None: removed; EXPIRED, the empty string: removed because it
        expired here, which a shared state does only if its own copy has expired too,
        as another worker may have stored a later one)."""
        with self._lock:
            changed, self._changed = self._changed, {}
            self.dirty = False
        return [(key, c.dumps() if isinstance(c, Cookie) else c) for key, c in changed.items()]

    def settle(self) -> None:
        """Note every cookie whose expiry moved since the state last stored it (the
        crawl ends: the next run starts from the expiries the server last gave)."""
        with self._lock:
            for key, cookie in self._all.items():
                if key in self._changed:
                    continue
                if key not in self._stored_expiry or self._stored_expiry[key] != cookie.expires:
                    self._note(cookie)

    def replace_all(self, cookies: Iterable[Cookie]) -> None:
        """Merge another worker's view of a shared jar: the jar becomes ``cookies``,
        except that what this jar changed and has not handed over yet stays, and so does
        a cookie this jar holds a later copy of (one set again since, whose expiry moved
        less than was worth storing). A copy that has expired is not taken: that
        cookie is gone here too, and as the shared jar may hold a later copy by now,
        its removal is not handed back."""
        now = self._clock()
        with self._lock:
            pending = self._changed
            shared = {c.key: c for c in cookies}
            for cookie in list(self._all.values()):
                if cookie.key not in pending and cookie.key not in shared:
                    # Another worker removed it.
                    self._remove(cookie, noted=False)
                    self._stored_expiry.pop(cookie.key, None)
            for key, cookie in shared.items():
                if key in pending:
                    continue
                old = self._all.get(key)
                if old is not None and (old.last_set, old.expires or 0.0) >= (
                    cookie.last_set,
                    cookie.expires or 0.0,
                ):
                    # Ours is as new or newer: the state holds the older copy, which
                    # another worker may have written over ours; hand ours over again
                    # if it differs from that as much as a change would.
                    self._stored_expiry[key] = cookie.expires
                    if self._differs(cookie, old, now):
                        self._note(old)
                    continue
                if old is not None:
                    self._remove(old, noted=False)
                if cookie.expires is not None and cookie.expires <= now:
                    self._stored_expiry.pop(key, None)
                    continue
                self._add(cookie)
                self._stored_expiry[key] = cookie.expires
                # Workers' jars together may hold more than one may: what this one drops
                # is removed from the shared jar too.
                self._bound(cookie)

    def save(self, path: str) -> int:
        """Write every unexpired cookie to ``path`` as a Netscape cookies.txt (what curl
        and wget read), atomically, readable by its owner only; the count written. Names
        and values are written as the octets they were received as (a cookies.txt is
        bytes, as curl writes it)."""
        now = self._clock()
        with self._lock:
            cookies = [c for c in self._all.values() if c.expires is None or c.expires > now]
        lines = [
            _NETSCAPE_HEADER,
            "# Written by shoal. The values are secrets (sessions, logins): keep it private.",
            "",
        ]
        for c in cookies:
            domain = ("#HttpOnly_" if c.http_only else "") + _octets(
                c.domain if c.host_only else "." + c.domain
            )
            lines.append(
                "\t".join(
                    (
                        domain,
                        "FALSE" if c.host_only else "TRUE",
                        _octets(c.path),
                        "TRUE" if c.secure else "FALSE",
                        str(int(c.expires) if c.expires is not None else 0),
                        _octets(c.name),
                        _octets(c.value),
                    )
                )
            )
        import tempfile

        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(("\n".join(lines) + "\n").encode("latin-1"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return len(cookies)


def _octets(text: str) -> str:
    """``text`` as a header carries it, one character per octet (latin-1). What the jar
    receives is that already (HTTP fields are read as latin-1, so a server's raw UTF-8
    goes back byte for byte); a value with a character past U+00FF (a state written by
    an older shoal from a UTF-8 cookies.txt) is sent as its UTF-8 octets, never as an
    error on every request."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "replace")
        return raw.decode("latin-1")
    return text


class FetchCookies:
    """One fetch's view of the jar, handed to the fetcher with the request: the Cookie
    header for each hop, and the Set-Cookie of each response. ``changed`` says whether
    the last response changed what is sent; :meth:`resends` whether a redirect back to a
    URL of the chain is then a new request of it (a consent wall), not a loop."""

    __slots__ = ("_sent", "changed", "jar")

    def __init__(self, jar: CookieJar) -> None:
        self.jar = jar
        self.changed = False
        self._sent: dict[str, str | None] = {}  # url -> the Cookie header last sent to it

    def header(self, url: str) -> str | None:
        cookie = self.jar.header_for(url)
        self._sent[url] = cookie
        return cookie

    def received(self, url: str, set_cookie: str | None) -> None:
        self.changed = bool(set_cookie) and self.jar.receive(url, set_cookie or "")

    def resends(self, url: str) -> bool:
        """Whether the last response changed the cookies a request of ``url`` carries:
        a cookie set for another path or host than ``url`` does not make a redirect
        back to it anything but a loop."""
        return self.changed and self.jar.header_for(url) != self._sent.get(url)


def with_cookie(headers: Mapping[str, str], cookie: str) -> dict[str, str]:
    """``headers`` with the jar's ``cookie`` added: after a Cookie header already there
    (one the user gave for this request), in one field, as RFC 6265 5.4 wants."""
    out = dict(headers)
    for name, given in headers.items():
        if name.lower() == "cookie":
            out[name] = f"{given}; {cookie}"
            return out
    out["Cookie"] = cookie
    return out


def read_cookies_file(path: str, *, clock: Any = time.time) -> list[Cookie]:
    """The unexpired cookies of a Netscape cookies.txt (curl -c, wget --save-cookies,
    browser exporters; ``#HttpOnly_`` lines included). A line that is not one is a
    UsageError naming the file and line; so is a cookie for a public suffix with its
    subdomains (it would go to every site under it), a name or value that would go out
    as another cookie (``;``, a name with ``=``), and a domain or path not in ASCII.

    The file is read as bytes, and a name or value is sent as the octets the file holds
    (what curl does, and what a browser whose cookies were exported sent): a UTF-8
    value goes out as its UTF-8 bytes, as a server that set it expects."""
    return _parse_cookies_file(path, clock)[0]


_FILE_HEADERS = ("# netscape http cookie file", "# http cookie file")


def _parse_cookies_file(path: str, clock: Any = time.time) -> tuple[list[Cookie], bool]:
    """The file's unexpired cookies, and whether it is a cookies.txt: it has the header
    line curl, wget and shoal write, or a cookie line (expired or not)."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024 * 1024 + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the cookies file {path}: {exc.strerror or exc}") from None
    if len(data) > 64 * 1024 * 1024:
        raise UsageError(f"the cookies file {path} is over 64 MB: not a cookies.txt")
    # One character per octet: a value goes out as the file's bytes (see _octets).
    text = data.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    now = clock()
    cookies: list[Cookie] = []
    known = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip("\r")
        http_only = line.startswith("#HttpOnly_")
        if http_only:
            line = line[len("#HttpOnly_") :]
        elif not line.strip() or line.lstrip().startswith("#"):
            known = known or line.lower().startswith(_FILE_HEADERS)
            continue
        fields = line.split("\t")
        if len(fields) == 6:
            fields.append("")  # an empty value: some writers drop the last tab
        where = f"{path} line {number}"
        if len(fields) != 7:
            raise UsageError(
                f"{where}: not a Netscape cookies.txt line (want 7 tab-separated fields: "
                f"domain, subdomains TRUE/FALSE, path, secure TRUE/FALSE, expiry, name, value; "
                f"got {len(fields)})"
            )
        domain, sub, cpath, secure, expiry, name, value = fields
        if sub not in ("TRUE", "FALSE") or secure not in ("TRUE", "FALSE"):
            raise UsageError(f"{where}: the 2nd and 4th fields must be TRUE or FALSE")
        try:
            expires = int(expiry)
        except ValueError:
            raise UsageError(f"{where}: the expiry {expiry[:40]!r} is not a Unix time") from None
        # A domain as a URL's host is matched: lower case, no leading or trailing dot.
        host = domain.removeprefix(".").removesuffix(".").lower()
        if not host or not name or _CTL.search(name + value) or not cpath.startswith("/"):
            raise UsageError(f"{where}: a cookie needs a domain, a name and a path starting '/'")
        if ";" in name + value or "=" in name:
            raise UsageError(
                f"{where}: the cookie {name[:40]!r} has ';' in its value (or '=' or ';' in "
                "its name): it would go out as more than one cookie"
            )
        if not (host.isascii() and cpath.isascii()):
            raise UsageError(
                f"{where}: the domain and path must be ASCII, as in a URL (an "
                "international domain in its xn-- form, a path %-encoded)"
            )
        known = True
        host_only = sub == "FALSE" and not domain.startswith(".")
        if _is_ip(host.strip("[]")):
            host, host_only = host.strip("[]"), True
        elif not host_only and is_public_suffix(host):
            raise UsageError(
                f"{where}: a cookie for the public suffix {host!r} and its subdomains would "
                "be sent to every site under it: refused"
            )
        when = float(expires) if expires > 0 else None
        if when is not None and when <= now:
            continue  # expired: curl and wget skip these too
        cookies.append(
            Cookie(
                name,
                value,
                host,
                cpath,
                host_only=host_only,
                secure=secure == "TRUE",
                http_only=http_only,
                expires=when,
                created=now + number * 1e-6,  # the file's order, for equal paths
                last_set=now,
            )
        )
    return cookies, known


def check_save_path(path: str) -> None:
    """``save_cookies``: refuse, before the crawl, a path it could not write or one that
    holds a file that is not a cookies.txt (shoal never replaces another file). An empty
    file may go (nothing is lost); any other must have the cookies.txt header line or a
    cookie line: a file of comments (a script) is not one."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot save cookies to {path}: {parent} is not a directory")
    if target.exists():
        if not target.is_file():
            raise UsageError(f"cannot save cookies to {path}: not a regular file")
        if target.stat().st_size:
            try:
                known = _parse_cookies_file(path)[1]
            except UsageError:
                known = False
            if not known:
                raise UsageError(
                    f"{path} exists and is not a cookies.txt: shoal will not replace it "
                    "with --save-cookies (remove it or name another file)"
                ) from None


class CookieSync:
    """The jar and the crawl state that keeps it: ``load`` (key, JSON) rows at the start,
    ``store`` each batch of changes. For a state shared by many workers (``version``:
    its change counter, read at most every ``every`` seconds), the jar is read again
    when another worker changed it, so a worker pays one round trip per ``every``
    seconds to stay current and one per change it makes, never one per page.

    One thread at a time takes the jar's changes and stores them, or loads the state
    and merges it: two batches stored out of order would leave an older value in the
    state, and a load that overtook a store would drop what was just set. ``load``
    and ``store`` are the crawl state's own reads and writes (the frontier's), which
    call nothing back."""

    def __init__(
        self,
        jar: CookieJar,
        *,
        load: Any = None,
        store: Any = None,
        version: Any = None,
        every: float = 2.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.jar = jar
        self._load = load
        self._store = store
        self._version = version
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()  # _seen and _next
        self._io = threading.Lock()  # one take-and-store or load-and-merge at a time
        self._seen: int | None = None
        self._next = 0.0

    def start(self) -> None:
        """The state's cookies into the jar (a resumed or shared crawl's session)."""
        if self._version is not None:
            self._seen = self._version()
        if self._load is not None:
            self.jar.add(_decoded(self._load()), noted=False)

    def before_fetch(self) -> None:
        if self._version is None:
            return
        now = self._clock()
        if now < self._next:
            return
        with self._lock:
            if now < self._next:
                return
            self._next = now + self._every
        seen = self._version()
        with self._lock:
            if seen == self._seen:
                return
            self._seen = seen
        with self._io:
            self.jar.replace_all(_decoded(self._load()))

    def refresh(self) -> None:
        """Read the shared state at the next fetch, whatever the interval: before a
        re-login, another worker may have logged in again already."""
        with self._lock:
            self._next = 0.0

    def after_fetch(self) -> None:
        if not self.jar.dirty:
            return
        if self._store is None:
            self.jar.changes()  # nowhere to keep them
            return
        with self._io:
            changes = self.jar.changes()
            if not changes:
                return
            counter = self._store(changes)
        if isinstance(counter, int) and self._version is not None:
            with self._lock:
                if self._seen is not None and counter == self._seen + 1:
                    self._seen = counter  # only this change since the last read

    def finish(self) -> None:
        """The crawl ends: the state gets the expiries the server last gave (a rolling
        session's), not only those that moved far enough to be worth a write."""
        if self._store is None:
            return
        self.jar.settle()
        self.after_fetch()


def _decoded(rows: Iterable[tuple[str, str]]) -> list[Cookie]:
    cookies = []
    for _, data in rows:
        try:
            cookies.append(Cookie.loads(data))
        except (TypeError, ValueError):
            continue  # not a cookie this shoal wrote: skipped, never sent
    return cookies
