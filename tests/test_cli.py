"""The command line: click's CliRunner for options and exit codes, a subprocess for Ctrl-C."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import shoal
from shoal.cli._commands import cli
from sites import Reply, Site, html


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def small_site() -> Site:
    return Site({"/": html("home", "/a", "/b"), "/a": html("A"), "/b": html("B", "/missing")})


def test_crawl_to_jsonl_file(tmp_path: Path) -> None:
    out = tmp_path / "pages.jsonl"
    with small_site() as site:
        code, _, err = run("crawl", site.url("/"), "-o", str(out), "--concurrency", "4")
    assert code == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    assert "pages 4 (ok 3, redirects 0, failed 1)" in err and "http_404 1" in err


def test_crawl_to_stdout_and_json_summary() -> None:
    with small_site() as site:
        code, out, err = run("crawl", site.url("/"), "--json-summary")
    assert code == 0
    assert len([json.loads(line) for line in out.splitlines()]) == 4
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["pages"] == 4 and summary["errors"] == {"http_404": 1}


def test_csv_has_a_stable_header(tmp_path: Path) -> None:
    out = tmp_path / "pages.csv"
    with small_site() as site:
        code, _, err = run("crawl", site.url("/"), "-o", str(out), "--extract", "h=title::text")
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    header = out.read_text().splitlines()[0].split(",")
    assert header[:3] == ["url", "final_url", "status"] and header[-1] == "h"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["crawl", "example.com"], "no scheme"),
        (["crawl", "ftp://example.com/"], "unsupported scheme"),
        (
            ["crawl", "http://example.com/", "--concurrency", "0"],
            "--concurrency must be at least 1",
        ),
        (["crawl", "http://example.com/", "--extract", "nonsense"], "NAME=SELECTOR"),
        (["crawl", "http://example.com/", "--include", "("], "--include takes regular expressions"),
        (["crawl", "http://example.com:0/"], "port 0 cannot be connected to"),
        (["crawl", "http://:80/x"], "no host"),
        (["crawl", "http://example.com:65536/"], "bad port"),
        (["crawl", "http://example.com/", "--exclude-glob", "["], "--exclude-glob '[' is not"),
        (["crawl", "http://example.com/", "--include-glob", "/a[b"], "--include-glob '/a[b' is"),
        (["crawl", "http://example.com/", "--include-glob", ""], "--include-glob '' is empty"),
        (["crawl", "http://example.com/", "--user-agent", ""], "--user-agent must not be empty"),
        (["crawl", "http://example.com/", "--user-agent", "  "], "--user-agent must not be"),
        (["crawl", "http://example.com/", "--user-agent", "a\r\nX: y"], "must be one line"),
        (
            ["crawl", "http://example.com/", "--allow-domain", "exmaple.com"],
            "the start URL 'http://example.com/' is outside the crawl's scope: its host "
            "example.com is not within --allow-domain exmaple.com",
        ),
        (
            [
                "crawl",
                "http://example.com/a",
                "http://example.org/",
                "--allow-domain",
                "example.com",
            ],
            "start URL 'http://example.org/' is outside",
        ),
        (
            ["crawl", "http://example.com/docs/", "--exclude", "/docs/"],
            "the start URL 'http://example.com/docs/' is excluded by --exclude '/docs/'",
        ),
        (
            ["crawl", "http://example.com/a.pdf", "--exclude-glob", "*.pdf"],
            "excluded by --exclude-glob '*.pdf' (its path '/a.pdf' matches)",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    code, _, err = run(*args)
    assert code == 2
    assert message in err


def test_a_start_url_that_include_does_not_match_is_a_hub_and_is_fetched(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with Site({"/": html("home", "/blog/1", "/about"), "/blog/1": html("b")}) as site:
        code, _, err = run("crawl", site.url("/"), "-o", str(out), "--include", "/blog/")
    assert code == 0, err
    urls = sorted(json.loads(line)["url"] for line in out.read_text().splitlines())
    assert urls == [site.url("/"), site.url("/blog/1")]


def test_valid_globs_and_user_agents_are_taken() -> None:
    from shoal.crawler._options import CrawlOptions

    globs = ["*.pdf", "/docs/*", "/a[[]b", "/[!x]*", "/[]]", "/[!]]"]
    CrawlOptions(include_glob=globs, exclude_glob=globs, user_agent="bot/1.0 (+x; \te)")


@pytest.mark.parametrize(
    "options",
    [
        {"exclude_glob": ["["]},
        {"include_glob": ["/x/[a-z"]},
        {"user_agent": ""},
        {"user_agent": "bot\nInjected: 1"},
        {"user_agent": "bot\u2603"},
        {"allow_domains": ["exmaple.com"]},
        {"exclude": ["example"]},
    ],
)
def test_the_python_api_refuses_the_same_options(options: dict[str, object]) -> None:
    from shoal import UsageError
    from shoal.crawler import Crawler

    with pytest.raises(UsageError):
        Crawler("http://example.com/", **options)  # type: ignore[arg-type]


def test_links_no_request_could_fetch_are_refused_when_found(tmp_path: Path) -> None:
    # Queued, they were recorded as failures (robots.txt "unreachable") on every run.
    links = ["http://127.0.0.1:0/x", "http:///x", "http://:80/x", "http://127.0.0.1:65536/x"]
    out = tmp_path / "out.jsonl"
    with Site({"/": html("home", "/a", *links), "/a": html("a")}) as site:
        args = ["crawl", site.url("/"), "-o", str(out), "--allow-domain", "127.0.0.1"]
        code, _, err = run(*args, "-v", "--json-summary")
        again, _, err2 = run(*args)
    assert code == 0, err
    assert "link(s) refused" in err and "'http://127.0.0.1:0/x' (port 0" in err
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["refused_links"] == 4 and summary["failed"] == 0
    urls = sorted(json.loads(line)["url"] for line in out.read_text().splitlines())
    assert urls == [site.url("/"), site.url("/a")]
    assert again == 0, err2  # nothing was left queued to fail again


def test_nothing_fetched_exits_1() -> None:
    with Site({"/": Reply(500, "down")}) as site:
        code, _, _ = run("crawl", site.url("/"), "--retries", "0", "-q")
    assert code == 1


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with small_site() as site:
        code, _, err = run("crawl", site.url("/"), "-o", str(blocker / "out.jsonl"))
        assert code == 4 and "cannot open output" in err
        code, _, err = run("crawl", site.url("/"), "-o", str(blocker / "out.jsonl"), "--no-state")
        assert code == 4 and "cannot open output" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing left behind


def test_demo_crawls_the_bundled_site() -> None:
    code, out, err = run("demo", "--no-progress")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    titles = {r["title"] for r in records}
    assert "Shoal field guide" in titles and "About" in titles  # gzip page decoded
    assert not any("/private/" in r["url"] for r in records)  # robots.txt obeyed
    assert len({r["url"] for r in records}) == len(records)


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out == f"shoal, version {shoal.__version__}\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_exits_130_with_valid_output(tmp_path: Path) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(req: object) -> Reply:
        started.set()
        release.wait(0.5)  # in-flight requests finish well within the grace period
        return Reply(body=html("slow"))

    out = tmp_path / "out.jsonl"
    routes: dict[str, object] = {"/": html("home", *[f"/s{i}" for i in range(200)])}
    routes.update({f"/s{i}": slow for i in range(200)})
    with Site(routes) as site:  # type: ignore[arg-type]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoal",
                "crawl",
                site.url("/"),
                "-o",
                str(out),
                "--concurrency",
                "4",
                "--per-host",
                "4",
                "--fresh",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert started.wait(30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        release.set()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    # It names the state and the command that resumes.
    assert f"state saved in {out}.state.sqlite; to resume, run: shoal crawl" in err
    [advice] = [line for line in err.splitlines() if "to resume, run:" in line]
    assert "--fresh" not in advice  # rerun with it, the saved work would be deleted
    lines = out.read_text().splitlines()
    assert all(json.loads(line)["url"] for line in lines)  # every line whole
    assert len(lines) < 201
    status = subprocess.run(
        [sys.executable, "-m", "shoal", "status", f"{out}.state.sqlite", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(status.stdout)
    assert report["status"] == "interrupted" and report["last_run"] == "interrupted"
    assert report["totals"]["pages"] == len(lines)  # committed pages, exactly
