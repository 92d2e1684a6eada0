"""Calling a crawl's Redis functions: the library they live in, and group commit.

:class:`Library` is a Redis function library (Redis >= 7.0): shared Lua that Redis compiles
and defines once, and functions called by name (FCALL). Its name carries a digest of its
code, so two shoal versions on one Redis each call their own, and a Redis that lost it
(restarted without its data, FUNCTION FLUSH) is given it again on the first call that
misses it.

Every call changes the crawl, so Redis appends it to its AOF, and with ``appendfsync
always`` it syncs the file before it answers: once per turn of its event loop, for all the
commands of that turn. Calls sent one by one from a worker's threads each wait for a sync of
their own. :class:`ScriptBatcher` sends them from one thread instead, as one pipeline (one
write, one turn, one sync), while the calls that arrive meanwhile wait for the next: a
batch grows exactly when Redis is slow to answer, and a lone call goes out at once.

Each caller still waits for its own reply and gets its own error; a lost connection is
retried by redis-py for the whole pipeline, which is safe because every function is safe
to run twice (see ``_redis.py``, "Lost replies").
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = ["Library", "ScriptBatcher"]


class Library:
    """A function library made of Lua ``files`` (name, text), loaded as one chunk in their
    order, so a local of one file is seen by the files after it. Named
    ``<stem>_<digest of the files' text>``.

    The files are plain Lua: the only text added is a first two lines, ``#!lua
    name=<library>`` (Redis requires it) and ``local LIBRARY = '<library>'``, for the files
    to register their functions as ``<library>_<name>`` (function names are global to a
    Redis, so they must carry the digest too). :meth:`function` gives that name for a
    function called ``name`` in any case: Python's ``"CLAIM_FOR"`` is Lua's ``claim_for``.
    """

    HEADER_LINES = 2

    def __init__(self, stem: str, files: Sequence[tuple[str, str]]) -> None:
        texts = [text if text.endswith("\n") else text + "\n" for _, text in files]
        code = "".join(texts)
        digest = hashlib.sha1(code.encode(), usedforsecurity=False).hexdigest()
        self.name = f"{stem}_{digest[:16]}"
        self.code = code
        self.text = f"#!lua name={self.name}\nlocal LIBRARY = '{self.name}'\n{code}"
        # (file name, its first line in text), for reading a line number of text back.
        self.files: list[tuple[str, int]] = []
        line = self.HEADER_LINES + 1
        for (name, _), text in zip(files, texts, strict=True):
            self.files.append((name, line))
            line += text.count("\n")

    def function(self, name: str) -> str:
        return f"{self.name}_{name.lower()}"

    def locate(self, line: int) -> tuple[str, int]:
        """The file and line in it of ``text``'s line ``line`` (1-based); ``("<header>",
        line)`` for the two added lines."""
        where = ("<header>", line)
        for name, first in self.files:
            if line >= first:
                where = (name, line - first + 1)
        return where

    def load(self, client: redis.Redis) -> None:
        # REPLACE: another client may have loaded it meanwhile (the same text: same name).
        client.execute_command("FUNCTION", "LOAD", "REPLACE", self.text)  # type: ignore[no-untyped-call]

    @staticmethod
    def missing(reply: object) -> bool:
        """Is this reply Redis saying it has no such function (the library is not loaded)?"""
        if not isinstance(reply, Exception):
            return False  # every reply of every batch comes here: the common case first
        from redis.exceptions import ResponseError

        return isinstance(reply, ResponseError) and "function not found" in str(reply).lower()

    def call(
        self, client: redis.Redis, name: str, key: str, args: Sequence[str | int | bytes]
    ) -> Any:
        """One call, outside any batch; loads the library if Redis lacks it."""
        from redis.exceptions import ResponseError

        command = ("FCALL", self.function(name), 1, key, *args)
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if not self.missing(exc):
                raise
        self.load(client)
        return client.execute_command(*command)  # type: ignore[no-untyped-call]


class _Call:
    __slots__ = ("args", "done", "error", "name", "result")

    def __init__(self, name: str, args: Sequence[str | int | bytes]) -> None:
        self.name = name
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class ScriptBatcher:
    """Sends calls of ``library``'s functions for one crawl (``key`` = its prefix) in
    pipelines, from one daemon thread."""

    def __init__(self, client: redis.Redis, key: str, library: Library) -> None:
        self._client = client
        self._key = key
        self._library = library
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._closed = False
        self.batches = 0  # pipelines sent (for tests and curiosity)
        self._thread = threading.Thread(target=self._run, name="shoal-redis-batch", daemon=True)
        self._thread.start()

    def call(self, name: str, args: Sequence[str | int | bytes]) -> Any:
        """Call function ``name`` with ``args``; its reply, or its error raised here."""
        call = _Call(name, args)
        with self._cond:
            if self._closed:
                raise RuntimeError("the Redis state is closed")
            self._queue.append(call)
            self._cond.notify()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed, and every call answered
                batch, self._queue = self._queue, []
            try:
                self._send(batch)
            except BaseException as exc:  # noqa: BLE001 - every caller gets it
                for call in batch:
                    if not call.done.is_set():
                        call.error = exc
                        call.done.set()

    def _send(self, batch: list[_Call]) -> None:
        replies = self._pipeline(batch)
        # A Redis restarted without its data (or FUNCTION FLUSHed) lost the library: load
        # it, send those calls again (a missing function ran nothing).
        again = [c for c, r in zip(batch, replies, strict=True) if self._library.missing(r)]
        if again:
            self._library.load(self._client)
            for call, reply in zip(again, self._pipeline(again), strict=True):
                replies[batch.index(call)] = reply
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                call.error = reply
            else:
                call.result = reply
            call.done.set()

    def _pipeline(self, calls: list[_Call]) -> list[Any]:
        self.batches += 1  # only this thread sends
        pipe = self._client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(  # type: ignore[no-untyped-call]
                "FCALL", self._library.function(call.name), 1, self._key, *call.args
            )
        return list(pipe.execute(raise_on_error=False))
