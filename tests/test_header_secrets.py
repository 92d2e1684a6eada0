"""Headers and credentials, from a review (issue 20): no secret in the resume command, an
error message or a warning, however it was typed; a start URL with ``user:password@``
refused; ``--header-for http://HOST`` covers https too; header values ASCII only; host
patterns and the other inputs checked with a clear message.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal import Crawler, UsageError
from shoal._url import redact_userinfo
from shoal.cli._commands import cli, redacted_args
from shoal.crawler._headers import HeaderRules, RequestHeaders
from shoal.http._proxy import Proxy, ProxyRules
from sites import Reply, Site, html
from test_headers import DualServer, Seen, _reply, crawl, recording

SECRET = "S3CRET-tok-9271"


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stderr


def _no_password_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SHOAL_AUTH_PASSWORD"}


# -- the resume command --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        # --header-for=HOST: the header is the next word
        (["--header-for=a.test", f"Cookie: s={SECRET}"], ["--header-for=a.test"]),
        # a proxy without a scheme, and a password holding '/' or '#' (no parser reads it):
        # a proxy's userinfo is shown as ***@, as messages about proxies show it
        (["--proxy", f"pu:{SECRET}@127.0.0.1:3128"], ["***@127.0.0.1:3128"]),
        ([f"--proxy=pu:{SECRET}@p:3128"], ["--proxy=***@p:3128"]),
        (["--proxy", f"http://u:a/{SECRET}@p:3128"], ["http://***@p:3128"]),
        (["--proxy", f"http://u:a#{SECRET}@p:3128"], ["http://***@p:3128"]),
        # a password= query in a proxy URL is no userinfo: redacted as in any other value
        (
            ["--proxy", f"http://u:{SECRET}@p:3128/?password={SECRET}"],
            ["http://***@p:3128/?password=[redacted]"],
        ),
        # a password as a query parameter, with or without userinfo
        (
            ["--redis", f"redis://r:6379/0?password={SECRET}"],
            ["redis://r:6379/0?password=[redacted]"],
        ),
        (
            ["--redis", f"redis://default:{SECRET}@r/0?PassWord={SECRET}"],
            ["redis://default:[redacted]@r/0?PassWord=[redacted]"],
        ),
        # words read as click reads them: a value that looks like an option is a value
        (["--user-agent", "-H", "-H", f"Cookie: {SECRET}"], ["--user-agent", "-H", "-H"]),
        (["-oH", "-H", f"Authorization: {SECRET}"], ["-oH", "-H", "Authorization: [redacted]"]),
        (["-vqH", f"cookie:{SECRET}"], ["-vqH", "cookie: [redacted]"]),
        ([f"-vHcookie:{SECRET}"], ["-vHcookie: [redacted]"]),
        # a header given where --header-for wants its host (refused, but never shown)
        (["--header-for", f"X-Key: {SECRET}", "a.test"], ["X-Key: [redacted]"]),
        (["--header-for", "a.test", f"NoColon{SECRET}"], ["[redacted]"]),
        # a start URL (refused, but never shown) and one after --
        ([f"http://u:{SECRET}@a.test/"], ["http://u:[redacted]@a.test/"]),
        (["--", f"http://u:{SECRET}@a.test/"], ["--", "http://u:[redacted]@a.test/"]),
    ],
)
def test_the_resume_command_hides_a_secret_however_it_was_typed(
    args: list[str], kept: list[str]
) -> None:
    shown, redacted = redacted_args(["crawl", *args])
    assert redacted
    assert SECRET not in " ".join(shown)
    text = "\0".join(shown)
    assert "\0".join(kept) in text, shown


def test_the_resume_command_keeps_what_is_no_secret() -> None:
    args = [
        *("crawl", "https://medium.com/@user", "-H", "X-Api-Key: documented-as-open"),
        *("--user-agent", "bot (me@example.com)", "--header-for", "a.test:8443", "X: 1"),
        *("--proxy", "http://proxy:3128", "--include", "a:b", "--delay=0.5", "-vv"),
    ]
    shown, redacted = redacted_args(list(args))
    assert shown == [*args[:8], "X: [redacted]", *args[9:]]  # a --header-for value is hidden
    assert redacted


# -- credentials in a start URL -----------------------------------------------------------


def test_a_start_url_with_credentials_is_refused_without_showing_them() -> None:
    seen = Seen()
    with recording(seen, "start", {"/": html("home")}) as site:
        url = site.url("/").replace("http://", f"http://alice:{SECRET}@")
        code, err = run_cli("crawl", url, "--no-state", "--proxy", "none")
        assert seen.paths("start") == set()  # not crawled as nobody
    assert code == 2, err
    assert err.startswith("shoal: error: the start URL 'http://alice:[redacted]@127.0.0.1:")
    assert "put them in --auth USER (the password from SHOAL_AUTH_PASSWORD or a prompt)" in err
    assert SECRET not in err
    with pytest.raises(UsageError, match=r"give them with auth") as caught:
        Crawler(f"https://{SECRET}@a.test/")  # a lone token too
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"http://alice:{SECRET}@127.0.0.1:99999/",  # bad port
        f"http//alice:{SECRET}@a.test/",  # a mistyped scheme: the hint shows the URL
        f"ftp://alice:{SECRET}@a.test/",
    ],
)
def test_an_invalid_start_url_is_shown_without_its_password(url: str) -> None:
    code, err = run_cli("crawl", url, "--no-state")
    assert code == 2 and "invalid URL" in err, err
    assert SECRET not in err and "alice:[redacted]@" in err


def test_a_link_with_credentials_is_crawled_without_them(tmp_path: Path) -> None:
    seen = Seen()
    with recording(seen, "start", {}) as site:
        link = site.url("/a").replace("http://", f"http://u:{SECRET}@")
        site.fallback = seen.route("start", {"/": html("home", link), "/a": html("a")})
        crawl(site.url("/"), tmp_path)
    assert seen.paths("start") == {"/robots.txt", "/", "/a"}
    assert all("authorization" not in h for h in seen.at("start"))
    assert SECRET.encode() not in (tmp_path / "out.jsonl").read_bytes()


# -- --header-for http://HOST --------------------------------------------------------------


def test_header_for_http_host_goes_over_https_too_and_https_host_over_https_only(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """The usual upgrade: http://HOST/ redirects to https://HOST/ on the same host."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    routes: dict[str, bytes] = {"/robots.txt": _reply(404)}
    server = DualServer(context, routes)
    secure = f"https://127.0.0.1:{server.port}"
    routes["/"] = _reply(301, extra=f"Location: {secure}/secure\r\n")
    routes["/secure"] = _reply(200, b"<html><title>s</title></html>")
    try:
        crawl(
            f"http://127.0.0.1:{server.port}/",
            tmp_path,
            verify_tls=False,
            header_for={
                f"http://127.0.0.1:{server.port}": {"X-Both": SECRET},
                "https://127.0.0.1": {"X-Tls": "t"},
            },
        )
    finally:
        server.close()
    plain, tls = server.at("http"), server.at("https")
    assert set(plain) == {"/robots.txt", "/"} and set(tls) == {"/robots.txt", "/secure"}
    for headers in [*plain.values(), *tls.values()]:
        assert headers["x-both"] == SECRET
    assert all("x-tls" not in h for h in plain.values())
    assert all(h["x-tls"] == "t" for h in tls.values())


