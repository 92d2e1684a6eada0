"""A crawl's durable state in one SQLite file (WAL mode).

Tables: ``meta`` (what crawl this is, where its output stands) and ``urls`` (one row per
URL ever discovered, keyed by its 64-bit fingerprint, with its state: queued, done or
failed), and the tables later schema versions added (runs, holds, held, outputs: see the
migrations below). meta 'schema' is the file's version: an older file is migrated when a
crawl opens it, a newer one refused. Everything a crawl learns reaches the file through
:meth:`StateStore.commit`, one transaction per writer batch, so the file always holds a
consistent cut: the output's committed byte offset together with exactly the URLs whose
records lie before it.

Connections: one for writing (used only by the writer thread) and one for reading
(used under the crawler's lock to page queued URLs back into memory). WAL lets the
reader run while a write is in progress, and lets ``shoal status`` read a running crawl.

A lock file beside the database (``flock``) keeps two crawls from sharing one state; it
exists only while a crawl holds it (removed as the crawl ends).
sqlite3 errors never leave this module: they become :class:`~shoal.StateError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import StateError, StateLocked, StateMismatch, literal
from .._version import __version__

__all__ = [
    "QUEUED",
    "SCHEMA_VERSION",
    "DONE",
    "FAILED",
    "MAX_VALIDATOR",
    "FetchNote",
    "Prior",
    "RevisitRow",
    "RunCounts",
    "StateStore",
    "UrlRow",
    "identity_outputs",
    "peek_identity",
]

logger = logging.getLogger(__name__)

QUEUED, DONE, FAILED = 0, 1, 2
_APP = "shoal-crawl-state"

# -- schema versions and migrations -------------------------------------------------------
#
# meta 'schema' is the file's version. A file of an older version is migrated in place
# when a crawl opens it for writing (never by a read-only command): a backup copy beside
# it first, then every step from its version to this one in ONE transaction, so the file
# is either wholly old or wholly new. A file of a newer version is refused. A new file is
# made the same way (schema 1, then every migration), so a migrated file and a new one
# are the same by construction. To change the schema: append a step to _MIGRATIONS
# (docs/design.md, "State file versions"); never edit a step that has shipped.

# Schema 1 as the first release wrote it. Frozen: files of every later version began so.
_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE urls (
    fp INTEGER PRIMARY KEY,          -- 64-bit fingerprint, stored signed
    seq INTEGER NOT NULL,            -- discovery order, assigned at commit
    url TEXT NOT NULL,
    host TEXT NOT NULL,
    depth INTEGER NOT NULL,
    referrer TEXT,
    state INTEGER NOT NULL,          -- 0 queued, 1 done, 2 failed
    spilled INTEGER NOT NULL,        -- 1: lives only here until paged into memory
    status INTEGER                   -- final HTTP status, if any
);
-- Partial: only URLs waiting on disk are indexed, so marking the (many) in-memory URLs
-- done never touches this index.
CREATE INDEX urls_spilled ON urls (seq) WHERE state=0 AND spilled=1;
"""


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """The tables schema-1 files gained on open, one release after another, without a
    version change: a file of version 2 has them all. ``IF NOT EXISTS``: a schema-1 file
    may have any of the first two already."""
    # One row per run of the crawl: what each run committed, so totals across resumed
    # runs add up exactly.
    conn.execute(
        """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL NOT NULL,
        outcome TEXT NOT NULL,          -- running, finished, interrupted, stopped: REASON, failed
        pages INTEGER NOT NULL DEFAULT 0,
        ok INTEGER NOT NULL DEFAULT 0,
        redirects INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        errors TEXT NOT NULL DEFAULT '{}' -- JSON: failures by kind
    )"""
    )
    # Hosts that asked for a pause (Retry-After), until a wall-clock time: a resume must
    # not ask them again at once.
    conn.execute("CREATE TABLE IF NOT EXISTS holds (host TEXT PRIMARY KEY, until REAL NOT NULL)")
    # URLs whose latest record is a held-back failure (robots.txt unreachable: the URL
    # stays queued and the next run records it again). A later record of such a URL
    # supersedes the held-back one: meta 'superseded' sums what those superseded records
    # had added to the runs, and the totals across runs leave it out, so each URL counts
    # once, as its latest record says. Per-run counts stay what each run recorded.
    conn.execute("CREATE TABLE IF NOT EXISTS held (url TEXT PRIMARY KEY, error TEXT NOT NULL)")
    # Each output of the crawl (the first is the one the state file is named after) and
    # where its committed records end. A schema-1 file had one output, at the offset meta
    # holds (which stays the first output's too).
    conn.execute(
        """CREATE TABLE IF NOT EXISTS outputs (
        n INTEGER PRIMARY KEY,          -- 0: the first output
        path TEXT,                      -- absolute; NULL: stdout
        format TEXT NOT NULL,
        offset INTEGER NOT NULL         -- committed byte offset (0 for SQLite outputs)
    )"""
    )
    if conn.execute("SELECT count(*) FROM outputs").fetchone()[0]:
        return
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    identity = json.loads(meta.get("identity", "{}"))
    first = int(meta.get("output_offset", 0))
    conn.executemany(
        "INSERT INTO outputs VALUES (?, ?, ?, ?)",
        [
            (n, path, fmt, first if n == 0 else 0)
            for n, (path, fmt) in enumerate(identity_outputs(identity))
        ],
    )


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """What a recrawl (#19) needs per URL: its validators (ETag exactly as sent, ``W/``
    kept; Last-Modified), the SHA-256 of its decoded body, its final URL (NULL: the URL
    itself) and when it was last fetched; and meta 'generation', the crawl's run number
    as records name it (1 until the first ``--recrawl``). Files of version 2 hold none of
    it: their URLs' first revisit is unconditional."""
    for column in (
        "etag TEXT",
        "last_modified TEXT",
        "sha256 BLOB",
        "final_url TEXT",
        "fetched_at REAL",
        "captured_at REAL",  # when the body with this digest was first fetched (WARC revisits)
        "sha1 BLOB",  # the same body's SHA-1: a WARC revisit's payload digest, for a 304 too
        # 1: a redirect target fetched as another URL's last hop, not revisited on its own
        "claimed INTEGER",
    ):
        conn.execute(f"ALTER TABLE urls ADD COLUMN {column}")
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '1')")
    # How many URLs of each recrawl run ended as each change (new, changed, ...).
    conn.execute(
        """CREATE TABLE changes (
        generation INTEGER NOT NULL,
        change TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (generation, change)
    )"""
    )


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """Requests, not only URLs (#20): a queued URL may be a request a page callback made
    (a POST with its body, headers, label, meta), kept encoded in ``request`` so a resume
    sends it as it was made. NULL for a plain GET, which every row of a version-3 file
    is; the fingerprint of such a row is its URL's, as before, so the file dedupes as it
    did."""
    conn.execute("ALTER TABLE urls ADD COLUMN request TEXT")


