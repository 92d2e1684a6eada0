#!/usr/bin/env python3
"""Crawler benchmark: shoal against Scrapy and a plain queue+threads+requests crawler.

For every configuration (latency, concurrency) and every round, each peer crawls a fresh
bench/site_server.py process; peers take turns going first.  Measured per run: wall time and
CPU/peak RSS of the crawler process only (from os.wait4, so the server is not counted), and,
from the server's request log, pages fetched, duplicate fetches, completeness against the
oracle's reachable set and extra (unreachable or bogus) paths.  Medians are reported.

    .venv/bin/python bench/crawl.py --quick --peers scrapy,plain
    .venv/bin/python bench/crawl.py --markdown bench/results.md
    .venv/bin/python bench/crawl.py --quick --peers shoal --baseline-shoal /tmp/base/.venv/bin/shoal

--baseline-shoal adds the peer shoal-before: another build of shoal (say, main before a
change, installed in its own venv) run with the same flags as shoal, side by side in the
same rounds, with a shoal/shoal-before ratio row.

Standard library only: it runs under the repo's .venv.  Scrapy and requests live in
bench/.venv-peers, which is created on first use and is never a dependency of shoal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from side_venv import ensure_side_venv
from site_server import bfs_levels, ideal_crawl_seconds, reachable_paths

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEER_VENV = BENCH / ".venv-peers"
PEER_PYTHON = PEER_VENV / "bin" / "python"
SHOAL = REPO / ".venv" / "bin" / "shoal"
# shoal keeps durable crawl state (SQLite) by default; shoal-mem is the same crawl with
# --no-state, to measure what durability costs.
# known-urls is not a crawler but the ceiling: it fetches the oracle's list of reachable
# paths with nothing to discover or parse (bench/peers/known_urls.py).
ALL_PEERS = ("shoal", "shoal-mem", "scrapy", "plain", "known-urls")
PEER_PACKAGES = {
    "shoal": "shoal",
    "shoal-mem": "shoal",
    "scrapy": "scrapy",
    "plain": "requests",
    "known-urls": "",  # standard library only
    "shoal-before": "shoal",  # --baseline-shoal: another build of shoal, same flags
}
BASELINE_PEER = "shoal-before"
baseline_shoal: Path | None = None  # set from --baseline-shoal
HOST = "127.0.0.1"
NA = "n/a"


@dataclass(frozen=True)
class Config:
    latency_ms: float
    concurrency: int

    def __str__(self) -> str:
        return f"{self.latency_ms:g} ms, c={self.concurrency}"


@dataclass(frozen=True)
class Run:
    ok: bool
    wall_s: float
    cpu_s: float
    rss_mb: float
    active_s: float  # first request to last response, as seen by the server
    pages: int  # distinct paths requested, robots.txt excluded
    duplicates: int  # paths requested more than once
    completeness: float
    extra: int  # paths requested that are not reachable from /
    items: int  # lines in the peer's JSONL output


RunsByPeer = dict[tuple[Config, str], list[Run]]


def parse_configs(text: str) -> list[Config]:
    """Parse "50:16,0:16" (latency_ms:concurrency pairs)."""
    configs = []
    for pair in text.split(","):
        latency, _, concurrency = pair.partition(":")
        configs.append(Config(float(latency), int(concurrency)))
    return configs


def ensure_peer_venv() -> None:
    """Create bench/.venv-peers with scrapy and requests unless it already works."""
    ensure_side_venv(PEER_VENV, ["scrapy", "requests"], ["scrapy", "requests"])


def package_version(python: Path, package: str) -> str:
    code = f"from importlib.metadata import version; print(version({package!r}))"
    done = subprocess.run([str(python), "-c", code], check=False, capture_output=True, text=True)
    return done.stdout.strip() or "?"


def peer_python(peer: str) -> Path:
    if peer == "known-urls":
        return Path(sys.executable)
    if peer == BASELINE_PEER and baseline_shoal is not None:
        return baseline_shoal.parent / "python"
    return SHOAL.parent / "python" if peer.startswith("shoal") else PEER_PYTHON


def peer_command(
    peer: str, url: str, concurrency: int, output: Path, paths_file: Path
) -> list[str]:
    common = [url, "-o", str(output), "--concurrency", str(concurrency)]
    if peer == "known-urls":
        script = BENCH / "peers" / "known_urls.py"
        return [sys.executable, str(script), *common, "--paths", str(paths_file)]
    if peer.startswith("shoal"):
        tuning = ["--per-host", str(concurrency), "--delay", "0", "--max-pages", "100000", "-q"]
        state = ["--no-state"] if peer == "shoal-mem" else ["--fresh"]
        executable = baseline_shoal if peer == BASELINE_PEER else SHOAL
        return [str(executable), "crawl", *common, *tuning, *state]
    script = BENCH / "peers" / ("scrapy_crawl.py" if peer == "scrapy" else "plain_threads.py")
    return [str(PEER_PYTHON), str(script), *common]


def kill_group(pgid: int) -> None:
    """SIGKILL a process group; children were started in their own session for this."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class SiteProcess:
    """A bench/site_server.py child process, started fresh for every run."""

    def __init__(self, args: argparse.Namespace, latency_ms: float, log: IO[str]) -> None:
        ready = Path(log.name).with_suffix(".port")
        command = [
            sys.executable, str(BENCH / "site_server.py"), "--host", HOST, "--port", "0",
            "--pages", str(args.pages), "--links", str(args.links), "--seed", str(args.seed),
            "--latency-ms", str(latency_ms), "--ready-file", str(ready),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"site server did not start; see {log.name}")
            time.sleep(0.02)
        self.port = int(ready.read_text())

    def stats(self) -> tuple[dict[str, int], float]:
        """Request count per path, and seconds from first request to last response."""
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/__stats", timeout=30) as resp:
            stats = json.load(resp)
        return stats["counts"], float(stats["active_s"])

    def close(self) -> float:
        """Stop the server; return the CPU seconds it used."""
        if self.proc.returncode is not None:  # died at start-up and already reaped
            return 0.0
        self.proc.terminate()
        _, usage, _ = reap(self.proc, timeout_s=10)
        return usage.ru_utime + usage.ru_stime


