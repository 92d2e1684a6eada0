"""Group commit for a shared crawl's scripts: calls from many threads go to Redis together.

Every script call changes the crawl, so Redis appends it to its AOF, and with ``appendfsync
always`` it syncs the file before it answers: once per turn of its event loop, for all the
commands of that turn. Calls sent one by one from a worker's threads each wait for a sync of
their own. :class:`ScriptBatcher` sends them from one thread instead, as one pipeline (one
write, one turn, one sync), while the calls that arrive meanwhile wait for the next: a
batch grows exactly when Redis is slow to answer, and a lone call goes out at once.

Each caller still waits for its own reply and gets its own error; a lost connection is
retried by redis-py for the whole pipeline, which is safe because every script is safe to
run twice (see ``_redis.py``, "Lost replies").
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

__all__ = ["ScriptBatcher"]


class _Call:
    __slots__ = ("args", "done", "error", "name", "result")

    def __init__(self, name: str, args: Sequence[str | int | bytes]) -> None:
        self.name = name
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class ScriptBatcher:
    """Sends script calls of one crawl (``key`` = its prefix) in pipelines, from one daemon
    thread. ``scripts``: name -> the client's registered script (its text is loaded again
    if Redis lost its cache)."""

    def __init__(self, client: redis.Redis, key: str, scripts: Mapping[str, Script]) -> None:
        self._client = client
        self._key = key
        self._scripts = scripts
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._closed = False
        self.batches = 0  # pipelines sent (for tests and curiosity)
        self._thread = threading.Thread(target=self._run, name="shoal-redis-batch", daemon=True)
        self._thread.start()

    def call(self, name: str, args: Sequence[str | int | bytes]) -> Any:
        """Run script ``name`` with ``args``; its reply, or its error raised here."""
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
        from redis.exceptions import NoScriptError

        replies = self._pipeline(batch)
        # A Redis restarted (or SCRIPT FLUSHed) forgot the scripts: load them, send again.
        again = [c for c, r in zip(batch, replies, strict=True) if isinstance(r, NoScriptError)]
        if again:
            for name in {c.name for c in again}:
                self._client.script_load(self._scripts[name].script)
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
                "EVALSHA", self._scripts[call.name].sha, 1, self._key, *call.args
            )
        return list(pipe.execute(raise_on_error=False))
