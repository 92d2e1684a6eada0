"""Reading a crawl's progress from its state file, running or not (``shoal status``).

Apart from ``_store`` because it only reads: it opens the file read-only, never takes
the crawl's lock (it only tests it), and so works beside a live crawl (WAL mode).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from .._errors import StateError
from ._store import (
    DONE,
    FAILED,
    QUEUED,
    _run_totals,
    _schema_of,
    _translated,
    identity_outputs,
    peek_identity,
    recrawl_runs,
)

__all__ = ["read_status", "state_for_output"]

# A crawl's later outputs have no state named after them: it is found by asking the state
# files beside the output which crawl wrote it; a directory with more is not searched.
_MAX_STATES_SEARCHED = 100


def read_status(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Progress of the crawl whose state is at ``path``, running or not (read-only).

    ``status`` is ``running`` (a live crawl holds the lock), ``finished`` (the last run
    ran out of work; URLs still queued then were held back and are retried by the next
    run), ``interrupted`` (Ctrl-C, or killed: the last run never recorded its end),
    ``stopped`` (a limit such as max_pages ended it; ``last_run`` says which) or
    ``failed`` (the output could not be written). ``schema`` is the file's state schema
    version: below ``SCHEMA_VERSION``, the next crawl run migrates it (status does not).
    """
    path = Path(path)
    if not path.exists():
        raise StateError(f"no state file at {path}")
    peek_identity(path)  # a clear error for a file that is not a shoal state
    with _translated(f"reading {path}"):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            # An older file is read as it is (never migrated: this is read-only); a newer
            # one may hold what this shoal cannot read, so it is refused.
            schema = _schema_of(path, meta)
            totals = dict.fromkeys(("queued", "done", "failed"), 0)
            hosts: dict[str, dict[str, int]] = {}
            names = {QUEUED: "queued", DONE: "done", FAILED: "failed"}
            for host, state, n in conn.execute(
                "SELECT host, state, count(*) FROM urls GROUP BY host, state"
            ):
                totals[names[state]] += n
                hosts.setdefault(host, dict.fromkeys(("queued", "done", "failed"), 0))
                hosts[host][names[state]] = n
            runs = _run_totals(conn)
            recrawls = recrawl_runs(conn)
            try:
                outputs = [
                    {"path": p, "format": f, "offset": n}
                    for p, f, n in conn.execute(
                        "SELECT path, format, offset FROM outputs ORDER BY n"
                    )
                ]
            except sqlite3.OperationalError:
                outputs = []  # a file no shoal with several outputs has opened yet
        except sqlite3.OperationalError as exc:
            raise StateError(f"{path} is not a shoal state file ({exc})") from None
        finally:
            conn.close()
    running = _is_locked(path)
    last = runs["runs"][-1]["outcome"] if runs["runs"] else None
    if running:
        status = "running"
    elif last == "finished" or (last is None and totals["queued"] == 0 and totals["done"]):
        # Queued URLs left by a finished run were held back (robots.txt unreachable):
        # the next run retries them.
        status = "finished"
    elif last is not None and last.startswith("stopped"):
        status = "stopped"
    elif last == "failed":
        status = "failed"
    else:
        status = "interrupted"
    if last == "running" and not running:
        last = "killed"  # the run never recorded its end
    return {
        "state": str(path),
        "schema": schema,
        "status": status,
        "running": running,
        "last_run": last,
        **totals,
        "hosts": hosts,
        "identity": json.loads(meta.get("identity", "{}")),
        "output_offset": int(meta.get("output_offset", 0)),
        "outputs": outputs,
        **runs,
        "recrawls": recrawls,
    }


def state_for_output(output: str | os.PathLike[str]) -> Path | None:
    """The state file of the crawl that wrote ``output`` (with ``--state`` left to its
    default): OUTPUT.state.sqlite, or for a crawl's second or later ``-o``, the state file
    beside it (``*.state.sqlite``) whose crawl names it as an output. None if neither."""
    beside = Path(f"{output}.state.sqlite")
    if beside.exists():
        return beside
    want = os.path.abspath(output)
    folder = Path(want).parent
    try:
        candidates = sorted(folder.glob("*.state.sqlite"))[:_MAX_STATES_SEARCHED]
    except OSError:
        return None
    for candidate in candidates:
        try:
            identity = peek_identity(candidate)
        except StateError:
            continue  # not a shoal state: not this output's either
        if identity and want in {p for p, _ in identity_outputs(identity)}:
            return candidate
    return None


def _is_locked(path: Path) -> bool:
    import fcntl

    try:
        fd = os.open(f"{path}.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
