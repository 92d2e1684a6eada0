"""Requests, not only URLs (#20): shoal.Request from handlers (POST bodies, labels, meta),
Request.from_form, routes by label and by glob, dedupe by method and body, redirects
after a POST, the records and WARC request records of a POST. Real servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

import shoal
from shoal import Request, UsageError
from shoal.crawler import Crawler, CrawlResult, Page
from sites import Reply, Site, html
from sites import Request as Got


def crawl(
    start: str | list[str], tmp_path: Path, name: str = "out.jsonl", **options: Any
) -> tuple[CrawlResult, list[dict[str, Any]]]:
    out = tmp_path / name
    options.setdefault("progress", False)
    options.setdefault("fresh", True)
    options.setdefault("robots", False)
    crawler = options.pop("crawler", None) or Crawler(start, output=str(out), **options)
    result = crawler.run()
    if out.suffix == ".jsonl":
        return result, [json.loads(line) for line in out.read_text().splitlines()]
    return result, []


SEARCH_FORM = """<html><head><title>search</title></head><body>
<form action="/search" method="post">
  <input type="hidden" name="csrf" value="tok-123">
  <input type="text" name="q" value="">
  <select name="sort"><option value="new">new</option>
    <option value="old" selected>old</option></select>
  <input type="checkbox" name="instock" value="yes" checked>
  <input type="checkbox" name="sale" value="yes">
  <input type="text" name="off" value="x" disabled>
  <textarea name="note">hello</textarea>
  <input type="submit" name="go" value="Search">
  <input type="submit" name="other" value="Other">
