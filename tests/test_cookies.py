"""The crawl's cookie jar (issue 20): RFC 6265 storage and matching, public suffixes,
bounds, cookies.txt in and out, and crawls on real servers: a consent wall, hostile
Set-Cookie lines, two hosts under a public suffix, --no-cookies, a resume after kill -9
and two Redis workers sharing one jar."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rawserver import raw_servers, read_request
from shoal import Crawler, UsageError
from shoal.crawler._cookies import (
    MAX_COOKIES,
    MAX_COOKIES_PER_SITE,
    Cookie,
    CookieJar,
    CookieSync,
    FetchCookies,
    parse_cookie_date,
    read_cookies_file,
    with_cookie,
)
from shoal.http import HTTPClient, Resolver
from sites import Reply, Request, Site, html


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def jar_at(clock: Clock | None = None) -> CookieJar:
    return CookieJar(clock=clock or Clock())


# -- the jar: RFC 6265 ---------------------------------------------------------------------


def test_host_only_and_domain_cookies() -> None:
    jar = jar_at()
    assert jar.receive("http://www.example.com/a", "h=1\nd=2; Domain=.Example.COM")
    assert jar.header_for("http://www.example.com/") == "h=1; d=2"
    assert jar.header_for("http://shop.example.com/") == "d=2"  # host-only stays home
    assert jar.header_for("http://example.com/") == "d=2"
    assert jar.header_for("http://notexample.com/") is None
    assert jar.header_for("http://www.example.com.evil.test/") is None
    # Another domain, or a sibling: refused.
    assert not jar.receive("http://www.example.com/", "x=1; Domain=other.com")
    assert not jar.receive("http://www.example.com/", "x=1; Domain=shop.example.com")
    assert "x=" not in (jar.header_for("http://shop.example.com/") or "")


def test_paths_match_by_segment_longest_first() -> None:
    jar = jar_at()
    jar.receive("http://h.test/docs/page", "a=1")  # default path: /docs
    jar.receive("http://h.test/", "b=2; Path=/docs/api")
    jar.receive("http://h.test/", "c=3; Path=nope")  # not starting "/": the default, /
    assert jar.header_for("http://h.test/docs/api/x") == "b=2; a=1; c=3"
    assert jar.header_for("http://h.test/docs") == "a=1; c=3"
    assert jar.header_for("http://h.test/docsx") == "c=3"


def test_secure_cookies_only_from_and_to_https() -> None:
    jar = jar_at()
    assert not jar.receive("http://h.test/", "s=1; Secure")  # an insecure origin: refused
    assert jar.receive("https://h.test/", "s=2; Secure; HttpOnly")
    assert jar.header_for("https://h.test/") == "s=2"
    assert jar.header_for("http://h.test/") is None  # never over http
    assert not jar.receive("https://h.test/", "__Secure-a=1")
    assert not jar.receive("https://h.test/", "__Host-a=1; Secure; Path=/x")
    assert not jar.receive("https://www.h.test/", "__Host-a=1; Secure; Domain=h.test")
    assert jar.receive("https://h.test/", "__Host-a=1; Secure; Path=/")


def test_expiry_max_age_wins_and_deletion() -> None:
    clock = Clock()
    jar = jar_at(clock)
    jar.receive("http://h.test/", "a=1; Max-Age=60; Expires=Wed, 09 Jun 1999 10:18:14 GMT")
    jar.receive("http://h.test/", "b=1; Expires=Wed, 09 Jun 2027 10:18:14 GMT")
    jar.receive("http://h.test/", "c=1; Expires=yesterday-ish")  # unreadable: a session cookie
    assert jar.header_for("http://h.test/") == "a=1; b=1; c=1"
    clock.now += 61
    assert jar.header_for("http://h.test/") == "b=1; c=1"
    assert jar.receive("http://h.test/", "b=; Max-Age=0")  # a server deleting its cookie
    assert jar.header_for("http://h.test/") == "c=1"
    assert len(jar) == 1


def test_cookie_dates_by_the_rfc_algorithm() -> None:
    assert parse_cookie_date("Wed, 09 Jun 2021 10:18:14 GMT") == 1623233894.0
    assert parse_cookie_date("Wednesday, 09-Jun-21 10:18:14 GMT") == 1623233894.0
    assert parse_cookie_date("Jun 9 10:18:14 2021") == 1623233894.0
    for bad in ("", "tomorrow", "Wed, 32 Jun 2021 10:18:14 GMT", "09 Jun 1600 10:00:00",
                "09 Jun 2021 25:00:00", "x" * 100_000, "1 " * 10_000):  # fmt: skip
        assert parse_cookie_date(bad) is None


def test_public_suffixes_and_ip_hosts() -> None:
    jar = jar_at()
    for url, line in [
        ("http://shop.example.co.uk/", "a=1; Domain=co.uk"),
        ("http://me.github.io/", "a=1; Domain=github.io"),
        ("http://www.example.com/", "a=1; Domain=com"),
        ("http://127.0.0.1/", "a=1; Domain=0.0.1"),
        ("http://127.0.0.1/", "a=1; Domain=1"),
    ]:
        assert not jar.receive(url, line), line
    assert len(jar) == 0
    assert jar.receive("http://shop.example.co.uk/", "ok=1; Domain=example.co.uk")
    assert jar.header_for("http://www.example.co.uk/") == "ok=1"
    assert jar.header_for("http://other.co.uk/") is None
    # A public suffix that is the host itself: a host-only cookie (RFC 6265 5.3 step 5).
    assert jar.receive("http://github.io/", "own=1; Domain=github.io")
    assert jar.header_for("http://github.io/") == "own=1"
    assert jar.header_for("http://me.github.io/") is None
    assert jar.receive("http://127.0.0.1:8000/", "ip=1; Domain=127.0.0.1")
    assert jar.header_for("http://127.0.0.1:9/") == "ip=1"  # ports are not kept apart
    assert jar.header_for("http://1.127.0.0.1/") is None


def test_hostile_lines_are_bounded() -> None:
    jar = jar_at()
    assert not jar.receive("http://h.test/", "big=" + "v" * 4094)  # 4097 bytes: too big
    assert jar.receive("http://h.test/", "big=" + "v" * 4093)
    assert not jar.receive("http://h.test/", "x=1; Path=/" + "p" * 9000)
    for bad in ("novalue", "=1", "a\x01=1", "a=1\x00", " ; ; ", ""):
        assert not jar.receive("http://h.test/", bad), repr(bad)
    # Hundreds of cookies for one site: the oldest go past 180.
    jar.receive("http://h.test/", "\n".join(f"n{i}=1" for i in range(200)))
    assert 0 < len(jar) <= 200
    for i in range(3):
        jar.receive("http://h.test/", "\n".join(f"m{i}x{j}=1" for j in range(200)))
    assert len(jar) == MAX_COOKIES_PER_SITE
    assert "m2x199=1" in (jar.header_for("http://h.test/") or "")
    # A site's cookies at their largest: the Cookie header sent stays within 64 KB.
    jar.receive("http://h.test/", "\n".join(f"w{j}=" + "v" * 4000 for j in range(180)))
    sent = jar.header_for("http://h.test/") or ""
    assert 60_000 < len(sent) <= 64 * 1024
    # Thousands across sites: 3000 in all.
    for site in range(40):
        jar.receive(f"http://s{site}.test/", "\n".join(f"c{j}=1" for j in range(100)))
    assert len(jar) == MAX_COOKIES


def test_changes_are_what_the_state_stores() -> None:
    clock = Clock()
    jar = jar_at(clock)
    jar.receive("http://h.test/", "a=1; Max-Age=600")
    ((key, data),) = jar.changes()
    assert key == "h.test\t/\ta" and json.loads(data or "")["value"] == "1"
    assert not jar.dirty and jar.changes() == []
    clock.now += 5
    jar.receive("http://h.test/", "a=1; Max-Age=600")  # only the expiry moved a little
    assert not jar.dirty
    jar.receive("http://h.test/", "a=2; Max-Age=600")
    assert [k for k, _ in jar.changes()] == [key]
    jar.receive("http://h.test/", "a=; Max-Age=0")
    assert jar.changes() == [(key, None)]


# -- cookies.txt -----------------------------------------------------------------------


def test_cookies_txt_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(
        "# Netscape HTTP Cookie File\n"
        "\n"
        ".example.com\tTRUE\t/\tFALSE\t0\tsid\tabc\n"
        "#HttpOnly_www.example.com\tFALSE\t/app\tTRUE\t4102444800\ttok\txyz\n"
        "old.example.com\tFALSE\t/\tFALSE\t1000\tgone\t1\n"  # expired: skipped
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tempty\n"  # six fields: an empty value
    )
    cookies = read_cookies_file(str(src))
    assert [(c.name, c.domain, c.host_only, c.http_only) for c in cookies] == [
        ("sid", "example.com", False, False),
        ("tok", "www.example.com", True, True),
        ("empty", "127.0.0.1", True, False),
    ]
    jar = jar_at()
    jar.add(cookies)
    assert jar.header_for("https://www.example.com/app/x") == "tok=xyz; sid=abc"
    assert jar.header_for("http://www.example.com/app/x") == "sid=abc"
    out = tmp_path / "out.txt"
    assert jar.save(str(out)) == 3
    assert out.stat().st_mode & 0o777 == 0o600
    again = read_cookies_file(str(out))
    assert {(c.name, c.value, c.domain, c.path, c.host_only, c.secure, c.http_only)
            for c in again} == {(c.name, c.value, c.domain, c.path, c.host_only, c.secure,
                                 c.http_only) for c in cookies}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("example.com\tTRUE\t/\tFALSE\n", "line 2: not a Netscape cookies.txt line"),
        ("example.com\tYES\t/\tFALSE\t0\ta\tb\n", "line 2: the 2nd and 4th fields"),
        ("example.com\tTRUE\t/\tFALSE\tsoon\ta\tb\n", "line 2: the expiry 'soon'"),
        ("example.com\tTRUE\tx\tFALSE\t0\ta\tb\n", "line 2: a cookie needs a domain"),
        (".co.uk\tTRUE\t/\tFALSE\t0\ta\tb\n", "line 2: a cookie for the public suffix 'co.uk'"),
    ],
)
def test_a_bad_cookies_file_names_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.txt"
    path.write_text("# Netscape HTTP Cookie File\n" + line)
    with pytest.raises(UsageError, match=message):
        read_cookies_file(str(path))
    with pytest.raises(UsageError, match=message):  # Crawler() fails before any work
        Crawler("http://127.0.0.1:9/", cookies=str(path))


# -- crawls ------------------------------------------------------------------------------


def consent_site() -> tuple[Site, list[tuple[str, str | None]]]:
    """Every page sends a visitor without the consent cookie to set it and come back
    (the same URL); with it, the pages link on; a later page without it is a 403."""
    seen: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def page(links: list[str]) -> Any:
        def reply(req: Request) -> Reply:
            cookie = req.headers.get("Cookie")
            with lock:
                seen.append((req.path, cookie))
            if cookie is None or "consent=yes" not in cookie:
                if req.path != "/":
                    return Reply(403, "no consent")
                return Reply(302, "", {"Location": req.path, "Set-Cookie": "consent=yes; Path=/"})
            return Reply(body=html(req.path, *links))

        return reply

    site = Site()
    site.routes["/"] = page(["/a", "/b"])
    site.routes["/a"] = page(["/c"])
    site.routes["/b"] = page(["/c"])
    site.routes["/c"] = page([])
    site.routes["/robots.txt"] = Reply(404, "none")
    return site, seen


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_consent_wall_is_a_visit_not_a_redirect_loop(tmp_path: Path) -> None:
    site, seen = consent_site()
    out = tmp_path / "pages.jsonl"
    with site:
        Crawler(site.url("/"), output=str(out), progress=False).run()
    got = {r["url"].removeprefix(site.origin): (r["status"], r.get("error")) for r in records(out)}
    assert got == {"/": (200, None), "/a": (200, None), "/b": (200, None), "/c": (200, None)}
    assert seen[:2] == [("/", None), ("/", "consent=yes")]
    assert all(cookie == "consent=yes" for path, cookie in seen[1:])


def test_no_cookies_sends_none_and_keeps_none(tmp_path: Path) -> None:
    site, seen = consent_site()
    out = tmp_path / "pages.jsonl"
    with site:
        Crawler(site.url("/"), output=str(out), progress=False, cookies=False).run()
    (record,) = records(out)
    assert record["error"] == "redirect_loop"
    assert seen == [("/", None)]


def test_hostile_set_cookie_lines(tmp_path: Path) -> None:
    """A raw server sends what no library would: a huge line, hundreds of lines, cookies
    for a public suffix, another domain, an IP's parent, a Secure one over http, weird
    dates; only the well-formed ones for this host come back, and no value reaches the
    records."""
    cookies_seen: list[bytes] = []
    lines = [
        b"Set-Cookie: ok=1; Path=/",
        b"Set-Cookie: huge=" + b"x" * 7000,
        *(b"Set-Cookie: many%d=1; Path=/many" % i for i in range(150)),
        b"Set-Cookie: psl=1; Domain=co.uk",
        b"Set-Cookie: other=1; Domain=example.com",
        b"Set-Cookie: parent=1; Domain=0.0.1",
        b"Set-Cookie: sec=1; Secure",
        b"Set-Cookie: weird=1; Expires=Mon, 99 Foo 99999 99:99:99; Max-Age=abc; SameSite=Lax",
        b"Set-Cookie: past=1; Expires=Thu, 01 Jan 1970 00:00:01 GMT",
        b"Set-Cookie: secret=SECRETVALUE; HttpOnly",
    ]
    first = (
        b"\r\n".join(
            [
                b"HTTP/1.1 200 OK",
                b"Content-Type: text/html",
                *lines,
                b"Content-Length: 28",
                b"",
                b"",
            ]
        )
        + b'<a href="/next">next</a>    '
    )

    def script(conn: socket.socket, index: int) -> None:
        while request := read_request(conn):
            head = request.split(b"\r\n")
            cookies_seen.extend(h for h in head if h.lower().startswith(b"cookie:"))
            if head[0].startswith(b"GET / "):
                conn.sendall(first)
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nok"
                )

    out = tmp_path / "pages.jsonl"
    with raw_servers() as start:
        server = start(script)
        Crawler(server.url + "/", output=str(out), progress=False, robots=False).run()
    assert cookies_seen == [b"Cookie: ok=1; weird=1; secret=SECRETVALUE"]
    assert b"SECRETVALUE" not in out.read_bytes()
    assert [r["status"] for r in records(out)] == [200, 200]


def fake_dns(*names: str) -> Resolver:
    def lookup(host: str, port: int, *args: Any, **kw: Any) -> Any:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return socket.getaddrinfo("127.0.0.1", port, *args, **kw)

    return Resolver(lookup=lookup)


def test_a_host_cannot_set_a_cookie_for_a_public_suffix(tmp_path: Path) -> None:
    """shop.example.co.uk tries Domain=co.uk (refused: rival.co.uk never gets it) and
    www.example.co.uk sets Domain=example.co.uk (kept: shop.example.co.uk gets it); the
    server says what reached it. The names resolve to 127.0.0.1 by the client's resolver."""
    seen: dict[str, str | None] = {}

    def reply(req: Request) -> Reply:
        host, port = req.headers["Host"].split(":")
        seen[f"{host}{req.path}"] = req.headers.get("Cookie")
        if (host, req.path) == ("shop.example.co.uk", "/"):
            links = [f"http://rival.co.uk:{port}/", f"http://www.example.co.uk:{port}/"]
            return Reply(body=html("shop", *links), headers={"Set-Cookie": "wide=1; Domain=co.uk"})
        if host == "www.example.co.uk":
            return Reply(
                body=html("www", f"http://shop.example.co.uk:{port}/later"),
                headers={"Set-Cookie": "mine=1; Domain=example.co.uk"},
            )
        return Reply(body="<p>x</p>")

    site = Site()
    site.fallback = reply
    with site:
        port = site.origin.rsplit(":", 1)[1]
        client = HTTPClient(
            resolver=fake_dns("shop.example.co.uk", "rival.co.uk", "www.example.co.uk")
        )
        try:
            Crawler(
                f"http://shop.example.co.uk:{port}/",
                allow_domains=["co.uk"],
                robots=False,
                output=str(tmp_path / "pages.jsonl"),
                progress=False,
                transport=client,
            ).run()
        finally:
            client.close()
    assert seen == {
        "shop.example.co.uk/": None,
        "rival.co.uk/": None,
        "www.example.co.uk/": None,
        "shop.example.co.uk/later": "mine=1",
    }