Migration = Callable[[sqlite3.Connection], None]
"""One step, version N to N+1: statements run on a connection inside the migration's
transaction. It must not commit (so no ``executescript``, which commits first)."""

# The crawl's cookie jar (crawler/_cookies.py): one row per cookie, its key "domain TAB
# path TAB name" and the cookie as JSON (its value a secret, as a browser profile's).
_COOKIES_TABLE = "CREATE TABLE IF NOT EXISTS cookies (key TEXT PRIMARY KEY, data TEXT NOT NULL)"

# _MIGRATIONS[i] takes a file from version i + 1 to i + 2. Append only.
_MIGRATIONS: tuple[Migration, ...] = (_migrate_1_to_2, _migrate_2_to_3, _migrate_3_to_4)
SCHEMA_VERSION = 1 + len(_MIGRATIONS)
# The columns an insert names: schema 3 added more, which a new row leaves NULL.
_URL_COLUMNS = "(fp, seq, url, host, depth, referrer, request, state, spilled, status)"
_COUNTS = ("pages", "ok", "redirects", "failed", "bytes")


@dataclass(slots=True)
class RunCounts:
    """What one writer batch adds to the current run's row."""

    pages: int = 0
    ok: int = 0
    redirects: int = 0
    failed: int = 0
    bytes: int = 0
    errors: dict[str, int] | None = None
    # (url, error kind) of each held-back record in the batch: the URL stays queued
    held_back: list[tuple[str, str]] | None = None
    changes: dict[str, int] | None = None  # a recrawl run's URLs by change


# A validator longer than this is not stored (its URL is revisited unconditionally):
# real ETags and dates are far shorter, and the state must not grow by what a server says.
MAX_VALIDATOR = 256


@dataclass(frozen=True, slots=True)
class FetchNote:
    """What a fetch of one URL leaves in the state for the next revisit."""

    etag: str | None
    last_modified: str | None
    sha256: bytes | None  # of the decoded body; None: no body to compare (a 304 keeps the last)
    sha1: bytes | None  # of the same body, for WARC payload digests
    final_url: str | None  # None: the URL itself
    fetched_at: float
    # A 304: a validator it does not carry (None) keeps the stored one.
    keep_validators: bool = False


@dataclass(frozen=True, slots=True)
class Prior:
    """What the state knows of a URL's last fetch (:meth:`StateStore.prior`)."""

    status: int | None
    etag: str | None
    last_modified: str | None
    sha256: bytes | None
    final_url: str | None
    fetched_at: float | None
    captured_at: float | None  # when the body of this digest was first fetched
    sha1: bytes | None


@dataclass(slots=True)
class UrlRow:
    fp: int
    url: str
    host: str
    depth: int
    referrer: str | None
    spilled: bool = False
    request: str | None = None  # a request's encoded fields (shoal.Request); None: a GET


@dataclass(frozen=True, slots=True)
class RevisitRow:
    """A URL a sitemap says changed since its last fetch (:meth:`StateStore.revisit_rows`)."""

    row: UrlRow
    seq: int
    queued: bool  # queued in this run (else done in an earlier one, not due now)


def _signed(fp: int) -> int:
    return fp - (1 << 64) if fp >= (1 << 63) else fp


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if "disk is full" in message or "disk I/O" in message:
            raise StateError(f"{what}: {message} (committed work is safe)") from exc
        if "not a database" in message or "malformed" in message:
            raise StateError(
                f"{what}: the state file is corrupt or not a shoal state file ({message}); "
                "shoal leaves it as it is: move it away or choose another --state "
                "(--fresh --overwrite deletes it and replaces the output)"
            ) from exc
        if "readonly" in message or "unable to open" in message:
            raise StateError(f"{what}: cannot write the state file ({message})") from exc
        raise StateError(f"{what}: {message}") from exc


