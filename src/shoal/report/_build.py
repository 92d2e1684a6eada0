"""``build_report``: a crawl's output in, one self-contained HTML file and CSV lists out.

The HTML carries everything inline (styles, the vendored Chart.js, the data), so it
opens offline and its Content-Security-Policy forbids any fetch. Tables show at most
``max_rows`` rows; the full lists go to CSV files beside the HTML
(``NAME.broken.csv``, ``NAME.redirects.csv``, ``NAME.hosts.csv``, ``NAME.robots.csv``).

Files are never overwritten unless shoal wrote them (a report carries a generator tag, a
CSV list its exact header) or ``overwrite=True``; each is written to a temporary file and
renamed, so a failed build leaves the previous report whole.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import IO, Any

from .._errors import UsageError, literal
from .._version import __version__
from ..state import state_for_output
from ._aggregate import LATENCY_EDGES_MS, Aggregate, BrokenLink, latest_runs
from ._read import OutputReader, StateFacts, read_state_facts

__all__ = ["DEFAULT_MAX_ROWS", "ReportResult", "build_report", "check_writable", "report_paths"]

DEFAULT_MAX_ROWS = 500
CHARTJS_VERSION = "4.6.1"  # vendor/chart.umd.min.js; see vendor/README.md
_GENERATOR = "shoal report"
_HEADERS = {
    "broken": ["url", "status", "error", "error_detail", "referrer", "depth"],
    "redirects": ["chain", "statuses", "outcome"],
    "hosts": ["host", "pages", "ok", "errors", "median_latency_ms", "bytes", "robots_skipped"],
    "robots": ["url", "host", "referrer"],
    # Every (broken URL, linking page) pair known: the record's referrer, and with
    # --save-bodies every other page whose HTML links to it.
    "referrers": ["url", "linked_from", "found_in"],
}


@dataclass
class ReportResult:
    html: Path
    csv: dict[str, Path]
    pages: int
    broken: int
    seconds: float  # to build
    html_bytes: int
    state: str | None = None
    notes: list[str] = field(default_factory=list)


def report_paths(html: str | os.PathLike[str]) -> tuple[Path, dict[str, Path]]:
    """The report's HTML path and the CSV lists written beside it."""
    path = Path(html)
    stem = path.name[: -len(path.suffix)] if path.suffix.lower() in (".html", ".htm") else path.name
    return path, {kind: path.with_name(f"{stem}.{kind}.csv") for kind in _HEADERS}


