#!/usr/bin/env python3
"""Developer entry point; needs nothing but Python 3.11+.

    python3 dev.py run [ARGS]    the main job: crawl the bundled sample site (or ARGS)
    python3 dev.py test [ARGS]   the whole test suite (ARGS go to pytest)
    python3 dev.py lint          ruff (lint + format check), mypy --strict on src/, and
                                 luacheck on the Redis function library (src/shoal/state/lua)

Each creates or refreshes .venv/ at the repository root from pyproject.toml and the
pinned versions in requirements/constraints.txt, then runs inside it. SHOAL_VENV names
another environment folder (CI uses it to test a second Python version side by side).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / os.environ.get("SHOAL_VENV", ".venv")
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".shoal-installed"
INPUTS = [ROOT / "pyproject.toml", ROOT / "requirements" / "constraints.txt"]


def _fingerprint() -> str:
    h = hashlib.sha256(sys.version.encode())
    for path in INPUTS:
        h.update(path.read_bytes())
    return h.hexdigest()


def ensure_venv() -> None:
    if not PY.exists():
        print(f"creating {VENV} ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    want = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    print("installing shoal and its dependencies into .venv ...", file=sys.stderr)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    constraints = ["-c", str(ROOT / "requirements" / "constraints.txt")]
    subprocess.run([*pip, *constraints, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "lint"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv()
    env = dict(os.environ)
    if command == "run":
        return subprocess.call([str(BIN / "shoal"), *(rest or ["demo"])], env=env)
    if command == "test":
        code = subprocess.call([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env)
        # pytest's "no tests ran" (5) is a failure for us: a suite that runs nothing proves nothing.
        return 1 if code == 5 else code
    checks = [
        [str(PY), "-m", "ruff", "check", "src", "tests", "bench", "examples", "dev.py"],
        [str(PY), "-m", "ruff", "format", "--check", "src", "tests", "bench", "examples", "dev.py"],
        [str(PY), "-m", "mypy"],
    ]
    worst = 0
    for check in checks:
        print("$", " ".join(check[2:]), file=sys.stderr)
        worst = max(worst, subprocess.call(check, cwd=ROOT, env=env))
    # The Lua: luacheck (Debian's lua-check) over the library as Redis loads it. Outside CI
    # a machine without it skips this with a notice; under CI it must run (.ci/run installs it).
    if shutil.which("luacheck"):
        print("$ luacheck (tests/lua_lint.py)", file=sys.stderr)
        lua = [str(PY), str(ROOT / "tests" / "lua_lint.py")]
        worst = max(worst, subprocess.call(lua, cwd=ROOT, env=env))
    elif os.environ.get("CI") == "true":
        print("luacheck is not installed (CI must install it: see .ci/run)", file=sys.stderr)
        worst = max(worst, 1)
    else:
        print(
            "luacheck not found: the Lua is not linted (apt-get install lua-check)", file=sys.stderr
        )
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
