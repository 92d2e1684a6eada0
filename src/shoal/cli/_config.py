"""``shoal crawl --config crawl.toml``: a file of command-line options, and settings per host.

Every option of the command is a key under its long name without the dashes
(``max-pages = 500``, ``output = "pages.jsonl"``); the keys are read off the command's
click parameters, so an option added to the command is a key at once. A flag is a boolean
under its positive name (``robots = false`` is ``--no-robots``, ``progress = false`` is
``--no-progress``, ``state = false`` is ``--no-state``); a repeatable option is an array;
``urls`` the start URLs. ``[hosts."example.com"]`` tables are ``Crawler(hosts=...)``, their
keys spelled the same way (``per-host``).

The file gives the command's defaults (click's ``default_map``): what is typed on the
command line wins, an array included (``--include X`` replaces the file's ``include``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from .._errors import UsageError
from ..crawler._hosts import HOST_KEYS, HostError, host_settings
from ..crawler._options import BOUNDED_FIELDS, OptionError, check_bounds

if TYPE_CHECKING:
    import tomllib

__all__ = [
    "CONFIG_META",
    "ConfigFile",
    "apply_config",
    "config_keys",
    "config_of",
    "load_config",
    "settle",
    "spell_host_key",
]

CONFIG_META = "shoal.config"  # ctx.meta key of the loaded ConfigFile


@dataclass
class ConfigFile:
    path: str
    defaults: dict[str, Any]  # click parameter name -> value (the command's default_map)
    hosts: dict[str, Any] = field(default_factory=dict)  # Crawler(hosts=...)


@dataclass(frozen=True)
class _Key:
    param: click.Parameter
    negated: bool = False  # a --no-X flag, written X = false


def _long_name(param: click.Parameter) -> str | None:
    if isinstance(param, click.Argument):
        return param.name
    opts = [o for o in param.opts if o.startswith("--")]
    return opts[0][2:] if opts else None


def config_keys(command: click.Command) -> dict[str, list[_Key]]:
    """Every key the file takes for ``command``: each parameter under its first long
    name; a ``--no-X`` flag also (or only) under ``X``, negated."""
    keys: dict[str, list[_Key]] = {}
    for param in command.params:
        name = _long_name(param)
        if name is None or param.name in ("config", "help") or param.expose_value is False:
            continue
        if (
            isinstance(param, click.Option)
            and param.is_flag
            and not param.secondary_opts
            and name.startswith("no-")
        ):
            keys.setdefault(name[3:], []).append(_Key(param, negated=True))
            continue
        keys.setdefault(name, []).append(_Key(param))
    return keys


def spell_host_key(name: str) -> str:
    """A name a HostError's template holds, as the config file spells it."""
    return "[hosts]" if name == "hosts" else name.replace("_", "-")


def _line_of(text: str, key: str, table: tuple[str, ...] = ()) -> int | None:
    """The line (1-based) where ``key`` is set in ``table`` (``()``: the top), if it is
    written plainly there (``key = ...``); None otherwise (dotted keys, inline tables)."""
    current: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            import tomllib

            try:
                parsed = tomllib.loads(stripped)
            except tomllib.TOMLDecodeError:
                continue
            path: list[str] = []
            node: Any = parsed
            while isinstance(node, dict) and len(node) == 1:
                ((name, node),) = node.items()
                path.append(name)
            current = tuple(path)
            if current == table and key == "":
                return number
            continue
        if current != table or not key:
            continue
        m = re.match(r"""\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""", line)
        if m and next(g for g in m.groups() if g is not None) == key:
            return number
    return None


def _toml_error(exc: tomllib.TOMLDecodeError, path: str, text: str) -> str:
    """tomllib's message, naming the key when it only says "Cannot overwrite a value": a
    key set twice (its line is in the message; the key is read off that line)."""
    message = str(exc)
    m = re.fullmatch(r"Cannot overwrite a value \(at line (\d+), column \d+\)", message)
    lines = text.splitlines()
    if m is not None and 0 < int(m.group(1)) <= len(lines):
        key = re.match(r"\s*([^=]+?)\s*=", lines[int(m.group(1)) - 1])
        if key is not None:
            return f"{path}, line {m.group(1)}: {key.group(1)} is set twice (not valid TOML)"
    return f"{path}: not valid TOML: {message}"


