"""The runtime: worker pools fed by queues, one writer thread, pipelines. No HTTP here."""

from ._map import MapIterator, map
from ._pipeline import Pipeline, Stage
from ._pool import Pool, TaskContext
from ._progress import ProgressDisplay, ProgressState
from ._retry import RetryPolicy
from ._types import ErrorPolicy, PoolStats, ShutdownReport
from ._writer import Sink, TextSink, Writer, json_line

__all__ = [
    "ErrorPolicy",
    "MapIterator",
    "Pipeline",
    "Pool",
    "PoolStats",
    "ProgressDisplay",
    "ProgressState",
    "RetryPolicy",
    "ShutdownReport",
    "Sink",
    "Stage",
    "TaskContext",
    "TextSink",
    "Writer",
    "json_line",
    "map",
]
