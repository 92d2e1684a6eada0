"""Headers and credentials (issue 20): -H for every request, --header-for one host,
--auth for the start URLs' origins only, checked on the server side; no secret in any
file, log, status or WARC record; bad header input is exit 2.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rawserver import RawServer, read_request
from shoal import Crawler, UsageError
from shoal.cli._commands import Hidden, cli, redacted_args
from shoal.crawler._headers import HeaderRules, RequestHeaders
from sites import Reply, Request, Site, html

PASSWORD = "s3cret-Pw-4711"
TOKEN = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
HOST_SECRET = "hk-SECRET-0815"
COOKIE_SECRET = "COOKIE-SECRET-42"
SECRETS = (PASSWORD, TOKEN, HOST_SECRET, COOKIE_SECRET)


class Seen:
    """Every request a set of sites received: (site name, path, headers, lower-cased)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def route(self, name: str, routes: dict[str, Reply | str]) -> Callable[[Request], Reply]:
        def serve(request: Request) -> Reply:
            with self._lock:
                headers = {k.lower(): v for k, v in request.headers.items()}
                self.requests.append((name, request.path, headers))
            reply = routes.get(request.path)
            if reply is None:
                return Reply(404, "not found")
            return reply if isinstance(reply, Reply) else Reply(body=reply)

        return serve

    def at(self, name: str, path: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            return [h for n, p, h in self.requests if n == name and path in (None, p)]

    def paths(self, name: str) -> set[str]:
        with self._lock:
            return {p for n, p, _ in self.requests if n == name}


@contextlib.contextmanager
def recording(
    seen: Seen, name: str, routes: dict[str, Reply | str], host: str = "127.0.0.1"
) -> Iterator[Site]:
    with Site(host=host) as site:
        site.fallback = seen.route(name, routes)
        yield site


def crawl(start: str | list[str], tmp_path: Path, **options: object) -> None:
    options.setdefault("output", str(tmp_path / "out.jsonl"))
    options.setdefault("proxy", None)
    Crawler(start, progress=False, **options).run()  # type: ignore[arg-type]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stderr


# -- where each header goes ------------------------------------------------------------------


def test_global_headers_go_with_every_request_to_every_host(tmp_path: Path) -> None:
    seen = Seen()
    with recording(seen, "other", {"/o": html("o")}, host="127.0.0.2") as other:
        routes: dict[str, Reply | str] = {
            "/": html("home", "/a", "/r", other.url("/o")),
            "/a": html("a"),
            "/r": Reply(302, headers={"Location": "/a?via=r"}),
            "/a?via=r": html("a2"),
        }
        with recording(seen, "start", routes) as site:
            crawl(
                site.url("/"),
                tmp_path,
                headers=["Accept-Language: fr-CH, fr;q=0.9", "X-Trace:  t-1 "],
                allow_domains=["127.0.0.1", "127.0.0.2"],
            )
    assert seen.paths("start") == {"/robots.txt", "/", "/a", "/r", "/a?via=r"}
    assert seen.paths("other") == {"/robots.txt", "/o"}
    for name in ("start", "other"):
        for headers in seen.at(name):
            assert headers["accept-language"] == "fr-CH, fr;q=0.9"
            assert headers["x-trace"] == "t-1"  # blanks around a value are not part of it
            assert headers["user-agent"].startswith("shoal/")


def test_a_header_named_as_shoals_own_replaces_it_once(tmp_path: Path) -> None:
    """-H 'accept: ...' (any case) is sent instead of shoal's Accept, not beside it."""
    lines: list[bytes] = []

    def script(conn: socket.socket, index: int) -> None:
        head = read_request(conn)
        lines.append(head)
        body = b"<html><title>x</title></html>"
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    server = RawServer(script)
    try:
        crawl(server.url + "/", tmp_path, headers={"accept": "application/json"}, robots=False)
    finally:
        server.close()
    [head] = lines
    accepts = [line for line in head.split(b"\r\n") if line.lower().startswith(b"accept:")]
    assert accepts == [b"accept: application/json"]


def test_header_for_a_host_matches_its_ports_and_a_pinned_port_only_that_one(
    tmp_path: Path,
) -> None:
    seen = Seen()
    with (
        recording(seen, "second", {"/p": html("p")}) as second,  # 127.0.0.1, another port
        recording(seen, "other", {"/o": html("o")}, host="127.0.0.2") as other,
    ):
        routes: dict[str, Reply | str] = {
            "/": html("home", second.url("/p"), other.url("/o")),
        }
        with recording(seen, "start", routes) as site:
            port = site.origin.rsplit(":", 1)[1]
            crawl(
                site.url("/"),
                tmp_path,
                allow_domains=["127.0.0.1", "127.0.0.2"],
                header_for={
                    "127.0.0.1": {"X-Host": "all ports"},
                    f"127.0.0.1:{port}": ["X-Pinned: start only", "X-Host: pinned wins"],
                    # Not a start URL's host: over plain http only when the key says so.
                    "127.0.0.2": {"X-Plain-Https-Only": "never over http"},
                    "http://127.0.0.2": {"X-Plain-Asked": "yes"},
                },
            )
    assert seen.paths("start") == {"/robots.txt", "/"}
    assert seen.paths("second") == {"/robots.txt", "/p"}
    assert seen.paths("other") == {"/robots.txt", "/o"}
    for headers in seen.at("start"):
        assert headers["x-host"] == "pinned wins"
        assert headers["x-pinned"] == "start only"
        assert "x-plain-asked" not in headers
    for headers in seen.at("second"):
        assert headers["x-host"] == "all ports"
        assert "x-pinned" not in headers
    for headers in seen.at("other"):
        assert headers["x-plain-asked"] == "yes"
        assert "x-host" not in headers and "x-plain-https-only" not in headers


def test_auth_goes_to_the_start_origin_only_whatever_redirects_say(tmp_path: Path) -> None:
    """Basic credentials and a -H Cookie: every request to the start URL's origin
    (robots.txt included) has them; a link, a redirect and a robots.txt redirect to
    another host, or to another port of the same host, never do."""
    seen = Seen()
    with (
        recording(seen, "port", {"/p": html("p"), "/robots.txt": ""}) as port,
        recording(
            seen,
            "other",
            {"/o": html("o"), "/moved.txt": "User-agent: *\nAllow: /\n"},
            host="127.0.0.2",
        ) as other,
    ):
        routes: dict[str, Reply | str] = {
            "/robots.txt": Reply(301, headers={"Location": other.url("/moved.txt")}),
            "/": html("home", "/a", "/to-other", "/to-port", other.url("/o")),
            "/a": html("a"),
            "/to-other": Reply(302, headers={"Location": other.url("/o?r=1")}),
            "/to-port": Reply(307, headers={"Location": port.url("/p")}),
        }
        with recording(seen, "start", routes) as site:
            crawl(
                site.url("/"),
                tmp_path,
                auth=("bob", PASSWORD),
                headers=[f"Cookie: sid={COOKIE_SECRET}", "X-Everyone: yes"],
                allow_domains=["127.0.0.1", "127.0.0.2"],
            )
    assert seen.paths("start") == {"/robots.txt", "/", "/a", "/to-other", "/to-port"}
    assert {"/moved.txt", "/o", "/o?r=1"} <= seen.paths("other")
    assert "/p" in seen.paths("port")
    for headers in seen.at("start"):
        assert headers["authorization"] == f"Basic {TOKEN}"
        assert headers["cookie"] == f"sid={COOKIE_SECRET}"
    for name in ("other", "port"):
        assert seen.at(name)
        for headers in seen.at(name):
            assert "authorization" not in headers and "cookie" not in headers
            assert headers["x-everyone"] == "yes"  # not a credential: everywhere


# -- https down to http: one port that speaks both ---------------------------------------------


class DualServer:
    """A raw server on one port that answers TLS and plain HTTP alike (the first byte
    tells them apart), so ``https://127.0.0.1:P/`` redirecting to ``http://127.0.0.1:P/``
    is a downgrade on the very same host and port. Records (scheme, path, headers)."""

    def __init__(self, context: ssl.SSLContext, routes: dict[str, bytes]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._context = context
        self._lock = threading.Lock()
        self.raw = RawServer(self._serve)
        self.port = self.raw.port

    def _serve(self, conn: socket.socket, index: int) -> None:
        first = conn.recv(1, socket.MSG_PEEK)
        scheme = "https" if first == b"\x16" else "http"
        stream = self._context.wrap_socket(conn, server_side=True) if scheme == "https" else conn
        head = read_request(stream).decode("latin-1")
        if not head:
            return
        request_line, *lines = head.split("\r\n")
        path = request_line.split(" ")[1]
        headers = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        with self._lock:
            self.seen.append((scheme, path, headers))
        stream.sendall(self.routes.get(path, _reply(404, b"not found")))

    def at(self, scheme: str) -> dict[str, dict[str, str]]:
        with self._lock:
            return {p: h for s, p, h in self.seen if s == scheme}

    def close(self) -> None:
        self.raw.close()


def _reply(status: int, body: bytes = b"", extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: text/html\r\nConnection: close\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def test_credentials_and_host_headers_never_go_from_https_down_to_http(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    routes: dict[str, bytes] = {"/robots.txt": _reply(404)}
    server = DualServer(context, routes)
    plain = f"http://127.0.0.1:{server.port}"
    page = b'<html><title>t</title><a href="/a">a</a> <a href="/down">d</a>'
    page += f'<a href="{plain}/linked">l</a></html>'.encode()
    routes.update(
        {
            "/": _reply(200, page),
            "/a": _reply(200, b"<html><title>a</title></html>"),
            "/down": _reply(301, extra=f"Location: {plain}/moved\r\n"),
            "/moved": _reply(200, b"<html><title>moved</title></html>"),
            "/linked": _reply(200, b"<html><title>linked</title></html>"),
        }
    )
    try:
        crawl(
            f"https://127.0.0.1:{server.port}/",
            tmp_path,
            verify_tls=False,
            auth=f"bob:{PASSWORD}",
            headers=[f"Cookie: sid={COOKIE_SECRET}"],
            header_for={"127.0.0.1": {"X-Key": HOST_SECRET}},
        )
    finally:
        server.close()
    secure, downgraded = server.at("https"), server.at("http")
    assert set(secure) == {"/robots.txt", "/", "/a", "/down"}
    assert {"/moved", "/linked"} <= set(downgraded)
    for headers in secure.values():
        assert headers["authorization"] == f"Basic {TOKEN}"
        assert headers["cookie"] == f"sid={COOKIE_SECRET}"
        assert headers["x-key"] == HOST_SECRET
    for headers in downgraded.values():
        assert not {"authorization", "cookie", "x-key"} & set(headers), headers


def test_which_urls_get_credentials() -> None:
    """The rules without a server: origins exactly, an http start URL's credentials
    also over https to the same host (an upgrade), never the reverse; host headers."""
    rules = HeaderRules.build([], {"api.test": {"X-K": "k"}}, ("bob", "pw"))
    http_start = RequestHeaders(rules, ["http://site.test/", "https://api.test/"])
    auth = "Authorization"
    assert auth in http_start.for_url("http://site.test/x")
    assert auth in http_start.for_url("https://site.test/x")  # the upgrade
    assert auth not in http_start.for_url("http://site.test:8080/x")
    assert auth not in http_start.for_url("https://site.test:8443/x")
    assert auth not in http_start.for_url("http://www.site.test/x")
    assert auth in http_start.for_url("https://api.test/")
    assert auth not in http_start.for_url("http://api.test/")  # https given: no downgrade
    assert http_start.for_url("https://api.test:9/") == {"X-K": "k"}
    assert "X-K" not in http_start.for_url("http://api.test/")  # its start URL is https
    https_start = RequestHeaders(rules, ["https://site.test/"])
    assert auth not in https_start.for_url("http://site.test/")
    assert https_start.recorded("https://site.test/") == [(auth, "[redacted]")]
    assert "pw" not in repr(rules) and "pw" not in repr(https_start.rules)


# -- secrets stay out of every file and stream ---------------------------------------------------


def _everything_in(folder: Path) -> bytes:
    """Every file below ``folder`` as bytes, gzip members decompressed (WARC)."""
    data = b""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            raw = path.read_bytes()
            data += gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return data


def _shoal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_no_secret_reaches_an_output_the_state_a_log_the_status_or_the_warc(
    tmp_path: Path,
) -> None:
    seen = Seen()
    out = tmp_path / "out"
    out.mkdir()
    routes: dict[str, Reply | str] = {
        "/": html("home", "/a", "/gone", "/r"),
        "/a": html("a"),
        "/gone": Reply(404, "nope"),
        "/r": Reply(302, headers={"Location": "/a?r"}),
        "/a?r": html("ar"),
    }
    with recording(seen, "start", routes) as site:
        proc = _shoal(
            "crawl",
            site.url("/"),
            *("-o", str(out / "pages.jsonl"), "-o", str(out / "pages.csv")),
            *("-o", str(out / "pages.sqlite"), "-o", str(out / "crawl.warc.gz")),
            *("--report", str(out / "report.html"), "--log-file", str(out / "log.txt")),
            *("--auth", "bob", "-H", f"Cookie: sid={COOKIE_SECRET}", "-vv", "--no-progress"),
            *("--header-for", "127.0.0.1", f"X-Key: {HOST_SECRET}", "--proxy", "none"),
            env={"SHOAL_AUTH_PASSWORD": PASSWORD},
        )
        assert proc.returncode == 0, proc.stderr
        status = _shoal("status", str(out / "pages.jsonl"))
        status_json = _shoal("status", str(out / "pages.jsonl"), "--json")
    # The secrets were in play: the server got every one of them.
    assert len(seen.at("start")) == 6
    for headers in seen.at("start"):
        assert headers["authorization"] == f"Basic {TOKEN}"
        assert headers["x-key"] == HOST_SECRET and headers["cookie"] == f"sid={COOKIE_SECRET}"
    files = _everything_in(out)
    assert b"/a?r" in files and b"GET /gone HTTP/1.1" in files  # the WARC is in there
    streams = proc.stdout + proc.stderr + status.stdout + status.stderr + status_json.stdout
    assert "200" in (out / "log.txt").read_text()  # -vv: one line per URL, debug too
    for secret in SECRETS:
        assert secret.encode() not in files, secret
        assert secret not in streams, secret
    # The WARC request records show which headers were sent, their values redacted (one
    # pair per response: the redirect followed in place is archived as its target).
    warc = gzip.decompress((out / "crawl.warc.gz").read_bytes())
    assert warc.count(b"WARC-Type: request") == 5
    assert warc.count(b"Authorization: [redacted]") == 5
    assert warc.count(b"Cookie: [redacted]") == warc.count(b"X-Key: [redacted]") == 5


def test_an_interrupted_crawl_prints_a_resume_command_without_secrets(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(request: Request) -> Reply:
        started.set()
        release.wait(5)
        return Reply(body=html("slow"))

    out = tmp_path / "out.jsonl"
    routes: dict[str, object] = {"/": html("home", *[f"/s{i}" for i in range(50)])}
    routes.update({f"/s{i}": slow for i in range(50)})
    with Site(routes) as site:  # type: ignore[arg-type]
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out)),
                *("--auth", f"bob:{PASSWORD}", "-H", f"Cookie: sid={COOKIE_SECRET}"),
                *("--header-for=127.0.0.1", f"X-Key: {HOST_SECRET}", "-v"),
                *("--concurrency", "2", "--proxy", "none", "--no-progress"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert started.wait(30)
            proc.send_signal(2)  # SIGINT
            release.set()
            _, err = proc.communicate(timeout=60)
        finally:
            release.set()
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    [advice] = [line for line in err.splitlines() if "to resume, run:" in line]
    assert "--auth bob " in advice
    assert "'Cookie: [redacted]'" in advice and "'X-Key: [redacted]'" in advice
    assert advice.endswith("(secrets redacted: give them again)")
    for secret in SECRETS:
        assert secret not in err, secret
        assert secret.encode() not in _everything_in(tmp_path), secret


def test_the_resume_command_redacts_every_spelling() -> None:
    args = [
        *("crawl", "http://x.test/", "--auth", "bob:pw1", "--auth=al:pw2"),
        *("-H", "Authorization: Bearer t1", "--header=Cookie: c=t2", "-vHCookie: t3"),
        *("-qH", "authorization: t4", "-H", "Accept: text/plain"),
        *("--header-for", "x.test", "X-Anything: t5", "-o", "out.jsonl"),
        *("--proxy", "http://u:t6@proxy:3128", "--redis=redis://:t7@r:6379/0"),
    ]
    shown, redacted = redacted_args(args)
    assert redacted
    text = " ".join(shown)
    for secret in ("pw1", "pw2", "t1", "t2", "t3", "t4", "t5", "t6", "t7"):
        assert secret not in text, secret
    assert shown[2:6] == ["--auth", "bob", "--auth=al", "-H"]
    assert "Accept: text/plain" in shown and "out.jsonl" in shown
    assert "http://***@proxy:3128" in shown  # put back by the user (a proxy is not asked for)
    assert redacted == Hidden(secrets=True, proxy_credentials=True)
    assert redacted_args(["crawl", "http://x.test/", "-H", "Accept: a"]) == (
        ["crawl", "http://x.test/", "-H", "Accept: a"],
        Hidden(),
    )


# -- where the password comes from ---------------------------------------------------------------


def test_auth_password_from_the_environment(tmp_path: Path) -> None:
    seen = Seen()
    with recording(seen, "start", {"/": html("home")}) as site:
        code, err = run_cli(
            "crawl",
            site.url("/"),
            "-o",
            str(tmp_path / "o.jsonl"),
            "--auth",
            "bob",
            "--proxy",
            "none",
            env={"SHOAL_AUTH_PASSWORD": PASSWORD},
        )
    assert code == 0, err
    assert [h["authorization"] for h in seen.at("start")] == [f"Basic {TOKEN}"] * 2


def test_auth_without_a_password_and_no_terminal_is_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHOAL_AUTH_PASSWORD"}
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "crawl", "http://127.0.0.1:9/", "--auth", "bob"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "--auth bob: no password: set SHOAL_AUTH_PASSWORD" in proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_auth_password_is_asked_for_on_a_terminal_and_not_echoed(tmp_path: Path) -> None:
    import pty

    seen = Seen()
    with recording(seen, "start", {"/": html("home")}) as site:
        argv = [
            *(sys.executable, "-m", "shoal", "crawl", site.url("/"), "--auth", "bob"),
            *("-o", str(tmp_path / "o.jsonl"), "--proxy", "none", "--no-progress"),
        ]
        env = {k: v for k, v in os.environ.items() if k != "SHOAL_AUTH_PASSWORD"}
        pid, fd = pty.fork()
        if pid == 0:  # the child: stdin, stdout and stderr are the terminal
            os.execve(sys.executable, argv, env)
        seen_text = b""
        deadline = time.monotonic() + 60
        answered = ended = False
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    try:
                        piece = os.read(fd, 4096)
                    except OSError:  # the child exited: the terminal is gone
                        piece = b""
                    if not piece:
                        ended = True
                        break
                    seen_text += piece
                if not answered and b"password for bob" in seen_text:
                    os.write(fd, PASSWORD.encode() + b"\n")
                    answered = True
        finally:
            if not ended:  # bounded: a child that never ends is killed
                os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
            os.close(fd)
    assert answered, seen_text
    assert os.waitstatus_to_exitcode(status) == 0, seen_text
    assert PASSWORD.encode() not in seen_text  # the prompt does not echo it
    assert [h["authorization"] for h in seen.at("start")] == [f"Basic {TOKEN}"] * 2


# -- bad input: a clear message and exit 2 ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-H", "X-A: 1\r\nX-B: 2"],
            "-H/--header: the 1st header (X-A) holds the control "
            "character CR: a header is one line",
        ),
        (["-H", "X-A: a\nb"], "holds the control character LF"),
        (["-H", "X-A: a\x00b"], "holds the control character NUL"),
        (["-H", "Accept: a", "-H", "X-Nocolon"], "-H/--header: the 2nd header has no ':'"),
        (["-H", "Bad Name: 1"], "the 1st header's name (before the ':') holds a space"),
        (["-H", "X-Empty:"], "(X-Empty) has an empty value"),
        (["-H", "Host: evil.test"], "is Host, which shoal does not take"),
        (["-H", "Content-Length: 5"], "is Content-Length, which shoal does not take"),
        (["-H", "Transfer-Encoding: chunked"], "is Transfer-Encoding"),
        (["-H", "connection: close"], "is connection, which shoal does not take"),
        (["-H", "User-Agent: agent-v1"], "use --user-agent: it is also the name robots.txt"),
        (["-H", "Proxy-Authorization: Basic zzz-p"], "--proxy http://USER:PASS@HOST:PORT"),
        (["-H", 'If-None-Match: "etag-v1"'], "--recrawl sends them itself"),
        (["-H", "X-A: 1", "-H", "x-a: 2"], "-H/--header gives x-a twice"),
        (["--header-for", "a.test/x", "X: 1"], "--header-for host 'a.test/x' is not HOST"),
        (["--header-for", "ftp://a.test", "X: 1"], "only http:// or https://"),
        (["--header-for", "a.test", "X-A: 1\r\n"], "--header-for: the 1st header (X-A) holds"),
        (["--header-for", "a.test:0", "X: 1"], "port 0 cannot be connected to"),
        (["--auth", "bob:pw", "-H", "Authorization: Bearer tok-1"], "give --auth or an Auth"),
    ],
)
def test_bad_header_input_is_exit_2_naming_the_option(args: list[str], message: str) -> None:
    code, err = run_cli("crawl", "http://127.0.0.1:9/", *args)
    assert code == 2, err
    assert message in err
    headers = [a for i, a in enumerate(args) if i and args[i - 1] == "-H"]
    headers += [args[i + 2] for i, a in enumerate(args) if a == "--header-for"]
    for header in headers:  # a header's value is never shown: it may be a secret
        value = header.partition(":")[2].strip()
        if len(value) >= 3:
            assert value not in err and value.splitlines()[-1] not in err


def test_bad_header_input_in_python_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"headers: the 1st header \(X-A\) holds the control"):
        Crawler("http://127.0.0.1:9/", headers={"X-A": "a\r\nInjected: yes"})
    with pytest.raises(UsageError, match="use user_agent"):
        Crawler("http://127.0.0.1:9/", headers=["User-Agent: x"])
    with pytest.raises(UsageError, match="auth 'bob' has no password"):
        Crawler("http://127.0.0.1:9/", auth="bob")
    with pytest.raises(UsageError, match="header_for takes a mapping"):
        Crawler("http://127.0.0.1:9/", header_for=["a.test"])  # type: ignore[arg-type]
    crawler = Crawler("http://127.0.0.1:9/", auth=("bob", PASSWORD), headers={"X": "1"})
    assert PASSWORD not in repr(crawler.options) and TOKEN not in repr(crawler.options)


