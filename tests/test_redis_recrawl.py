"""``--recrawl`` of a crawl shared through Redis (#19): workers share a recrawl run (one run
number, each URL revisited once), send conditional requests from what the shared state kept
of each URL's last fetch, and classify changes as a single-process recrawl does; a worker
killed mid-recrawl and run again finishes the run exactly once. Real subprocesses, a real
redis-server, a real site that changes between runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import redis

from redis_server import RedisServer
from shoal import Crawler
from shoal.state import Candidate, RedisCrawlState, fingerprint
from sites import Reply, Request, html
from test_recrawl import LM1, Doc, VersionedSite


def shoal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def worker_cmd(server: RedisServer, site: VersionedSite, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "shoal", "crawl", site.url("/"), "-o", str(out),
        "--redis", server.url, "--crawl-id", "c", "--no-progress", *extra,
    ]  # fmt: skip


def records(*outs: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in outs:
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def run_of(run: int, *outs: Path) -> dict[str, dict[str, Any]]:
    """The records of one run across the workers' outputs, by path: exactly one per URL."""
    mine = [r for r in records(*outs) if r.get("run", 1) == run]
    paths = ["/" + str(r["url"]).split("/", 3)[3] for r in mine]
    assert len(paths) == len(set(paths)), sorted(paths)
    return dict(zip(paths, mine, strict=True))


