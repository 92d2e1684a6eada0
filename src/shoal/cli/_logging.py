"""The CLI's log: user-facing lines on stderr (above the live bar), the full log in a file.

Terminal lines carry no module paths: ``warning: stopping: ...``, and per-URL lines
(``-v``) as ``200  12.3 KB   45 ms  https://...``. The handler looks ``sys.stderr`` up at
every line rather than holding the stream it was created with: while the live bar runs,
``sys.stderr`` is rich's proxy, which prints each line above the bar instead of through
it. ``--log-file`` appends the same lines with a timestamp, level and logger name.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

_PREFIX = {
    logging.DEBUG: "debug: ",
    logging.INFO: "",
    logging.WARNING: "warning: ",
    logging.ERROR: "error: ",
    logging.CRITICAL: "error: ",
}


class _UserFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = _PREFIX.get(record.levelno, "") + record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            # The traceback belongs in the log file (-vv shows it too); the terminal
            # gets the exception's one-line reason.
            exc = record.exc_info[1]
            if exc is not None:
                text += f" ({type(exc).__name__}: {exc})"
        return text


class _StderrHandler(logging.Handler):
    """Writes each formatted line to whatever ``sys.stderr`` is at that moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            stream = sys.stderr
            stream.write(line)
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never take the crawl down
            self.handleError(record)


def configure_logging(verbose: int, quiet: bool, log_file: str | None = None) -> None:
    """Terminal: warnings (-q: errors only; -v: one line per URL; -vv: debug).

    ``log_file`` gets INFO and up (DEBUG with -vv) whatever the terminal shows,
    appended: an existing log is never cut.
    """
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_shoal", False):  # a second CLI run in one process (tests)
            root.removeHandler(old)
            old.close()
    terminal = _StderrHandler(level)
    terminal.setFormatter(_UserFormatter())
    terminal._shoal = True  # type: ignore[attr-defined]
    root.addHandler(terminal)
    file_level = logging.DEBUG if verbose >= 2 else logging.INFO
    if log_file:
        try:
            handler: logging.Handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            import click

            raise click.UsageError(
                f"cannot open --log-file {log_file}: {exc.strerror or exc}"
            ) from None
        handler.setLevel(file_level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._shoal = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(min(level, file_level) if log_file else level)
    if verbose < 2:
        logging.getLogger("urllib3").setLevel(logging.WARNING)