def check_writable(html: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuse (UsageError) to replace a file that shoal did not write, before any work."""
    path, csvs = report_paths(html)
    if path.is_dir():
        raise UsageError(f"the report path {path} is a directory")
    targets: list[tuple[Path, str]] = [(path, "html"), *((p, k) for k, p in csvs.items())]
    if overwrite:
        return
    for target, kind in targets:
        if target.exists() and not _written_by_shoal(target, kind):
            raise UsageError.naming(
                literal(f"{target} exists and is not a shoal report; choose another path ")
                + "or pass {overwrite=True} to replace it"
            )


def _written_by_shoal(path: Path, kind: str) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if kind == "html":
        return f'<meta name="generator" content="{_GENERATOR}'.encode() in head
    header = ",".join(_HEADERS[kind]).encode()
    return head.split(b"\r\n", 1)[0] == header or head.split(b"\n", 1)[0] == header


def _state_for(output: Path, state: str | None) -> StateFacts | None:
    """``state``: a path, "auto" (the output's state file if there is one) or None (do not read)."""
    if state is None:
        return None
    if state == "auto":
        # OUTPUT.state.sqlite, or the state of a crawl whose later -o this is.
        guess = state_for_output(output)
        if guess is None:
            return None
        return read_state_facts(guess)
    return read_state_facts(state)


class _AtomicFile:
    """A file written under a temporary name, renamed into place on commit."""

    def __init__(self, path: Path, mode: str = "w") -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file: IO[Any] = open(  # noqa: SIM115 - closed by commit/discard
                self.tmp, mode, encoding="utf-8", newline=""
            )
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None

    def commit(self) -> None:
        try:
            self.file.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def build_report(
    output: str | os.PathLike[str],
    html: str | os.PathLike[str] | None = None,
    *,
    state: str | None = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
    overwrite: bool = False,
) -> ReportResult:
    """Write the HTML report of the crawl whose output is ``output``.

    ``html`` defaults to ``OUTPUT.report.html``. ``state`` is the crawl's state file
    ("auto": ``OUTPUT.state.sqlite``, or the state of a crawl that had OUTPUT as a later
    ``-o``, when it exists; None: ignore it). Raises
    UsageError for an unreadable output or a path it may not replace.
    """
    if max_rows < 1:
        raise UsageError("--max-rows must be at least 1")
    started = time.perf_counter()
    source = Path(output)
    html_path, csv_paths = report_paths(html if html is not None else f"{source}.report.html")
    reader = OutputReader(source)
    check_writable(html_path, overwrite=overwrite)
    facts = _state_for(source, state)

    files: dict[str, _AtomicFile] = {}
    try:
        for kind, path in csv_paths.items():
            files[kind] = _AtomicFile(path)
        writers = {kind: csv.writer(f.file) for kind, f in files.items()}
        for kind, w in writers.items():
            w.writerow(_HEADERS[kind])
        broken_csv = writers["broken"]

        pairs_csv = writers["referrers"]

        def on_broken(b: BrokenLink) -> None:
            broken_csv.writerow([b.url, b.status, b.kind, b.detail, b.referrer, b.depth])
            pairs_csv.writerow([b.url, b.referrer or "", "record"])

        agg = Aggregate(
            max_rows=max_rows,
            on_broken=on_broken,
            no_response=facts.no_response if facts else None,
        )
        agg.add_all(reader)
        if agg.reruns:
            # A recrawl's output: each URL counts once, as its latest run says. Find each
            # one's latest run, then read again from the start into empty tables.
            latest = latest_runs(OutputReader(source))
            for kind, w in writers.items():
                files[kind].file.seek(0)
                files[kind].file.truncate()
                w.writerow(_HEADERS[kind])
            reader = OutputReader(source)
            agg = Aggregate(
                max_rows=max_rows,
                on_broken=on_broken,
                no_response=facts.no_response if facts else None,
                latest=latest,
            )
            agg.add_all(reader)
        # A WARC holds every page's body: its HTML names the pages linking to a broken URL
        # (its records have no referrer).
        warc = reader.format == "warc"
        if (agg.has_bodies or warc) and agg.broken_urls:
            from ._links import referrers_from_bodies

            linked = referrers_from_bodies(OutputReader(source, bodies=warc), agg.broken_urls)
            for url, pages in linked.items():
                for linking in pages:
                    pairs_csv.writerow([url, linking, "page body"])
            for b in agg.broken:
                b.also_linked_from = linked.get(b.url, [])
        context = _context(agg, reader, facts, max_rows, csv_paths)

        hosts = agg.host_rows()
        for h in hosts:
            median = h.median_ms
            writers["hosts"].writerow(
                [
                    h.host,
                    h.pages,
                    h.ok,
                    h.errors,
                    None if median is None else round(median, 1),
                    h.bytes,
                    h.robots_skipped,
                ]
            )
        for c in context["all_redirects"]:
            writers["redirects"].writerow(
                [" -> ".join(c.hops), " -> ".join(map(str, c.statuses)), c.outcome]
            )
        for row in context["all_robots"]:
            writers["robots"].writerow(row)

        page = _render(context)
        html_file = _AtomicFile(html_path)
        files["html"] = html_file
        html_file.file.write(page)
        for f in files.values():
            f.commit()
    except BaseException:
        for f in files.values():
            f.discard()
        raise
    return ReportResult(
        html=html_path,
        csv=csv_paths,
        pages=agg.pages,
        broken=agg.broken_total,
        seconds=time.perf_counter() - started,
        html_bytes=len(page.encode()),
        state=facts.path if facts else None,
    )


def _context(
    agg: Aggregate,
    reader: OutputReader,
    facts: StateFacts | None,
    max_rows: int,
    csv_paths: dict[str, Path],
) -> dict[str, Any]:
    xs, ys, starts, duration = agg.rate_series()
    runs = agg.runs()

    def pct(p: float) -> str:
        v = agg.latency.percentile(p)
        return "-" if v is None else f"{v * 1000:.0f}"

    hosts = agg.host_rows()
    chains = agg.redirect_chains()
    robots = agg.robots_skipped()
    statuses = sorted(agg.statuses.items(), key=lambda kv: (kv[0] == "no response", kv[0]))
    latency_labels = [f"< {_ms(e)}" for e in LATENCY_EDGES_MS] + [f"≥ {_ms(LATENCY_EDGES_MS[-1])}"]
    marks = [False] * len(latency_labels)
    for p in (50, 95, 99):
        v = agg.latency.percentile(p)
        if v is not None:
            marks[_bin_of(v * 1000)] = True
    max_depth = max(agg.depths) if agg.depths else -1
    data = {
        "rate": {"x": xs, "y": ys, "runs": len(runs), "starts": starts},
        "status": {"labels": [s for s, _ in statuses], "values": [n for _, n in statuses]},
        "latency": {"labels": latency_labels, "values": agg.latency_bins, "marks": marks},
        "depth": {
            "labels": [str(d) for d in range(max_depth + 1)],
            "values": [agg.depths.get(d, 0) for d in range(max_depth + 1)],
        },
        "totals": {
            "pages": agg.pages,
            "ok": agg.ok,
            "redirected": agg.redirected,
            "failed": agg.failed,
            "bytes": agg.bytes,
            "duration": round(duration, 3),
            "broken": agg.broken_total,
        },
    }
    rate = agg.pages / duration if duration > 0 else 0.0
    return {
        "generator": f"{_GENERATOR} {__version__}",
        "source": str(reader.path),
        "format": reader.format,
        "state": facts.path if facts else None,
        "running": bool(facts and facts.running),
        "runs": runs,
        "first_at": _utc(runs[0][0]) if runs else None,
        "last_at": _utc(runs[-1][1]) if runs else None,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "unreadable": reader.unreadable,
        "skipped_records": agg.skipped_records,
        "t": {
            "pages": agg.pages,
            "ok": agg.ok,
            "redirected": agg.redirected,
            "failed": agg.failed,
            "bytes_h": _size(agg.bytes),
            "duration_h": _duration(duration),
            "rate": f"{rate:.1f}",
            "p50": pct(50),
            "p95": pct(95),
            "p99": pct(99),
            "queued": facts.queued if facts else 0,
            "robots_skipped": len(robots),
        },
        "errors": agg.errors.most_common(),
        "recrawls": [
            {
                "run": run,
                **{k: counts.get(k, 0) for k in ("new", "changed", "unchanged", "gone")},
                "disallowed": counts.get("disallowed", 0),
                "pages": agg.changed_pages.get(run, []),
            }
            for run, counts in sorted(agg.recrawls.items())
        ],
        "broken": agg.broken,
        "broken_total": agg.broken_total,
        "has_bodies": agg.has_bodies,
        "hosts": [
            {
                "host": h.host,
                "pages": h.pages,
                "ok": h.ok,
                "errors": h.errors,
                "median": "-" if h.median_ms is None else f"{h.median_ms:.0f}",
                "bytes_h": _size(h.bytes),
                "robots_skipped": h.robots_skipped,
            }
            for h in hosts[:max_rows]
        ],
        "hosts_total": len(hosts),
        "redirects": chains[:max_rows],
        "all_redirects": chains,
        "redirects_total": len(chains),
        "robots": robots[:max_rows],
        "all_robots": robots,
        "robots_total": len(robots),
        "csv": {kind: p.name for kind, p in csv_paths.items()},
        "data_json": _script_json(data),
        "chart_js": _chart_js(),
        "chartjs_version": CHARTJS_VERSION,
    }


def _render(context: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(
        loader=PackageLoader("shoal.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
    )
    context = dict(context)
    # Already made safe for a <script> element (see _script_json, _chart_js).
    context["data_json"] = Markup(context["data_json"])
    context["chart_js"] = Markup(context["chart_js"])
    return env.get_template("report.html.j2").render(**context)


def _script_json(data: Any) -> str:
    """JSON that cannot end its <script> element early: every '<' is escaped."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _chart_js() -> str:
    text = resources.files("shoal.report").joinpath("vendor/chart.umd.min.js").read_text("utf-8")
    # The source map is not shipped; a comment naming it would only invite a fetch.
    lines = [ln for ln in text.splitlines() if not ln.startswith("//# sourceMappingURL=")]
    text = "\n".join(lines)
    if "</script" in text.lower():  # pragma: no cover - checked for the vendored version
        raise RuntimeError("the vendored Chart.js cannot be inlined in a <script> element")
    return text


def _bin_of(ms: float) -> int:
    for i, edge in enumerate(LATENCY_EDGES_MS):
        if ms < edge:
            return i
    return len(LATENCY_EDGES_MS)


def _ms(edge: int) -> str:
    return f"{edge // 1000} s" if edge >= 1000 else f"{edge} ms"


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
