#!/usr/bin/env python3
"""Runtime benchmark: shoal.Pool against the standard library's thread pools.

Per-task overhead (no-op tasks), peak RSS of a 1M-task spawn tree through a bounded pool (each
in a fresh subprocess), Ctrl-C exit time; checked against the issue's targets. Stdlib + shoal.

    .venv/bin/python bench/runtime.py --quick
    .venv/bin/python bench/runtime.py --markdown bench/results/runtime.md
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime
from functools import partial
from multiprocessing.pool import ThreadPool
from queue import Queue
from typing import Any, cast

import shoal
from shoal import Pool, TaskContext

WORKERS = 8
# The targets: shoal µs/task, speed-up vs TPE submit+wait, tree RSS, Ctrl-C exit time.
US_TARGET, SPEEDUP_TARGET, RSS_TARGET_MB, CTRL_C_TARGET_S = 3.0, 5.0, 100.0, 2.0


def noop(item: object) -> None:
    return None


def noop_task(item: object, ctx: TaskContext[Any]) -> None:
    return None


# -- 1. per-task overhead: each contender creates its pool, runs n tasks, tears it down ------
def run_shoal(n: int) -> None:
    with Pool(noop_task, workers=WORKERS) as p:
        p.put_many(range(n))
        p.join()


def run_tpe_submit(n: int) -> None:
    with ThreadPoolExecutor(WORKERS) as ex:
        wait([ex.submit(noop, i) for i in range(n)])


def run_tpe_map(n: int) -> None:
    with ThreadPoolExecutor(WORKERS) as ex:
        # A zero-length deque drains an iterator in C: the consumer adds no Python overhead.
        deque(ex.map(noop, range(n)), maxlen=0)


def run_threadpool(n: int, chunksize: int = 1) -> None:
    tp = ThreadPool(WORKERS)
    try:
        deque(tp.imap_unordered(noop, range(n), chunksize=chunksize), maxlen=0)
    finally:
        # close()+join() is the orderly teardown; the context manager would terminate().
        tp.close()
        tp.join()


def run_queue_loop(n: int) -> None:
    q: Queue[object] = Queue()
    stop = object()

    def worker() -> None:
        while (item := q.get()) is not stop:
            noop(item)
            q.task_done()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for i in range(n):
        q.put(i)
    q.join()
    for _ in threads:
        q.put(stop)
    for t in threads:
        t.join()


CONTENDERS: list[tuple[str, Callable[[int], None]]] = [
    ("shoal Pool (put_many + join)", run_shoal),
    ("ThreadPoolExecutor submit + wait", run_tpe_submit),
    ("ThreadPoolExecutor.map", run_tpe_map),
    ("ThreadPool.imap_unordered chunksize=1", run_threadpool),
    ("ThreadPool.imap_unordered chunksize=64", partial(run_threadpool, chunksize=64)),
    ("bare queue.Queue + 8 threads", run_queue_loop),
]


def bench_overhead(n: int, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name, _ in CONTENDERS}
    for r in range(runs):
        # Every round runs every contender once, starting at a different one each round, so
        # machine noise and warm-up (CPU clock, allocator state) hit all of them alike.
        k = r % len(CONTENDERS)
        for name, fn in CONTENDERS[k:] + CONTENDERS[:k]:
            gc.collect()  # don't bill one contender for the garbage the previous one left
            t0 = time.perf_counter()
            fn(n)
            times[name].append(time.perf_counter() - t0)
        print(f"  overhead round {r + 1}/{runs} done", file=sys.stderr)
    return times


# -- 2. spawn tree, run in a child process (--tree KIND) -------------------------------------
def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def vm_hwm_mb() -> float:
    # Linux carries the spawning process's peak into a child's ru_maxrss (vfork + exec), so a
    # parent bigger than the child hides the child's growth; VmHWM is the child's own peak.
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**10


def tree_child(kind: str, tasks: int) -> dict[str, Any]:
    """Task i < parents spawns 2i+1 and 2i+2, so the tree has 2*parents+1 tasks."""
    parents = tasks // 2
    before, own_before, t0 = max_rss_mb(), vm_hwm_mb(), time.perf_counter()
    if kind == "shoal":

        def spawn(i: int, ctx: TaskContext[int]) -> None:
            if i < parents:
                ctx.put(2 * i + 1)
                ctx.put(2 * i + 2)

        with Pool(spawn, workers=WORKERS, maxsize=1000) as p:
            p.put(0)
            p.join()
            st = p.stats()
        done, peak = st.done, st.peak_queued
    else:
        # TPE has no join over a tree: count outstanding tasks, set an event when none are left.
        lock, finished = threading.Lock(), threading.Event()
        state = {"outstanding": 1, "peak": 1, "done": 0}

        def task(i: int) -> None:
            if i < parents:
                with lock:  # counted before submitting, so the count cannot touch 0 early
                    state["outstanding"] += 2
                    state["peak"] = max(state["peak"], state["outstanding"])
                ex.submit(task, 2 * i + 1)
                ex.submit(task, 2 * i + 2)
            with lock:
                state["done"] += 1
                state["outstanding"] -= 1
                if not state["outstanding"]:
                    finished.set()

        with ThreadPoolExecutor(WORKERS) as ex:  # task() finds ex by closure once it runs
            ex.submit(task, 0)
            finished.wait()
        done, peak = state["done"], state["peak"]
    seconds, growth, own = time.perf_counter() - t0, max_rss_mb() - before, vm_hwm_mb() - own_before
    return dict(tasks=done, seconds=seconds, peak=peak, before=before, growth=growth, own=own)


def bench_tree(kind: str, tasks: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--tree", kind, "--tree-tasks", str(tasks)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800).stdout
    return cast("dict[str, Any]", json.loads(out.strip().splitlines()[-1]))


# -- 3. Ctrl-C latency ------------------------------------------------------------------------
CTRL_C_CHILD = """
import signal, sys, time
from shoal import Pool
# A shell may start background jobs with SIGINT ignored (Python keeps that): undo it.
signal.signal(signal.SIGINT, signal.default_int_handler)
def task(item, ctx):
    if item == 0:  # the queue is FIFO: task 0 is the first to start
        print("ready", flush=True)
    time.sleep(1.0)
