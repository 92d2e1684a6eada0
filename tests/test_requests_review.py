"""Review fixes for requests (#20): post/redirect/get whatever was seen, a POST's hops claim
no GET, SQLite output keyed by the request, no POST resent on a stale connection, form
secrets redacted in WARC, routes and from_form as browsers do. Real servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal import Request
from shoal.crawler import Crawler, Page
from sites import Reply, Site, html
from sites import Request as Got


def run(crawler: Crawler) -> None:
    crawler.run()


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_post_redirect_get_to_a_url_already_crawled(tmp_path: Path) -> None:
    """The form page posting to itself (303 to its own URL, already crawled as a GET) and
    two POSTs to /add both answered 303 /cart: each POST's page is fetched and handled."""
    with Site() as site:
        carts: list[int] = []

        def search(req: Got) -> Reply:
            if req.method == "POST":
                return Reply(303, "", {"Location": "/search"})
            return Reply(body=html("search form"))

        def add(req: Got) -> Reply:
            carts.append(len(carts))
            return Reply(303, "", {"Location": "/cart"})

        def cart(req: Got) -> Reply:
            return Reply(body=html(f"cart {len(carts)}"))

        site.routes.update(
            {"/": html("home", "/search", "/cart"), "/search": search, "/add": add, "/cart": cart}
        )
        out = tmp_path / "out.jsonl"
        crawler = Crawler(site.url("/"), output=str(out), progress=False, robots=False)

        @crawler.route()
        def default(page: Page) -> Any:
            if page.url.endswith("/search"):
                yield Request("/search", "POST", data={"q": "x"}, label="res", meta={"n": 0})
                yield Request("/add", "POST", data={"id": "1"}, label="res", meta={"n": 1})
                yield Request("/add", "POST", data={"id": "2"}, label="res", meta={"n": 2})
            yield from page.links

        @crawler.route("res")
        def result(page: Page) -> Any:
            yield {"n": page.request.meta["n"], "at": page.final_url, "title": page.title}

        run(crawler)
    got = sorted((r["n"], r["at"], r["title"][:4]) for r in jsonl(out) if "n" in r)
    assert got == [
        (0, site.url("/search"), "sear"),
        (1, site.url("/cart"), "cart"),
        (2, site.url("/cart"), "cart"),
    ]


def test_a_post_answered_307_claims_no_get(tmp_path: Path) -> None:
    """A POST resent by a 307 to /dest is not /dest's GET: a link to /dest is crawled."""
    with Site() as site:
        got: list[str] = []

        def dest(req: Got) -> Reply:
            got.append(req.method)
            return Reply(body=html("dest"))

        site.routes.update(
            {"/": html("home"), "/p": Reply(307, "", {"Location": "/dest"}), "/dest": dest}
        )
        out = tmp_path / "out.jsonl"
        crawler = Crawler(site.url("/"), output=str(out), progress=False, robots=False)

        @crawler.route()
        def default(page: Page) -> Any:
            if page.url == site.url("/"):
                yield Request("/p", "POST", data={"a": "1"}, label="x")

        @crawler.route("x")
        def posted(page: Page) -> Any:
            yield "/dest"  # found only once the POST's hop was fetched

        run(crawler)
    assert sorted(got) == ["GET", "POST"]


def test_a_post_redirected_to_another_host_already_seen_is_fetched_there(
    tmp_path: Path,
) -> None:
    """Across hosts the hop is queued as a GET of its own: one per POST, even if the URL
    was crawled (or another POST led there first)."""
    with Site() as other, Site() as site:
        other.routes["/landing"] = html("landing")
        site.routes.update(
            {
                "/": html("home", other.url("/landing")),
                "/post": Reply(303, "", {"Location": other.url("/landing")}),
            }
        )
        out = tmp_path / "out.jsonl"
        crawler = Crawler(
            site.url("/"),
            output=str(out),
            progress=False,
            robots=False,
        )

        @crawler.route()
        def default(page: Page) -> Any:
            if page.url == site.url("/"):
                yield from page.links
                yield Request("/post", "POST", data={"a": "1"}, label="x", meta={"n": 1})
                yield Request("/post", "POST", data={"a": "2"}, label="x", meta={"n": 2})

        @crawler.route("x")
        def posted(page: Page) -> Any:
            yield {"n": page.request.meta["n"], "at": page.final_url}

        run(crawler)
    got = sorted((r["n"], r["at"]) for r in jsonl(out) if "n" in r)
    assert got == [(1, other.url("/landing")), (2, other.url("/landing"))]
    assert other.count("/landing") == 3


