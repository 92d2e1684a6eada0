"""Peak RSS against URLs discovered: shoal's durable frontier vs its in-memory one.

A local server (its own process) serves pages that each link to FANOUT new URLs, so a
crawl of P pages discovers about P x FANOUT URLs. Each crawl runs in a fresh child that
reports its own peak RSS (VmHWM): ru_maxrss of a child can start at its parent's peak.

    .venv/bin/python bench/memory.py [--scales 100000,300000,1000000] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FANOUT = 1000
REPO = Path(__file__).resolve().parent.parent

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


class FanoutHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16

    def do_GET(self) -> None:
        ctype = "text/html"
        if self.path == "/robots.txt":
            body = b"User-agent: *\nAllow: /\n"
            ctype = "text/plain"
        else:
            n = int(self.path.lstrip("/") or 0)
            links = "".join(f'<a href="/{n * FANOUT + i}">.</a>' for i in range(1, FANOUT + 1))
            body = f"<html><title>{n}</title><body>{links}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(port_file: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FanoutHandler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def run_crawl(url: str, pages: int, workdir: Path, durable: bool) -> dict[str, float]:
    out = workdir / f"out-{pages}-{int(durable)}.jsonl"
    args = [
        "crawl",
        url,
        "-o",
        str(out),
        "--max-pages",
        str(pages),
        "--json-summary",
        "-q",
        "--concurrency",
        "8",
    ]
    args += ["--fresh"] if durable else ["--no-state"]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"crawl failed ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = proc.stderr.splitlines()
    summary = json.loads(next(x for x in lines if x.startswith("{")))
    peak_kb = int(next(x for x in lines if x.startswith("VmHWM_kB")).split()[1])
    return {
        "discovered": summary["discovered"],
        "pages": summary["pages"],
        "rss_mb": peak_kb / 1024,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scales", default="100000,300000,1000000", help="URLs to discover, comma-separated"
    )
    parser.add_argument("--markdown", help="also write the report here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    scales = [int(s) for s in args.scales.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port_file = workdir / "port"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port_file.read_text()}/"
            base = run_crawl(url, 1, workdir, durable=True)
            rows = []
            for scale in scales:
                pages = max(1, scale // FANOUT)
                for durable in (True, False):
                    r = run_crawl(url, pages, workdir, durable)
                    r["durable"] = durable
                    rows.append(r)
                    print(
                        f"{'durable' if durable else 'memory '} pages={pages} "
                        f"discovered={r['discovered']} rss={r['rss_mb']:.1f} MB "
                        f"({r['seconds']:.1f}s)",
                        file=sys.stderr,
                    )
        finally:
            server.terminate()
            server.wait()
    report = render(rows, base["rss_mb"], " ".join(sys.argv))
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report)


def render(rows: list[dict[str, float]], base_mb: float, command: str) -> str:
    out = [
        "# shoal memory benchmark: peak RSS against URLs discovered",
        "",
        f"- Command: `{command}`",
        f"- Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs",
        f"- Baseline (1-page crawl, durable): {base_mb:.1f} MB",
        "",
        "| frontier | pages fetched | URLs discovered | peak RSS MB | growth MB | bytes/URL |"
        " seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        growth = r["rss_mb"] - base_mb
        per_url = growth * 1024 * 1024 / max(r["discovered"], 1)
        out.append(
            f"| {'durable (SQLite)' if r['durable'] else 'in-memory'} | {r['pages']:,.0f} "
            f"| {r['discovered']:,.0f} | {r['rss_mb']:.1f} | {growth:.1f} | {per_url:.0f} "
            f"| {r['seconds']:.1f} |"
        )
    durable = [r for r in rows if r["durable"]]
    if len(durable) >= 2:
        a, b = durable[-2], durable[-1]
        slope = (b["rss_mb"] - a["rss_mb"]) * 1024 * 1024 / (b["discovered"] - a["discovered"])
        projected = b["rss_mb"] + slope * (10_000_000 - b["discovered"]) / 1024 / 1024
        out += [
            "",
            f"Durable marginal cost between the two largest runs: {slope:.0f} bytes per "
            f"URL; projected peak RSS at 10M URLs: {projected:.0f} MB.",
        ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
