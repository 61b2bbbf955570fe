"""Where the back office keeps things: SQLite (default) or PostgreSQL (fleets).

One small interface, :class:`Storage`, two implementations sharing their SQL
(:class:`SqliteStorage`, :class:`PostgresStorage`), chosen by :func:`open_storage`. Each
operation is one database transaction; an upload batch in particular is decided by the pure
:func:`backoffice.ingest.plan_ingest` and written with one bulk insert (``executemany`` on
SQLite, ``COPY`` on PostgreSQL) - no per-row round trips.

Concurrency: uploads of one terminal are serialised by locking its ``terminals`` row
(PostgreSQL ``SELECT ... FOR UPDATE``; SQLite has one writer anyway, ``BEGIN IMMEDIATE``
behind a process-local lock so threads queue instead of spinning on SQLITE_BUSY).
Connections come from a small pool (psycopg-pool's on PostgreSQL), shared by the server's
threads.

PostgreSQL's schema is versioned (:mod:`backoffice.migrations`: numbered migrations
applied at start under an advisory lock) and its journal entries are partitioned by the
month they arrived in, partitions made as needed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from backoffice import migrations
from backoffice.auth import TerminalKey
from backoffice.errors import (
    BadRequestError,
    DuplicateConflictError,
    EnrolmentError,
    StorageError,
)
from backoffice.fleet_storage import FLEET_SCHEMA, FleetStorage
from backoffice.ingest import (
    ENTRY_COLUMNS,
    Entry,
    StoredLink,
    advance_acked,
    neighbourhood,
    plan_ingest,
)
from backoffice.publish import (
    HotlistChange,
    HotlistSnapshot,
    can_delta,
)
from backoffice.venue import VENUE_SCHEMA, VenueStorage
from terminal.host.clock import Clock, SystemClock
from terminal.wire.canonical import canonical_json, parse_json_text
from terminal.wire.events import TerminalEvent

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 8
POOL_TIMEOUT = 10.0
"""Seconds to wait for a PostgreSQL connection before the request fails (500, sent again)."""
DEFAULT_HOTLIST_HISTORY = 10_000
"""Hotlist versions kept as changes; a terminal further behind gets the full list."""


@dataclass(frozen=True)
class DocumentVersions:
    """What :meth:`Storage.document_versions` reports: the hotlist's version and floor,
    and the version of each stored document by kind."""

    hotlist: int
    hotlist_floor: int
    documents: dict[str, int]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome of one stored batch."""

    acked_up_to: int
    stored: int
    skipped: int


@dataclass(frozen=True, slots=True)
class EventsResult:
    """The outcome of one stored batch of terminal events: ``acked_up_to`` is the highest
    event id stored for the terminal."""

    acked_up_to: int
    stored: int
    skipped: int


class Storage(Protocol):
    """What the back office needs of a database. Every method is one transaction."""

    def ingest(self, terminal_id: str, entries: Sequence[Entry]) -> IngestResult:
        """Store a batch (all or nothing); raises ConflictError, StorageError."""
        ...

    def terminal_key(self, terminal_id: str) -> TerminalKey | None: ...

    def enrol(self, terminal_id: str, secret: bytes, now: float, replace: bool = False) -> None: ...

    def revoke(self, terminal_id: str, now: float) -> None: ...

    def acked_up_to(self, terminal_id: str) -> int: ...

    def entries(
        self, terminal_id: str, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]: ...

    def store_events(
        self, terminal_id: str, events: Sequence[TerminalEvent], now: float
    ) -> EventsResult:
        """Store a batch of terminal events (a repeat is ignored); raises ConflictError."""
        ...

    def events(
        self,
        terminal_id: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]: ...

    def hotlist_change(self, entry: str, added: bool) -> int: ...

    def hotlist_snapshot(self, since: int) -> HotlistSnapshot: ...

    def publish_document(
        self, kind: str, build: Callable[[int], dict[str, Any]]
    ) -> dict[str, Any]: ...

    def document(self, kind: str) -> dict[str, Any] | None: ...

    def document_text(self, kind: str) -> str | None: ...

    def document_versions(self) -> DocumentVersions: ...

    def hotlist_scan(self, consume: Callable[[list[str]], None], batch: int = 65536) -> int: ...

    def close(self) -> None: ...


