"""One crawl over several runs (issue 22): --max-pages counts across runs, SIGTERM stops
as Ctrl-C does, interrupt messages say what is true, and no lock file is left behind.

Interrupts go to a real ``python -m shoal crawl`` subprocess; the site holds its pages on
a gate, so the crawl is mid-way, with a known number of requests in flight, when the
signal arrives.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import shoal.crawler._crawler as crawler_module
from conftest import interrupt_when_ready
from shoal import StateError, UsageError
from shoal.crawler import Crawler, FetcherFactory, HTTPFetcher
from shoal.crawler.frontier import FrontierStats, MemoryFrontier
from shoal.http import HTTPClient
from shoal.runtime import ProgressDisplay
from sites import Reply, Request, Site, html

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROBOTS = Reply(body="User-agent: *\nAllow: /\n", content_type="text/plain")
IN_FLIGHT = 3  # --concurrency of the gated crawls: every slot holds a gated request


def chain_site(pages: int = 60) -> Site:
    """/p0 .. /p{pages-1}, each linking to the next three: a crawl of all is long."""
    routes: dict[str, object] = {"/robots.txt": ROBOTS}
    for i in range(pages):
        routes[f"/p{i}"] = html(f"p{i}", *[f"/p{j}" for j in range(i + 1, min(i + 4, pages))])
    return Site(routes)  # type: ignore[arg-type]


def gated_site(gate: threading.Event) -> Site:
    """/ links to 40 pages that each wait for ``gate`` (at most 60 s) before answering."""

    def held(req: Request) -> Reply:
        gate.wait(60)
        return Reply(body=html(req.path))

    routes: dict[str, object] = {"/": html("home", *[f"/s{i}" for i in range(40)])}
    routes["/robots.txt"] = ROBOTS
    routes.update({f"/s{i}": held for i in range(40)})
    return Site(routes)  # type: ignore[arg-type]


def shoal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=timeout
    )


def status(out: Path) -> dict[str, object]:
    proc = shoal("status", f"{out}.state.sqlite", "--json")
    assert proc.returncode == 0, proc.stderr
    report: dict[str, object] = json.loads(proc.stdout)
    return report


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


class Crawl:
    """A ``shoal crawl`` subprocess whose stderr is read line by line on a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "crawl", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, pattern: str, timeout: float = 60) -> str:
        """The first stderr line (from here on) matching ``pattern``; bounded."""
        while True:
            line = self.lines.get(timeout=timeout)
            assert line is not None, f"no line matching {pattern!r} in {self.seen}"
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return code, "\n".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a server thread waiting


def wait_until_in_flight(site: Site, n: int, crawl: Crawl) -> None:
    """Block until the server holds ``n`` gated requests (bounded: 60 s)."""
    done = threading.Event()
    for _ in range(6000):
        if site.in_flight >= n or crawl.proc.poll() is not None:
            break
        done.wait(0.01)
    assert site.in_flight >= n, site.paths()


# -- --max-pages is the crawl's total ----------------------------------------------------


def test_max_pages_counts_over_the_runs_of_one_crawl(tmp_path: Path) -> None:
    """A run stopped by a smaller limit, resumed with the real one, ends at exactly that
    many pages; rerun at the same limit, it fetches nothing and says why (exit 0)."""
    out = tmp_path / "out.jsonl"
    with chain_site() as site:
        base = ["crawl", site.url("/p0"), "-o", str(out), "--concurrency", "2", "--no-progress"]
        first = shoal(*base, "--max-pages", "8")
        assert first.returncode == 0, first.stderr
        assert len(records(out)) == 8
        second = shoal(*base, "--max-pages", "20")
        assert second.returncode == 0, second.stderr
        assert len(records(out)) == 20, second.stderr  # not 8 + 20
        assert len({r["url"] for r in records(out)}) == 20
        report = status(out)
        assert report["status"] == "stopped" and report["last_run"] == "stopped: max_pages"
        hits = sum(n for p, n in site.paths().items() if p != "/robots.txt")
        third = shoal(*base, "--max-pages", "20")
        assert third.returncode == 0, third.stderr
        assert "page limit reached: earlier runs finished 20 pages (--max-pages 20)" in third.stderr
        assert "a larger --max-pages continues the crawl" in third.stderr
        assert sum(n for p, n in site.paths().items() if p != "/robots.txt") == hits
        assert len(records(out)) == 20
        report = status(out)
        assert report["status"] == "stopped" and report["last_run"] == "stopped: max_pages"


