"""Forward proxies: which one a URL goes through, and how to talk to it.

Plain ``http://`` URLs are sent to the proxy as absolute-form requests
(``GET http://host/path``); ``https://`` URLs go through a ``CONNECT`` tunnel, and TLS is
then spoken end to end with the real host, whose certificate is verified as usual.
Credentials in the proxy URL become a ``Proxy-Authorization: Basic`` header.

By default the rules come from the environment, as in curl, wget and requests:
``http_proxy``, ``https_proxy`` (or ``all_proxy``) and ``no_proxy``, in either case.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote

from .._url import redact_userinfo, split_url

__all__ = ["Proxy", "ProxyRules"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # a Proxy-Authorization value, from the URL's user:password

    @property
    def key(self) -> str:
        """Names the proxy in connection-pool keys (credentials included: other
        credentials must not share a tunnel)."""
        return f"{self.host}:{self.port}#{self.authorization or ''}"

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """``http://[user:password@]host[:port]``; raises ValueError with the reason."""
        shown = redact_userinfo(url)  # messages never repeat the password
        text = url.strip()
        if "://" not in text:
            text = "http://" + text  # "proxy:3128", as curl accepts
        try:
            parts = split_url(text)
        except ValueError as exc:
            raise ValueError(f"proxy {shown!r}: {exc}") from None
        if parts.scheme != "http":
            raise ValueError(
                f"proxy {shown!r}: only http:// proxies are supported (https:// URLs are "
                "tunnelled through them with CONNECT)"
            )
        port = parts.port if parts.port is not None else 80
        if port == 0:
            raise ValueError(f"proxy {shown!r}: bad port")
        if not parts.host:
            raise ValueError(f"proxy {shown!r}: no host")
        authorization = None
        if parts.userinfo:
            user, _colon, password = parts.userinfo.partition(":")
            user_pass = f"{unquote(user)}:{unquote(password)}"
            token = base64.b64encode(user_pass.encode("utf-8")).decode("ascii")
            authorization = f"Basic {token}"
        return cls(parts.host, port, authorization)


class ProxyRules:
    """Which proxy, if any, serves a URL.

    ``no_proxy`` is a comma-separated list of exceptions, read as curl reads it: ``*``
    alone (every host), or host names that also cover their subdomains (``example.com``,
    ``.example.com``), IP addresses and networks (``10.0.0.0/8``). Ports in entries are
    ignored.
    """

    def __init__(
        self, *, http: str | None = None, https: str | None = None, no_proxy: str = ""
    ) -> None:
        self.http = Proxy.parse(http) if http else None
        self.https = Proxy.parse(https) if https else None
        self.no_proxy = no_proxy
        self._bypass_all = no_proxy.strip() == "*"  # only the whole value, as in curl
        self._domains: list[str] = []
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in no_proxy.split(","):
            entry = raw.strip().lower()
            if entry.startswith("[") and "]" in entry:  # [::1]:8080
                entry = entry[1 : entry.index("]")]
            elif entry.count(":") == 1:
                entry = entry.partition(":")[0]
            entry = entry.strip(".")
            if not entry or entry == "*":
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._domains.append(entry)

    @classmethod
    def from_environment(cls) -> ProxyRules | None:
        """The environment's rules, or None when it names no proxy it can use.

        A proxy the environment names but shoal cannot speak to (socks, https) is
        skipped with a warning rather than failing every crawl: the variable is often
        set for other programs.
        """
        env = urllib.request.getproxies_environment()
        fallback = env.get("all")
        usable = {}
        for scheme in ("http", "https"):
            url = env.get(scheme, fallback)
            if not url:
                continue
            try:
                Proxy.parse(url)
            except ValueError as exc:
                logger.warning("ignoring the %s proxy from the environment: %s", scheme, exc)
                continue
            usable[scheme] = url
        if not usable:
            return None
        return cls(**usable, no_proxy=env.get("no", ""))

    @classmethod
    def single(cls, url: str) -> ProxyRules:
        """One proxy for every URL, but for the environment's no_proxy hosts (as curl
        does with -x)."""
        return cls(
            http=url, https=url, no_proxy=urllib.request.getproxies_environment().get("no", "")
        )

    def for_url(self, scheme: str, host: str) -> Proxy | None:
        proxy = self.https if scheme == "https" else self.http
        if proxy is None:
            return None
        return None if self._bypassed(host.lower().rstrip(".")) else proxy

    def _bypassed(self, host: str) -> bool:
        if self._bypass_all:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return any(host == d or host.endswith("." + d) for d in self._domains)
        return any(address in network for network in self._networks)
