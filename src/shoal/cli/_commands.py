"""``shoal crawl``, ``shoal demo``: options in, a Crawler run, a summary and exit code out.

Exit codes: 0 the crawl ran to its end (page-level errors are in the output and the
summary); 1 not one page could be fetched; 2 bad usage; 3 the state file is unusable;
4 the output could not be written; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from .._errors import ShoalError, UsageError, WriterError
from .._version import __version__

EXIT_NOTHING_FETCHED = 1
EXIT_OUTPUT = 4
EXIT_INTERRUPTED = 130

WriterError.exit_code = EXIT_OUTPUT


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    if verbose == 0 and not quiet:
        level = logging.WARNING  # the summary is the default report; -v adds the log
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose < 2:
        logging.getLogger("urllib3").setLevel(logging.WARNING)


def _parse_extract(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, eq, selector = value.partition("=")
        if not eq or not name.strip() or not selector.strip():
            raise click.BadParameter(f"{value!r}: want NAME=SELECTOR", param_hint="--extract")
        out[name.strip()] = selector.strip()
    return out


def _run_crawl(urls: list[str], options: dict[str, Any], quiet: bool, as_json: bool) -> None:
    from ..crawler import Crawler

    try:
        crawler = Crawler(urls, **options)
        try:
            result = crawler.run()
        except KeyboardInterrupt:
            result = crawler.result
            click.echo("\ninterrupted: in-flight requests finished, output flushed", err=True)
            _report(result, quiet, as_json)
            sys.exit(EXIT_INTERRUPTED)
    except ShoalError as exc:
        click.echo(f"shoal: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    _report(result, quiet, as_json)
    if result.pages and result.ok == 0 and result.errors:
        sys.exit(EXIT_NOTHING_FETCHED)


def _report(result: Any, quiet: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_dict()), err=True)
    elif not quiet:
        click.echo(result.summary(), err=True)


def _crawl_options(f: Any) -> Any:
    """The options shared by ``crawl`` and ``demo``."""
    decorators = [
        click.option(
            "-o",
            "--output",
            help="Output file (.jsonl, .csv, .sqlite, .warc.gz); stdout if omitted.",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["jsonl", "csv"]),
            help="Output format (default: from the file suffix, else jsonl).",
        ),
        click.option(
            "--concurrency",
            type=int,
            default=16,
            show_default=True,
            help="Requests in flight in total.",
        ),
        click.option(
            "--per-host",
            type=int,
            default=8,
            show_default=True,
            help="Requests in flight per host.",
        ),
        click.option(
            "--delay",
            type=float,
            default=0.0,
            show_default=True,
            help="Seconds between requests to one host.",
        ),
        click.option("--max-pages", type=int, default=10_000, show_default=True),
        click.option("--max-depth", type=int, default=50, show_default=True),
        click.option(
            "--max-bytes",
            type=int,
            default=10 * 1024 * 1024,
            show_default=True,
            help="Per response, after decompression.",
        ),
        click.option("--max-time", type=float, default=None, help="Seconds for the whole crawl."),
        click.option(
            "--allow-domain",
            "allow_domains",
            multiple=True,
            help="Domain to stay within (repeatable; default: the start URLs' hosts).",
        ),
        click.option(
            "--include", multiple=True, help="Only URLs matching this regex (repeatable)."
        ),
        click.option(
            "--exclude", multiple=True, help="Skip URLs matching this regex (repeatable)."
        ),
        click.option("--no-robots", is_flag=True, help="Ignore robots.txt (be sure you may)."),
        click.option("--user-agent", default=None, help="User-Agent header."),
        click.option(
            "--timeout", type=float, default=30.0, show_default=True, help="Seconds per request."
        ),
        click.option("--retries", type=int, default=2, show_default=True),
        click.option(
            "--extract",
            multiple=True,
            metavar="NAME=SELECTOR",
            help="Field to extract: CSS (::text, ::attr(x)) or xpath:EXPR; NAME[] for all matches.",
        ),
        click.option("--sitemaps", is_flag=True, help="Also start from robots.txt sitemaps."),
        click.option(
            "--max-sitemaps",
            type=int,
            default=1_000,
            show_default=True,
            help="Sitemaps queued per run (each fetch also counts toward --max-pages).",
        ),
        click.option(
            "--max-links-per-page",
            type=int,
            default=10_000,
            show_default=True,
            help="Links taken from one page; the rest are ignored.",
        ),
        click.option("--auto-throttle", is_flag=True, help="Adapt per-host delay to latency."),
        click.option(
            "--http-client",
            "transport",
            type=click.Choice(["native", "urllib3"]),
            default="native",
            show_default=True,
            help="HTTP client to fetch with.",
        ),
        click.option(
            "--proxy",
            metavar="URL",
            default="env",
            help="HTTP proxy for every request (http://[user:pass@]host:port), or 'none'. "
            "Default: http_proxy, https_proxy and no_proxy from the environment.",
        ),
        click.option(
            "--state",
            "state_path",
            metavar="PATH",
            help="Crawl state file (default: OUTPUT.state.sqlite; none for stdout).",
        ),
        click.option("--no-state", is_flag=True, help="Keep state in memory: no resume."),
        click.option("--fresh", is_flag=True, help="Discard saved state and output; start over."),
        click.option(
            "--save-bodies",
            is_flag=True,
            help="Add each response body and its SHA-256 to the records.",
        ),
        click.option("--no-progress", is_flag=True, help="No progress bar, even on a terminal."),
        click.option("--json-summary", is_flag=True, help="Print the summary as JSON."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
        click.option("-v", "--verbose", count=True, help="More log output (-vv: debug)."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _options_from(kw: dict[str, Any]) -> tuple[dict[str, Any], bool, bool]:
    _configure_logging(kw.pop("verbose"), kw["quiet"])
    quiet = kw.pop("quiet")
    as_json = kw.pop("json_summary")
    state_path, no_state = kw.pop("state_path"), kw.pop("no_state")
    if state_path and no_state:
        raise click.UsageError("--state and --no-state exclude each other")
    options = {
        "state": None if no_state else (state_path or "auto"),
        "output": kw.pop("output"),
        "format": kw.pop("fmt"),
        "robots": not kw.pop("no_robots"),
        "extract": _parse_extract(kw.pop("extract")),
        "progress": False if kw.pop("no_progress") or quiet else None,
        **kw,
    }
    if options["user_agent"] is None:
        del options["user_agent"]
    return options, quiet, as_json


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """shoal: a fast, polite, crash-safe web crawler on threads that talk through queues."""


@cli.command()
@click.argument("urls", nargs=-1, required=True)
@_crawl_options
def crawl(urls: tuple[str, ...], **kw: Any) -> None:
    """Crawl from URLS, following links within their hosts."""
    options, quiet, as_json = _options_from(kw)
    _run_crawl(list(urls), options, quiet, as_json)


@cli.command()
@_crawl_options
def demo(**kw: Any) -> None:
    """Serve the bundled sample site on 127.0.0.1 and crawl it (works offline)."""
    from ..crawler._demo_site import DemoSite

    options, quiet, as_json = _options_from(kw)
    # The sample site gets a new port every run, so a saved state could never be resumed.
    options["fresh"] = True
    if options["proxy"] == "env":
        options["proxy"] = None  # the sample site is on this machine: no proxy can reach it
    with DemoSite() as site:
        if not quiet:
            click.echo(f"serving the sample site at {site.url}; crawling it", err=True)
        _run_crawl([site.url], options, quiet, as_json)


@cli.command()
@click.argument("state", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(state: str, as_json: bool) -> None:
    """Report a crawl's progress from its STATE file, running or stopped."""
    from ..state import read_status

    try:
        report = read_status(state)
    except ShoalError as exc:
        click.echo(f"shoal: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    total = report["done"] + report["failed"] + report["queued"]
    click.echo(f"{state}: {'running' if report['running'] else 'stopped'}")
    click.echo(
        f"  done {report['done']}, failed {report['failed']}, queued {report['queued']}"
        f" of {total} discovered"
    )
    click.echo(f"  start: {', '.join(report['identity'].get('start_urls', []))}")
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