class StateStore:
    """Open with :meth:`open`; closed with :meth:`close` (or as a context manager)."""

    def __init__(
        self,
        path: Path,
        write: sqlite3.Connection,
        read: sqlite3.Connection,
        lock_fd: int,
        created: bool,
    ) -> None:
        self.path = path
        self._write = write
        self._read = read
        self._lock_fd = lock_fd
        self.created = created
        self._next_seq = 1 + (self._scalar("SELECT max(seq) FROM urls") or 0)
        self._run_id: int | None = None
        self._run_errors: dict[str, int] = {}
        self._held = int(self._scalar("SELECT count(*) FROM held") or 0)
        # Workers look up a URL's last fetch (recrawl) on their own connection, one at a
        # time: the read connection is the frontier's, under the crawler's lock.
        self._prior_lock = threading.Lock()
        self._prior_conn: sqlite3.Connection | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        identity: Mapping[str, Any],
        *,
        fresh: bool = False,
        replace_foreign: bool = False,
        announce: Callable[[str], None] | None = None,
        migrations: Sequence[Migration] = _MIGRATIONS,
    ) -> StateStore:
        """Open (or create) the state at ``path`` for the crawl that ``identity`` names.

        ``fresh`` deletes an existing shoal state first; a file that is not one (corrupt,
        or another program's) is deleted only with ``replace_foreign`` as well. A file of
        an older schema is migrated in place, a backup beside it first; ``announce`` (else
        the log) is told so. ``migrations`` is for tests: the default is this shoal's.
        Raises StateLocked if another live process holds it, StateMismatch if it was made
        for another crawl, StateError if it cannot be used at all (a newer schema, or a
        migration that failed and was rolled back).
        """
        path = Path(path)
        lock_fd = _lock(path)
        conns: list[sqlite3.Connection] = []
        try:
            if fresh and path.exists() and not replace_foreign:
                peek_identity(path)  # raises for a file that is not a shoal state
            if fresh:
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(f"{path}{suffix}")
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        raise StateError(
                            f"cannot remove {path}{suffix} for --fresh: {exc.strerror or exc}"
                        ) from None
            created = not path.exists()
            if created:
                _create(path, identity, migrations)
            else:
                _check_writable(path)
            conns.append(_connect(path))
            conns.append(_connect(path))
            write, read = conns
            version = _check(path, read, identity, 1 + len(migrations))
            if version <= len(migrations):
                # Under the lock taken above: never under a running crawl.
                _migrate(path, write, version, migrations, announce or logger.info)
            with _translated("adding the cookies table"), write:
                # Additive, without a schema bump: a release without cookies ignores the
                # table, and a file it made gets it here. (A migration that renumbers
                # nothing else may take it over: IF NOT EXISTS keeps both paths right.)
                write.execute(_COOKIES_TABLE)
            return cls(path, write, read, lock_fd, created)
        except BaseException:
            for conn in conns:
                conn.close()
            _unlock(path, lock_fd)
            raise

    def discard(self) -> None:
        """Close and delete a state this process created (a crawl that could not start)."""
        if not self.created:
            self.close()
            return
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}{suffix}")

    # -- reading -------------------------------------------------------------------------

    def _scalar(self, sql: str, *args: Any) -> Any:
        with _translated("reading the state file"):
            row = self._read.execute(sql, args).fetchone()
        return row[0] if row else None

    @property
    def output_offset(self) -> int:
        return int(self._scalar("SELECT value FROM meta WHERE key='output_offset'") or 0)

    def output_offsets(self) -> list[int]:
        """Each output's committed byte offset, the first output's first."""
        with _translated("reading the state file"):
            rows = self._read.execute("SELECT offset FROM outputs ORDER BY n").fetchall()
        return [int(offset) for (offset,) in rows]

    def fingerprints(self) -> Iterator[int]:
        with _translated("reading the state file"):
            for (fp,) in self._read.execute("SELECT fp FROM urls"):
                yield _unsigned(fp)

    def held_count(self) -> int:
        """Queued URLs whose latest record is a held-back one (robots.txt unreachable)."""
        return self._held

    def queued_count(self) -> int:
        return int(self._scalar("SELECT count(*) FROM urls WHERE state=0") or 0)

    def done_count(self) -> int:
        return int(self._scalar("SELECT count(*) FROM urls WHERE state>0") or 0)

    def totals(self) -> dict[str, Any]:
        """Counts summed over every run of this crawl, this one included."""
        with _translated("reading the state file"):
            return _run_totals(self._read)

    # -- recrawl ---------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The crawl's run number as records name it: 1, then one more per ``--recrawl``."""
        return int(self._scalar("SELECT value FROM meta WHERE key='generation'") or 1)

    def begin_generation(
        self, fetched_before: float | None = None, *, even_if_none_due: bool = False
    ) -> int | None:
        """Start the next run of a recrawl, in one transaction: every URL the state knows
        (with ``fetched_before``, a wall-clock time: only those never fetched or fetched
        before it) is queued again (on disk, paged in as memory allows), keeping what its
        last fetch left (status, validators, digest) to compare with. Returns the new run's
        number; None if no URL is due (nothing changed), unless ``even_if_none_due`` (a
        run that reads the sitemaps for pages changed since their last fetch)."""
        # A redirect target another URL reached (claimed) is queued too: the redirect may
        # lead elsewhere now, and a claim holds for the run that made it only.
        due = ""
        if fetched_before is not None:
            due = " WHERE fetched_at IS NULL OR fetched_at < ?"
        args = () if fetched_before is None else (fetched_before,)
        with _translated("starting a recrawl"), self._write:
            cur = self._write.execute(
                f"UPDATE urls SET state=0, spilled=1, claimed=NULL{due}", args
            )
            if cur.rowcount == 0 and not even_if_none_due:
                return None  # the transaction changed nothing
            row = self._write.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
            generation = int(row[0]) + 1
            self._write.execute(
                "UPDATE meta SET value=? WHERE key='generation'", (str(generation),)
            )
            # When the run began: a URL fetched before it and changed since (a sitemap's
            # <lastmod> says so) is revisited in it even if not due (revisit_rows).
            self._write.execute(
                "INSERT OR REPLACE INTO meta VALUES ('generation_started', ?)", (repr(time.time()),)
            )
        return generation

    def forget_generation(self) -> bool:
        """Undo a run begun ``even_if_none_due`` that revisited nothing (no record of it,
        nothing queued): the next run takes its number. Whether it was undone."""
        with _translated("writing the state file"), self._write:
            row = self._write.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
            generation = int(row[0])
            busy = self._write.execute(
                "SELECT (SELECT count(*) FROM changes WHERE generation=?) + "
                "(SELECT count(*) FROM urls WHERE state=0)",
                (generation,),
            ).fetchone()[0]
            if busy or generation <= 1:
                return False
            self._write.execute(
                "UPDATE meta SET value=? WHERE key='generation'", (str(generation - 1),)
            )
        return True

    def revisit_rows(self, changed: Sequence[tuple[int, float]]) -> list[RevisitRow]:
        """Of the URLs ``changed`` names (fingerprint, a sitemap's <lastmod>), those last
        fetched before their lastmod: queued in this run, or done in an earlier run (fetched
        before this run began: not one this run has revisited already)."""
        found: list[RevisitRow] = []
        with self._prior_lock, _translated("reading the state file"):
            if self._prior_conn is None:
                self._prior_conn = _connect(self.path)
            conn = self._prior_conn
            row = conn.execute("SELECT value FROM meta WHERE key='generation_started'").fetchone()
            began = float(row[0]) if row else None
            for i in range(0, len(changed), 250):  # two host parameters each, under 999
                chunk = changed[i : i + 250]
                values = ",".join("(?, ?)" for _ in chunk)
                args = [x for fp, lastmod in chunk for x in (_signed(fp), lastmod)]
                rows = conn.execute(
                    f"WITH c(fp, lastmod) AS (VALUES {values}) "
                    "SELECT u.fp, u.seq, u.url, u.host, u.depth, u.referrer, u.state, u.spilled, "
                    "u.fetched_at FROM c JOIN urls AS u ON u.fp = c.fp "
                    "WHERE u.fetched_at IS NOT NULL AND u.fetched_at < c.lastmod",
                    args,
                ).fetchall()
                for fp, seq, url, host, depth, ref, state, spilled, fetched_at in rows:
                    if state != QUEUED and (began is None or fetched_at >= began):
                        continue
                    row_ = UrlRow(_unsigned(fp), url, host, depth, ref, bool(spilled))
                    found.append(RevisitRow(row_, seq, state == QUEUED))
        return found

    def generation_pages(self) -> int:
        """URLs the current recrawl run has committed so far (its records' count)."""
        return int(
            self._scalar(
                "SELECT sum(n) FROM changes WHERE generation="
                "(SELECT CAST(value AS INTEGER) FROM meta WHERE key='generation')"
            )
            or 0
        )

    def next_due(self, after: float) -> float | None:
        """When the URL fetched longest ago falls due, ``after`` seconds past its fetch."""
        oldest = self._scalar("SELECT min(fetched_at) FROM urls")
        return None if oldest is None else float(oldest) + after

    def prior(self, fp: int) -> Prior | None:
        """The last fetch of the URL ``fp`` names; None if it was never fetched. A fetch
        a state of schema 2 recorded has its status only (no validators, no digest)."""
        with self._prior_lock, _translated("reading the state file"):
            if self._prior_conn is None:
                self._prior_conn = _connect(self.path)
            row = self._prior_conn.execute(
                "SELECT status, etag, last_modified, sha256, final_url, fetched_at, captured_at, "
                "sha1 "
                "FROM urls "
                "WHERE fp=?",
                (_signed(fp),),
            ).fetchone()
        if row is None or (row[0] is None and row[5] is None):
            return None  # known, never fetched (queued, or denied by robots.txt): new
        return Prior(*row)

    # -- runs ------------------------------------------------------------------------------

    def cookies(self) -> list[tuple[str, str]]:
        """Every stored cookie: (key, the cookie as JSON)."""
        with _translated("reading the state file"):
            return [
                (str(k), str(d)) for k, d in self._read.execute("SELECT key, data FROM cookies")
            ]

    def start_run(self) -> None:
        now = time.time()
        with _translated("writing the state file"), self._write:
            cur = self._write.execute(
                "INSERT INTO runs (started_at, ended_at, outcome) VALUES (?, ?, 'running')",
                (now, now),
            )
        self._run_id = cur.lastrowid

    def end_run(self, outcome: str) -> None:
        if self._run_id is None:
            return
        with _translated("writing the state file"), self._write:
            self._write.execute(
                "UPDATE runs SET outcome=?, ended_at=? WHERE id=?",
                (outcome, time.time(), self._run_id),
            )

    def prepare_resume(self) -> None:
        """Everything still queued lives on disk until paged in (memory is empty now)."""
        with _translated("resuming"), self._write:
            self._write.execute("UPDATE urls SET spilled=1 WHERE state=0 AND spilled=0")

    def holds(self) -> dict[str, float]:
        """Hosts that asked not to be asked again before a wall-clock time still ahead."""
        with _translated("reading the state file"):
            rows = self._read.execute(
                "SELECT host, until FROM holds WHERE until > ?", (time.time(),)
            ).fetchall()
        return dict(rows)

    def spilled_count(self, after_seq: int) -> int:
        return int(
            self._scalar(
                "SELECT count(*) FROM urls WHERE state=0 AND spilled=1 AND seq>?", after_seq
            )
            or 0
        )

    def page_in(self, after_seq: int, limit: int) -> list[tuple[int, UrlRow]]:
        """Up to ``limit`` spilled queued URLs after ``after_seq``: (seq, row) pairs."""
        with _translated("reading the state file"):
            rows = self._read.execute(
                "SELECT seq, fp, url, host, depth, referrer, request FROM urls "
                "WHERE state=0 AND spilled=1 AND seq>? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [
            (seq, UrlRow(_unsigned(fp), url, host, depth, ref, True, req))
            for seq, fp, url, host, depth, ref, req in rows
        ]

    # -- writing (the writer thread only) --------------------------------------------------

    def commit(
        self,
        added: Iterable[UrlRow],
        finished: Iterable[tuple[UrlRow, int, int | None]],
        output_offset: int | Sequence[int | None] | None,
        *,
        counts: RunCounts | None = None,
        holds: Iterable[tuple[str, float]] = (),
        notes: Iterable[tuple[int, FetchNote]] = (),
        claimed: Iterable[int] = (),
        cookies: Iterable[tuple[str, str | None]] = (),
    ) -> None:
        """One transaction: new URLs, final states, where the output now ends (each
        output's offset, in order, for a crawl with several; None: an idempotent output),
        what this batch adds to the current run's counts, hosts' holds (host,
        wall-clock time until which it must not be asked) and the cookie jar's changes
        (key, the cookie as JSON; None or '': removed, '' saying it expired, which for
        the one jar a state file serves is the same)."""
        holds = list(holds)
        cookies = list(cookies)
        finished = list(finished)
        offsets = (
            [output_offset]
            if output_offset is None or isinstance(output_offset, int)
            else list(output_offset)
        )
        with _translated("writing the state file"), self._write:
            if cookies:
                self._write.executemany(
                    "INSERT OR REPLACE INTO cookies VALUES (?, ?)",
                    [(k, d) for k, d in cookies if d],
                )
                self._write.executemany(
                    "DELETE FROM cookies WHERE key=?", [(k,) for k, d in cookies if not d]
                )
            if holds:
                self._write.executemany(
                    "INSERT INTO holds VALUES (?, ?) ON CONFLICT(host) DO UPDATE SET "
                    "until=max(until, excluded.until)",
                    holds,
                )
            if counts is not None and self._run_id is not None:
                for kind, n in (counts.errors or {}).items():
                    self._run_errors[kind] = self._run_errors.get(kind, 0) + n
                self._write.execute(
                    "UPDATE runs SET pages=pages+?, ok=ok+?, redirects=redirects+?, "
                    "failed=failed+?, bytes=bytes+?, errors=?, ended_at=? WHERE id=?",
                    (
                        counts.pages,
                        counts.ok,
                        counts.redirects,
                        counts.failed,
                        counts.bytes,
                        json.dumps(self._run_errors, sort_keys=True),
                        time.time(),
                        self._run_id,
                    ),
                )
            rows = [(*self._row_head(row), QUEUED, int(row.spilled)) for row in added]
            if rows:
                self._write.executemany(
                    f"INSERT OR IGNORE INTO urls {_URL_COLUMNS} "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    rows,
                )
            done = [(*self._row_head(row), state, status) for row, state, status in finished]
            if done:
                # Upsert: a page can finish before the batch that discovered it commits.
                self._write.executemany(
                    f"INSERT INTO urls {_URL_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?) "
                    "ON CONFLICT(fp) DO "
                    "UPDATE SET state=excluded.state, status=excluded.status",
                    done,
                )
            noted = [
                (
                    int(n.keep_validators),
                    n.etag,
                    n.etag,
                    int(n.keep_validators),
                    n.last_modified,
                    n.last_modified,
                    n.sha256,
                    n.sha256,
                    n.fetched_at,
                    n.sha256,
                    n.sha1,
                    n.final_url,
                    n.fetched_at,
                    _signed(fp),
                )
                for fp, n in notes
            ]
            if noted:
                # A 304 has no body: the digest of the capture it confirms stays.
                self._write.executemany(
                    "UPDATE urls SET etag=CASE WHEN ? THEN coalesce(?, etag) ELSE ? END, "
                    "last_modified=CASE WHEN ? THEN coalesce(?, last_modified) ELSE ? END, "
                    "captured_at=CASE WHEN ? IS NOT "
                    "NULL AND (sha256 IS NULL OR sha256 != ?) THEN ? ELSE captured_at END, "
                    "sha256=coalesce(?, sha256), sha1=coalesce(?, sha1), final_url=?, fetched_at=? "
                    "WHERE fp=?",
                    noted,
                )
            marked = [(_signed(fp),) for fp in claimed]
            if marked:
                self._write.executemany("UPDATE urls SET claimed=1 WHERE fp=?", marked)
            changes = (counts.changes if counts is not None else None) or {}
            if changes:
                generation = self._write.execute(
                    "SELECT value FROM meta WHERE key='generation'"
                ).fetchone()[0]
                self._write.executemany(
                    "INSERT INTO changes VALUES (?, ?, ?) ON CONFLICT(generation, change) DO "
                    "UPDATE SET n=n+excluded.n",
                    [(int(generation), change, n) for change, n in changes.items()],
                )
            held_back = (counts.held_back if counts is not None else None) or []
            if held_back or self._held:
                self._supersede([row.url for row, _, _ in finished], held_back)
            if offsets[0] is not None:
                self._write.execute(
                    "UPDATE meta SET value=? WHERE key='output_offset'", (str(offsets[0]),)
                )
            moved = [(offset, n) for n, offset in enumerate(offsets) if offset is not None]
            if moved:
                self._write.executemany("UPDATE outputs SET offset=? WHERE n=?", moved)

    def _supersede(self, finished: list[str], held_back: list[tuple[str, str]]) -> None:
        """Inside commit's transaction: the held-back records this batch's records
        supersede (added to meta 'superseded'), and which URLs are now held back."""
        urls = [*finished, *(url for url, _ in held_back)]
        earlier: list[str] = []
        for i in range(0, len(urls), 500):  # SQLite's bound on host parameters
            chunk = urls[i : i + 500]
            earlier.extend(
                error
                for (error,) in self._write.execute(
                    f"SELECT error FROM held WHERE url IN ({','.join('?' * len(chunk))})", chunk
                )
            )
        if earlier:
            row = self._write.execute("SELECT value FROM meta WHERE key='superseded'").fetchone()
            gone: dict[str, Any] = json.loads(row[0]) if row else {}
            gone["pages"] = gone.get("pages", 0) + len(earlier)
            gone["failed"] = gone.get("failed", 0) + len(earlier)
            errors = gone.setdefault("errors", {})
            for kind in earlier:
                errors[kind] = errors.get(kind, 0) + 1
            self._write.execute(
                "INSERT OR REPLACE INTO meta VALUES ('superseded', ?)",
                (json.dumps(gone, sort_keys=True),),
            )
        if finished:
            self._write.executemany("DELETE FROM held WHERE url=?", [(u,) for u in finished])
        if held_back:
            self._write.executemany("INSERT OR REPLACE INTO held VALUES (?, ?)", held_back)
        self._held = int(self._write.execute("SELECT count(*) FROM held").fetchone()[0])

    def _row_head(self, row: UrlRow) -> tuple[int, int, str, str, int, str | None, str | None]:
        """The leading columns of a row (fp, seq, url, host, depth, referrer, request),
        taking the next sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        return _signed(row.fp), seq, row.url, row.host, row.depth, row.referrer, row.request

    def close(self) -> None:
        if self._prior_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._prior_conn.close()
        with contextlib.suppress(sqlite3.Error):
            self._read.close()
        with contextlib.suppress(sqlite3.Error):
            self._write.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            self._write.close()
        if self._lock_fd >= 0:
            _unlock(self.path, self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check(path: Path, conn: sqlite3.Connection, identity: Mapping[str, Any], newest: int) -> int:
    """Check that the file is a shoal state of a schema up to ``newest`` and of this
    crawl; return its schema version."""
    with _translated("reading the state file"):
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc) or "unable to open" in str(exc):
                # Its -wal or -shm file cannot be written: a permission, not a foreign file.
                raise StateError(
                    f"cannot write the state file {path} or the -wal/-shm files beside it "
                    f"({exc}): check their permissions, or choose another --state"
                ) from None
            raise StateError(
                f"{path} is not a shoal state file ({exc}); shoal leaves it as it is: "
                "choose another --state"
            ) from None
    if meta.get("app") != _APP:
        raise StateError(
            f"{path} is not a shoal state file; shoal leaves it as it is: choose another --state"
        )
    version = _schema_of(path, meta, newest)
    try:
        theirs = json.loads(meta["identity"])
    except (KeyError, ValueError):
        raise StateError(
            f"{path} is damaged (no crawl identity); --fresh deletes it, and with "
            "--overwrite also replaces an existing output"
        ) from None
    ours = json.loads(json.dumps(identity, sort_keys=True))
    if theirs != ours:
        files = " and ".join(p for p, _ in identity_outputs(theirs) if p)
        # Options named as placeholders: max_depth from Python, --max-depth in a shell.
        raise StateMismatch.naming(
            literal(f"{path} belongs to a crawl with other options: ")
            + "; ".join(_changes(theirs, ours))
            + ". To resume that crawl, give it those options again; to start over, add "
            "{fresh=True}, which deletes this state"
            + literal(f" and the output {files}" if files else "")
            + "; to keep both, choose another {output} and {state}"
        )
    return version


def _schema_of(path: Path, meta: Mapping[str, str], newest: int = SCHEMA_VERSION) -> int:
    """The schema version meta names; StateError if this shoal cannot read it."""
    try:
        version = int(meta["schema"])
    except (KeyError, ValueError):
        raise StateError(
            f"{path} is damaged (no state schema version); --fresh deletes it, and with "
            "--overwrite also replaces an existing output"
        ) from None
    if version > newest:
        raise StateError(
            f"{path} was written by a newer shoal: it has state schema {version}, and this "
            f"shoal ({__version__}) reads schema {newest} and older. Upgrade shoal to resume "
            "this crawl; shoal leaves the file as it is"
        )
    if version < 1:
        raise StateError(f"{path} is damaged (state schema {version}); shoal leaves it as it is")
    return version


def _migrate(
    path: Path,
    conn: sqlite3.Connection,
    version: int,
    migrations: Sequence[Migration],
    announce: Callable[[str], None],
) -> None:
    """Take the file at ``path`` from schema ``version`` to the newest ``migrations``
    reach: a backup beside it first, then every step in one transaction (SQLite's DDL is
    transactional), so a failure at any step leaves the file as it was."""
    target = 1 + len(migrations)
    backup = _backup(path, conn, version, target)
    try:
        conn.execute("BEGIN IMMEDIATE")
        _apply(conn, version, migrations)
        conn.commit()
    except BaseException as exc:
        try:
            conn.rollback()
        except sqlite3.Error as again:
            raise StateError(
                f"migrating {path} from state schema {version} to {target} failed ({exc}), "
                f"and so did rolling back ({again}): SQLite rolls it back when the file is "
                f"next opened; a copy of the file as it was is at {backup}"
            ) from exc
        # The file is as it was, so the copy is not needed: none piles up over retries.
        with contextlib.suppress(OSError):
            os.unlink(backup)
        if not isinstance(exc, Exception):
            raise  # Ctrl-C during the migration: rolled back, then propagated
        raise StateError(
            f"migrating {path} from state schema {version} to {target} failed ({exc}); "
            f"rolled back: the file is as it was (schema {version}). Free the disk or fix "
            "what the message names, and run the crawl again"
        ) from exc
    announce(
        f"migrated the state file {path} from schema {version} to {target}; "
        f"the file as it was is kept at {backup}"
    )


def _apply(conn: sqlite3.Connection, version: int, migrations: Sequence[Migration]) -> None:
    """Inside the caller's transaction: every step from ``version`` on, then the version."""
    for step in migrations[version - 1 :]:
        step(conn)
    conn.execute("UPDATE meta SET value=? WHERE key='schema'", (str(1 + len(migrations)),))