def reap(
    proc: subprocess.Popen[bytes], timeout_s: float
) -> tuple[int, resource.struct_rusage, bool]:
    """Wait for proc, killing its group after timeout_s; return (exit code, rusage, timed out).

    wait4 rather than Popen.wait: it returns the rusage of this one child (and the descendants
    it reaped), so the crawler's and the server's CPU are never mixed.
    """
    fired = threading.Event()

    def on_timeout() -> None:
        fired.set()
        kill_group(proc.pid)

    timer = threading.Timer(timeout_s, on_timeout)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        kill_group(proc.pid)  # e.g. Ctrl-C, which never reaches a child in its own session
        raise
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting
    kill_group(proc.pid)  # grandchildren left behind
    return proc.returncode, usage, fired.is_set()


def run_child(
    command: list[str], timeout_s: float, log: IO[str]
) -> tuple[int, float, resource.struct_rusage, bool]:
    """Run command; return (exit code, wall seconds, its rusage, whether it timed out)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
    )
    code, usage, timed_out = reap(proc, timeout_s)
    return code, time.perf_counter() - start, usage, timed_out


def run_once(
    args: argparse.Namespace, config: Config, peer: str, reachable: set[str], tag: str
) -> Run:
    workdir: Path = args.workdir
    output = workdir / f"{tag}.jsonl"
    with open(workdir / f"{tag}.server.log", "w") as server_log:
        server = SiteProcess(args, config.latency_ms, server_log)
        try:
            with open(workdir / f"{tag}.peer.log", "w") as peer_log:
                url = f"http://{HOST}:{server.port}/"
                paths_file = workdir / "reachable.txt"
                command = peer_command(peer, url, config.concurrency, output, paths_file)
                code, wall, usage, timed_out = run_child(command, args.timeout, peer_log)
            counts, active_s = server.stats()
        finally:
            server_cpu_s = server.close()

    fetched = {path for path in counts if path != "/robots.txt"}
    items = len(output.read_text().splitlines()) if output.exists() else 0
    run = Run(
        ok=code == 0 and not timed_out,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,  # Linux reports kilobytes
        active_s=active_s,
        pages=len(fetched),
        duplicates=sum(1 for path in fetched if counts[path] > 1),
        completeness=len(fetched & reachable) / len(reachable),
        extra=len(fetched - reachable),
        items=items,
    )
    status = "TIMEOUT" if timed_out else f"exit {code}"
    print(
        f"  {peer:<6} {status}: {run.pages} pages in {wall:.2f} s, cpu {run.cpu_s:.2f} s, "
        f"rss {run.rss_mb:.0f} MB, complete {run.completeness:.1%}, dup {run.duplicates}, "
        f"extra {run.extra}, items {items}; server cpu {server_cpu_s:.2f} s",
        file=sys.stderr,
    )
    if not run.ok:
        print(f"  see {workdir / f'{tag}.peer.log'}", file=sys.stderr)
    return run


@dataclass(frozen=True)
class Summary:
    """Medians over the successful repeats of one (config, peer)."""

    pages_per_s: float
    active_pages_per_s: float
    limit_fraction: float | None  # pages/s over concurrency / latency; None at 0 latency
    cpu_ms_per_page: float
    rss_mb: float
    completeness: float
    duplicates: float
    extra: float
    items: float
    wall_s: float


def summarize(config: Config, runs: list[Run]) -> Summary | None:
    """Medians over the runs that finished cleanly; a crashed or killed run has no rate."""
    good = [r for r in runs if r.ok]
    if not good:
        return None

    def med(values: list[float]) -> float:
        return statistics.median(values)

    pages_per_s = med([r.pages / r.wall_s for r in good])
    limit = config.concurrency / (config.latency_ms / 1000) if config.latency_ms else None
    return Summary(
        pages_per_s=pages_per_s,
        active_pages_per_s=med([r.pages / r.active_s if r.active_s else 0.0 for r in good]),
        limit_fraction=pages_per_s / limit if limit else None,
        cpu_ms_per_page=med([1000 * r.cpu_s / max(r.pages, 1) for r in good]),
        rss_mb=med([r.rss_mb for r in good]),
        completeness=med([r.completeness for r in good]),
        duplicates=med([r.duplicates for r in good]),
        extra=med([r.extra for r in good]),
        items=med([r.items for r in good]),
        wall_s=med([r.wall_s for r in good]),
    )


def table_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else NA


def markdown(
    args: argparse.Namespace, configs: list[Config], peers: list[str], runs: RunsByPeer
) -> str:
    versions = ", ".join(
        f"{PEER_PACKAGES[peer]} {package_version(peer_python(peer), PEER_PACKAGES[peer])}"
        for peer in peers
        if PEER_PACKAGES[peer] and peer != BASELINE_PEER
    )
    if BASELINE_PEER in peers:
        versions += f"; {BASELINE_PEER}: {baseline_shoal}"
    levels = [len(level) for level in bfs_levels(args.pages, args.links, args.seed)]
    title = (
        f"Crawl benchmark: {args.pages} pages, {args.links} links/page, seed {args.seed}, "
        f"medians of {args.repeats} round(s) (successful runs only); {versions}. "
        f"Reachable pages by link distance from /: {', '.join(map(str, levels))}."
    )
    columns = (
        "config", "peer", "ok", "pages/s", "active pages/s", "% of latency limit",
        "active % of limit", "CPU ms/page", "peak RSS MB", "complete", "dup paths", "extra",
        "items", "wall s",
    )  # fmt: skip
    lines = [title, "", table_row(columns), table_row(("---", "---", *["--:"] * 12))]
    ratios = []
    for config in configs:
        summaries = {peer: summarize(config, runs[(config, peer)]) for peer in peers}
        for peer, s in summaries.items():
            done = runs[(config, peer)]
            ok = f"{sum(r.ok for r in done)}/{len(done)}"
            if s is None:
                lines.append(table_row((str(config), peer, ok, *[NA] * 11)))
                continue
            limit = f"{s.limit_fraction:.0%}" if s.limit_fraction is not None else NA
            active = NA
            if config.latency_ms:
                latency_limit = config.concurrency / (config.latency_ms / 1000)
                active = f"{s.active_pages_per_s / latency_limit:.0%}"
            cells = (
                f"{s.pages_per_s:.0f}", f"{s.active_pages_per_s:.0f}", limit, active,
                f"{s.cpu_ms_per_page:.2f}", f"{s.rss_mb:.0f}", f"{s.completeness:.1%}",
                f"{s.duplicates:g}", f"{s.extra:g}", f"{s.items:g}", f"{s.wall_s:.2f}",
            )  # fmt: skip
            lines.append(table_row((str(config), peer, ok, *cells)))
        if config.latency_ms:
            lines.append(ideal_row(args, config))
        base = summaries.get("shoal")
        for peer, s in summaries.items():
            if peer == "shoal" or base is None or s is None:
                continue
            pairs = (
                (base.pages_per_s, s.pages_per_s),
                (base.cpu_ms_per_page, s.cpu_ms_per_page),
                (base.rss_mb, s.rss_mb),
            )
            ratios.append(table_row((str(config), f"shoal/{peer}", *[ratio(*p) for p in pairs])))
    if ratios:
        header = ("config", "ratio", "pages/s (higher)", "CPU ms/page (lower)", "RSS (lower)")
        lines += ["", table_row(header), table_row(("---", "---", "--:", "--:", "--:")), *ratios]
    return "\n".join(lines) + "\n"


def ideal_row(args: argparse.Namespace, config: Config) -> str:
    """What a perfect crawler would reach here: only link discovery holds it back."""
    latency = config.latency_ms / 1000
    seconds = ideal_crawl_seconds(args.pages, args.links, args.seed, config.concurrency, latency)
    pages = len(reachable_paths(args.pages, args.links, args.seed))
    rate = pages / seconds
    fraction = f"{rate / (config.concurrency / latency):.0%}"
    cells = (f"{rate:.0f}", f"{rate:.0f}", fraction, fraction, *["-"] * 6, f"{seconds:.2f}")
    return table_row((str(config), "ideal crawler (simulated)", "-", *cells))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, help="site size (default 3000, --quick 300)")
    parser.add_argument("--links", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--configs", default="50:16,50:64,0:16", help="latency_ms:concurrency pairs"
    )
    parser.add_argument("--repeats", type=int, help="rounds per config (default 3, --quick 1)")
    parser.add_argument("--peers", default=",".join(ALL_PEERS), help="comma-separated subset")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per crawl")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--workdir", type=Path, help="keep outputs and logs here")
    parser.add_argument(
        "--baseline-shoal",
        type=Path,
        metavar="PATH",
        help=f"another shoal executable (e.g. OTHER/.venv/bin/shoal), run as peer {BASELINE_PEER}",
    )
    args = parser.parse_args()
    args.pages = args.pages or (300 if args.quick else 3000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    global baseline_shoal
    args = parse_args()
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if unknown := set(peers) - set(ALL_PEERS):
        sys.exit(f"unknown peer(s): {', '.join(sorted(unknown))}")
    if args.baseline_shoal is not None:
        baseline_shoal = args.baseline_shoal.absolute()  # not resolve(): venvs use symlinks
        if not os.access(baseline_shoal, os.X_OK):
            sys.exit(f"--baseline-shoal: {baseline_shoal} is not an executable")
        peers.append(BASELINE_PEER)
    if not SHOAL.exists():
        for peer in [p for p in peers if p.startswith("shoal") and p != BASELINE_PEER]:
            print(
                f"skipping {peer}: {SHOAL} does not exist (python3 dev.py test installs it)",
                file=sys.stderr,
            )
            peers.remove(peer)
    if not peers:
        sys.exit("no peers to run")
    if {"scrapy", "plain"} & set(peers):
        ensure_peer_venv()

    if SHOAL.exists():
        # The repo's .venv runs shoal from src/ (an editable install). Where
        # PYTHONDONTWRITEBYTECODE is set nothing caches its bytecode, so every crawl would
        # also count compiling shoal (~70 ms here) that an installed build (a baseline
        # venv, a user's pip install) never pays: compile it once, as pip does on install.
        compile_src = [str(SHOAL.parent / "python"), "-m", "compileall", "-q", str(REPO / "src")]
        subprocess.run(compile_src, check=True, stdout=subprocess.DEVNULL)
    configs = parse_configs(args.configs)
    reachable = reachable_paths(args.pages, args.links, args.seed)
    print(f"oracle: {len(reachable)} reachable paths; logs in {args.workdir}", file=sys.stderr)
    (args.workdir / "reachable.txt").write_text("".join(f"{p}\n" for p in sorted(reachable)))
    runs: RunsByPeer = defaultdict(list)
    for config in configs:
        for round_no in range(args.repeats):
            print(f"[{config}] round {round_no + 1}/{args.repeats}", file=sys.stderr)
            # Rotate the order so no peer always runs first (or last) on a warm machine.
            shift = round_no % len(peers)
            for peer in peers[shift:] + peers[:shift]:
                tag = f"lat{config.latency_ms:g}-c{config.concurrency}-r{round_no}-{peer}"
                runs[(config, peer)].append(run_once(args, config, peer, reachable, tag))

    table = markdown(args, configs, peers, runs)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
