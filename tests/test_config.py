"""``shoal crawl --config FILE`` and settings per host (issue 20): every option under its
command-line name, the command line wins, bad keys are named with their line, and
``[hosts."NAME"]`` tables pace each host by its own per-host limit and delay, measured on
the servers' side."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from redis_server import redis_session  # noqa: F401  (the Redis fixture)
from shoal import UsageError
from shoal.cli import _commands
from shoal.cli._commands import cli
from shoal.cli._config import config_keys, load_config
from shoal.crawler import Crawler, HostSettings
from shoal.crawler._hosts import HOST_KEYS
from sites import Reply, Site, html

CRAWL = cli.commands["crawl"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, text: str, name: str = "crawl.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def captured(*args: str) -> tuple[list[str], dict[str, Any]]:
    """The start URLs and the options ``shoal crawl ARGS`` would hand the crawler."""
    seen: dict[str, Any] = {}

    def capture(urls: list[str], options: dict[str, Any], *a: object, **kw: object) -> None:
        seen.update(urls=urls, options=options)

    original = _commands._run_crawl
    _commands._run_crawl = capture  # type: ignore[assignment]
    try:
        code, _, err = run("crawl", *args)
    finally:
        _commands._run_crawl = original
    assert code == 0, err
    return seen["urls"], seen["options"]


# -- the keys ------------------------------------------------------------------------------


def _sample(param: click.Parameter) -> object:
    """A value of ``param``'s type as TOML would give it."""
    kind = param.type
    if isinstance(param, click.Option) and param.count:
        return 2
    if isinstance(param, click.Option) and param.is_flag:
        return True
    if isinstance(kind, click.Choice):
        one: object = list(kind.choices)[-1]
    elif isinstance(kind, click.types.IntParamType):
        one = 3
    elif isinstance(kind, click.types.FloatParamType):
        one = 1.5
    elif kind.name == "duration":
        one = "6h"
    else:
        one = "x"
    if param.nargs > 1:  # --header-for HOST 'NAME: VALUE'
        one = [one] * param.nargs
    return [one] if param.multiple or param.nargs == -1 else one


def test_every_option_of_the_command_is_a_key() -> None:
    """Read off the command's parameters, so an option another change adds is a key too;
    each key sets its parameter with a value of the option's type."""
    keys = config_keys(CRAWL)
    covered = {k.param.name for ks in keys.values() for k in ks}
    every = {p.name for p in CRAWL.params if p.name not in ("config", "help")}
    assert covered == every
    for key, ks in keys.items():
        for k in ks:
            value = False if k.negated else _sample(k.param)
            text = f"{json.dumps(key)} = {json.dumps(value)}\n"
            import tomllib

            parsed = tomllib.loads(text)[key]
            config = load_config_text(text)
            expect = (not parsed) if k.negated else parsed
            assert config.defaults[k.param.name or ""] == expect, key


def load_config_text(text: str) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_text(text, encoding="utf-8")
        return load_config(str(path), CRAWL)


def test_flags_by_their_positive_name_arrays_and_urls(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'urls = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]\n'
        "max-pages = 7\nper-host = 2\ndelay = 0.25\n"
        "robots = false\nobey-nofollow = false\nprogress = false\nstate = false\n"
        'include = ["/a", "/b"]\nextract = "h1=h1::text"\n'
        'output = ["p.jsonl", "c.warc.gz"]\nrevisit-after = "6h"\nrecrawl = true\n',
    )
    urls, options = captured("--config", config)
    assert urls == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    assert options["max_pages"] == 7 and options["per_host"] == 2 and options["delay"] == 0.25
    assert options["robots"] is False and options["obey_nofollow"] is False
    assert options["progress"] is False and options["state"] is None
    assert options["include"] == ("/a", "/b") and options["extract"] == {"h1": "h1::text"}
    assert options["output"] == ["p.jsonl", "c.warc.gz"]
    assert options["revisit_after"] == 6 * 3600 and options["recrawl"] is True