def test_a_crawl_without_headers_sends_what_it_sent_before(tmp_path: Path) -> None:
    seen = Seen()
    with recording(seen, "start", {"/": html("home")}) as site:
        crawl(site.url("/"), tmp_path, output=str(tmp_path / "c.warc.gz"))
    for headers in seen.at("start"):
        assert set(headers) == {"host", "user-agent", "accept", "accept-encoding", "connection"}
    warc = gzip.decompress((tmp_path / "c.warc.gz").read_bytes())
    assert warc.count(b"WARC-Type: request") == 2 and b"[redacted]" not in warc


def test_a_config_files_host_table_sends_its_headers_and_header_for_wins(
    tmp_path: Path,
) -> None:
    """``[hosts."NAME"] headers`` go where ``--header-for NAME`` would send them; a header
    both name comes from the command line."""
    seen = Seen()
    with recording(seen, "other", {"/o": html("o")}, host="127.0.0.2") as other:
        with recording(seen, "start", {"/": html("home", other.url("/o"))}) as site:
            config = tmp_path / "crawl.toml"
            config.write_text(
                'allow-domain = ["127.0.0.1", "127.0.0.2"]\nproxy = "none"\n'
                '[hosts."127.0.0.1"]\nheaders = { X-Lang = "de", X-Key = "from-file" }\n'
                '[hosts."127.0.0.2"]\nheaders = { X-Other = "https only" }\n',
                encoding="utf-8",
            )
            result = CliRunner().invoke(
                cli,
                [
                    "crawl",
                    site.url("/"),
                    "--config",
                    str(config),
                    "--header-for",
                    "127.0.0.1",
                    "X-Key: from-cli",
                    "-o",
                    str(tmp_path / "out.jsonl"),
                    "--no-progress",
                ],
            )
            assert result.exit_code == 0, result.output
    assert seen.paths("start") == {"/robots.txt", "/"}
    assert seen.paths("other") == {"/robots.txt", "/o"}
    for headers in seen.at("start"):
        assert headers["x-lang"] == "de" and headers["x-key"] == "from-cli"
    for headers in seen.at("other"):  # plain http to a host no start URL is on
        assert "x-other" not in headers and "x-lang" not in headers


