"""The one URL splitter: every part of shoal that takes a URL apart uses :func:`split_url`.

It sits below every package (the HTTP client, the crawler, the proxy rules) so that they
agree on where the host ends and what the credentials are. The rule for credentials
(``user:password@``): they are split off into ``userinfo`` and are never part of ``host``,
``authority`` or a host key; canonical URLs drop them, the HTTP client never sends them,
and only a proxy URL's userinfo is used (as its Proxy-Authorization).
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_PORTS",
    "REDACTED",
    "URLParts",
    "redact_userinfo",
    "split_url",
    "without_userinfo",
]

DEFAULT_PORTS = {"http": 80, "https": 443}

# What a secret is shown as in messages, the resume command and WARC request records.
REDACTED = "[redacted]"


class URLParts(NamedTuple):
    """An absolute URL taken apart. ``host`` is lower-cased, without IPv6 brackets."""

    scheme: str
    userinfo: str
    host: str
    port: int | None  # as written; None when the URL names no port
    path: str
    query: str
    fragment: str

    @property
    def authority(self) -> str:
        """``host[:port]`` as a Host header carries it: never the userinfo."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def effective_port(self) -> int | None:
        """The port connected to: the one written, else the scheme's default."""
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)

    @property
    def target(self) -> str:
        """The request target: path (``/`` when empty) and query, never the fragment."""
        path = self.path or "/"
        return f"{path}?{self.query}" if self.query else path


def split_url(url: str) -> URLParts:
    """Split ``url`` (WHATWG/RFC 3986 as urllib reads it: tabs and line breaks removed).

    Raises ValueError, saying why, for a port that is not a number in 0-65535 or a
    malformed IPv6 literal. The authority ends at the first ``/``, ``?`` or ``#``; the
    userinfo is everything before the *last* ``@`` in it.
    """
    parts = urlsplit(url)  # ValueError for an unbalanced "[" in the authority
    userinfo, _at, _hostport = parts.netloc.rpartition("@")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("bad port: not a number in 0-65535") from None
    return URLParts(
        parts.scheme.lower(),
        userinfo,
        parts.hostname or "",
        port,
        parts.path,
        parts.query,
        parts.fragment,
    )


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@``: what a message, a log line
    or a printed command may say of a URL that may carry credentials (a proxy's).

    Works on text that does not parse, too: an error about a malformed URL must not
    print the password it holds. Where the userinfo ends is :func:`redact_userinfo`'s
    reading, which errs toward hiding (a password with an unescaped ``/`` in it)."""
    shown = redact_userinfo(url)
    if shown == url:
        return url
    start = url.find("://")
    start = 0 if start < 0 else start + 3
    rest = shown[shown.index(REDACTED) + len(REDACTED) :]
    return f"{url[:start]}***{rest}"


def redact_userinfo(text: str) -> str:
    """``text`` (a URL, or ``user:password@host:port`` without a scheme) as it may be shown
    in a message: the password of its userinfo replaced by ``[redacted]``, and a lone
    ``TOKEN@`` after a scheme too (tokens are passed so). Text without userinfo comes back
    unchanged.

    Meant for showing, not parsing: it errs toward hiding. A password holding an
    unescaped ``/``, ``?`` or ``#`` (``http://u:pa/ss@proxy``, which no parser reads as
    meant) is hidden too: a ``:`` in the authority with an ``@`` after it is taken as
    ``user:password@``, whatever comes between; so is any ``:`` before an ``@`` in text
    with no ``://`` (``http//u:pw@host``, a mistyped scheme).
    """
    head, sep, rest = text.partition("://")
    if not sep:
        if any(ch.isspace() for ch in text):
            return text  # prose (a user agent's "me@example.com"), not a URL
        at = text.rfind("@")
        colon = text.find(":", 0, at) if at > 0 else -1
        if colon < 0 or colon + 1 == at:
            return text  # "user@host": an address, no password in it
        return f"{text[: colon + 1]}{REDACTED}{text[at:]}"
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0:
        first_colon, last_at = rest.find(":"), rest.rfind("@")
        if not 0 <= first_colon < end or last_at < first_colon:
            return text
        at = last_at
    if rest[:at] == "***":
        return text  # hidden already, as messages about a proxy show its credentials
    user, has_colon, password = rest[:at].partition(":")
    if has_colon:
        if not password:
            return text
        shown = f"{user}:{REDACTED}"
    else:
        shown = REDACTED
    return f"{head}{sep}{shown}{rest[at:]}"