# Backups of one file at one version beside it at most (each migration that succeeded
# made one; each new name is tried once): past that, the folder needs tidying first.
_MAX_BACKUPS = 100


def _backup(path: Path, conn: sqlite3.Connection, version: int, target: int) -> Path:
    """Copy the state as it is to a free name beside it (STATE.vN.bak, then STATE.vN.1.bak
    and so on: an existing file is never overwritten). SQLite's online backup reads
    through ``conn``, so what the -wal file holds is in the copy too; the copy is one
    self-contained file (rollback journal, not WAL)."""
    failed = f"cannot back up {path} before migrating it from state schema {version} to {target}"
    for n in range(_MAX_BACKUPS):
        backup = path.with_name(f"{path.name}.v{version}{f'.{n}' if n else ''}.bak")
        try:
            mode = os.stat(path).st_mode & 0o777
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StateError(
                f"{failed} ({backup}: {exc.strerror or exc}); the file is as it was"
            ) from None
        os.close(fd)
        break
    else:
        raise StateError(
            f"{failed}: {_MAX_BACKUPS} backups of it are already beside it; move them away"
        )
    try:
        copy = sqlite3.connect(backup, isolation_level=None)
        try:
            conn.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a half-made copy is nobody's backup
            os.unlink(backup)
        if not isinstance(exc, sqlite3.Error):
            raise
        raise StateError(f"{failed} ({backup}: {exc}); the file is as it was") from None
    return backup