def test_the_command_line_wins_over_the_file(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'urls = ["http://127.0.0.1:9/file"]\nmax-pages = 7\nrobots = false\n'
        'include = ["/a"]\nstate = "from-file.sqlite"\ndelay = 2\n',
    )
    urls, options = captured(
        "--config",
        config,
        "http://127.0.0.1:9/typed",
        "--max-pages",
        "3",
        "--robots",
        "--include",
        "/z",
        "--no-state",
    )
    assert urls == ["http://127.0.0.1:9/typed"]  # the file's urls replaced, not added to
    assert options["max_pages"] == 3 and options["robots"] is True
    assert options["include"] == ("/z",)
    assert options["state"] is None  # --no-state typed wins over the file's state = "..."
    assert options["delay"] == 2  # not typed: the file's
    # And the other way round: --state typed wins over the file's state = false.
    config = write(tmp_path, 'urls = ["http://127.0.0.1:9/"]\nstate = false\n', "b.toml")
    _, options = captured("--config", config, "--state", "typed.sqlite")
    assert options["state"] == "typed.sqlite"


def test_typed_proxy_options_replace_every_proxy_option_of_the_file(tmp_path: Path) -> None:
    """--proxy and --proxy-file say between them which proxies to use: one typed replaces
    the file's values of both (the file's proxy-file with a typed --proxy none would
    contradict); the file's proxy-max-failures stays."""
    (tmp_path / "pool.txt").write_text("http://127.0.0.1:9\n")
    config = write(
        tmp_path,
        f'urls = ["http://127.0.0.1:9/"]\nproxy-file = "{tmp_path / "pool.txt"}"\n'
        'proxy = ["http://127.0.0.1:8"]\nproxy-max-failures = 7\n',
    )
    _, options = captured("--config", config, "--proxy", "none")
    assert (options["proxy"], options["proxy_file"]) == ("none", None)
    assert options["proxy_max_failures"] == 7
    _, options = captured("--config", config, "--proxy-file", str(tmp_path / "other.txt"))
    assert (options["proxy"], options["proxy_file"]) == ("env", str(tmp_path / "other.txt"))
    _, options = captured("--config", config)  # nothing typed: the file's, both
    assert options["proxy"] == "http://127.0.0.1:8"
    assert options["proxy_file"] == str(tmp_path / "pool.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_pages = 5\n", "line 1: unknown key 'max_pages'; did you mean 'max-pages'?"),
        ("\n\nmax-pgaes = 5\n", "line 3: unknown key 'max-pgaes'; did you mean 'max-pages'?"),
        ("[crawl]\nmax-pages = 5\n", "unknown key 'crawl'"),
        ('max-pages = "5"\n', "line 1: max-pages must be an integer, not a string ('5')"),
        ("max-pages = 5.5\n", "max-pages must be an integer, not a number"),
        ("delay = true\n", "delay must be a number, not a boolean"),
        ("robots = 1\n", "line 1: robots must be a boolean, not an integer (1)"),
        ("include = [1, 2]\n", "include must be a string or an array of them, not an array"),
        ("max-pages = [1]\n", "max-pages must be an integer, not an array"),
        ('transport = "curl"\n', "transport must be one of 'native', 'urllib3'"),
        ("state = 3\n", "state must be a string or a boolean, not an integer"),
        ('config = "other.toml"\n', "unknown key 'config' (the command line's"),
        ("max-pages = 5\nmax-pages = 6\n", "line 2: max-pages is set twice (not valid TOML)"),
        ("delay = inf\n", "line 1: delay must be a number, not an infinite number (inf)"),
        ("\n\ndelay = -1\n", "line 3: delay must be at least 0 (got -1)"),
        ("per-host = 0\n", "line 1: per-host must be at least 1 (got 0)"),
        ("max = [\n", "not valid TOML"),
        ('[hosts."https://a.example/x"]\ndelay = 1\n', "is a URL, not a host"),
        (
            '[hosts."a.example"]\ndelay = 1\nper_host = 2\n',
            "line 3: [hosts.\"a.example\"]: unknown key 'per_host'; did you mean 'per-host'?",
        ),
        ('[hosts."a.example"]\ndely = 1\n', "unknown key 'dely'; did you mean 'delay'?"),
        (
            '[hosts."a.example"]\nper-host = 0\n',
            "line 1: [hosts] 'a.example': per-host must be at least 1 (got 0)",
        ),
        ('[hosts."a.example"]\ndelay = "slow"\n', "delay must be a number of seconds"),
        ('[hosts."a.example"]\n[hosts."A.example"]\n', "name the host 'a.example' twice"),
        ('[hosts."a.example:99999"]\n', "the port must be 1 to 65535"),
        ("hosts = 3\n", "[hosts] holds one table per host"),
    ],
)
def test_a_bad_file_is_a_usage_error_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write(tmp_path, text)
    code, out, err = run("crawl", "--config", config, "http://127.0.0.1:9/")
    assert code == 2, err
    assert message in err, err
    assert out == ""