def test_which_urls_get_a_schemed_host_pattern() -> None:
    rules = HeaderRules.build([], {"http://a.test": ["X-A: 1"], "https://b.test": ["X-B: 2"]}, None)
    headers = RequestHeaders(rules, ["https://start.test/"])
    assert headers.for_url("http://a.test/") == {"X-A": "1"}
    assert headers.for_url("https://a.test:8443/") == {"X-A": "1"}
    assert headers.for_url("https://b.test/") == {"X-B": "2"}
    assert headers.for_url("http://b.test/") == {}


def test_the_help_says_where_header_for_goes() -> None:
    result = CliRunner().invoke(cli, ["crawl", "--help"], terminal_width=400)
    text = " ".join(result.output.split())
    assert "http://HOST: over http and https; https://HOST: https only" in text


# -- no secret in an error message or a warning -------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-H", f"Authorization Bearer {SECRET}: x"],
            "-H/--header: the 1st header's name (before the ':') holds a space",
        ),
        (["-H", f"Authorization={SECRET}: x"], "the 1st header's name (before the ':') holds a"),
        (["-H", f"X-{SECRET * 4}: x", "-H", f"x-{SECRET * 4}: y"], "gives the 2nd header's name"),
        (["-H", f"X-{SECRET * 4}:"], "the 1st header has an empty value"),
        (["--header-for", f"X-Api-Key: {SECRET}", "a.test"], "its host looks like a header"),
        (["--header-for", f"X-Api-Key:{SECRET}", "a.test"], "(are the two swapped?)"),
        (["--header-for", f"u:{SECRET}@a.test", "X: 1"], "host 'u:[redacted]@a.test' is not"),
        (["--proxy", f"http://pu:{SECRET}@127.0.0.1:99999"], "@127.0.0.1:99999': bad port"),
        (["--proxy", f"pu:{SECRET}@127.0.0.1:0"], "@127.0.0.1:0': bad port"),
        (["--proxy", f"https://pu:{SECRET}@p:1"], "only http:// proxies"),
    ],
)
def test_an_error_never_repeats_a_secret(args: list[str], message: str) -> None:
    code, err = run_cli("crawl", "http://127.0.0.1:9/", "--no-state", *args)
    assert code == 2, err
    assert err.startswith("shoal: error: ") and message in err, err
    assert SECRET not in err


