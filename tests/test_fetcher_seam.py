"""The fetcher seam (#21): a fake transport and a fake fetcher plug into ``Crawler``
without touching its code, and neither can take a request past the crawl's gate.

The sites here live in memory (``MockTransport`` handlers and a dict-backed fetcher): no
server, no socket. Hosts are public IP literals (documentation and well-known public
addresses, never contacted), so ``deny_private`` can be told apart from them without DNS.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from shoal import UsageError
from shoal.crawler import (
    Crawler,
    Fetched,
    FetchRequest,
    FetchSetup,
    HTTPFetcher,
    JobKind,
    PageFetcher,
    _crawler,
)
from shoal.crawler._gate import PublicOnly
from shoal.http import (
    ErrorKind,
    MockTransport,
    Request,
    Resolver,
    Response,
    TransportError,
)

SITE = "http://93.184.216.34"  # in scope
OFF = "http://8.8.8.8"  # out of scope
QUIET: dict[str, Any] = {"progress": False, "timeout": 5, "retries": 0}

PAGES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private\n"),
    "/": (
        200,
        {"Content-Type": "text/html"},
        b"<title>home</title><a href=/a>a</a> <a href=/b>b</a> <a href=/private/x>p</a>",
    ),
    "/a": (200, {"Content-Type": "text/html"}, b"<title>a</title><a href=/c>c</a>"),
    "/b": (200, {"Content-Type": "text/html"}, b"<title>b</title>"),
    "/c": (200, {"Content-Type": "text/html"}, b"<title>c</title><a href=/>home</a>"),
    "/private/x": (200, {"Content-Type": "text/html"}, b"<title>secret</title>"),
}


def site_handler(request: Request) -> Response:
    path = request.url.removeprefix(SITE) or "/"
    if request.url.startswith(SITE) and path in PAGES:
        status, headers, body = PAGES[path]
        return Response(status, headers, body)
    return Response(404, {"Content-Type": "text/plain"}, b"not found")


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def by_url(out: Path) -> dict[str, dict[str, Any]]:
    return {r["url"]: r for r in records(out)}


# -- a fake transport ----------------------------------------------------------------------


def test_a_mock_transport_crawls_an_in_memory_site(tmp_path: Path) -> None:
    transport = MockTransport(site_handler)
    out = tmp_path / "o.jsonl"
    result = Crawler(SITE + "/", transport=transport, output=str(out), **QUIET).run()
    got = by_url(out)
    assert set(got) == {SITE + "/", SITE + "/a", SITE + "/b", SITE + "/c"}
    assert got[SITE + "/a"]["title"] == "a" and got[SITE + "/a"]["status"] == 200
    assert got[SITE + "/c"]["referrer"] == SITE + "/a" and got[SITE + "/c"]["depth"] == 2
    asked = [r.url for r in transport.requests]
    assert asked[0] == SITE + "/robots.txt", "robots.txt is asked first, through the transport"
    assert SITE + "/private/x" not in asked, "robots.txt was not obeyed"
    assert sorted(asked) == sorted(set(asked)), "a URL was fetched twice"
    assert all(r.headers["User-Agent"].startswith("shoal") for r in transport.requests)
    assert result.pages == 4 and result.ok == 4 and result.robots_denied == 1
    assert not transport.closed, "the caller's transport is the caller's to close"


def test_on_page_can_be_tested_with_a_mock_transport(tmp_path: Path) -> None:
    def on_page(page: Any) -> Any:
        yield {"url": page.url, "h": page.css("title::text").get()}

    out = tmp_path / "o.jsonl"
    Crawler(
        SITE + "/", transport=MockTransport(site_handler), on_page=on_page, output=str(out), **QUIET
    ).run()
    assert sorted(r["h"] for r in records(out)) == ["a", "b", "c", "home"]


def test_a_transport_that_redirects_off_scope_is_refused_by_the_crawler(tmp_path: Path) -> None:
    def handler(request: Request) -> Response:
        if request.url == SITE + "/":
            return Response(302, {"Location": OFF + "/stolen"}, b"")
        if request.url == SITE + "/robots.txt":
            return Response(404, {}, b"")
        return Response(200, {"Content-Type": "text/html"}, b"<a href=/more>x</a>")

    transport = MockTransport(handler)
    out = tmp_path / "o.jsonl"
    result = Crawler(SITE + "/", transport=transport, output=str(out), **QUIET).run()
    assert [r.url for r in transport.requests] == [SITE + "/robots.txt", SITE + "/"]
    (rec,) = records(out)
    assert rec["status"] == 302 and rec["final_url"] == OFF + "/stolen"
    assert result.out_of_scope_redirects == 1


def test_deny_private_holds_for_a_transport_object(tmp_path: Path) -> None:
    # The native client refuses private addresses as it connects; a transport object does
    # not, so the crawler's own check must: the start URL and a redirect hop to loopback.
    def handler(request: Request) -> Response:
        if request.url == SITE + "/":
            return Response(302, {"Location": SITE + "/next"}, b"")
        if request.url == SITE + "/next":
            return Response(302, {"Location": "http://127.0.0.1/admin"}, b"")
        return Response(404, {}, b"")

    transport = MockTransport(handler)
    out = tmp_path / "o.jsonl"
    Crawler(
        [SITE + "/", "http://127.0.0.1/"],
        transport=transport,
        robots=False,
        deny_private=True,
        allow_domains=["93.184.216.34", "127.0.0.1"],
        output=str(out),
        **QUIET,
    ).run()
    assert not [r for r in transport.requests if "127.0.0.1" in r.url]
    got = by_url(out)
    assert got["http://127.0.0.1/"]["error"] == "blocked"
    assert "non-public address 127.0.0.1" in got["http://127.0.0.1/"]["error_detail"]
    # The loopback hop is another host: queued there, and refused when its turn comes.
    assert got["http://127.0.0.1/admin"]["error"] == "blocked"


def test_a_transport_object_and_a_proxy_do_not_mix() -> None:
    with pytest.raises(UsageError, match="transport object"):
        Crawler(SITE + "/", transport=MockTransport(site_handler), proxy="http://p:1")


def test_the_mock_transport_keeps_the_body_limit() -> None:
    transport = MockTransport(lambda r: Response(200, {"X-A": "1"}, b"x" * 10))
    with pytest.raises(TransportError) as caught:
        transport.get(SITE + "/", {}, max_bytes=5)
    assert caught.value.kind is ErrorKind.TOO_LARGE
    cut = transport.get(SITE + "/", {}, max_bytes=5, truncate=True)
    assert (cut.body, cut.truncated, cut.headers) == (b"xxxxx", True, {"x-a": "1"})


# -- a fake fetcher ------------------------------------------------------------------------


class DictFetcher:
    """A fetcher over a dict of pages, honest about redirects: it asks the gate."""

    def __init__(self, pages: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.pages = pages
        self.requests: list[FetchRequest] = []
        self.closed = 0
        self._lock = threading.Lock()

    def fetch(self, request: FetchRequest) -> Fetched:
        with self._lock:
            self.requests.append(request)
        url, redirects = request.url, []
        for _ in range(5):
            status, headers, body = self.pages.get(url, (404, {}, b""))
            location = headers.get("location")
            if status in (301, 302) and location:
                stop = request.gate(location)
                if stop is not None:
                    return Fetched(request.url, location, status, headers, detail=stop)
                redirects.append(url)
                url = location
                continue
            break
        return Fetched(
            request.url, url, status, headers, body[: request.max_bytes], 0.001, redirects
        )

    def close(self) -> None:
        self.closed += 1


def site_pages() -> dict[str, tuple[int, dict[str, str], bytes]]:
    return {
        SITE + path: (status, {k.lower(): v for k, v in headers.items()}, body)
        for path, (status, headers, body) in PAGES.items()
    }


def test_a_fake_fetcher_crawls_an_in_memory_site(tmp_path: Path) -> None:
    fetcher = DictFetcher(site_pages())
    assert isinstance(fetcher, PageFetcher)
    out = tmp_path / "o.jsonl"
    result = Crawler(SITE + "/", fetcher=fetcher, output=str(out), **QUIET).run()
    got = by_url(out)
    assert set(got) == {SITE + "/", SITE + "/a", SITE + "/b", SITE + "/c"}
    assert got[SITE + "/b"]["title"] == "b" and got[SITE + "/b"]["referrer"] == SITE + "/"
    kinds = [(r.url, r.kind) for r in fetcher.requests]
    assert kinds[0] == (SITE + "/robots.txt", JobKind.ROBOTS)
    assert SITE + "/private/x" not in [u for u, _ in kinds]
    assert result.robots_denied == 1
    assert fetcher.closed == 0, "the caller's fetcher is the caller's to close"


def test_a_fake_fetcher_that_asks_the_gate_cannot_leave_the_scope(tmp_path: Path) -> None:
    pages = site_pages()
    pages[SITE + "/a"] = (302, {"location": OFF + "/x"}, b"")
    pages[OFF + "/x"] = (200, {"content-type": "text/html"}, b"<a href=/y>y</a>")
    fetcher = DictFetcher(pages)
    out = tmp_path / "o.jsonl"
    result = Crawler(SITE + "/", fetcher=fetcher, output=str(out), **QUIET).run()
    rec = by_url(out)[SITE + "/a"]
    assert rec["status"] == 302 and rec["final_url"] == OFF + "/x" and rec["error"] is None
    assert result.out_of_scope_redirects == 1
    assert not [u for u in by_url(out) if u.startswith(OFF)]


class RogueFetcher(DictFetcher):
    """Follows every redirect without asking the gate."""

    def fetch(self, request: FetchRequest) -> Fetched:
        url, redirects = request.url, []
        status, headers, body = self.pages.get(url, (404, {}, b""))
        while status == 302:
            redirects.append(url)
            url = headers["location"]
            status, headers, body = self.pages.get(url, (404, {}, b""))
        return Fetched(request.url, url, status, headers, body, 0.001, redirects)


def test_a_fetcher_that_skips_the_gate_has_its_result_refused(tmp_path: Path) -> None:
    pages = site_pages()
    pages[SITE + "/a"] = (302, {"location": OFF + "/x"}, b"")
    pages[OFF + "/x"] = (200, {"content-type": "text/html"}, b"<a href=/y>y</a>")
    out = tmp_path / "o.jsonl"
    Crawler(SITE + "/", fetcher=RogueFetcher(pages), output=str(out), **QUIET).run()
    got = by_url(out)
    rec = got[SITE + "/a"]
    assert rec["error"] == "blocked" and OFF + "/x" in rec["error_detail"]
    assert rec["title"] is None
    assert not [u for u in got if u.startswith(OFF)], "links of an off-scope page followed"


def test_a_fetcher_factory_gets_the_transport_and_is_closed_after_the_run(tmp_path: Path) -> None:
    made: list[Any] = []

    class Wrapped:
        def __init__(self, setup: FetchSetup) -> None:
            self.inner = HTTPFetcher.from_setup(setup)
            self.setup = setup
            self.closed = False
            made.append(self)

        def fetch(self, request: FetchRequest) -> Fetched:
            return self.inner.fetch(request)

        def close(self) -> None:
            self.closed = True

    transport = MockTransport(site_handler)
    out = tmp_path / "o.jsonl"
    crawler = Crawler(SITE + "/", transport=transport, fetcher=Wrapped, output=str(out), **QUIET)
    result = crawler.run()
    (fetcher,) = made
    assert fetcher.setup.transport is transport and fetcher.closed
    assert fetcher.setup.options.user_agent == crawler.options.user_agent
    assert result.pages == 4


# -- the fetcher contract ------------------------------------------------------------------
#
# Every fetcher passes these (docs/extending.md): add yours to FETCHERS as a function from
# an in-memory site (URL -> (status, lower-cased headers, body)) to Crawler keywords.

Pages = dict[str, tuple[int, dict[str, str], bytes]]


def over_mock_transport(pages: Pages) -> dict[str, Any]:
    def handler(request: Request) -> Response:
        status, headers, body = pages.get(request.url, (404, {}, b""))
        return Response(status, headers, body)

    return {"transport": MockTransport(handler)}


def dict_fetcher(pages: Pages) -> dict[str, Any]:
    return {"fetcher": DictFetcher(pages)}


FETCHERS = [over_mock_transport, dict_fetcher]
HTML = {"content-type": "text/html"}


@pytest.mark.parametrize("plug", FETCHERS)
def test_contract_a_site_is_crawled_with_robots_txt_obeyed(tmp_path: Path, plug: Any) -> None:
    out = tmp_path / "o.jsonl"
    result = Crawler(SITE + "/", output=str(out), **plug(site_pages()), **QUIET).run()
    got = by_url(out)
    assert set(got) == {SITE + "/", SITE + "/a", SITE + "/b", SITE + "/c"}
    assert [got[SITE + p]["title"] for p in ("/", "/a", "/b", "/c")] == ["home", "a", "b", "c"]
    assert result.robots_denied == 1 and result.ok == 4


@pytest.mark.parametrize("plug", FETCHERS)
def test_contract_redirects_pass_the_gate(tmp_path: Path, plug: Any) -> None:
    pages = site_pages()
    pages[SITE + "/a"] = (301, {"location": SITE + "/a2"}, b"")  # same host: followed
    pages[SITE + "/a2"] = (200, HTML, b"<title>a2</title>")
    pages[SITE + "/b"] = (302, {"location": OFF + "/x"}, b"")  # off scope: not followed
    pages[OFF + "/x"] = (200, HTML, b"<title>off</title><a href=/y>y</a>")
    out = tmp_path / "o.jsonl"
    result = Crawler(SITE + "/", output=str(out), **plug(pages), **QUIET).run()
    got = by_url(out)
    assert (got[SITE + "/a"]["final_url"], got[SITE + "/a"]["title"]) == (SITE + "/a2", "a2")
    assert (got[SITE + "/b"]["status"], got[SITE + "/b"]["final_url"]) == (302, OFF + "/x")
    assert got[SITE + "/b"]["title"] is None
    assert result.out_of_scope_redirects == 1
    assert not [u for u in got if u.startswith(OFF)]


@pytest.mark.parametrize("plug", FETCHERS)
def test_contract_a_redirect_to_another_host_is_queued_there(tmp_path: Path, plug: Any) -> None:
    # Another host has its own robots.txt and politeness: the hop is not taken in place.
    pages = site_pages()
    pages[SITE + "/b"] = (302, {"location": OFF + "/x"}, b"")
    pages[OFF + "/x"] = (200, HTML, b"<title>other</title>")
    out = tmp_path / "o.jsonl"
    Crawler(
        SITE + "/",
        output=str(out),
        allow_domains=["93.184.216.34", "8.8.8.8"],
        **plug(pages),
        **QUIET,
    ).run()
    got = by_url(out)
    assert got[SITE + "/b"]["status"] == 302 and got[SITE + "/b"]["title"] is None
    assert got[OFF + "/x"]["title"] == "other" and got[OFF + "/x"]["referrer"] == SITE + "/b"


# -- one shape of a page -------------------------------------------------------------------


def test_a_page_is_made_over_the_fetchers_one_immutable_response(tmp_path: Path) -> None:
    # Fewer shapes of a page (#21): the Page reads the very response the fetcher returned,
    # nothing copied, and nothing downstream can change that response.
    returned: dict[str, Fetched] = {}
    seen: list[tuple[bool, bool, str]] = []

    class Keeping(DictFetcher):
        def fetch(self, request: FetchRequest) -> Fetched:
            fetched = super().fetch(request)
            returned[request.url] = fetched
            return fetched

    def on_page(page: Any) -> Any:
        frozen = False
        try:
            page.response.detail = "changed"
        except dataclasses.FrozenInstanceError:
            frozen = True
        same = page.response is returned[page.url] and page.body is page.response.body
        seen.append((same, frozen, page.final_url))
        return {"url": page.url}

    Crawler(
        SITE + "/",
        fetcher=Keeping(site_pages()),
        on_page=on_page,
        output=str(tmp_path / "o.jsonl"),
        **QUIET,
    ).run()
    assert sorted(seen) == sorted((True, True, SITE + p) for p in ("/", "/a", "/b", "/c"))


def test_a_fetcher_object_and_a_transport_do_not_mix() -> None:
    # The object fetches by itself: a transport given beside it would be silently unused.
    with pytest.raises(UsageError, match="fetcher given as an object"):
        Crawler(SITE + "/", fetcher=DictFetcher({}), transport=MockTransport(site_handler))
    with pytest.raises(UsageError, match="fetcher given as an object"):
        Crawler(SITE + "/", fetcher=DictFetcher({}), transport="urllib3")


# -- the gate holds whatever the fetcher (review of #21) -----------------------------------


def _answers(*addresses: str) -> Any:
    """A DNS lookup function: every host resolves to ``addresses`` (none: lookup fails)."""

    def lookup(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return lookup


def test_public_only_strict_refuses_any_private_address_and_a_failed_lookup() -> None:
    mixed = Resolver(lookup=_answers("93.184.216.34", "127.0.0.1"))
    PublicOnly(mixed, 1.0)("http://mixed.test/")  # the native client picks the public one
    with pytest.raises(TransportError, match=r"non-public address 127\.0\.0\.1") as caught:
        PublicOnly(mixed, 1.0, strict=True)("http://mixed.test/")
    assert caught.value.kind is ErrorKind.BLOCKED
    failing = Resolver(lookup=_answers())
    PublicOnly(failing, 1.0)("http://nx.test/")
    with pytest.raises(TransportError, match="cannot check"):
        PublicOnly(failing, 1.0, strict=True)("http://nx.test/")


@pytest.mark.parametrize("answer", [("93.184.216.34", "10.0.0.1"), ()])
def test_deny_private_with_a_transport_object_needs_every_address_public(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: tuple[str, ...]
) -> None:
    # A transport object resolves the host itself and may connect to any address.
    monkeypatch.setattr(_crawler, "Resolver", lambda: Resolver(lookup=_answers(*answer)))
    transport = MockTransport(lambda r: Response(200, HTML, b"<title>internal</title>"))
    out = tmp_path / "o.jsonl"
    Crawler(
        "http://mixed.test/",
        transport=transport,
        deny_private=True,
        robots=False,
        output=str(out),
        **QUIET,
    ).run()
    assert transport.requests == []
    assert by_url(out)["http://mixed.test/"]["error"] == "blocked"


class HopFetcher:
    """A fetcher that relies on the crawl's gate for everything: it reports the URLs it
    is given as given (relative ones joined), and has no redirect limit of its own."""

    def __init__(self, pages: Pages, side: dict[str, list[str]] | None = None) -> None:
        self.pages = pages
        self.side = side or {}
        self.requested: list[str] = []
        self.side_answers: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def _get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requested.append(url)
        return self.pages.get(url, (404, {}, b""))

    def fetch(self, request: FetchRequest) -> Fetched:
        url, redirects = request.url, []
        for _ in range(100):  # a bound for the test only: the gate must stop it first
            status, headers, body = self._get(url)
            for sub in self.side.get(url, []):
                try:
                    why = request.side(sub)
                except TransportError as exc:
                    why = exc.detail
                self.side_answers[sub] = why
                if why is None:
                    self._get(sub)
            location = headers.get("location")
            if status in (301, 302) and location:
                target = urljoin(url, location)
                stop = request.gate(target)
                if stop is not None:
                    return Fetched(request.url, target, status, headers, detail=stop)
                redirects.append(url)
                url = target
                continue
            return Fetched(request.url, url, status, headers, body, 0.001, tuple(redirects))
        raise AssertionError("the gate let a redirect chain run on")

    def close(self) -> None:
        pass


def test_robots_txt_hops_of_another_scheme_are_refused(tmp_path: Path) -> None:
    pages = site_pages()
    pages[SITE + "/robots.txt"] = (301, {"location": "file:///etc/passwd"}, b"")
    fetcher = HopFetcher(pages)
    out = tmp_path / "o.jsonl"
    Crawler(SITE + "/", fetcher=fetcher, output=str(out), **QUIET).run()
    assert not [u for u in fetcher.requested if not u.startswith("http")]


def test_a_page_hop_of_another_scheme_is_a_bad_redirect(tmp_path: Path) -> None:
    # The fetcher stopped where the gate said: the result is that refusal, as HTTPFetcher
    # reports it, not a fetcher that skipped the gate.
    pages = site_pages()
    pages[SITE + "/a"] = (302, {"location": "javascript:alert(1)"}, b"")
    fetcher = HopFetcher(pages)
    out = tmp_path / "o.jsonl"
    Crawler(SITE + "/", fetcher=fetcher, output=str(out), **QUIET).run()
    rec = by_url(out)[SITE + "/a"]
    assert rec["error"] == "bad_redirect" and "javascript" in rec["error_detail"]
    assert not [u for u in fetcher.requested if not u.startswith("http")]


def test_the_gate_judges_a_hop_by_its_canonical_form(tmp_path: Path) -> None:
    # http://host:80/x is the same host (not another one with its own politeness), and
    # /c#frag is /c: one page, claimed once.
    pages = site_pages()
    pages[SITE + "/a"] = (302, {"location": SITE + ":80/a2#top"}, b"")
    pages[SITE + ":80/a2#top"] = (200, HTML, b"<title>a2</title><a href=/c>c</a>")
    pages[SITE + "/b"] = (302, {"location": "/c#frag"}, b"")
    pages[SITE + "/c#frag"] = pages[SITE + "/c"]
    fetcher = HopFetcher(pages)
    out = tmp_path / "o.jsonl"
    Crawler(SITE + "/", fetcher=fetcher, output=str(out), **QUIET).run()
    got = by_url(out)
    assert got[SITE + "/a"]["title"] == "a2"
    assert not [u for u in got if ":80" in u or "#" in u]
    assert len([u for u in fetcher.requested if u.startswith(SITE + "/c")]) == 1


def test_a_side_request_is_neither_claimed_nor_queued(tmp_path: Path) -> None:
    # A browser loads /api as an XHR and the page also links to it: the link still gets its
    # own record. A side request to another host is not queued as a page, and with
    # render_resources="scope" one out of scope or disallowed by robots.txt is refused.
    pages = site_pages()
    pages[SITE + "/"] = (200, HTML, b"<title>home</title><a href=/api>api</a>")
    pages[SITE + "/api"] = (200, HTML, b"<title>api</title>")
    side = {SITE + "/": [SITE + "/api", SITE + "/private/x", OFF + "/logo.png", "file:///x"]}
    fetcher = HopFetcher(pages, side)
    out = tmp_path / "o.jsonl"
    result = Crawler(
        SITE + "/", fetcher=fetcher, output=str(out), render_resources="scope", **QUIET
    ).run()
    got = by_url(out)
    assert set(got) == {SITE + "/", SITE + "/api"}
    assert got[SITE + "/api"]["title"] == "api"
    answers = fetcher.side_answers
    assert answers[SITE + "/api"] is None
    assert answers[SITE + "/private/x"] is not None and answers[OFF + "/logo.png"] is not None
    assert answers["file:///x"] is not None
    assert fetcher.requested.count(SITE + "/api") == 2  # the XHR, then its own page
    assert SITE + "/private/x" not in fetcher.requested
    assert result.discovered == 2 and result.out_of_scope_redirects == 0


def test_a_side_request_to_another_host_obeys_that_hosts_robots_txt(tmp_path: Path) -> None:
    # By default (render_resources="any") a page may load from a host out of scope (a
    # CDN): that host's robots.txt is read once, through the crawl's fetcher, and obeyed;
    # nothing of that host is a page of the crawl.
    pages = site_pages()
    pages[SITE + "/"] = (200, HTML, b"<title>home</title><a href=/a>a</a>")
    pages[OFF + "/robots.txt"] = (200, {}, b"User-agent: *\nDisallow: /secret\n")
    wanted = [OFF + "/lib.js", OFF + "/secret/x.js", OFF + "/lib2.js"]
    side = {SITE + "/": wanted, SITE + "/a": [OFF + "/lib.js"]}
    fetcher = HopFetcher(pages, side)
    out = tmp_path / "o.jsonl"
    result = Crawler(SITE + "/", fetcher=fetcher, output=str(out), **QUIET).run()
    assert set(by_url(out)) == {SITE + "/", SITE + "/a", SITE + "/c"}
    answers = fetcher.side_answers
    assert answers[OFF + "/lib.js"] is None and answers[OFF + "/lib2.js"] is None
    assert answers[OFF + "/secret/x.js"] == "side request disallowed by robots.txt"
    assert fetcher.requested.count(OFF + "/robots.txt") == 1
    assert OFF + "/secret/x.js" not in fetcher.requested
    assert result.pages == 3 and result.discovered == 3


def test_a_side_request_to_a_private_host_is_refused_before_its_robots_txt(
    tmp_path: Path,
) -> None:
    pages = site_pages()
    pages[SITE + "/"] = (200, HTML, b"<title>home</title>")
    side = {SITE + "/": ["http://127.0.0.1/lib.js"]}
    fetcher = HopFetcher(pages, side)
    out = tmp_path / "o.jsonl"
    Crawler(SITE + "/", fetcher=fetcher, output=str(out), deny_private=True, **QUIET).run()
    assert "non-public address 127.0.0.1" in str(fetcher.side_answers["http://127.0.0.1/lib.js"])
    assert not [u for u in fetcher.requested if "127.0.0.1" in u]


def test_a_page_loads_from_no_private_address_its_own_host_is_not_on(tmp_path: Path) -> None:
    # Without deny_private, a host out of scope on a non-public address is loaded only by a
    # page on an address of that kind (loopback from loopback: a local test site's second
    # server); never the link-local metadata address, nor anything private from a public page.
    local = "http://127.0.0.1:9"
    pages = site_pages()
    pages[SITE + "/"] = (200, HTML, b"<title>home</title><a href=/a>a</a>")
    pages[local + "/"] = (200, HTML, b"<title>local</title>")
    pages[local + "/robots.txt"] = (404, {}, b"")
    metadata = "http://169.254.169.254/latest/"
    side = {
        SITE + "/": ["http://127.0.0.2/lib.js", metadata],
        local + "/": ["http://127.0.0.2/lib.js", metadata, OFF + "/lib.js"],
    }
    fetcher = HopFetcher(pages, side)
    Crawler(SITE + "/", fetcher=fetcher, output=str(tmp_path / "a.jsonl"), **QUIET).run()
    answers = dict(fetcher.side_answers)
    assert "loopback address" in str(answers["http://127.0.0.2/lib.js"])
    assert "link-local address" in str(answers[metadata])
    fetcher.side_answers.clear()
    Crawler(local + "/", fetcher=fetcher, output=str(tmp_path / "b.jsonl"), **QUIET).run()
    answers = dict(fetcher.side_answers)
    assert answers["http://127.0.0.2/lib.js"] is None and answers[OFF + "/lib.js"] is None
    assert "link-local address" in str(answers[metadata])
    assert not [u for u in fetcher.requested if "169.254" in u]


def test_the_gate_bounds_redirects_whatever_the_fetcher(tmp_path: Path) -> None:
    pages = site_pages()
    pages[SITE + "/robots.txt"] = (200, {}, b"Sitemap: " + SITE.encode() + b"/sm-a.xml\n")
    pages[SITE + "/sm-a.xml"] = (302, {"location": "/sm-b.xml"}, b"")
    pages[SITE + "/sm-b.xml"] = (302, {"location": "/sm-a.xml"}, b"")
    for n in range(10):
        pages[SITE + f"/r{n}"] = (302, {"location": f"/r{n + 1}"}, b"")
    pages[SITE + "/a"] = (302, {"location": "/r0"}, b"")
    fetcher = HopFetcher(pages)
    out = tmp_path / "o.jsonl"
    Crawler(
        SITE + "/", fetcher=fetcher, sitemaps=True, max_redirects=3, output=str(out), **QUIET
    ).run()
    assert fetcher.requested.count(SITE + "/sm-a.xml") == 1  # the loop is cut
    rec = by_url(out)[SITE + "/a"]
    assert rec["error"] == "too_many_redirects"
    assert SITE + "/r3" not in fetcher.requested  # /a, r0, r1, r2: three hops


class PushyFetcher(HopFetcher):
    """Asks the gate, then requests a refused hop anyway and reports that it failed."""

    def fetch(self, request: FetchRequest) -> Fetched:
        status, headers, _ = self._get(request.url)
        target = headers.get("location")
        if status in (301, 302) and target and request.gate(target) is not None:
            self._get(target)
            return Fetched(request.url, target, error=ErrorKind.TIMEOUT, detail="timed out")
        return super().fetch(request)


def test_a_refused_hop_that_was_requested_anyway_is_refused(tmp_path: Path) -> None:
    pages = site_pages()
    pages[SITE + "/a"] = (302, {"location": OFF + "/x"}, b"")
    out = tmp_path / "o.jsonl"
    Crawler(SITE + "/", fetcher=PushyFetcher(pages), output=str(out), **QUIET).run()
    rec = by_url(out)[SITE + "/a"]
    assert rec["error"] == "blocked" and OFF + "/x" in rec["error_detail"]
