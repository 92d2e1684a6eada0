"""The fields of a standard record: the one schema the records (``_records``) fill in and
the outputs (``output``) lay out as columns. Its own module so neither imports the other."""

from __future__ import annotations

__all__ = ["RECORD_FIELDS", "RENDER_FIELDS", "REQUEST_FIELDS", "RUN_FIELDS"]

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

# A recrawl's fields (#19): the run a record belongs to (1, then one more per --recrawl)
# and what became of its URL since the last run (new, changed, unchanged, gone, ...).
# Not in RECORD_FIELDS: a JSONL record of the first run has neither (no run means run 1),
# while a CSV has the columns from its first row on (its header cannot grow later).
RUN_FIELDS = ("run", "change")

# In a standard record only when the page answers a request a callback made (a
# shoal.Request) and they are not their defaults: ``method`` when not GET, ``label`` when
# it has one. Not columns of their own (a CSV of plain URLs keeps its header).
REQUEST_FIELDS = ("method", "label")

# A rendering crawl's fields (#18, --render auto|always): whether the record's title, links
# and extracted fields come from the DOM a browser built (true) or from the bytes as sent
# (false: not HTML, an error, a redirect), and why: "always"; in auto "app-shell",
# "noscript", "thin" (the page as sent looks built by script), "learned" (rendering was
# learned to find more under that host or folder), "probe" (rendered to learn, and it
# found more), "static" (not rendered); null where rendering does not apply. Only in the
# records of such a crawl, so a static crawl's output keeps its shape.
RENDER_FIELDS = ("rendered", "render_reason")
