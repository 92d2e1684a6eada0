"""``shoal crawl``, ``shoal demo``: options in, a Crawler run, a summary and exit code out.

The exit codes are :data:`EXIT_CODES` (shown by ``shoal crawl --help``; the README's table
says the same at length, and tests/test_help.py keeps the two in step).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

from .._errors import LoginFailed, NoProxyLeft, ShoalError, StateError, UsageError, WriterError
from .._url import REDACTED, redact_userinfo, without_userinfo
from .._version import __version__
from ..crawler._options import CrawlOptions
from ._config import apply_config, config_of, settle, spell_host_key
from ._crawl_options import (
    AUTH_PASSWORD_ENV,
    crawl_options,
    flag_for,
    form_env,
    parse_extract,
    parse_form,
    parse_header_for,
)
from ._redis import REDIS_OPTIONS, redis_options

EXIT_NOTHING_FETCHED = 1
EXIT_OUTPUT = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped as by Ctrl-C, told apart for supervisors
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it

EXIT_CODES = (
    (0, "the crawl ran to its end or was already complete (page errors: see the output)"),
    (EXIT_NOTHING_FETCHED, "not one page fetched (every URL failed or robots.txt denied it)"),
    (UsageError.exit_code, "bad usage: an option value, a URL, an --extract name"),
    (
        3,
        "the state cannot be used (state file unwritable, corrupt, another crawl's, in use; Redis "
        "unreachable, refused, too old, lost; a shared crawl with other options)",
    ),
    (EXIT_OUTPUT, "the output cannot be used (unwritable, in use, not this crawl's)"),
    (
        NoProxyLeft.exit_code,
        "every proxy was retired (failed again and again): stopped, state saved",
    ),
    (
        LoginFailed.exit_code,
        "the login failed (--login), at the start or after the session expired: stopped, "
        "state saved",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C): state saved, the same command resumes"),
    (EXIT_TERMINATED, "stopped by SIGTERM, as by Ctrl-C: state saved, the same command resumes"),
    (EXIT_BROKEN_PIPE, "stdout closed by its reader (shoal crawl URL | head)"),
)


def _epilog(examples: list[str], *, exit_codes: bool = False) -> str:
    """A help epilog: examples (and exit codes), laid out as written (click's \\b)."""
    text = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples)
    if exit_codes:
        codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES)
        text += "\n\n\b\nExit codes:\n" + codes
    return text


def _configure_logging(verbose: int, quiet: bool, log_file: str | None = None) -> None:
    from ._logging import configure_logging

    configure_logging(verbose, quiet, log_file)


