"""The crawl report: one self-contained HTML file (and CSV lists) from a crawl's output.

Reads outputs only (JSONL, CSV, SQLite, plus the state file beside them); it never
touches a running crawl's files for writing. Jinja2 and the chart script load only
when a report is built.
"""

from __future__ import annotations

from ._build import DEFAULT_MAX_ROWS, ReportResult, build_report, check_writable, report_paths

__all__ = ["DEFAULT_MAX_ROWS", "ReportResult", "build_report", "check_writable", "report_paths"]