def free_port() -> int:
    """A port nothing listens on (yet): a host that is unreachable until a Site takes it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_url_held_back_while_offline_is_fetched_by_the_same_command_online(
    tmp_path: Path,
) -> None:
    """Run 1 finds the host unreachable (robots.txt too): its held-back record does not use
    up --max-pages, so the same command run again once online fetches the page."""
    port = free_port()
    out = tmp_path / "out.jsonl"
    cmd = ["crawl", f"http://127.0.0.1:{port}/", "-o", str(out), "--max-pages", "1", "-q"]
    down = shoal(*cmd)
    assert down.returncode == 1, down.stderr
    assert [r["error"] for r in records(out)] == ["connection"]
    with Site({"/robots.txt": ROBOTS, "/": html("home")}, port=port) as site:  # type: ignore[arg-type]
        up = shoal(*cmd)
    assert up.returncode == 0, up.stderr
    assert "page limit reached" not in up.stderr
    assert site.paths().get("/") == 1
    assert [(r["status"], r["error"]) for r in records(out)] == [
        (None, "connection"),
        (200, None),
    ]
    totals = status(out)["totals"]
    assert isinstance(totals, dict)
    assert (totals["pages"], totals["ok"], totals["failed"]) == (1, 1, 0)


def test_max_pages_counts_pages_fetched_not_held_back_records(tmp_path: Path) -> None:
    """--max-pages 5 over a crawl whose host was unreachable in run 1: the crawl ends
    with exactly 5 pages fetched, and a third run says the limit is reached."""
    port = free_port()
    out = tmp_path / "out.jsonl"
    cmd = ["crawl", f"http://127.0.0.1:{port}/p0", "-o", str(out), "--max-pages", "5"]
    cmd += ["--concurrency", "2", "--no-progress"]
    assert shoal(*cmd).returncode == 1
    routes: dict[str, object] = {"/robots.txt": ROBOTS}
    for i in range(30):
        routes[f"/p{i}"] = html(f"p{i}", *[f"/p{j}" for j in range(i + 1, min(i + 4, 30))])
    with Site(routes, port=port) as site:  # type: ignore[arg-type]
        second = shoal(*cmd)
        assert second.returncode == 0, second.stderr
        third = shoal(*cmd)
    assert third.returncode == 0, third.stderr
    assert "page limit reached: earlier runs finished 5 pages (--max-pages 5)" in third.stderr
    fetched = [r["url"] for r in records(out) if r["status"] == 200]
    assert len(fetched) == len(set(fetched)) == 5
    assert sum(n for p, n in site.paths().items() if p != "/robots.txt") == 5
    totals = status(out)["totals"]
    assert isinstance(totals, dict)
    assert (totals["pages"], totals["ok"], totals["failed"]) == (5, 5, 0)


def test_max_pages_after_an_interrupt_is_the_total(tmp_path: Path, gate: threading.Event) -> None:
    """Ctrl-C mid-crawl, then the printed resume command: exactly --max-pages in all."""
    out = tmp_path / "out.jsonl"
    with gated_site(gate) as site:
        crawl = Crawl(
            site.url("/"), "-o", str(out), "--concurrency", str(IN_FLIGHT), "--max-pages", "12"
        )
        try:
            wait_until_in_flight(site, IN_FLIGHT, crawl)
            crawl.proc.send_signal(signal.SIGINT)
            crawl.wait_for_line(r"^interrupted: finishing")
            gate.set()
            code, err = crawl.finish()
        finally:
            crawl.kill()
        assert code == 130, err
        first = len(records(out))
        assert 0 < first < 12
        [resume] = re.findall(r"to resume, run: (.*)$", err, re.M)
        assert "--max-pages 12" in resume
        again = shoal(
            "crawl", site.url("/"), "-o", str(out), "--concurrency", "3", "--max-pages", "12"
        )
        assert again.returncode == 0, again.stderr
    assert len(records(out)) == 12
    assert len({r["url"] for r in records(out)}) == 12


# -- interrupts: SIGTERM as Ctrl-C, messages that are true -------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_interrupt_finishes_in_flight_and_keeps_the_queue(
    tmp_path: Path, gate: threading.Event, sig: signal.Signals
) -> None:
    out, report = tmp_path / "out.jsonl", tmp_path / "report.html"
    with gated_site(gate) as site:
        crawl = Crawl(
            site.url("/"), "-o", str(out), "--concurrency", str(IN_FLIGHT), "--report", str(report)
        )
        try:
            wait_until_in_flight(site, IN_FLIGHT, crawl)
            crawl.proc.send_signal(sig)
            line = crawl.wait_for_line(r"^interrupted: finishing")
            gate.set()
            code, err = crawl.finish()
        finally:
            crawl.kill()
    assert line.startswith(f"interrupted: finishing {IN_FLIGHT} request(s) in flight")
    assert "queued URLs stay queued for the resume" in line
    assert code == (143 if sig == signal.SIGTERM else 130), err
    assert "pool 'crawl'" not in err and "task(s)" not in err  # no runtime internals
    assert "interrupted: in-flight requests finished, output flushed" in err
    assert "abandoned" not in err
    assert "Traceback" not in err
    assert report.exists()  # --report is written after a stop, as after a finished crawl
    report = status(out)
    assert report["status"] == "interrupted" and report["last_run"] == "interrupted"
    [not_fetched] = re.findall(r"stopped by interrupt; (\d+) URL\(s\) not fetched", err)
    assert int(not_fetched) == report["queued"] > 0
    assert report["totals"]["pages"] == len(records(out)) == 1 + IN_FLIGHT  # type: ignore[index]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_second_interrupt_abandons_and_counts_them_as_queued(
    tmp_path: Path, gate: threading.Event, sig: signal.Signals
) -> None:
    out = tmp_path / "out.jsonl"
    with gated_site(gate) as site:
        # The gate stays shut, so the grace period (10 s) is what a second signal cuts.
        crawl = Crawl(site.url("/"), "-o", str(out), "--concurrency", str(IN_FLIGHT))
        try:
            wait_until_in_flight(site, IN_FLIGHT, crawl)
            crawl.proc.send_signal(sig)
            crawl.wait_for_line(r"^interrupted: finishing")
            crawl.proc.send_signal(sig)  # the gate stays shut: only this can end the wait
            code, err = crawl.finish()
        finally:
            crawl.kill()
    assert code == (143 if sig == signal.SIGTERM else 130), err
    assert (
        f"interrupted again: {IN_FLIGHT} request(s) in flight abandoned; their URLs stay "
        "queued for the resume" in err
    )
    assert f"interrupted: {IN_FLIGHT} in-flight request(s) abandoned, output flushed" in err
    assert "in-flight requests finished" not in err and "pool 'crawl'" not in err
    report = status(out)
    assert report["status"] == "interrupted" and report["last_run"] == "interrupted"
    [not_fetched] = re.findall(r"stopped by interrupt; (\d+) URL\(s\) not fetched", err)
    assert int(not_fetched) == report["queued"] == 40  # the abandoned ones included
    assert report["done"] == 1 and len(records(out)) == 1


# -- the lock file -----------------------------------------------------------------------


def test_no_lock_file_is_left_behind(tmp_path: Path) -> None:
    from shoal import StateLocked
    from shoal.state import StateStore

    out = tmp_path / "out.jsonl"
    with chain_site(5) as site:
        proc = shoal("crawl", site.url("/p0"), "-o", str(out), "-q")
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.state.sqlite"]
    # While a store is open its lock file exists and excludes a second opener.
    path = tmp_path / "s.sqlite"
    with StateStore.open(path, {"a": 1}):
        assert Path(f"{path}.lock").exists()
        with pytest.raises(StateLocked):
            StateStore.open(path, {"a": 1})
    assert not Path(f"{path}.lock").exists()
    with StateStore.open(path, {"a": 1}) as again:
        assert not again.created


def test_the_lock_is_exclusive_while_lock_files_come_and_go(tmp_path: Path) -> None:
    """Processes open and close one state over and over (each close removes the lock
    file): never are two inside at once."""
    code = (
        "import os, sys\n"
        "from shoal.state import StateStore\n"
        "from shoal import StateLocked\n"
        "path, marker = sys.argv[1], sys.argv[2]\n"
        "inside = 0\n"
        "for _ in range(150):\n"
        "    try:\n"
        "        store = StateStore.open(path, {'a': 1})\n"
        "    except StateLocked:\n"
        "        continue\n"
        "    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)\n"  # fails if taken
        "    os.close(fd)\n"
        "    os.unlink(marker)\n"
        "    inside += 1\n"
        "    store.close()\n"
        "print(inside)\n"
    )
    path, marker = tmp_path / "s.sqlite", tmp_path / "inside"
    from shoal.state import StateStore

    StateStore.open(path, {"a": 1}).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(marker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    assert sum(int(out) for out, _ in results) > 0
    assert not Path(f"{path}.lock").exists()


# -- messages that name options as the caller spells them --------------------------------


def test_a_foreign_output_names_overwrite_as_the_caller_spells_it(tmp_path: Path) -> None:
    from shoal import Crawler, OutputError, UsageError
    from shoal.report import build_report

    out = tmp_path / "mine.jsonl"
    out.write_text('{"mine": 1}\n')
    with chain_site(3) as site:
        with pytest.raises(OutputError) as python:
            Crawler(site.url("/p0"), output=str(out)).run()
        cli = shoal("crawl", site.url("/p0"), "-o", str(out))
    assert "choose another output, or add overwrite=True to replace it" in str(python.value)
    assert "--" not in str(python.value)
    assert cli.returncode == 4
    assert "choose another -o/--output, or add --overwrite to replace it" in cli.stderr
    assert "overwrite=True" not in cli.stderr
    # The report's own refusal: overwrite=True from Python, --overwrite for shoal report.
    (tmp_path / "r.html").write_text("<p>not shoal's</p>")
    pages = tmp_path / "pages.jsonl"
    pages.write_text(json.dumps({"url": "http://a/", "status": 200}) + "\n")
    with pytest.raises(UsageError) as python:
        build_report(pages, tmp_path / "r.html", state=None)
    assert "or pass overwrite=True to replace it" in str(python.value)
    assert "--overwrite" not in str(python.value)
    cli = shoal("report", str(pages), "-o", str(tmp_path / "r.html"), "--no-state")
    assert cli.returncode == 2 and "or pass --overwrite to replace it" in cli.stderr


def test_a_rerun_with_another_option_names_what_changed(tmp_path: Path) -> None:
    from shoal import Crawler, StateMismatch

    out = tmp_path / "out.jsonl"
    with chain_site(6) as site:
        base = ["crawl", site.url("/p0"), "-o", str(out), "-q"]
        assert shoal(*base, "--max-depth", "3").returncode == 0
        cli = shoal(*base, "--max-depth", "5", "--exclude", "p4")
        with pytest.raises(StateMismatch) as python:
            Crawler(site.url("/p0"), output=str(out), max_depth=5).run()
    assert cli.returncode == 3, cli.stderr
    err = " ".join(cli.stderr.split())  # the message as one line, however wrapped
    assert "--max-depth: 3 in the state, 5 now" in err
    assert "--exclude: none in the state, p4 now" in err
    assert "{'" not in err  # no Python dict of the old scope
    assert "add --fresh, which deletes this state and the output" in err
    assert "choose another -o/--output and --state" in err
    message = str(python.value)
    assert "max_depth: 3 in the state, 5 now" in message and "exclude" not in message
    assert "add fresh=True" in message and "choose another output and state" in message


# -- a state file this user cannot write -------------------------------------------------


def _read_only_file_runner(path: Path) -> list[str] | None:
    """A command prefix under which ``path`` cannot be written. Root ignores file modes
    (CI runs as root), but not a read-only mount: a private mount namespace binds the file
    read-only over itself. None where neither works."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return []
    prefix = ["unshare", "--mount", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"']
    probe = subprocess.run(
        [*prefix, str(path), "sh", "-c", 'exec 3>>"$0"', str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode == 0 or "Read-only" not in probe.stderr:
        return None  # no mount namespace here (or the bind did not hold)
    return [*prefix, str(path)]


def test_a_state_file_that_cannot_be_written_is_named_as_such(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    state = Path(f"{out}.state.sqlite")
    with chain_site(20) as site:
        args = ["crawl", site.url("/p0"), "-o", str(out), "--max-pages", "3", "--no-progress"]
        assert shoal(*args).returncode == 0
        before = out.read_bytes()
        prefix = _read_only_file_runner(state)
        if prefix is None:
            pytest.skip("no way to make a file read-only for root here")
        args[-2] = "10"  # --max-pages 10: this run has work to do
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "shoal", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        hits = sum(n for p, n in site.paths().items() if p != "/robots.txt")
    assert proc.returncode == 3, proc.stderr
    assert f"cannot write the state file {state}: " in proc.stderr
    assert "Read-only file system" in proc.stderr or "Permission denied" in proc.stderr
    assert "not a shoal state file" not in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_bytes() == before and hits == 3  # refused before any work


# -- the live view's active hosts ----------------------------------------------------------


LIVE_VIEW_CHILD = """
import sys, threading
from shoal.crawler import Crawler

crawler = Crawler(URL, delay=60.0, robots=False, progress=False, state=None, output=OUTPUT)
seen = []

def watch():
    done = threading.Event()
    for _ in range(6000):  # bounded: 60 s
        with crawler._lock:
            pages = crawler.result.pages
        if pages >= 1:
            break
        done.wait(0.01)
    seen.append(crawler._progress_state().note)  # between two requests: waiting on --delay
    print("ready", flush=True)

threading.Thread(target=watch, daemon=True).start()
try:
    crawler.run()
except KeyboardInterrupt:
    print(seen[0], flush=True)
"""


def test_live_view_counts_a_host_waiting_on_its_delay(tmp_path: Path) -> None:
    from conftest import interrupt_when_ready

    with chain_site(5) as site:
        code = LIVE_VIEW_CHILD.replace("URL", repr(site.url("/p0")))
        _, out, err = interrupt_when_ready(code.replace("OUTPUT", repr(str(tmp_path / "o.jsonl"))))
    # Page 1 done, page 2 waits a minute on --delay: nothing in flight, one host active.
    assert out.strip().startswith("queued 3, hosts 1"), (out, err)


# -- one run, its end, and the Crawler object --------------------------------------------


class EndLost(MemoryFrontier):
    """A frontier lost as the run ends (a shared crawl's Redis gone): its counts can no
    longer be read by run()'s own thread, which reads them only to sum up the run."""

    def __init__(self) -> None:
        super().__init__(per_host=2, delay=0, robots=False)
        self.closed = False

    def stats(self) -> FrontierStats:
        if threading.current_thread() is threading.main_thread():
            raise StateError("the shared crawl's Redis is gone")
        return super().stats()

    def close(self) -> None:
        self.closed = True
        super().close()


def closing_fetcher(closed: list[str], monkeypatch: pytest.MonkeyPatch) -> FetcherFactory:
    """HTTPFetcher, noting in ``closed`` when it and the crawl's transport are closed."""

    class Noted(HTTPFetcher):
        def close(self) -> None:
            closed.append("fetcher")
            super().close()

    client_close = HTTPClient.close

    def close_client(client: HTTPClient) -> None:
        closed.append("transport")
        client_close(client)

    monkeypatch.setattr(HTTPClient, "close", close_client)
    return Noted.from_setup


def small_site() -> Site:
    return Site({"/": html("home", "/a", "/b", "/c"), **{f"/{p}": html(p) for p in "abc"}})


def test_a_frontier_lost_at_the_end_still_writes_and_closes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page committed reaches the output, and the fetcher, its transport and the
    frontier are closed (no thread left: conftest checks), before run() raises the error."""
    out, closed, frontier = tmp_path / "out.jsonl", [], EndLost()
    with small_site() as site:
        crawler = Crawler(
            site.url("/"),
            frontier=frontier,
            fetcher=closing_fetcher(closed, monkeypatch),
            output=str(out),
            progress=False,
        )
        with pytest.raises(StateError, match="Redis is gone"):
            crawler.run()
    urls = sorted(json.loads(line)["url"] for line in out.read_text().splitlines())
    assert urls == sorted(site.url(p) for p in ("/", "/a", "/b", "/c"))
    assert crawler.result.pages == 4
    assert closed == ["fetcher", "transport"] and frontier.closed
    assert not [t.name for t in threading.enumerate() if t.name == "shoal-output"]


class BrokenDisplay(ProgressDisplay):
    """A run that fails after its outputs, state and pool are ready, before the first
    fetch (as when no more threads can be made)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("can't start new thread")


def test_a_run_failing_before_its_first_fetch_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, closed = tmp_path / "out.jsonl", []
    with small_site() as site:
        monkeypatch.setattr(crawler_module, "ProgressDisplay", BrokenDisplay)
        crawler = Crawler(
            site.url("/"),
            fetcher=closing_fetcher(closed, monkeypatch),
            output=str(out),
            progress=False,
        )
        with pytest.raises(RuntimeError, match="new thread"):
            crawler.run()
        assert closed == ["fetcher", "transport"] and site.hits == []
        assert not [t.name for t in threading.enumerate() if t.name.startswith("crawl-worker")]
        monkeypatch.undo()
        # The state file was closed (its lock let go) and says the run failed: the
        # next run resumes it and crawls everything.
        report = status(out)
        assert report["last_run"] == "failed" and report["running"] is False
        result = Crawler(site.url("/"), output=str(out), progress=False).run()
    assert result.pages == 4 and result.totals["pages"] == 4


def test_a_crawler_runs_once(tmp_path: Path) -> None:
    """A second run() is refused, however the first ended: completed, stopped by
    --max-time (tasks it abandoned may still use the object), or failed; a new Crawler
    resumes a crawl with a state file."""
    with small_site() as site:
        done = Crawler(site.url("/"), output=str(tmp_path / "done.jsonl"), progress=False)
        assert done.run().pages == 4
        hits = len(site.hits)
        with pytest.raises(UsageError, match="runs once"):
            done.run()

        out = tmp_path / "timed.jsonl"
        # Each page waits 60 s for the host: the 0.2 s run stops after the first.
        timed = Crawler(
            site.url("/"), output=str(out), delay=60, max_time=0.2, robots=False, progress=False
        )
        first = timed.run()
        assert first.stopped_by == "max_time" and first.pending > 0
        with pytest.raises(UsageError, match="new Crawler with the same options"):
            timed.run()
        assert timed.result is first and first.pages == 1
        assert len(site.hits) == hits + 1  # the refused run fetched nothing

        failed = Crawler(site.url("/"), frontier=EndLost(), output="/dev/null", progress=False)
        with pytest.raises(StateError):
            failed.run()
        with pytest.raises(UsageError, match="runs once"):
            failed.run()

        resumed = Crawler(site.url("/"), output=str(out), robots=False, progress=False).run()
    assert resumed.pages == 3 and resumed.totals["pages"] == 4


RUN_TWICE_CHILD = """
import threading
from shoal.crawler import Crawler
from shoal import UsageError

def on_page(page):
    print("ready", flush=True)  # the next page waits 60 s on --delay: interrupt now
    return None

crawler = Crawler(URL, on_page=on_page, delay=60.0, robots=False, progress=False, output=OUTPUT)
try:
    crawler.run()
except KeyboardInterrupt:
    print("interrupted", crawler.result.interrupted, flush=True)
try:
    crawler.run()
except UsageError as exc:
    print("refused:", exc, flush=True)
"""


def test_a_crawler_interrupted_runs_once(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with small_site() as site:
        code = RUN_TWICE_CHILD.replace("URL", repr(site.url("/"))).replace("OUTPUT", repr(str(out)))
        rc, stdout, stderr = interrupt_when_ready(code)
        assert rc == 0, stderr
        assert "interrupted True" in stdout and "refused: this Crawler has run" in stdout
        assert len(site.hits) == 1  # the start page: nothing after