def test_a_proxy_from_the_environment_is_named_without_its_password(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    env = dict(os.environ, https_proxy=f"https://pu:{SECRET}@127.0.0.1:3129")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "HTTPS_PROXY"):
        env.pop(name, None)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "shoal", "crawl", "http://127.0.0.1:9/", "--no-state"),
            *("--no-progress", "--max-pages", "1", "--log-file", str(log)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert "ignoring the https proxy from the environment: proxy " in proc.stderr
    assert "@127.0.0.1:3129'" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    assert "@127.0.0.1:3129'" in log.read_text() and SECRET not in log.read_text()


def test_proxy_errors_are_shown_without_the_password() -> None:
    urls = (f"u:{SECRET}@p:0", f"http://u:a/{SECRET}@p:3128", f"socks5://u:{SECRET}@p:1")
    for url in urls:
        with pytest.raises(ValueError, match=r"@p:") as caught:
            ProxyRules(http=url)
        assert SECRET not in str(caught.value)
    assert Proxy.parse(f"u:{SECRET}@p:3128").authorization is not None  # still used


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://u:pw@h:1/x", "http://u:[redacted]@h:1/x"),
        ("u:pw@h:1", "u:[redacted]@h:1"),
        ("http//u:pw@h/", "http//u:[redacted]@h/"),
        ("https://tok@h/", "https://[redacted]@h/"),
        ("http://a:b@c@d/", "http://a:[redacted]@d/"),
        ("https://medium.com/@user", "https://medium.com/@user"),
        ("me@example.com", "me@example.com"),
        ("bot (mailto:me@example.com)", "bot (mailto:me@example.com)"),
        ("http://u:@h/", "http://u:@h/"),
        ("http://***@h/", "http://***@h/"),
    ],
)
def test_redact_userinfo(text: str, shown: str) -> None:
    assert redact_userinfo(text) == shown


# -- header values: ASCII only ----------------------------------------------------------


