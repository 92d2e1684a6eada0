"""JSON Lines: one record per line."""

from __future__ import annotations

from collections.abc import Sequence

from ...runtime import json_line
from ._base import Commit, OutputOptions
from ._file import FileOutput, OutputFile

__all__ = ["JsonlOutput", "open_format"]


class JsonlOutput(FileOutput):
    def write(self, commits: Sequence[Commit]) -> None:
        lines = [json_line(r) + "\n" for c in commits for r in c.records]
        if lines:
            self._put("".join(lines).encode())


def open_format(target: OutputFile | None, options: OutputOptions) -> JsonlOutput:
    return JsonlOutput(target, options.resume_at)