class _Errors:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, message: str, key: str = "", table: tuple[str, ...] = ()) -> UsageError:
        line = _line_of(self.text, key, table)
        where = f"{self.path}, line {line}" if line else self.path
        return UsageError(f"{where}: {message}")


def _suggest(key: str, known: list[str]) -> str:
    dashed = key.replace("_", "-")
    if dashed in known and dashed != key:
        return f"; did you mean {dashed!r}? (keys are spelled as the options are)"
    import difflib  # only for a misspelt key: kept out of every crawl's start-up

    close = difflib.get_close_matches(dashed.lower(), known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return "a number" if math.isfinite(value) else "an infinite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _scalar(param: click.Parameter, value: object) -> tuple[bool, str]:
    """Does one value fit ``param``'s type (for ``nargs`` N > 1: an array of N values, as
    ``--header-for HOST 'NAME: VALUE'`` takes two)? And the type's name, for the error."""
    if param.nargs > 1:
        kinds = (
            list(param.type.types)
            if isinstance(param.type, click.Tuple)
            else [param.type] * param.nargs
        )
        fits = [_one(kind, None)[1] for kind in kinds]
        what = f"an array of {param.nargs} ({', '.join(fits)})"
        if not isinstance(value, list) or len(value) != param.nargs:
            return False, what
        return all(_one(kind, v)[0] for kind, v in zip(kinds, value, strict=True)), what
    return _one(param.type, value)


def _one(kind: click.ParamType[Any], value: object) -> tuple[bool, str]:
    if isinstance(kind, click.types.IntParamType):
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if isinstance(kind, click.types.FloatParamType):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value), "a number"  # type: ignore[arg-type]
    if isinstance(kind, click.Choice):
        choices = [str(c) for c in kind.choices]
        return value in choices, "one of " + ", ".join(repr(c) for c in choices)
    if isinstance(kind, click.types.StringParamType | click.Path | click.File):
        return isinstance(value, str), "a string"
    if kind.name == "duration":
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        return ok, "a duration (a string like '6h', or seconds)"
    return not isinstance(value, dict | list), f"a {kind.name}"


def _convert(key: str, keys: list[_Key], value: object, errors: _Errors) -> tuple[str, object]:
    """The click parameter ``key = value`` sets, and its value; UsageError if it fits none."""
    wanted = []
    for k in keys:
        p = k.param
        if k.negated:
            if isinstance(value, bool):
                return p.name or key, not value
            wanted.append("a boolean")
            continue
        if isinstance(p, click.Option) and p.is_flag and not p.count:
            if isinstance(value, bool):
                return p.name or key, value
            wanted.append("a boolean")
            continue
        if isinstance(p, click.Option) and p.count:
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return p.name or key, value
            wanted.append("an integer (0 or more)")
            continue
        if p.multiple or (isinstance(p, click.Argument) and p.nargs == -1):
            # A repeatable option: an array, or one value for an array of one.
            one = not isinstance(value, list) or (p.nargs > 1 and _scalar(p, value)[0])
            items = [value] if one else value
            assert isinstance(items, list)
            if all(_scalar(p, v)[0] for v in items):
                return p.name or key, list(items)
            what = _scalar(p, None)[1]
            wanted.append(f"{what} or an array of them")
            continue
        ok, what = _scalar(p, value)
        if ok:
            return p.name or key, value
        wanted.append(what)
    raise errors.fail(
        f"{key} must be {' or '.join(dict.fromkeys(wanted))}, not {_toml_type(value)} ({value!r})",
        key,
    )


def _hosts(raw: object, errors: _Errors) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise errors.fail(
            '[hosts] holds one table per host: [hosts."example.com"] with its keys', "hosts"
        )
    known = [k.replace("_", "-") for k in HOST_KEYS]
    out: dict[str, Any] = {}
    for name, table in raw.items():
        where = ("hosts", name)
        if not isinstance(table, dict):
            raise errors.fail(
                f'[hosts."{name}"] must be a table of settings ({", ".join(known)}), '
                f"not {_toml_type(table)}",
                name,
                ("hosts",),
            )
        settings: dict[str, object] = {}
        for key, value in table.items():
            if key not in known:
                hint = _suggest(key, known) or f" (a host table takes {', '.join(known)})"
                raise errors.fail(f'[hosts."{name}"]: unknown key {key!r}' + hint, key, where)
            settings[key.replace("-", "_")] = value
        try:
            host_settings({name: settings})
        except HostError as exc:
            raise errors.fail(exc.named(spell_host_key), "", where) from None
        out[name] = settings
    try:
        host_settings(out)  # two keys for one host ("Example.com", "example.com")
    except HostError as exc:
        raise errors.fail(exc.named(spell_host_key), "hosts") from None
    return out


