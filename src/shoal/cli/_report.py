"""``shoal report`` and ``shoal crawl --report``: the CLI side of :mod:`shoal.report`."""

from __future__ import annotations

import sys
from typing import Any

import click

from .._errors import ShoalError, UsageError


def run_report(
    output: str,
    *,
    html: str | None,
    state_path: str | None,
    no_state: bool,
    max_rows: int,
    overwrite: bool,
) -> None:
    from ..report import build_report

    if state_path and no_state:
        raise click.UsageError("--state and --no-state exclude each other")
    try:
        result = build_report(
            output,
            html,
            state=None if no_state else (state_path or "auto"),
            max_rows=max_rows,
            overwrite=overwrite,
        )
    except ShoalError as exc:
        click.echo(f"shoal: error: {exc.named(lambda _: '--overwrite')}", err=True)
        sys.exit(exc.exit_code)
    click.echo(
        f"report: {result.html} ({result.pages} pages, {result.broken} broken; "
        f"full lists in {result.csv['broken'].name} and beside it)",
        err=True,
    )


def check_report_target(path: str, options: dict[str, Any], overwrite: bool) -> None:
    """Before the crawl: a report needs a file output, and a path it may write."""
    from ..report import check_writable

    output = options.get("output")
    if output in (None, "-"):
        raise click.UsageError("--report needs a file output: add -o pages.jsonl")
    try:
        check_writable(path, overwrite=overwrite)
    except UsageError as exc:
        raise click.UsageError(exc.named(lambda _: "--overwrite-report")) from None


def _reported(options: dict[str, Any]) -> str | None:
    """The output a --report reads: the first that is not a WARC (a WARC report lacks
    latency, depth and titles), else the first (None: there is none)."""
    output = options.get("output")
    paths = [output] if isinstance(output, str) else list(output or ())
    for path in paths:
        if not str(path).lower().endswith((".warc", ".warc.gz")):
            return str(path)
    return str(paths[0]) if paths else None


def report_after_crawl(path: str, options: dict[str, Any], overwrite: bool, quiet: bool) -> None:
    """After the crawl, however it ended: a report of everything the output holds."""
    from ..report import build_report

    output = _reported(options)
    assert output is not None  # checked by check_report_target
    state = options.get("state")
    try:
        result = build_report(
            output,
            path,
            state=None if state is None else ("auto" if state == "auto" else str(state)),
            overwrite=overwrite,
        )
    except ShoalError as exc:
        report = exc.named(lambda _: "--overwrite-report")
        click.echo(f"shoal: report not written: {report}", err=True)
        return
    if not quiet:
        click.echo(f"report: {result.html}", err=True)
