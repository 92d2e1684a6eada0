"""Help that teaches, and one name and one default per option (issue 11, issue 9).

Every option of every command has help text and a telling metavar, each command's help
ends with examples, ``crawl --help`` lists the exit codes the README lists, the CLI's
defaults and the ``Crawler`` signature's defaults are CrawlOptions', and error messages
name options as the user spelled them.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import shoal
from shoal.cli._commands import EXIT_CODES, cli
from shoal.cli._crawl_options import flag_for
from shoal.crawler import Crawler, CrawlOptions
from sites import Site, html

README = Path(__file__).resolve().parent.parent / "README.md"
COMMANDS = sorted(cli.commands)
# CrawlOptions fields the command line does not offer (Python API only).
PYTHON_ONLY = {
    "max_redirects",
    "retry_backoff",
    "throttle_target",
    "throttle_start",
    "verify_tls",
    "progress",
    "grace",
    "memory_limit",
    "hosts",  # on the command line: [hosts."NAME"] tables of a --config file
}
# Command-line options that are not CrawlOptions fields: how the command runs.
CLI_ONLY = {
    "no_state",
    "no_cookies",
    "no_progress",
    "json_summary",
    "quiet",
    "verbose",
    "log_file",
    "config",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def init_fields() -> list[dataclasses.Field[object]]:
    return [f for f in dataclasses.fields(CrawlOptions) if f.init]


def default_of(f: dataclasses.Field[object]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def crawl_params() -> dict[str, click.Parameter]:
    return {p.name: p for p in cli.commands["crawl"].params if p.name}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_described(command: str) -> None:
    """Each help says something its option's name does not: a sentence (or a ``-v: ...``
    list) of words beyond the flag's own and the ``[default: ...]`` note, none copied."""
    helps: list[str] = []
    for param in cli.commands[command].params:
        if not isinstance(param, click.Option):
            continue
        text = re.sub(r"\[default: [^]]*\]", "", param.help or "").strip()
        own = {w for opt in param.opts for w in re.findall(r"[a-z]+", opt.lower())}
        new_words = [w for w in re.findall(r"[A-Za-z]+", text) if w.lower() not in own]
        assert text[:1].isupper() or text.startswith("-"), (command, param.opts, text)
        assert len(new_words) >= 2, (command, param.opts, text)
        helps.append(text)
    assert len(helps) == len(set(helps)), f"{command}: two options share a help text"


@pytest.mark.parametrize("command", COMMANDS)
def test_value_options_have_a_telling_metavar(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    assert " TEXT" not in out.replace("--user-agent TEXT", ""), out
    assert " INTEGER" not in out and " FLOAT" not in out, out


def test_files_are_called_files() -> None:
    _, out, _ = run("crawl", "--help")
    assert "-o, --output FILE" in out and "--report FILE" in out and "--state PATH" in out
    _, out, _ = run("report", "--help")
    assert "-o, --out FILE" in out


def test_limits_say_their_unit_and_default() -> None:
    _, out, _ = run("crawl", "--help")
    flat = " ".join(out.split())
    assert "--max-pages N Stop after fetching N URLs" in flat and "[default: 10000]" in flat
    assert "--max-depth N Follow links at most N clicks" in flat
    assert "--retries N Retries of a URL" in flat
    assert "--timeout SECONDS" in flat and "--max-bytes BYTES" in flat
    assert "10485760 = 10 MiB" in flat
    assert "--include REGEX" in flat and "--exclude-glob GLOB" in flat


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_examples(command: str) -> None:
    _, out, _ = run(command, "--help")
    examples = out.split("Examples:", 1)[1].split("Exit codes:", 1)[0]
    lines = [line.strip() for line in examples.strip().splitlines()]
    assert sum(line.startswith(f"shoal {command}") for line in lines) >= 2, out


def test_crawl_help_lists_the_readme_exit_codes() -> None:
    _, out, _ = run("crawl", "--help")
    listed = out.split("Exit codes:", 1)[1]
    for code, meaning in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", listed, re.M), code
    table = README.read_text().split("| exit code | meaning |", 1)[1].split("\n\n", 1)[0]
    in_readme = [int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)]
    assert in_readme == [code for code, _ in EXIT_CODES]