def test_two_workers_share_a_recrawl_of_a_changed_site(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    docs = {
        "/": Doc(html("home", "/a", "/b", "/c", "/d", "/e", "/f", "/x"), etag='"h1"'),
        "/a": Doc(html("a"), etag='"a1"', last_modified=LM1),  # both validators
        "/b": Doc(html("b"), etag='W/"b1"'),  # a weak ETag
        "/c": Doc(html("c"), last_modified=LM1),  # Last-Modified only
        "/d": Doc(html("d")),  # no validators: the digest decides
        "/e": Doc(html("e"), etag='"e1"'),
        "/f": Doc(html("f")),
        "/x": Doc(html("x")),
    }
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with VersionedSite(docs) as site:
        first = subprocess.run(worker_cmd(redis_server, site, a, "--per-host", "2"),
                               capture_output=True, text=True,
                               timeout=120, check=False)  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert len(records(a)) == 8
        # The site changes: a page edited, two deleted (404, 410), one added, robots.txt
        # now disallows one.
        docs["/"] = Doc(html("home", "/a", "/b", "/c", "/d", "/e", "/f", "/x", "/n"), etag='"h2"')
        docs["/a"] = Doc(html("a edited"), etag='"a2"', last_modified=LM1)
        del docs["/b"]
        docs["/c"] = Doc(html("c"), status=410)
        docs["/n"] = Doc(html("n"))
        site.robots = "User-agent: *\nDisallow: /x\n"
        # Worker a begins run 2 and stops at its --max-pages (its own budget: not part of
        # the crawl's options); worker b joins the run and finishes it.
        errs = []
        for out, extra in ((a, ("--max-pages", "4")), (b, ())):
            proc = subprocess.run(
                worker_cmd(redis_server, site, out, "--per-host", "2", "--recrawl", *extra),
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            errs.append(proc.stderr)
        assert "recrawl: run 2 of crawl c revisits the 8 URLs it knows" in errs[0], errs
        assert "has work left in run 2" in errs[1], errs
        conditional = dict(site.conditional)
    second = run_of(2, a, b)
    assert {p: r["change"] for p, r in second.items()} == {
        "/": "changed",
        "/a": "changed",
        "/b": "gone",
        "/c": "gone",
        "/d": "unchanged",
        "/e": "unchanged",
        "/f": "unchanged",
        "/x": "disallowed",
        "/n": "new",
    }
    # Each worker wrote part of the run, both naming it run 2.
    assert len([r for r in records(a) if r.get("run") == 2]) == 4
    assert len([r for r in records(b) if r.get("run") == 2]) == 5
    # The conditional requests came from what the shared state kept of run 1.
    assert conditional["/a"] == {"if-none-match": '"a1"', "if-modified-since": LM1}
    assert conditional["/b"] == {"if-none-match": 'W/"b1"'}
    assert conditional["/c"] == {"if-modified-since": LM1}
    assert conditional["/d"] == {}
    assert conditional["/e"] == {"if-none-match": '"e1"'}
    assert conditional["/n"] == {}
    # shoal status --redis shows the run's counts.
    status = shoal("status", "--redis", redis_server.url, "--crawl-id", "c", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["recrawls"] == [
        {"run": 2, "new": 1, "changed": 2, "unchanged": 3, "gone": 2, "disallowed": 1}
    ]
    text = shoal("status", "--redis", redis_server.url, "--crawl-id", "c")
    assert "recrawl run 2: new 1, changed 2, unchanged 3, gone 2, disallowed 1" in text.stdout
    assert report["run"] == 2 and "crawl c: finished (run 2)" in text.stdout


def test_revisit_after_skips_what_is_not_due(redis_server: RedisServer, tmp_path: Path) -> None:
    docs = {"/": Doc(html("home", "/a"), etag='"h"'), "/a": Doc(html("a"), etag='"a"')}
    out = tmp_path / "a.jsonl"
    with VersionedSite(docs) as site:
        cmd = worker_cmd(redis_server, site, out)
        assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
        size = out.stat().st_size
        later = subprocess.run([*cmd, "--recrawl", "--revisit-after", "1h"], capture_output=True,
                               text=True, timeout=120, check=False)  # fmt: skip
        assert later.returncode == 0, later.stderr
        assert "nothing to revisit in crawl c" in later.stderr
        assert "the next falls due at" in later.stderr
        assert out.stat().st_size == size  # no records
        # Nothing due is no run: the next recrawl is run 2.
        now = subprocess.run([*cmd, "--recrawl", "--revisit-after", "1s"], capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
        # (run 1's fetches are at least a moment old; 1s may not have passed: wait for it)
        if "nothing to revisit" in now.stderr:
            threading.Event().wait(1.1)
            now = subprocess.run([*cmd, "--recrawl", "--revisit-after", "1s"],
                                 capture_output=True, text=True, timeout=120,
                                 check=False)  # fmt: skip
        assert now.returncode == 0, now.stderr
    second = run_of(2, out)
    assert {p: r["change"] for p, r in second.items()} == {"/": "unchanged", "/a": "unchanged"}


def test_kill_9_mid_recrawl_then_rerun_is_exactly_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    n = 40
    docs = {"/": Doc(html("home", *(f"/p{i}" for i in range(n))), etag='"home"')}
    for i in range(n):
        docs[f"/p{i}"] = Doc(html(f"p{i}"), etag=f'"p{i}"')
    out = tmp_path / "a.jsonl"
    gate = threading.Event()
    with VersionedSite(docs) as site:
        cmd = worker_cmd(redis_server, site, out, "--concurrency", "2")
        assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
        for i in range(0, n, 2):  # half the pages change
            docs[f"/p{i}"] = Doc(html(f"p{i} edited"), etag=f'"p{i}b"')
        served = threading.Semaphore(0)
        plain = site._serve
        asked = [0]
        lock = threading.Lock()

        def stalling(req: Request) -> Reply:
            if req.path.startswith("/p"):
                with lock:
                    asked[0] += 1
                    late = asked[0] > 10
                if late:  # past the first ten pages (in the fill's order) the recrawl stalls
                    served.release()
                    gate.wait(60)  # until the worker is killed
            return plain(req)

        site.site.fallback = stalling
        proc = subprocess.Popen([*cmd, "--recrawl"], stderr=subprocess.DEVNULL)
        try:
            assert served.acquire(timeout=60)  # the recrawl is mid-way
            client = redis.Redis.from_url(redis_server.url)
            try:  # wait (bounded) until some revisits are committed
                for _ in range(600):
                    counts = client.hgetall("shoal:{c}:changes")
                    if sum(int(v) for v in counts.values()) >= 5:
                        break
                    threading.Event().wait(0.05)
            finally:
                client.close()
        finally:
            proc.kill()
            proc.wait(30)
            gate.set()
        site.site.fallback = plain
        partial = [r for r in records(out) if r.get("run") == 2]
        assert 0 < len(partial) < n + 1
        with out.open("a") as f:  # the kill left a record half written
            f.write('{"url": "torn')
        again = subprocess.run([*cmd, "--recrawl"], capture_output=True, text=True,
                               timeout=120, check=False)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert "has work left in run 2" in again.stderr
    second = run_of(2, out)  # exactly one record per URL for run 2
    assert len(second) == n + 1
    for i in range(n):
        assert second[f"/p{i}"]["change"] == ("changed" if i % 2 == 0 else "unchanged")
    assert not [r for r in records(out) if r.get("run", 1) > 2]
    # The run's counts in Redis agree: each URL counted once, the kill notwithstanding.
    client = redis.Redis.from_url(redis_server.url)
    try:
        counted = client.hgetall("shoal:{c}:changes")
    finally:
        client.close()
    assert counted == {b"2 changed": str(n // 2).encode(), b"2 unchanged": str(n // 2 + 1).encode()}


def identity() -> dict[str, Any]:
    return {"start": "http://h.test/"}


def test_a_fill_left_by_a_killed_worker_is_finished_by_the_next_each_url_once(
    redis_server: RedisServer,
) -> None:
    """The fill of a recrawl run goes a bounded step at a time (a crawl of any size); a
    worker that dies between steps leaves it to the next that joins, which finishes it:
    every URL queued exactly once, and both agree on the run."""
    from shoal.state import _redis_lua as lua

    n = 1200
    urls = [f"http://h{i % 3}.test/p{i}" for i in range(n)]
    state = RedisCrawlState.open(redis_server.url, "f", identity(), robots=False)
    try:
        state.register("w1")
        state.submit([Candidate(u) for u in urls])
        offset = 0
        for _ in range(100):
            jobs, _ = state.lease(500)
            if not jobs:
                break
            for job in jobs:
                state.release(job.id, "done")
            visits = [(j.url, 200, None) for j in jobs]
            state.commit([(j.id, "done") for j in jobs], expected_offset=offset,
                         new_offset=offset + len(jobs), visits=visits)  # fmt: skip
            offset += len(jobs)
        assert state.finished()
        # A worker begins the run and dies after two steps of the fill.
        for _ in range(2):
            assert state._run(lua.recrawl(start=True, cut_us=None, count=100))[0] == b"fill"
    finally:
        state.close()
    other = RedisCrawlState.open(redis_server.url, "f", identity(), robots=False)
    try:
        # A worker without --recrawl finishes the fill too: it joins run 2.
        run = other.recrawl(start=False)
        assert (run.what, run.run, run.queued) == ("started", 2, n)
        assert other.recrawl(start=True).what == "unfinished"  # run 2 has work left
        other.register("w2")
        leased: list[str] = []
        for _ in range(100):
            jobs, _ = other.lease(500)
            if not jobs:
                break
            leased += [j.url for j in jobs]
            for job in jobs:
                other.release(job.id, "done")
            other.commit([(j.id, "done") for j in jobs], expected_offset=len(leased) - len(jobs),
                         new_offset=len(leased))  # fmt: skip
        assert sorted(leased) == sorted(urls)  # each once
        assert other.recrawl(start=False) == ("run", 2, 0, None)
    finally:
        other.close()


def test_visits_cost_is_bounded_and_measured(redis_server: RedisServer) -> None:
    """What a URL's visit adds to Redis (docs/design.md states it): a page with both
    validators, its digests and times, and its queue entry."""
    import hashlib

    from shoal.state._redis import Visit

    n = 2000
    state = RedisCrawlState.open(redis_server.url, "m", identity(), robots=False, per_host=500)
    client = redis.Redis.from_url(redis_server.url)
    try:
        state.register("w")
        urls = [f"http://example.com/section/page-{i}.html" for i in range(n)]
        state.submit([Candidate(u, 1, "http://example.com/") for u in urls])
        before = int(client.info("memory")["used_memory"])
        offset = 0
        for _ in range(100):
            jobs, _ = state.lease(500)
            if not jobs:
                break
            notes = []
            for job in jobs:
                state.release(job.id, "done")
                body = job.url.encode()
                notes.append((job.url, 200, Visit(
                    200, '"5f2b-1a2b3c4d"', "Sat, 05 Dec 2026 10:00:00 GMT",
                    hashlib.sha256(body).digest(), hashlib.sha1(body).digest(), None, 1.8e9,
                )))  # fmt: skip
            state.commit([(j.id, "done") for j in jobs], expected_offset=offset,
                         new_offset=offset + len(jobs), visits=notes)  # fmt: skip
            offset += len(jobs)
        per_url = int(client.memory_usage(f"{state.prefix}v", samples=0) or 0) / n
        grown = (int(client.info("memory")["used_memory"]) - before) / n
        print(f"visit: {per_url:.0f} bytes per URL (MEMORY USAGE), used_memory +{grown:.0f}")
        assert state.finished() and client.hlen(f"{state.prefix}v") == n
        # ~290 on Redis 7.0 (docs/design.md): a 213-byte visit, its 20-byte key, the table.
        assert per_url < 350
        v = state.visit(fingerprint(urls[7]))
        assert v is not None and v.etag == '"5f2b-1a2b3c4d"' and v.status == 200
        assert v.sha256 == hashlib.sha256(urls[7].encode()).digest()
    finally:
        client.close()
        state.close()


def test_recrawl_with_redis_is_no_longer_refused(tmp_path: Path) -> None:
    # Only checked, not connected: Crawler() refuses what it cannot do before run().
    crawler = Crawler(
        "http://127.0.0.1:9/", output=str(tmp_path / "a.jsonl"), redis="unix:///nowhere",
        crawl_id="c", recrawl=True,
    )  # fmt: skip
    assert crawler.options.recrawl
    # CSV too: its header has had the run and change columns since the first row.
    crawler = Crawler("http://127.0.0.1:9/", output=str(tmp_path / "a.csv"),
                      redis="unix:///nowhere", crawl_id="c", recrawl=True)  # fmt: skip
    assert crawler.options.recrawl


def test_change_classes_are_those_of_a_single_process_recrawl(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The same site, changed the same way, recrawled by one process over its state file
    and by a worker over Redis: the same record per URL and change, redirects included
    (a redirect that now leads elsewhere, and its old target revisited on its own)."""
    docs = {
        "/": Doc(html("home", "/a", "/r", "/g", "/d"), etag='"h1"'),
        "/a": Doc(html("a"), etag='"a1"'),
        "/t": Doc(html("t"), etag='"t1"'),
        "/t2": Doc(html("t2")),
        "/g": Doc(html("g"), last_modified=LM1),
        "/d": Doc(html("d")),
    }
    single, shared = tmp_path / "one.jsonl", tmp_path / "shared.jsonl"
    with VersionedSite(docs) as site:
        site.moved["/r"] = site.url("/t")

        def both(**kw: Any) -> None:
            Crawler(site.url("/"), output=str(single), concurrency=2, **kw).run()
            Crawler(site.url("/"), output=str(shared), concurrency=2, redis=redis_server.url,
                    crawl_id="same", **kw).run()  # fmt: skip

        both()
        docs["/a"] = Doc(html("a edited"), etag='"a2"')
        del docs["/g"]
        site.moved["/r"] = site.url("/t2")
        both(recrawl=True)
        docs["/"] = Doc(html("home", "/a", "/r", "/d", "/n"), etag='"h2"')
        docs["/n"] = Doc(html("n"))
        docs["/d"] = Doc(html("d"), status=410)
        both(recrawl=True)

    def changes(out: Path, run: int) -> dict[str, tuple[object, object]]:
        return {p: (r["change"], r["status"]) for p, r in run_of(run, out).items()}

    for run in (2, 3):
        assert changes(shared, run) == changes(single, run), run
    assert changes(shared, 2)["/r"][0] == "changed"  # it leads elsewhere now
    assert changes(shared, 2)["/t"][0] == "new"  # its first visit on its own
    assert changes(shared, 3)["/n"][0] == "new"
    assert changes(shared, 3)["/d"][0] == "gone"


def test_odd_validators_are_sent_back_exactly_and_long_ones_not_kept(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """What a server sends as validators is stored by length, not parsed: spaces, quotes,
    Latin-1 and a digit-run that looks like the visit's own numbers come back exactly;
    one past the limit is not kept (that URL is asked unconditionally, its digest decides)."""
    odd = '"12 34 5 6" W/x é\t"'
    docs = {
        "/": Doc(html("home", "/o", "/l"), etag=odd, last_modified="0 0 0 0 0 0 0 0 0 x"),
        "/o": Doc(html("o"), etag='W/"é"'),
        "/l": Doc(html("l"), etag='"' + "x" * 300 + '"'),
    }
    out = tmp_path / "a.jsonl"
    with VersionedSite(docs) as site:
        Crawler(site.url("/"), output=str(out), redis=redis_server.url, crawl_id="odd").run()
        Crawler(site.url("/"), output=str(out), redis=redis_server.url, crawl_id="odd",
                recrawl=True).run()  # fmt: skip
        conditional = dict(site.conditional)
    assert conditional["/"] == {"if-none-match": odd, "if-modified-since": "0 0 0 0 0 0 0 0 0 x"}
    assert conditional["/o"] == {"if-none-match": 'W/"é"'}
    assert conditional["/l"] == {}
    assert {p: r["change"] for p, r in run_of(2, out).items()} == dict.fromkeys(
        ("/", "/o", "/l"), "unchanged"
    )


def test_warc_revisits_name_their_capture_exactly(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A worker's WARC part: a 304 and an unchanged body become revisit records whose
    WARC-Refers-To-Date is the capture's WARC-Date to the microsecond (the shared state
    keeps times in µs), with the capture's payload digest; warcio check passes."""
    from test_recrawl import warc_records

    docs = {
        "/": Doc(html("home", "/b", "/d"), etag='"h"'),
        "/b": Doc(html("b"), etag='W/"b1"'),
        "/d": Doc(html("d")),
    }
    out = tmp_path / "part.warc.gz"
    with VersionedSite(docs) as site:
        kw: dict[str, Any] = {"output": str(out), "redis": redis_server.url, "crawl_id": "w"}
        Crawler(site.url("/"), **kw).run()
        first = {r["WARC-Target-URI"]: r for r in warc_records(out)}
        Crawler(site.url("/"), recrawl=True, **kw).run()
        later = {r["WARC-Target-URI"]: r for r in warc_records(out)[len(first) :]}
        b, d = later[site.url("/b")], later[site.url("/d")]
    assert b["WARC-Profile"].endswith("/revisit/server-not-modified")
    assert d["WARC-Profile"].endswith("/revisit/identical-payload-digest")
    for rec, path in ((b, "/b"), (d, "/d")):
        assert rec["WARC-Type"] == "revisit"
        assert rec["WARC-Refers-To-Target-URI"] == site.url(path)
        assert rec["WARC-Refers-To-Date"] == first[site.url(path)]["WARC-Date"]
        assert rec["WARC-Payload-Digest"] == first[site.url(path)]["WARC-Payload-Digest"]
    check = subprocess.run(
        [sys.executable, "-m", "warcio.cli", "check", "-v", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_recrawl_of_a_new_shared_crawl_crawls_it(redis_server: RedisServer, tmp_path: Path) -> None:
    # As with a state file: --recrawl on a crawl that does not exist yet is its run 1.
    docs = {"/": Doc(html("home", "/a")), "/a": Doc(html("a"))}
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with VersionedSite(docs) as site:
        Crawler(site.url("/"), output=str(a), redis=redis_server.url, crawl_id="new",
                recrawl=True, revisit_after=60).run()  # fmt: skip
        Crawler(site.url("/"), output=str(b), redis=redis_server.url, crawl_id="new2",
                recrawl=True).run()  # fmt: skip
    for out in (a, b):
        assert len(records(out)) == 2 and not [r for r in records(out) if "run" in r]


def drain(
    state: RedisCrawlState, offset: int, *, park: str | tuple[str, ...] | None = None
) -> tuple[list[str], int]:
    """Leases until nothing is leasable: robots jobs get an allow-all policy, pages of host
    ``park`` are given back with a Retry-After past MAX_HOLD (the host parked), the rest
    are done and committed with a visit (fetched now). The URLs leased, and the output
    offset."""
    import time

    from shoal.state import HostPolicy, JobKind
    from shoal.state._redis import Visit

    leased: list[str] = []
    for _ in range(100):
        jobs, _ = state.lease(10)
        if not jobs:
            break
        done = []
        for job in jobs:
            if job.kind is JobKind.ROBOTS:
                state.release(job.id, "done", policy=HostPolicy(None, None))
                continue
            leased.append(job.url)
            if park is not None and job.url.startswith(park):
                state.release_with_links(job.id, "retry", (), retry_in=3600, park=True)
            else:
                state.release(job.id, "done")
                done.append(job)
        if done:
            state.commit([(j.id, "done") for j in done], expected_offset=offset,
                         new_offset=offset + len(done),
                         visits=[(j.url, 200, Visit(200, None, None, None, None, None,
                                                    time.time())) for j in done])  # fmt: skip
            offset += len(done)
    return leased, offset


def test_a_parked_hosts_queued_urls_are_revisited_once_in_the_next_run(
    redis_server: RedisServer,
) -> None:
    """A host parked in run 2 (a Retry-After past MAX_HOLD) keeps its URLs queued, which
    does not keep --recrawl from beginning run 3: run 3 takes them over (asking the host
    again) and queues none of them a second time. Each URL leased exactly once."""
    urls = [f"http://a.test/{i}" for i in range(3)] + [f"http://b.test/{i}" for i in range(3)]
    state = RedisCrawlState.open(redis_server.url, "pk", identity(), robots=False, per_host=1)
    try:
        state.register("w")
        state.submit([Candidate(u) for u in urls])
        leased, offset = drain(state, 0)
        assert sorted(leased) == urls
        assert state.recrawl(start=True)[:3] == ("started", 2, 6)
        leased, offset = drain(state, offset, park="http://b.test")
        assert sorted(leased) == urls[:3] + urls[3:4]  # b.test parked at its first page
        run = state.recrawl(start=True)
        assert run[:3] == ("started", 3, 6)
        leased, offset = drain(state, offset)
        assert sorted(leased) == urls  # b.test asked again, and each URL once
        assert state.finished()
        assert state.recrawl(start=True)[:3] == ("started", 4, 6)
        assert sorted(drain(state, offset)[0]) == urls
    finally:
        state.close()


def test_parked_hosts_are_taken_over_in_steps(redis_server: RedisServer) -> None:
    """A parked host's queue is read a bounded step at a time (each step may be another
    worker's): two parked hosts with queues longer than a step, each URL once in run 3."""
    from shoal.state import _redis_lua as lua

    urls = [f"http://a.test/{i}" for i in range(3)]
    urls += [f"http://{h}.test/{i:02d}" for h in "bc" for i in range(12)]
    state = RedisCrawlState.open(redis_server.url, "ps", identity(), robots=False, per_host=1)
    try:
        state.register("w")
        state.submit([Candidate(u) for u in urls])
        _, offset = drain(state, 0)
        assert state.recrawl(start=True)[:2] == ("started", 2)
        leased, offset = drain(state, offset, park=("http://b.test", "http://c.test"))
        assert len(leased) == 3 + 2  # b and c parked at their first page
        steps = 0
        while (reply := state._run(lua.recrawl(start=True, cut_us=None, count=5)))[0] == b"fill":
            steps += 1
            assert steps < 50
        assert steps >= 1 + 2 * 3 and reply[:3] == [b"started", 3, b"27"]
        leased, _ = drain(state, offset)
        assert sorted(leased) == sorted(urls)  # each once
    finally:
        state.close()


def test_a_revisit_after_with_nothing_due_changes_nothing(redis_server: RedisServer) -> None:
    """--revisit-after with no URL due begins no run, and leaves the crawl as it was: each
    host's robots.txt policy kept (not asked again for nothing), a parked host still
    parked. With URLs due, the run asks robots.txt again and unparks."""
    import time

    urls = [f"http://a.test/{i}" for i in range(3)] + [f"http://b.test/{i}" for i in range(3)]
    state = RedisCrawlState.open(redis_server.url, "nd", identity(), robots=True, per_host=1)
    client = redis.Redis.from_url(redis_server.url)
    try:
        state.register("w")
        state.submit([Candidate(u) for u in urls])
        _, offset = drain(state, 0, park="http://b.test")
        assert client.smembers(f"{state.prefix}parked") == {b"http://b.test"}
        run = state.recrawl(start=True, fetched_before=time.time() - 3600)
        assert run.what == "nothing" and run.run == 1 and run.oldest is not None
        assert client.hget(f"{state.prefix}h:http://a.test", "pol") is not None
        assert client.smembers(f"{state.prefix}parked") == {b"http://b.test"}
        assert client.hget(f"{state.prefix}meta", "rscan") is None
        run = state.recrawl(start=True, fetched_before=time.time() + 3600)
        assert run[:3] == ("started", 2, 6)
        assert client.hget(f"{state.prefix}h:http://a.test", "pol") is None
        assert client.smembers(f"{state.prefix}parked") == set()
        leased, _ = drain(state, offset)
        assert sorted(leased) == urls
    finally:
        client.close()
        state.close()


def test_a_worker_given_the_next_runs_jobs_takes_up_that_run(redis_server: RedisServer) -> None:
    """A worker joined run 1 and waits for work; another begins run 2 meanwhile. The jobs
    the first is then given are run 2's: each lease says so (its records name run 2), and
    Redis counts their changes under run 2, also while run 2's fill is still going on."""
    from shoal.crawler.frontier.redis import RedisFrontier
    from shoal.state import _redis_lua as lua

    urls = [f"http://h{i % 2}.test/p{i}" for i in range(300)]
    client = redis.Redis.from_url(redis_server.url)
    was = client.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"]
    client.config_set("hash-max-listpack-entries", 16)  # a hashtable: HSCAN goes in steps
    a = RedisCrawlState.open(redis_server.url, "nr", identity(), robots=False)
    b = RedisCrawlState.open(redis_server.url, "nr", identity(), robots=False)
    frontier = RedisFrontier(a)  # what the crawler's jobs read their run from
    try:
        a.register("a")
        b.register("b")
        a.submit([Candidate(u) for u in urls])
        leased, offset = drain(a, 0)
        assert sorted(leased) == sorted(urls) and a.run == 1
        assert a.recrawl(start=False).run == 1  # a joined run 1 and is done with it
        # b begins run 2 and queues its first URLs; the fill is not over.
        steps = [b._run(lua.recrawl(start=True, cut_us=None, count=5))[0] for _ in range(3)]
        assert steps == [b"fill"] * 3 and a.generation() == 1
        jobs, _ = a.lease(5)
        assert jobs and a.run == 2  # a's jobs now are run 2's
        assert frontier.leased_run == 2
        for job in jobs:
            a.release(job.id, "done")
        a.commit([(j.id, "done") for j in jobs], expected_offset=offset,
                 new_offset=offset + len(jobs), changes={"unchanged": len(jobs)})  # fmt: skip
        offset += len(jobs)
        assert b.recrawl(start=False)[:3] == ("started", 2, 300)
        rest, _ = drain(a, offset)
        assert sorted(rest + [j.url for j in jobs]) == sorted(urls)
        assert [r["run"] for r in a.recrawl_runs()] == [2]
        assert a.recrawl_runs()[0]["unchanged"] == len(jobs)
    finally:
        client.config_set("hash-max-listpack-entries", was)
        client.close()
        frontier.close()  # a's too
        b.close()