def test_a_byte_order_mark_at_the_start_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbfmax-pages = 5\nurls = ['http://127.0.0.1:9/']\n")
    urls, options = captured("--config", str(path))
    assert (urls, options["max_pages"]) == (["http://127.0.0.1:9/"], 5)


def test_no_url_anywhere_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("crawl", "--config", write(tmp_path, "max-pages = 5\n"))
    assert code == 2 and "give at least one URL" in err
    code, _, err = run("crawl", "--config", str(tmp_path / "missing.toml"), "http://x/")
    assert code == 2 and "cannot read the config file" in err


# -- hosts= in Python --------------------------------------------------------------------


def test_hosts_in_python_are_checked_and_normalized() -> None:
    crawler = Crawler(
        "http://a.example/",
        hosts={"A.Example": {"delay": 1}, "b.example:8080": HostSettings(per_host=2)},
    )
    opts = crawler.options
    assert set(opts.hosts) == {"a.example", "b.example:8080"}
    assert opts.host_delay("http://a.example:81") == 1  # a name: every port of it
    assert opts.host_delay("https://b.example") == 0.0  # a pinned port: that port only
    both = Crawler(
        "http://a.example/",
        hosts={"a.example": {"delay": 1, "per_host": 4}, "a.example:81": {"per_host": 2}},
    ).options
    assert both.host_settings("http://a.example:81") == HostSettings(per_host=2, delay=1)
    assert both.host_settings("http://a.example") == HostSettings(per_host=4, delay=1)
    assert both.host_settings("http://b.example:81") == HostSettings()
    with pytest.raises(UsageError, match=r"unknown setting 'dely'; did you mean delay\?"):
        Crawler("http://a.example/", hosts={"a.example": {"dely": 1}})
    with pytest.raises(UsageError, match=r"is a URL, not a host.*write 'a\.example:8080'"):
        Crawler("http://a.example/", hosts={"http://a.example:8080/": {"delay": 1}})
    with pytest.raises(UsageError, match="per_host must be an integer"):
        Crawler("http://a.example/", hosts={"a.example": {"per_host": 1.5}})


# -- the crawl: two hosts at two paces -------------------------------------------------------

PAGES = [f"/p{i}" for i in range(6)]


def _paced_site(site: Site, gate: threading.Barrier | None = None) -> None:
    site.routes["/"] = html("home", *PAGES)
    site.routes["/robots.txt"] = Reply(404, "")

    def page(req: object) -> Reply:
        if gate is not None:
            # Held until two requests of this host are in flight (or 10 s: then the
            # assertion on max_in_flight fails, never a hang).
            with contextlib.suppress(threading.BrokenBarrierError):
                gate.wait(timeout=10)
        return Reply(body=html("page"))

    for path in PAGES:
        site.routes[path] = page


def assert_spaced(times: list[float], delay: float) -> None:
    """Arrivals on a host with per-host 1 and ``delay``, as the server saw them: request
    i+2 arrives more than ``delay`` after request i, by construction. (Not i+1 after i:
    the delay runs from one lease to the next, and a request may spend any time between
    its lease and the server, so two neighbours can arrive closer, as under load they
    did.) Request i arrived before its response, which came before its release, which
    came before request i+1 was leased (one in flight); request i+2 was leased at least
    ``delay`` after that, and arrived after its lease. 10 ms for clock granularity (Redis
    keeps its own clock, in ms)."""
    spans = [c - a for a, c in zip(times, times[2:], strict=False)]
    assert spans and min(spans) >= delay - 0.01, spans


