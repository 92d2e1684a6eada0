#!/usr/bin/env python3
"""Rendering benchmark (#18): pages that JavaScript builds, crawled in headless Chromium.

Two sites from bench/render_site.py, served by the bench on 127.0.0.1 (a fresh server per
run, in its own process):

- ``app``: every page an app shell (``<div id=app></div><script src=/app.js>``) filled from a
  JSON API; ~``--pages`` pages (lists and items). Crawled by shoal ``--render always``, shoal
  ``--render auto``, Crawlee for Python's PlaywrightCrawler and scrapy-playwright.
- ``mixed``: the same tree with 80 % static pages; shoal ``auto`` against ``always``.

All on the same system Chromium (``--browser``) with the same page concurrency
(``--concurrency``: shoal ``--render-concurrency`` and ``--concurrency``; Crawlee min = max
concurrency; scrapy-playwright CONCURRENT_REQUESTS and pages per context). Every tool waits
for the page's ``h1`` (shoal ``--render-wait-for h1`` on top of its default quiet window),
extracts its text, and follows every same-host link.

Measured per run:

- pages/s: pages found / wall seconds of the tool's process (start-up and browser launch
  included);
- CPU s/page: user+sys of the tool's whole process tree, from the bench's own
  RUSAGE_CHILDREN: the bench is a child subreaper, so a descendant orphaned on its way
  out (a renderer whose browser was killed) is reaped by the bench and counted too, where
  the tool's own wait4 would lose it;
- peak RSS / peak PSS: the tool's process tree (found by parent pid in /proc, sampled every
  0.2 s), summed per sample; RSS counts shared pages once per process, PSS shares them out;
- found: distinct site pages in the tool's output, against the site's truth;
- right: item pages whose extracted h1 is the right ``Item N``;
- rendered: pages the tool rendered (shoal: records with ``"rendered": true``; a peer renders
  every page); API-filled: pages the server saw an API call for (an app shell whose script
  ran); requests: every request the server saw (pages, scripts, API; shoal's robots.txt).

    .venv/bin/python bench/render.py --pages 500 --concurrency 4 --markdown /tmp/render.md

Peers live in bench/.venv-crawlee and bench/.venv-scrapypw (bench/side_venv.py, created on
first use with PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1: no browser is ever downloaded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from render_site import PER_LIST, truth  # noqa: E402
from side_venv import ensure_side_venv  # noqa: E402

HOST = "127.0.0.1"
SHOAL = REPO / ".venv" / "bin" / "shoal"
CRAWLEE_VENV = BENCH / ".venv-crawlee"
SCRAPYPW_VENV = BENCH / ".venv-scrapypw"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# (site, tool) in the order they run.
RUNS = [
    ("app", "shoal-always"),
    ("app", "crawlee"),
    ("app", "scrapy-playwright"),
    ("mixed", "shoal-auto"),
    ("mixed", "shoal-always"),
    ("app", "shoal-auto"),
    # shoal's default quiet window on top of the h1 (the peers have none): its cost.
    ("app", "shoal-always-quiet"),
]


def peer_python(tool: str) -> Path:
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    if tool == "crawlee":
        return ensure_side_venv(CRAWLEE_VENV, ["crawlee.crawlers", "playwright"],
                                ["crawlee[playwright]"])  # fmt: skip
    return ensure_side_venv(SCRAPYPW_VENV, ["scrapy_playwright"], ["scrapy-playwright"])


def version(python: Path, package: str) -> str:
    code = f"from importlib.metadata import version; print(version({package!r}))"
    done = subprocess.run([str(python), "-c", code], check=False, capture_output=True, text=True)
    return done.stdout.strip() or "?"


def command(tool: str, url: str, out: Path, args: argparse.Namespace) -> list[str]:
    c = str(args.concurrency)
    if tool.startswith("shoal"):
        mode = tool.split("-")[1]
        quiet = ["--render-wait", "0.5"] if tool.endswith("-quiet") else []
        return [
            str(SHOAL), "crawl", url, "-o", str(out), "--render", mode,
            "--render-concurrency", c, "--concurrency", c, "--per-host", str(4 * args.concurrency),
            "--delay", "0", "--browser", args.browser, "--render-wait-for", "h1", *quiet,
            "--extract", "name=h1::text", "--no-state", "--overwrite", "-q",
        ]  # fmt: skip
    script = "crawlee_render.py" if tool == "crawlee" else "scrapy_playwright_render.py"
    return [str(peer_python(tool)), str(BENCH / "peers" / script), url, "-o", str(out),
            "--concurrency", c, "--browser", args.browser]  # fmt: skip


def tree(root: int) -> list[int]:
    """root and its descendants, by parent pid in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def memory(pids: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over pids."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
    return rss, pss


class Sampler(threading.Thread):
    """Peak summed RSS and PSS of a process tree, every ``period`` seconds."""

    def __init__(self, root: int, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.period = root, period
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = tree(self.root)
            rss, pss = memory(pids)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.stop.wait(self.period)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def reap(
    proc: subprocess.Popen[bytes], timeout_s: float
) -> tuple[int, resource.struct_rusage, bool]:
    fired = threading.Event()

    def on_timeout() -> None:
        fired.set()
        kill_group(proc.pid)

    timer = threading.Timer(timeout_s, on_timeout)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        kill_group(proc.pid)
        raise
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    kill_group(proc.pid)
    return proc.returncode, usage, fired.is_set()


def become_subreaper() -> None:
    """Orphans of the tools' trees come to this process, to be reaped and counted."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans(keep: set[int], timeout_s: float = 30.0) -> list[str]:
    """Wait for this process's children but ``keep`` (descendants of a finished tool
    orphaned to it); any still alive after ``timeout_s`` is killed. Their names, if any
    had to be killed (left behind by the tool)."""
    me = os.getpid()
    deadline = time.monotonic() + timeout_s
    left: list[str] = []
    while True:
        kids = [p for p in tree(me) if p != me and p not in keep and ppid(p) == me]
        if not kids:
            return left
        for pid in kids:
            if time.monotonic() > deadline:
                with contextlib.suppress(OSError):
                    left.append(Path(f"/proc/{pid}/comm").read_text().strip())
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    time.sleep(0.05)


def ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class SiteProcess:
    def __init__(self, kind: str, pages: int, workdir: Path, log: IO[str]) -> None:
        ready = workdir / f"{kind}.port"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, str(BENCH / "render_site.py"), "--kind", kind,
               "--pages", str(pages), "--ready-file", str(ready)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"site server did not start; see {log.name}")
            time.sleep(0.02)
        self.port = int(ready.read_text())

    def counts(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"http://{HOST}:{self.port}/__stats", timeout=30) as resp:
            return dict(json.load(resp)["counts"])

    def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class Run:
    site: str
    tool: str
    ok: bool
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    peak_pss_mb: float
    procs: int
    found: int
    truth: int
    right: int
    items: int
    rendered: int
    api_pages: int
    requests: int

    @property
    def pages_per_s(self) -> float:
        return self.found / self.wall_s if self.wall_s else 0.0


def site_truth(pages: int) -> set[str]:
    lists, items = truth(pages)
    paths = {"/"} | {f"/list/{n}" for n in range(2, lists + 1)}
    return paths | {f"/item/{i}" for i in range(1, items + 1)}


def run_one(site: str, tool: str, args: argparse.Namespace) -> Run:
    workdir: Path = args.workdir
    tag = f"{site}-{tool}"
    out = workdir / f"{tag}.jsonl"
    out.unlink(missing_ok=True)
    cwd = workdir / tag
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    expected = site_truth(args.pages)
    with open(workdir / f"{tag}.server.log", "w") as server_log:
        server = SiteProcess(site, args.pages, workdir, server_log)
        try:
            url = f"http://{HOST}:{server.port}/"
            cmd = command(tool, url, out, args)
            with open(workdir / f"{tag}.log", "w") as log:
                log.write(" ".join(cmd) + "\n")
                log.flush()
                env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                        start_new_session=True, cwd=cwd, env=env)  # fmt: skip
                sampler = Sampler(proc.pid)
                sampler.start()
                code, _, timed_out = reap(proc, args.timeout)
                wall = time.perf_counter() - start
                sampler.stop.set()
                sampler.join()
                leftover = reap_orphans(keep={server.proc.pid})
                if leftover:
                    print(f"{tag}: left behind, killed: {', '.join(leftover)}", file=sys.stderr)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            counts = server.counts()
        finally:
            server.close()
    names: dict[str, object] = {}
    shoal_rendered = 0
    if out.exists():
        for line in out.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                path = urlsplit(str(record.get("url", ""))).path or "/"
                shoal_rendered += record.get("rendered") is True
                if record.get("error") in (None, "") and record.get("status", 200) == 200:
                    names[path] = record.get("name")
    found = set(names) & expected
    items = {p for p in expected if p.startswith("/item/")}
    right = sum(1 for p in items if names.get(p) == f"Item {p.split('/')[2]}")
    # shoal says which pages it rendered; a peer renders every page.
    rendered = shoal_rendered if tool.startswith("shoal") else len(names)
    api_pages = sum(1 for p in counts if p.startswith("/api/"))
    run = Run(
        site=site, tool=tool, ok=code == 0 and not timed_out, wall_s=wall,
        cpu_s=cpu, peak_rss_mb=sampler.peak_rss / 2**20,
        peak_pss_mb=sampler.peak_pss / 2**20, procs=sampler.peak_procs, found=len(found),
        truth=len(expected), right=right, items=len(items), rendered=rendered,
        api_pages=api_pages, requests=sum(n for p, n in counts.items() if p != "/__stats"),
    )  # fmt: skip
    status = "TIMEOUT" if timed_out else f"exit {code}"
    print(
        f"{site:<5} {tool:<17} {status}: {run.found}/{run.truth} pages in {wall:.1f} s "
        f"({run.pages_per_s:.2f}/s), cpu {run.cpu_s:.1f} s, peak rss {run.peak_rss_mb:.0f} MB "
        f"pss {run.peak_pss_mb:.0f} MB ({run.procs} procs), right {right}/{len(items)}, "
        f"rendered {rendered}, api {api_pages}, requests {run.requests}",
        file=sys.stderr,
    )
    return run


def markdown(args: argparse.Namespace, runs: list[Run], versions: str) -> str:
    lists, items = truth(args.pages)
    load = os.getloadavg()
    lines = [
        f"Rendering benchmark (#18): {lists + items} pages ({lists} lists, {items} items), "
        f"page concurrency {args.concurrency}, browser {args.browser}; {versions}; "
        f"{platform.platform()}, {os.cpu_count()} CPUs, load average before the run "
        f"{args.load_before}, after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        "",
        "| site | tool | ok | pages/s | wall s | CPU s/page | peak RSS MB | peak PSS MB "
        "| procs | found | right items | rendered | API-filled | requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.site} | {r.tool} | {'yes' if r.ok else 'NO'} | {r.pages_per_s:.2f} "
            f"| {r.wall_s:.1f} | {r.cpu_s / max(r.found, 1):.3f} | {r.peak_rss_mb:.0f} "
            f"| {r.peak_pss_mb:.0f} | {r.procs} | {r.found}/{r.truth} | {r.right}/{r.items} "
            f"| {r.rendered} | {r.api_pages} | {r.requests} |"
        )
    by = {(r.site, r.tool): r for r in runs}
    lines.append("")
    always = by.get(("app", "shoal-always"))
    peers = [by[k] for k in (("app", "crawlee"), ("app", "scrapy-playwright")) if k in by]
    peers = [p for p in peers if p.ok and p.found]
    if always and peers:
        best = max(peers, key=lambda p: p.pages_per_s)
        lines.append(
            f"- app site, shoal always / best peer ({best.tool}): pages/s "
            f"{always.pages_per_s / best.pages_per_s:.2f}x (target >= 1.5x), peak RSS "
            f"{always.peak_rss_mb / best.peak_rss_mb:.2f}x, peak PSS "
            f"{always.peak_pss_mb / best.peak_pss_mb:.2f}x (target <= 1x)."
        )
    m_auto, m_always = by.get(("mixed", "shoal-auto")), by.get(("mixed", "shoal-always"))
    if m_auto and m_always and m_always.pages_per_s:
        lines.append(
            f"- mixed site, shoal auto / always: pages/s "
            f"{m_auto.pages_per_s / m_always.pages_per_s:.2f}x (target >= 3x); auto rendered "
            f"{m_auto.rendered} pages of {m_auto.found} (app shells on the site: "
            f"{sum(1 for i in range(1, items + 1) if i % PER_LIST in (0, 1))})."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--browser", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/shoal-render-bench"))
    parser.add_argument("--only", help="comma-separated site:tool pairs, e.g. app:crawlee")
    parser.add_argument("--markdown", type=Path, help="write the table here too")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    args.load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs_wanted = RUNS
    if args.only:
        wanted = {tuple(p.split(":")) for p in args.only.split(",")}
        runs_wanted = [r for r in RUNS if r in wanted]
    tools = {tool for _, tool in runs_wanted}
    versions = [f"shoal {version(SHOAL.parent / 'python', 'shoal')}"]
    for tool, package in (("crawlee", "crawlee"), ("scrapy-playwright", "scrapy-playwright")):
        if tool in tools:
            python = peer_python(tool)
            versions.append(f"{package} {version(python, package)}")
            versions.append(f"its playwright {version(python, 'playwright')}")
    versions.append(f"shoal's playwright {version(SHOAL.parent / 'python', 'playwright')}")
    chromium = subprocess.run(
        [args.browser, "--version"], check=False, capture_output=True, text=True
    )
    versions.append(chromium.stdout.strip())
    runs = []
    for site, tool in runs_wanted:
        runs.append(run_one(site, tool, args))
        text = markdown(args, runs, ", ".join(versions))
        if args.markdown:  # after every run: a cut-short run still leaves its table
            args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
