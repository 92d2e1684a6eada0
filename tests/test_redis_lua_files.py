"""The Redis function library lives in .lua files (src/shoal/state/lua/): what shoal loads is
exactly those files, an installed shoal (a wheel) carries them, Redis registers one function
per function file under the library's digest-bearing name, and luacheck passes over them
(tests/lua_lint.py; skipped without luacheck, except under CI=true, where that fails, as a
missing redis-server does in tests/redis_server.py)."""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import redis

from lua_lint import BINARY, luacheck
from redis_server import RedisServer
from shoal.state import _redis_lua as lua
from shoal.state._redis_batch import Library
from shoal.state._redis_lua import LIBRARY, LIBRARY_FILES, NONE

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "src" / "shoal" / "state" / "lua"
HELPERS = {"prelude.lua", "seen.lua", "jobs.lua", "visits.lua"}


def require_luacheck() -> None:
    if shutil.which(BINARY) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{BINARY} is not installed (CI must install it: see .ci/run)")
        pytest.skip(f"{BINARY} is not installed (apt-get install lua-check)")


def test_the_library_is_the_lua_files_in_their_order() -> None:
    on_disk = sorted(p.name for p in LUA.glob("*.lua"))
    assert sorted(LIBRARY_FILES) == on_disk  # no file left out, none listed twice
    code = "".join((LUA / name).read_text(encoding="utf-8") for name in LIBRARY_FILES)
    assert LIBRARY.code == code
    digest = hashlib.sha1(code.encode(), usedforsecurity=False).hexdigest()[:16]
    assert LIBRARY.name == f"shoal_{digest}"
    # The only text that is not in the files: the two header lines naming the library.
    header = f"#!lua name={LIBRARY.name}\nlocal LIBRARY = '{LIBRARY.name}'\n"
    assert LIBRARY.text == header + code
    assert "ARGV" not in code.replace("ARGV as args", "")  # functions take named args


def test_locate_maps_a_library_line_to_its_file() -> None:
    first = LIBRARY.text.split("\n")
    for name, _ in LIBRARY.files:
        lines = (LUA / name).read_text(encoding="utf-8").split("\n")
        for at in (1, len(lines) - 1):
            line = next(n for f, n in LIBRARY.files if f == name) + at - 1
            assert LIBRARY.locate(line) == (name, at)
            assert first[line - 1] == lines[at - 1]
    assert LIBRARY.locate(1) == ("<header>", 1)


def test_redis_registers_one_function_per_function_file(redis_server: RedisServer) -> None:
    client = redis.Redis(unix_socket_path=str(redis_server.socket), protocol=2)
    try:
        LIBRARY.load(client)
        listed = client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY.name)
        (library,) = [dict(zip(x[::2], x[1::2], strict=True)) for x in listed]
        names = {
            dict(zip(f[::2], f[1::2], strict=True))[b"name"].decode() for f in library[b"functions"]
        }
        wanted = {LIBRARY.function(n.removesuffix(".lua")) for n in LIBRARY_FILES} - {
            LIBRARY.function(n.removesuffix(".lua")) for n in HELPERS
        }
        assert names == wanted
        assert LIBRARY.function("CLAIM_FOR") in names  # Python's names, in any case
    finally:
        client.close()


def test_two_libraries_of_other_code_coexist_on_one_redis(redis_server: RedisServer) -> None:
    client = redis.Redis(unix_socket_path=str(redis_server.socket), protocol=2)
    files = [(name, (LUA / name).read_text(encoding="utf-8")) for name in LIBRARY_FILES]
    other = Library("shoal", [*files, ("extra.lua", "-- another version\n")])
    try:
        assert other.name != LIBRARY.name
        LIBRARY.load(client)
        other.load(client)  # function names carry the digest: no clash
        assert len(client.execute_command("FUNCTION", "LIST")) == 2
    finally:
        client.close()


def test_a_wheel_carries_the_lua_files(tmp_path: Path) -> None:
    # Built from a copy, so the worktree gets no build/ folder.
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("shoal-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packed = {
            n.removeprefix("shoal/state/lua/")
            for n in zf.namelist()
            if n.startswith("shoal/state/lua/")
        }
        assert packed == set(LIBRARY_FILES)
        for name in LIBRARY_FILES:
            assert zf.read(f"shoal/state/lua/{name}").decode() == (LUA / name).read_text(
                encoding="utf-8"
            )


def test_luacheck_passes_over_the_library() -> None:
    require_luacheck()
    code, report = luacheck(LIBRARY.text, LIBRARY.locate)
    assert code == 0, report