def _two_paces(tmp_path: Path, slow: Site, fast: Site, delay: float, extra: str = "") -> str:
    port_slow = slow.origin.rsplit(":", 1)[1]
    port_fast = fast.origin.rsplit(":", 1)[1]
    return write(
        tmp_path,
        f'urls = ["{slow.url("/")}", "{fast.url("/")}"]\n'
        f"per-host = 4\nconcurrency = 8\nprogress = false\n{extra}\n"
        f'[hosts."127.0.0.1:{port_slow}"]\nper-host = 1\ndelay = {delay}\n\n'
        f'[hosts."127.0.0.1:{port_fast}"]\nper-host = 2\n',
    )


def _assert_paced(slow: Site, fast: Site, delay: float) -> None:
    assert all(slow.paths()[p] == 1 for p in ["/", *PAGES])
    assert all(fast.paths()[p] == 1 for p in ["/", *PAGES])
    assert slow.max_in_flight == 1
    times = sorted(t for _, t in slow.requests())
    assert len(times) == 2 + len(PAGES)  # robots.txt, home and its pages
    assert_spaced(times, delay)
    assert fast.max_in_flight == 2


def test_a_config_file_paces_two_hosts_differently(tmp_path: Path) -> None:
    """The issue's "done when": per-host tables drive a two-host crawl at two paces. The
    slow host (by host:port) never has two requests in flight and its requests arrive at
    least its delay apart; the fast one reaches its own limit of 2 (a gate holds its
    pages until two are in flight), above the slow one's and below the crawl's 4."""
    delay = 0.3
    with Site() as slow, Site() as fast:
        _paced_site(slow)
        _paced_site(fast, threading.Barrier(2))
        out = tmp_path / "pages.jsonl"
        config = _two_paces(tmp_path, slow, fast, delay, f'state = false\noutput = "{out}"\n')
        code, _, err = run("crawl", "--config", config, "-q")
        assert code == 0, err
        _assert_paced(slow, fast, delay)


def test_two_redis_workers_pace_each_host_by_its_table(
    tmp_path: Path,
    redis_session: Any,  # noqa: F811
) -> None:
    """The same through --redis, two workers at once: the pace of a host is the crawl's,
    kept in Redis (the Lua gives each host its table's limit and delay), not each
    worker's."""
    delay = 0.3
    with Site() as slow, Site() as fast:
        _paced_site(slow)
        _paced_site(fast, threading.Barrier(2))
        config = _two_paces(tmp_path, slow, fast, delay)
        shared = ["--redis", redis_session.url, "--crawl-id", "paces", "-q"]
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shoal",
                    "crawl",
                    "--config",
                    config,
                    *shared,
                    "-o",
                    str(tmp_path / f"{name}.jsonl"),
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("w1", "w2")
        ]
        for w in workers:
            _, err = w.communicate(timeout=120)
            assert w.returncode == 0, err
        _assert_paced(slow, fast, delay)


def test_redis_workers_of_one_config_and_other_concurrency_join(
    tmp_path: Path,
    redis_session: Any,  # noqa: F811
) -> None:
    """per_host (the crawl's and a host table's) is compared as configured: a worker with
    --concurrency below it caps it for itself only, and one with more joins the crawl."""
    with Site({"/": html("home", "/a"), "/a": html("a")}) as site:
        config = write(tmp_path, '[hosts."127.0.0.1"]\nper-host = 8\n')
        for i, concurrency in enumerate(("2", "16")):
            code, _, err = run(
                "crawl", "--config", config, site.url("/"),
                "--redis", redis_session.url, "--crawl-id", "conc", "-q",
                "-o", str(tmp_path / f"w{i}.jsonl"), "--concurrency", concurrency,
            )  # fmt: skip
            assert code == 0, err


def test_a_host_name_paces_every_port_of_it(tmp_path: Path) -> None:
    """``127.0.0.1`` (no port) matches both servers; each keeps its own clock."""
    with Site() as a, Site() as b:
        _paced_site(a)
        _paced_site(b)
        Crawler(
            [a.url("/"), b.url("/")],
            hosts={"127.0.0.1": {"per_host": 1, "delay": 0.2}},
            progress=False,
            state=None,
            output=str(tmp_path / "out.jsonl"),
        ).run()
        for site in (a, b):
            assert site.max_in_flight == 1
            times = sorted(t for _, t in site.requests())
            assert_spaced(times, 0.2)


