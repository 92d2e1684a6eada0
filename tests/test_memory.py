"""Bounded memory at reduced scale: 100,000 URLs discovered, RSS measured in the child."""

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


def test_discovering_100k_urls_stays_small(tmp_path: Path) -> None:
    with Site({"/robots.txt": Reply(404, "none")}) as site:
        site.fallback = fanout_page
        base = ["crawl", site.url("/"), "--max-pages", str(PAGES), "--json-summary", "-q"]
        small, _ = peak_rss_mb([*base[:-2], "--max-pages", "2", "-o", str(tmp_path / "a.jsonl")])
        big, err = peak_rss_mb([*base, "-o", str(tmp_path / "b.jsonl")])
    assert '"discovered": 99' in err or '"discovered": 100' in err  # ~100k URLs seen
    # 100k URLs in ~16-32 bytes each plus a bounded in-memory queue: tens of MB at most,
    # where a Python set and deque of every URL would need several times more.
    print(f"peak RSS: {small:.1f} MB after 2 pages, {big:.1f} MB after {PAGES} pages")
    assert big - small < 60, (small, big)