def load_config(path: str, command: click.Command) -> ConfigFile:
    """Read and check ``path`` against ``command``'s parameters (UsageError naming the key
    and, where it can be found, its line)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read the config file {path}: {exc.strerror}") from None
    import tomllib  # only with --config: kept out of every crawl's start-up

    try:
        text = data.decode("utf-8")
        # A byte order mark, as some Windows editors write one: not TOML, but harmless.
        text = text.removeprefix("\ufeff")
        parsed = tomllib.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(_toml_error(exc, path, text)) from None
    errors = _Errors(path, text)
    keys = config_keys(command)
    known = sorted([*keys, "hosts"])
    defaults: dict[str, Any] = {}
    hosts: dict[str, Any] = {}
    for key, value in parsed.items():
        if key == "hosts":
            hosts = _hosts(value, errors)
            continue
        if key not in keys:
            why = "the command line's, not a file's" if key == "config" else None
            raise errors.fail(
                f"unknown key {key!r}" + (f" ({why})" if why else _suggest(key, known)), key
            )
        name, converted = _convert(key, keys[key], value, errors)
        if name in BOUNDED_FIELDS and isinstance(converted, int | float):
            # Checked here too, where the line is known (the crawl checks it again).
            try:
                check_bounds(name, converted)
            except OptionError as exc:
                raise errors.fail(exc.named(spell_host_key), key) from None
        if name in defaults:
            raise errors.fail(f"{key} is set twice (as the option and its --no- flag)", key)
        defaults[name] = converted
    return ConfigFile(path, defaults, hosts)


def apply_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The eager ``--config`` callback: the file's values become the command's defaults,
    so every option typed on the command line wins over them."""
    if value is None:
        return None
    try:
        config = load_config(value, ctx.command)
    except UsageError as exc:
        raise click.UsageError(str(exc), ctx) from None
    ctx.default_map = {**(ctx.default_map or {}), **config.defaults}
    ctx.meta[CONFIG_META] = config
    return value


def config_of(ctx: click.Context) -> ConfigFile | None:
    found = ctx.meta.get(CONFIG_META)
    return found if isinstance(found, ConfigFile) else None


def _absent(param: click.Parameter) -> object:
    """What click passes for ``param`` when it is not given and has no default (the
    options that share a key with another have none of their own)."""
    if isinstance(param, click.Option) and param.is_flag:
        return bool(param.default) if isinstance(param.default, bool) else False
    return () if param.multiple else None


# Options under different keys that say one thing between them: the proxies to use
# (``--proxy none`` and a file's ``proxy-file`` would contradict). One of a group typed on
# the command line replaces the file's values of every other, as an option typed replaces
# its own key's value. ``proxy-max-failures`` tunes whatever pool is used: not in it.
_RELATED: tuple[frozenset[str], ...] = (frozenset({"proxy", "proxy_file"}),)


def settle(ctx: click.Context, kw: dict[str, Any]) -> None:
    """Two parameters under one key (``--state PATH`` and ``--no-state``: ``state``), or
    of one ``_RELATED`` group: one typed on the command line wins over the others'
    values from the file, as each option does over its own."""
    config = config_of(ctx)
    if config is None:
        return
    typed = click.core.ParameterSource.COMMANDLINE
    params = {p.name: p for p in ctx.command.params if p.name}
    groups = [[k.param for k in key_params] for key_params in config_keys(ctx.command).values()]
    groups += [[params[n] for n in sorted(group) if n in params] for group in _RELATED]
    for group in groups:
        names = [p.name or "" for p in group]
        if len(names) < 2 or not any(ctx.get_parameter_source(n) == typed for n in names):
            continue
        for param in group:
            name = param.name or ""
            if name in config.defaults and ctx.get_parameter_source(name) != typed:
                kw[name] = _absent(param)
