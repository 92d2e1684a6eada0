"""The live view on a real terminal: ``shoal crawl`` runs under a pseudo-terminal.

What the terminal received is cut into the pieces a screen shows (split at CR and LF,
escape sequences removed) and checked: the bar has a rate and a time left, it counts
against --max-pages, and log lines arrive whole, above the bar, in user-facing words.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from shoal.runtime import ProgressState
from shoal.runtime._progress import RateMeter, describe, format_eta
from sites import Reply, Site, html

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def slow_site(delay: float = 0.03) -> Site:
    """An endless tree of pages, each a little slow, each also linking to a 404."""

    def page(req: object) -> Reply:
        time.sleep(delay)
        n = int(req.path.rsplit("/p", 1)[-1])  # type: ignore[attr-defined]
        return Reply(body=html(f"p{n}", *[f"/p{n * 3 + i}" for i in (1, 2, 3)], "/missing"))

    site = Site({"/": html("home", "/p1", "/p2"), "/missing": Reply(404, "no")})
    site.routes["/robots.txt"] = Reply(404, "none")
    site.fallback = page
    return site


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run ``shoal ARGS`` with stdin, stdout and stderr on a 160-column pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen_pieces(raw: str) -> list[str]:
    """What the terminal showed, piece by piece: escape sequences out, cut at CR/LF."""
    return [p.strip() for p in re.split(r"[\r\n]+", _ESCAPE.sub("", raw)) if p.strip()]


def test_bar_shows_rate_and_time_left_against_max_pages(tmp_path: Path) -> None:
    with slow_site() as site:
        code, raw = run_in_terminal(
            ["crawl", site.url("/"), "-o", "out.jsonl", "--max-pages", "60",
             "--concurrency", "2", "--per-host", "2"],
            tmp_path,
        )  # fmt: skip
    assert code == 0, raw
    pieces = screen_pieces(raw)
    bars = [p for p in pieces if p.startswith("crawl ")]
    assert bars, raw
    # A rate and a time left while it runs, counted against --max-pages (not the queue).
    running = [b for b in bars if re.search(r"\d+/60 .* [\d.]+ pages/s left ~\d", b)]
    assert running, bars
    assert re.search(r"60/60 +100%", bars[-1]), bars[-1]
    # Details on the line below the bar: queue, hosts in flight, errors by kind.
    details = [p for p in pieces if p.startswith("queued ")]
    assert re.fullmatch(r"queued \d+, hosts \d+; errors: http_404 1", details[-1]), details
    # The warning arrives whole, on its own line, in words (no module path).
    assert "warning: stopping: the page limit (60 pages, --max-pages) reached" in pieces
    assert "shoal.crawler" not in raw and "WARNING" not in raw
    records = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(records) == 60


def test_verbose_logs_one_whole_line_per_url_above_the_bar(tmp_path: Path) -> None:
    with slow_site(0.01) as site:
        code, raw = run_in_terminal(
            ["crawl", site.url("/"), "-o", "out.jsonl", "--max-pages", "30", "-v",
             "--log-file", "crawl.log"],
            tmp_path,
        )  # fmt: skip
    assert code == 0, raw
    pieces = screen_pieces(raw)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    line = re.compile(r"^(\d{3}|---) +[\d.]+ (B|KB|MB) +\d+ ms  (\S+)$")
    logged = {m.group(3): m.group(1) for p in pieces if (m := line.match(p))}
    assert logged == {r["url"]: str(r["status"]) for r in records}
    log = (tmp_path / "crawl.log").read_text()
    assert all(r["url"] in log for r in records)
    # The log file is appended to, never cut.
    with slow_site(0.0) as site:
        run_in_terminal(["crawl", site.url("/"), "-o", "two.jsonl", "--max-pages", "2",
                         "--log-file", "crawl.log", "-q"], tmp_path)  # fmt: skip
    assert (tmp_path / "crawl.log").read_text().startswith(log)


def test_records_on_a_terminal_get_no_bar_through_them(tmp_path: Path) -> None:
    with slow_site(0.0) as site:
        code, raw = run_in_terminal(
            ["crawl", site.url("/"), "--max-pages", "20", "--concurrency", "2"], tmp_path
        )
    assert code == 0, raw
    pieces = screen_pieces(raw)
    assert not any(p.startswith("crawl ") for p in pieces), "a bar was drawn over records"
    records = [json.loads(p) for p in pieces if p.startswith("{")]
    assert len(records) == 20


def test_rate_is_smoothed_and_time_left_is_honest() -> None:
    now = [0.0]
    meter = RateMeter(window=5.0, clock=lambda: now[0])
    for second in range(1, 11):  # 10 pages/s for 10 s
        now[0] = float(second)
        rate = meter.update(second * 10)
    assert rate == pytest.approx(10.0)
    now[0] = 11.0
    stalled = meter.update(100)  # one stalled second moves it, but not to zero
    assert stalled is not None and 5 < stalled < 10
    bounded = describe(ProgressState(40, 100, bounded=True), 10.0, "pages")
    assert bounded[:2] == ("10.0 pages/s", "left ~6s")
    growing = describe(ProgressState(40, 100), 10.0, "pages")
    assert growing[1] == "left ≥6s"  # the queue may still grow: a lower bound
    errors = describe(ProgressState(5, 9, failed=3, errors=(("http_404", 2), ("timeout", 1))),
                      None, "pages")  # fmt: skip
    assert errors == ("- pages/s", "left ?", "errors: http_404 2, timeout 1")
    assert format_eta(3725) == "1h02m" and format_eta(75) == "1m15s"
    # --max-time: the time limit ends the run before the pages would.
    timed = describe(ProgressState(40, 100, bounded=True, time_left=2.2), 10.0, "pages")
    assert timed[1] == "left ~2s"
    assert describe(ProgressState(0, 5, time_left=30), None, "pages")[1] == "left ≤30s"
