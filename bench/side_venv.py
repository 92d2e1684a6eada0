"""A venv beside shoal's for what a benchmark needs and shoal must not depend on (peers,
a faster event loop for the test site): created on first use, kept while it imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def ensure_side_venv(venv: Path, modules: list[str], packages: list[str]) -> Path:
    """The Python of ``venv``, created with ``packages`` unless it imports ``modules``."""
    python = venv / "bin" / "python"
    if python.exists():
        probe = [str(python), "-c", f"import {', '.join(modules)}"]
        if subprocess.run(probe, check=False, capture_output=True).returncode == 0:
            return python
    print(f"creating {venv} ({', '.join(packages)}) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *packages], check=True)
    return python