def test_luacheck_reports_a_bug_at_its_file_and_line() -> None:
    # The lint is real: an accidental global and an unused local in a function file are
    # reported there, not at a line of the assembled chunk.
    require_luacheck()
    files = [(name, (LUA / name).read_text(encoding="utf-8")) for name in LIBRARY_FILES]
    files.append(
        ("bad.lua", "register('bad', function(args)\n  x = args[1]\n  local y = 1\nend)\n")
    )
    bad = Library("shoal", files)
    code, report = luacheck(bad.text, bad.locate)
    assert code == 1
    assert "bad.lua:2:3: (W111) setting non-standard global variable 'x'" in report
    assert "bad.lua:3:9: (W211) unused variable 'y'" in report


def test_each_function_file_documents_the_arguments_its_builder_names() -> None:
    # Each function's arguments are documented at the top of its file ("[i] name ..."), and
    # one Python builder of the same name lays them out from keyword arguments, by those
    # names, in that order (a list's count, "how many ... follow", is derived from it).
    functions = [n.removesuffix(".lua") for n in LIBRARY_FILES if n not in HELPERS]
    for name in functions:
        text = (LUA / f"{name}.lua").read_text(encoding="utf-8")
        head = text[: text.index(f"('{name}', function(args)")]
        documented = [
            arg
            for arg, says in re.findall(r"^--\s+\[[^\]]+\]\s+(\w+)\s*(.*)$", head, re.M)
            if not re.fullmatch(r"how many .* follow", says)  # the count before a list
        ]
        builder = getattr(lua, name)
        params = inspect.signature(builder).parameters.values()
        assert all(p.kind is p.KEYWORD_ONLY for p in params), name
        assert documented == [p.name for p in params], name
        assert builder.__name__ == name


def test_builders_lay_out_the_wire_arguments_with_the_sentinels_of_none() -> None:
    # The wire is what the call sites sent before the builders: the Lua is unchanged.
    links = [("-5", "http://a", b"1 p 0 8 http://a/"), ("7", "http://b", b"1 p 1 8 http://b/")]
    assert lua.lease(worker="w", epoch="3", n=2, budget=None, ttl_ms=60_000, request="r") == (
        "LEASE",
        ["w", "3", 2, NONE, 60_000, "r"],
    )
    assert lua.submit(links=links).args == [
        2,
        "-5",
        "http://a",
        links[0][2],
        "7",
        "http://b",
        links[1][2],
    ]
    call = lua.release(
        worker="w",
        epoch="3",
        lease_id="9",
        outcome="done",
        retry_ms=0,
        hold_ms=None,
        policy=None,
        robots_txt=b"",
        crawl_delay_ms=None,
        links=links[:1],
        take=1,
        budget=None,
        ttl_ms=60_000,
        request="r",
    )
    assert call == (
        "RELEASE",
        ["w", "3", "9", "done", 0, -1, "", b"", -1, 1, *links[0], 1, -1, 60_000, "r"],
    )
    robots = lua.release(
        worker="w",
        epoch="3",
        lease_id="9",
        outcome="done",
        retry_ms=0,
        hold_ms=2000,
        policy="txt",
        robots_txt=b"User-agent: *",
        crawl_delay_ms=1500,
        links=(),
        take=0,
        budget=4,
        ttl_ms=60_000,
        request="r",
    )
    assert robots.args == [
        "w",
        "3",
        "9",
        "done",
        0,
        2000,
        "txt",
        b"User-agent: *",
        1500,
        0,
        0,
        4,
        60_000,
        "r",
    ]
    commit = lua.commit(
        worker="w",
        epoch="3",
        token="t",
        expected_offset=0,
        new_offset=10,
        claims=["-5"],
        targets=[("-6", b"1 p 1 3 /t/")],
        changes={"new": 2},
        finished=[
            ("9", "done", "-7", 200, ("1", b'W/"e"', b"", b"\x01", b"", b"", 1500)),
            ("10", "failed", "", None, None),
        ],
    )
    no_note = ["-", b"", b"", b"", b"", b"", -1]
    assert commit == (
        "COMMIT",
        [
            *("w", "3", "t", "0", "10", 1, "-5", 1, "-6", b"1 p 1 3 /t/", 1, "new", 2),
            *("9", "done", "-7", 200, "1", b'W/"e"', b"", b"\x01", b"", b"", 1500),
            *("10", "failed", "", "", *no_note),
        ],
    )
