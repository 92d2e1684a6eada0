"""Crawling behind a login (issue 20): a real site on 127.0.0.1 with a CSRF-protected login
form whose token is tied to the cookie issued with the login page, sessions that expire
after a few pages, and a server that checks every protected page is asked for by the
logged-in user. Wrong passwords, kill -9 and resume, concurrent expiry, secrets kept out
of every output."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from shoal import Crawler, LoginFailed, UsageError
from shoal import Request as ShoalRequest
from shoal.crawler import LoginSession
from sites import Reply, Request, Site, html

PASSWORD = "s3cret-Pa55"
USER = "alice"


class LoginSite:
    """``/login`` (GET: the form, with a CSRF token bound to a ``pre`` cookie), ``/session``
    (POST: checks token, user and password; sets ``sid``; 303 to ``/welcome``), and
    protected pages ``/``, ``/p0`` ... that redirect to ``/login?next=...`` without a
    valid session. A session ends after ``expire_after`` protected pages."""

    def __init__(self, pages: int = 6, expire_after: int | None = None) -> None:
        self.pages = pages
        self.expire_after = expire_after
        self.lock = threading.Lock()
        self.tokens: dict[str, str] = {}  # pre cookie -> its CSRF token
        self.sessions: dict[str, int] = {}  # valid sid -> pages served with it
        self.logins = 0  # successful logins
        self.attempts = 0  # login POSTs
        self.served: list[tuple[str, str]] = []  # (path, who) for every protected page
        self.anonymous: list[str] = []  # protected paths asked for without a session
        self.counter = itertools.count(1)
        self.hold: Any = None  # called with the path before a protected page is served
        self.site = Site({"/robots.txt": Reply(200, "User-agent: *\nDisallow: /login\n")})
        self.site.fallback = self.reply

    def url(self, path: str = "/") -> str:
        return self.site.url(path)

    def __enter__(self) -> LoginSite:
        self.site.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.site.__exit__(*exc)

    def cookies(self, req: Request) -> dict[str, str]:
        out = {}
        for part in (req.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name:
                out[name] = value
        return out

    def form(self, token: str, error: str = "") -> str:
        return (
            f"<html><body>{error}<form method=post action=/session>"
            f'<input type=hidden name=csrf value="{token}">'
            "<input name=user><input type=password name=password>"
            "<input type=submit value='Log in'></form></body></html>"
        )

    def reply(self, req: Request) -> Reply:
        path = req.path.split("?", 1)[0]
        jar = self.cookies(req)
        with self.lock:
            valid = jar.get("sid") in self.sessions
        if path == "/login":
            if valid:
                return Reply(302, "", headers={"Location": "/"})
            pre = f"pre{next(self.counter)}"
            token = f"tok{next(self.counter)}x"
            with self.lock:
                self.tokens[pre] = token
            return Reply(body=self.form(token), headers={"Set-Cookie": f"pre={pre}; Path=/"})
        if path == "/session" and req.method == "POST":
            fields = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
            with self.lock:
                self.attempts += 1
                token_ok = self.tokens.get(jar.get("pre", "")) == fields.get("csrf")
            if not token_ok:
                return Reply(403, "bad CSRF token")
            if fields.get("user") != USER or fields.get("password") != PASSWORD:
                return Reply(body=self.form("again", "wrong password"))
            sid = f"sid{next(self.counter)}"
            with self.lock:
                self.sessions[sid] = 0
                self.logins += 1
            return Reply(
                303, "", headers={"Location": "/welcome", "Set-Cookie": f"sid={sid}; Path=/"}
            )
        if path == "/welcome":
            if not valid:
                return Reply(302, "", headers={"Location": "/login"})
            return Reply(body=html("welcome", extra=f"Welcome, {USER}!"))
        if path == "/logout":
            return Reply(body=html("bye"))
        # A protected page.
        if self.hold is not None:
            self.hold(path)
        with self.lock:
            sid = jar.get("sid")
            if sid not in self.sessions:
                self.anonymous.append(path)
                return Reply(302, "", headers={"Location": f"/login?next={path}"})
            assert sid is not None
            if self.expire_after is not None and self.sessions[sid] >= self.expire_after:
                del self.sessions[sid]
                self.anonymous.append(path)
                return Reply(302, "", headers={"Location": f"/login?next={path}"})
            self.sessions[sid] += 1
            self.served.append((path, sid))
        if path == "/":
            links = [f"/p{i}" for i in range(self.pages)]
            return Reply(body=html("home", *links, "/login", extra=f"Hello {USER}"))
        return Reply(body=html(path, extra=f"secret page {path} for {USER}"))


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def protected(site: LoginSite) -> set[str]:
    return {"/", *(f"/p{i}" for i in range(site.pages))}


def login_options(site: LoginSite, **extra: Any) -> dict[str, Any]:
    return dict(
        login=site.url("/login"),
        form={"user": USER, "password": PASSWORD},
        login_check=f"Welcome, {USER}",
        progress=False,
        **extra,
    )


def test_csrf_login_and_an_expiring_session(tmp_path: Path) -> None:
    """Every protected page is fetched once, by the logged-in user, and recorded as
    itself; the session expires every 2 pages and the crawl logs in again each time."""
    out = tmp_path / "pages.jsonl"
    with LoginSite(pages=6, expire_after=2) as site:
        result = Crawler(site.url("/"), output=str(out), concurrency=1, **login_options(site)).run()
    got = records(out)
    urls = [r["url"] for r in got]
    # /login is linked, but robots.txt disallows it: the login itself ignores robots.txt
    # (the user named it), the crawl does not.
    assert sorted(urls) == sorted(site.url(p) for p in protected(site))
    assert all(r["status"] == 200 for r in got), got
    assert all(r["final_url"] == r["url"] for r in got)
    # Every protected page was served to a session, each exactly once.
    assert sorted(p for p, _ in site.served) == sorted(protected(site))
    # 7 protected pages, 2 per session: 4 logins (the first and 3 after expiry).
    assert site.logins == 4
    assert any("logged in 4 times" in note for note in result.notes)
    assert result.ok == len(got)
    assert not result.failed


def test_the_login_pages_linked_from_the_crawl_are_pages(tmp_path: Path) -> None:
    """``/login`` linked from a logged-in page redirects home, ``/session`` (where the form
    posts) answers a GET with the form: each recorded as it is, neither taken for an
    expired session."""
    out = tmp_path / "pages.jsonl"
    with LoginSite(pages=1) as site:

        def reply(req: Request) -> Reply:
            if req.path == "/session" and req.method == "GET":  # not the login's POST
                return Reply(body=site.form("x"))
            answer = site.reply(req)
            if req.path == "/" and answer.status == 200:
                answer.body = html("home", "/p0", "/login", "/session")
            return answer

        site.site.fallback = reply
        Crawler(site.url("/"), output=str(out), robots=False, **login_options(site)).run()
        assert site.logins == 1
    by_url = {r["url"]: r for r in records(out)}
    assert by_url[site.url("/login")]["status"] in (200, 302)
    assert by_url[site.url("/session")]["status"] == 200


def test_a_wrong_password_stops_before_any_page(tmp_path: Path) -> None:
    out = tmp_path / "pages.jsonl"
    with LoginSite() as site:
        options = login_options(site)
        options["form"] = {"user": USER, "password": "nope"}
        crawler = Crawler(site.url("/"), output=str(out), **options)
        with pytest.raises(LoginFailed, match="login failed"):
            crawler.run()
        assert site.attempts == 1
        assert site.served == [] and site.anonymous == []
    assert not out.exists() or records(out) == []


def test_a_missing_check_text_fails_the_login(tmp_path: Path) -> None:
    with LoginSite() as site:
        options = login_options(site)
        options["login_check"] = "Welcome, bob"
        with pytest.raises(LoginFailed, match="Welcome, bob"):
            Crawler(site.url("/"), output=str(tmp_path / "o.jsonl"), **options).run()
        assert site.served == [] and site.anonymous == []


def test_a_login_url_out_of_scope_or_without_a_form(tmp_path: Path) -> None:
    with LoginSite() as site:
        with pytest.raises(UsageError, match="outside the crawl's scope"):
            Crawler(site.url("/"), login="http://elsewhere.test/login", progress=False)
        with pytest.raises(UsageError, match="needs login"):
            Crawler(site.url("/"), form={"a": "b"})
        with pytest.raises(LoginFailed, match="no form with a password input"):
            Crawler(
                site.url("/"), login=site.url("/logout"), output=str(tmp_path / "o.jsonl"),
                form={"user": USER}, progress=False,
            ).run()  # fmt: skip


def test_a_login_hook(tmp_path: Path) -> None:
    """``login(session)``: the hook fills the form itself; expiry still logs in again
    (the session remembers the login page and the form's action)."""
    calls: list[str] = []

    def login(session: LoginSession) -> bool:
        from shoal import Request

        page = session.get(site.url("/login"))
        calls.append(page.url)
        answer = session.submit(Request.from_form(page, {"user": USER, "password": PASSWORD}))
        return "Welcome" in answer.text

    out = tmp_path / "pages.jsonl"
    with LoginSite(pages=4, expire_after=3) as site:
        Crawler(site.url("/"), output=str(out), concurrency=1, login=login, progress=False).run()
    assert sorted(p for p, _ in site.served) == sorted(protected(site))
    assert site.logins == 2 == len(calls)
    assert {r["status"] for r in records(out)} == {200}


def test_a_hook_returning_false_or_raising() -> None:
    with LoginSite() as site:
        with pytest.raises(LoginFailed, match="returned False"):
            Crawler(site.url("/"), login=lambda s: False, progress=False).run()
        with pytest.raises(LoginFailed, match="raised"):
            Crawler(site.url("/"), login=lambda s: 1 / 0, progress=False).run()
        with pytest.raises(LoginFailed, match="outside the crawl's scope"):
            Crawler(
                site.url("/"), login=lambda s: s.get("http://other.test/"), progress=False
            ).run()
        assert site.served == [] and site.anonymous == []


def test_concurrent_expiry_logs_in_once(tmp_path: Path) -> None:
    """Four workers meet the expired session at once: one logs in again, the others wait
    for it and fetch again."""

    def end_session() -> None:
        with site.lock:
            site.sessions.clear()

    # The session ends once, when all four are in flight: each clearing it after the gate
    # could end the new session a fast re-login made meanwhile.
    gate = threading.Barrier(4, action=end_session, timeout=20)
    first_wave: set[str] = set()
    wave_lock = threading.Lock()

    def hold(path: str) -> None:
        if not path.startswith("/p"):
            return
        with wave_lock:
            if len(first_wave) >= 4 or path in first_wave:
                return
            first_wave.add(path)
        gate.wait()  # all four in flight together; the session ends under them

    out = tmp_path / "pages.jsonl"
    with LoginSite(pages=8) as site:
        site.hold = hold
        Crawler(
            site.url("/"), output=str(out), concurrency=4, per_host=4, **login_options(site)
        ).run()
    assert site.logins == 2
    assert sorted(p for p, _ in site.served) == sorted(protected(site))
    assert {r["status"] for r in records(out)} == {200}


def test_a_session_that_never_holds_stops_the_crawl(tmp_path: Path) -> None:
    """Logged in again, pages still answer with the login page: each is tried again
    later, then the crawl stops with LoginFailed once MAX_RELOGINS URLs in a row met it,
    not a loop of logins."""
    with LoginSite(pages=6, expire_after=0) as site:
        starts = [site.url(f"/p{i}") for i in range(6)]
        crawler = Crawler(
            starts, output=str(tmp_path / "o.jsonl"), concurrency=1, retries=0,
            **login_options(site),
        )  # fmt: skip
        with pytest.raises(LoginFailed, match=r"expired at 4 URLs in a row"):
            crawler.run()
        assert site.logins <= 1 + 4 * 2  # each URL: two re-logins at most
        assert site.served == []


# -- the command line ----------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_cli_login_with_the_password_from_the_environment(tmp_path: Path) -> None:
    """``--form password`` reads SHOAL_FORM_PASSWORD: the secret is in no output, log,
    WARC record or state file, nor in the command line (ps)."""
    out = tmp_path / "pages.jsonl"
    warc = tmp_path / "pages.warc.gz"
    log = tmp_path / "crawl.log"
    with LoginSite(pages=3, expire_after=2) as site:
        done = run_cli(
            "crawl", site.url("/"), "-o", str(out), "-o", str(warc), "--log-file", str(log),
            "-vv", "--login", site.url("/login"), "--form", f"user={USER}", "--form",
            "password", "--login-check", f"Welcome, {USER}", "--concurrency", "1",
            "--no-progress", env={"SHOAL_FORM_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert sorted(p for p, _ in site.served) == sorted(protected(site))
        assert site.logins == 2
    import gzip

    state = Path(f"{out}.state.sqlite")
    blobs = {
        "stdout": done.stdout.encode(),
        "stderr": done.stderr.encode(),
        "log": log.read_bytes(),
        "jsonl": out.read_bytes(),
        "warc": gzip.decompress(warc.read_bytes()),
        "state": state.read_bytes(),
    }
    for name, blob in blobs.items():
        assert PASSWORD.encode() not in blob, name
    # Nor any login request in the WARC: the crawl's pages only.
    assert b"/session" not in blobs["warc"]


def test_cli_wrong_password_exits_6(tmp_path: Path) -> None:
    out = tmp_path / "pages.jsonl"
    with LoginSite() as site:
        done = run_cli(
            "crawl", site.url("/"), "-o", str(out), "--login", site.url("/login"),
            "--form", f"user={USER}", "--form", "password=wrong-one", "--no-progress",
        )  # fmt: skip
        assert site.served == [] and site.anonymous == []
    assert done.returncode == 6, done.stderr
    assert "login failed" in done.stderr
    assert "wrong-one" not in done.stderr and "wrong-one" not in done.stdout


def test_cli_form_value_missing_is_a_usage_error(tmp_path: Path) -> None:
    with LoginSite() as site:
        done = run_cli(
            "crawl", site.url("/"), "-o", str(tmp_path / "o.jsonl"), "--login",
            site.url("/login"), "--form", "password", "--no-progress",
        )  # fmt: skip
        assert site.site.paths() == {}
    assert done.returncode == 2
    assert "SHOAL_FORM_PASSWORD" in done.stderr


def test_kill_9_and_resume_keep_the_session(tmp_path: Path) -> None:
    """The crawl is killed with a page in flight; the resumed one finds the session in the
    state's cookie jar still logged in (the login page shows no form): no new login."""
    blocked = threading.Event()
    release = threading.Event()

    def hold(path: str) -> None:
        if path == "/p2" and not blocked.is_set():
            blocked.set()
            release.wait(20)

    out = tmp_path / "pages.jsonl"
    state = Path(f"{out}.state.sqlite")
    with LoginSite(pages=5) as site:
        site.hold = hold
        args = [
            "crawl", site.url("/"), "-o", str(out), "--concurrency", "1", "-q",
            "--login", site.url("/login"), "--form", f"user={USER}", "--form", "password",
            "--login-check", f"Welcome, {USER}", "--no-progress",
        ]  # fmt: skip
        env = {**os.environ, "SHOAL_FORM_PASSWORD": PASSWORD}
        proc = subprocess.Popen([sys.executable, "-m", "shoal", *args], env=env)
        try:
            assert blocked.wait(60)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the committed pages carry the jar
                if state.exists() and "sid" in _stored_cookies(state):
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
        assert site.logins == 1
        done = run_cli(*args, env={"SHOAL_FORM_PASSWORD": PASSWORD})
        assert done.returncode == 0, done.stderr
        assert site.logins == 1  # the session survived the kill
        assert site.anonymous == []
    assert PASSWORD.encode() not in state.read_bytes()
    got = {r["url"]: r["status"] for r in records(out)}
    assert {u for u, s in got.items() if s == 200} >= {site.url(p) for p in protected(site)}


def test_resume_after_the_session_expired_logs_in_again(tmp_path: Path) -> None:
    """The jar's session was ended by the server meanwhile: the resumed crawl sees the
    login form and logs in again before any page."""
    out = tmp_path / "pages.jsonl"
    with LoginSite(pages=4) as site:
        Crawler(site.url("/"), output=str(out), max_pages=2, **login_options(site)).run()
        assert site.logins == 1
        with site.lock:
            site.sessions.clear()
        Crawler(site.url("/"), output=str(out), max_pages=10, **login_options(site)).run()
        assert site.logins == 2
        assert sorted(p for p, _ in site.served) == sorted(protected(site))


def _stored_cookies(state: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return [json.loads(d)["name"] for (d,) in conn.execute("SELECT data FROM cookies")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_the_resume_command_shows_no_form_value() -> None:
    from shoal.cli._commands import redacted_args

    shown, redacted = redacted_args(
        ["crawl", "http://x.test/", "--form", "password=hunter2", "--form=user=alice"]
    )
    assert redacted
    assert "hunter2" not in " ".join(shown) and "alice" not in " ".join(shown)
    assert re.search(r"--form password\b", " ".join(shown))


# -- hostile login pages -------------------------------------------------------------------


def _login_form(action: str, extra: str = "") -> str:
    return (
        f"<html><body><form method=post action='{action}'>{extra}"
        "<input name=user><input type=password name=password></form></body></html>"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/off", "redirected to http://localhost"),  # another host: out of scope
        ("/loop", "redirect_loop"),  # a redirect loop: bounded
        ("/js", "not an http"),  # a javascript: action
        ("/many", "more than 1000"),  # a form bomb
        ("/post-away", "another origin"),  # a 307 would carry the password elsewhere
        ("/huge", "too_large"),  # past --max-bytes
    ],
)
def test_hostile_login_pages(tmp_path: Path, path: str, message: str) -> None:
    """Each fails the login with its reason, sends the form nowhere it was not meant to
    go, and crawls nothing."""
    with Site() as other:
        other.fallback = Reply(200, "here")
        port = other.origin.rsplit(":", 1)[1]
        site = Site(
            {
                "/robots.txt": Reply(404, ""),
                "/off": Reply(302, "", headers={"Location": f"http://localhost:{port}/login"}),
                "/loop": Reply(302, "", headers={"Location": "/loop2"}),
                "/loop2": Reply(302, "", headers={"Location": "/loop"}),
                "/js": _login_form("javascript:alert(1)"),
                "/many": _login_form("/s", "<input name=f value=1>" * 1500),
                "/post-away": _login_form("/s"),
                "/s": Reply(307, "", headers={"Location": other.url("/steal")}),
                "/huge": _login_form("/s", "x" * 200_000),
            }
        )
        site.fallback = Reply(200, html("page"))
        with site:
            crawler = Crawler(
                site.url("/"), login=site.url(path), form={"password": PASSWORD},
                output=str(tmp_path / "o.jsonl"), progress=False, max_bytes=100_000,
            )  # fmt: skip
            with pytest.raises(LoginFailed, match=message):
                crawler.run()
            assert site.count("/") == 0
            assert site.count("/robots.txt") == 0
        assert other.posts == []


def test_redis_workers_share_the_session(redis_server: Any, tmp_path: Path) -> None:
    """Worker a logs in and stops (--max-pages); worker b joins later, finds the session
    in the shared jar still logged in, submits no form, and crawls the rest with it."""
    with LoginSite(pages=4) as site:
        common = dict(redis=redis_server.url, crawl_id="login", **login_options(site))
        a = Crawler(site.url("/"), output=str(tmp_path / "a.jsonl"), max_pages=2,
                    worker_id="a", **common)  # fmt: skip
        a.run()
        assert site.logins == 1
        b = Crawler(site.url("/"), output=str(tmp_path / "b.jsonl"), worker_id="b", **common)
        b.run()
        assert site.logins == 1 and site.attempts == 1
        assert site.anonymous == []
        assert {p for p, _ in site.served} == protected(site)
    got = records(tmp_path / "a.jsonl") + records(tmp_path / "b.jsonl")
    assert sorted(r["url"] for r in got) == sorted(site.url(p) for p in protected(site))
    assert {r["status"] for r in got} == {200}


def test_redis_workers_meeting_one_expiry_log_in_once(redis_server: Any, tmp_path: Path) -> None:
    """The session ends under a page of worker a, which logs in again. Worker b's next
    page still carries the old session (its jar reads the shared one at most every 2 s;
    the crawl takes about 1.5 s): before logging in, b reads the shared jar again, finds
    a's new session, and the login page shows it no form: nothing more is posted. (The
    --delay lets the two workers take turns on the one host.)"""
    lock = threading.Lock()
    seen = {"b": 0, "cleared": 0}

    def reply(req: Request) -> Reply:
        who = req.headers.get("X-Worker", "")
        page = req.path.startswith("/p")
        with lock:
            clear = page and who == "a" and seen["b"] >= 1 and not seen["cleared"]
            if clear:
                seen["cleared"] = 1
        if clear:
            with site.lock:
                site.sessions.clear()
        answer = site.reply(req)
        if page and who == "b" and answer.status == 200:
            with lock:
                seen["b"] += 1
        return answer

    errors: list[BaseException] = []
    with LoginSite(pages=30) as site:
        site.site.fallback = reply

        def worker(name: str) -> None:
            try:
                Crawler(
                    site.url("/"), output=str(tmp_path / f"{name}.jsonl"), worker_id=name,
                    redis=redis_server.url, crawl_id="expiry", concurrency=1, delay=0.05,
                    headers={"X-Worker": name}, **login_options(site),
                ).run()  # fmt: skip
            except BaseException as exc:  # reported below
                errors.append(exc)

        a = threading.Thread(target=worker, args=("a",))
        a.start()
        deadline = time.monotonic() + 30
        while site.logins < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        b = threading.Thread(target=worker, args=("b",))
        b.start()
        a.join(90)
        b.join(90)
        assert not errors, errors
        assert seen["cleared"], (seen, site.site.paths())
        assert site.logins == 2 and site.attempts == 2
        assert {p for p, _ in site.served} == protected(site)
    got = records(tmp_path / "a.jsonl") + records(tmp_path / "b.jsonl")
    assert sorted(r["url"] for r in got) == sorted(site.url(p) for p in protected(site))
    assert {r["status"] for r in got} == {200}


def test_cli_login_from_a_config_file(tmp_path: Path) -> None:
    """The config file takes the login options under their command-line names; the
    password stays in the environment."""
    out = tmp_path / "pages.jsonl"
    config = tmp_path / "crawl.toml"
    with LoginSite(pages=2) as site:
        config.write_text(
            f'urls = ["{site.url("/")}"]\n'
            f'login = "{site.url("/login")}"\n'
            f'form = ["user={USER}", "password"]\n'
            f'login-check = "Welcome, {USER}"\n'
        )
        done = run_cli(
            "crawl", "--config", str(config), "-o", str(out), "--no-progress",
            env={"SHOAL_FORM_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert site.logins == 1
        assert sorted(p for p, _ in site.served) == sorted(protected(site))


@pytest.mark.parametrize(
    "response",
    [
        # cut short: 10 bytes of a promised 1000, then the connection closes
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000\r\n\r\n<form><inp",
        # framing trick: two Content-Length values that disagree
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n<form",
        # a redirect to another scheme
        b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/login\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_a_hostile_raw_login_page(tmp_path: Path, response: bytes) -> None:
    """A login page no library would send fails the login; nothing is crawled."""
    from rawserver import raw_servers, respond_once

    with raw_servers() as start:
        server = start(respond_once(response))
        crawler = Crawler(
            server.url + "/", login=server.url + "/login", form={"password": PASSWORD},
            output=str(tmp_path / "o.jsonl"), progress=False, retries=0,
        )  # fmt: skip
        with pytest.raises(LoginFailed, match=r"^login: "):
            crawler.run()
        assert server.connections >= 1
    out = tmp_path / "o.jsonl"
    assert not out.exists() or records(out) == []


# -- review of the login (issue 20): where the password goes, what the login URL is ------


def test_a_login_form_sent_to_another_origin_is_refused(tmp_path: Path) -> None:
    """The form's action names another port of the same host (another origin, as http
    is to https): the password is not sent there, by the declarative login nor by a
    hook's submit; the message names the action, not the password."""
    with Site() as other:
        other.fallback = Reply(200, html("x", extra="Welcome"))
        site = Site({"/robots.txt": Reply(404, ""), "/login": _login_form(other.url("/steal"))})
        site.fallback = Reply(200, html("page"))

        def hook(session: LoginSession) -> bool:
            page = session.get(site.url("/login"))
            session.submit(ShoalRequest.from_form(page, {"password": PASSWORD}))
            return True

        with site:
            for login in (site.url("/login"), hook):
                form = {"password": PASSWORD} if isinstance(login, str) else None
                crawler = Crawler(
                    site.url("/"), login=login, form=form,
                    output=str(tmp_path / "o.jsonl"), progress=False, fresh=True,
                )  # fmt: skip
                with pytest.raises(LoginFailed, match="origin") as caught:
                    crawler.run()
                assert other.url("/steal") in str(caught.value)
                assert PASSWORD not in str(caught.value)
            assert site.count("/") == 0
        assert other.paths() == {} and other.posts == []


def test_a_get_login_form_is_refused_and_messages_hold_no_query(tmp_path: Path) -> None:
    """A login form with method=get would put the password in a URL (logs, history, the
    server's access log): refused before it is sent. A hook's URL with a secret in its
    query is not shown in the message either."""
    site = Site(
        {
            "/robots.txt": Reply(404, ""),
            "/login": "<form method=get action=/session><input name=user>"
            "<input type=password name=password></form>",
        }
    )

    def fallback(req: Request) -> Reply:
        if req.path.startswith("/off"):
            return Reply(302, "", headers={"Location": "http://localhost:9/x?key=K3Y"})
        return Reply(200, html("no", extra="bad"))

    site.fallback = fallback

    def hook(session: LoginSession) -> bool:
        session.get(site.url("/off?token=T0KEN"))
        return True

    with site:
        crawler = Crawler(
            site.url("/"), login=site.url("/login"), form={"user": USER, "password": PASSWORD},
            login_check="Welcome", output=str(tmp_path / "o.jsonl"), progress=False,
        )  # fmt: skip
        with pytest.raises(LoginFailed, match="submits with GET") as caught:
            crawler.run()
        assert PASSWORD not in str(caught.value)
        assert not any(p.startswith("/session") for p in site.paths())
        crawler = Crawler(
            site.url("/"), login=hook, output=str(tmp_path / "o.jsonl"), progress=False,
            fresh=True,
        )  # fmt: skip
        with pytest.raises(LoginFailed, match="not followed") as caught:
            crawler.run()
        assert "T0KEN" not in str(caught.value) and "K3Y" not in str(caught.value)
        assert site.count("/") == 0


class QuerySite:
    """A PHP-style site: every page is ``/index.php?p=N``, the login page
    ``/index.php?action=login``; a session ends after ``expire_after`` pages, and then a
    page redirects to the login page."""

    def __init__(self, pages: int, expire_after: int) -> None:
        self.pages = pages
        self.expire_after = expire_after
        self.lock = threading.Lock()
        self.sessions: dict[str, int] = {}
        self.counter = itertools.count(1)
        self.served: list[str] = []
        self.site = Site({"/robots.txt": Reply(404, "")})
        self.site.fallback = self.reply

    def reply(self, req: Request) -> Reply:
        query = {k: v[0] for k, v in parse_qs(req.path.partition("?")[2]).items()}
        sid = (req.headers.get("Cookie") or "").partition("sid=")[2].split(";")[0]
        if query.get("action") == "login":
            return Reply(
                body="<form method=post action='/index.php?action=dologin'><input name=user>"
                "<input type=password name=pw></form>"
            )
        if query.get("action") == "dologin":
            with self.lock:
                sid = f"s{next(self.counter)}"
                self.sessions[sid] = 0
            links = (f"/index.php?p={i}" for i in range(self.pages))
            return Reply(
                body=html("welcome", *links, extra="Welcome"),
                headers={"Set-Cookie": f"sid={sid}; Path=/"},
            )
        with self.lock:
            if self.sessions.get(sid, self.expire_after) >= self.expire_after:
                self.sessions.pop(sid, None)
                return Reply(302, "", headers={"Location": "/index.php?action=login"})
            self.sessions[sid] += 1
            self.served.append(query.get("p", ""))
        links = (f"/index.php?p={i}" for i in range(self.pages))
        return Reply(body=html("page", *links, extra="secret"))


def test_a_login_url_with_a_query_is_not_every_page(tmp_path: Path) -> None:
    """``/index.php?action=login`` is the login page, ``/index.php?p=3`` is not: the
    expiry is noticed, the crawl logs in again, and every page is recorded as the
    logged-in user's (not the login form recorded in its place)."""
    out = tmp_path / "o.jsonl"
    q = QuerySite(pages=6, expire_after=2)
    with q.site:
        Crawler(
            q.site.url("/index.php?p=0"), login=q.site.url("/index.php?action=login"),
            form={"user": "a", "pw": "b"}, login_check="Welcome", progress=False,
            concurrency=1, output=str(out),
        ).run()  # fmt: skip
    got = records(out)
    assert sorted(r["url"].rsplit("=", 1)[1] for r in got) == [str(i) for i in range(6)]
    assert all("action=login" not in r.get("final_url", r["url"]) for r in got), got
    assert sorted(set(q.served)) == [str(i) for i in range(6)]
    assert {r["status"] for r in got} == {200}


class TrickySite(LoginSite):
    """``/admin`` redirects to the login page even the logged-in user (not theirs to
    see); ``/about`` shows a login form in its sidebar to everyone; ``/logout`` ends the
    session; ``/`` links them all."""

    def reply(self, req: Request) -> Reply:
        path = req.path.split("?", 1)[0]
        if path == "/admin":
            return Reply(302, "", headers={"Location": "/login?next=/admin"})
        if path == "/about":
            return Reply(
                body="<html><body><p>About us</p><aside><form method=post action=/session>"
                "<input name=user><input type=password name=password></form></aside>"
                "<a href=/p0>p0</a></body></html>"
            )
        if path == "/logout":
            with self.lock:
                self.sessions.pop(self.cookies(req).get("sid", ""), None)
            return Reply(body=html("bye"))
        reply = super().reply(req)
        if path == "/" and reply.status == 200:
            return Reply(body=html("home", "/admin", "/about", "/logout", "/p0", "/p1", "/p2"))
        return reply


def test_a_forbidden_page_a_sidebar_form_and_a_logout_do_not_stop_the_crawl(
    tmp_path: Path,
) -> None:
    """One page answering with the login page while the session is alive is that page's
    answer (``login_required``), a login form beside a page's content is no expiry, and
    a logout (followed: --follow-logout) is followed by a login: the crawl goes on and
    gets every page."""
    out = tmp_path / "o.jsonl"
    with TrickySite(pages=3) as site:
        result = Crawler(
            site.url("/"), output=str(out), concurrency=1, follow_logout=True,
            **login_options(site),
        ).run()  # fmt: skip
    by = {r["url"].rsplit("/", 1)[1]: r for r in records(out)}
    assert by["admin"]["error"] == "login_required", by["admin"]
    assert "login page" in by["admin"]["error_detail"]
    assert by["about"]["status"] == 200 and not by["about"].get("error"), by["about"]
    assert by["logout"]["status"] == 200
    for name in ("", "p0", "p1", "p2"):
        assert by[name]["status"] == 200 and not by[name].get("error"), by[name]
    assert {p for p, _ in site.served} == protected(site)
    assert result.failed == 1


def test_a_401_with_the_login_form_is_an_expiry(tmp_path: Path) -> None:
    """The expired session answered in place with 401 and the login form: logged in
    again, the page fetched again, recorded as the logged-in user's."""

    class Site401(LoginSite):
        def reply(self, req: Request) -> Reply:
            reply = super().reply(req)
            if reply.status == 302 and "/login?next=" in reply.headers.get("Location", ""):
                return Reply(401, self.form("tokX"))
            return reply

    out = tmp_path / "o.jsonl"
    with Site401(pages=6, expire_after=2) as site:
        Crawler(site.url("/"), output=str(out), concurrency=1, **login_options(site)).run()
    assert {r["status"] for r in records(out)} == {200}
    assert sorted(p for p, _ in site.served) == sorted(protected(site))
    assert site.logins >= 3


def test_short_sessions_shared_by_many_workers(tmp_path: Path) -> None:
    """Four workers, a session good for two pages: a refetch that meets a fresh session
    the others used up goes back through a login (later, bounded), not a stop."""
    out = tmp_path / "o.jsonl"
    with LoginSite(pages=24, expire_after=2) as site:
        Crawler(
            site.url("/"), output=str(out), concurrency=4, per_host=4, retries=4,
            **login_options(site),
        ).run()  # fmt: skip
    got = records(out)
    assert len(got) == 25
    assert all(r["status"] == 200 or r.get("error") == "login_required" for r in got)


def test_a_hanging_relogin_hook_does_not_hold_the_workers_for_ever(tmp_path: Path) -> None:
    """The re-login hook hangs: the worker waiting for it gives up after the crawl's
    timeout times (MAX_LOGIN_REQUESTS + 1) and the crawl stops with LoginFailed."""
    release = threading.Event()
    abandoned = threading.Event()  # the hanging hook, let go, has ended
    calls = itertools.count(1)

    def hook(session: LoginSession) -> bool:
        if next(calls) == 1:
            page = session.get(site.url("/login"))
            session.submit(ShoalRequest.from_form(page, {"user": USER, "password": PASSWORD}))
            return True
        try:
            release.wait(30)  # bounded: the test releases it once the crawl failed
            return False  # nothing sent: no connection of it outlives the test
        finally:
            abandoned.set()

    class Released(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "re-login has run for more than" in record.getMessage():
                release.set()

    handler = Released()
    shoal_logger = logging.getLogger("shoal")
    level = shoal_logger.level
    shoal_logger.setLevel(logging.DEBUG)  # the crawl's stop is logged at debug
    shoal_logger.addHandler(handler)
    try:
        with LoginSite(pages=6, expire_after=0) as site:
            crawler = Crawler(
                [site.url(f"/p{i}") for i in range(4)], login=hook, progress=False,
                concurrency=2, per_host=2, timeout=0.1, output=str(tmp_path / "o.jsonl"),
            )  # fmt: skip
            with pytest.raises(LoginFailed, match=r"re-login has run for more than 2\.1 s"):
                crawler.run()
            release.set()
            # The abandoned hook ends before its site does (no request of it outlives
            # the test).
            assert abandoned.wait(30)
    finally:
        shoal_logger.removeHandler(handler)
        shoal_logger.setLevel(level)
        release.set()


def test_cli_two_form_fields_reading_one_variable_are_refused(tmp_path: Path) -> None:
    with LoginSite() as site:
        done = run_cli(
            "crawl", site.url("/"), "-o", str(tmp_path / "o.jsonl"), "--login",
            site.url("/login"), "--form", "user-name", "--form", "user_name", "--no-progress",
            env={"SHOAL_FORM_USER_NAME": "bob"},
        )  # fmt: skip
        assert site.site.paths() == {}
    assert done.returncode == 2, done.stderr
    assert "SHOAL_FORM_USER_NAME" in done.stderr and "bob" not in done.stderr
