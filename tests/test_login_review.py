"""Logged-in crawls and the links that end the session, and a login hook that hangs.

A site whose every page links a logout (GET ends the session) made a logged-in crawl
log in again after every page; a hook that never returned held the crawl's start for
ever. The site is test_login's, with a logout on each page."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shoal import Crawler, LoginFailed
from shoal.crawler import LoginSession
from sites import Reply, Request, Site, html
from test_login import PASSWORD, USER, LoginSite, login_options, protected, records, run_cli

# Links every logged-in page carries, each of which ends the session when fetched.
LOGOUTS = ("/logout", "/account/log-out.php", "/index.php?action=logout", "/users/sign_out")


class LogoutSite(LoginSite):
    """Every protected page links the logouts of LOGOUTS, and ``/bye`` whose text says
    "Sign out"; each ends the session and links ``/after``, a protected page.
    ``logouts`` lists those asked for."""

    def __init__(self, pages: int = 4) -> None:
        super().__init__(pages=pages)
        self.logouts: list[str] = []

    def reply(self, req: Request) -> Reply:
        path = req.path.split("?", 1)[0]
        if path in {p.split("?", 1)[0] for p in LOGOUTS} | {"/bye"} and (
            path != "/index.php" or "action=logout" in req.path
        ):
            with self.lock:
                self.logouts.append(req.path)
                self.sessions.pop(self.cookies(req).get("sid", ""), None)
            return Reply(body=html("bye", "/after"))  # a page to find the session gone
        reply = super().reply(req)
        if reply.status == 200 and path in protected(self):
            links = [f"/p{i}" for i in range(self.pages)]
            anchors = "".join(f'<a href="{href}">{href}</a> ' for href in [*links, *LOGOUTS])
            reply.body = (
                f"<html><body>Hello {USER} {anchors}"
                '<nav><a href="/bye"><span>Sign out</span></a></nav></body></html>'
            )
        return reply


def test_logout_links_are_not_followed_logged_in(tmp_path: Path) -> None:
    """One login (one POST of the password) for the whole crawl; no logout is asked
    for; the summary counts them, with an example."""
    out = tmp_path / "o.jsonl"
    with LogoutSite() as site:
        result = Crawler(site.url("/"), output=str(out), concurrency=1, **login_options(site)).run()
    assert site.attempts == 1 and site.logins == 1
    assert site.logouts == []
    assert sorted(p for p, _ in site.served) == sorted(protected(site))
    assert {r["status"] for r in records(out)} == {200}
    # 5 pages, each with 5 logout links (the first page's found on the others again).
    assert result.logout_links == 5 * (len(LOGOUTS) + 1)
    assert result.as_dict()["logout_links"] == result.logout_links
    assert "logout links not followed: 25" in result.summary()
    first = result.first_logout_link
    assert first is not None and first in result.summary()
    assert first.removeprefix(site.url("")) in [*LOGOUTS, "/bye"]


def test_a_link_whose_text_says_sign_out_is_not_followed(tmp_path: Path) -> None:
    """``<a href=/bye><span>Sign out</span></a>``: nothing in its URL says logout."""
    with LogoutSite(pages=1) as site:
        Crawler(site.url("/"), concurrency=1, output=str(tmp_path / "o.jsonl"),
                **login_options(site)).run()  # fmt: skip
        assert "/bye" not in site.logouts and site.logouts == []
        assert site.logins == 1


def test_follow_logout_follows_them(tmp_path: Path) -> None:
    with LogoutSite(pages=1) as site:
        result = Crawler(
            site.url("/"), concurrency=1, output=str(tmp_path / "o.jsonl"), follow_logout=True,
            retries=4, **login_options(site),
        ).run()  # fmt: skip
        assert sorted(set(site.logouts)) == sorted([*LOGOUTS, "/bye"])
        assert site.attempts > 1  # /after met the ended session: a login again
        assert "/after" in {p for p, _ in site.served}  # as the logged-in user
    assert result.logout_links == 0


def test_without_a_login_nothing_changes() -> None:
    site = Site({"/": html("home", "/logout", "/a"), "/logout": html("bye"), "/a": html("a")})
    with site:
        result = Crawler(site.url("/"), progress=False).run()
        assert site.count("/logout") == 1
    assert result.logout_links == 0


def test_what_is_a_logout() -> None:
    from shoal.crawler._logout import is_logout_url, says_logout

    for url in (
        "/logout", "/LogOut/", "/account/logout.php", "/x?action=logout", "/users/sign_out",
        "/sign-out", "/signout", "/log_out", "/logoff", "/index.php/Special:UserLogout",
    ):  # fmt: skip
        assert is_logout_url("http://h.test" + url), url
    for url in ("/catalog-outlet", "/blog_offers", "/logouts", "/login", "/sign-outdoor"):
        assert not is_logout_url("http://h.test" + url), url
    assert not is_logout_url("http://logout.test/a")  # the host is not the link's meaning
    for text in ("Log out", "Sign Out (alice)", "logout", "Log off", "Sign off"):
        assert says_logout(text), text
    for text in ("Login", "Blog outline", "How to log out of your account: a long read"):
        assert not says_logout(text), text


def test_cli_logout_links_and_follow_logout_from_a_config_file(tmp_path: Path) -> None:
    """The summary says how many were left and how to follow them; ``follow-logout``
    is a config key."""
    with LogoutSite(pages=1) as site:
        done = run_cli(
            "crawl", site.url("/"), "-o", str(tmp_path / "a.jsonl"), "--login",
            site.url("/login"), "--form", f"user={USER}", "--form", "password",
            "--concurrency", "1", "--no-progress", env={"SHOAL_FORM_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "logout links not followed: 10" in done.stderr, done.stderr
        assert "--follow-logout" in done.stderr
        assert site.logouts == [] and site.attempts == 1
        config = tmp_path / "crawl.toml"
        config.write_text(
            f'urls = ["{site.url("/")}"]\n'
            f'login = "{site.url("/login")}"\n'
            f'form = ["user={USER}", "password"]\n'
            "follow-logout = true\nretries = 4\nconcurrency = 1\n"
        )
        done = run_cli(
            "crawl", "--config", str(config), "-o", str(tmp_path / "b.jsonl"), "--no-progress",
            env={"SHOAL_FORM_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "/logout" in site.logouts


def test_a_login_hook_that_hangs_stops_the_crawl_at_the_deadline(tmp_path: Path) -> None:
    """The hook never returns (until the test lets it): LoginFailed after the crawl's
    timeout x 21, the crawl's run returns with the hook still blocked, and the hook's
    later request is refused (nothing reaches the site)."""
    release = threading.Event()
    hook_done = threading.Event()
    late: list[BaseException] = []

    def hook(session: LoginSession) -> bool:
        try:
            release.wait(60)  # bounded: released by the test once the crawl has failed
            session.get(site.url("/login"))
        except BaseException as exc:
            late.append(exc)
            raise
        finally:
            hook_done.set()
        return True

    try:
        with LoginSite() as site:
            crawler = Crawler(
                site.url("/"), login=hook, progress=False, timeout=0.1,
                output=str(tmp_path / "o.jsonl"),
            )  # fmt: skip
            with pytest.raises(LoginFailed, match=r"the login has run for more than 2\.1 s"):
                crawler.run()
            assert not hook_done.is_set()  # the crawl did not wait for it
            release.set()
            assert hook_done.wait(30)
            assert site.site.hits == [] and site.served == []
    finally:
        release.set()
    assert len(late) == 1 and isinstance(late[0], LoginFailed)
    assert "abandoned" in str(late[0])


def test_a_process_whose_login_hangs_exits_6(tmp_path: Path) -> None:
    """The hook's thread holds no exit: the process ends with LoginFailed's exit code
    (6) while the hook is still blocked, and the message names the deadline."""
    script = tmp_path / "hang.py"
    script.write_text(
        "import sys, threading\n"
        "from shoal import Crawler, LoginFailed\n"
        "try:\n"
        "    Crawler(sys.argv[1], login=lambda s: threading.Event().wait(),\n"
        "            timeout=0.05, progress=False).run()\n"
        "except LoginFailed as exc:\n"
        "    print(exc)\n"
        "    sys.exit(exc.exit_code)\n"
    )
    with LoginSite() as site:
        done = subprocess.run(
            [sys.executable, str(script), site.url("/")],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert "the login has run for more than 1.05 s" in done.stdout