try:
    with Pool(task, workers=4) as pool:
        pool.put_many(range(100))
        pool.join()
except KeyboardInterrupt:
    sys.exit(130)
"""


def bench_ctrl_c() -> tuple[float, int]:
    cmd = [sys.executable, "-c", CTRL_C_CHILD]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    if (line := proc.stdout.readline().strip()) != "ready":
        proc.kill()
        raise RuntimeError(f"Ctrl-C child did not start: {line!r}")
    # A watchdog kills a hung child, so wait() needs no timeout (that would poll, not block).
    watchdog = threading.Timer(30.0, proc.kill)
    watchdog.start()
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    code, elapsed = proc.wait(), time.perf_counter() - t0  # left to right: wait() first
    watchdog.cancel()
    return elapsed, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200_000, help="no-op tasks per overhead run")
    ap.add_argument("--runs", type=int, default=5, help="interleaved rounds (medians reported)")
    ap.add_argument("--tree-tasks", type=int, default=1_000_000, help="spawn tree size")
    ap.add_argument("--quick", action="store_true", help="20k tasks, 2 rounds, 100k tree")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    ap.add_argument("--tree", choices=("shoal", "tpe"), help=argparse.SUPPRESS)  # child mode
    a = ap.parse_args()
    if a.tree:
        print(json.dumps(tree_child(a.tree, a.tree_tasks)))
        return
    if a.quick:
        a.tasks, a.runs, a.tree_tasks = 20_000, 2, 100_000

    # Trees first: a child's ru_maxrss starts at its parent's peak, so keep the parent small.
    trees = {kind: bench_tree(kind, a.tree_tasks) for kind in ("shoal", "tpe")}
    times = bench_overhead(a.tasks, a.runs)
    stops = [bench_ctrl_c() for _ in range(3)]

    med = {name: statistics.median(ts) for name, ts in times.items()}
    base = med[CONTENDERS[0][0]]
    us, speedup = base / a.tasks * 1e6, med[CONTENDERS[1][0]] / base
    growth, codes, worst = trees["shoal"]["growth"], [c for _, c in stops], max(s for s, _ in stops)
    quick = " (**quick mode**: reduced sizes, verdicts indicative only)" if a.quick else ""
    verdict = {True: "PASS", False: "FAIL"}
    out = [
        "# shoal runtime benchmark\n",
        f"- Command: `{shlex.join(sys.orig_argv)}`{quick}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.platform()}; shoal {shoal.__version__}",
        f"- CPUs: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))}); "
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"\n## Per-task overhead: {a.tasks:,} no-op tasks, {WORKERS} workers, {a.runs} rounds\n",
        "Pool creation and teardown included; `x shoal` = median / shoal's median.\n",
        "| contender | median µs/task | min µs/task | median s | x shoal |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {n} | {med[n] / a.tasks * 1e6:.2f} | {min(ts) / a.tasks * 1e6:.2f} | "
            f"{med[n]:.3f} | {med[n] / base:.2f} |"
            for n, ts in times.items()
        ),
        "\nchunksize matters: `imap_unordered` with chunksize=1 pays a result round trip per",
        "task; chunksize=64 amortises it over 64 tasks, so it is not a per-task comparison.",
        f"\n## Spawn tree: {a.tree_tasks // 2 * 2 + 1:,} tasks, each pool in a fresh subprocess\n",
        "Task i < N/2 spawns 2i+1 and 2i+2. shoal: `Pool(maxsize=1000, workers=8)`, peak is",
        "`stats().peak_queued`; tpe: `ThreadPoolExecutor(8)`, peak is the most tasks outstanding",
        "(queued + running). RSS growth = child's ru_maxrss after the tree minus before it;",
        "VmHWM growth is the same from /proc/self/status, which no parent's peak can inflate.\n",
        "| pool | tasks | s | peak queued | RSS before MB | RSS growth MB | VmHWM growth MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {k} | {t['tasks']:,} | {t['seconds']:.2f} | {t['peak']:,} | "
            f"{t['before']:.1f} | {t['growth']:.1f} | {t['own']:.1f} |"
            for k, t in trees.items()
        ),
        "\n## Ctrl-C: shoal Pool(workers=4), 100 tasks of `time.sleep(1.0)`\n",
        "SIGINT is sent once the first task has started; time runs until the child has exited.\n",
        "| run | seconds to exit | exit code |",
        "|---:|---:|---:|",
        *(f"| {i + 1} | {s:.3f} | {c} |" for i, (s, c) in enumerate(stops)),
        "\n## Targets\n",
        f"- {verdict[us <= US_TARGET]}: shoal overhead <= {US_TARGET:g} µs/task — {us:.2f} µs",
        f"- {verdict[speedup >= SPEEDUP_TARGET]}: shoal >= {SPEEDUP_TARGET:g}x faster than "
        f"ThreadPoolExecutor submit+wait — {speedup:.2f}x",
        f"- {verdict[growth <= RSS_TARGET_MB]}: {trees['shoal']['tasks']:,}-task tree peak RSS "
        f"growth <= {RSS_TARGET_MB:g} MB — {growth:.1f} MB",
        f"- {verdict[worst <= CTRL_C_TARGET_S and codes == [130] * len(codes)]}: Ctrl-C exit "
        f"<= {CTRL_C_TARGET_S:g} s with exit code 130 — max {worst:.3f} s, codes {codes}",
    ]
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
