"""The seed program (worker threads + a print queue + q.join()), written with shoal.

19 letters, 5 workers, a random pause per item. Every line goes through one writer
thread, so lines never interleave, and "job finished" is always the last line: it is
printed after join(), which returns only when every worker's line has been handed over.

    python examples/seed_queue_demo.py [--workers 5] [--max-sleep 1.0]
"""

from __future__ import annotations

import argparse
import random
import time

import shoal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--max-sleep", type=float, default=1.0)
    parser.add_argument("--items", default="qwertyuiopasdfghjkl")
    args = parser.parse_args()

    def handle(item: str, ctx: shoal.TaskContext[str]) -> None:
        time.sleep(random.random() * args.max_sleep)  # the seed's stand-in for network latency
        ctx.print(f"{ctx.worker} get {item}")

    with shoal.Pool(handle, workers=args.workers) as pool:
        pool.print("waiting job...")
        pool.put_many(args.items)
        pool.join()
        pool.print("job finished")


if __name__ == "__main__":
    main()
