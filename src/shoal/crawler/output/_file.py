"""Output files: claiming one (open without truncating, lock, refuse data that is not this
crawl's) and the append-only byte stream the file formats (JSONL, CSV, WARC) write to."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..._errors import OutputError, StateError, literal
from ...state import identity_outputs, peek_identity

__all__ = ["FileOutput", "OutputFile", "claim_output", "is_stream_path"]


def is_stream_path(path: str) -> bool:
    """An existing device or pipe: written as a stream, never locked, resumed or sized."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class OutputFile:
    """An output path opened without truncating it and locked (``flock``) until closed,
    so two crawls never write one file, whatever their state files."""

    def __init__(self, path: str) -> None:
        import fcntl

        self.path = path
        self.created = not os.path.exists(path)
        try:
            if self.created:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot open output {path}: {exc.strerror or exc}") from None
        # A device or pipe (/dev/null, /dev/stdout) holds no data to protect or resume:
        # it is written as a stream, and not locked (two crawls may both discard output).
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
        if not self.regular:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            busy = isinstance(exc, BlockingIOError)
            raise OutputError(
                f"{path} is being written by another running crawl"
                if busy
                else f"cannot lock output {path}: {exc.strerror or exc}"
            ) from None

    def size(self) -> int:
        return os.fstat(self.fd).st_size if self.regular else 0

    def abandon(self) -> None:
        """Close; delete the file only if this crawl created it (it holds nothing then)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.created:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def claim_output(
    output: str | None,
    state_path: str | None,
    *,
    fresh: bool,
    overwrite: bool,
    announce: Callable[[str], None],
    shared_worker: bool | None = None,
) -> OutputFile | None:
    """Open and lock the output file (None for stdout), refusing one whose data is not
    this crawl's.

    The output is this crawl's when the state file names it as its output: then it is
    resumed, or with ``fresh`` discarded (and said so). Anything else already in the file
    is replaced only with ``overwrite``. A state file that is not shoal's is an error
    here, unless both ``fresh`` and ``overwrite`` ask to replace it. ``shared_worker``
    (None: not a shared crawl): True when the shared crawl knows this worker, which it
    registered only after claiming this output, so the output is its own, resumed.
    """
    path = output if output not in (None, "-") else None
    prior = None
    if state_path is not None:
        try:
            prior = peek_identity(state_path)
        except StateError:
            if not (fresh and overwrite):
                raise
    if path is None:
        return None
    claim = OutputFile(path)
    size = claim.size()
    if size == 0:
        return claim
    ours = bool(shared_worker) or (
        prior is not None and os.path.abspath(path) in {p for p, _ in identity_outputs(prior)}
    )
    if ours and not fresh:
        return claim  # resumed, or refused as another crawl's state when that is opened
    if overwrite:
        announce(f"--overwrite: replacing {path} ({size:,} bytes)")
        return claim
    if ours:
        announce(
            f"--fresh: deleting the state {state_path} and the output {path} "
            f"({size:,} bytes); starting over"
        )
        return claim
    claim.abandon()
    if shared_worker is False:
        where = literal("this worker of the shared crawl never wrote it")
    elif state_path is None:
        where = "{state=None}"
    elif prior is None:
        where = literal(f"no crawl state for it at {state_path}")
    else:
        where = literal(f"the crawl state {state_path} is for another output")
    # Options named as placeholders: overwrite=True from Python, --overwrite in a shell.
    raise OutputError.naming(
        literal(f"{path} already exists ({size:,} bytes) and is not this crawl's output (")
        + where
        + "); shoal will not replace it: choose another {output}, or add {overwrite=True} "
        "to replace it"
    )


class FileOutput:
    """An append-only byte stream: a locked file (resumable at an offset) or stdout."""

    def __init__(self, target: OutputFile | None, resume_at: int | None) -> None:
        self.path = target.path if target is not None else None
        self._stream = True  # no offsets: stdout, a device or a pipe
        if target is None:
            self._file: IO[bytes] = sys.stdout.buffer
            self._close = False
            return
        fd, target.fd = target.fd, -1  # the file object owns it (and the lock) now
        self._close = True
        if not target.regular:
            self._file = os.fdopen(fd, "wb")
            return
        self._stream = False
        self._file = os.fdopen(fd, "r+b")
        size = self._file.seek(0, os.SEEK_END)
        if resume_at and size < resume_at:
            self._file.close()
            raise StateError(
                f"{self.path} is shorter ({size} bytes) than the crawl state says ({resume_at}); "
                "was it changed? shoal leaves both as they are (--fresh deletes the state "
                "and the output and starts over)"
            )
        # Resuming: cut off whatever was written after the last commit (it is fetched
        # again). Starting: the caller has made sure what is there may go.
        self._file.truncate(resume_at or 0)
        self._file.seek(resume_at or 0)

    @property
    def at_start(self) -> bool:
        return True if self._stream else self._file.tell() == 0

    def _put(self, data: bytes) -> None:
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def position(self) -> int | None:
        return None if self._stream else self._file.tell()

    def close(self) -> None:
        self._file.flush()
        if self._close:
            self._file.close()