def test_cookies_file_in_and_out_on_the_command_line(tmp_path: Path) -> None:
    got: list[str | None] = []

    def reply(req: Request) -> Reply:
        got.append(req.headers.get("Cookie"))
        return Reply(body="<p>hi</p>", headers={"Set-Cookie": "fresh=2; Max-Age=3600"})

    site = Site({"/": reply, "/robots.txt": Reply(404, "none")})
    src, saved = tmp_path / "in.txt", tmp_path / "saved.txt"
    with site:
        host = site.origin.removeprefix("http://").split(":")[0]
        src.write_text(f"#HttpOnly_{host}\tFALSE\t/\tFALSE\t0\tsid\tLOGGEDIN\n")
        out = tmp_path / "pages.jsonl"
        done = run_cli("crawl", site.url("/"), "-o", str(out), "-v", "--cookies", str(src),
                       "--save-cookies", str(saved))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert got == ["sid=LOGGEDIN"]
        text = saved.read_text()
        assert text.startswith("# Netscape HTTP Cookie File")
        assert f"#HttpOnly_{host}\tFALSE\t/\tFALSE\t0\tsid\tLOGGEDIN" in text
        assert f"{host}\tFALSE\t/\tFALSE\t" in text and "\tfresh\t2" in text
        for where in (done.stderr, out.read_text(), status_of(out)):
            assert "LOGGEDIN" not in where and "fresh=2" not in where
        # The saved file is a cookies file shoal reads back; a file that is not one is
        # never replaced.
        other = tmp_path / "notes.txt"
        other.write_text("my notes\n")
        refused = run_cli("crawl", site.url("/"), "--no-state", "--save-cookies", str(other))
        assert refused.returncode == 2 and "is not a cookies.txt" in refused.stderr
        assert other.read_text() == "my notes\n"
        bad = tmp_path / "bad.txt"
        bad.write_text("# Netscape HTTP Cookie File\nnot a cookie line\n")
        refused = run_cli("crawl", site.url("/"), "--no-state", "--cookies", str(bad))
        assert refused.returncode == 2 and f"{bad} line 2" in refused.stderr
        both = run_cli("crawl", site.url("/"), "--cookies", str(src), "--no-cookies")
        assert both.returncode == 2 and "exclude each other" in both.stderr


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def status_of(out: Path) -> str:
    done = run_cli("status", str(out))
    return done.stdout + done.stderr


