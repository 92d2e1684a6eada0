"""robots.txt rules per host, following RFC 9309.

A robots.txt that answers 2xx is obeyed; 4xx means there are no rules (allow all);
a 5xx or an unreachable server means the site may be in trouble, so the crawler stays
away (disallow all) for this run: those URLs get an error record and stay queued.
One longer than MAX_ROBOTS_BYTES is cut at its last line break; with none, its rules
are unknown and everything is disallowed, for good. Rules are parsed with protego.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from protego import Protego

from ..http import ErrorKind
from ._fetch import Fetched
from .frontier import HostPolicy

__all__ = ["RobotsRules"]

logger = logging.getLogger(__name__)

# RFC 9309 (section 2.5) asks crawlers to parse at least 500 KiB. robots.txt is read up to
# this limit whatever --max-bytes says, and a longer file is cut here and its start obeyed
# (as Google does): refusing it would hold the host's URLs back on every run.
MAX_ROBOTS_BYTES = 512 * 1024
# A Crawl-delay above this is taken as this: a site asking for a day between requests would
# otherwise hold a crawl open for a day per URL.
MAX_CRAWL_DELAY = 60.0
# The rules obeyed for a robots.txt that cannot be read safely (see _unreadable).
DISALLOW_ALL = "User-agent: *\nDisallow: /\n"


@dataclass
class RobotsRules:
    """What one host's robots.txt allows."""

    allow_all: bool = False
    deny_all: bool = False
    reason: str = ""
    parser: Protego | None = None
    sitemaps: list[str] = field(default_factory=list)
    # Set when robots.txt could not be fetched at all (dns, tls, connection, timeout...):
    # the host's URLs are held back this run but stay queued, to be tried again.
    error: str | None = None
    detail: str = ""
    text: str | None = None  # the robots.txt that was parsed, for the frontier to keep
    note: str = ""  # a cause worth telling in the summary

    @classmethod
    def from_policy(cls, policy: HostPolicy) -> RobotsRules:
        """The rules of a policy the frontier holds (perhaps fetched by another process)."""
        if policy.unreachable is not None:
            kind, detail = policy.unreachable
            return cls(deny_all=True, error=kind, detail=detail)
        if policy.robots_txt is None:
            return cls(allow_all=True)
        return cls._parse(policy.robots_txt, "robots.txt")

    def policy(self, user_agent: str) -> HostPolicy:
        """What the frontier stores for this host, for every process to apply."""
        if self.error is not None:
            return HostPolicy(None, None, unreachable=(self.error, self.detail))
        return HostPolicy(self.text, self.crawl_delay(user_agent))

    @classmethod
    def from_fetch(cls, fetched: Fetched) -> RobotsRules:
        status = fetched.status
        if fetched.error is not None or status is None:
            return cls(
                deny_all=True,
                reason=f"robots.txt unreachable ({fetched.error}: {fetched.detail})",
                error=fetched.error or ErrorKind.CONNECTION,
                detail=fetched.detail,
            )
        if status >= 500 or status == 429:
            # RFC 9309: the server is in trouble, stay away; but only for now, so the
            # held-back URLs get records and stay queued like an unreachable robots.txt.
            # A 429 (too many requests) is no answer about the rules either.
            return cls(
                deny_all=True,
                reason=f"robots.txt answered {status}",
                error=f"robots_http_{status}",
                detail=f"robots.txt answered {status}",
            )
        if status >= 400 or (300 <= status < 400):
            # A 4xx, or a redirect we did not follow to the end: no rules to obey.
            return cls(allow_all=True, reason=f"robots.txt answered {status}")
        body = fetched.body[:MAX_ROBOTS_BYTES]
        if fetched.truncated or len(fetched.body) > MAX_ROBOTS_BYTES:
            # The last line may be cut mid-rule ("Disallow: /private" read as "/pri"):
            # only whole lines are obeyed. A line ends at LF, CR or CRLF (RFC 9309 2.2).
            end = max(body.rfind(b"\n"), body.rfind(b"\r")) + 1
            if end == 0:
                return cls._unreadable(fetched.url)
            body = body[:end]
            logger.info(
                "%s: robots.txt is longer than %d KiB; its first %d bytes are obeyed",
                fetched.url,
                MAX_ROBOTS_BYTES // 1024,
                len(body),
            )
        text = body.decode("utf-8", errors="replace")
        return cls._parse(text, fetched.url)

    @classmethod
    def _unreadable(cls, where: str) -> RobotsRules:
        """A robots.txt longer than MAX_ROBOTS_BYTES with no line break before it: not
        one whole line to obey, and any rule may be in what was cut off. Its rules are
        unknown, so, as RFC 9309 (2.3.1.4) says of a robots.txt whose rules are
        undefined, assume complete disallow. Not held back like a 5xx: the same file
        would be fetched again on every run, each time holding the URLs back again, so
        the host's URLs are final, skipped as disallowed, and the summary says why."""
        note = (
            f"{where} has no line break in its first {MAX_ROBOTS_BYTES // 1024} KiB and "
            "cannot be read safely: that host's URLs are treated as disallowed"
        )
        rules = cls._parse(DISALLOW_ALL, where)  # kept as text: a resume reads the same
        rules.reason, rules.note = "robots.txt unreadable: disallowing all", note
        return rules

    @classmethod
    def _parse(cls, text: str, where: str) -> RobotsRules:
        try:
            parser = Protego.parse(text)
        except Exception as exc:  # noqa: BLE001 - a garbled file must not stop the crawl
            logger.warning("unparsable robots.txt at %s: %r; allowing all", where, exc)
            return cls(allow_all=True, reason="robots.txt unparsable")
        return cls(parser=parser, sitemaps=list(parser.sitemaps), text=text)

    def allowed(self, url: str, user_agent: str) -> bool:
        if self.deny_all:
            return False
        if self.allow_all or self.parser is None:
            return True
        return bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(user_agent)
        if delay is None:
            return None
        delay = float(delay)
        if not delay >= 0:  # NaN or negative
            return None
        return min(delay, MAX_CRAWL_DELAY)
