"""The login, cookie and render options are checked with the others, in CrawlOptions: the
Python API and the command line refuse a conflict or a missing piece in one place, with
one message (spelled as each one spells its options) and exit code 2. Nothing is fetched:
the URLs point at a closed port."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from shoal import Crawler, UsageError
from shoal.cli._commands import cli
from shoal.crawler._options import CrawlOptions, OptionError

SECRET = "S3CRET-login-5531"
START = "http://127.0.0.1:9/"
LOGIN = "http://127.0.0.1:9/login"


def _hook(session: Any) -> None:
    del session


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        (
            {"login": LOGIN, "cookies": False},
            "login",
            "login keeps its session in the cookie jar: not with cookies=False",
        ),
        (
            {"login": _hook, "cookies": False},
            "login",
            "login keeps its session in the cookie jar: not with cookies=False",
        ),
        (
            {"render_scroll": 3},
            "render_scroll",
            "render_script, render_scroll and render_hook need render auto or always",
        ),
        (
            {"render_script": "page.js"},
            "render_script",
            "render_script, render_scroll and render_hook need render auto or always",
        ),
        (
            {"login": LOGIN.replace("http://", f"http://bob:{SECRET}@")},
            "auth",
            "the start URL 'http://bob:[redacted]@127.0.0.1:9/login' holds credentials",
        ),
    ],
)
def test_the_options_refuse_a_login_cookie_or_render_conflict(
    options: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(OptionError) as caught:
        CrawlOptions(**options)
    assert caught.value.field == field
    assert str(caught.value).startswith(message), caught.value
    assert SECRET not in str(caught.value)


def test_the_options_keep_the_login_url_canonical() -> None:
    assert CrawlOptions(login="HTTP://127.0.0.1:9/login").login_url() == LOGIN
    assert CrawlOptions(login=_hook).login_url() is None
    assert CrawlOptions().login_url() is None
    with pytest.raises(UsageError, match="no scheme"):
        CrawlOptions(login="127.0.0.1:9/login")


def test_the_crawler_refuses_the_same_and_a_render_hook_without_render() -> None:
    with pytest.raises(UsageError, match="login keeps its session in the cookie jar"):
        Crawler(START, state=None, login=LOGIN, cookies=False)
    with pytest.raises(UsageError) as caught:
        Crawler(START, state=None, render_hook=_hook)
    assert str(caught.value) == (
        "render_script, render_scroll and render_hook need render auto or always"
    )
    with pytest.raises(UsageError, match="outside the crawl's scope"):
        Crawler(START, state=None, login="http://elsewhere.test/login")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--login", LOGIN, "--no-cookies"],
            "--login keeps its session in the cookie jar: not with --no-cookies",
        ),
        (
            ["--render-scroll", "3"],
            "--render-script, --render-scroll and render_hook need --render auto or always",
        ),
        (
            ["--render-script", "page.js"],
            "--render-script, --render-scroll and render_hook need --render auto or always",
        ),
        (
            ["--login", LOGIN.replace("http://", f"http://bob:{SECRET}@")],
            "the start URL 'http://bob:[redacted]@127.0.0.1:9/login' holds credentials "
            "(USER:PASSWORD@), which shoal does not send from a URL: give them with --auth",
        ),
        (
            ["--login", "127.0.0.1:9/login"],
            "invalid URL '127.0.0.1:9/login': no scheme (did you mean http://127.0.0.1:9/login ?)",
        ),
        (
            ["--login", "http://elsewhere.test/login"],
            "the --login URL http://elsewhere.test/login is outside the crawl's scope",
        ),
    ],
)
def test_the_command_line_says_it_with_its_flags(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["crawl", START, "--no-state", "--proxy", "none", *args])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"shoal: error: {message}"), result.stderr
    assert SECRET not in result.stderr
