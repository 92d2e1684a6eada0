"""The seed program, ported: never interleaved, and "job finished" always last."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shoal import Pool, TaskContext, Writer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed_queue_demo.py"
LINE = re.compile(r"^\d+ get [a-z]$")


def test_example_runs_as_the_seed_meant() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--max-sleep", "0.02"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "waiting job..."
    assert lines[-1] == "job finished"
    body = lines[1:-1]
    assert len(body) == 19 and all(LINE.match(line) for line in body), body
    assert sorted(line[-1] for line in body) == sorted("qwertyuiopasdfghjkl")
    worker_ids = {int(line.split()[0]) for line in body}
    assert worker_ids <= set(range(5))


def _many_workers_many_lines(workers: int, lines_per_worker: int) -> None:
    out = io.StringIO()
    total = workers * lines_per_worker

    def handle(item: int, ctx: TaskContext[int]) -> None:
        ctx.print(f"{ctx.worker} get {item}")

    with Writer(out, maxsize=256) as writer, Pool(handle, workers=workers, output=writer) as pool:
        pool.print("waiting job...")
        pool.put_many(range(total))
        pool.join()
        pool.print("job finished")
    lines = out.getvalue().splitlines()
    assert lines[0] == "waiting job..." and lines[-1] == "job finished"
    items = sorted(int(line.split(" get ")[1]) for line in lines[1:-1])
    assert items == list(range(total))


def test_many_workers_short() -> None:
    _many_workers_many_lines(workers=50, lines_per_worker=100)


@pytest.mark.stress
def test_200_workers_by_1000_lines() -> None:
    for _ in range(3):
        _many_workers_many_lines(workers=200, lines_per_worker=1000)