</form></body></html>"""


def search_site(site: Site) -> None:
    """/ has a search form (POST, CSRF token); /search answers per body with links to
    products; products are /product/N."""

    def search(req: Got) -> Reply:
        if req.method != "POST":
            return Reply(405, "POST only")
        form = parse_qs(req.body.decode())
        if form.get("csrf") != ["tok-123"]:
            return Reply(403, "bad csrf")
        q = form.get("q", [""])[0]
        links = [f"/product/{q}-{i}" for i in range(2)]
        return Reply(body=html(f"results for {q}", *links))

    site.routes.update(
        {
            "/": SEARCH_FORM,
            "/search": search,
            **{f"/product/{q}-{i}": html(f"product {q} {i}") for q in "ab" for i in range(2)},
        }
    )


def test_routes_and_a_posted_search(tmp_path: Path) -> None:
    """The issue's example: a POSTed search, two page kinds to two handlers, meta carried
    to the page, the records of a POST say so."""
    with Site() as site:
        search_site(site)
        crawler = Crawler(site.url("/"), output=str(tmp_path / "out.jsonl"), follow_links=False)

        @crawler.route()
        def start(page: Page) -> Any:
            assert page.request.method == "GET" and page.request.meta == {}
            for q in "ab":
                yield Request.from_form(page, {"q": q}, label="results", meta={"q": q, "n": [1, 2]})

        @crawler.route("results")
        def results(page: Page) -> Any:
            assert page.request.method == "POST"
            yield {"kind": "results", "q": page.request.meta["q"], "meta": page.request.meta}
            yield from page.links

        @crawler.route(glob="/product/*")
        def product(page: Page) -> Any:
            yield {"kind": "product", "url": page.url, "title": page.title}

        result, records = crawl([], tmp_path, crawler=crawler)
    assert result.errors == {}
    kinds = sorted((r["kind"], r.get("q") or r["title"]) for r in records)
    assert kinds == [
        ("product", "product a 0"),
        ("product", "product a 1"),
        ("product", "product b 0"),
        ("product", "product b 1"),
        ("results", "a"),
        ("results", "b"),
    ]
    assert next(r for r in records if r.get("q") == "a")["meta"] == {"q": "a", "n": [1, 2]}
    # The form as a browser sends it: hidden token, selected option, checked box,
    # textarea, the first submit button; not the disabled field nor the unchecked box.
    bodies = sorted((parse_qs(body.decode()) for _, body in site.posts), key=lambda f: f["q"])
    assert bodies[0] == {
        "csrf": ["tok-123"],
        "q": ["a"],
        "sort": ["old"],
        "instock": ["yes"],
        "note": ["hello"],
        "go": ["Search"],
    }
    assert site.count("/search") == 2


def test_standard_records_of_a_post_name_method_and_label(tmp_path: Path) -> None:
    """A page no route takes gets the standard record, which names a POST's method (and
    an error record its label); never the body (a password may be in it)."""
    with Site() as site:
        search_site(site)

        def start(page: Page) -> Any:
            yield Request.from_form(page, {"q": "a", "password": "hunter2"})
            yield Request("/missing", "POST", data={"pass": "hunter2"}, label="r")

        crawler = Crawler(site.url("/"), output=str(tmp_path / "o.jsonl"), follow_links=False)
        crawler.route(glob="/")(start)
        crawler.route("r")(lambda page: None)
        _, records = crawl([], tmp_path, "o.jsonl", crawler=crawler)
    found = {r["url"].rsplit("/", 1)[1]: r for r in records}
    assert found["search"]["method"] == "POST" and "label" not in found["search"]
    assert found["search"]["title"] == "results for a"
    assert found["missing"]["method"] == "POST" and found["missing"]["label"] == "r"
    assert found["missing"]["error"] == "http_404"
    assert "hunter2" not in json.dumps(records)


def test_a_label_with_no_route_fails_the_page_that_gave_it(tmp_path: Path) -> None:
    with Site({"/": html("home"), "/x": html("x")}) as site:
        crawler = Crawler(site.url("/"), output=str(tmp_path / "out.jsonl"))

        @crawler.route()
        def start(page: Page) -> Any:
            yield Request("/x", label="nowhere")

        crawler.route("detail")(lambda page: None)
        _, records = crawl([], tmp_path, crawler=crawler)
        assert site.count("/x") == 0
    (rec,) = records
    assert rec["error"] == "callback"
    assert "no route for the label 'nowhere' (routes by label: 'detail')" in rec["error_detail"]


def test_without_routes_by_label_a_label_is_data_for_the_handler(tmp_path: Path) -> None:
    with Site({"/": html("home"), "/x": html("x")}) as site:

        def on_page(page: Page) -> Any:
            if page.url.endswith("/"):
                yield Request("/x", label="detail")
            else:
                yield {"label": page.request.label}

        _, records = crawl(site.url("/"), tmp_path, on_page=on_page)
    assert records == [{"label": "detail"}]


def test_route_errors_are_clear() -> None:
    crawler = Crawler("http://127.0.0.1:9/", on_page=lambda page: None)
    with pytest.raises(UsageError, match="two default handlers"):
        crawler.route()(lambda page: None)
    crawler.route("a")(lambda page: None)
    with pytest.raises(UsageError, match="two routes for the label 'a'"):
        crawler.route("a")(lambda page: None)
    with pytest.raises(UsageError, match="matched against the URL's path"):
        crawler.route(glob="product/*")(lambda page: None)
    with pytest.raises(UsageError, match="label or by glob, not both"):
        crawler.route("b", glob="/x")(lambda page: None)


def test_routes_are_added_before_the_run(tmp_path: Path) -> None:
    with Site({"/": html("home")}) as site:
        crawler = Crawler(site.url("/"), output=str(tmp_path / "o.jsonl"), progress=False)
        crawler.run()
    with pytest.raises(UsageError, match="before the crawl runs"):
        crawler.route("late")(lambda page: None)


def test_plain_on_page_keeps_working_and_page_request_of_a_link(tmp_path: Path) -> None:
    seen: list[tuple[str, str, dict[str, Any], str | None]] = []
    with Site({"/": html("home", "/a"), "/a": html("a")}) as site:

        def on_page(page: Page) -> dict[str, Any]:
            r = page.request
            seen.append((r.url, r.method, r.meta, r.label))
            return {"u": page.url}

        crawl(site.url("/"), tmp_path, on_page=on_page)
    assert sorted(seen) == [
        (site.url("/"), "GET", {}, None),
        (site.url("/a"), "GET", {}, None),
    ]


def test_dedupe_by_method_and_body_not_meta_or_label(tmp_path: Path) -> None:
    """A POST of one body is sent once however often it is given; another body, or a GET
    of the same URL, is another request; a labelled GET is its URL's link."""
    with Site() as site:

        def echo(req: Got) -> Reply:
            return Reply(body=html(f"{req.method} {req.body.decode()}"))

        site.routes.update({"/": html("home", "/e"), "/e": echo})

        def on_page(page: Page) -> Any:
            if page.url.endswith("/"):
                yield Request("/e", "POST", data={"a": "1"}, meta={"n": 1})
                yield Request("/e", "POST", data={"a": "1"}, meta={"n": 2}, label=None)
                yield Request("/e", "POST", data={"a": "2"})
                yield Request("/e", "POST", data=b"a=1", headers={"X-Other": "1"})  # same body
                yield Request("/e", meta={"labelled": True})  # the GET of the link /e
            return None

        crawl(site.url("/"), tmp_path, on_page=on_page)
    assert sorted(body for _, body in site.posts) == [b"a=1", b"a=2"]
    assert site.count("/e") == 3  # two POSTs and one GET


