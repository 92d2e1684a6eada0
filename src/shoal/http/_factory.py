"""Transports by name: the one place the names live (options, the command line and the
crawler all ask here). Each client is imported only when built, so its libraries load
only then."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._transport import Transport

if TYPE_CHECKING:
    from ._dns import Resolver
    from ._proxy import ProxyRules

__all__ = ["TRANSPORTS", "make_transport"]

TRANSPORTS = ("native", "urllib3")
"""Transport names: shoal's own HTTP/1.1 client, or the adapter on urllib3."""


def make_transport(
    name: str = "native",
    *,
    per_host: int = 8,
    connect_timeout: float = 10.0,
    read_timeout: float = 30.0,
    verify_tls: bool = True,
    proxies: ProxyRules | None = None,
    deny_private: bool = False,
    resolver: Resolver | None = None,
) -> Transport:
    """Build the transport called ``name`` (one of :data:`TRANSPORTS`).

    The urllib3 adapter is imported only when asked for, so urllib3 loads only then.
    ``resolver``: the name lookups (and their cache) to share with the caller, e.g. the
    crawler's own ``deny_private`` check (native client only).
    ValueError for an unknown name, or for options the urllib3 adapter cannot honour.
    (A transport object, e.g. :class:`~shoal.http.MockTransport`, is given to
    ``Crawler(transport=...)`` directly; names are for the command line.)"""
    if name == "native":
        from ._client import HTTPClient

        return HTTPClient(
            per_host=per_host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            verify_tls=verify_tls,
            proxies=proxies,
            deny_private=deny_private,
            resolver=resolver,
        )
    if name == "urllib3":
        if proxies is not None or deny_private:
            raise ValueError("the urllib3 transport supports neither proxies nor deny_private")
        from ._urllib3 import Urllib3Transport

        return Urllib3Transport(
            per_host=per_host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            verify_tls=verify_tls,
        )
    raise ValueError(f"unknown transport {name!r}; choose from {', '.join(TRANSPORTS)}")