def test_sqlite_output_keeps_a_row_per_request_of_one_url(tmp_path: Path) -> None:
    """Three POSTed searches to /search and its GET: four rows, as JSONL has four records;
    a GET's key is its URL as before (an older output resumes as it was)."""
    import sqlite3

    with Site() as site:

        def search(req: Got) -> Reply:
            if req.method == "GET":
                return Reply(body='<form method="post"><input name="q"></form>')
            return Reply(body=f"<p>{req.body.decode()}</p>")

        site.routes["/search"] = search
        outs = [tmp_path / "o.jsonl", tmp_path / "o.sqlite"]
        crawler = Crawler(
            site.url("/search"),
            output=[str(o) for o in outs],
            progress=False,
            robots=False,
            follow_links=False,
        )

        @crawler.route()
        def default(page: Page) -> Any:
            yield {"term": None, "text": page.css("form").get() is not None}
            for term in ("red", "blue", "green"):
                yield Request.from_form(page, {"q": term}, label="r", meta={"t": term})

        @crawler.route("r")
        def found(page: Page) -> Any:
            yield {"term": page.request.meta["t"], "text": page.css("p::text").get()}

        run(crawler)
    assert len(jsonl(outs[0])) == 4
    db = sqlite3.connect(outs[1])
    rows = db.execute("SELECT source_url, url, data FROM records").fetchall()
    db.close()
    assert len(rows) == 4
    terms = sorted(json.loads(data)["term"] or "" for _, _, data in rows)
    assert terms == ["", "blue", "green", "red"]
    keys = {key for key, _, _ in rows}
    assert site.url("/search") in keys  # the GET's
    assert len(keys) == 4 and all(k.endswith(site.url("/search")) for k in keys)


_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"


@pytest.mark.parametrize("transport", ["native", "urllib3"])
def test_a_post_is_never_sent_twice_after_a_dropped_connection(
    tmp_path: Path, transport: str
) -> None:
    """The server reads the POST and drops the connection without a byte: no resend by the
    client (a kept-alive connection, or a new one), nor by the crawl's retries; the record
    says connection. A GET on a kept-alive connection the server dropped is sent again."""
    from rawserver import raw_servers, read_request

    posts: list[int] = []
    page = b"<p>start</p>"

    def script(conn: socket.socket, index: int) -> None:
        while req := read_request(conn):
            if req.startswith(b"POST"):
                posts.append(index)
                return  # acted on it, then the connection drops: no answer
            conn.sendall(_OK % (len(page), page))

    with raw_servers() as start:
        srv = start(script)
        out = tmp_path / "out.jsonl"
        crawler = Crawler(
            srv.url + "/",
            output=str(out),
            progress=False,
            robots=False,
            concurrency=1,
            follow_links=False,
            retries=2,
            retry_backoff=0.01,
            transport=transport,
        )

        @crawler.route()
        def default(page: Page) -> Any:
            if page.request.method == "GET":
                yield Request(srv.url + "/order", "POST", data={"item": "1"})

        result = crawler.run()
    assert len(posts) == 1
    (post,) = [r for r in jsonl(out) if r.get("method") == "POST"]
    assert post["error"] == "connection"
    assert result.retries == 0