def test_a_get_of_the_same_url_keeps_its_fingerprint() -> None:
    """A plain GET's fingerprint is its URL's (existing states dedupe as before), and so
    is a labelled GET's; a POST's is not."""
    from shoal.state import fingerprint
    from shoal.state._jobs import job_key

    url = "http://example.com/a"
    assert Request(url)._encode() is None
    labelled = Request(url, label="x", meta={"a": 1})._encode()
    assert job_key(url, labelled) == url
    post = Request(url, "POST", data={"a": "1"})._encode()
    assert post is not None and fingerprint(job_key(url, post)) != fingerprint(url)
    other = Request(url, "POST", data={"a": "2"})._encode()
    assert job_key(url, post) != job_key(url, other)


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [
        (301, "GET", b""),
        (302, "GET", b""),
        (303, "GET", b""),
        (307, "POST", b"q=z"),
        (308, "POST", b"q=z"),
    ],
)
def test_redirect_after_post(tmp_path: Path, status: int, method: str, body: bytes) -> None:
    """301/302/303 after a POST: a GET without the body; 307/308 keep both."""
    got: list[tuple[str, bytes, str | None]] = []
    with Site() as site:

        def done(req: Got) -> Reply:
            got.append((req.method, req.body, req.headers.get("Content-Type")))
            return Reply(body=html("done"))

        site.routes.update(
            {
                "/": html("home"),
                "/post": Reply(status, "", {"Location": "/done"}),
                "/done": done,
            }
        )

        def on_page(page: Page) -> Any:
            if page.url.endswith("/"):
                yield Request("/post", "POST", data={"q": "z"}, label="x", meta={"m": 1})
            else:
                yield {"final": page.final_url, "meta": page.request.meta}

        crawler = Crawler(site.url("/"), output=str(tmp_path / "out.jsonl"), on_page=on_page)
        crawler.route("x")(on_page)
        _, records = crawl([], tmp_path, crawler=crawler)
    assert got == [(method, body, "application/x-www-form-urlencoded" if body else None)]
    assert {"final": site.url("/done"), "meta": {"m": 1}} in records


def test_post_redirected_to_its_own_url_is_no_loop(tmp_path: Path) -> None:
    """Post, redirect, get: a POST answered by a 303 to its own URL fetches it as a GET."""
    with Site() as site:

        def form(req: Got) -> Reply:
            if req.method == "POST":
                return Reply(303, "", {"Location": "/form"})
            return Reply(body=html("form page"))

        site.routes.update({"/": html("home"), "/form": form})

        def on_page(page: Page) -> Any:
            if page.url.endswith("/"):
                yield Request("/form", "POST", data={"a": "b"})
            else:
                yield {"title": page.title, "status": page.status}

        _, records = crawl(site.url("/"), tmp_path, on_page=on_page, follow_links=False)
    assert records == [{"title": "form page", "status": 200}]


def test_request_bounds_and_errors() -> None:
    with pytest.raises(UsageError, match="method 'DELETE'"):
        Request("/x", "DELETE")
    with pytest.raises(UsageError, match="a GET has no body"):
        Request("/x", data=b"x")
    with pytest.raises(UsageError, match="over 262144"):
        Request("/x", "POST", data=b"x" * (256 * 1024 + 1))
    with pytest.raises(UsageError, match="meta must be JSON data"):
        Request("/x", meta={"f": object()})
    with pytest.raises(UsageError, match="meta must be JSON data"):
        Request("/x", meta={"nan": float("nan")})
    with pytest.raises(UsageError, match="more than 65536"):
        Request("/x", meta={"big": "x" * 70_000})
    with pytest.raises(UsageError, match="more than 32"):
        Request("/x", headers={f"X-{i}": "v" for i in range(33)})
    with pytest.raises(UsageError, match="more than 8192"):
        Request("/x", headers={"X-Big": "v" * 9000})
    with pytest.raises(UsageError, match="one line"):
        Request("/x", headers={"X-A": "a\r\nHost: evil"})
    with pytest.raises(UsageError, match="client's to write"):
        Request("/x", "POST", headers={"Content-Length": "5"})
    with pytest.raises(UsageError, match="not a header name"):
        Request("/x", headers={"Bad Name": "v"})
    with pytest.raises(UsageError, match="label"):
        Request("/x", label="")
    # A GET's fields go to its query, replacing the URL's own.
    assert Request("/s?old=1#f", data={"q": "a b"}).url == "/s?q=a+b"
    assert Request("/s", "post", data=[("a", "1"), ("a", "2")]).body == b"a=1&a=2"


