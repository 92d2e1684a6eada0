#!/usr/bin/env python3
"""Runtime benchmark: shoal.Pool and shoal.map against the standard library's thread pools.

Per-task overhead (no-op tasks), peak RSS of a 1M-task spawn tree through a bounded pool (each
in a fresh subprocess), Ctrl-C exit time; per-item overhead of shoal.map (ordered, unordered)
against ThreadPoolExecutor.map, ThreadPool.imap/imap_unordered and a bare queue.Queue loop, and
peak RSS of a map over a 2M-item generator read by a slow consumer (each in a subprocess).
Checked against the issues' targets. Stdlib + shoal.

    .venv/bin/python bench/runtime.py --quick
    .venv/bin/python bench/runtime.py --only map
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
from collections.abc import Callable, Iterator
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
# shoal.map (issue 12): >= 5x faster than TPE.map, <= 1.5x the bare loop, <= 50 MB RSS growth.
MAP_SPEEDUP_TARGET, MAP_BARE_TARGET, MAP_RSS_TARGET_MB = 5.0, 1.5, 50.0


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


# -- 4. map: per-item overhead, results included --------------------------------------------
def identity(item: object) -> object:
    return item


def map_shoal(n: int, ordered: bool = True) -> None:
    deque(shoal.map(identity, range(n), workers=WORKERS, ordered=ordered), maxlen=0)


def map_tpe(n: int) -> None:
    with ThreadPoolExecutor(WORKERS) as ex:
        deque(ex.map(identity, range(n)), maxlen=0)


def map_threadpool(n: int, ordered: bool, chunksize: int) -> None:
    tp = ThreadPool(WORKERS)
    try:
        imap = tp.imap if ordered else tp.imap_unordered
        deque(imap(identity, range(n), chunksize=chunksize), maxlen=0)
    finally:
        tp.close()
        tp.join()


def map_queue_loop(n: int) -> None:
    """The floor: items in through one Queue, results out through another, no order kept."""
    inbox: Queue[object] = Queue()
    outbox: Queue[object] = Queue()
    stop = object()

    def worker() -> None:
        while (item := inbox.get()) is not stop:
            outbox.put(identity(item))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for i in range(n):
        inbox.put(i)
    for _ in range(n):
        outbox.get()
    for _ in threads:
        inbox.put(stop)
    for t in threads:
        t.join()


TUNED_CHUNK = 256  # "tuned": a large chunk that amortises the hand-off; not a measured optimum
MAP_CONTENDERS: list[tuple[str, Callable[[int], None]]] = [
    ("shoal.map ordered", map_shoal),
    ("shoal.map unordered", partial(map_shoal, ordered=False)),
    ("ThreadPoolExecutor.map", map_tpe),
    ("ThreadPool.imap chunksize=1", partial(map_threadpool, ordered=True, chunksize=1)),
    (
        f"ThreadPool.imap chunksize={TUNED_CHUNK}",
        partial(map_threadpool, ordered=True, chunksize=TUNED_CHUNK),
    ),
    ("ThreadPool.imap_unordered chunksize=1", partial(map_threadpool, ordered=False, chunksize=1)),
    (
        f"ThreadPool.imap_unordered chunksize={TUNED_CHUNK}",
        partial(map_threadpool, ordered=False, chunksize=TUNED_CHUNK),
    ),
    ("bare queue.Queue in/out + 8 threads", map_queue_loop),
]


def bench_rounds(
    contenders: list[tuple[str, Callable[[int], None]]], n: int, runs: int, label: str
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for r in range(runs):
        k = r % len(contenders)  # rotate the start: noise and warm-up hit everyone alike
        for name, fn in contenders[k:] + contenders[:k]:
            gc.collect()
            t0 = time.perf_counter()
            fn(n)
            times[name].append(time.perf_counter() - t0)
        print(f"  {label} round {r + 1}/{runs} done", file=sys.stderr)
    return times


def map_mem_child(kind: str, items: int) -> dict[str, Any]:
    """Map over a generator, the consumer pausing 1 ms every 1000 results (slower than the
    workers): shoal holds the input back, ThreadPoolExecutor.map has submitted it all."""

    def source() -> Iterator[int]:
        yield from range(items)

    own_before, t0 = vm_hwm_mb(), time.perf_counter()
    if kind == "shoal":
        results: Iterator[object] = shoal.map(identity, source(), workers=WORKERS)
        ex = None
    else:
        ex = ThreadPoolExecutor(WORKERS)
        results = ex.map(identity, source())
    count = 0
    for count, _ in enumerate(results, 1):
        if count % 1000 == 0:
            time.sleep(0.001)
    if ex is not None:
        ex.shutdown()
    return dict(items=count, seconds=time.perf_counter() - t0, own=vm_hwm_mb() - own_before)


def bench_map_mem(kind: str, items: int, limit_mb: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--map-mem", kind, "--map-mem-items"]
    cmd.append(str(items))

    def cap() -> None:  # in the child: it may not eat the machine, whatever it maps
        limit = limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=1800, preexec_fn=cap
    )
    if proc.returncode != 0:
        return dict(items=items, seconds=float("nan"), own=float("nan"), failed=True)
    return cast("dict[str, Any]", json.loads(proc.stdout.strip().splitlines()[-1]))


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
    ap.add_argument("--map-items", type=int, default=200_000, help="items per map overhead run")
    ap.add_argument("--map-mem-items", type=int, default=2_000_000, help="shoal.map memory run")
    ap.add_argument(
        "--tpe-mem-items",
        type=int,
        default=100_000,
        help="ThreadPoolExecutor.map memory run (smaller: it holds every item; extrapolated)",
    )
    ap.add_argument("--mem-limit-mb", type=int, default=2048, help="address-space cap per child")
    ap.add_argument("--only", choices=("all", "pool", "map"), default="all")
    ap.add_argument("--quick", action="store_true", help="reduced sizes, 2 rounds")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    ap.add_argument("--tree", choices=("shoal", "tpe"), help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--map-mem", choices=("shoal", "tpe"), help=argparse.SUPPRESS)  # child mode
    a = ap.parse_args()
    if a.tree:
        print(json.dumps(tree_child(a.tree, a.tree_tasks)))
        return
    if a.map_mem:
        print(json.dumps(map_mem_child(a.map_mem, a.map_mem_items)))
        return
    if a.quick:
        a.tasks, a.runs, a.tree_tasks = 20_000, 2, 100_000
        a.map_items, a.map_mem_items, a.tpe_mem_items = 20_000, 200_000, 20_000

    quick = " (**quick mode**: reduced sizes, verdicts indicative only)" if a.quick else ""
    verdict = {True: "PASS", False: "FAIL"}
    out = [
        "# shoal runtime benchmark\n",
        f"- Command: `{shlex.join(sys.orig_argv)}`{quick}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.platform()}; shoal {shoal.__version__}",
        f"- CPUs: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))}); "
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]
    targets: list[str] = []
    if a.only in ("all", "pool"):
        out_pool, targets_pool = pool_report(a, verdict)
        out += out_pool
        targets += targets_pool
    if a.only in ("all", "map"):
        out_map, targets_map = map_report(a, verdict)
        out += out_map
        targets += targets_map
    text = "\n".join([*out, "\n## Targets\n", *targets]) + "\n"
    sys.stdout.write(text)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(text)


def pool_report(a: argparse.Namespace, verdict: dict[bool, str]) -> tuple[list[str], list[str]]:
    # Trees first: a child's ru_maxrss starts at its parent's peak, so keep the parent small.
    trees = {kind: bench_tree(kind, a.tree_tasks) for kind in ("shoal", "tpe")}
    times = bench_overhead(a.tasks, a.runs)
    stops = [bench_ctrl_c() for _ in range(3)]

    med = {name: statistics.median(ts) for name, ts in times.items()}
    base = med[CONTENDERS[0][0]]
    us, speedup = base / a.tasks * 1e6, med[CONTENDERS[1][0]] / base
    growth, codes, worst = trees["shoal"]["growth"], [c for _, c in stops], max(s for s, _ in stops)
    out = [
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
    ]
    targets = [
        f"- {verdict[us <= US_TARGET]}: shoal overhead <= {US_TARGET:g} µs/task — {us:.2f} µs",
        f"- {verdict[speedup >= SPEEDUP_TARGET]}: shoal >= {SPEEDUP_TARGET:g}x faster than "
        f"ThreadPoolExecutor submit+wait — {speedup:.2f}x",
        f"- {verdict[growth <= RSS_TARGET_MB]}: {trees['shoal']['tasks']:,}-task tree peak RSS "
        f"growth <= {RSS_TARGET_MB:g} MB — {growth:.1f} MB",
        f"- {verdict[worst <= CTRL_C_TARGET_S and codes == [130] * len(codes)]}: Ctrl-C exit "
        f"<= {CTRL_C_TARGET_S:g} s with exit code 130 — max {worst:.3f} s, codes {codes}",
    ]
    return out, targets


def map_report(a: argparse.Namespace, verdict: dict[bool, str]) -> tuple[list[str], list[str]]:
    # Memory first, in children (a child's ru_maxrss would start at this parent's peak).
    mem = {
        "shoal": bench_map_mem("shoal", a.map_mem_items, a.mem_limit_mb),
        "tpe": bench_map_mem("tpe", a.tpe_mem_items, a.mem_limit_mb),
    }
    n = a.map_items
    times = bench_rounds(MAP_CONTENDERS, n, a.runs, "map")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    tpe, bare = med["ThreadPoolExecutor.map"], med["bare queue.Queue in/out + 8 threads"]
    shoal_names = ("shoal.map ordered", "shoal.map unordered")
    tpe_per_item = mem["tpe"]["own"] / max(1, mem["tpe"]["items"])
    out = [
        f"\n## shoal.map per-item overhead: {n:,} items of a no-op fn, {WORKERS} workers, "
        f"{a.runs} rounds\n",
        "Pool creation, teardown and reading every result included (`deque(maxlen=0)`);",
        "`x bare` = median / the bare queue loop's median (items in through one Queue, results",
        "out through another, no order kept).\n",
        "| contender | median µs/item | min µs/item | median s | x bare | TPE.map / this |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {med[name] / n * 1e6:.2f} | {min(ts) / n * 1e6:.2f} | "
            f"{med[name]:.3f} | {med[name] / bare:.2f} | {tpe / med[name]:.2f} |"
            for name, ts in times.items()
        ),
        f"\nThreadPool with chunksize={TUNED_CHUNK} hands items over {TUNED_CHUNK} at a time, so",
        "an item's result waits for its whole chunk; shoal.map and chunksize=1 hand each one on.",
        "\n## Memory: map over a generator, the consumer pausing 1 ms per 1000 results\n",
        "Each run in a fresh subprocess capped at "
        f"{a.mem_limit_mb} MB of address space; growth of the child's own peak RSS (VmHWM).",
        "ThreadPoolExecutor.map submits the whole input first, so it runs on a smaller input and",
        "is extrapolated linearly (its cost is per item held).\n",
        "| contender | items | s | peak RSS growth MB | per 1M items MB |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {m['items']:,} | {m['seconds']:.2f} | {m['own']:.1f} | "
            f"{m['own'] / max(1, m['items']) * 1e6:.1f} |"
            for name, m in mem.items()
        ),
        f"\nThreadPoolExecutor.map extrapolated to {a.map_mem_items:,} items: "
        f"~{tpe_per_item * a.map_mem_items:,.0f} MB.",
    ]
    targets = [
        *(
            f"- {verdict[tpe / med[name] >= MAP_SPEEDUP_TARGET]}: {name} >= "
            f"{MAP_SPEEDUP_TARGET:g}x faster than ThreadPoolExecutor.map — {tpe / med[name]:.2f}x"
            for name in shoal_names
        ),
        *(
            f"- {verdict[med[name] / bare <= MAP_BARE_TARGET]}: {name} within "
            f"{MAP_BARE_TARGET:g}x of the bare queue loop — {med[name] / bare:.2f}x"
            for name in shoal_names
        ),
        f"- {verdict[mem['shoal']['own'] <= MAP_RSS_TARGET_MB]}: shoal.map over "
        f"{mem['shoal']['items']:,} items, slow consumer, peak RSS growth <= "
        f"{MAP_RSS_TARGET_MB:g} MB — {mem['shoal']['own']:.1f} MB",
    ]
    return out, targets


if __name__ == "__main__":
    main()