def test_cli_defaults_are_the_crawl_options_defaults() -> None:
    params = crawl_params()
    fields = {f.name: f for f in init_fields()}
    on_cli = set(params) & set(fields)
    assert on_cli == set(fields) - PYTHON_ONLY  # every field is either on the CLI or listed
    shared = {"redis", "crawl_id", "worker_id", "lease_ttl", "allow_weak_durability"}  # Redis
    assert (
        set(params) - set(fields) <= CLI_ONLY | {"urls", "report_path", "overwrite_report"} | shared
    )
    for name in on_cli - {
        "state",
        "extract",
        "output",
        "format",
        "header_for",
        "proxy",
        "cookies",
        "form",
    }:
        default = params[name].default
        if params[name].multiple:
            default = tuple(default or ())
        assert default == default_of(fields[name]), name
    # state, extract, output, format, header_for, proxy, cookies and form have no click
    # default: _options_from maps them (checked by the next test).


def test_an_option_left_out_reaches_the_crawler_as_its_default(tmp_path: Path) -> None:
    """What the CLI passes without any option is exactly CrawlOptions()."""
    from shoal.cli import _commands

    seen: dict[str, object] = {}

    def capture(ctx_kw: dict[str, object]) -> None:
        options, _, _ = original(ctx_kw)
        seen.update(options)
        raise SystemExit(0)

    original = _commands._options_from
    _commands._options_from = capture  # type: ignore[assignment]
    try:
        run("crawl", "http://127.0.0.1:9/")
    finally:
        _commands._options_from = original
    made = CrawlOptions(**seen)  # type: ignore[arg-type]
    assert made == CrawlOptions(progress=made.progress)


def test_crawler_signature_is_crawl_options() -> None:
    params = inspect.signature(Crawler).parameters
    doc = inspect.getdoc(Crawler) or ""
    for f in init_fields():
        param = params[f.name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, f.name
        want = default_of(f)
        assert param.default == (None if want == {} else want), f.name
        assert re.search(rf"^\s+{f.name}: \S", doc, re.M), f"{f.name} is not documented"
    assert "**" not in str(inspect.signature(Crawler))
    for name in ("start_urls", "on_page", "follow_links", "frontier"):
        assert re.search(rf"^\s+{name}: \S", doc, re.M), name


def test_every_flag_spelling_names_a_real_option() -> None:
    typed = {opt for p in cli.commands["crawl"].params for opt in getattr(p, "opts", [])}
    for f in init_fields():
        if f.name not in PYTHON_ONLY:
            assert flag_for(f.name).split("/")[-1] in typed, f.name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-pages", "0"], "--max-pages must be at least 1 (got 0)"),
        (["--max-depth", "-1"], "--max-depth must be at least 0 (got -1)"),
        (["--retries", "-1"], "--retries must be at least 0 (got -1)"),
        (["--per-host", "0"], "--per-host must be at least 1"),
        (["--timeout", "0"], "--timeout must be more than 0 seconds"),
        (["--max-time", "-5"], "--max-time must be more than 0 seconds"),
        (["--delay", "-1"], "--delay must be at least 0"),
        (["--deny-private", "--transport", "urllib3"], "--deny-private needs --transport"),
        (["--transport", "urllib3", "--proxy", "http://p:3128"], "use --transport native"),
        (["--include", "[a-"], "--include takes regular expressions"),
    ],
)
def test_messages_name_the_flag_typed(args: list[str], message: str) -> None:
    code, _, err = run("crawl", "http://127.0.0.1:9/", *args)
    assert code == 2
    assert message in err, err
    for flag in re.findall(r"--[a-z-]+", message):
        python_name = flag[2:].replace("-", "_")
        assert "_" not in python_name or python_name not in err, err


def test_the_python_api_names_python_parameters() -> None:
    with pytest.raises(shoal.UsageError, match=r"^max_pages must be at least 1"):
        Crawler("http://127.0.0.1:9/", max_pages=0)
    with pytest.raises(shoal.UsageError, match="exclude_glob"):
        Crawler("http://127.0.0.1:9/", exclude=["*.html"])