def _changes(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """Each option that differs, as ``{option}: OLD in the state, NEW now`` (a template
    for :meth:`~shoal.ShoalError.naming`). The identity's keys are crawl option names,
    its ``scope`` a dict of them; ``start_urls`` are the crawl's arguments."""
    changes = []
    for key in sorted(set(theirs) | set(ours)):
        old, new = theirs.get(key), ours.get(key)
        if old == new:
            continue
        if key == "scope" and isinstance(old, dict) and isinstance(new, dict):
            changes.extend(_changes(old, new))
            continue
        if key == "outputs":  # a one-output crawl's identity lists none: name the paths
            old = [p for p, _ in identity_outputs(theirs)]
            new = [p for p, _ in identity_outputs(ours)]
            changes.append(literal(f"outputs: {_shown(old)} in the state, {_shown(new)} now"))
            continue
        name = "start URLs" if key == "start_urls" else f"{{{key}}}"
        changes.append(name + literal(f": {_shown(old)} in the state, {_shown(new)} now"))
    return changes


def _shown(value: Any) -> str:
    if value is None or value in ([], {}):
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def identity_outputs(identity: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """(absolute path or None for stdout, format) of each output an identity names."""
    several = identity.get("outputs")
    if isinstance(several, list) and several:
        return [(str(p), str(f)) for p, f in several]
    output = identity.get("output")
    return [(None if output is None else str(output), str(identity.get("format") or "jsonl"))]


def peek_identity(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The identity stored in the shoal state at ``path``; None if there is no file.

    Read-only. Raises StateError if the file is not a shoal state (corrupt or foreign).
    """
    path = Path(path)
    if not path.exists():
        return None
    with _translated(f"reading {path}"):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as exc:
            raise StateError(
                f"{path} is not a shoal state file ({exc}); shoal leaves it as it is: "
                "choose another --state"
            ) from None
        finally:
            conn.close()
    if meta.get("app") != _APP:
        raise StateError(
            f"{path} is not a shoal state file; shoal leaves it as it is: choose another --state"
        )
    try:
        identity = json.loads(meta["identity"])
    except (KeyError, ValueError):
        return {}
    return identity if isinstance(identity, dict) else {}


def recrawl_runs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each recrawl run's URLs by change: ``[{"run": 2, "new": 1, "changed": 3, ...}]``
    (none for a file from before recrawls, or a crawl never recrawled)."""
    try:
        rows = conn.execute(
            "SELECT generation, change, n FROM changes ORDER BY generation"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    runs: dict[int, dict[str, Any]] = {}
    for generation, change, n in rows:
        run = runs.setdefault(
            generation,
            {"run": generation, **dict.fromkeys(("new", "changed", "unchanged", "gone"), 0)},
        )
        run[change] = n
    return list(runs.values())


def _run_totals(conn: sqlite3.Connection) -> dict[str, Any]:
    try:
        rows = conn.execute(
            "SELECT started_at, ended_at, outcome, pages, ok, redirects, failed, bytes, errors "
            "FROM runs ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:
        rows = []  # a state file from before runs were recorded
    runs = []
    totals: dict[str, Any] = dict.fromkeys(_COUNTS, 0)
    errors: dict[str, int] = {}
    elapsed = 0.0
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='superseded'").fetchone()
    except sqlite3.OperationalError:
        row = None
    superseded: dict[str, Any] = json.loads(row[0]) if row else {}
    for started, ended, outcome, *counts, errs in rows:
        run = dict(zip(_COUNTS, counts, strict=True))
        run.update(
            started_at=started,
            elapsed=round(ended - started, 3),
            outcome=outcome,
            errors=json.loads(errs),
        )
        runs.append(run)
        for key in _COUNTS:
            totals[key] += run[key]
        for kind, n in run["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
        elapsed += ended - started
    # Each URL once, as its latest record says: a held-back record a later one replaced
    # is left out of the totals (it stays in its own run's counts).
    for key in ("pages", "failed"):
        totals[key] -= superseded.get(key, 0)
    for kind, n in superseded.get("errors", {}).items():
        left = errors.get(kind, 0) - n
        if left > 0:
            errors[kind] = left
        else:
            errors.pop(kind, None)
    totals.update(
        runs=len(runs),
        elapsed=round(elapsed, 3),
        errors=errors,
        superseded=superseded.get("pages", 0),
    )
    totals["pages_per_second"] = round(totals["pages"] / elapsed, 1) if elapsed > 0 else 0.0
    return {"totals": totals, "runs": runs}


def _create(path: Path, identity: Mapping[str, Any], migrations: Sequence[Migration]) -> None:
    """Build a new state file beside ``path`` and rename it into place: a state file
    either does not exist or is complete, even if the disk fills up halfway. Built as
    schema 1 and every migration, so it is what a migrated file is."""
    tmp = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        # Readable by its owner only: it holds the crawl's cookies (sessions, logins).
        # SQLite gives the -wal and -shm files the database file's permissions.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        with _translated("creating the state file"):
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(_SCHEMA_1)
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("app", _APP),
                        ("schema", "1"),
                        ("identity", json.dumps(identity, sort_keys=True)),
                        ("output_offset", "0"),
                        ("created_at", str(time.time())),
                    ],
                )
                _apply(conn, 1, migrations)
                conn.execute("COMMIT")
            finally:
                conn.close()
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(f"cannot create the state file {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _check_writable(path: Path) -> None:
    """SQLite opens a file it may not write read-only without a word and fails at the
    first write ("attempt to write a readonly database"): ask the OS first, so the
    message names the file and the reason (permissions, a read-only file system)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise StateError(
            f"cannot write the state file {path}: {exc.strerror or exc}; shoal needs to "
            "write it to resume the crawl (check its permissions, or choose another --state)"
        ) from None
    os.close(fd)


def _connect(path: Path) -> sqlite3.Connection:
    with _translated(f"opening {path}"):
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.isolation_level = "DEFERRED"  # `with conn:` wraps a transaction
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a killed process loses nothing committed; power loss may lose
        # the last transactions but never corrupts the file.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn


# Tries at taking the lock file when other crawls keep removing it under us (each try
# that loses that race means another crawl ended in between): bounded, never a spin.
_LOCK_TRIES = 20


def _lock(path: Path) -> int:
    """Open and ``flock`` STATE.lock; the fd holds the lock until :func:`_unlock`.

    The file is removed when its crawl ends (:func:`_unlock`, while still holding the
    lock), so the file we opened may have been unlinked before our flock got it: a lock
    on an inode no longer at the path excludes nobody. So after locking, the inode at
    the path must still be ours; if not, go round again with the new file."""
    import fcntl

    lock_path = f"{path}.lock"
    for _ in range(_LOCK_TRIES):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(
                f"cannot create the state file {path}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateLocked(f"{path} is in use by another running crawl") from None
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
        if _same_file(fd, lock_path):
            return fd
        os.close(fd)  # its crawl ended and removed it meanwhile: lock the current one
    raise StateLocked(f"{path} is being opened and closed by other crawls; try again")


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _unlock(path: Path, fd: int) -> None:
    """Remove STATE.lock, then let go of it. Removed while the lock is still held, so no
    other crawl can hold it at that moment; one that opened the file before the removal
    sees on locking that the inode is no longer at the path (:func:`_lock`). Only our
    own file goes: the inode we hold, empty as shoal leaves it."""
    lock_path = f"{path}.lock"
    try:
        if _same_file(fd, lock_path) and os.fstat(fd).st_size == 0:
            os.unlink(lock_path)
    except OSError:
        pass  # a lock file left behind is harmless: the next crawl takes it over
    finally:
        os.close(fd)
