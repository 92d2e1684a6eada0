"""The command line of a crawl shared through Redis: ``shoal crawl --redis``, ``shoal status
--redis`` and ``shoal combine``.

A worker's id is ``<hostname>:<absolute output path>`` (when that is printable ASCII
without spaces and at most 200 characters; otherwise ``<hostname>:h<hash>:<file name>``),
or ``--worker-id``. The same command run again on the same machine with the same ``-o`` is
that worker's restart: it cuts its output back to the offset Redis holds and carries on.
``shoal combine`` finds each part's worker by that id (on the machine that wrote it), or
by the file name alone when exactly one worker of the crawl wrote a file of that name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .._errors import OutputError, UsageError

if TYPE_CHECKING:
    from ..state._redis_support import WorkerInfo

_PRINTABLE = re.compile(r"[!-~]{1,200}")

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


def worker_id_for(output: str) -> str:
    path = os.path.abspath(output)
    host = socket.gethostname() or "localhost"
    wid = f"{host}:{path}"
    if _PRINTABLE.fullmatch(wid):
        return wid
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    name = re.sub(r"[^!-~]", "_", os.path.basename(path))[:60] or "out"
    return f"{host}:h{digest}:{name}"[:200]


def check_shared(options: dict[str, Any], redis: dict[str, Any]) -> None:
    """Refuse what a shared crawl cannot do, before anything is opened."""
    if redis["crawl_id"] is None:
        raise UsageError("--redis needs --crawl-id ID (the shared crawl's name)")
    output = options.get("output")
    if isinstance(output, list):
        raise UsageError(
            "--redis takes one -o: each worker writes its own output file (combine the "
            "parts with shoal combine, into any format)"
        )
    if output in (None, "-"):
        raise UsageError("--redis needs -o FILE: each worker writes its own output file")
    from ..crawler.output import infer_format

    fmt = infer_format(output, options.get("format"))
    if fmt == "sqlite":
        raise UsageError(
            "--redis needs an output with byte offsets (jsonl, csv or warc), not sqlite"
        )
    if options.get("state") not in (None, "auto"):
        raise UsageError("--redis keeps the crawl's state in Redis: do not give --state")
    if options.get("fresh"):
        raise UsageError("--fresh does not apply to a shared crawl: use a new --crawl-id")
    if redis["lease_ttl"] is None or redis["lease_ttl"] < 1:
        raise UsageError("--lease-ttl must be at least 1 second")


def open_shared(urls: Sequence[str], options: dict[str, Any], redis: dict[str, Any]) -> Any:
    """A Crawler on a RedisFrontier (the crawl's identity from a crawler of the same
    options; a crawl of this id with other scope options is refused, exit 3)."""
    from ..crawler import Crawler
    from ..crawler.frontier.redis import RedisFrontier

    check_shared(options, redis)
    _not_in_use(options["output"])
    probe = Crawler(list(urls), **{**options, "state": None})
    opts = probe.options
    worker = redis["worker_id"] or worker_id_for(options["output"])
    frontier = RedisFrontier.open(
        redis["redis"],
        redis["crawl_id"],
        worker,
        probe.identity(),
        per_host=opts.per_host,
        delay=opts.initial_delay,
        robots=opts.robots,
        lease_ttl=redis["lease_ttl"],
        allow_weak_durability=redis["allow_weak_durability"],
    )
    try:
        return Crawler(list(urls), **{**options, "state": None}, frontier=frontier)
    except BaseException:
        frontier.close()
        raise


def _not_in_use(path: str) -> None:
    """Refuse an output another running worker writes *before* joining the crawl: joining
    as its worker id would fence that live worker (its commits refused from then on)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # absent (or unreadable: the crawler's own claim reports it)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(
            f"{path} is being written by another running crawl (this worker would take over "
            "its worker id and stop it); choose another -o"
        ) from None
    except OSError:
        pass
    finally:
        os.close(fd)


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
    finally:
        state.close()
    return {
        "crawl_id": crawl_id,
        "status": "finished" if counts.pending == 0 else "running",
        "queued": counts.queued,
        "leased": counts.leased,
        "done": counts.done,
        "failed": counts.failed,
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
    click.echo(f"crawl {r['crawl_id']}: {r['status']}")
    click.echo(
        f"  urls: done {r['done']}, failed {r['failed']}, queued {r['queued']}, "
        f"leased {r['leased']}"
    )
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