def test_a_glob_given_as_a_regex_gets_a_hint() -> None:
    code, _, err = run("crawl", "http://127.0.0.1:9/", "--exclude", "*.html")
    assert code == 2
    assert "--exclude takes regular expressions" in err
    assert "did you mean '.*\\.html'?" in err
    assert "--exclude-glob '*.html'" in err
    # A broken regex that is no glob gets no guess.
    _, _, err = run("crawl", "http://127.0.0.1:9/", "--exclude", "(a")
    assert "did you mean" not in err and "--exclude takes regular expressions" in err


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("http//host.example/", "http://host.example/"),
        ("http:/host.example/a", "http://host.example/a"),
        ("https//host.example", "https://host.example"),
        ("example.com/path", "http://example.com/path"),
        ("localhost:8000", "http://localhost:8000"),
        ("/just/a/path", None),
        ("ftp//host", None),
        ("http//", None),
    ],
)
def test_did_you_mean_only_when_right(url: str, hint: str | None) -> None:
    code, _, err = run("crawl", url)
    assert code == 2 and "no scheme" in err
    if hint is None:
        assert "did you mean" not in err, err
    else:
        assert f"did you mean {hint} ?" in err, err
    assert "http://http" not in err


def test_globs_select_by_path(tmp_path: Path) -> None:
    pages = {
        "/": html("home", "/a.html", "/b.pdf", "/docs/c", "/docs/d.html"),
        "/a.html": html("A"),
        "/b.pdf": html("B"),
        "/docs/c": html("C"),
        "/docs/d.html": html("D"),
    }
    with Site(pages) as site:
        out = tmp_path / "x.jsonl"
        code, _, err = run(
            "crawl", site.url("/"), "-o", str(out), "--exclude-glob", "*.pdf",
            "--exclude-glob", "/docs/*.html", "-q",
        )  # fmt: skip
        assert code == 0, err
        got = {json.loads(line)["url"][len(site.origin) :] for line in out.open()}
        assert got == {"/", "/a.html", "/docs/c"}
        out2 = tmp_path / "y.jsonl"
        code, _, err = run(
            "crawl", site.url("/"), "-o", str(out2), "--include-glob", "/docs/*",
            "--include-glob", "/", "-q",
        )  # fmt: skip
        assert code == 0, err
        got = {json.loads(line)["url"][len(site.origin) :] for line in out2.open()}
        assert got == {"/", "/docs/c", "/docs/d.html"}


def test_old_spelling_http_client_still_works() -> None:
    """--http-client is the old name of --transport: it selects the transport it names."""
    for command in ("crawl", "demo"):
        for value in ("native", "urllib3"):
            urls = ["http://127.0.0.1:9/"] if command == "crawl" else []  # demo takes none
            ctx = cli.commands[command].make_context(command, [*urls, "--http-client", value])
            assert ctx.params["transport"] == value, (command, value)
    # It reaches the crawl: urllib3 has no proxy support, and says so under either name.
    code, _, err = run("crawl", "http://127.0.0.1:9/", "--http-client", "urllib3", "--proxy",
                       "http://p:3128")  # fmt: skip
    assert code == 2 and "use --transport native" in err, err
    code, _, err = run("demo", "--http-client", "urllib3", "--max-pages", "2", "-q")
    assert code == 0, err


def test_auto_throttle_help_says_where_it_starts_and_how_it_adapts() -> None:
    code, out, _ = run("crawl", "--help")
    assert code == 0
    text = " ".join(out.split())
    start = f"{CrawlOptions.throttle_start:g} s"
    assert f"starts at {start} (or --delay, if larger)" in text, text
    assert f"halfway to the response time / {CrawlOptions.throttle_target:g}" in text
    assert "never above 60 s" in text
    row = next(line for line in README.read_text().splitlines() if "`--auto-throttle`" in line)
    assert f"starts at {start}" in row and "halfway" in row


def test_auto_throttle_behaves_as_the_help_says() -> None:
    from shoal.crawler._jobs import throttled

    assert CrawlOptions(auto_throttle=True).initial_delay == CrawlOptions.throttle_start
    assert CrawlOptions(auto_throttle=True, delay=3.0).initial_delay == 3.0
    options = CrawlOptions(auto_throttle=True)
    delays: dict[str, float] = {}

    def after(elapsed: float, status: int = 200, host: str = "h") -> float:
        current = delays.get(host, options.initial_delay)
        delays[host] = throttled(options, current, elapsed, status, 0.0)
        return delays[host]

    start = CrawlOptions.throttle_start
    assert after(0.2) == (start + 0.2 / CrawlOptions.throttle_target) / 2  # halfway
    assert after(0.0, 503, host="other") == start  # an error never shortens it
    assert after(10_000.0) == 60.0