def test_public_api_is_lazy() -> None:
    assert shoal.Request is Request
    assert "Request" in shoal.__all__


def test_warc_request_record_has_method_and_body_with_secrets_redacted(tmp_path: Path) -> None:
    from warcio.archiveiterator import ArchiveIterator

    with Site() as site:
        site.routes.update({"/": html("home"), "/login": html("welcome")})

        def on_page(page: Page) -> Any:
            if page.url.endswith("/"):
                data = {"user": "ann", "password": "hunter2", "csrf_token": "t0k"}
                yield Request("/login", "POST", data=data, headers={"X-Api-Key": "k3y"})
            yield {"url": page.url}

        out = tmp_path / "out.warc.gz"
        Crawler(site.url("/"), output=str(out), on_page=on_page, progress=False, robots=False).run()
    requests = {}
    with gzip.open(out, "rb") as raw, open(out, "rb") as f:
        assert b"hunter2" not in raw.read()
        for rec in ArchiveIterator(f):
            if rec.rec_type == "request":
                line = rec.http_headers.protocol + " " + rec.http_headers.statusline
                requests[rec.rec_headers.get_header("WARC-Target-URI")] = (
                    line,
                    dict(rec.http_headers.headers),
                    rec.content_stream().read(),
                )
    line, headers, body = requests[site.url("/login")]
    assert line == "POST /login HTTP/1.1"
    assert requests[site.url("/")][0] == "GET / HTTP/1.1"
    assert parse_qs(body.decode()) == {
        "user": ["ann"],
        "password": ["[redacted]"],
        "csrf_token": ["[redacted]"],
    }
    assert headers["X-Api-Key"] == "[redacted]"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Content-Length"] == str(len(body))
    assert requests[site.url("/")][2] == b""


def form_page(form: str, url: str = "http://a.test/dir/page") -> Page:
    from shoal.crawler import Fetched

    return Page.over(
        Fetched(url, url, 200, {"content-type": "text/html"}, form.encode()),
        depth=0,
        referrer=None,
    )


def test_from_form_edge_cases() -> None:
    page = form_page(
        """<html><body>
        <form id="f0" action="javascript:void(0)"><input name="a" value="1"></form>
        <form id="f1" action="next?x=1#frag" method="GET">
          <input name="a" value="1"><input name="b" value="2">
          <input type="radio" name="r" value="x"><input type="radio" name="r" value="y" checked>
          <input type="checkbox" name="c" checked>
          <select name="s" multiple><option selected>one</option><option selected value="2">
            two</option><option>three</option></select>
          <select name="empty"></select>
          <select name="first"><option>f1</option><option>f2</option></select>
          <input type="file" name="upload"><input type="reset" name="rs" value="r">
          <button name="btn" value="clicked">Go</button>
        </form>
        <input form="f1" name="outside" value="o">
        <form action="/up" method="post" enctype="multipart/form-data"><input name="a"></form>
        <form action="ftp://a.test/x" method="post"><input name="a"></form>
        <form method="dialog"><input name="a"></form>
        </body></html>"""
    )
    with pytest.raises(UsageError, match="not an http\\(s\\) URL"):
        Request.from_form(page)  # the first form: a javascript: action
    get = Request.from_form(page, {"b": None, "a": ["x", "y"], "new": "n"}, form="#f1")
    assert get.method == "GET" and get.body is None
    assert get.url == (
        "http://a.test/dir/next?a=x&a=y&r=y&c=on&s=one&s=2&first=f1&outside=o&new=n&btn=clicked"
    )
    assert Request.from_form(page, form=1, click=False).url.endswith("outside=o")
    with pytest.raises(UsageError, match="multipart"):
        Request.from_form(page, form=2)
    with pytest.raises(UsageError, match="not an http\\(s\\) URL"):
        Request.from_form(page, form=3)
    with pytest.raises(UsageError, match="submits nothing"):
        Request.from_form(page, form=4)
    with pytest.raises(UsageError, match="has 5 form"):
        Request.from_form(page, form=9)
    with pytest.raises(UsageError, match="is not a <form>"):
        Request.from_form(page, form="select")
    with pytest.raises(UsageError, match="names and values are str"):
        Request.from_form(page, {"a": 5}, form=1)
    with pytest.raises(UsageError, match="no <form>"):
        Request.from_form(form_page("<html><body>none</body></html>"))
    # No action: the page's own URL; a POST form's fields are its body.
    post = Request.from_form(form_page('<form method="post"><input name="q" value="1"></form>'))
    assert (post.url, post.method, post.body) == ("http://a.test/dir/page", "POST", b"q=1")


