"""The ``shoal`` command: a thin shell over the Python API (click is imported here only)."""

from __future__ import annotations


def main() -> None:
    from ._commands import main as _main

    _main()


__all__ = ["main"]