def test_docs_api_lists_every_key() -> None:
    """docs/api.md's table of config keys is the command's, no more, no less."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    table = text.split("<!-- config keys: begin -->")[1].split("<!-- config keys: end -->")[0]
    listed = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    assert listed == set(config_keys(CRAWL)) | {'[hosts."NAME"]'}
    for key in HOST_KEYS:
        assert f"`{key.replace('_', '-')}`" in table


def test_auto_throttle_starts_at_and_never_goes_below_a_hosts_own_delay() -> None:
    """A host's delay replaces --delay as auto-throttle's floor, lower or higher."""
    from shoal.crawler._jobs import throttled

    opts = Crawler(
        "http://a.example/",
        auto_throttle=True,
        delay=2.0,
        hosts={"fast.example": {"delay": 0.5}, "slow.example": {"delay": 5.0}},
    ).options
    fast, slow, other = "http://fast.example", "http://slow.example", "http://b.example"
    assert opts.host_initial_delay(fast) == opts.throttle_start  # 1 s > 0.5
    assert opts.host_initial_delay(slow) == 5.0 and opts.host_initial_delay(other) == 2.0
    quick = 0.001  # a fast answer pulls the delay down to the floor in a few steps
    for host, floor in ((fast, 0.5), (slow, 5.0), (other, 2.0)):
        current = opts.host_initial_delay(host)
        for _ in range(20):
            current = throttled(opts, current, quick, 200, 0.0, delay=opts.host_delay(host))
        assert current == floor, host


def test_auto_throttle_keeps_a_hosts_own_delay_above_its_60s_cap() -> None:
    """Auto-throttle grows a delay to 60 s at most, but a host's own delay (or --delay)
    longer than that stays its floor: 120 s is not cut to 60 s by one fast answer."""
    from shoal.crawler._jobs import throttled

    opts = Crawler(
        "http://a.example/", auto_throttle=True, hosts={"slow.example": {"delay": 120.0}}
    ).options
    host = "http://slow.example"
    assert opts.host_initial_delay(host) == 120.0
    for elapsed in (0.1, 500.0):  # a fast answer, then one slower than any cap
        assert throttled(opts, 120.0, elapsed, 200, 0.0, delay=opts.host_delay(host)) == 120.0
    crawl = Crawler("http://a.example/", auto_throttle=True, delay=90.0).options
    assert throttled(crawl, 90.0, 0.1, 200, 0.0) == 90.0
    # below its delay's 60 s, a slow host's throttle still stops at 60 s
    assert throttled(crawl, 30.0, 500.0, 200, 0.0, delay=1.0) == 60.0


def test_an_option_of_two_values_is_an_array_of_two(tmp_path: Path) -> None:
    """An option that takes two values (``--header-for HOST 'NAME: VALUE'`` is one) is a
    two-item array in the file, an array of them when repeatable; read as click reads
    the command line (the file is the command's default_map)."""
    from shoal.cli._config import apply_config

    got: dict[str, Any] = {}

    @click.command()
    @click.option("--config", is_eager=True, expose_value=False, callback=apply_config)
    @click.option("--for", "pairs", nargs=2, multiple=True)
    @click.option("--limit", nargs=2, type=(str, int))
    def command(**kw: Any) -> None:
        got.update(kw)

    config = write(tmp_path, 'for = [["a.example", "X: 1"], ["b.example", "Y: 2"]]\n')
    result = CliRunner().invoke(command, ["--config", config])
    assert result.exit_code == 0, result.output
    assert got["pairs"] == (("a.example", "X: 1"), ("b.example", "Y: 2"))
    config = write(tmp_path, 'for = ["a.example", "X: 1"]\nlimit = ["a", 3]\n')
    CliRunner().invoke(command, ["--config", config])
    assert got["pairs"] == (("a.example", "X: 1"),) and got["limit"] == ("a", 3)
    config = write(tmp_path, 'limit = ["a", "b"]\n')
    result = CliRunner().invoke(command, ["--config", config])
    assert result.exit_code == 2
    assert "limit must be an array of 2 (a string, an integer)" in result.output
