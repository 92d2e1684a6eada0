"""One URL splitter (shoal._url.split_url) and every part of shoal agreeing through it.

The rule for credentials: ``user:password@`` is split off as ``userinfo``; it is never
part of a host, an authority (Host header), a host key or a canonical URL. Only a proxy
URL's userinfo is used, as its Proxy-Authorization.
"""

from __future__ import annotations

import base64

import pytest

from shoal._url import split_url
from shoal.crawler._urls import Scope, canonicalize, host_key
from shoal.http import TransportError
from shoal.http._client import _split_url as http_split
from shoal.http._proxy import Proxy

TRICKY = [
    # (url, host, userinfo)
    ("http://user:pw@example.com/a", "example.com", "user:pw"),
    ("http://a@b@example.com:8080/", "example.com", "a@b"),
    ("http://good.example@evil.example/", "evil.example", "good.example"),
    ("https://u@[::1]:8443/x?y", "::1", "u"),
    ("http://EXAMPLE.com/", "example.com", ""),
    ("http://example.com#@evil.example/", "example.com", ""),
    ("http://example.com?@evil.example/", "example.com", ""),
    ("http://example.com/@evil.example/", "example.com", ""),
]


@pytest.mark.parametrize(("url", "host", "userinfo"), TRICKY)
def test_split_url_takes_credentials_off_the_host(url: str, host: str, userinfo: str) -> None:
    parts = split_url(url)
    assert parts.host == host and parts.userinfo == userinfo
    assert "@" not in parts.authority


@pytest.mark.parametrize(("url", "host", "userinfo"), TRICKY)
def test_every_user_of_urls_agrees_on_the_host(url: str, host: str, userinfo: str) -> None:
    canonical = canonicalize(url)
    assert "@" not in canonical.split("/")[2], canonical  # canonical URLs drop userinfo
    key = host_key(canonical)
    assert split_url(key).host == host
    _scheme, http_host, _port, authority, _target = http_split(url)
    assert http_host == host and "@" not in authority  # credentials are never sent
    assert Scope([host]).allows(canonical)
    # Scope reads the host the same way even from a URL that still has userinfo.
    assert Scope([host]).allows(url)
    if userinfo:
        assert not Scope([userinfo.rpartition("@")[2].partition(":")[0]]).allows(url)


def test_the_request_target_and_host_header() -> None:
    parts = split_url("http://u:p@Example.com:8080?q=1#frag")
    assert parts.target == "/?q=1" and parts.authority == "example.com:8080"
    assert parts.effective_port == 8080
    assert split_url("https://h/").effective_port == 443
    assert http_split("http://u:p@h:81/a?b#c") == ("http", "h", 81, "h:81", "/a?b")


@pytest.mark.parametrize("url", ["http://h:99999/", "http://h:port/", "http://[::1/"])
def test_bad_authorities_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        split_url(url)
    with pytest.raises(ValueError):
        canonicalize(url)
    with pytest.raises(TransportError):
        http_split(url)


def test_line_breaks_never_reach_a_request() -> None:
    # The splitter drops tabs and line breaks (as browsers do); the HTTP client refuses
    # them instead of sending a request that differs from the URL it was given.
    assert split_url("http://h/a\r\nb").path == "/ab"
    with pytest.raises(TransportError, match="CR, LF"):
        http_split("http://h/a\r\nX-Injected: 1")


def test_a_proxy_url_keeps_its_credentials() -> None:
    proxy = Proxy.parse("http://us%3Aer:p%40ss@proxy.example:3128")
    assert (proxy.host, proxy.port) == ("proxy.example", 3128)
    assert proxy.authorization == "Basic " + base64.b64encode(b"us:er:p@ss").decode()
    assert Proxy.parse("proxy.example").port == 80
    with pytest.raises(ValueError, match="bad port"):
        Proxy.parse("http://proxy.example:99999")
