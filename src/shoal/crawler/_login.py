"""Crawling as a logged-in user: the login before the crawl, and again when it expires.

``Crawler(login=...)`` is a URL (the declarative login the command line's ``--login``
gives: fetch that page, fill its login form with ``form``, submit it, check the answer)
or a hook ``login(session)`` that does it by hand through a :class:`LoginSession`. Either
runs before the first page of the crawl; a failure is :class:`~shoal.LoginFailed`, which
stops the crawl (never an anonymous one).

Decisions, each for a reason:

- Login requests go through the crawl's fetcher, cookie jar, headers, proxies and
  ``deny_private``, and only to hosts in the crawl's scope (start URLs' hosts or
  ``allow_domains``); a redirect out of scope stops the login. A form is submitted only to
  the origin (scheme, host, port) of the login page it came from, every hop of the POST
  too, and never with GET when it fills a password (the URL would carry it into logs):
  a hostile page's action gets no password. Messages show URLs without their query.
  robots.txt is not asked: the user named the login page (and ``Disallow: /login`` is
  common), and a login is a few requests, not a crawl of the page. They are not pages of
  the crawl: no record, no WARC record, nothing in the frontier or the state (a login
  POST's body holds the password), and they are not counted.
- The session is the cookie jar, kept in the state and shared by ``redis`` workers. A
  declarative login whose jar holds cookies already (a resumed crawl, a worker joining a
  shared crawl, ``--cookies FILE``, a re-login) first fetches the login page: if it shows
  no login form, the session is still good and no form is submitted.
- A login URL is its whole canonical URL, query included (``/index.php?action=login``);
  a redirect to it with more in the query (``/login?next=/a``) is a redirect to it.
- Expiry: a page that redirects to a login page, or answers (2xx, 401, 403) with a page
  holding a password form that submits where the login did, is not recorded: the crawl
  logs in again and fetches the page once more. One re-login at a time: the workers that
  meet the expiry meanwhile wait for it (never under a lock the hook could need; bounded:
  a hook may hang) and then fetch again. A page that still answers with the login page is
  that URL's answer (Jobs._logged_in): the session alive, a form beside the content is the
  page and a redirect is ``login_required``; after fresh logins the page is retried, then
  recorded ``login_required``. :data:`MAX_RELOGINS` URLs in a row meeting the login page
  with no logged-in page between stop the crawl with LoginFailed.
- Logout links are not followed while logged in (``follow_logout`` follows them): one
  ends the session, and a site linking it from every page would make the crawl post the
  password again after every page. What is one: :func:`._logout.is_logout_url` (the URL) and
  :func:`._logout.says_logout` (the link's text), as OWASP ZAP and Burp avoid them.
- A login (the hook, ours or the user's) runs in a daemon thread of its own and has a
  deadline (``Login(deadline=)``: the crawl's timeout for each of the requests a login
  may make): a hook that hangs stops the crawl with LoginFailed, and is left behind
  (its session refuses its later requests) rather than holding the crawl's exit.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

from .._errors import LoginFailed, ShoalError, UsageError
from .._url import split_url
from ._fetch import Fetched
from ._page import Page
from ._request import Request
from ._urls import Scope, host_key, parse_start_url

__all__ = [
    "MAX_RELOGINS",
    "FormLogin",
    "Login",
    "LoginHook",
    "LoginSession",
]

logger = logging.getLogger(__name__)

MAX_RELOGINS = 3  # URLs in a row that meet the login page, no logged-in page between
MAX_LOGIN_REQUESTS = 20  # requests one login (a hook's run) may make: bounded

# A cheap look before parsing: a page with no password input cannot be a login form.
_PASSWORD_INPUT = re.compile(rb"type\s*=\s*[\"']?\s*password", re.IGNORECASE)

LoginFetch = Callable[[str, Request | None], Fetched]


def _where(url: str) -> str:
    """What identifies a login URL: the canonical URL, its query included
    (``/index.php?action=login`` is not ``/index.php?p=2``), without its fragment."""
    url = url.split("#", 1)[0]
    try:
        return parse_start_url(url)
    except ShoalError:
        return url


def _leads_to(url: str, login: str) -> bool:
    """Is ``url`` the login URL ``login`` asked with more in its query (``/login?next=/a``
    is ``/login``'s page; ``/index.php?action=login&next=x`` is
    ``/index.php?action=login``'s)? Both as :func:`_where` gives them."""
    if url == login:
        return True
    base, _, query = url.partition("?")
    login_base, _, login_query = login.partition("?")
    if base != login_base:
        return False
    have = set(parse_qsl(query, keep_blank_values=True))
    return all(pair in have for pair in parse_qsl(login_query, keep_blank_values=True))


def _origin(url: str) -> str:
    return host_key(_where(url))


# A URL's query in a message: a login's may hold the password (a GET form's fields).
_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#]*)\?[^\s#)]*")


def redact(text: str) -> str:
    """``text`` with every URL's query replaced by ``?...``."""
    return _QUERY.sub(r"\1?...", text)


class LoginSession:
    """What a login hook (``Crawler(login=hook)``) is handed: requests through the
    crawl's fetcher with its cookie jar, headers and proxies, each answered with a
    :class:`~shoal.Page` (redirects followed within the crawl's scope; its ``status``
    may be 4xx: a wrong password often is). Hosts outside the crawl's scope are refused
    (LoginFailed), as is a request that cannot be made (connection, timeout).

    The login pages it fetches and the forms it submits are remembered: a page of the
    crawl that later redirects to one, or shows a password form that submits where one
    was submitted, means the session expired."""

    def __init__(self, fetch: LoginFetch, scope: Scope, page: Callable[[Fetched], Page]) -> None:
        self._fetch = fetch
        self._scope = scope
        self._page = page
        self._requests = 0
        self._abandoned = False  # its login ran past the deadline: no more requests
        self.login_urls: set[str] = set()  # GETs whose page had a password form
        self.actions: set[str] = set()  # where forms were submitted
        self.origins: set[str] = set()  # of the pages got: where a form may be sent
        self.submitted = False  # a request was submitted (a form posted): a fresh login

    def get(self, url: str) -> Page:
        """GET ``url`` (absolute, in the crawl's scope)."""
        page = self._send(url, None)
        self.origins.add(_origin(page.final_url))
        if password_forms(page):  # where it was asked and where it ended (/login -> /a/login)
            self.login_urls.update((_where(page.url), _where(page.final_url)))
        return page

    def submit(self, request: Request) -> Page:
        """Send a request, such as ``Request.from_form(page, {...})`` made."""
        if not isinstance(request, Request):
            raise UsageError(f"LoginSession.submit takes a shoal.Request, not {request!r:.60}")
        if self.origins and _origin(request.url) not in self.origins:
            # A form is sent only where the login pages came from: a hostile page's action
            # (another port, http for https) would get the password.
            raise LoginFailed(
                f"login: the form submits to {redact(request.url)}, not the login page's "
                f"origin ({', '.join(sorted(self.origins))}): refused"
            )
        self.actions.add(_where(request.url))
        self.submitted = True
        return self._send(request.url, request)

    def post(self, url: str, data: Mapping[str, str] | bytes) -> Page:
        """POST ``data`` (form-encoded if a mapping) to ``url``."""
        return self.submit(Request(url, "POST", data=data))

    def _abandon(self) -> None:
        """The login gave up on the hook: whatever it sends from now on is refused (a
        hook waking up late must not post a password into a crawl that stopped)."""
        self._abandoned = True

    def _send(self, url: str, request: Request | None) -> Page:
        if self._abandoned:
            raise LoginFailed("login: this login ran past its deadline and was abandoned")
        self._requests += 1
        if self._requests > MAX_LOGIN_REQUESTS:
            raise LoginFailed(f"login: more than {MAX_LOGIN_REQUESTS} requests in one login")
        try:
            canonical = parse_start_url(url)
        except ShoalError as exc:
            raise LoginFailed(redact(f"login: {exc}")) from None
        if not self._scope.allows_host(split_url(canonical).host):
            raise LoginFailed(
                f"login: {redact(canonical)} is outside the crawl's scope (its host is not a start "
                "URL's host nor in allow_domains)"
            )
        fetched = self._fetch(canonical, request)
        if fetched.error is not None or fetched.status is None:
            raise LoginFailed(
                redact(
                    f"login: {fetched.final_url}: {fetched.error}"
                    + (f" ({fetched.detail})" if fetched.detail else "")
                )
            )
        if 300 <= fetched.status < 400 and fetched.status != 304:
            raise LoginFailed(
                redact(
                    f"login: {fetched.url} redirected to {fetched.final_url}, not followed"
                    + (f" ({fetched.detail})" if fetched.detail else "")
                )
            )
        return self._page(fetched)


LoginHook = Callable[[LoginSession], Any]


def password_forms(page: Page) -> list[tuple[int, str]]:
    """The page's forms that have a password input: (index among the page's forms, the
    URL it submits to, as :func:`_where` gives it)."""
    if not _PASSWORD_INPUT.search(page.response.body):
        return []
    try:
        forms = page.xpath("//form")
    except (ValueError, ShoalError):  # not HTML
        return []
    found: list[tuple[int, str]] = []
    for index, form in enumerate(forms):
        kinds = form.xpath(".//input/@type").getall()
        if any(k.strip().lower() == "password" for k in kinds):
            action = (form.attrib.get("action") or "").strip()
            found.append(
                (index, _where(urljoin(page.base_url, action) if action else page.final_url))
            )
    return found


def _password_in_query(page: Page, url: str) -> bool:
    """Does ``url``'s query fill one of the page's password inputs?"""
    try:
        names: set[str] = set()
        for field in page.xpath("//input[@name]"):
            if (field.attrib.get("type") or "").strip().lower() == "password":
                names.add(field.attrib.get("name") or "")
    except (ValueError, ShoalError):
        return True  # cannot tell: a GET login form is refused anyway
    query = urlsplit(url).query
    return any(name in names and value for name, value in parse_qsl(query))


class FormLogin:
    """The declarative login: GET ``url``, fill its login form (the first form with a
    password input, or the one ``selector`` picks) with ``form``'s fields over the
    page's own (hidden fields such as CSRF tokens kept), submit it, and check the answer:
    a 2xx page without the login form, and with ``check`` in its text if given."""

    def __init__(
        self,
        url: str,
        form: Mapping[str, str],
        *,
        selector: str | None = None,
        check: str | None = None,
        had_cookies: Callable[[], bool] = lambda: False,
    ) -> None:
        self.url = url
        self.form = dict(form)
        self.selector = selector
        self.check = check
        self._had_cookies = had_cookies

    def __call__(self, session: LoginSession) -> bool:
        had_cookies = self._had_cookies()
        page = session.get(self.url)
        forms = password_forms(page)
        session.login_urls.add(_where(self.url))  # even when it showed no form this time
        if not forms and self.selector is None:
            if had_cookies and 200 <= page.status < 300:
                # The jar's session is good still (a logged-in user sees no login form).
                logger.info("login: the session in the cookie jar is still logged in")
                return True
            raise LoginFailed(
                f"login: no form with a password input on {redact(page.url)} "
                f"(HTTP {page.status}); "
                "give login_form (--login-form), a CSS selector of the login form"
            )
        which: int | str = self.selector if self.selector is not None else forms[0][0]
        try:
            request = Request.from_form(page, self.form, form=which)
        except UsageError as exc:
            raise LoginFailed(redact(f"login: {exc}")) from None
        where = redact(request.url)
        if _origin(request.url) != _origin(page.final_url):
            raise LoginFailed(
                f"login: the login form submits to {where}, not on the login page's origin "
                f"({_origin(page.final_url)}): refused (the password goes nowhere else)"
            )
        if request.method == "GET" and _password_in_query(page, request.url):
            raise LoginFailed(
                f"login: the login form ({where}) submits with GET: its password would be in "
                "the URL (logs, history, the server's access log): refused"
            )
        answer = session.submit(request)
        session.actions.add(_where(request.url))
        if not 200 <= answer.status < 300:
            raise LoginFailed(f"login failed: the form's answer was HTTP {answer.status}")
        if self.check is not None and self.check not in answer.text:
            raise LoginFailed(
                f"login failed: {self.check!r:.80} is not on the page the login answered "
                f"with ({redact(answer.url)})"
            )
        gone = {action for _, action in password_forms(answer)}
        if _where(request.url) in gone or (self.selector is not None and gone):
            raise LoginFailed(
                f"login failed: the page the login answered with ({redact(answer.url)}) shows the "
                "login form again (a wrong password?)"
            )
        return True


class Login:
    """The crawl's login: run once before the crawl (:meth:`start`), and again when a
    page shows the session expired (:meth:`renew`), one re-login at a time."""

    def __init__(
        self,
        hook: LoginHook,
        fetch: LoginFetch,
        scope: Scope,
        page: Callable[[Fetched], Page],
        *,
        before_renew: Callable[[], None] | None = None,
        wait_for: float | None = None,
        deadline: float | None = None,
    ) -> None:
        self._hook = hook
        # How long a worker waits for another's re-login: a hook that hangs (its requests
        # each have the crawl's timeout; its own code has none) must not hold every worker.
        self._wait_for = wait_for
        # How long one login may run (None: no bound), for the same reason: the worker
        # that runs it, or the crawl's start, would wait for ever.
        self._deadline = deadline
        # A shared jar is read again first: another worker may have logged in already,
        # and its session then serves (a declarative login finds no form and posts none).
        self._before_renew = before_renew
        self._fetch = fetch
        self._scope = scope
        self._page = page
        self._cond = threading.Condition()
        self._generation = 0  # logins done; a worker notes it before a fetch
        self._running = False
        self._expired_for: set[str] = set()  # URLs re-logged for since a logged-in page
        self._failed: LoginFailed | None = None
        self._fresh = True  # the last login submitted a form (not: the session was alive)
        self._login_urls: frozenset[str] = frozenset()
        self._actions: frozenset[str] = frozenset()
        self.logins = 0  # logins run (the first included; not a session found alive)

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def start(self) -> None:
        """The login before the crawl; LoginFailed if it fails."""
        self._run("the login")
        with self._cond:
            self._generation += 1

    def _call(self, session: LoginSession, what: str) -> object:
        """The hook's answer (or what it raised), from a daemon thread of its own: past
        the deadline, LoginFailed, and the hook is left running (a Python thread cannot
        be stopped) with its session refusing further requests."""
        if self._deadline is None:
            return self._hook(session)  # user code: no lock held
        answer: list[tuple[bool, object]] = []
        done = threading.Event()

        def run() -> None:
            try:
                answer.append((True, self._hook(session)))  # user code: no lock held
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                answer.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=run, name="shoal-login", daemon=True).start()
        try:
            finished = done.wait(self._deadline)
        finally:
            if not done.is_set():  # the deadline, or Ctrl-C while waiting
                session._abandon()
        if not finished:
            logger.warning(
                "%s has run for more than %g s: stopped; its hook is left running", what,
                self._deadline,
            )  # fmt: skip
            raise LoginFailed(
                f"{what} has run for more than {self._deadline:g} s (a login hook that "
                "hangs? the deadline is the crawl's timeout x "
                f"{MAX_LOGIN_REQUESTS + 1}): stopped"
            )
        ok, value = answer[0]
        if not ok:
            assert isinstance(value, BaseException)
            raise value
        return value

    def _run(self, what: str = "a re-login") -> bool:
        """Run the hook; whether it submitted a form (False: it found the session in the
        jar still logged in)."""
        session = LoginSession(self._fetch, self._scope, self._page)
        try:
            ok = self._call(session, what)
        except LoginFailed:
            raise
        except Exception as exc:
            raise LoginFailed(f"login failed: the login hook raised {exc!r:.200}") from exc
        if not ok:
            raise LoginFailed("login failed: the login hook returned False")
        with self._cond:
            if session.submitted or not self.logins:
                self.logins += 1  # a session found alive again is no login
            # What this login went through is what an expired session is shown.
            self._login_urls |= session.login_urls
            self._actions |= session.actions
        logger.info("logged in" if session.submitted else "the session is still logged in")
        return session.submitted

    def is_login_url(self, url: str) -> bool:
        """Does ``url`` lead to a login page (a redirect there means the session
        expired)? The login URL itself, or it with more in its query."""
        where = _where(url)
        return any(_leads_to(where, login) for login in self._login_urls)

    def expired(self, url: str, fetched: Fetched, page: Callable[[Fetched], Page]) -> bool:
        """Did fetching ``url`` meet the login page (the session expired)? Never for a
        login page, or the URL a login form submits to, fetched as a page of the crawl."""
        where = _where(url)
        if where in self._login_urls or where in self._actions:
            return False
        if fetched.error is not None or fetched.status is None:
            return False
        if self.is_login_url(fetched.final_url) or any(
            self.is_login_url(hop) for hop in fetched.redirects[1:]
        ):
            return True
        # A login form answered in place: 2xx, or 401/403 (the session is not good).
        shown = 200 <= fetched.status < 300 or fetched.status in (401, 403)
        if not shown or not _PASSWORD_INPUT.search(fetched.body):
            return False
        known = self._actions | self._login_urls
        found = password_forms(page(fetched))
        return any(_leads_to(action, k) for _, action in found for k in known)

    def logged_in_page(self) -> None:
        """A page came as the logged-in user's: re-logins in a row start again."""
        with self._cond:
            self._expired_for.clear()

    def redirected(self, fetched: Fetched) -> bool:
        """Did the fetch lead to a login page (rather than show a login form in place)?"""
        return self.is_login_url(fetched.final_url) or any(
            self.is_login_url(hop) for hop in fetched.redirects[1:]
        )

    def renew(self, seen: int, url: str) -> bool:
        """Log in again after ``url`` met the login page, unless another worker did since
        ``seen`` (the generation before that fetch); wait for one running. LoginFailed
        if that fails, or after too many re-logins in a row. Whether that login submitted
        a form (False: the login page showed none, the session was alive)."""
        deadline: float | None = None
        with self._cond:
            while True:
                if self._failed is not None:
                    raise self._failed
                if self._generation != seen:
                    return self._fresh  # logged in again since this fetch began
                if not self._running:
                    break
                if self._wait_for is None:
                    self._cond.wait()
                    continue
                if deadline is None:
                    deadline = time.monotonic() + self._wait_for
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LoginFailed(
                        f"a re-login has run for more than {self._wait_for:g} s (a login "
                        f"hook that hangs?) while {url} waited for it: stopped"
                    )
                self._cond.wait(left)
            self._running = True
            self._expired_for.add(url)
            in_a_row = len(self._expired_for)
        try:
            if in_a_row > MAX_RELOGINS:
                raise LoginFailed(
                    f"the session expired at {in_a_row} URLs in a row with no page fetched "
                    f"logged in between (the last: {redact(url)}): stopped"
                )
            logger.warning(
                "the session expired (%s answered with the login page): logging in again", url
            )
            if self._before_renew is not None:
                self._before_renew()
            fresh = self._run()
        except LoginFailed as exc:
            with self._cond:
                self._failed = exc
                self._running = False
                self._cond.notify_all()
            raise
        except BaseException:
            with self._cond:
                self._running = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._generation += 1
            self._fresh = fresh
            if not fresh:
                self._expired_for.clear()  # the session is alive: no expiry to count
            self._running = False
            self._cond.notify_all()
        return fresh