def test_hostile_forms_are_refused_with_clear_errors(tmp_path: Path) -> None:
    """Thousands of inputs, a body past the limit, javascript: and off-scheme actions:
    the handler's from_form raises, the page's record says why, the crawl goes on; an
    action to a host out of scope is never sent."""
    many = "".join(f'<input name="f{i}" value="v">' for i in range(5000))
    big = f'<input type="hidden" name="blob" value="{"x" * 300_000}">'
    forms = {
        "/many": f'<form method="post">{many}</form>',
        "/big": f'<form method="post">{big}</form>',
        "/js": '<form action="javascript:alert(1)" method="post"><input name="a"></form>',
        "/ftp": '<form action="ftp://127.0.0.1/x" method="post"><input name="a"></form>',
        "/away": '<form action="http://elsewhere.test/steal" method="post"><input name="a"></form>',
    }
    with Site() as site:
        site.routes.update({"/": html("home", *forms), **forms})

        def on_page(page: Page) -> Any:
            if not page.url.endswith("/"):
                yield Request.from_form(page, label="x")

        crawler = Crawler(site.url("/"), output=str(tmp_path / "out.jsonl"), on_page=on_page)
        crawler.route("x")(lambda page: None)
        _, records = crawl([], tmp_path, crawler=crawler)
        assert site.posts == []
    failed = {r["url"].rsplit("/", 1)[1]: r["error_detail"] for r in records}
    assert "has 5000 fields, more than 1000" in failed["many"]
    assert "over 262144" in failed["big"]
    assert "not an http(s) URL" in failed["js"] and "not an http(s) URL" in failed["ftp"]
    assert "away" not in failed  # built, but out of scope: not sent


def test_a_post_redirected_to_another_host_goes_there_as_a_get_without_body(
    tmp_path: Path,
) -> None:
    """Even a 307: a form's fields (maybe a password) and its headers never reach a host
    they were not made for; label and meta go along."""
    with Site() as other, Site() as site:
        got: list[tuple[str, bytes, str | None]] = []

        def landing(req: Got) -> Reply:
            got.append((req.method, req.body, req.headers.get("X-Secret")))
            return Reply(body=html("landing"))

        other.routes["/landing"] = landing
        site.routes.update(
            {"/": html("home"), "/post": Reply(307, "", {"Location": other.url("/landing")})}
        )

        def on_page(page: Page) -> Any:
            if page.url == site.url("/"):
                yield Request(
                    "/post",
                    "POST",
                    data={"password": "pw"},
                    headers={"X-Secret": "s"},
                    label="x",
                    meta={"m": 1},
                )

        crawler = Crawler(site.url("/"), output=str(tmp_path / "out.jsonl"), on_page=on_page)
        crawler.route("x")(lambda page: [{"at": page.url, "meta": page.request.meta}])
        _, records = crawl([], tmp_path, crawler=crawler)
    assert got == [("GET", b"", None)]
    assert {"at": other.url("/landing"), "meta": {"m": 1}} in records


def test_a_post_redirect_loop_is_bounded(tmp_path: Path) -> None:
    with Site() as site:
        site.routes.update({"/": html("home"), "/loop": Reply(303, "", {"Location": "/loop"})})

        def on_page(page: Page) -> Any:
            if page.url.endswith("/"):
                yield Request("/loop", "POST", data={"a": "1"})

        _, records = crawl(site.url("/"), tmp_path, on_page=on_page)
        assert site.count("/loop") == 2  # the POST, then its GET: a loop from there
    (rec,) = [r for r in records if r["url"].endswith("/loop")]
    assert rec["error"] == "redirect_loop" and rec["method"] == "POST"


