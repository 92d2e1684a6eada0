#!/usr/bin/env python3
"""Recrawl benchmark (#19): shoal ``--recrawl`` against ``wget -r -N`` and Scrapy's HTTP cache
(RFC 2616 policy), side by side in one run.

Every tool crawls the same site three times: a first crawl, a recrawl of the unchanged
site, and a recrawl after a change (by default 10 % of the pages get a new body, ETag and
Last-Modified, 1 % are deleted, half answering 404 and half 410, and 1 % new pages appear,
each linked from a changed page). Before each tool's first crawl the site is reset to its
original state, so every tool sees the same three sites.

The site (standard library, threaded, 127.0.0.1) has ``--pages`` pages of ~5 KB at
``/p/N.html``, each linking to a few others, all reachable from ``/``; every page and ``/``
send an ETag and a Last-Modified and answer If-None-Match (which wins when both are sent)
and If-Modified-Since with a 304. The server logs every request: status and body bytes.

Measured per tool and run: requests by status, body bytes sent (server side), wall time and
CPU (user+sys of the tool's process and the children it reaped, from wait4), and what the
tool reports as changed, new and gone against the server's truth:

- shoal: its records' ``change`` field (``changed``, ``new``, ``gone``).
- wget and Scrapy report no change classes, so they are derived from what they did, as a
  user of either would: a page downloaded again with a body (a 200) is "changed" if the tool
  had it from an earlier run, else "new"; a 404 or 410 for a page it had is "gone". wget's
  ``-N`` keeps a page when the server says 304 (or, for a HEAD, an older Last-Modified);
  Scrapy's cache answers a 304 from its stored copy (its items carry ``cached``, checked
  against the server's log).

The rows (``--rows`` picks some by number):

1. ``shoal crawl URL -o FILE`` then ``--recrawl`` twice.
2. Scrapy with ``HTTPCACHE_ENABLED`` and ``RFC2616Policy``; the site sends
   ``Cache-Control: max-age=0`` (to every tool; only Scrapy reads it), so every cached page is
   stale and revalidated with If-None-Match and If-Modified-Since.
3. ``wget -r -N``: wget 1.21 sends If-Modified-Since; after a 304 it does not read the kept
   copy for links, so the recursion ends at the first page not modified.
4. ``wget -r -N --no-if-modified-since``: the older timestamping, a HEAD per page and a GET
   when the server's Last-Modified is newer than the local file (or sizes differ); kept
   pages are read for links.
5. Scrapy as in 2 on a site without ``Cache-Control``: the RFC 2616 heuristic takes a page
   as fresh for a tenth of its Last-Modified age (here years, so months) and asks nothing.
6.-8. shoal, Scrapy (as in 2) and wget (as in 4) on the site without ETag and
   Last-Modified anywhere: nothing can be revalidated, every page is downloaded again, and
   only a comparison of bodies tells what changed.

    .venv/bin/python bench/recrawl.py --markdown /tmp/recrawl.md

Standard library only (runs under the repo's .venv); Scrapy lives in bench/.venv-peers,
created on first use (bench/side_venv.py), never in shoal's environment.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawl import PEER_PYTHON, ensure_peer_venv, package_version, run_child

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHOAL = REPO / ".venv" / "bin" / "shoal"
CLASSES = ("changed", "new", "gone")
PHASES = ("first crawl", "unchanged", "changed")


class Site:
    """The site's pages and their versions; every request is logged (path, status, bytes)."""

    def __init__(self, pages: int, seed: int) -> None:
        self.pages = pages
        self.seed = seed
        rng = random.Random(seed)
        # A binary tree (i -> 2i+1, 2i+2) keeps every page reachable from / whatever is
        # deleted among the leaves; one random link per page adds cross links.
        self.links = [
            sorted({(2 * i + 1) % pages, (2 * i + 2) % pages, rng.randrange(pages)})
            for i in range(pages)
        ]
        self.lock = threading.Lock()
        self.cache_control: str | None = "max-age=0"
        self.validators = True
        self.restore()

    def restore(self) -> None:
        """Back to the site of the first crawl."""
        with self.lock:
            self.version: dict[int, int] = dict.fromkeys(range(self.pages), 0)
            self.extra_links: dict[int, list[int]] = {}
            self.deleted: dict[int, int] = {}
            self.log: list[tuple[str, str, int, int]] = []  # method, path, status, bytes

    def path(self, i: int) -> str:
        return f"/p/{i}.html"

    def change(self, changed: float, deleted: float, added: float) -> dict[str, set[str]]:
        """Change the site as the benchmark does; return the truth by class."""
        rng = random.Random(self.seed + 7)
        n = self.pages
        changing = rng.sample(range(n), round(n * changed))
        # Deleted pages are leaves of the tree (2i+1 >= n) that do not change: nothing else
        # becomes unreachable, and the pages linking to them keep their (now dead) links.
        leaves = [i for i in range(n // 2, n) if i not in set(changing)]
        gone = rng.sample(leaves, round(n * deleted))
        new = list(range(n, n + round(n * added)))
        with self.lock:
            for i in changing:
                self.version[i] += 1
            for k, i in enumerate(gone):
                self.deleted[i] = 404 if k % 2 else 410
            for k, i in enumerate(new):
                self.version[i] = 0
                self.extra_links.setdefault(changing[k % len(changing)], []).append(i)
        return {
            "changed": {self.path(i) for i in changing},
            "new": {self.path(i) for i in new},
            "gone": {self.path(i) for i in gone},
        }

    def page(self, i: int) -> tuple[bytes, str, str]:
        v = self.version[i]
        targets = self.links[i % self.pages] + self.extra_links.get(i, [])
        links = "".join(f'<a href="{self.path(j)}">p{j}</a> ' for j in targets)
        body = f"<html><head><title>p{i} v{v}</title></head><body>{links}"
        body += f"<p>{'lorem ipsum ' * 400}</p><p>version {v}</p></body></html>"
        modified = formatdate(1_700_000_000 + 86400 * v, usegmt=True)
        return body.encode(), f'"{i}-{v}"', modified

    def answer(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        if path == "/robots.txt":
            return 200, b"User-agent: *\nAllow: /\n", {"Content-Type": "text/plain"}
        if path == "/":
            links = "".join(f'<a href="{self.path(j)}">p{j}</a> ' for j in range(3))
            body = f"<html><body>{links}</body></html>".encode()
            if not self.validators:
                return 200, body, {}
            return (
                200,
                body,
                {"ETag": '"root"', "Last-Modified": formatdate(1_700_000_000, usegmt=True)},
            )
        try:
            i = int(path.removeprefix("/p/").removesuffix(".html"))
        except ValueError:
            return 404, b"not found", {}
        with self.lock:
            if i in self.deleted:
                return self.deleted[i], b"gone", {}
            if i not in self.version or path != self.path(i):
                return 404, b"not found", {}
            body, etag, modified = self.page(i)
        return 200, body, {"ETag": etag, "Last-Modified": modified} if self.validators else {}


def handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm holds
            # the body until the client's delayed ACK (~40 ms a response on one connection).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, head: bool) -> None:
            path = urlsplit(self.path).path
            status, body, headers = site.answer(path)
            if status == 200 and "ETag" in headers and self._not_modified(headers):
                status, body = 304, b""
            if status in (200, 304) and path != "/robots.txt" and site.cache_control:
                headers["Cache-Control"] = site.cache_control
            sent = 0 if head else len(body)
            # Logged before the answer goes out: a tool may exit (and the benchmark read the
            # log) as soon as it has its last response.
            with site.lock:
                site.log.append((self.command, path, status, sent))
            self.send_response(status)
            headers.setdefault("Content-Type", "text/html")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if sent:
                self.wfile.write(body)

        def _not_modified(self, headers: dict[str, str]) -> bool:
            inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
            if inm is not None:
                tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
                return headers["ETag"] in tags or "*" in tags
            if ims is not None:
                try:
                    since = parsedate_to_datetime(ims)
                    return since >= parsedate_to_datetime(headers["Last-Modified"])
                except (TypeError, ValueError):
                    return False
            return False

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing a kept-alive connection at its exit is no error worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class Row:
    """A tool on a variant of the site, crawled three times."""

    label: str
    tool: str  # shoal | scrapy | wget
    cache_control: str | None = "max-age=0"
    wget_flags: tuple[str, ...] = ()
    validators: bool = True  # False: no ETag, no Last-Modified anywhere on the site


ROWS = (
    Row("shoal --recrawl", "shoal"),
    Row("scrapy, RFC 2616 cache", "scrapy"),
    Row("wget -r -N", "wget"),
    Row("wget -r -N --no-if-modified-since", "wget", wget_flags=("--no-if-modified-since",)),
    Row("scrapy, no Cache-Control", "scrapy", cache_control=None),
    Row("shoal --recrawl, no validators", "shoal", validators=False),
    Row("scrapy, RFC 2616 cache, no validators", "scrapy", validators=False),
    Row(
        "wget -r -N --no-if-modified-since, no validators",
        "wget",
        wget_flags=("--no-if-modified-since",),
        validators=False,
    ),
)


@dataclass
class Result:
    label: str
    phase: str
    ok: bool
    wall_s: float
    cpu_s: float
    statuses: Counter[int | str]  # status of a GET, "HEAD" for a HEAD
    body_bytes: int
    reported: dict[str, set[str]]
    truth: dict[str, set[str]]
    notes: list[str] = field(default_factory=list)

    def score(self, cls: str) -> str:
        if self.phase == PHASES[0]:
            return "-"
        missed = len(self.truth[cls] - self.reported[cls])
        extra = len(self.reported[cls] - self.truth[cls])
        if not missed and not extra:
            return f"exact ({len(self.truth[cls])})"
        return f"{missed} missed, {extra} extra"


def command(row: Row, url: str, work: Path, phase: int, concurrency: int) -> list[str]:
    name = row.label.replace(" ", "_").replace(",", "").replace("/", "")
    if row.tool == "shoal":
        out = work / f"{name}.jsonl"
        cmd = [str(SHOAL), "crawl", url, "-o", str(out), "-q", "--delay", "0"]
        cmd += ["--concurrency", str(concurrency), "--per-host", str(concurrency)]
        cmd += ["--max-pages", "100000"]
        return cmd + (["--recrawl"] if phase else [])
    if row.tool == "scrapy":
        script = BENCH / "peers" / "scrapy_crawl.py"
        out = work / f"{name}.{phase}.jsonl"
        cache = work / f"{name}.httpcache"
        return [
            str(PEER_PYTHON), str(script), url, "-o", str(out),
            "--concurrency", str(concurrency), "--http-cache", str(cache),
        ]  # fmt: skip
    # -nv: one line per URL in the log, enough to read what wget did if a number looks odd.
    return [
        "wget", "-r", "-N", *row.wget_flags, "-l", "inf", "-nv",
        "-a", str(work / f"{name}.wget.log"), "-P", str(work / f"{name}.mirror"), url,
    ]  # fmt: skip


def shoal_reported(out: Path, before: int) -> tuple[dict[str, set[str]], Counter[str]]:
    reported: dict[str, set[str]] = {cls: set() for cls in CLASSES}
    seen: Counter[str] = Counter()
    for line in out.read_text().splitlines()[before:]:
        record = json.loads(line)
        change = record.get("change", "first")
        seen[change] += 1
        if change in reported:
            reported[change].add(urlsplit(record["url"]).path)
    return reported, seen


def run_row(row: Row, site: Site, url: str, work: Path, args: argparse.Namespace) -> list[Result]:
    site.cache_control, site.validators = row.cache_control, row.validators
    site.restore()
    had: set[str] = set()  # pages the tool holds a copy of (wget, Scrapy)
    results = []
    shoal_out = work / (row.label.replace(" ", "_").replace(",", "").replace("/", "") + ".jsonl")
    for phase_no, phase in enumerate(PHASES):
        if phase_no == 2:
            truth = site.change(args.changed, args.deleted, args.added)
        else:
            truth = {cls: set() for cls in CLASSES}
        with site.lock:
            site.log = []
        before = len(shoal_out.read_text().splitlines()) if shoal_out.exists() else 0
        cmd = command(row, url, work, phase_no, args.concurrency)
        with open(work / "tools.log", "a") as log:
            log.write(f"\n== {row.label}: {phase}: {' '.join(cmd)}\n")
            log.flush()
            code, wall, usage, timed_out = run_child(cmd, args.timeout, log)
        with site.lock:
            entries = list(site.log)
        pages = [(p, s, b) for _, p, s, b in entries if p != "/robots.txt"]
        statuses = Counter("HEAD" if m == "HEAD" else s for m, _, s, _ in entries)
        notes = []
        if row.tool == "shoal":
            reported, seen = shoal_reported(shoal_out, before)
            other = {k: v for k, v in seen.items() if k not in (*CLASSES, "unchanged", "first")}
            if other:
                notes.append(f"other change values: {other}")
        else:
            downloaded = {p for p, s, b in pages if s == 200 and b}
            dead = {p for p, s, _ in pages if s in (404, 410)}
            reported = {
                "changed": downloaded & had,
                "new": downloaded - had,
                "gone": dead & had,
            }
            had = (had | downloaded) - dead
            if row.tool == "scrapy":
                notes += scrapy_check(work, row, phase_no, downloaded)
        # wget exits 8 when any request got an error status (the deleted pages' 404/410).
        ok = not timed_out and (code == 0 or (row.tool == "wget" and code == 8))
        result = Result(
            row.label, phase, ok, wall, usage.ru_utime + usage.ru_stime, statuses,
            sum(b for *_, b in entries), reported, truth, notes,
        )  # fmt: skip
        results.append(result)
        print(
            f"{row.label:<28} {phase:<12} exit {code}{' TIMEOUT' if timed_out else ''} "
            f"wall {wall:6.2f} s cpu {result.cpu_s:6.2f} s requests {dict(statuses)} "
            f"bytes {result.body_bytes:,} "
            + " ".join(f"{c}: {result.score(c)}" for c in CLASSES)
            + (f" NOTE {notes}" if notes else ""),
            file=sys.stderr,
        )
    return results


def scrapy_check(work: Path, row: Row, phase_no: int, downloaded: set[str]) -> list[str]:
    """Scrapy's own view (items not from its cache) against the server's log."""
    name = row.label.replace(" ", "_").replace(",", "").replace("/", "")
    out = work / f"{name}.{phase_no}.jsonl"
    if not out.exists():
        return ["no Scrapy output"]
    items = [json.loads(line) for line in out.read_text().splitlines()]
    fetched = {urlsplit(i["url"]).path for i in items if not i.get("cached")}
    if fetched != downloaded:
        return [f"Scrapy's uncached items differ from the server's 200s: {fetched ^ downloaded}"]
    return []


def markdown(args: argparse.Namespace, results: list[Result], versions: str) -> str:
    first = {r.label: r.body_bytes for r in results if r.phase == PHASES[0]}
    by_key = {(r.label, r.phase): r for r in results}
    pct = round(100 * args.changed)
    lines = [
        f"Recrawl: {args.pages}-page site (~5 KB pages; ETag, Last-Modified, "
        f"`Cache-Control: max-age=0` unless said), 127.0.0.1, concurrency {args.concurrency} "
        f'(wget: 1); "changed" run: {pct} % of the pages changed, '
        f"{round(100 * args.deleted)} % deleted (404/410), {round(100 * args.added)} % added. "
        f"{versions}.",
        "",
        "| tool | run | ok | requests | 200 | 304 | 404/410 | HEAD | body bytes | % of run 1 "
        "| wall s | CPU s | changed | new | gone |",
        "| --- | --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: "
        "| --- | --- | --- |",
    ]
    for r in results:
        share = f"{100 * r.body_bytes / first[r.label]:.3g} %" if first[r.label] else "-"
        cells = [
            r.label, r.phase, "yes" if r.ok else "NO", str(sum(r.statuses.values())),
            str(r.statuses[200]), str(r.statuses[304]),
            str(r.statuses[404] + r.statuses[410]), str(r.statuses["HEAD"]),
            f"{r.body_bytes:,}", share,
            f"{r.wall_s:.1f}", f"{r.cpu_s:.1f}", *(r.score(c) for c in CLASSES),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Against shoal, run by run (peer ÷ shoal: above 1 the peer sends more bytes, takes "
        "longer, uses more CPU):",
        "",
        "| peer | run | body bytes | requests | wall | CPU |",
        "| --- | --- | --: | --: | --: | --: |",
    ]
    rows = {row.label: row for row in ROWS}
    for r in results:
        # Each peer against shoal on the same site (with or without validators).
        base = next(
            row.label
            for row in ROWS
            if row.tool == "shoal" and row.validators == rows[r.label].validators
        )
        s = by_key.get((base, r.phase))
        if r.label == base or s is None:
            continue
        pairs = (
            (r.body_bytes, s.body_bytes),
            (sum(r.statuses.values()), sum(s.statuses.values())),
            (r.wall_s, s.wall_s),
            (r.cpu_s, s.cpu_s),
        )
        cells = [f"{a / b:.3g}" if b else "n/a" for a, b in pairs]
        lines.append(f"| {r.label} | {r.phase} | " + " | ".join(cells) + " |")
    notes = [f"- {r.label}, {r.phase}: {n}" for r in results for n in r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def versions_line(rows: list[Row]) -> str:
    shoal_py = SHOAL.parent / "python"
    parts = [
        f"CPython {platform.python_version()}",
        f"shoal {package_version(shoal_py, 'shoal')} (this tree)",
    ]
    if any(r.tool == "scrapy" for r in rows):
        parts.append(f"Scrapy {package_version(PEER_PYTHON, 'scrapy')}")
    if any(r.tool == "wget" for r in rows):
        wget = subprocess.run(["wget", "--version"], capture_output=True, text=True, check=False)
        parts.append(wget.stdout.split("\n")[0].split(" built")[0])
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--changed", type=float, default=0.10, help="share of pages changed")
    parser.add_argument("--deleted", type=float, default=0.01, help="share of pages deleted")
    parser.add_argument("--added", type=float, default=0.01, help="new pages, share of --pages")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per crawl")
    parser.add_argument(
        "--rows",
        help="comma-separated row numbers (1-based) of: " + "; ".join(r.label for r in ROWS),
    )
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep outputs and logs here")
    args = parser.parse_args()
    rows = list(ROWS)
    if args.rows:
        rows = [ROWS[int(k) - 1] for k in args.rows.split(",")]
    if not SHOAL.exists():
        sys.exit(f"{SHOAL} does not exist (python3 dev.py test -q tests/test_layout.py makes it)")
    if not shutil.which("wget"):
        print("wget not found: its rows are skipped", file=sys.stderr)
        rows = [r for r in rows if r.tool != "wget"]
    if any(r.tool == "scrapy" for r in rows):
        ensure_peer_venv()
    # As bench/crawl.py: compile the editable tree once, or every crawl would compile shoal.
    compile_src = [str(SHOAL.parent / "python"), "-m", "compileall", "-q", str(REPO / "src")]
    subprocess.run(compile_src, check=True, stdout=subprocess.DEVNULL)

    site = Site(args.pages, args.seed)
    server = Server(("127.0.0.1", 0), handler(site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    keep = args.workdir is not None
    work = args.workdir or Path(tempfile.mkdtemp(prefix="shoal-recrawl-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"site at {url}; tool output in {work}", file=sys.stderr)
    results: list[Result] = []
    try:
        for row in rows:
            results += run_row(row, site, url, work, args)
    finally:
        server.shutdown()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    text = markdown(args, results, versions_line(rows))
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
