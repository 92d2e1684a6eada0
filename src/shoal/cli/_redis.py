"""The command line of a crawl shared through Redis: ``shoal crawl --redis``, ``shoal status
--redis`` and ``shoal combine``.

A worker's id is ``<hostname>:<absolute output path>`` (see ``crawler/_shared.py``), or
``--worker-id``. The same command run again on the same machine with the same ``-o`` is
that worker's restart: it cuts its output back to the offset Redis holds and carries on.
``shoal combine`` finds each part's worker by that id (on the machine that wrote it), or
by the file name alone when exactly one worker of the crawl wrote a file of that name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .._errors import UsageError

if TYPE_CHECKING:
    from ..crawler import Crawler
    from ..state._redis_support import WorkerInfo

REDIS_OPTIONS = ("redis", "crawl_id", "worker_id", "lease_ttl", "allow_weak_durability")


def redis_options(f: Any) -> Any:
    """Options of ``shoal crawl`` for a crawl shared through Redis."""
    decorators = [
        click.option(
            "--redis",
            metavar="URL",
            help="Share the crawl through the Redis at URL (redis://[:PASSWORD@]HOST:PORT/DB "
            "or unix:///path/to.sock): every worker started with the same --redis and "
            "--crawl-id works on one crawl, each with its own -o file. Needs Redis >= 7.0 "
            "with appendonly yes and appendfsync no or always (checked; see README: One "
            "crawl, many machines).",
        ),
        click.option("--crawl-id", metavar="ID", help="The shared crawl's name (with --redis)."),
        click.option(
            "--worker-id",
            metavar="ID",
            help="This worker's name in the shared crawl.  [default: "
            "HOSTNAME:ABSOLUTE-OUTPUT-PATH; the same -o on the same machine is the same "
            "worker, restarted]",
        ),
        click.option(
            "--lease-ttl",
            type=float,
            default=60.0,
            show_default=True,
            metavar="SECONDS",
            help="With --redis: how long a killed worker's URLs stay leased before another "
            "worker takes them (live workers renew theirs).",
        ),
        click.option(
            "--allow-weak-durability",
            is_flag=True,
            help="With --redis: run on a Redis that may lose commits it acknowledged "
            "(appendonly no, appendfsync everysec, or settings it does not show), with a "
            "warning saying what can be lost; without it such a Redis is refused (exit 3).",
        ),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def open_shared(urls: Sequence[str], options: dict[str, Any], redis: dict[str, Any]) -> Crawler:
    """The crawler of this worker: ``Crawler(redis=..., crawl_id=...)`` checks the options
    (in the flags' spelling on the way out); its ``run()`` joins the crawl."""
    from ..crawler import Crawler

    return Crawler(list(urls), **options, **redis)


def _state(url: str, crawl_id: str) -> Any:
    """Open an existing crawl for reading (its stored identity is not checked)."""
    from ..state._redis import RedisCrawlState
    from ..state._redis_support import connect

    client = connect(url, 10.0)
    state = RedisCrawlState(client, url, crawl_id, lease_ttl=60.0, reconnect_for=5.0)
    try:
        state._check_server()
        if not client.exists(f"{state.prefix}meta"):
            raise UsageError(f"no crawl {crawl_id!r} in Redis at {state._url}")
    except BaseException:
        state.close()
        raise
    return state


def status_report(url: str, crawl_id: str) -> dict[str, Any]:
    state = _state(url, crawl_id)
    try:
        counts = state.stats()
        workers = state.workers()
        hosts = state.by_host()
        recrawls = state.recrawl_runs()
        run = state.generation()
    finally:
        state.close()
    return {
        "crawl_id": crawl_id,
        "status": "finished" if counts.pending == 0 else "running",
        "queued": counts.queued,
        "leased": counts.leased,
        "done": counts.done,
        "failed": counts.failed,
        "run": run,
        "recrawls": recrawls,
        "hosts": {
            h: {"queued": t.queued, "in_flight": t.in_flight, "done": t.done, "failed": t.failed}
            for h, t in hosts.items()
        },
        "workers": {
            w.worker_id: {
                "epoch": w.epoch,
                "offset": w.offset,
                "leases": w.leases,
                "done": w.done,
                "failed": w.failed,
                "idle_for": w.idle_for,
            }
            for w in workers
        },
    }


def print_status(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    r = report
    run = r.get("run", 1)
    # done and failed count every run's visits: a recrawled URL once per run.
    click.echo(f"crawl {r['crawl_id']}: {r['status']}" + (f" (run {run})" if run > 1 else ""))
    click.echo(
        f"  urls: done {r['done']}, failed {r['failed']}, queued {r['queued']}, "
        f"leased {r['leased']}"
    )
    for rec in r.get("recrawls", [])[-5:]:
        counts = ", ".join(f"{k} {v}" for k, v in rec.items() if k != "run")
        click.echo(f"  recrawl run {rec['run']}: {counts}")
    for wid, w in r["workers"].items():
        idle = "" if w["idle_for"] is None else f", last seen {w['idle_for']:.0f}s ago"
        click.echo(
            f"  worker {wid}: done {w['done']}, failed {w['failed']}, leases {w['leases']}, "
            f"output at byte {w['offset']}{idle}"
        )
    hosts = sorted(r["hosts"].items(), key=lambda kv: -sum(kv[1].values()))
    if hosts:
        width = max(len(h) for h, _ in hosts[:20])
        click.echo(f"  {'host'.ljust(width)}  {'done':>8} {'failed':>8} {'queued':>8} {'busy':>5}")
        for host, c in hosts[:20]:
            click.echo(
                f"  {host.ljust(width)}  {c['done']:>8} {c['failed']:>8} {c['queued']:>8}"
                f" {c['in_flight']:>5}"
            )
        if len(hosts) > 20:
            click.echo(f"  ... and {len(hosts) - 20} more hosts")


def _match(part: str, workers: list[WorkerInfo]) -> WorkerInfo | None:
    by_id = {w.worker_id: w for w in workers}
    from ..crawler._shared import worker_id_for

    own = by_id.get(worker_id_for(part))
    if own is not None:
        return own
    name = os.path.basename(part)
    named = [w for w in workers if re.split(r"[/:]", w.worker_id)[-1] == name]
    if len(named) == 1:
        return named[0]
    if not named:
        # A worker killed before it joined the crawl committed nothing: none of its file.
        click.echo(
            f"note: no worker of this crawl committed to {part}: nothing of it is used", err=True
        )
        return None
    raise UsageError(
        f"several workers wrote a file named {name}: run combine on the machine that wrote "
        f"{part}, with its path as the crawl had it"
    )


def combine(
    url: str,
    crawl_id: str,
    parts: Sequence[str],
    output: str,
    *,
    fmt: str | None,
    overwrite: bool,
) -> list[Any]:
    from ..state import combine_parts

    state = _state(url, crawl_id)
    try:
        counts = state.stats()
        workers = state.workers()
    finally:
        state.close()
    if counts.pending:
        click.echo(
            f"warning: crawl {crawl_id} is not over ({counts.pending} URLs queued or leased): "
            "the result holds what is committed so far",
            err=True,
        )
    matched = [(p, _match(p, workers)) for p in parts]
    seen: dict[str, str] = {}
    for p, w in matched:
        if w is None:
            continue
        if w.worker_id in seen:
            raise UsageError(f"{p} and {seen[w.worker_id]} are the same worker's part")
        seen[w.worker_id] = p
    missing = [w.worker_id for w in workers if w.worker_id not in seen and w.offset > 0]
    if missing:
        raise UsageError(
            f"parts of these workers are missing (their pages would be lost): {', '.join(missing)}"
        )
    result: list[Any] = combine_parts(
        [(p, 0 if w is None else w.offset) for p, w in matched],
        output,
        format=fmt,
        overwrite=overwrite,
    )
    return result