def test_a_host_tables_headers_are_checked_like_header_for() -> None:
    with pytest.raises(UsageError, match="headers"):
        Crawler("http://127.0.0.1:9/", hosts={"127.0.0.1": {"headers": ["X: y"]}})
    with pytest.raises(UsageError, match="header"):
        Crawler("http://127.0.0.1:9/", hosts={"127.0.0.1": {"headers": {"X": "a\r\nB: c"}}})


def test_a_host_tables_auth_goes_to_that_host_only_and_is_never_shown(tmp_path: Path) -> None:
    """``[hosts."NAME"] auth = "USER:PASSWORD"``: Basic credentials for that host, sent as
    its table's headers are; a value that is no USER:PASSWORD is refused without being
    repeated; the options' repr never shows it."""
    seen = Seen()
    with recording(seen, "other", {"/o": html("o")}, host="127.0.0.2") as other:
        with recording(seen, "start", {"/": html("home", other.url("/o"))}) as site:
            config = tmp_path / "crawl.toml"
            config.write_text(
                'allow-domain = ["127.0.0.1", "127.0.0.2"]\nproxy = "none"\n'
                f'[hosts."127.0.0.1"]\nauth = "bob:{PASSWORD}"\n',
                encoding="utf-8",
            )
            result = CliRunner().invoke(
                cli,
                ["crawl", site.url("/"), "--config", str(config), "-o",
                 str(tmp_path / "out.jsonl"), "--no-progress"],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
    assert seen.paths("start") == {"/robots.txt", "/"}
    for headers in seen.at("start"):
        assert headers["authorization"] == f"Basic {TOKEN}"
    for headers in seen.at("other"):
        assert "authorization" not in headers
    crawler = Crawler("http://127.0.0.1:9/", hosts={"127.0.0.1": {"auth": ("bob", PASSWORD)}})
    assert PASSWORD not in repr(crawler.options) and TOKEN not in repr(crawler.options)
    with pytest.raises(UsageError) as bad:
        Crawler("http://127.0.0.1:9/", hosts={"127.0.0.1": {"auth": PASSWORD}})
    assert PASSWORD not in str(bad.value)
    with pytest.raises(UsageError, match="not both"):
        Crawler(
            "http://127.0.0.1:9/",
            hosts={"127.0.0.1": {"auth": "a:b", "headers": {"Authorization": "Bearer x"}}},
        )
