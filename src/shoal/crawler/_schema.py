"""The fields of a standard record: the one schema the records (``_records``) fill in and
the outputs (``output``) lay out as columns. Its own module so neither imports the other."""

from __future__ import annotations

__all__ = ["RECORD_FIELDS", "REQUEST_FIELDS"]

RECORD_FIELDS = (
    "url",
    "final_url",
    "status",
    "depth",
    "referrer",
    "content_type",
    "bytes",
    "elapsed",
    "fetched_at",
    "title",
    "error",
    "error_detail",
)

# In a standard record only when the page answers a request a callback made (a
# shoal.Request) and they are not their defaults: ``method`` when not GET, ``label`` when
# it has one. Not columns of their own (a CSV of plain URLs keeps its header).
REQUEST_FIELDS = ("method", "label")