class _Pool:
    """At most ``size`` connections, made on demand, reused, dropped when broken."""

    def __init__(
        self,
        factory: Callable[[], Any],
        size: int,
        is_broken: Callable[[Any], bool],
    ) -> None:
        self._factory = factory
        self._is_broken = is_broken
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self._slots:
            with self._lock:
                if self._closed:
                    raise StorageError("storage is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._factory()
            try:
                yield conn
            finally:
                if self._is_broken(conn):
                    with contextlib.suppress(Exception):
                        conn.close()
                else:
                    with self._lock:
                        if self._closed:
                            conn.close()
                        else:
                            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS terminals (
    terminal_id TEXT PRIMARY KEY,
    secret {blob} NOT NULL,
    revoked BOOLEAN NOT NULL,
    enrolled_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    acked_up_to BIGINT NOT NULL,
    max_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    terminal_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    amount BIGINT,
    card_token TEXT NOT NULL,
    region TEXT NOT NULL,
    category TEXT,
    extra TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (terminal_id, seq)
){entries_suffix};
CREATE TABLE IF NOT EXISTS terminal_events (
    terminal_id TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    detail TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (terminal_id, event_id)
){entries_suffix};
CREATE INDEX IF NOT EXISTS terminal_events_at ON terminal_events (at);
CREATE TABLE IF NOT EXISTS hotlist_changes (
    version BIGINT PRIMARY KEY,
    entry TEXT NOT NULL,
    added BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS hotlist_current (
    entry TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('hotlist_version', 0) ON CONFLICT DO NOTHING;
INSERT INTO meta (name, value) VALUES ('hotlist_floor', 0) ON CONFLICT DO NOTHING
"""

_INSERT_ENTRY = (
    f"INSERT INTO entries ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})"
)
# The end of the run of stored seqs that starts at ? + 1 (valid only when ? + 1 is stored).
_RUN_END = (
    "SELECT min(e.seq) FROM entries e WHERE e.terminal_id = ? AND e.seq > ? "
    "AND NOT EXISTS (SELECT 1 FROM entries n WHERE n.terminal_id = e.terminal_id "
    "AND n.seq = e.seq + 1)"
)


class _SqlStorage(FleetStorage, VenueStorage):
    """The SQL shared by both databases, written with ``?`` placeholders (heartbeats and
    TAC verdicts: :class:`backoffice.fleet_storage.FleetStorage`; venue occupancy:
    :class:`backoffice.venue.VenueStorage`)."""

    for_update = ""
    dialect = "sql"

    def __init__(self, pool_size: int, hotlist_history: int) -> None:
        self.hotlist_history = hotlist_history
        self._pool = self._make_pool(pool_size)
        # Enrolments and revocations made through this object, counted once committed: a
        # process's cache of terminal keys (backoffice.auth.TerminalKeys) starts afresh
        # when it moves on, so such a change is seen at once in this process.
        self.key_changes = 0

    def _make_pool(self, size: int) -> Any:
        return _Pool(self._connect, size, self._is_broken)

    # --- dialect hooks ----------------------------------------------------------------------

    def _connect(self) -> Any:
        raise NotImplementedError

    def _is_broken(self, conn: Any) -> bool:
        raise NotImplementedError

    def _tx(self, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql

    def _insert_entries(self, cur: Any, entries: Sequence[Entry], month: Any) -> None:
        cur.executemany(self._q(_INSERT_ENTRY), [e.row() for e in entries])

    def _stored_links(self, cur: Any, terminal_id: str, seqs: list[int]) -> dict[int, StoredLink]:
        if not seqs:
            return {}
        lo, hi = seqs[0], seqs[-1]
        # A batch is normally a contiguous run: one range scan. A sparse one would scan
        # everything stored in between, so it gets an exact list instead.
        if hi - lo < 2 * len(seqs) + 2:
            cur.execute(
                self._q(
                    "SELECT seq, hash, prev_hash FROM entries "
                    "WHERE terminal_id = ? AND seq BETWEEN ? AND ?"
                ),
                (terminal_id, lo, hi),
            )
        else:
            cur.execute(*self._seq_list_query(terminal_id, seqs))
        wanted = set(seqs)
        return {
            seq: StoredLink(seq, hash_, prev)
            for seq, hash_, prev in cur.fetchall()
            if seq in wanted
        }

    def _seq_list_query(self, terminal_id: str, seqs: list[int]) -> tuple[str, tuple[Any, ...]]:
        raise NotImplementedError

    # --- ingest -----------------------------------------------------------------------------

    def ingest(self, terminal_id: str, entries: Sequence[Entry]) -> IngestResult:
        """Store a batch of ``terminal_id``'s entries (strictly increasing ``seq``) in one
        transaction, or nothing of it; see :func:`backoffice.ingest.plan_ingest`."""
        return self._ingest(terminal_id, entries, None)

    def _ingest(self, terminal_id: str, entries: Sequence[Entry], month: Any) -> IngestResult:
        if any(entry.terminal_id != terminal_id for entry in entries):
            raise BadRequestError(f"entries of another terminal in {terminal_id}'s batch")
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "SELECT acked_up_to, max_seq FROM terminals WHERE terminal_id = ?"
                    + self.for_update
                ),
                (terminal_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise EnrolmentError(f"terminal {terminal_id} is not enrolled")
            acked, max_seq = int(row[0]), int(row[1])
            if not entries:
                return IngestResult(acked, 0, 0)
            stored = self._stored_links(cur, terminal_id, neighbourhood(entries))
            plan = plan_ingest(entries, stored)
            if not plan.new:
                return IngestResult(acked, 0, plan.skipped)
            self._insert_entries(cur, plan.new, month)
            seqs = [e.seq for e in entries]
            if max_seq <= acked:
                # Nothing was stored above acked: the batch alone decides how far it goes.
                new_acked = advance_acked(acked, seqs)
            else:
                new_acked = self._run_end(cur, terminal_id, acked)
            new_max = max(max_seq, seqs[-1])
            cur.execute(
                self._q("UPDATE terminals SET acked_up_to = ?, max_seq = ? WHERE terminal_id = ?"),
                (new_acked, new_max, terminal_id),
            )
            return IngestResult(new_acked, len(plan.new), plan.skipped)

    def _run_end(self, cur: Any, terminal_id: str, acked: int) -> int:
        cur.execute(
            self._q("SELECT 1 FROM entries WHERE terminal_id = ? AND seq = ?"),
            (terminal_id, acked + 1),
        )
        if cur.fetchone() is None:
            return acked
        cur.execute(self._q(_RUN_END), (terminal_id, acked))
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else acked

    # --- terminals --------------------------------------------------------------------------

    def terminal_key(self, terminal_id: str) -> TerminalKey | None:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT secret, revoked FROM terminals WHERE terminal_id = ?"),
                (terminal_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return TerminalKey(terminal_id, bytes(row[0]), bool(row[1]))

    def enrol(self, terminal_id: str, secret: bytes, now: float, replace: bool = False) -> None:
        """Enrol a terminal with ``secret``. An enrolled one (even revoked) is refused
        unless ``replace``: then it gets the new secret and is no longer revoked, and what
        it uploaded stays."""
        with self._tx() as cur:
            cur.execute(
                self._q("SELECT 1 FROM terminals WHERE terminal_id = ?" + self.for_update),
                (terminal_id,),
            )
            if cur.fetchone() is not None:
                if not replace:
                    raise EnrolmentError(f"terminal {terminal_id} is already enrolled")
                cur.execute(
                    self._q(
                        "UPDATE terminals SET secret = ?, revoked = ?, enrolled_at = ?, "
                        "revoked_at = NULL WHERE terminal_id = ?"
                    ),
                    (secret, False, now, terminal_id),
                )
            else:
                cur.execute(
                    self._q(
                        "INSERT INTO terminals (terminal_id, secret, revoked, enrolled_at, "
                        "acked_up_to, max_seq) VALUES (?, ?, ?, ?, 0, 0)"
                    ),
                    (terminal_id, secret, False, now),
                )
        self.key_changes += 1

    def revoke(self, terminal_id: str, now: float) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE terminals SET revoked = ?, revoked_at = ? WHERE terminal_id = ?"),
                (True, now, terminal_id),
            )
            if cur.rowcount == 0:
                raise EnrolmentError(f"terminal {terminal_id} is not enrolled")
        self.key_changes += 1

    def acked_up_to(self, terminal_id: str) -> int:
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT acked_up_to FROM terminals WHERE terminal_id = ?"),
                (terminal_id,),
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def entries(self, terminal_id: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Stored entries of a terminal with ``seq > after``, as received (``hash`` as
        lower-case hex)."""
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT body, hash FROM entries WHERE terminal_id = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?"
                ),
                (terminal_id, after, limit),
            )
            rows = cur.fetchall()
        # Stored rows are read as strictly as the requests they came from.
        return [{**parse_json_text(body), "hash": hash_} for body, hash_ in rows]

    # --- terminal events --------------------------------------------------------------------

    def store_events(
        self, terminal_id: str, events: Sequence[TerminalEvent], now: float
    ) -> EventsResult:
        """Store ``terminal_id``'s events (strictly increasing ids) in one transaction,
        received at ``now``. An id already stored with the same content is skipped; with
        other content it is a :class:`DuplicateConflictError` and nothing is stored - the
        terminal's outbox was replaced, and acknowledging would drop its new events."""
        rows = [
            (terminal_id, e.id, e.kind, e.at, canonical_json(dict(e.detail)).decode(), now)
            for e in events
        ]
        with self._tx() as cur:
            # Locks the terminal's row: its concurrent requests are decided one at a time.
            cur.execute(
                self._q("SELECT 1 FROM terminals WHERE terminal_id = ?" + self.for_update),
                (terminal_id,),
            )
            if cur.fetchone() is None:
                raise EnrolmentError(f"terminal {terminal_id} is not enrolled")
            stored: dict[int, tuple[Any, ...]] = {}
            if rows:
                cur.execute(
                    self._q(
                        "SELECT event_id, kind, at, detail FROM terminal_events "
                        "WHERE terminal_id = ? AND event_id BETWEEN ? AND ?"
                    ),
                    (terminal_id, rows[0][1], rows[-1][1]),
                )
                stored = {int(row[0]): tuple(row[1:]) for row in cur.fetchall()}
            new = []
            for row in rows:
                have = stored.get(row[1])
                if have is None:
                    new.append(row)
                elif have != row[2:5]:
                    raise DuplicateConflictError(
                        f"event {row[1]}: already stored with other content (outbox replaced?)"
                    )
            if new:
                cur.executemany(
                    self._q(
                        "INSERT INTO terminal_events (terminal_id, event_id, kind, at, detail, "
                        "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
                    ),
                    new,
                )
                # Venue gates' passages move the running occupancy in this transaction:
                # stored and counted together, or neither (backoffice.venue).
                fresh = {row[1] for row in new}
                self.count_venue_events(cur, terminal_id, [e for e in events if e.id in fresh], now)
            cur.execute(
                self._q("SELECT max(event_id) FROM terminal_events WHERE terminal_id = ?"),
                (terminal_id,),
            )
            row = cur.fetchone()
        acked = int(row[0]) if row and row[0] is not None else 0
        return EventsResult(acked, len(new), len(rows) - len(new))

    def events(
        self,
        terminal_id: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored terminal events, newest first (by event time, then id), at most ``limit``;
        only ``terminal_id``'s, of ``kind``, at or after ``since`` (Unix seconds) when given.
        Each is ``{"terminal_id", "id", "kind", "at", "detail", "received_at"}``."""
        where, params = [], []
        for clause, value in (
            ("terminal_id = ?", terminal_id),
            ("kind = ?", kind),
            ("at >= ?", since),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = "SELECT terminal_id, event_id, kind, at, detail, received_at FROM terminal_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, terminal_id, event_id DESC LIMIT ?"
        with self._tx(write=False) as cur:
            cur.execute(self._q(sql), (*params, max(0, limit)))
            rows = cur.fetchall()
        return [
            {
                "terminal_id": tid,
                "id": int(event_id),
                "kind": kind_,
                "at": float(at),
                "detail": parse_json_text(detail),
                "received_at": float(received_at),
            }
            for tid, event_id, kind_, at, detail, received_at in rows
        ]

    # --- hotlist ----------------------------------------------------------------------------

    def _meta(self, cur: Any, name: str, lock: bool = False) -> int:
        cur.execute(
            self._q("SELECT value FROM meta WHERE name = ?" + (self.for_update if lock else "")),
            (name,),
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, cur: Any, name: str, value: int) -> None:
        cur.execute(self._q("UPDATE meta SET value = ? WHERE name = ?"), (value, name))

    def hotlist_change(self, entry: str, added: bool) -> int:
        """Add or remove a hotlist entry (16 hex); returns the hotlist version after it. A
        change that changes nothing (adding a present entry) makes no version."""
        with self._tx() as cur:
            version = self._meta(cur, "hotlist_version", lock=True)
            cur.execute(self._q("SELECT 1 FROM hotlist_current WHERE entry = ?"), (entry,))
            if (cur.fetchone() is not None) == added:
                return version
            version += 1
            cur.execute(
                self._q("INSERT INTO hotlist_changes (version, entry, added) VALUES (?, ?, ?)"),
                (version, entry, added),
            )
            if added:
                cur.execute(
                    self._q("INSERT INTO hotlist_current (entry, version) VALUES (?, ?)"),
                    (entry, version),
                )
            else:
                cur.execute(self._q("DELETE FROM hotlist_current WHERE entry = ?"), (entry,))
            self._set_meta(cur, "hotlist_version", version)
            floor = version - self.hotlist_history
            if floor > self._meta(cur, "hotlist_floor"):
                cur.execute(self._q("DELETE FROM hotlist_changes WHERE version <= ?"), (floor,))
                self._set_meta(cur, "hotlist_floor", floor)
            return version

    def _snapshot_begin(self, cur: Any) -> None:
        """Hook: make the following reads one snapshot (SQLite's BEGIN already is)."""

    def hotlist_snapshot(self, since: int) -> HotlistSnapshot:
        with self._tx(write=False) as cur:
            self._snapshot_begin(cur)
            version = self._meta(cur, "hotlist_version")
            floor = self._meta(cur, "hotlist_floor")
            if can_delta(since, version, floor):
                cur.execute(
                    self._q(
                        "SELECT version, entry, added FROM hotlist_changes "
                        "WHERE version > ? ORDER BY version"
                    ),
                    (since,),
                )
                changes = tuple(HotlistChange(int(v), e, bool(a)) for v, e, a in cur.fetchall())
                return HotlistSnapshot(version, floor, changes, None)
            cur.execute("SELECT entry FROM hotlist_current ORDER BY entry")
            full = tuple(row[0] for row in cur.fetchall())
            return HotlistSnapshot(version, floor, None, full)

    # --- documents --------------------------------------------------------------------------

    def publish_document(self, kind: str, build: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Store the document ``build(next version)`` of ``kind`` - as its canonical JSON,
        the bytes its signature covers and the bytes served; returns it."""
        with self._tx() as cur:
            cur.execute(
                self._q("SELECT version FROM documents WHERE kind = ?" + self.for_update),
                (kind,),
            )
            row = cur.fetchone()
            version = (int(row[0]) if row else 0) + 1
            document = build(version)
            cur.execute(
                self._q(
                    "INSERT INTO documents (kind, version, document) VALUES (?, ?, ?) "
                    "ON CONFLICT (kind) DO UPDATE SET version = excluded.version, "
                    "document = excluded.document"
                ),
                (kind, version, canonical_json(document).decode()),
            )
            return document

    def document_text(self, kind: str) -> str | None:
        """The stored document of ``kind`` exactly as stored (what ``GET`` serves), or None."""
        with self._tx(write=False) as cur:
            cur.execute(self._q("SELECT document FROM documents WHERE kind = ?"), (kind,))
            row = cur.fetchone()
        return str(row[0]) if row else None

    def document(self, kind: str) -> dict[str, Any] | None:
        """The stored document of ``kind``, read (strictly) as JSON, or None."""
        text = self.document_text(kind)
        return None if text is None else parse_json_text(text)

    def document_versions(self) -> DocumentVersions:
        """The version of every published document and the hotlist's floor, in one small
        query: what a document poll checks before it serves from memory."""
        with self._tx(write=False) as cur:
            cur.execute(
                "SELECT kind, version FROM documents UNION ALL SELECT name, value FROM meta "
                "WHERE name IN ('hotlist_version', 'hotlist_floor')"
            )
            rows = {str(name): int(value) for name, value in cur.fetchall()}
        return DocumentVersions(
            hotlist=rows.get("hotlist_version", 0),
            hotlist_floor=rows.get("hotlist_floor", 0),
            documents={k: v for k, v in rows.items() if not k.startswith("hotlist_")},
        )

    def hotlist_scan(self, consume: Callable[[list[str]], None], batch: int = 65536) -> int:
        """Hand the whole hotlist, in entry order, to ``consume`` ``batch`` entries at a
        time, all from one read snapshot; returns the version it is at. A 10-million list
        is never held as Python strings at once (that would be about 700 MB)."""
        with self._tx(write=False) as cur:
            self._snapshot_begin(cur)
            version = self._meta(cur, "hotlist_version")
            cur.execute("SELECT entry FROM hotlist_current ORDER BY entry")
            while rows := cur.fetchmany(batch):
                consume([row[0] for row in rows])
        return version

    def close(self) -> None:
        self._pool.close()


# --- SQLite ---------------------------------------------------------------------------------


class SqliteStorage(_SqlStorage):
    """SQLite in WAL mode with ``synchronous=FULL``: a batch acknowledged is on disk."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        pool_size: int = DEFAULT_POOL_SIZE,
        hotlist_history: int = DEFAULT_HOTLIST_HISTORY,
    ) -> None:
        self.path = str(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise StorageError("SQLite storage needs a file path")
        super().__init__(pool_size, hotlist_history)
        # One writer at a time in this process: threads wait here, not in SQLite's
        # busy handler (which sleeps in steps and would cap throughput).
        self._write_lock = threading.Lock()
        ddl = _SCHEMA.format(blob="BLOB", entries_suffix=" WITHOUT ROWID") + ";" + FLEET_SCHEMA
        ddl += ";" + VENUE_SCHEMA
        try:
            with self._tx() as cur:
                for statement in ddl.split(";"):
                    cur.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path}: cannot open the database: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the database: {exc}") from None
        return conn

    def _is_broken(self, conn: Any) -> bool:
        return bool(conn.in_transaction)

    def _seq_list_query(self, terminal_id: str, seqs: list[int]) -> tuple[str, tuple[Any, ...]]:
        return (
            "SELECT seq, hash, prev_hash FROM entries WHERE terminal_id = ? "
            "AND seq IN (SELECT value FROM json_each(?))",
            (terminal_id, json.dumps(seqs)),
        )

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        with self._pool.connection() as conn:
            lock = self._write_lock if write else contextlib.nullcontext()
            with lock:
                try:
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    cur = conn.cursor()
                    try:
                        yield cur
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    log.error("SQLite error: %s", exc)
                    raise StorageError(f"database error: {exc}") from None


# --- PostgreSQL -----------------------------------------------------------------------------


class PostgresStorage(_SqlStorage):
    """PostgreSQL through psycopg 3 and a psycopg-pool connection pool; tables in ``schema``
    (created if missing) when given, else in the connection's search path. Opening applies
    the pending migrations (:mod:`backoffice.migrations`) and makes this month's and next
    month's entry partitions; ``clock`` says which month an upload arrives in."""

    for_update = " FOR UPDATE"
    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        hotlist_history: int = DEFAULT_HOTLIST_HISTORY,
        clock: Clock | None = None,
        connect_timeout: float = POOL_TIMEOUT,
    ) -> None:
        try:
            import psycopg
            import psycopg.sql
            import psycopg_pool
        except ImportError:
            raise StorageError(
                "PostgreSQL storage needs psycopg 3 and psycopg-pool: pip install onecard"
            ) from None
        self._psycopg = psycopg
        self._psycopg_pool = psycopg_pool
        self.url = url
        self.schema = schema
        self.clock = clock or SystemClock()
        self.connect_timeout = connect_timeout
        self._months: set[Any] = set()
        self._months_lock = threading.Lock()
        if schema:
            self._create_schema(schema)
        super().__init__(pool_size, hotlist_history)
        try:
            with self._tx() as cur:
                applied = migrations.migrate(cur, self.clock.now())
                migrations.ensure_month(cur, migrations.month_of(self.clock.now()))
                months = migrations.existing_months(cur)
        except BaseException:
            self._pool.close()
            raise
        self._months.update(months)
        if applied:
            log.info("PostgreSQL schema migrated to version %d", applied[-1])

    def _create_schema(self, schema: str) -> None:
        psycopg = self._psycopg
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                ident = psycopg.sql.Identifier(schema)
                with conn.transaction():
                    # Two processes creating the schema at once would collide in the catalogue.
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, 0)", (migrations.LOCK_NAMESPACE,)
                    )
                    conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from None

    def _make_pool(self, size: int) -> Any:
        psycopg = self._psycopg
        schema = self.schema

        def configure(conn: Any) -> None:
            if schema:
                ident = psycopg.sql.Identifier(schema)
                conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(ident))

        pool = self._psycopg_pool.ConnectionPool(
            self.url,
            min_size=min(2, size),
            max_size=size,
            kwargs={"autocommit": True},
            configure=configure,
            timeout=self.connect_timeout,
            name="backoffice",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout)
        except (psycopg.Error, self._psycopg_pool.PoolTimeout) as exc:
            pool.close()
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from None
        return pool

    def _q(self, sql: str) -> str:
        # The shared SQL never holds a literal '?' or '%'.
        return sql.replace("?", "%s")

    def _seq_list_query(self, terminal_id: str, seqs: list[int]) -> tuple[str, tuple[Any, ...]]:
        return (
            "SELECT seq, hash, prev_hash FROM entries WHERE terminal_id = %s AND seq = ANY(%s)",
            (terminal_id, seqs),
        )

    def ingest(self, terminal_id: str, entries: Sequence[Entry]) -> IngestResult:
        """As :meth:`_SqlStorage.ingest`, into the partition of the month it arrives in."""
        month = migrations.month_of(self.clock.now())
        if month not in self._months:
            self._ensure_month(month)
        return self._ingest(terminal_id, entries, month)

    def _ensure_month(self, month: Any) -> None:
        # Once a month per process: a short transaction of its own, before the upload's.
        with self._months_lock:
            if month in self._months:
                return
            with self._tx() as cur:
                migrations.ensure_month(cur, month)
            self._months.update((month, migrations.next_month(month)))

    def _insert_entries(self, cur: Any, entries: Sequence[Entry], month: Any) -> None:
        # COPY: one stream for the whole batch instead of a statement per row.
        columns = ", ".join((*ENTRY_COLUMNS, "received_month"))
        with cur.copy(f"COPY entries ({columns}) FROM STDIN") as copy:
            for entry in entries:
                copy.write_row((*entry.row(), month))

    def _snapshot_begin(self, cur: Any) -> None:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def schema_version(self) -> int:
        """The highest migration applied to this database."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT max(version) FROM schema_migrations")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def entry_months(self) -> list[str]:
        """The months the stored entries arrived in (``YYYY-MM``), oldest first."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT DISTINCT received_month FROM entries ORDER BY 1")
            return [row[0].strftime("%Y-%m") for row in cur.fetchall()]

    @contextlib.contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        psycopg = self._psycopg
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:  # PoolTimeout too: no connection to be had in time
            log.error("PostgreSQL error: %s", exc)
            raise StorageError(f"database error: {type(exc).__name__}") from None


# --- opening --------------------------------------------------------------------------------


def open_storage(
    url_or_path: str | os.PathLike[str],
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    hotlist_history: int = DEFAULT_HOTLIST_HISTORY,
) -> SqliteStorage | PostgresStorage:
    """Open (creating the schema if missing) the storage at ``url_or_path``:

    * ``postgresql://...`` or ``postgres://...``: PostgreSQL; an extra ``schema=NAME`` query
      parameter puts the tables in that schema (taken out before libpq sees the URL);
    * ``sqlite:///abs/path`` (the URL's path) or a plain file path: SQLite.
    """
    text = os.fspath(url_or_path)
    if text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in query if k == "schema"), None)
        rest = urlencode([(k, v) for k, v in query if k != "schema"], safe="/")
        # urlunsplit would drop the "//" of an empty host (postgresql:///db?host=/run/...).
        url = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
        return PostgresStorage(
            url, schema=schema, pool_size=pool_size, hotlist_history=hotlist_history
        )
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
    elif "://" in text:
        raise StorageError(f"unknown storage URL scheme in {text.split('://')[0]!r}")
    if not text:
        raise StorageError("empty SQLite path")
    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return SqliteStorage(text, pool_size=pool_size, hotlist_history=hotlist_history)