@pytest.mark.parametrize("name", ["native", "urllib3"])
def test_a_post_on_the_wire_and_the_connection_after_it(name: str) -> None:
    """The body framed by Content-Length (the client's own), the method on the request
    line; a GET on the same kept-alive connection after it parses as before."""
    import socket

    from rawserver import raw_servers
    from shoal.http import make_transport

    seen: list[bytes] = []

    def script(conn: socket.socket, index: int) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, data = data.partition(b"\r\n\r\n")
            size = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    size = int(line.split(b":")[1])
            while len(data) < size:
                data += conn.recv(65536)
            body, data = data[:size], data[size:]
            seen.append(head.split(b"\r\n")[0] + b" | " + body)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    transport = make_transport(name)
    try:
        with raw_servers() as start:
            srv = start(script)
            posted = transport.get(
                srv.url + "/p",
                {"Content-Type": "application/x-www-form-urlencoded"},
                max_bytes=100,
                method="POST",
                body=b"q=1&r=%26",
            )
            got = transport.get(srv.url + "/g", {}, max_bytes=100)
            assert (posted.body, got.body) == (b"ok", b"ok")
            with pytest.raises(shoal.TransportError, match="unsupported method"):
                transport.get(srv.url + "/x", {}, max_bytes=100, method="DELETE")
    finally:
        transport.close()
    assert seen == [b"POST /p HTTP/1.1 | q=1&r=%26", b"GET /g HTTP/1.1 | "]


def test_the_native_client_frames_a_body_itself() -> None:
    from shoal.http._client import _request

    with pytest.raises(shoal.TransportError, match="framed by the client"):
        _request("/", "h", {"Content-Length": "1"}, "POST", b"abc")
    with pytest.raises(shoal.TransportError, match="CR, LF"):
        _request("/", "h", {"X-A": "1\r\nX-B: 2"}, "POST", b"abc")
    raw = _request("/", "h", {}, "POST", b"")
    assert raw.startswith(b"POST / HTTP/1.1\r\n") and b"Content-Length: 0\r\n" in raw


def test_a_redis_entry_of_a_plain_get_is_what_it_was() -> None:
    from shoal.state._redis_support import entry, parse_entry

    plain = entry(1, shoal.crawler.JobKind.PAGE, 2, "http://a.test/x", "http://a.test/")
    assert plain == b"1 p 2 15 http://a.test/xhttp://a.test/"
    fields = Request("http://a.test/x", "POST", data={"a": "1"}, meta={"k": "\0"})._encode()
    with_request = entry(1, shoal.crawler.JobKind.PAGE, 2, "http://a.test/x", None, fields)
    assert parse_entry(with_request)[3:] == ("http://a.test/x", None, fields)
    assert parse_entry(plain)[3:] == ("http://a.test/x", "http://a.test/", None)


def test_a_recrawl_sends_a_post_again_as_it_was(tmp_path: Path) -> None:
    """A recrawl revisits a request by its own row (not its URL's GET), unconditionally."""
    got: list[tuple[str, bytes, str | None]] = []
    with Site() as site:

        def echo(req: Got) -> Reply:
            got.append((req.method, req.body, req.headers.get("If-None-Match")))
            return Reply(body=html(f"{req.method} {req.body.decode()}"), headers={"ETag": '"e"'})

        site.routes.update({"/": html("home", "/e"), "/e": echo})

        def on_page(page: Page) -> Any:
            if page.url.endswith("/"):
                yield Request("/e", "POST", data={"a": "1"}, label="x")
            yield {"url": page.url, "title": page.title, "m": page.request.method}

        out = tmp_path / "out.jsonl"
        for recrawl in (False, True):
            crawler = Crawler(
                site.url("/"), output=str(out), on_page=on_page, progress=False, recrawl=recrawl
            )
            crawler.route("x")(on_page)
            crawler.run()
    assert sorted(got, key=str) == sorted(
        [("GET", b"", None), ("GET", b"", '"e"'), ("POST", b"a=1", None), ("POST", b"a=1", None)],
        key=str,
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["title"] for r in records if r.get("run") == 2) == [
        "GET",
        "POST a=1",
        "home",
    ]
