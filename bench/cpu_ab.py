#!/usr/bin/env python3
"""Paired CPU A/B of shoal builds: the same crawl, builds taking turns, many rounds.

bench/crawl.py compares shoal with its peers; this compares shoal with itself, finely
enough to see a few per cent. Each round crawls one site_server.py site (0 ms latency, so
the crawler's own work is all there is) once per build, in a rotating order, and takes the
crawler process's user+sys CPU from os.wait4. Medians over the rounds, each build's
ratio to the first, and the median of the per-round ratios (each round's crawl against
the first build's crawl of the same round, with its quartiles): on a loaded machine the
load moves both crawls of a round together, so the paired ratio is the steadier figure.
Give one build twice (two copies of the same tree) to see the noise.

A build is NAME=PATH: a directory holding shoal's source (``src/`` of a checkout or of
``git archive REV src``), run as ``python -m shoal`` with that directory first on
PYTHONPATH, or a shoal executable (another venv's ``bin/shoal``). Source directories are
compiled first: with PYTHONDONTWRITEBYTECODE set nothing caches their bytecode, and every
crawl would also count compiling shoal, which an installed build never pays.

    git archive c7f4962 src | tar -x -C /tmp/old
    .venv/bin/python bench/cpu_ab.py --rounds 15 before=/tmp/old/src now=src
    .venv/bin/python bench/cpu_ab.py before=/tmp/base/.venv/bin/shoal now=src --markdown out.md

Standard library only; run it under the repo's .venv (its Python runs source builds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def parse_build(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=PATH")
    return name, Path(path).absolute()


def command(path: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if path.is_dir():
        env["PYTHONPATH"] = str(path)
        return [sys.executable, "-m", "shoal"], env
    return [str(path)], env


def start_site(pages: int, links: int, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = workdir / "port"
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "site_server.py"), "--pages", str(pages), "--links",
         str(links), "--latency-ms", "0", "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            sys.exit("the site server did not start")
        time.sleep(0.05)
    return server, int(ready.read_text())


def crawl_cpu(path: Path, url: str, out: Path, max_pages: int) -> float:
    argv, env = command(path)
    argv = [*argv, "crawl", url, "-o", str(out / "o.jsonl"), "-q", "--max-pages", str(max_pages)]
    pid = os.posix_spawn(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs="+", type=parse_build, metavar="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--links", type=int, default=10)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    builds: list[tuple[str, Path]] = args.builds
    for _, path in builds:
        if path.is_dir():
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(path)], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="shoal-cpu-ab-"))
    server, port = start_site(args.pages, args.links, workdir)
    cpu: dict[str, list[float]] = {name: [] for name, _ in builds}
    try:
        for r in range(args.rounds):
            order = builds[r % len(builds) :] + builds[: r % len(builds)]
            for name, path in order:
                out = workdir / name
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                cpu[name].append(crawl_cpu(path, f"http://127.0.0.1:{port}/", out, args.pages))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    first = statistics.median(cpu[builds[0][0]])
    lines = [
        f"CPU A/B: {args.pages}-page site, 0 ms, `--max-pages {args.pages}`, JSONL output with "
        f"state, medians of {args.rounds} paired rounds (crawler process user+sys).",
        "",
        f"| build | median CPU s | min | max | vs {builds[0][0]} | paired ratio [quartiles] |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    for name, path in builds:
        values = cpu[name]
        median = statistics.median(values)
        ratios = [v / f for v, f in zip(values, cpu[builds[0][0]], strict=True)]
        q1, q2, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        lines.append(
            f"| {name} (`{path}`) | {median:.3f} | {min(values):.3f} | {max(values):.3f} | "
            f"{median / first:.3f} | {q2:.3f} [{q1:.3f}-{q3:.3f}] |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