def test_kill_9_and_resume_keep_the_session(tmp_path: Path) -> None:
    """The session cookie is issued once, by the first page; the crawl is killed while a
    later page is in flight, and the resumed crawl (which does not fetch the first page
    again) still sends it: it came from the state file."""
    issued = threading.Event()
    blocked = threading.Event()
    release = threading.Event()
    without: list[str] = []

    def reply(req: Request) -> Reply:
        cookie = req.headers.get("Cookie") or ""
        if req.path == "/":
            if issued.is_set():
                return Reply(500, "the session was issued already")
            issued.set()
            links = [f"/p{i}" for i in range(6)]
            return Reply(body=html("home", *links), headers={"Set-Cookie": "session=S1"})
        if cookie != "session=S1":
            without.append(req.path)
            return Reply(403, "who are you?")
        if req.path == "/p0" and not blocked.is_set():
            blocked.set()
            release.wait(10)  # until the crawl is killed
            return Reply(503, "late")
        return Reply(body=html(req.path))

    site = Site({"/robots.txt": Reply(404, "none")})
    site.fallback = reply
    out = tmp_path / "pages.jsonl"
    state = Path(f"{out}.state.sqlite")
    with site:
        args = ["crawl", site.url("/"), "-o", str(out), "--concurrency", "1", "-q"]
        proc = subprocess.Popen([sys.executable, "-m", "shoal", *args, "--no-progress"])
        try:
            assert blocked.wait(30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the first page's commit (10 ms linger)
                if state.exists() and _stored_cookies(state):
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
        assert _stored_cookies(state) == ["session"]
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
    assert without == []
    final = {r["url"]: r["status"] for r in records(out)}
    assert final == {site.url("/"): 200, **{site.url(f"/p{i}"): 200 for i in range(6)}}


def _stored_cookies(state: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return [json.loads(d)["name"] for (d,) in conn.execute("SELECT data FROM cookies")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


# -- Redis ---------------------------------------------------------------------------------


def test_redis_workers_share_the_jar(redis_server: Any, tmp_path: Path) -> None:
    """Worker A fetches the page that sets the session and stops (--max-pages); worker B
    joins later and fetches the rest with it. And live: a change one worker writes
    reaches another's jar at its next look (its clock moved past the interval)."""
    site, seen = consent_site()
    with site:
        common = dict(redis=redis_server.url, crawl_id="cookies", progress=False)
        a = Crawler(site.url("/"), output=str(tmp_path / "a.jsonl"), max_pages=1,
                    worker_id="a", **common)  # type: ignore[arg-type]  # fmt: skip
        a.run()
        assert [p for p, _ in seen] == ["/", "/"]
        b = Crawler(site.url("/"), output=str(tmp_path / "b.jsonl"), worker_id="b",
                    **common)  # type: ignore[arg-type]  # fmt: skip
        b.run()
    paths = [p for p, _ in seen]
    assert sorted(paths[2:]) == ["/a", "/b", "/c"]
    assert all(cookie == "consent=yes" for _, cookie in seen[1:])

    from shoal.crawler.frontier.redis import RedisFrontier

    identity = {"start_urls": ["http://x.test/"]}
    one = RedisFrontier.open(redis_server.url, "live", "w1", identity)
    two = RedisFrontier.open(redis_server.url, "live", "w2", identity)
    try:
        clock = Clock(0.0)
        jar1, jar2 = CookieJar(), CookieJar()
        sync1 = CookieSync(jar1, load=one.load_cookies, store=one.note_cookies,
                           version=one.cookies_version, clock=clock)  # fmt: skip
        sync2 = CookieSync(jar2, load=two.load_cookies, store=two.note_cookies,
                           version=two.cookies_version, clock=clock)  # fmt: skip
        sync1.start()
        sync2.start()
        sync2.before_fetch()
        jar1.receive("http://x.test/", "live=1")
        sync1.after_fetch()
        sync2.before_fetch()  # within the interval: not read again
        assert jar2.header_for("http://x.test/") is None
        clock.now += 3
        sync2.before_fetch()
        assert jar2.header_for("http://x.test/") == "live=1"
    finally:
        one.close()
        two.close()


def test_a_cookie_on_every_redirect_back_is_still_bounded(tmp_path: Path) -> None:
    """A server that sets a new cookie and redirects to the same URL forever: each hop
    counts, so the fetch ends at --max-redirects (too_many_redirects), not in a loop."""
    n = iter(range(1000))
    site = Site({"/robots.txt": Reply(404, "none")})
    site.routes["/"] = lambda req: Reply(302, "", {"Location": "/", "Set-Cookie": f"n={next(n)}"})
    out = tmp_path / "pages.jsonl"
    with site:
        Crawler(site.url("/"), output=str(out), progress=False, max_redirects=4).run()
        assert site.count("/") == 5
    (record,) = records(out)
    assert record["error"] == "too_many_redirects"


def test_warc_request_records_carry_no_cookie(tmp_path: Path) -> None:
    from warcio.archiveiterator import ArchiveIterator

    site, seen = consent_site()
    out = tmp_path / "crawl.warc.gz"
    with site:
        Crawler(site.url("/"), output=str(out), progress=False).run()
    assert any(cookie == "consent=yes" for _, cookie in seen)  # it was sent
    requests = 0
    with out.open("rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "request":
                requests += 1
                head = record.http_headers.to_str()
                assert "consent" not in head and "cookie" not in head.lower()
    assert requests >= 4


def test_the_jar_adds_to_a_cookie_header_already_given() -> None:
    assert with_cookie({"Accept": "*/*"}, "a=1") == {"Accept": "*/*", "Cookie": "a=1"}
    assert with_cookie({"cookie": "mine=0"}, "a=1") == {"cookie": "mine=0; a=1"}


# -- review fixes (#20): rolling sessions, shared jars, hostile files and servers ----------


class DictState:
    """A crawl state's cookie table, as the SQLite frontier keeps it (one jar)."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    def load(self) -> list[tuple[str, str]]:
        return list(self.rows.items())

    def store(self, changes: list[tuple[str, str | None]]) -> None:
        for key, data in changes:
            if data:
                self.rows[key] = data
            else:
                self.rows.pop(key, None)


def test_a_rolling_session_survives_a_resume() -> None:
    """A session cookie re-sent with Max-Age=600 on every page (express-session rolling,
    Django SESSION_SAVE_EVERY_REQUEST): the state's copy keeps up (within a quarter of
    its lifetime, and exactly when the crawl ends), so a resume still has it after the
    first expiry the server gave has passed."""
    clock, state = Clock(), DictState()
    jar = jar_at(clock)
    sync = CookieSync(jar, load=state.load, store=state.store)
    sync.start()
    start = clock.now
    for _ in range(15):  # a page every 50 s for 700 s
        jar.receive("http://h.test/", "sid=S; Max-Age=600")
        sync.after_fetch()
        clock.now += 50
    stored = json.loads(state.rows["h.test\t/\tsid"])["expires"]
    assert stored >= clock.now - 50 + 600 - 150  # never more than 600/4 behind
    sync.finish()
    assert json.loads(state.rows["h.test\t/\tsid"])["expires"] == clock.now - 50 + 600
    clock.now = start + 900  # past the first expiry, within the last
    again = jar_at(clock)
    CookieSync(again, load=state.load, store=state.store).start()
    assert again.header_for("http://h.test/") == "sid=S"


def test_a_shared_jar_keeps_the_fresher_copy_of_a_rolling_cookie(
    redis_server: Any,
) -> None:
    """Worker A refreshes a rolling sid on every page; B sets an unrelated cookie, so A
    reads the shared jar again: its stale copy of sid (or one that has expired) must not
    replace A's fresh one, nor may A's or B's expiry of a stale copy remove the fresher
    one another worker stored."""
    from shoal.crawler.frontier.redis import RedisFrontier

    identity = {"start_urls": ["http://site.test/"]}
    fa = RedisFrontier.open(redis_server.url, "rolling", "wa", identity)
    fb = RedisFrontier.open(redis_server.url, "rolling", "wb", identity)
    try:
        wall, mono = Clock(time.time()), Clock(0.0)  # Redis judges expiry by real time
        ja, jb = CookieJar(clock=wall), CookieJar(clock=wall)
        sa = CookieSync(ja, load=fa.load_cookies, store=fa.note_cookies,
                        version=fa.cookies_version, clock=mono)  # fmt: skip
        sb = CookieSync(jb, load=fb.load_cookies, store=fb.note_cookies,
                        version=fb.cookies_version, clock=mono)  # fmt: skip
        sa.start()
        sb.start()
        u = "http://site.test/"
        for _ in range(15):
            sa.before_fetch()
            ja.header_for(u)
            ja.receive(u, "sid=S; Max-Age=600")
            sa.after_fetch()
            wall.now += 50
            mono.now += 50
        sb.before_fetch()  # B reads the jar now: its copy of sid is A's latest stored
        jb.receive(u, "other=1")
        sb.after_fetch()
        mono.now += 10
        sa.before_fetch()  # another worker changed the jar: A reads it again
        assert ja.header_for(u) == "sid=S; other=1"
        sa.after_fetch()
        assert sorted(k for k, _ in fa.load_cookies()) == ["site.test\t/\tother",
                                                            "site.test\t/\tsid"]  # fmt: skip
        # B's copy of sid goes stale in B's jar while A keeps it fresh: B finds it
        # expired and says so, and the shared jar keeps A's.
        for _ in range(10):
            ja.receive(u, "sid=S; Max-Age=600")
            sa.after_fetch()
            wall.now += 50
        assert jb.header_for(u) == "other=1"  # expired here
        sb.after_fetch()
        assert "site.test\t/\tsid" in dict(fa.load_cookies())
        # A copy that has expired in the shared jar too goes.
        ja.receive(u, "old=1; Max-Age=100")
        sa.after_fetch()
        ((key, data),) = [(k, d) for k, d in fa.load_cookies() if "old" in k]
        stale = Cookie.loads(data)
        stale.expires = time.time() - 1
        fb.note_cookies([(key, stale.dumps())])
        wall.now += 200
        assert "old=" not in (ja.header_for(u) or "")
        sa.after_fetch()
        assert key not in dict(fa.load_cookies())
    finally:
        fa.close()
        fb.close()


def test_a_reload_never_takes_an_expired_or_older_copy() -> None:
    clock = Clock()
    jar = jar_at(clock)
    jar.receive("http://h.test/", "sid=new; Max-Age=600")
    jar.changes()
    stale = jar_at(clock)
    clock.now -= 100
    stale.receive("http://h.test/", "sid=old; Max-Age=60")
    clock.now += 100
    gone = jar_at(clock)
    gone.receive("http://h.test/", "e=1; Max-Age=600")
    (cookie,) = list(gone)
    cookie.expires = clock.now - 1  # a copy found expired: not taken, not removed back
    jar.replace_all([*stale, cookie])
    assert jar.header_for("http://h.test/") == "sid=new"
    assert jar.changes() == [("h.test\t/\tsid", next(iter(jar)).dumps())]  # ours again


def test_stores_of_the_jar_are_not_reordered() -> None:
    """Two workers' changes to one cookie: the one made later is stored last, even when
    the earlier one's store is slow (taking and storing are one step)."""
    jar, state = jar_at(), DictState()
    gate, storing = threading.Event(), threading.Event()

    def store(changes: list[tuple[str, str | None]]) -> None:
        if any(json.loads(d or "{}").get("value") == "1" for _, d in changes):
            storing.set()
            assert gate.wait(30)
        state.store(changes)

    sync = CookieSync(jar, store=store)
    jar.receive("http://h.test/", "a=1")
    first = threading.Thread(target=sync.after_fetch)
    first.start()
    assert storing.wait(30)
    jar.receive("http://h.test/", "a=2")
    second = threading.Thread(target=sync.after_fetch)
    second.start()
    second.join(1)  # without the order it is done now; with it, it waits for the first
    gate.set()
    first.join(30)
    second.join(30)
    assert json.loads(state.rows["h.test\t/\ta"])["value"] == "2"


def test_http_cannot_overwrite_a_secure_cookie_and_prefixes_ignore_case() -> None:
    jar = jar_at()
    assert jar.receive("https://x.example.com/", "sid=good; Secure; Path=/")
    assert not jar.receive("http://x.example.com/", "sid=evil; Path=/")
    assert not jar.receive("http://x.example.com/", "sid=evil; Domain=example.com; Path=/a")
    assert not jar.receive("http://x.example.com/", "sid=; Max-Age=0")  # nor remove it
    assert jar.header_for("https://x.example.com/") == "sid=good"
    assert jar.receive("http://x.example.com/", "other=1")  # another name: fine
    assert jar.receive("https://x.example.com/", "sid=better; Secure; Path=/")
    assert sorted((jar.header_for("https://x.example.com/a") or "").split("; ")) == [
        "other=1",
        "sid=better",
    ]
    for line in ("__host-s=1; Path=/", "__HOST-s=1; Secure; Domain=example.com; Path=/",
                 "__SECURE-s=1", "__secure-s=1"):  # fmt: skip
        assert not jar.receive("https://x.example.com/", line), line


def test_a_cookie_set_for_another_path_is_no_consent_wall() -> None:
    """The redirect back to the same URL is a new request only if that URL's Cookie
    header changed: a cookie for another path (or host) leaves it a loop."""
    view = FetchCookies(jar_at())
    assert view.header("http://h.test/") is None
    view.received("http://h.test/", "elsewhere=1; Path=/other")
    assert view.changed and not view.resends("http://h.test/")
    view.received("http://h.test/", "here=1; Path=/")
    assert view.resends("http://h.test/")
    assert view.header("http://h.test/") == "here=1"
    view.received("http://h.test/", "here=1; Path=/")
    assert not view.resends("http://h.test/")


def test_a_path_cookie_redirect_back_is_a_loop(tmp_path: Path) -> None:
    site = Site({"/robots.txt": Reply(404, "none")})
    site.routes["/"] = lambda req: Reply(302, "", {"Location": "/", "Set-Cookie": "x=1; Path=/x"})
    out = tmp_path / "pages.jsonl"
    with site:
        Crawler(site.url("/"), output=str(out), progress=False).run()
        assert site.count("/") == 1
    (record,) = records(out)
    assert record["error"] == "redirect_loop"


def test_cookies_file_values_are_octets_and_hostile_lines_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes("\ufeff# Netscape HTTP Cookie File\n"
                     ".Example.COM.\tTRUE\t/\tFALSE\t0\tt\tv\n"
                     "example.com\tFALSE\t/\tFALSE\t0\tname\tcafé€\n".encode())  # fmt: skip
    cookies = read_cookies_file(str(path))
    assert [(c.domain, c.host_only) for c in cookies] == [("example.com", False)] * 1 + [
        ("example.com", True)
    ]
    jar = jar_at()
    jar.add(cookies)
    header = jar.header_for("http://example.com/") or ""
    assert header.encode("latin-1") == "t=v; name=café€".encode()  # the file's bytes
    assert jar.header_for("http://www.example.com/") == "t=v"
    for line, message in [
        ("example.com\tFALSE\t/\tFALSE\t0\tsid\tx; admin=1\n", "';' in its value"),
        ("example.com\tFALSE\t/\tFALSE\t0\ta=b\tx\n", "'=' or ';' in its name"),
        ("bücher.de\tFALSE\t/\tFALSE\t0\ta\tx\n", "must be ASCII"),
        (".co.uk.\tTRUE\t/\tFALSE\t0\ta\tb\n", "the public suffix 'co.uk'"),
    ]:
        path.write_text(line, encoding="utf-8")
        with pytest.raises(UsageError, match=message):
            read_cookies_file(str(path))


def test_no_value_in_the_jar_breaks_a_request() -> None:
    """A value past U+00FF (a state written from a UTF-8 cookies.txt by an older shoal)
    goes out as its UTF-8 octets; a raw value a server set goes back as it came."""
    jar = jar_at()
    jar.add([Cookie("n", "café€\udcff", "h.test")])
    jar.receive("http://h.test/", "raw=caf\xc3\xa9")  # as latin-1 read a UTF-8 field
    header = jar.header_for("http://h.test/") or ""
    assert header.encode("latin-1") == "n=café€".encode() + b"\xff; raw=caf\xc3\xa9"


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_utf8_cookies_go_out_byte_for_byte(tmp_path: Path, transport: str) -> None:
    got: list[bytes] = []

    def reply(req: Request) -> Reply:
        got.append((req.headers.get("Cookie") or "").encode("latin-1"))
        return Reply(body='<a href="/b">b</a>')

    site = Site({"/": reply, "/b": reply, "/robots.txt": Reply(404, "none")})
    with site:
        host = site.origin.removeprefix("http://").split(":")[0]
        src = tmp_path / "c.txt"
        src.write_bytes(f"{host}\tFALSE\t/\tFALSE\t0\tname\tcafé€\n".encode())
        out = tmp_path / "pages.jsonl"
        result = Crawler(site.url("/"), output=str(out), progress=False, cookies=str(src),
                         transport=transport).run()  # fmt: skip
    assert not result.errors
    assert got == ["name=café€".encode()] * 2
    saved = tmp_path / "saved.txt"
    jar = jar_at()
    jar.add(read_cookies_file(str(src)))
    jar.save(str(saved))
    assert "\tname\tcafé€\n".encode() in saved.read_bytes()  # as curl would write it


def test_save_cookies_replaces_only_a_cookies_txt(tmp_path: Path) -> None:
    from shoal.crawler._cookies import check_save_path

    script = tmp_path / "notes.sh"
    script.write_text("#!/bin/sh\n# my notes\n")
    with pytest.raises(UsageError, match=r"not a cookies\.txt"):
        check_save_path(str(script))
    for text in ("", "# Netscape HTTP Cookie File\n", "# HTTP cookie file.\n\n",
                 "h.test\tFALSE\t/\tFALSE\t1000\ta\tb\n"):  # fmt: skip
        ok = tmp_path / "ok.txt"
        ok.write_text(text)
        check_save_path(str(ok))


def test_the_state_file_is_private(tmp_path: Path) -> None:
    """It holds the jar's values (sessions): created readable by its owner only, the
    -wal and -shm files beside it too."""
    import os

    from shoal.state import StateStore

    state = tmp_path / "crawl.state.sqlite"
    old = os.umask(0o022)
    try:
        store = StateStore.open(state, {"start_urls": ["http://h.test/"]})
        try:
            store.commit(
                (), (), None, cookies=[("h.test\t/\ta", Cookie("a", "s", "h.test").dumps())]
            )
            paths = [state, Path(f"{state}-wal"), Path(f"{state}-shm")]
            assert all(path.exists() for path in paths)
            for path in paths:
                assert path.stat().st_mode & 0o077 == 0, path
        finally:
            store.close()
    finally:
        os.umask(old)
