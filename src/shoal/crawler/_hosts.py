"""Settings per host: ``Crawler(hosts={"example.com": {"delay": 2.0}})``, and the
``[hosts."example.com"]`` tables of ``shoal crawl --config``.

A host pattern is a host name, which matches every port of that host (and both schemes),
or ``name:port``, which pins one port (``example.com:443`` is ``https://example.com``).
Where both match a host, each setting comes from ``name:port`` if it sets it, else from
``name``, else from the crawl's option of the same name.

To add a setting (headers, a render mode, credentials): a field of :class:`HostSettings`
(None: the crawl's value) with a ``check`` in its metadata (value -> error text or None).
``Crawler(hosts=...)``, the ``[hosts."NAME"]`` tables of ``shoal crawl --config`` (the
field ``x_y`` is the key ``x-y``; a TOML table arrives as a dict), the errors and the
docs' key list follow from the fields; what the crawl does with it reads
:meth:`CrawlOptions.host_settings` (the host's settings, ``name:port`` over ``name`` field
by field). Politeness (``per_host``, ``delay``) is the frontier's: :func:`paces` hands it
down as ``state._jobs.HostPace``.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from .._errors import UsageError, literal
from ..state._jobs import HostPace, host_name_port

__all__ = [
    "HOST_KEYS",
    "RENDER_MODES",
    "HostError",
    "HostSettings",
    "host_settings",
    "normalize_pattern",
    "paces",
    "settings_for",
]


RENDER_MODES = ("never", "auto", "always")


def _check_per_host(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer (got {value!r})"
    return None if value >= 1 else f"must be at least 1 (got {value})"


def _check_delay(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds (got {value!r})"
    return None if 0 <= value < math.inf else f"must be at least 0 seconds (got {value})"


def _check_headers(value: object) -> str | None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return "must be a table of header names to string values, e.g. {'Accept-Language': 'en'}"
    return None


def _check_auth(value: object) -> str | None:
    if isinstance(value, str):
        user, colon, _ = value.partition(":")
        if colon and user:
            return None
    elif (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(x, str) for x in value)
        and value[0]
        and ":" not in value[0]
    ):
        return None
    # Never repeat the value: it holds a password.
    return "must be 'USER:PASSWORD' (or a (user, password) pair in Python)"


def _check_render(value: object) -> str | None:
    if isinstance(value, str) and value in RENDER_MODES:
        return None
    return f"must be never, auto or always (got {value!r})"


Check = Callable[[object], str | None]


@dataclass(frozen=True)
class HostSettings:
    """One host pattern's own settings; None leaves the crawl's option of that name."""

    # Requests in flight to the host at most (capped by ``concurrency``).
    per_host: int | None = field(default=None, metadata={"check": _check_per_host})
    # Seconds between request starts on the host; a larger robots.txt Crawl-delay wins,
    # and auto-throttle never goes below it (as with ``delay``).
    delay: float | None = field(default=None, metadata={"check": _check_delay})
    # Headers sent to the host, as ``header_for`` sends them (over https; over http
    # only where a start URL on the host is http): an API key, a language.
    headers: Mapping[str, str] | None = field(
        default=None, repr=False, metadata={"check": _check_headers}
    )
    # HTTP Basic credentials for the host, ``"USER:PASSWORD"`` or ``(user, password)``:
    # an ``Authorization`` header sent as ``headers`` are (a secret, never shown).
    auth: str | tuple[str, str] | None = field(
        default=None, repr=False, metadata={"check": _check_auth}
    )
    # The host's pages rendered ``never``, ``auto`` or ``always`` in place of --render
    # (a host that sets one renders even when --render is never).
    render: str | None = field(default=None, metadata={"check": _check_render})


# The keys a host table takes (Python spelling), in the order of the fields.
HOST_KEYS: tuple[str, ...] = tuple(f.name for f in fields(HostSettings))


class HostError(UsageError):
    """A bad ``hosts`` entry. Like :class:`OptionError`, the message names keys as
    ``{name}`` placeholders, so the command line can spell them as its config file does
    (``per-host``)."""

    field = "hosts"

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.named(lambda name: name))


def _url_hint(text: str) -> str | None:
    """The host pattern a URL given as a host key was meant as."""
    try:
        parts = urlsplit(text if "://" in text else "//" + text)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def normalize_pattern(text: object) -> str:
    """A host key as the frontier matches it (lower case, IDNA, IPv6 in brackets, a
    port without leading zeros), or HostError saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise HostError("{hosts} " + literal(f"{text!r} is not a host name"))
    raw = text.strip()
    if "://" in raw or "/" in raw or "@" in raw or "?" in raw or "#" in raw:
        hint = _url_hint(raw)
        how = literal(f": write {hint!r}") if hint else ""
        raise HostError(
            "{hosts} " + literal(f"{raw!r} is a URL, not a host (a name, or name:port)") + how
        )
    name, port = raw, None
    close = raw.rfind("]")
    colon = raw.rfind(":")
    if raw.startswith("["):
        if close < 0:
            raise HostError("{hosts} " + literal(f"{raw!r}: an IPv6 address misses its ']'"))
        name = raw[: close + 1]
        rest = raw[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise HostError("{hosts} " + literal(f"{raw!r} is not a host (or host:port)"))
            port = rest[1:]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise HostError("{hosts} " + literal(f"{raw!r}: not an IPv6 address")) from None
        name = f"[{ipaddress.IPv6Address(name[1:-1]).compressed}]"
    elif colon >= 0:
        if raw.count(":") > 1:
            raise HostError(
                "{hosts} " + literal(f"{raw!r}: write an IPv6 address in brackets, [::1]")
            )
        name, port = raw[:colon], raw[colon + 1 :]
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise HostError("{hosts} " + literal(f"{raw!r}: the port must be 1 to 65535"))
        port = str(int(port))
    if not name.startswith("["):
        if "*" in name:
            raise HostError(
                "{hosts} "
                + literal(f"{raw!r}: no wildcards; a name is that host (every port of it)")
            )
        name = name.rstrip(".").lower()
        try:
            name = name.encode("idna").decode("ascii") if not name.isascii() else name
        except UnicodeError:
            raise HostError("{hosts} " + literal(f"{raw!r} is not a host name")) from None
        if not name or any(c.isspace() for c in name):
            raise HostError("{hosts} " + literal(f"{raw!r} is not a host name"))
    return name if port is None else f"{name}:{port}"


def _suggest(key: str, known: tuple[str, ...]) -> str:
    import difflib  # only for a misspelt key: kept out of every crawl's start-up

    close = difflib.get_close_matches(key.replace("-", "_").lower(), known, n=1)
    return f"; did you mean {{{close[0]}}}?" if close else ""


def _settings(pattern: str, value: object) -> HostSettings:
    if isinstance(value, HostSettings):
        given: Mapping[str, Any] = {f.name: getattr(value, f.name) for f in fields(value)}
    elif isinstance(value, Mapping):
        given = value
    else:
        raise HostError(
            "{hosts} "
            + literal(f"{pattern!r}: give a mapping of settings or a HostSettings, not {value!r}")
        )
    where = "{hosts} " + literal(f"{pattern!r}: ")
    for key in given:
        if key not in HOST_KEYS:
            keys = ", ".join(f"{{{k}}}" for k in HOST_KEYS)
            raise HostError(
                where
                + literal(f"unknown setting {key!r}")
                + _suggest(str(key), HOST_KEYS)
                + f" (a host takes {keys})"
            )
    for f in fields(HostSettings):
        v = given.get(f.name)
        if v is None:
            continue
        check: Check = f.metadata["check"]
        why = check(v)
        if why is not None:
            raise HostError(where + f"{{{f.name}}} " + literal(why))
    return HostSettings(**{k: v for k, v in given.items() if v is not None})


def host_settings(hosts: object) -> dict[str, HostSettings]:
    """``hosts`` checked: pattern -> settings, with patterns normalized."""
    if not isinstance(hosts, Mapping):
        raise HostError("{hosts} maps host names to their settings " + literal(f"(got {hosts!r})"))
    out: dict[str, HostSettings] = {}
    for key, value in hosts.items():
        pattern = normalize_pattern(key)
        if pattern in out:
            raise HostError("{hosts} " + literal(f"name the host {pattern!r} twice"))
        out[pattern] = _settings(str(key), value)
    return out


def settings_for(hosts: Mapping[str, HostSettings], host: str) -> HostSettings:
    """The settings of host key ``host`` (``scheme://host[:port]``): each field from its
    ``name:port`` pattern if that sets it, else from its ``name`` pattern, else None."""
    if not hosts:
        return HostSettings()
    name, port = host_name_port(host)
    pinned = hosts.get(f"{name}:{port}")
    named = hosts.get(name)
    if pinned is None or named is None:
        return pinned or named or HostSettings()
    merged = {
        f.name: getattr(named, f.name)
        if getattr(pinned, f.name) is None
        else getattr(pinned, f.name)
        for f in fields(HostSettings)
    }
    return HostSettings(**merged)


def paces(
    hosts: Mapping[str, HostSettings],
    *,
    concurrency: int | None,
    auto_throttle: bool = False,
    throttle_start: float = 0.0,
) -> dict[str, HostPace]:
    """What the frontier paces each pattern by: ``per_host`` capped by ``concurrency``
    (None: as configured);
    with auto-throttle, a host's first delay is its ``delay`` or ``throttle_start``,
    whichever is larger (as the crawl's ``initial_delay``)."""
    out = {}
    for pattern, s in hosts.items():
        if s.per_host is None and s.delay is None:
            continue
        delay = s.delay
        if delay is not None and auto_throttle:
            delay = max(delay, throttle_start)
        per_host = s.per_host
        if per_host is not None and concurrency is not None:
            per_host = min(per_host, concurrency)
        out[pattern] = HostPace(per_host, delay)
    return out
