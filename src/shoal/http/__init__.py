"""shoal's HTTP transport, below the crawler: one contract (``Transport``, ``Response``,
``TransportError`` with an ``ErrorKind``) and two clients that implement it.

    _transport  the contract: Transport, Response, TransportError, ErrorKind
    _factory    transport names (TRANSPORTS) and make_transport
    _mock       MockTransport: responses from a function, for tests (no server)
    _client     shoal's own HTTP/1.1 client: keep-alive pool, timeouts, proxies, deny_private
    _response   reading one response: llhttp framing, bounded decoding
    _dns        bounded, cached name resolution; which addresses are public
    _proxy      proxy rules (environment, no_proxy, pools) and CONNECT credentials
    _tunnel     the CONNECT tunnel to an https origin through a proxy
    _urllib3    the same contract on urllib3 (for comparison, and as a fallback)

It knows nothing of crawling: no URLs in scope, no robots.txt, no records. Importing this
package loads only the contract; a client's libraries (httptools, urllib3) load when the
client is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._dns import Resolver, is_public_address
from ._factory import TRANSPORTS, make_transport
from ._mock import MockTransport, Request
from ._proxy import MAX_RETIRE_AFTER, RETIRE_AFTER, Proxy, ProxyRules, ProxyStats
from ._transport import ErrorKind, Response, Transport, TransportError

if TYPE_CHECKING:
    from ._client import HTTPClient

__all__ = [
    "MAX_RETIRE_AFTER",
    "RETIRE_AFTER",
    "TRANSPORTS",
    "ErrorKind",
    "HTTPClient",
    "MockTransport",
    "Proxy",
    "ProxyRules",
    "ProxyStats",
    "Request",
    "Resolver",
    "Response",
    "Transport",
    "TransportError",
    "is_public_address",
    "make_transport",
]

_LAZY = {"HTTPClient": "._client"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal.http' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
