"""The writer thread: whole lines, per-producer order, flush, backpressure, sink errors."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

import pytest

import shoal
from shoal import Writer


def _contention(producers: int, lines: int) -> None:
    out = io.StringIO()
    start = threading.Barrier(producers)
    with Writer(out, maxsize=64) as writer:

        def produce(p: int) -> None:
            start.wait()
            for i in range(lines):
                writer.print(f"producer {p} line {i}", "x" * (i % 7))

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    got = out.getvalue().splitlines()
    assert len(got) == producers * lines
    last = dict.fromkeys(range(producers), -1)
    for line in got:
        _, p, _, i, pad = ([*line.split(" "), ""])[:5]
        assert pad == "x" * (int(i) % 7), line  # never torn or glued to another line
        assert int(i) == last[int(p)] + 1  # each producer's order kept
        last[int(p)] = int(i)


def test_lines_never_interleave_and_order_is_kept() -> None:
    _contention(producers=16, lines=300)


@pytest.mark.stress
def test_lines_never_interleave_stress() -> None:
    for _ in range(10):
        _contention(producers=64, lines=2000)


def test_records_are_json_lines() -> None:
    out = io.StringIO()
    with Writer(out) as writer:
        writer.write({"url": "http://x/é", "n": 1})
        writer.print("plain")
    first, second = out.getvalue().splitlines()
    assert json.loads(first) == {"url": "http://x/é", "n": 1}
    assert second == "plain"
    with Writer(io.StringIO()) as other, pytest.raises(TypeError):
        other.write("text is for print()")


def test_flush_waits_for_everything_before_it() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as wstream, os.fdopen(read_fd) as rstream:
        writer = Writer(wstream)
        try:
            for i in range(100):
                writer.print(i)
            assert writer.flush(timeout=10)
            # Everything is in the pipe now, without closing the writer.
            got = [rstream.readline() for _ in range(100)]
            assert got == [f"{i}\n" for i in range(100)]
        finally:
            writer.close()


class FailingSink:
    def __init__(self) -> None:
        self.batches: list[Sequence[Any]] = []
        self.flushed = 0

    def write_batch(self, entries: Sequence[Any]) -> None:
        if any(e == "bad\n" for e in entries):
            raise OSError(28, "No space left on device")
        self.batches.append(list(entries))

    def flush(self) -> None:
        self.flushed += 1

    def close(self) -> None:
        pass


def test_sink_error_reaches_producers() -> None:
    sink = FailingSink()
    writer = Writer(sink=sink)
    writer.print("good")
    writer.flush(timeout=10)
    writer.print("bad")
    with pytest.raises(shoal.WriterError) as info:
        writer.flush(timeout=10)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(shoal.WriterError):
        writer.print("after")
    with pytest.raises(shoal.WriterError):
        writer.close()
    assert sink.batches == [["good\n"]]


def test_backpressure_blocks_producers_at_maxsize() -> None:
    gate = threading.Event()
    wrote: list[int] = []

    class SlowSink:
        def write_batch(self, entries: Sequence[Any]) -> None:
            gate.wait()
            wrote.append(len(entries))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    writer = Writer(sink=SlowSink(), maxsize=3)
    done = threading.Event()

    def produce() -> None:
        for i in range(20):
            writer.print(i)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.05)  # the sink is stuck, so at most 3 + 1 in hand
    gate.set()
    t.join(10)
    writer.close()
    assert sum(wrote) == 20


def test_close_writes_everything_and_refuses_more() -> None:
    out = io.StringIO()
    writer = Writer(out)
    for i in range(1000):
        writer.print(i)
    writer.close()
    assert out.getvalue().count("\n") == 1000
    with pytest.raises(shoal.WriterError):
        writer.print("late")


def test_stream_and_sink_are_exclusive() -> None:
    with pytest.raises(ValueError):
        Writer(io.StringIO(), sink=FailingSink())


class _BatchLog:
    """A sink that records the size of every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.lines: list[Any] = []
        self.wrote = threading.Event()
        self.closed = False

    def write_batch(self, entries: Sequence[Any]) -> None:
        self.batches.append(len(entries))
        self.lines.extend(entries)
        self.wrote.set()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_linger_gathers_entries_into_one_batch_until_flush() -> None:
    sink = _BatchLog()
    # The writer wakes on the first entry and then lingers (up to 1 s, far longer than
    # ten puts take) for more; flush() ends the wait.
    with Writer(sink=sink, linger=1.0) as writer:
        for i in range(10):
            writer.write({"n": i})
        assert writer.flush(timeout=30)
        assert sink.batches == [10]


def test_linger_never_holds_entries_back_for_good() -> None:
    sink = _BatchLog()
    with Writer(sink=sink, linger=0.05) as writer:
        writer.write({"n": 1})
        assert sink.wrote.wait(timeout=30)  # written once the linger ran out, unasked
        assert sink.batches == [1]


def test_close_ends_a_linger_and_writes_everything() -> None:
    sink = _BatchLog()
    writer = Writer(sink=sink, linger=1.0)
    writer.write({"n": 1})
    writer.write({"n": 2})
    writer.close()
    assert sink.lines == [{"n": 1}, {"n": 2}] and sink.closed


def test_linger_is_bounded() -> None:
    with pytest.raises(ValueError, match="linger"):
        Writer(io.StringIO(), linger=5)
