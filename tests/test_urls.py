"""URL canonicalization, link resolution and scope."""

from __future__ import annotations

import random
from urllib.parse import urljoin

import pytest

from shoal import InvalidURL
from shoal.crawler._urls import (
    MAX_URL_LENGTH,
    LinkResolver,
    Refused,
    Scope,
    canonicalize,
    host_key,
    join_url,
    parse_start_url,
    why_refused,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTP://Example.COM:80/a/B", "http://example.com/a/B"),  # path case kept
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/?b=2&a=1&a=0", "http://example.com/?a=0&a=1&b=2"),
        ("http://example.com/?flag", "http://example.com/?flag="),
        ("http://example.com/%7euser/%2f", "http://example.com/~user/%2F"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
        ("http://b\u00fccher.example/", "http://xn--bcher-kva.example/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://user:pw@Example.com/", "http://example.com/"),  # userinfo dropped
    ],
)
def test_canonicalize(raw: str, canonical: str) -> None:
    assert canonicalize(raw) == canonical
    assert canonicalize(canonical) == canonical  # idempotent


@pytest.mark.parametrize("bad", ["http://", "http://host:99999/", "http://host:port/"])
def test_canonicalize_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        canonicalize(bad)


def test_resolver_matches_the_general_path() -> None:
    """The fast resolver must agree with urljoin + canonicalize on every link."""
    rng = random.Random(42)
    bases = ["http://h.example/", "http://h.example/a/b/c.html?q=1", "https://h.example:8443/d/"]
    # No empty segments: urljoin folds "a//b" to "a/b", which RFC 3986 does not.
    pieces = ["a", "b", "..", ".", "x y", "%7e", "%2F", "caf\u00e9", "Q"]
    queries = ["", "?b=1&a=2", "?a=1", "?z", "?a=%20"]
    prefixes = ["", "/", "./", "../", "//h.example/", "http://H.example:80/", "https://h.example/"]
    for _ in range(3000):
        base = rng.choice(bases)
        path = "/".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))
        href = rng.choice(prefixes) + path + rng.choice(queries) + rng.choice(["", "#f"])
        expected = None
        if href.strip() and not href.strip().startswith("#"):
            expected = canonicalize(urljoin(base, href.strip()))
        assert LinkResolver(base).resolve(href) == expected, (base, href)


def test_non_http_links_are_dropped() -> None:
    base = "http://h.example/x"
    for href in [
        "mailto:a@b",
        "javascript:void(0)",
        "tel:123",
        "ftp://h.example/f",
        "#top",
        "",
        "data:text/html,hi",
    ]:
        assert join_url(base, href) is None, href
    assert join_url(base, "page?x=a:b") == "http://h.example/page?x=a:b"


UNFETCHABLE = [
    "http://h.example:0/x",  # a port number, but none a connection can be made to
    "//h.example:0/y",
    "http:///x",  # no host
    "http://:80/x",
    "https://user@:443/x",
    "http://h.example:65536/x",  # beyond the port range
    "http://h.example:99999999/x",
    "/" + "y" * MAX_URL_LENGTH,  # too long to send
]


def test_unfetchable_links_are_refused_and_counted() -> None:
    base = "http://h.example/dir/page"
    refused = Refused()
    resolver = LinkResolver(base, refused)
    for href in UNFETCHABLE:
        assert resolver.resolve(href) is None, href
        assert join_url(base, href) is None, href
    # Links of other schemes and fragments are not web links: dropped, not refused.
    for href in ("mailto:a@b", "javascript:void(0)", "#top", "", "data:,x", "ftp://h/f"):
        assert resolver.resolve(href) is None
    assert refused.count == len(UNFETCHABLE) and refused.first == UNFETCHABLE[0]
    assert why_refused(base, UNFETCHABLE[0]) == "port 0 cannot be connected to"
    assert why_refused(base, "http:///x") == "no host"
    with pytest.raises(InvalidURL, match="port 0"):
        parse_start_url("http://h.example:0/")


def test_host_key() -> None:
    assert host_key("http://h.example:81/a?b") == "http://h.example:81"
    assert host_key("https://h.example") == "https://h.example"


def test_scope() -> None:
    scope = Scope.for_start_urls(["http://www.example.com/"], exclude=[r"\.pdf$"], max_depth=2)
    assert scope.allows("http://example.com/a")
    assert scope.allows("http://sub.example.com:8080/a")
    assert not scope.allows("http://notexample.com/")
    assert not scope.allows("http://example.com/x.pdf")
    assert not scope.allows("http://example.com/a", depth=3)
    assert scope.allows("http://user@example.com/")


def test_overlong_urls_are_not_followed() -> None:
    base = "http://h.example/dir/page"
    fits = "x" * (MAX_URL_LENGTH - len("http://h.example/dir/"))
    assert join_url(base, fits) == "http://h.example/dir/" + fits
    for href in (fits + "y", "/" + "y" * MAX_URL_LENGTH, "z" * (10 * MAX_URL_LENGTH)):
        assert join_url(base, href) is None
    # Percent-encoding can make a URL longer than its text: the canonical form counts.
    with pytest.raises(ValueError, match="longer than"):
        canonicalize("http://h.example/" + "é" * (MAX_URL_LENGTH // 4))
    with pytest.raises(InvalidURL, match="longer than") as caught:
        parse_start_url("http://h.example/" + "a" * MAX_URL_LENGTH)
    assert len(str(caught.value)) < 400  # the message shows the start of the URL only


def test_a_page_counts_the_links_it_refused() -> None:
    from shoal.crawler import Page

    hrefs = ["/a", "http://h.example:0/x", "http:///y", "mailto:a@b", "#top", "/a"]
    body = "".join(f'<a href="{h}">x</a>' for h in hrefs).encode()
    page = Page(
        url="http://h.example/",
        final_url="http://h.example/",
        status=200,
        headers={"content-type": "text/html"},
        body=body,
        depth=0,
        referrer=None,
        elapsed=0.0,
    )
    assert page.refused_links == 2 and page.links == ["http://h.example/a"]