def _run_crawl(
    urls: list[str],
    options: dict[str, Any],
    quiet: bool,
    as_json: bool,
    *,
    resumable: bool = True,
    redis: dict[str, Any] | None = None,
) -> None:
    to_stdout = options.get("output") in (None, "-")  # several outputs: a list of files
    if to_stdout:
        # A reader that goes away (`| head`) is not an error worth a log line.
        logging.getLogger("shoal.runtime._writer").addFilter(_not_a_broken_pipe)
    try:
        _refuse_credentials_in(urls)
        auth = options.get("auth")
        ask_auth = isinstance(auth, str) and ":" not in auth
        form: dict[str, str | None] = options.get("form") or {}
        ask_form = [name for name, value in form.items() if value is None]
        if ask_auth or ask_form:
            # Every other option checked before a secret is asked for: a typo found
            # after typing it would mean typing it again. (The environment's proxy is
            # left to the real crawler: it would warn twice.)
            proxy = None if options.get("proxy") == "env" else options.get("proxy")
            placeholders = {
                "auth": (auth, "") if ask_auth else auth,
                "form": {name: value or "" for name, value in form.items()},
                "proxy": proxy,
            }
            _crawler(urls, {**options, **placeholders}, redis)
            if ask_auth:
                assert isinstance(auth, str)
                options = {**options, "auth": _with_password(auth)}
            if ask_form:
                options = {**options, "form": _with_form_values(form)}
        crawler = _crawler(urls, options, redis)
        if not quiet:
            crawler.announce = lambda message: click.echo(message, err=True)
        try:
            with _sigterm_as_interrupt() as signals:
                result = crawler.run()
        except (NoProxyLeft, LoginFailed) as exc:
            _report(crawler.result, quiet, as_json)
            how = _how_to_resume(crawler, redis, resumable)
            click.echo(f"shoal: error: {exc}; {how}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            result = crawler.result
            how = _how_to_resume(crawler, redis, resumable)
            requests = (
                f"{result.abandoned} in-flight request(s) abandoned"
                if result.abandoned
                else "in-flight requests finished"
            )
            click.echo(f"\ninterrupted: {requests}, output flushed; {how}", err=True)
            _report(result, quiet, as_json)
            sys.exit(EXIT_TERMINATED if signals[:1] == [signal.SIGTERM] else EXIT_INTERRUPTED)
    except WriterError as exc:
        if to_stdout and _is_broken_pipe(exc):
            _quiet_broken_pipe()
        if isinstance(exc.__cause__, StateError):
            # The state refused the commit (a shared crawl's worker fenced or its lease
            # gone): a state problem, not an output one.
            click.echo(f"shoal: error: {exc.__cause__.named(cli_spelling)}", err=True)
            sys.exit(exc.__cause__.exit_code)
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        click.echo(f"shoal: error: writing the output failed: {exc}{cause}", err=True)
        sys.exit(EXIT_OUTPUT)
    except ShoalError as exc:
        # A host table's error names its keys as the config file spells them.
        spell = spell_host_key if getattr(exc, "field", None) == "hosts" else cli_spelling
        click.echo(f"shoal: error: {exc.named(spell)}", err=True)
        sys.exit(exc.exit_code)
    _report(result, quiet, as_json)
    if result.already_complete:
        return
    if result.ok == 0 and result.redirects == 0 and (result.failed or result.robots_denied):
        if not quiet and not as_json and not result.failed:
            click.echo(
                "not one page fetched: robots.txt disallowed every URL this run tried", err=True
            )
        sys.exit(EXIT_NOTHING_FETCHED)


def _how_to_resume(crawler: Any, redis: dict[str, Any] | None, resumable: bool) -> str:
    if redis is not None:
        return "committed work is in Redis; the same command resumes this worker"
    if crawler.state_path is not None and resumable:
        # Without --fresh/--overwrite: run again, they would delete what was saved.
        args = [a for a in sys.argv[1:] if a not in ("--fresh", "--overwrite")]
        shown, hidden = redacted_args(args)
        again = shlex.join(["shoal", *shown])
        note = (
            " (with the proxy credentials shown as *** put back, or kept in a --proxy-file)"
            if hidden.proxy_credentials
            else ""
        )
        if hidden.secrets:
            note += " (secrets redacted: give them again)"
        return f"state saved in {crawler.state_path}; to resume, run: {again}{note}"
    return "this crawl kept no state it can resume from (stdout, --no-state, demo)"


def _crawler(urls: list[str], options: dict[str, Any], redis: dict[str, Any] | None) -> Any:
    """The crawler of ``shoal crawl`` (checking every option; nothing is opened yet)."""
    if redis is not None:
        from ._redis import open_shared

        return open_shared(urls, options, redis)
    from ..crawler import Crawler

    return Crawler(urls, **options)


def _refuse_credentials_in(urls: list[str]) -> None:
    """A start URL with ``user:password@``: curl and wget would send them, shoal does
    not (the crawler refuses it too, in the Python API's terms)."""
    from .._url import split_url
    from ..crawler import parse_start_url

    for url in urls:
        parse_start_url(url)  # an invalid URL is told as one first
        if split_url(url.strip()).userinfo:
            raise UsageError(
                f"the start URL {redact_userinfo(url.strip())!r} holds credentials "
                "(USER:PASSWORD@), which shoal does not send from a URL: put them in "
                f"--auth USER (the password from {AUTH_PASSWORD_ENV} or a prompt), which "
                "sends them only to the start URLs' hosts"
            )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM (systemd, Docker, Kubernetes stopping the crawl) takes the path of Ctrl-C:
    the first lets in-flight requests finish and saves, a second quits at once. Yields
    the signals received, in order (SIGINT is seen only as its KeyboardInterrupt, so the
    list starts with SIGTERM only when that came first)."""
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be set from the main thread
        return
    before_term = signal.signal(signal.SIGTERM, interrupt)
    before_int = signal.getsignal(signal.SIGINT)
    if before_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, before_term)
        if before_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, before_int)


def cli_spelling(option: str) -> str:
    """An option an error names (:meth:`ShoalError.naming`) as the command line spells
    it: ``max_depth`` is --max-depth, ``overwrite=True`` --overwrite, ``state=None``
    --no-state."""
    name, _, value = option.partition("=")
    return flag_for(f"no_{name}" if value in ("None", "False") else name)


def _not_a_broken_pipe(record: logging.LogRecord) -> bool:
    return "BrokenPipeError" not in record.getMessage()


def _is_broken_pipe(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BrokenPipeError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _quiet_broken_pipe() -> None:
    """The reader of stdout went away (``| head``): stop without a word, as cat does.
    stdout is pointed at /dev/null so the interpreter's final flush cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def _report(result: Any, quiet: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_dict()), err=True)
    elif quiet:
        return
    elif result.already_complete:
        t = result.totals
        if t is not None:
            click.echo(
                f"all {t['runs']} runs: pages {t['pages']} (ok {t['ok']}, redirects "
                f"{t['redirects']}, failed {t['failed']}) in {t['elapsed']}s",
                err=True,
            )
    else:
        click.echo(result.summary(), err=True)


def _options_from(kw: dict[str, Any]) -> tuple[dict[str, Any], bool, bool]:
    _configure_logging(kw.pop("verbose"), kw["quiet"], kw.pop("log_file"))
    quiet = kw.pop("quiet")
    as_json = kw.pop("json_summary")
    state_path, no_state = kw.pop("state"), kw.pop("no_state")
    if state_path and no_state:
        raise click.UsageError("--state and --no-state exclude each other")
    cookies, no_cookies = kw.pop("cookies"), kw.pop("no_cookies")
    if cookies and no_cookies:
        raise click.UsageError("--cookies and --no-cookies exclude each other")
    outputs = kw.pop("output")  # -o is repeatable: one output is a str, several a list
    proxies = kw.pop("proxy")  # repeatable too: none given is the environment's
    options = {
        "proxy": (proxies[0] if len(proxies) == 1 else list(proxies))
        if proxies
        else CrawlOptions.proxy,
        "output": (outputs[0] if len(outputs) == 1 else list(outputs)) if outputs else None,
        "state": None if no_state else (state_path or CrawlOptions.state),
        "extract": parse_extract(kw.pop("extract")),
        "header_for": parse_header_for(kw.pop("header_for")),
        "cookies": False if no_cookies else (cookies or CrawlOptions.cookies),
        "auth": kw.pop("auth"),  # a password not given is asked for by _run_crawl
        "form": parse_form(kw.pop("form")),  # so are form values not given
        "progress": False if kw.pop("no_progress") or quiet else CrawlOptions.progress,
        **kw,
    }
    return options, quiet, as_json


def _with_password(auth: str) -> tuple[str, str]:
    """``--auth USER``: the password is read from the environment, or asked for (hidden)
    when stdin is a terminal; never required on the command line, where other users can
    read it (ps)."""
    password = os.environ.get(AUTH_PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError(
                f"--auth {auth}: no password: set {AUTH_PASSWORD_ENV}, or run on a terminal "
                "to be asked for it"
            )
        password = click.prompt(f"password for {auth}", hide_input=True, err=True)
    return (auth, password)


def _with_form_values(form: dict[str, str | None]) -> dict[str, str]:
    """``--form NAME`` values: read from the environment (form_env), or asked for (hidden)
    on a terminal; never required on the command line, where other users can read it."""
    out: dict[str, str] = {}
    # user-name, user_name and user.name read one variable: two such fields would get one
    # value, the wrong one for one of them.
    read: dict[str, str] = {}
    for name, given in form.items():
        if given is None:
            other = read.setdefault(form_env(name), name)
            if other != name:
                raise UsageError(
                    f"--form {other} and --form {name} would both read {form_env(name)}: "
                    f"give one of them its value (--form {name}=VALUE)"
                )
    for name, given in form.items():
        value = given if given is not None else os.environ.get(form_env(name))
        if value is None:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"--form {name}: no value: set {form_env(name)}, or run on a terminal "
                    "to be asked for it"
                )
            value = click.prompt(f"login form field {name}", hide_input=True, err=True)
        out[name] = value
    return out


# A password given as a URL's query parameter (redis://host/0?password=...).
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd|pass)=)[^&;#\s]*", re.IGNORECASE)


@dataclass(frozen=True)
class Hidden:
    """What :func:`redacted_args` took out of a command line: what the user must supply
    again to run the printed command. True if anything was."""

    # A password, header value or form value: the run asks for it again (--auth USER,
    # --form NAME) or the user types it again.
    secrets: bool = False
    # A --proxy URL's user:password@, shown as ***@ (the proxy's own spelling in messages):
    # put back by the user, or kept in a --proxy-file.
    proxy_credentials: bool = False

    def __bool__(self) -> bool:
        return self.secrets or self.proxy_credentials


def redacted_args(args: list[str]) -> tuple[list[str], Hidden]:
    """A command line (``sys.argv[1:]``) as it may be printed, in one pass: a terminal's
    scrollback and a CI log keep what is printed, so no secret is.

    ``--auth USER:PASSWORD`` is shown as ``--auth USER`` (the run asks again, or reads
    the environment), a --form value not at all (``--form NAME``: likewise), the value
    of a credential header (-H Authorization or Cookie) and of every --header-for header
    as ``[redacted]``, a --proxy URL's ``user:password@`` as ``***@``, and in any other
    value (and in a URL) the password of a ``user:password@`` or of a ``password=`` query
    parameter as ``[redacted]``. :class:`Hidden` says which of these happened.

    The words are read as click reads them, with the command's own table of which
    options take how many values: ``--user-agent -H`` is a user agent, ``-vHCookie:...``
    a header, ``--header-for=HOST 'Name: value'`` a host and its header."""
    from ..crawler._headers import CREDENTIALS, looks_like_header

    proxy_hidden = secrets = False

    def header(value: str, always: bool) -> str:
        name, colon, rest = value.partition(":")
        if not colon:
            return REDACTED if always else value
        if rest.strip() and (always or name.strip().lower() in CREDENTIALS):
            return f"{name}: {REDACTED}"
        return value

    def anything(value: str) -> str:
        return _QUERY_PASSWORD.sub(rf"\g<1>{REDACTED}", redact_userinfo(value))

    def redactor(dest: str, index: int) -> Callable[[str], str]:
        if dest == "auth":
            return lambda value: value.partition(":")[0]
        if dest == "form":  # every login form value: asked for again on the resume
            return lambda value: value.partition("=")[0]
        if dest == "headers":
            return lambda value: header(value, False)
        if dest == "header_for" and index == 1:
            return lambda value: header(value, True)
        if dest == "header_for":  # the host; a header there when the two are swapped
            return lambda value: (
                header(value, True) if looks_like_header(value) else anything(value)
            )
        if not dest:  # a start URL: its query is the page's (a resume must crawl it)
            return redact_userinfo
        return anything  # a --proxy URL's userinfo is ***@ already: left so

    def shown(dest: str, index: int, value: str) -> str:
        nonlocal proxy_hidden, secrets
        if dest == "proxy":
            hidden = without_userinfo(value)
            proxy_hidden |= hidden != value
            value = hidden
        redacted = redactor(dest, index)(value)
        secrets |= redacted != value
        return redacted

    command = cli.commands.get(args[0]) if args else None
    table = _option_table(command or crawl)
    out: list[str] = [] if command is None else [args[0]]
    it = iter(args if command is None else args[1:])

    def values(dest: str, count: int, first: str | None) -> list[str]:
        """The ``count`` words of an option's value, ``first`` (glued to the option) and
        the words after it, each redacted."""
        given = [] if first is None else [first]
        given += itertools.islice(it, count - len(given))
        return [shown(dest, i, value) for i, value in enumerate(given)]

    for arg in it:
        if arg == "--":
            out.append(arg)
            out.extend(shown("", -1, rest) for rest in it)  # the rest are URLs
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            dest, count = table.get(name, ("", 0))
            if not count:
                out.append(arg)
            elif eq:
                first, *more = values(dest, count, value)
                out.extend([f"{name}={first}", *more])
            else:
                out.extend([arg, *values(dest, count, None)])
        elif arg.startswith("-") and len(arg) > 1:
            for i, ch in enumerate(arg[1:], start=1):
                dest, count = table.get("-" + ch, ("", 0))
                if count:
                    tail = arg[i + 1 :]
                    if tail:
                        first, *more = values(dest, count, tail)
                        out.extend([arg[: i + 1] + first, *more])
                    else:
                        out.extend([arg, *values(dest, count, None)])
                    break
            else:
                out.append(arg)
        else:
            out.append(shown("", -1, arg))  # a start URL
    return out, Hidden(secrets=secrets, proxy_credentials=proxy_hidden)


def _option_table(command: click.Command) -> dict[str, tuple[str, int]]:
    """Each spelling of each option of ``command``: (its destination, how many words of
    value it takes; 0 for a flag)."""
    table: dict[str, tuple[str, int]] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            count = 0 if param.is_flag or param.count else param.nargs
            for spelling in (*param.opts, *param.secondary_opts):
                table[spelling] = (param.name or "", count)
    return table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """shoal: a fast, polite, crash-safe web crawler on threads that talk through queues.

    Run "shoal COMMAND --help" for a command's options and examples.
    """


@cli.command(
    epilog=_epilog(
        [
            "shoal crawl https://example.com/ -o pages.jsonl",
            "shoal crawl https://example.com/ -o pages.csv --max-pages 500 --max-depth 3",
            "shoal crawl https://example.com/ -o pages.jsonl --exclude-glob '*.pdf'",
            "shoal crawl https://example.com/ --include '/blog/' --extract 'h1=h1::text'",
            "shoal crawl https://example.com/ -o pages.jsonl --report report.html",
            "shoal crawl https://example.com/ | head   # JSON lines on stdout",
            "(interrupted? run the same command again: it resumes)",
            "shoal crawl https://example.com/ -o part-$(hostname).jsonl "
            "--redis redis://queue:6379/0 --crawl-id docs   # one crawl, many machines",
        ],
        exit_codes=True,
    )
)
@click.argument("urls", nargs=-1, metavar="URL...")
@click.option(
    "--config",
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=apply_config,
    help="Read options from a TOML file: each option under its long name (max-pages = 500, "
    'robots = false, urls = [...]), and [hosts."NAME"] tables of settings for one host '
    "(per-host, delay; NAME:PORT pins a port). Options typed on the command line win.",
)
@crawl_options
@redis_options
@click.option(
    "--report",
    "report_path",
    metavar="FILE",
    help="Also write an HTML report of the output to FILE when the crawl ends "
    "(also after Ctrl-C); see shoal report.",
)
@click.option(
    "--overwrite-report",
    "overwrite_report",
    is_flag=True,
    help="Let --report replace files shoal did not write.",
)
def crawl(
    urls: tuple[str, ...], report_path: str | None, overwrite_report: bool, **kw: Any
) -> None:
    """Crawl from each URL, following links within their hosts.

    Records (one per URL: status, title, timings...) go to -o FILE or stdout; a summary
    goes to stderr. A crawl with -o FILE is resumable: run it again after Ctrl-C or a
    crash and it continues where it stopped.
    """
    ctx = click.get_current_context()
    settle(ctx, kw)
    config = config_of(ctx)
    if not urls:
        raise click.UsageError(
            "give at least one URL (on the command line, or urls = [...] in --config FILE)"
        )
    shared = {k: kw.pop(k) for k in REDIS_OPTIONS}
    redis = shared if shared["redis"] is not None else None
    if redis is None and shared["crawl_id"] is not None:
        raise click.UsageError("--crawl-id names a crawl shared through --redis URL")
    if redis is None and shared["allow_weak_durability"]:
        raise click.UsageError("--allow-weak-durability applies to a crawl shared through --redis")
    options, quiet, as_json = _options_from(kw)
    if config is not None and config.hosts:
        options["hosts"] = config.hosts
    if redis is not None:
        if report_path is not None:
            raise click.UsageError("--report does not apply to a shared crawl's part")
        _run_crawl(list(urls), options, quiet, as_json, redis=redis)
        return
    if report_path is None:
        _run_crawl(list(urls), options, quiet, as_json)
        return
    from ._report import check_report_target, report_after_crawl

    check_report_target(report_path, options, overwrite_report)
    try:
        _run_crawl(list(urls), options, quiet, as_json)
    except SystemExit as exc:
        # A crawl that ran (finished, fetched nothing, interrupted) gets its report; one
        # that could not start (bad usage, unusable state or output) does not.
        ran = (None, 0, EXIT_NOTHING_FETCHED, EXIT_INTERRUPTED, EXIT_TERMINATED)
        if exc.code in (*ran, NoProxyLeft.exit_code):
            report_after_crawl(report_path, options, overwrite_report, quiet)
        raise
    report_after_crawl(report_path, options, overwrite_report, quiet)


@cli.command(
    epilog=_epilog(
        [
            "shoal report pages.jsonl                  # writes pages.jsonl.report.html",
            "shoal report pages.csv -o report.html --max-rows 100",
            "shoal report pages.sqlite --no-state      # from the records alone",
            "shoal report crawl.warc.gz               # responses only: see docs/report.md",
        ]
    )
)
@click.argument("output", type=click.Path(dir_okay=False), metavar="OUTPUT")
@click.option(
    "-o",
    "--out",
    "html",
    metavar="FILE",
    help="Where to write the report.  [default: OUTPUT.report.html]",
)
@click.option(
    "--state",
    "state_path",
    metavar="PATH",
    help="The crawl's state file, for totals across runs and robots.txt verdicts.  "
    "[default: OUTPUT.state.sqlite, if it exists]",
)
@click.option("--no-state", is_flag=True, help="Do not read the state file.")
@click.option(
    "--max-rows",
    type=int,
    metavar="N",
    default=500,
    show_default=True,
    help="Rows per table in the HTML; the full lists go to CSV files beside it.",
)
@click.option("--overwrite", is_flag=True, help="Replace report files shoal did not write.")
def report(
    output: str,
    *,
    html: str | None,
    state_path: str | None,
    no_state: bool,
    max_rows: int,
    overwrite: bool,
) -> None:
    """Write an HTML report (totals, charts, broken links, hosts) of a crawl's OUTPUT."""
    from ._report import run_report

    run_report(
        output,
        html=html,
        state_path=state_path,
        no_state=no_state,
        max_rows=max_rows,
        overwrite=overwrite,
    )


@cli.command(
    epilog=_epilog(
        [
            "shoal demo                       # records on stdout, summary on stderr",
            "shoal demo -o demo.jsonl --max-pages 20",
            "shoal demo --extract 'h1=h1::text' -v",
        ]
    )
)
@crawl_options
def demo(**kw: Any) -> None:
    """Serve the bundled sample site on 127.0.0.1 and crawl it (works offline)."""
    from ..crawler._demo_site import DemoSite

    options, quiet, as_json = _options_from(kw)
    # The sample site gets a new port every run, so a saved state could never be resumed.
    options["fresh"] = True
    if options["proxy"] == "env" and options["proxy_file"] is None:
        options["proxy"] = None  # the sample site is on this machine: no proxy can reach it
    with DemoSite() as site:
        if not quiet:
            click.echo(f"serving the sample site at {site.url}; crawling it", err=True)
        _run_crawl([site.url], options, quiet, as_json, resumable=False)


@cli.command(
    epilog=_epilog(
        [
            "shoal status pages.jsonl.state.sqlite",
            "shoal status pages.jsonl                 # the same: an output names its state",
            "shoal status pages.jsonl --json | jq .totals",
        ]
    )
)
@click.argument("state", type=click.Path(dir_okay=False), metavar="[STATE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts).")
@click.option("--redis", metavar="URL", help="Report the shared crawl --crawl-id in this Redis.")
@click.option("--crawl-id", metavar="ID", help="The shared crawl's name (with --redis).")
def status(state: str | None, as_json: bool, redis: str | None, crawl_id: str | None) -> None:
    """Report a crawl's progress from its STATE file, running or stopped.

    Given a crawl's output file instead (-o FILE), it reports FILE.state.sqlite (for a
    crawl's later -o, the state file beside it that names it). With
    --redis URL --crawl-id ID: a shared crawl's progress, per worker and per host.
    """
    from ..state import read_status

    if redis is not None or crawl_id is not None:
        if redis is None or crawl_id is None or state is not None:
            raise click.UsageError("a shared crawl's status: --redis URL --crawl-id ID, no STATE")
        from ._redis import print_status, status_report

        try:
            shared = status_report(redis, crawl_id)
        except ShoalError as exc:
            click.echo(f"shoal: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        print_status(shared, as_json)
        return
    if state is None:
        raise click.UsageError("give a STATE file (or --redis URL --crawl-id ID)")
    try:
        state = _state_for(state)
        report = read_status(state)
    except ShoalError as exc:
        click.echo(f"shoal: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _print_status(state, report)


@cli.command(
    epilog=_epilog(
        [
            "shoal combine --redis redis://queue:6379/0 --crawl-id docs part-*.jsonl "
            "-o pages.jsonl",
            "shoal combine --redis redis://queue:6379/0 --crawl-id docs a.csv b.csv -o pages.csv",
            "shoal combine --redis redis://queue:6379/0 --crawl-id docs part-*.warc.gz "
            "-o pages.warc.gz",
            "(every worker exited 0 by itself? then JSONL and WARC parts need no cutting: "
            "cat part-*.jsonl > pages.jsonl is the same)",
        ]
    )
)
@click.argument("parts", nargs=-1, required=True, metavar="PART...")
@click.option("--redis", metavar="URL", required=True, help="The shared crawl's Redis.")
@click.option("--crawl-id", metavar="ID", required=True, help="The shared crawl's name.")
@click.option("-o", "--output", metavar="FILE", required=True, help="The combined output.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "warc"]),
    help="Format of the combined FILE.  [default: from -o's suffix]",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing FILE.")
def combine(  # noqa: PLR0917 - click passes options by keyword
    parts: tuple[str, ...],
    redis: str,
    crawl_id: str,
    output: str,
    fmt: str | None,
    overwrite: bool,
) -> None:
    """Combine a shared crawl's PART files (jsonl, csv or warc) into one output holding
    every page of the crawl exactly once: each part is read up to the offset its worker
    committed in Redis (a killed worker's uncommitted tail was fetched again by another).
    Every worker that committed anything must have its part given. WARC parts keep their
    own warcinfo records; sqlite outputs cannot be shared, so there are none to combine.
    """
    from ._redis import combine as combine_shared

    try:
        report = combine_shared(redis, crawl_id, parts, output, fmt=fmt, overwrite=overwrite)
    except ShoalError as exc:
        click.echo(f"shoal: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    cut = sum(1 for r in report if r.size > r.committed)
    records = sum(r.lines if r.records is None else r.records for r in report)
    kind = "WARC records" if any(r.records is not None for r in report) else "records"
    click.echo(
        f"{output}: {records} {kind} from {len(report)} parts"
        + (f" ({cut} cut back to their committed offset)" if cut else ""),
        err=True,
    )


def _state_for(path: str) -> str:
    """``path`` if it is a state file; a crawl output's state file if it is an output."""

    if not os.path.exists(path):
        raise StateError(f"no state file at {path}")
    with open(path, "rb") as f:
        is_sqlite = f.read(16) == b"SQLite format 3\x00"
    from ..state import peek_identity

    if is_sqlite:
        try:
            peek_identity(path)
            return path
        except StateError:
            pass
    beside = path + ".state.sqlite"
    from ..state import state_for_output

    found = state_for_output(path)
    if found is not None:
        click.echo(f"{path} is a crawl's output, not its state; reporting {found}", err=True)
        return str(found)
    raise StateError(
        f"{path} is not a shoal state file (a crawl with -o {path} keeps its state in "
        f"{beside}, which does not exist; a crawl run with --state has it where that says)"
    )


def _print_status(state: str, report: dict[str, Any]) -> None:
    t = report["totals"]
    total = report["done"] + report["failed"] + report["queued"]
    last = report["last_run"]
    how = report["status"]
    if how in ("interrupted", "stopped") and last:
        how += f" (last run: {last})"
    if how == "finished" and report["queued"]:
        how += f"; {report['queued']} URL(s) held back, retried by the next run"
    click.echo(f"{state}: {how}")
    click.echo(
        f"  urls: done {report['done']}, failed {report['failed']}, queued {report['queued']}"
        f" of {total} discovered"
    )
    click.echo(f"  start: {', '.join(report['identity'].get('start_urls', []))}")
    from ..state import SCHEMA_VERSION, identity_outputs

    if report["schema"] < SCHEMA_VERSION:
        click.echo(
            f"  state schema {report['schema']} (older): the next crawl run migrates it to "
            f"{SCHEMA_VERSION} in place, after copying it to {state}.v{report['schema']}.bak"
        )
    for output, _ in identity_outputs(report["identity"]):
        if output:
            click.echo(f"  output: {output}")
    click.echo(
        f"  pages {t['pages']} (ok {t['ok']}, redirects {t['redirects']}, failed {t['failed']})"
        f" in {t['runs']} run(s), {t['elapsed']}s = {t['pages_per_second']} pages/s"
        + (
            f"; each URL once: {t['superseded']} held-back record(s) of URLs retried later "
            "not counted"
            if t.get("superseded")
            else ""
        )
    )
    if t["errors"]:
        kinds = sorted(t["errors"].items(), key=lambda kv: -kv[1])
        click.echo(f"  errors: {', '.join(f'{k} {n}' for k, n in kinds)}")
    for n, run in enumerate(report["runs"][-5:], start=max(1, len(report["runs"]) - 4)):
        click.echo(
            f"  run {n}: {run['outcome']}, pages {run['pages']} (ok {run['ok']}, failed "
            f"{run['failed']}) in {run['elapsed']}s"
        )
    for rec in report.get("recrawls", [])[-5:]:
        counts = ", ".join(f"{k} {v}" for k, v in rec.items() if k != "run")
        click.echo(f"  recrawl run {rec['run']}: {counts}")
    hosts = sorted(report["hosts"].items(), key=lambda kv: -sum(kv[1].values()))
    if hosts:
        width = max(len(h) for h, _ in hosts[:20])
        click.echo(f"  {'host'.ljust(width)}  {'done':>8} {'failed':>8} {'queued':>8}")
        for host, c in hosts[:20]:
            click.echo(f"  {host.ljust(width)}  {c['done']:>8} {c['failed']:>8} {c['queued']:>8}")
        if len(hosts) > 20:
            click.echo(f"  ... and {len(hosts) - 20} more hosts")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(UsageError.exit_code if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
