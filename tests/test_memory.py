"""Bounded memory at reduced scale: 200,000 URLs discovered, RSS measured in the child."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sites import Reply, Request, Site

FANOUT = 1000
PAGES = 100

# Runs the CLI in a child and reports the child's own peak RSS (VmHWM): ru_maxrss of a
# child can start at its parent's peak, which would hide the number we want.
CHILD = textwrap.dedent(
    """
    import atexit, sys
    def report():
        status = open("/proc/self/status").read()
        print("VmHWM_kB", status.split("VmHWM:")[1].split()[0], file=sys.stderr, flush=True)
    atexit.register(report)
    from shoal.cli import main
    sys.argv = ["shoal", *sys.argv[1:]]
    main()
    """
)


def fanout_page(req: Request) -> Reply:
    n = int(req.path.lstrip("/") or 0)
    links = "".join(f'<a href="/{n * FANOUT + i}">.</a>' for i in range(1, FANOUT + 1))
    return Reply(body=f"<html><title>{n}</title><body>{links}</body></html>")


def peak_rss_mb(args: list[str]) -> tuple[float, str]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("VmHWM_kB"))
    return int(line.split()[1]) / 1024, proc.stderr


def test_the_next_100k_urls_cost_little(tmp_path: Path) -> None:
    # Peak RSS includes start-up, parser trees and allocator slack that vary run to run,
    # so the test compares two crawls: what the second 100,000 discovered URLs add is the
    # cost per URL. The durable frontier keeps at most memory_limit (20k) of them in
    # memory, so past that point only the ~16-byte fingerprints grow; an in-memory
    # frontier (--no-state) adds ~400 bytes per URL here.
    with Site({"/robots.txt": Reply(404, "none")}) as site:
        site.fallback = fanout_page
        base = ["crawl", site.url("/"), "--json-summary", "-q"]
        mid, _ = peak_rss_mb([*base, "--max-pages", str(PAGES), "-o", str(tmp_path / "a.jsonl")])
        big, err = peak_rss_mb(
            [*base, "--max-pages", str(2 * PAGES), "-o", str(tmp_path / "b.jsonl")]
        )
    assert '"discovered": 199' in err or '"discovered": 200' in err  # ~200k URLs seen
    print(f"peak RSS: {mid:.1f} MB after {PAGES} pages, {big:.1f} MB after {2 * PAGES}")
    assert big - mid < 30, (mid, big)  # < 300 bytes per URL; measured 10-14 MB
