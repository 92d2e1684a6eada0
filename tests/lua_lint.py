"""luacheck over shoal's Redis function library, as Redis loads it.

The library's files (src/shoal/state/lua/) are one Lua chunk once loaded, each using the
locals of the ones before it, so they are linted as that chunk (the exact text shoal sends
to FUNCTION LOAD), with the settings in .luacheckrc, and each warning is reported at its
own file and line. ``python3 dev.py lint`` runs this; so does tests/test_redis_lua_files.py.

    python tests/lua_lint.py     exit 0 when clean, 1 with warnings, 2 without luacheck
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = "luacheck"
_WHERE = re.compile(r"^stdin:(\d+):(\d+)(-\d+)?: ", re.M)


def luacheck(text: str, locate: Callable[[int], tuple[str, int]] | None = None) -> tuple[int, str]:
    """(luacheck's exit code, its report with each stdin line mapped by ``locate(line)`` to
    ``(file, line)``). Exit codes: 0 clean, 1 warnings, 2 errors (syntax)."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise FileNotFoundError(BINARY)
    args = ["--config", str(ROOT / ".luacheckrc"), "--formatter", "plain", "--codes"]
    done = subprocess.run(
        [binary, *args, "--no-color", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    def where(m: re.Match[str]) -> str:
        line = int(m[1])
        name, at = locate(line) if locate is not None else ("stdin", line)
        return f"{name}:{at}:{m[2]}{m[3] or ''}: "

    return done.returncode, _WHERE.sub(where, done.stdout + done.stderr)


def main() -> int:
    from shoal.state._redis_lua import LIBRARY

    if shutil.which(BINARY) is None:
        print(f"{BINARY} is not installed", file=sys.stderr)
        return 2
    code, report = luacheck(LIBRARY.text, LIBRARY.locate)
    lua = Path("src/shoal/state/lua")
    print(
        re.sub(r"^(?!<header>)(\S+\.lua):", lambda m: f"{lua / m[1]}:", report, flags=re.M),
        end="",
    )
    print(f"luacheck: {len(LIBRARY.files)} files of {LIBRARY.name}: exit {code}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