@pytest.mark.parametrize("value", ["café", "☃", "a\x80b"])
def test_a_header_value_beyond_ascii_is_refused(value: str) -> None:
    code, err = run_cli("crawl", "http://127.0.0.1:9/", "--no-state", "-H", f"X-Name: {value}")
    assert code == 2, err
    assert "-H/--header: the 1st header (X-Name): the value's" in err
    assert "character is not ASCII: a header value is visible ASCII, spaces and tabs" in err
    assert value not in err
    with pytest.raises(UsageError, match="not ASCII"):
        Crawler("http://127.0.0.1:9/", header_for={"a.test": {"X-Name": value}})


# -- other input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--header-for", "::1", "X: 1"], "an IPv6 address is written in brackets: '[::1]'"),
        (["--header-for", "fe80::1:80", "X: 1"], "in brackets: '[fe80::1:80]'"),
        (["--header-for", "exa%41mple.com", "X: 1"], "a host name may not hold '%'"),
        (["--header-for", "host\\evil", "X: 1"], "a host name may not hold '\\\\'"),
        (["-H", "Cookie: a=1", "-H", "cookie: b=2"], "join the values with '; '"),
        (["-H", "Content_Length: 5"], "is Content_Length, which shoal does not take"),
        (["-H", "transfer_encoding: chunked"], "is transfer_encoding, which shoal does not"),
        (["--header-for", "a.test", "X: 1", "--header-for", "A.TEST", "x: 2"], "gives x twice"),
        (["--auth", ""], "shoal: error: --auth has an empty user name"),
        # every other option is checked before the password is asked for
        (["--auth", "bob", "--header-for", "a.test/x", "X: 1"], "--header-for host 'a.test/x'"),
        (["--auth", "bob", "--max-pages", "-1"], "--max-pages"),
    ],
)
def test_bad_input_is_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    code, err = run_cli("crawl", "http://127.0.0.1:9/", "--no-state", *args, env=_no_password_env())
    assert code == 2, err
    assert message in err and "no password" not in err, err


def test_two_spellings_of_one_host_are_one_host() -> None:
    """As repeating one spelling: the headers of both, a name in both given twice."""
    rules = HeaderRules.build([], {"a.test": ["X-A: 1"], "A.Test": ["X-B: 2"]}, None)
    headers = RequestHeaders(rules, ["https://a.test/"])
    assert headers.for_url("https://a.test/") == {"X-A": "1", "X-B": "2"}
    code, err = run_cli(
        *("crawl", "http://127.0.0.1:9/", "--no-state", "--max-pages", "1"),
        *("--header-for", "a.test", "X-A: 1", "--header-for", "A.TEST", "X-B: 2"),
    )
    assert code != 2 and "shoal: error" not in err, err


def test_a_host_tables_spelling_does_not_matter_and_header_for_still_wins() -> None:
    crawler = Crawler(
        "https://a.test/",
        hosts={"a.test": {"headers": {"X-Key": "from-table", "X-Lang": "de"}}},
        header_for={"A.Test": {"X-Key": "given"}},
    )
    assert crawler._headers.for_url("https://a.test/") == {"X-Lang": "de", "X-Key": "given"}


def test_none_is_no_headers() -> None:
    crawler = Crawler("http://127.0.0.1:9/", headers=None, header_for=None)
    assert crawler.options.header_rules().empty


def test_a_password_is_asked_for_only_after_the_rest_is_checked(tmp_path: Path) -> None:
    """With the password in the environment the crawl runs; a bad option is reported
    first without it (test_bad_input...), and the password reaches the server."""
    seen = Seen()
    with Site() as site:
        site.fallback = seen.route("start", {"/": Reply(body=html("home"))})
        code, err = run_cli(
            *("crawl", site.url("/"), "--auth", "bob", "--proxy", "none"),
            *("-o", str(tmp_path / "o.jsonl")),
            env={"SHOAL_AUTH_PASSWORD": SECRET},
        )
    assert code == 0, err
    assert len(seen.at("start")) == 2 and all("authorization" in h for h in seen.at("start"))