def test_a_post_that_never_left_is_retried(tmp_path: Path) -> None:
    """A POST to a port nobody listens on: no connection, so it is tried again."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with Site({"/": html("home")}) as site:
        out = tmp_path / "out.jsonl"
        crawler = Crawler(
            site.url("/"),
            output=str(out),
            progress=False,
            robots=False,
            retries=2,
            retry_backoff=0.01,
        )

        @crawler.route()
        def default(page: Page) -> Any:
            if page.url == site.url("/"):
                yield Request(f"http://127.0.0.1:{port}/order", "POST", data={"a": "1"})

        result = crawler.run()
    (post,) = [r for r in jsonl(out) if r.get("method") == "POST"]
    assert post["error"] == "connection"
    assert result.retries == 2


def test_warc_redacts_a_password_input_whatever_its_name(tmp_path: Path) -> None:
    """``<input type=password name=pw>``: from_form knows the field is a password, and the
    request carries that (through the frontier) to the WARC request record."""
    from warcio.archiveiterator import ArchiveIterator

    form = (
        '<form method=post action="/do"><input type=hidden name=csrf value=T0K>'
        "<input name=user value=bob><input type=password name=pw value=hunter2>"
        '<input name=note value="a~b*c"><button name=go value=1>Go</button></form>'
    )
    with Site({"/login": form, "/do": html("ok")}) as site:
        out = tmp_path / "out.warc.gz"
        crawler = Crawler(
            site.url("/login"),
            output=str(out),
            progress=False,
            robots=False,
            follow_links=False,
            state=str(tmp_path / "state.sqlite"),
        )

        @crawler.route()
        def default(page: Page) -> Any:
            if page.request.method == "GET":
                yield Request.from_form(page)

        run(crawler)
    bodies = []
    with open(out, "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type == "request" and rec.http_headers.protocol == "POST":
                bodies.append(rec.content_stream().read())
    assert bodies == [b"csrf=T0K&user=bob&pw=%5Bredacted%5D&note=a~b%2Ac&go=1"]


def test_a_bare_route_decorator_is_the_default(tmp_path: Path) -> None:
    with Site({"/": html("home")}) as site:
        out = tmp_path / "out.jsonl"
        crawler = Crawler(site.url("/"), output=str(out), progress=False, robots=False)

        @crawler.route
        def default(page: Page) -> Any:
            yield {"seen": page.url}

        assert callable(default)
        run(crawler)
    assert jsonl(out) == [{"seen": site.url("/")}]
    with pytest.raises(shoal.UsageError, match="two default handlers"):
        Crawler(site.url("/"), on_page=lambda page: None).route(lambda page: None)


def test_a_route_glob_with_a_query_is_refused() -> None:
    crawler = Crawler("http://a.test/")
    with pytest.raises(shoal.UsageError, match="path only, not its query"):
        crawler.route(glob="/item?id=*")(lambda page: None)
    crawler.route(glob="/item?")(lambda page: None)  # '?' as one character of a path


def form_page(body: str | bytes, content_type: str = "text/html") -> Page:
    from shoal.crawler import Fetched

    url = "http://a.test/dir/page"
    data = body.encode() if isinstance(body, str) else body
    return Page.over(
        Fetched(url, url, 200, {"content-type": content_type}, data), depth=0, referrer=None
    )


def test_from_form_as_browsers_submit() -> None:
    post = "<form method=post>%s</form>"
    textarea = Request.from_form(form_page(post % "<textarea name=t>\na\nb\r\nc</textarea>"))
    assert textarea.body == b"t=a%0D%0Ab%0D%0Ac"
    latin1 = form_page(
        (post % '<input name=q value="caf\xe9">').encode("latin-1"),
        "text/html; charset=iso-8859-1",
    )
    assert Request.from_form(latin1).body == b"q=caf%E9"
    assert Request.from_form(latin1, {"q": "\u20ac"}).body == b"q=%26%238364%3B"  # &#8364;
    charset = '<form method=post accept-charset="utf-8"><input name=q value="caf\xe9"></form>'
    accepted = form_page(charset.encode("latin-1"), "text/html; charset=iso-8859-1")
    assert Request.from_form(accepted).body == b"q=caf%C3%A9"
    button = Request.from_form(
        form_page(
            "<form action=/a><input name=q value=1>"
            "<button name=b formaction=/b formmethod=post value=2>x</button></form>"
        )
    )
    assert (button.method, button.url, button.body) == ("POST", "http://a.test/b", b"q=1&b=2")
    fieldset = Request.from_form(
        form_page(
            post % "<fieldset disabled><legend><input name=l value=1></legend>"
            "<input name=a value=1></fieldset><input name=b value=2>"
        )
    )
    assert fieldset.body == b"l=1&b=2"
    image = form_page(post % "<input name=a value=1><input type=image name=img src=x.png>")
    assert Request.from_form(image).body == b"a=1&img.x=0&img.y=0"
    other = form_page("<form id=A method=post><input name=a value=1 form=B></form><form id=B>")
    assert Request.from_form(other).body == b""
    with pytest.raises(shoal.UsageError, match="text/plain"):
        Request.from_form(form_page('<form method=post enctype="text/plain"></form>'))
    with pytest.raises(shoal.UsageError, match="not str"):
        Request.from_form(form_page(post % ""), "a=1")  # type: ignore[arg-type]
    with pytest.raises(shoal.UsageError, match="not a name and a value"):
        Request.from_form(form_page(post % ""), ["a"])  # type: ignore[list-item]
    with pytest.raises(shoal.UsageError, match="no <form>"):
        Request.from_form(form_page('{"a": 1}', "application/json"))


def test_a_held_back_post_in_a_recrawl_reads_its_own_last_capture() -> None:
    """A POST held back (robots.txt unreachable) in a recrawl run: the last capture it
    keeps is its own row's (its request's fingerprint), not its URL's GET's."""
    import threading

    from shoal.crawler import CrawlOptions, CrawlResult
    from shoal.crawler._fetch import HTTPFetcher
    from shoal.crawler._jobs import Jobs, Revisit, _fingerprint
    from shoal.crawler._records import Records
    from shoal.crawler._robots import RobotsRules
    from shoal.crawler._urls import Scope
    from shoal.crawler.frontier import JobKind, Lease, MemoryFrontier
    from shoal.http import MockTransport, Response

    asked: list[int] = []

    def prior(fp: int) -> None:
        asked.append(fp)

    url = "http://a.test/form"
    post = Request(url, "POST", data={"a": "1"})
    job = Lease("1", url, "http://a.test", JobKind.PAGE, 1, None, 1, post._encode())
    jobs = Jobs(
        CrawlOptions(),
        scope=Scope.for_start_urls([url]),
        frontier=MemoryFrontier(),
        fetcher=HTTPFetcher(MockTransport(lambda r: Response(200, {}, b"")), user_agent="t"),
        guard=None,
        records=Records(None, follow_links=True, extract={}, save_bodies=False),
        formats=["jsonl"],
        result=CrawlResult(),
        lock=threading.Lock(),
        stopping=lambda: False,
        revisit=Revisit(2, prior),
    )
    rules = RobotsRules(deny_all=True, reason="down", error="connection", detail="refused")
    jobs._held_back(job, rules)
    assert asked == [_fingerprint(job)]
