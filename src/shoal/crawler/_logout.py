"""Which links log out of a site: a logged-in crawl does not follow them (``follow_logout``
keeps them), since each one would end the session and cost a login again."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["LOGOUT_MENTION", "is_logout_url", "says_logout"]

# A logout in a URL's path or query: a word of its own (/logout, /account/log-out.php,
# ?action=logout, /users/sign_out) or a camel-case part (Special:UserLogout); not one
# inside another word (/catalog-outlet, /blog_offers).
_LOGOUT_WORD = r"(?:log[-_]?out|sign[-_]?out|log[-_]?off)"
_LOGOUT_URL = re.compile(
    rf"(?:(?<![A-Za-z0-9])(?i:{_LOGOUT_WORD})|(?<=[a-z])(?:Log[-_]?[Oo]ut|Sign[-_]?[Oo]ut|"
    r"Log[-_]?[Oo]ff))(?![a-z0-9])"
)
# A link's text that says it logs out: short ("Log out", "Sign out (alice)"), not a
# sentence that mentions it.
_LOGOUT_TEXT = re.compile(r"\b(?:log|sign)[\s_-]*(?:out|off)\b", re.IGNORECASE)
# A page whose text has no such words has no such link: most pages are not parsed again.
LOGOUT_MENTION = _LOGOUT_TEXT
_LOGOUT_TEXT_MAX = 40


def is_logout_url(url: str) -> bool:
    """Does ``url``'s path or query name a logout (logout, log-out, signout, logoff...)?"""
    parts = urlsplit(url)
    return bool(_LOGOUT_URL.search(parts.path) or _LOGOUT_URL.search(parts.query))


def says_logout(text: str) -> bool:
    """Does a link's text say it logs out ("Log out", "Sign out", "Log off", "Sign off")?"""
    text = text.strip()
    return len(text) <= _LOGOUT_TEXT_MAX and bool(_LOGOUT_TEXT.search(text))
