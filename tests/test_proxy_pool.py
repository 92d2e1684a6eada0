"""A pool of proxies (issue 20): each host sticky to one proxy, a proxy that keeps failing
retired and its hosts moved, a crawl with none left stopped (never going out directly),
counts in the summary, credentials nowhere, and --proxy-file.

Real proxies on 127.0.0.1 (test_proxy.py's forwarding proxy, counting which target each
request was for, and able to die at its Nth request), real sites on 127.0.0.N: a different
address is a different host name, and a host name is what a proxy is picked by.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rawserver import RawServer, read_request
from shoal import Crawler, NoProxyLeft
from shoal.http import HTTPClient, Proxy, ProxyRules, TransportError
from sites import Site, html
from test_proxy import (  # noqa: F401 - fixtures: the https site and trusting its CA
    CREDENTIALS,
    ForwardProxy,
    _ProxyHandler,
    _ScriptedProxy,
    tls_site,
    trust_local_ca,
)

SECRET = "s3cret-Pw"


class _CountingHandler(_ProxyHandler):
    server: PoolProxy

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.server.admit(urlsplit(self.path).netloc):
            super().do_GET()
        else:
            self.close_connection = True  # dead: no answer at all

    def do_CONNECT(self) -> None:  # noqa: N802
        if self.server.admit(self.path):
            super().do_CONNECT()
        else:
            self.close_connection = True


class PoolProxy(ForwardProxy):
    """A forwarding proxy that notes each request's target and, given ``die_after``,
    answers that many requests and then dies: it stops listening (new connections are
    refused) and closes every connection it still has without an answer."""

    def __init__(self, *, die_after: int | None = None, require: str | None = None) -> None:
        super().__init__(require)
        self.RequestHandlerClass = _CountingHandler
        self.die_after = die_after
        self.targets: list[str] = []
        self.dead = False
        self._count_lock = threading.Lock()

    def admit(self, target: str) -> bool:
        with self._count_lock:
            if self.dead:
                return False
            if self.die_after is not None and len(self.targets) >= self.die_after:
                self.dead = True
                # Not from this handler's thread: closing the server joins its threads.
                threading.Thread(target=self._stop_listening, name="proxy-dies").start()
                return False
            self.targets.append(target)
            return True

    def _stop_listening(self) -> None:
        self.shutdown()
        self.socket.close()

    def target_hosts(self) -> set[str]:
        with self._count_lock:
            return {t.rpartition(":")[0] for t in self.targets}


@pytest.fixture(autouse=True)
def _no_env_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _env() -> dict[str, str]:
    proxies = {"no_proxy", "http_proxy", "https_proxy", "all_proxy"}
    return {k: v for k, v in os.environ.items() if k.lower() not in proxies}


def _with_secret(url: str) -> str:
    return url.replace("http://", f"http://user:{SECRET}@")


def _one_host_per_proxy(urls: list[str]) -> list[str]:
    """Host names 127.0.0.N, one picked by each proxy of the pool ``urls`` (in order)."""
    rules = ProxyRules.pool(urls)
    found: dict[Proxy, str] = {}
    for n in range(2, 250):
        host = f"127.0.0.{n}"
        proxy = rules.for_url("http", host)
        assert proxy is not None
        found.setdefault(proxy, host)
        if len(found) == len(urls):
            break
    return [found[p] for p in rules.proxies]


def _pages(n: int) -> dict[str, str]:
    paths = [f"/p{i}" for i in range(n)]
    return {"/": html("home", *paths), **{p: html(p) for p in paths}}


@pytest.fixture
def three_proxies() -> Iterator[list[PoolProxy]]:
    proxies = [PoolProxy() for _ in range(3)]
    yield proxies
    for proxy in proxies:
        proxy.close()


# --- choosing a proxy -------------------------------------------------------------------


def test_each_host_name_has_one_proxy_the_same_in_every_process() -> None:
    urls = [f"http://u{i}:pw@proxy{i}.test:3128" for i in range(5)]
    one, other = ProxyRules.pool(urls), ProxyRules.pool(list(reversed(urls)))
    hosts = [f"site{i}.test" for i in range(300)]
    picks = {h: one.for_url("http", h) for h in hosts}
    # The order of the list does not matter (two workers' files may differ in it), nor the
    # scheme or the case of the name; every proxy gets some hosts.
    assert picks == {h: other.for_url("https", h.upper()) for h in hosts}
    assert set(picks.values()) == set(one.proxies)
    # A fresh interpreter (another --redis worker) picks the same: no per-process salt.
    code = (
        "import json,sys\nfrom shoal.http import ProxyRules\n"
        f"r = ProxyRules.pool({urls!r})\n"
        f"print(json.dumps([r.for_url('http', h).host for h in {hosts!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert json.loads(done.stdout) == [picks[h].host for h in hosts]  # type: ignore[union-attr]


def test_retiring_a_proxy_moves_only_its_hosts() -> None:
    urls = [f"http://proxy{i}.test:3128" for i in range(4)]
    rules = ProxyRules.pool(urls, retire_after=2)
    hosts = [f"site{i}.test" for i in range(400)]
    before = {h: rules.for_url("http", h) for h in hosts}
    gone = rules.proxies[1]
    assert not rules.failed(gone, "first")
    assert rules.failed(gone, "second")  # the second in a row retires it
    assert rules.failed(gone, "third")  # and it stays retired
    after = {h: rules.for_url("http", h) for h in hosts}
    moved = {h for h in hosts if after[h] != before[h]}
    assert moved == {h for h in hosts if before[h] == gone}
    assert gone not in after.values()
    stats = {s.proxy: s for s in rules.stats()}
    assert stats["http://proxy1.test:3128"].failures == 2  # not counted once retired
    assert stats["http://proxy1.test:3128"].retired == "second"
    assert not rules.exhausted


def test_an_answer_starts_the_count_again_and_none_left_is_an_error() -> None:
    rules = ProxyRules.pool(["http://a.test:1", "http://b.test:2"], retire_after=2)
    a, b = rules.proxies
    rules.failed(a, "x")
    rules.succeeded(a)
    assert not rules.failed(a, "y")  # one in a row again, not two
    assert rules.failed(a, "z") and rules.failed(b, "b1") is False
    assert rules.failed(b, "b2") and rules.exhausted
    with pytest.raises(TransportError) as caught:
        rules.for_url("http", "any.test")
    assert caught.value.kind == "proxy" and "no proxy left" in caught.value.detail
    assert "b2" in caught.value.detail
    assert [(s.requests, s.failures) for s in rules.stats()] == [(1, 3), (0, 2)]


def test_what_was_last_seen_of_a_proxy_decides_whether_to_probe_it() -> None:
    rules = ProxyRules.pool(["http://a.test:1"])
    (a,) = rules.proxies
    assert rules.alive(a) is None  # nothing seen: a silence needs a probe
    rules.probed(a, alive=False)
    assert rules.alive(a) is False  # the probe's silence stands, no second probe
    rules.succeeded(a)
    assert rules.alive(a) is True  # an answer since: a silence now is the target's
    rules.probed(a, alive=True)
    assert rules.alive(a) is True
    assert [(s.requests, s.failures) for s in rules.stats()] == [(1, 0)]


def test_one_address_with_two_identities_is_two_proxies_told_apart() -> None:
    rules = ProxyRules.pool(
        ["http://session-1:pw@gate.test:7000", "http://session-2:pw@gate.test:7000"]
    )
    labels = [s.proxy for s in rules.stats()]
    assert labels == ["http://gate.test:7000 (#1)", "http://gate.test:7000 (#2)"]
    assert ProxyRules.pool(["http://a.test:1", "a.test:1"]).size == 1  # the same, once


# --- the HTTP client ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def test_a_request_whose_proxy_is_dead_retires_it_and_goes_through_the_next_one() -> None:
    alive = PoolProxy()
    dead = f"http://127.0.0.1:{_closed_port()}"
    try:
        urls = [dead, alive.url]
        host = _host_of(urls, dead)
        with Site({"/": "moved"}, host=host) as moved:
            rules = ProxyRules.pool(urls, retire_after=2)
            client = HTTPClient(proxies=rules)
            try:
                # The request tries the dead proxy again at once; the second failure in a
                # row retires it, and the same call goes on through the other proxy, where
                # the host now lives.
                assert client.get(moved.url("/"), {}, max_bytes=1000).body == b"moved"
                assert client.get(moved.url("/"), {}, max_bytes=1000).body == b"moved"
            finally:
                client.close()
            assert moved.count("/") == 2
        assert alive.target_hosts() == {host} and len(alive.targets) == 2
        stats = rules.stats()
        assert (stats[0].requests, stats[0].failures) == (0, 2)
        assert stats[0].retired is not None
        assert f"proxy 127.0.0.1:{dead.rpartition(':')[2]}: Connection" in stats[0].retired
        assert (stats[1].requests, stats[1].failures, stats[1].retired) == (2, 0, None)
    finally:
        alive.close()


def test_a_proxy_failing_for_one_request_only_is_kept() -> None:
    # A proxy that fails this request retire_after times while answering others (their
    # answers start its count again) is not retired: the request fails, to be retried by
    # the crawl; and the tries of one request are bounded.
    flaky = RawServer(_hang_up)  # reads each CONNECT, closes without an answer
    rules = ProxyRules.pool([flaky.url], retire_after=2)
    client = HTTPClient(proxies=rules, connect_timeout=5.0)
    answered = threading.Event()

    def answer_between(proxy: Proxy, detail: str) -> bool:
        retired = ProxyRules.failed(rules, proxy, detail)
        rules.succeeded(proxy)  # another request's answer, between two failures
        answered.set()
        return retired

    rules.failed = answer_between  # type: ignore[method-assign]
    try:
        with pytest.raises(TransportError) as caught:
            client.get("https://slow.test/", {}, max_bytes=1000)
        assert caught.value.kind == "proxy" and "closed the tunnel" in caught.value.detail
        assert answered.is_set() and flaky.connections == 2
        assert not rules.exhausted
    finally:
        client.close()
        flaky.close()


def _hang_up(conn: socket.socket, index: int) -> None:
    read_request(conn)


def _host_of(urls: list[str], proxy_url: str) -> str:
    """A host name 127.0.0.N that the pool ``urls`` sends through ``proxy_url``."""
    return _one_host_per_proxy(urls)[urls.index(proxy_url)]


def test_an_https_request_fails_over_from_a_proxy_that_drops_connect(
    tls_site: str,  # noqa: F811 - the fixture imported above
    trust_local_ca: None,  # noqa: F811
) -> None:
    proxies = [PoolProxy(), PoolProxy()]
    try:
        rules = ProxyRules.pool([p.url for p in proxies], retire_after=1)
        first = rules.for_url("https", "127.0.0.1")
        assert first is not None
        dying = rules.proxies.index(first)
        proxies[dying].die_after = 0  # closes every CONNECT without an answer
        client = HTTPClient(proxies=rules)
        try:
            response = client.get(tls_site + "/x", {}, max_bytes=1000)
        finally:
            client.close()
        assert response.body == b"secret /x"
        authority = tls_site.removeprefix("https://")
        assert proxies[1 - dying].targets == [authority]
        assert proxies[dying].targets == []
        stats = rules.stats()
        assert stats[dying].retired is not None and "closed the tunnel" in stats[dying].retired
        assert (stats[1 - dying].requests, stats[1 - dying].retired) == (1, None)
    finally:
        for proxy in proxies:
            proxy.close()


def test_a_407_counts_against_the_proxy_and_a_refused_connect_does_not() -> None:
    guarded = ForwardProxy(require=CREDENTIALS)
    try:
        with Site({"/": "x"}) as site:
            rules = ProxyRules.pool([guarded.url], retire_after=2)
            client = HTTPClient(proxies=rules)
            try:
                with pytest.raises(TransportError, match="407") as caught:
                    client.get(site.url("/"), {}, max_bytes=1000)
                assert caught.value.kind == "proxy"
                # A proxy that wants other credentials is no use: retired, and none is left.
                assert rules.exhausted and len(guarded.log) == 2
                with pytest.raises(TransportError, match="no proxy left: the proxy retired"):
                    client.get(site.url("/"), {}, max_bytes=1000)
                assert len(guarded.log) == 2 and site.hits == []
            finally:
                client.close()
    finally:
        guarded.close()
    # A CONNECT refused with 403 is the proxy's word on the target: the proxy works.
    for _ in range(3):
        refusing = _ScriptedProxy(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        rules = ProxyRules.pool([refusing.url], retire_after=1)
        client = HTTPClient(proxies=rules)
        try:
            with pytest.raises(TransportError, match="refused CONNECT: 403"):
                client.get("https://blocked.test/", {}, max_bytes=1000)
            assert not rules.exhausted
        finally:
            client.close()
            refusing.close()


# --- crawls ---------------------------------------------------------------------------------


def test_each_host_crawls_through_its_one_proxy(three_proxies: list[PoolProxy]) -> None:
    urls = [_with_secret(p.url) for p in three_proxies]
    hosts = _one_host_per_proxy(urls)
    sites = [Site(_pages(4), host=h) for h in hosts]
    for site in sites:
        site.__enter__()
    try:
        crawler = Crawler([s.url("/") for s in sites], proxy=urls, state=None, progress=False)
        result = crawler.run()
    finally:
        for site in sites:
            site.__exit__(None, None, None)
    assert result.ok == 15 and result.failed == 0
    for proxy, host in zip(three_proxies, hosts, strict=True):
        assert proxy.target_hosts() == {host}  # every request of the host, robots.txt included
        assert len(proxy.targets) == 6
    assert [(s.requests, s.failures, s.retired) for s in result.proxies] == [(6, 0, None)] * 3
    assert result.as_dict()["proxies"] == [
        {"proxy": p.url, "requests": 6, "failures": 0, "retired": False} for p in three_proxies
    ]
    assert "proxies: 3, 0 retired; requests: " in result.summary()
    assert SECRET not in result.summary() + json.dumps(result.as_dict())


def test_a_proxy_that_dies_mid_crawl_is_retired_and_its_hosts_move(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first host's proxy answers robots.txt and the home page, then dies.
    proxies = [PoolProxy(die_after=2), PoolProxy(), PoolProxy()]
    urls = [_with_secret(p.url) for p in proxies]
    hosts = _one_host_per_proxy(urls)
    sites = [Site(_pages(8 if i == 0 else 3), host=h) for i, h in enumerate(hosts)]
    for site in sites:
        site.__enter__()
    caplog.set_level(logging.WARNING)
    try:
        crawler = Crawler(
            [s.url("/") for s in sites],
            proxy=urls,
            state=None,
            progress=False,
            retry_backoff=0.01,
        )
        result = crawler.run()
    finally:
        for site in sites:
            site.__exit__(None, None, None)
        for proxy in proxies:
            proxy.close()
    # One warning, naming the proxy without its credentials.
    warnings = [r.getMessage() for r in caplog.records if "retiring proxy" in r.getMessage()]
    assert len(warnings) == 1 and f"retiring proxy {proxies[0].url} " in warnings[0]
    assert "its hosts move to the 2 left" in warnings[0]
    assert SECRET not in caplog.text
    # Every page fetched, once: a dead proxy forwards nothing, and no page was given up.
    assert result.failed == 0 and result.ok == 9 + 4 + 4
    for site in sites:
        seen = Counter(path for path, _ in site.hits)
        assert set(seen.values()) == {1}, seen
    # The dead proxy's host went on through the proxy the pool picks without it; the
    # other hosts stayed where they were.
    rules = ProxyRules.pool(urls)
    for _ in range(3):
        rules.failed(rules.proxies[0], "down")
    heir = rules.for_url("http", hosts[0])
    assert heir is not None
    heir_proxy = proxies[rules.proxies.index(heir)]
    assert proxies[0].target_hosts() == {hosts[0]} and len(proxies[0].targets) == 2
    assert hosts[0] in heir_proxy.target_hosts()
    assert proxies[1].target_hosts() - {hosts[0]} == {hosts[1]}
    assert proxies[2].target_hosts() - {hosts[0]} == {hosts[2]}
    # The counts: requests answered per proxy add up to what the sites saw.
    stats = result.proxies
    assert stats[0].retired is not None and stats[0].failures == 3 and stats[0].requests == 2
    assert sum(s.requests for s in stats) == sum(len(s.hits) for s in sites)
    assert [s.requests for s in stats] == [len(p.targets) for p in proxies]
    summary = result.summary()
    assert "proxies: 3, 1 retired" in summary and f"retired {proxies[0].url}: " in summary
    assert SECRET not in summary


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "state-file"])
def test_robots_txt_through_a_dying_proxy_is_tried_again(
    three_proxies: list[PoolProxy], tmp_path: Path, durable: bool
) -> None:
    # The host's proxy dies before robots.txt: the host is not shut for the run.
    dying = PoolProxy(die_after=0)
    urls = [dying.url, three_proxies[0].url]
    host = _host_of(urls, dying.url)
    where = {"output": str(tmp_path / "out.jsonl")} if durable else {"state": None}
    try:
        with Site(_pages(2), host=host) as site:
            result = Crawler(
                site.url("/"), proxy=urls, progress=False, retry_backoff=0.01, **where
            ).run()
            assert result.ok == 3 and result.failed == 0
            assert site.count("/robots.txt") == 1
    finally:
        dying.close()


def _crawl_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", "crawl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )


def test_with_every_proxy_dead_the_crawl_stops_and_resumes_later(tmp_path: Path) -> None:
    dead = [_with_secret(f"http://127.0.0.1:{_closed_port()}") for _ in range(2)]
    out = tmp_path / "out.jsonl"
    log = tmp_path / "crawl.log"
    with Site(_pages(3)) as site:
        # The first request (robots.txt) meets both dead proxies in turn, three times each.
        args = [site.url("/"), "-o", str(out), "-o", str(tmp_path / "crawl.warc")]
        args += ["--log-file", str(log)]
        done = _crawl_cli(*args, "--proxy", dead[0], f"--proxy={dead[1]}")
        assert done.returncode == NoProxyLeft.exit_code == 5, done.stderr
        assert site.hits == []  # nothing went out directly
        err = done.stderr
        assert "shoal: error: no proxy left: all 2 proxies retired, each after 3 failures in" in err
        assert err.count("retiring proxy http://127.0.0.1:") == 2
        assert "to resume, run: shoal crawl" in err
        assert "--proxy 'http://***@127.0.0.1:" in err and "'--proxy=http://***@127.0.0.1:" in err
        assert "proxy credentials shown as *** put back" in err
        assert "proxies: 2, 2 retired" in err
        # No page is recorded as failed: the URLs wait in the state for working proxies.
        assert out.read_text() == ""
        state = Path(str(out) + ".state.sqlite")
        with sqlite3.connect(state) as db:
            outcome = db.execute("SELECT outcome FROM runs ORDER BY id DESC").fetchone()[0]
        assert outcome == "failed"
        good = PoolProxy(require=CREDENTIALS)
        try:
            url = good.url.replace("http://", "http://user:p%20w@")
            again = _crawl_cli(*args, "--proxy", url)
        finally:
            good.close()
        assert again.returncode == 0, again.stderr
        assert sorted(p for p, _ in site.hits) == ["/", "/p0", "/p1", "/p2", "/robots.txt"]
        assert len(good.targets) == 5
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["url"].removeprefix(site.origin) for r in records) == [
        "/",
        "/p0",
        "/p1",
        "/p2",
    ]
    for text in (done.stdout, err, again.stdout, again.stderr, log.read_text()):
        assert SECRET not in text and "p%20w" not in text
    warc = gzip.decompress((tmp_path / "crawl.warc").read_bytes())  # gzip per record
    assert warc.count(b"WARC-Type: request") == 5  # robots.txt and the 4 pages
    token = CREDENTIALS.removeprefix("Basic ").encode()  # the Proxy-Authorization sent
    for path in tmp_path.iterdir():
        data = warc if path.name == "crawl.warc" else path.read_bytes()
        assert SECRET.encode() not in data and b"p%20w" not in data, path
        assert token not in data and b"Proxy-Authorization" not in data, path


def test_the_python_api_raises_no_proxy_left() -> None:
    with Site(_pages(1)) as site:
        crawler = Crawler(
            site.url("/"),
            proxy=[f"http://127.0.0.1:{_closed_port()}"],
            proxy_max_failures=1,
            state=None,
            progress=False,
        )
        with pytest.raises(NoProxyLeft, match="no proxy left"):
            crawler.run()
        assert site.hits == []
    assert crawler.result.failed == 0 and crawler.result.pages == 0
    assert crawler.result.proxies[0].retired is not None


# --- --proxy-file ---------------------------------------------------------------------------


def test_a_proxy_file_makes_the_pool(tmp_path: Path, three_proxies: list[PoolProxy]) -> None:
    listing = tmp_path / "proxies.txt"
    listing.write_text(
        "# the pool\n\n"
        + "\n".join(f"  {_with_secret(p.url)}   # proxy {i}" for i, p in enumerate(three_proxies))
        + "\n"
    )
    hosts = _one_host_per_proxy([_with_secret(p.url) for p in three_proxies])
    out = tmp_path / "out.jsonl"
    with Site(_pages(1), host=hosts[2]) as site:
        done = _crawl_cli(site.url("/"), "-o", str(out), "--proxy-file", str(listing))
        assert done.returncode == 0, done.stderr
    assert three_proxies[2].target_hosts() == {hosts[2]}
    assert three_proxies[0].targets == [] and three_proxies[1].targets == []
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            f"http://127.0.0.1:3128\n# ok\nsocks5://user:{SECRET}@127.0.0.1:1080\n",
            "proxies.txt, line 3: proxy 'socks5://***@127.0.0.1:1080': only http:// proxies",
        ),
        (f"http://user:{SECRET}@127.0.0.1:0\n", "line 1: proxy 'http://***@127.0.0.1:0': bad port"),
        ("http://a.test:1 http://b.test:2\n", "line 1: one proxy URL a line"),
        ("# nothing\n\n", "proxies.txt names no proxy"),
        (b"http://p.test:1 # caf\xe9\n", "cannot be read"),
    ],
)
def test_a_bad_proxy_file_is_refused_with_its_line(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    listing = tmp_path / "proxies.txt"
    listing.write_bytes(content if isinstance(content, bytes) else content.encode())
    done = _crawl_cli("http://127.0.0.1:9/", "--proxy-file", str(listing))
    assert done.returncode == 2, done.stderr
    assert "--proxy-file" in done.stderr and message in done.stderr, done.stderr
    assert SECRET not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxy-file", "/nonexistent/proxies.txt"], "cannot be read (No such file"),
        (["--proxy-file", "/dev/zero"], "too long for a list of proxies"),  # read bounded
        (["--proxy", "none", "--proxy-file", "x.txt"], "--proxy none and --proxy-file"),
        (["--proxy", "none", "--proxy", "http://p.test:1"], "'none' stands alone"),
        (["--proxy", f"http://user:{SECRET}@p.test:99999"], "proxy 'http://***@p.test:99999'"),
        (["--proxy-max-failures", "0"], "--proxy-max-failures must be at least 1"),
        (["--proxy-max-failures", "101"], "--proxy-max-failures must be at most 100 (got 101)"),
    ],
)
def test_bad_proxy_options_are_usage_errors(args: list[str], message: str) -> None:
    done = _crawl_cli("http://127.0.0.1:9/", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert SECRET not in done.stderr


def test_the_printed_resume_command_hides_proxy_credentials() -> None:
    from shoal.cli._commands import Hidden, redacted_args

    args = ["crawl", "http://site.test/", "--proxy", f"http://user:{SECRET}@p.test:1"]
    args += [f"--proxy=u:{SECRET}@p.test:2", "--proxy", "http://p.test:3", "-o", "a@b.jsonl"]
    shown, hidden = redacted_args(args)
    assert hidden == Hidden(proxy_credentials=True)  # no other secret: nothing to type again
    assert SECRET not in " ".join(shown)
    assert shown == [
        "crawl",
        "http://site.test/",
        "--proxy",
        "http://***@p.test:1",
        "--proxy=***@p.test:2",
        "--proxy",
        "http://p.test:3",
        "-o",
        "a@b.jsonl",  # not a proxy: left as it is
    ]
    assert redacted_args(["--proxy", "http://p.test:3"]) == (
        ["--proxy", "http://p.test:3"],
        Hidden(),
    )


# --- a dead target is not a dead proxy ----------------------------------------------------


class _Blackholed:
    """A working proxy whose own connection to the target hangs: it holds a CONNECT open
    without a word (as squid does until its connect timeout), until the client goes; a
    request it can answer itself (an origin-form GET) gets a 400, as from squid."""

    def __init__(self) -> None:
        self.connects = 0
        self.probes = 0
        self.server = RawServer(self._script)

    def _script(self, conn: socket.socket, index: int) -> None:
        head = read_request(conn)
        if head.startswith(b"CONNECT "):
            self.connects += 1
            while conn.recv(1):
                pass
        elif head:
            self.probes += 1
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_a_target_that_never_answers_connect_retires_no_proxy() -> None:
    # Every proxy the dead host could move to meets the same silence: were a CONNECT that
    # times out counted against the proxy, one dead site would retire them all (exit 5).
    proxies = [_Blackholed() for _ in range(3)]
    try:
        seeds = ["https://dead.test/", "https://dead.test/a"]
        crawler = Crawler(
            seeds,
            proxy=[p.server.url for p in proxies],
            timeout=0.5,
            retries=1,
            robots=False,
            state=None,
            progress=False,
        )
        crawler.run()  # no NoProxyLeft
        result = crawler.result
        assert (result.pages, result.failed) == (2, 2)
        assert result.errors == {"timeout": 2}
        assert [s.retired for s in result.proxies] == [None, None, None]
        # The host stayed with its one proxy: 2 URLs, each tried twice, one CONNECT a try;
        # the proxy showed it was alive by answering a probe.
        assert sorted(p.connects for p in proxies) == [0, 0, 4]
        assert sorted(p.probes > 0 for p in proxies) == [False, False, True]
    finally:
        for proxy in proxies:
            proxy.server.close()


def _wedged(conn: socket.socket, index: int) -> None:
    """A proxy that takes connections and never answers anything (its process hung)."""
    while conn.recv(1):
        pass


def test_a_proxy_silent_to_connect_and_to_the_probe_is_retired() -> None:
    wedged = RawServer(_wedged)
    rules = ProxyRules.pool([wedged.url], retire_after=2)
    client = HTTPClient(proxies=rules, connect_timeout=0.3)
    try:
        with pytest.raises(TransportError) as caught:
            client.get("https://s.test/", {}, max_bytes=1000)
        assert caught.value.kind == "timeout" and "nor to a probe" in caught.value.detail
        # Two CONNECTs unanswered, and one probe: its silence stands for the second.
        assert rules.exhausted and wedged.connections == 3
    finally:
        client.close()
        wedged.close()


def _not_http(conn: socket.socket, index: int) -> None:
    read_request(conn)
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")  # a proxy URL with the wrong port


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("http://h.test/", "answer is not HTTP"),
        ("https://s.test/", "malformed answer to CONNECT 'SSH-2.0-OpenSSH_9.6'"),
    ],
)
def test_a_proxy_that_does_not_speak_http_is_retired(url: str, detail: str) -> None:
    wrong = RawServer(_not_http)
    rules = ProxyRules.pool([wrong.url], retire_after=2)
    client = HTTPClient(proxies=rules)
    try:
        with pytest.raises(TransportError) as caught:
            client.get(url, {}, max_bytes=1000)
        assert caught.value.kind == "proxy" and detail in caught.value.detail
        assert rules.exhausted and wrong.connections == 2
        assert rules.stats()[0].retired is not None
    finally:
        client.close()
        wrong.close()


def _bad_page(conn: socket.socket, index: int) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")  # the target's, relayed


def test_a_malformed_page_through_a_proxy_is_not_held_against_it() -> None:
    relay = RawServer(_bad_page)
    rules = ProxyRules.pool([relay.url], retire_after=1)
    client = HTTPClient(proxies=rules)
    try:
        with pytest.raises(TransportError) as caught:
            client.get("http://h.test/", {}, max_bytes=1000)
        assert caught.value.kind == "protocol"
        assert not rules.exhausted and relay.connections == 1
    finally:
        client.close()
        relay.close()


def test_a_large_failure_count_does_not_loop_on_a_failing_proxy() -> None:
    # A request tries a failing proxy at most 3 times at once, whatever retire_after: the
    # rest of the count is left to later requests (the crawl's retries back off).
    dropping = RawServer(_hang_up)
    rules = ProxyRules.pool([dropping.url], retire_after=100)
    client = HTTPClient(proxies=rules)
    try:
        with pytest.raises(TransportError) as caught:
            client.get("http://h.test/", {}, max_bytes=1000)
        assert caught.value.kind == "connection"
        assert dropping.connections == 3 and not rules.exhausted
    finally:
        client.close()
        dropping.close()
    with pytest.raises(ValueError, match="from 1 to 100"):
        ProxyRules.pool([dropping.url], retire_after=101)
