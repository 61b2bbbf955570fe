"""The terminal's durable transaction journal: an SQLite file (WAL, ``synchronous=FULL``).

Every transaction is one SQLite transaction, committed and synced to disk before
:meth:`Journal.append` returns, because the runtime tells the holder the outcome only after
that: a kill -9 or a power cut after ``append`` returned never loses the entry.

The file holds two tables::

    entries(seq INTEGER PRIMARY KEY, time REAL, body TEXT, hash TEXT)
    meta(key TEXT PRIMARY KEY, value TEXT)

``body`` is the canonical JSON of the entry without ``hash`` (docs/sync.md), stored exactly as
hashed, so verification recomputes the hash over the stored bytes. ``meta`` records the
terminal, the ``head`` (last seq and hash written), the ``anchor`` (last seq and hash purged,
``0`` and 64 zeros at first) and ``acked_up_to`` (what the back office holds). The chain is
walked from the anchor to the head, so an edited field, a deleted row in the middle or at
either end, or an edited hash is found (:meth:`Journal.verify`).

The file is opened as every durable file of the terminal is (:mod:`terminal.host.sqlite`:
created whole, checked before anything writes to it, WAL with ``synchronous=FULL``). A full
disk or a full journal refuses the transaction (:class:`JournalFullError`) - the terminal
must not accept a transaction it has not recorded. A damaged file is detected at
:meth:`Journal.open` without writing to it (read-only connection, ``PRAGMA quick_check``,
schema and meta checks, and the chain of the newest entries not yet acknowledged, whose
only copy is here) and reported as :class:`JournalCorruptError`; the file is kept for
inspection.

A :class:`Journal` belongs to the process that opened it: a child process (a fault test,
a worker) opens its own with :meth:`Journal.open`. Within a process it may be shared by
threads (the runtime appends while the uploader reads and acknowledges).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from terminal.errors import (
    JournalCorruptError,
    JournalEntryError,
    JournalError,
    JournalFullError,
)
from terminal.host import sqlite as durable
from terminal.host.clock import Clock, SystemClock
from terminal.journal.entry import (
    ChainReport,
    ChainWalker,
    JournalEntry,
    TransactionRecord,
    entry_from_stored,
    make_entry_and_body,
)
from terminal.wire.journal import ZERO_HASH, check_terminal_id

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
DEFAULT_MAX_ENTRIES = 2_000_000
"""Retained entries (unacknowledged plus acknowledged within retention) before refusing."""
DEFAULT_MIN_FREE_BYTES = 32 * 1024 * 1024
"""Free disk space below which new transactions are refused (room for WAL and checkpoints)."""
READ_PAGE = 1000
"""Rows per query when streaming (export, verify, list): bounded memory whatever the size."""
PURGE_CHUNK = 10_000
"""Rows deleted per transaction by :meth:`Journal.purge`, so appends never wait long."""
DEFAULT_CHECK_ENTRIES = 20_000
"""Newest unacknowledged entries whose chain :meth:`Journal.open` walks (about a second)."""

_TABLES = {"entries": ["seq", "time", "body", "hash"], "meta": ["key", "value"]}
ERRORS = durable.StoreErrors("the journal", JournalError, JournalCorruptError, JournalFullError)
"""How the journal's SQLite failures are typed (:class:`terminal.host.sqlite.StoreErrors`)."""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class JournalStats:
    """How the journal stands: retained ``entries``, how many are ``unacked``, the last
    ``seq`` written, ``acked_up_to``, the purge ``anchor_seq`` and the files' ``size_bytes``."""

    entries: int
    unacked: int
    last_seq: int
    acked_up_to: int
    anchor_seq: int
    size_bytes: int


@dataclass(frozen=True)
class _Meta:
    terminal_id: str
    head_seq: int
    head_hash: str
    anchor_seq: int
    anchor_hash: str
    acked_up_to: int


def _pair(value: str) -> tuple[int, str]:
    seq_text, hash_hex = value.split(" ")
    seq = int(seq_text)
    if seq < 0 or len(hash_hex) != 64 or bytes.fromhex(hash_hex).hex() != hash_hex:
        raise ValueError(value)
    return seq, hash_hex


def _read_meta(conn: sqlite3.Connection) -> _Meta:
    """The meta table, checked for shape; ValueError/KeyError for anything amiss."""
    rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if rows.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema version {rows.get('schema_version')!r}, not {SCHEMA_VERSION}")
    head_seq, head_hash = _pair(rows["head"])
    anchor_seq, anchor_hash = _pair(rows["anchor"])
    acked = int(rows["acked_up_to"])
    if not anchor_seq <= acked <= head_seq:
        raise ValueError(f"anchor {anchor_seq}, acked {acked} and head {head_seq} out of order")
    if head_seq == anchor_seq and head_hash != anchor_hash:
        raise ValueError("head and anchor disagree")
    return _Meta(rows["terminal_id"], head_seq, head_hash, anchor_seq, anchor_hash, acked)


def _build(conn: sqlite3.Connection, terminal_id: str) -> None:
    """The schema and first meta rows of a new, empty journal."""
    # One statement at a time: executescript() would commit on its own.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [
            ("schema_version", SCHEMA_VERSION),
            ("terminal_id", terminal_id),
            ("head", f"0 {ZERO_HASH}"),
            ("anchor", f"0 {ZERO_HASH}"),
            ("acked_up_to", "0"),
        ],
    )


def _check(conn: sqlite3.Connection, where: str, check_entries: int) -> _Meta:
    """The journal's own checks, on the read-only connection of
    :func:`terminal.host.sqlite.inspect`: meta, rows spanning anchor to head, and the chain
    of the newest entries not yet acknowledged. Its meta, or :class:`JournalCorruptError`."""
    conn.execute("BEGIN")  # one snapshot for meta and rows
    try:
        meta = _read_meta(conn)
    except (KeyError, ValueError) as exc:
        raise JournalCorruptError(f"meta table damaged: {exc!r}", where) from None
    first, last, count = conn.execute("SELECT MIN(seq), MAX(seq), COUNT(*) FROM entries").fetchone()
    retained = meta.head_seq - meta.anchor_seq
    if count != retained or (count and (first != meta.anchor_seq + 1 or last != meta.head_seq)):
        raise JournalCorruptError(
            f"rows {first}..{last} ({count}) do not span anchor {meta.anchor_seq} "
            f"to head {meta.head_seq}: entries deleted or added behind the journal's back",
            where,
        )
    # The newest entries not yet acknowledged have their only copy here; walking a
    # bounded number of them keeps start-up quick after a long outage (a million-entry
    # backlog takes most of a minute to walk: that is verify()'s job).
    start = max(meta.acked_up_to, meta.head_seq - check_entries)
    if check_entries > 0 and meta.head_seq > start:
        report = _walk(conn, meta, start=start)
        if not report.ok:
            raise JournalCorruptError(
                f"hash chain broken at seq {report.first_bad_seq}: {report.reason}", where
            )
    conn.execute("COMMIT")
    return meta


def _inspect(path: Path, check_entries: int) -> _Meta:
    """Check the journal at ``path`` without writing to it (a damaged file stays byte for
    byte as found); its meta, or :class:`JournalCorruptError`."""
    return durable.inspect(
        path, ERRORS, tables=_TABLES, check=lambda conn: _check(conn, str(path), check_entries)
    )


def _walk(conn: sqlite3.Connection, meta: _Meta, start: int | None = None) -> ChainReport:
    """Walk the chain on ``conn`` (inside a read transaction) from ``start`` - the anchor by
    default, or an entry whose stored hash is taken as given - to the recorded head."""
    if start is None or start <= meta.anchor_seq:
        walker = ChainWalker(meta.terminal_id, meta.anchor_seq, meta.anchor_hash)
    else:
        row = conn.execute("SELECT hash FROM entries WHERE seq = ?", (start,)).fetchone()
        if row is None:
            return ChainReport(False, 0, start, f"entry {start} is missing")
        walker = ChainWalker(meta.terminal_id, start, row[0])
    # Cursor iteration streams rows from SQLite: constant memory for any journal size.
    for seq, body, hash_hex in conn.execute(
        "SELECT seq, body, hash FROM entries WHERE seq > ? ORDER BY seq", (walker.last_seq,)
    ):
        try:
            entry = entry_from_stored(body, hash_hex)
        except JournalEntryError as exc:
            return walker.fail(seq, f"entry unreadable: {exc.reason}")
        if entry.seq != seq:
            return walker.fail(seq, f"row {seq} holds entry {entry.seq}")
        if not walker.check(entry, body.encode("utf-8")):
            return walker.report()
    if walker.last_seq != meta.head_seq:
        return walker.fail(walker.last_seq + 1, f"entries after {walker.last_seq} are missing")
    if walker.last_hash != meta.head_hash:
        return walker.fail(meta.head_seq, "the last entry is not the recorded head")
    return walker.report()


class Journal:
    """The durable, hash-chained transaction journal of one terminal (docs/sync.md).

    Open with :meth:`open` (read-write, created on first run) or :meth:`open_read_only`
    (inspection tools). Thread-safe; not to be carried across ``fork``.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        terminal_id: str,
        clock: Clock,
        *,
        max_entries: int,
        min_free_bytes: int,
        read_only: bool,
    ) -> None:
        # Use open() / open_read_only(): they check the file before this connection exists.
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.terminal_id = terminal_id
        self._clock = clock
        self.max_entries = max_entries
        self.min_free_bytes = min_free_bytes
        self.read_only = read_only
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        terminal_id: str,
        clock: Clock | None = None,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        max_bytes: int | None = None,
        check_entries: int = DEFAULT_CHECK_ENTRIES,
    ) -> Journal:
        """Open (creating on first run) the journal of ``terminal_id`` at ``path``.

        An existing file is checked first without being written (see module docstring):
        :class:`JournalCorruptError` if it is damaged, :class:`JournalError` if it belongs to
        another terminal. ``max_bytes`` caps the database size (``PRAGMA max_page_count``),
        for small flash; reaching it refuses transactions like a full disk.
        ``check_entries``: at open, walk the chain of (at most) this many of the newest
        entries not yet acknowledged; 0 skips the walk.
        """
        path = Path(path)
        check_terminal_id(terminal_id)
        if not path.exists():
            durable.create_whole(path, ERRORS, lambda conn: _build(conn, terminal_id))
        meta = _inspect(path, check_entries)
        if meta.terminal_id != terminal_id:
            raise JournalError(
                f"{path}: journal of terminal {meta.terminal_id!r}, not {terminal_id!r}"
            )
        conn = durable.open_durable(path, ERRORS, max_bytes=max_bytes)
        log.info("journal %s open for terminal %s (head %d)", path, terminal_id, meta.head_seq)
        return cls(
            conn,
            path,
            terminal_id,
            clock or SystemClock(),
            max_entries=max_entries,
            min_free_bytes=min_free_bytes,
            read_only=False,
        )

    @classmethod
    def open_read_only(
        cls,
        path: str | os.PathLike[str],
        clock: Clock | None = None,
        *,
        check_entries: int = DEFAULT_CHECK_ENTRIES,
    ) -> Journal:
        """Open an existing journal for reading only (list, verify, export), never creating
        or writing it; safe while the runtime has it open."""
        path = Path(path)
        if not path.exists():
            raise JournalError(f"{path}: no journal there")
        meta = _inspect(path, check_entries)
        try:
            conn = durable.open_read_only(path)
        except sqlite3.Error as exc:
            raise ERRORS.of(exc, path, "cannot open the journal read-only") from None
        return cls(
            conn,
            path,
            meta.terminal_id,
            clock or SystemClock(),
            max_entries=DEFAULT_MAX_ENTRIES,
            min_free_bytes=0,
            read_only=True,
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, terminal_id={self.terminal_id!r})"

    # --- internals -------------------------------------------------------------------------

    def _connection(self, writing: bool = False) -> sqlite3.Connection:
        if self._pid != os.getpid():
            # An SQLite connection must not be used on both sides of a fork.
            raise JournalError("journal opened in another process: open it again in this one")
        if self._conn is None:
            raise JournalError(f"{self.path}: journal is closed")
        if writing and self.read_only:
            raise JournalError(f"{self.path}: journal opened read-only")
        return self._conn

    def _check_free_space(self) -> None:
        if self.min_free_bytes <= 0:
            return
        try:
            st = os.statvfs(self.path.parent)
        except OSError as exc:
            raise JournalFullError(f"cannot tell the free disk space: {exc}") from None
        free = st.f_bavail * st.f_frsize
        if free < self.min_free_bytes:
            raise JournalFullError(
                f"only {free} bytes free on the journal's disk, "
                f"below the {self.min_free_bytes} the terminal keeps in reserve"
            )

    def _meta(self, conn: sqlite3.Connection) -> _Meta:
        try:
            return _read_meta(conn)
        except (KeyError, ValueError) as exc:
            raise JournalCorruptError(f"meta table damaged: {exc!r}", str(self.path)) from None

    def _head(self, conn: sqlite3.Connection) -> tuple[int, str, int]:
        # The append path reads only what it needs: head and anchor (full meta at open).
        rows = dict(
            conn.execute("SELECT key, value FROM meta WHERE key IN ('head', 'anchor')").fetchall()
        )
        try:
            head_seq, head_hash = _pair(rows["head"])
            anchor_seq, _ = _pair(rows["anchor"])
        except (KeyError, ValueError) as exc:
            raise JournalCorruptError(f"meta table damaged: {exc!r}", str(self.path)) from None
        return head_seq, head_hash, anchor_seq

    @contextlib.contextmanager
    def _write_transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on the writing connection, under the lock,
        rolled back on any failure (SQLite's raised as a :class:`JournalError` saying
        ``doing``). IMMEDIATE takes the write lock before anything is read, so two processes
        sharing the file can never hand out the same seq; with synchronous=FULL the WAL is
        fsynced before the commit returns."""
        with self._lock:
            conn = self._connection(writing=True)
            with durable.write_transaction(conn, ERRORS, self.path, doing):
                yield conn

    def _write(self, records: Sequence[TransactionRecord]) -> list[JournalEntry]:
        for record in records:
            if not isinstance(record, TransactionRecord):
                # Only a TransactionRecord has been checked for personal data.
                raise JournalEntryError(f"not a TransactionRecord: {type(record).__name__}")
        self._check_free_space()
        with self._write_transaction("cannot record") as conn:
            head_seq, head_hash, anchor_seq = self._head(conn)
            retained = head_seq - anchor_seq
            if retained + len(records) > self.max_entries:
                raise JournalFullError(
                    f"the journal holds {retained} entries, its limit is {self.max_entries}"
                    " (upload and purge to make room)"
                )
            now = self._clock.now()
            seq, prev_hash = head_seq, head_hash
            entries: list[JournalEntry] = []
            rows = []
            for record in records:
                seq += 1
                entry, body = make_entry_and_body(self.terminal_id, seq, now, record, prev_hash)
                rows.append((seq, entry.time, body.decode(), entry.hash))
                entries.append(entry)
                prev_hash = entry.hash
            conn.executemany(
                "INSERT INTO entries (seq, time, body, hash) VALUES (?, ?, ?, ?)", rows
            )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (f"{seq} {prev_hash}",))
        return entries

    # --- writing ---------------------------------------------------------------------------

    def append(self, record: TransactionRecord) -> JournalEntry:
        """Record one transaction durably and return its entry.

        The entry is on disk when this returns. Raises :class:`JournalFullError` (nothing
        written) when the journal or the disk cannot take it: then refuse the transaction.
        """
        return self._write([record])[0]

    def append_batch(self, records: Iterable[TransactionRecord]) -> list[JournalEntry]:
        """Record several transactions in one commit (imports, tests, benchmarks); all or
        none are written."""
        records = list(records)
        return self._write(records) if records else []

    def ack(self, up_to_seq: int) -> int:
        """Mark entries up to ``up_to_seq`` as held by the back office; returns the new
        ``acked_up_to``. Never moves backwards; acknowledging beyond the last entry is a
        :class:`JournalError` (the back office holds entries this journal never wrote)."""
        with self._write_transaction("cannot record the ack") as conn:
            meta = self._meta(conn)
            if up_to_seq > meta.head_seq:
                raise JournalError(
                    f"acknowledgement up to {up_to_seq} but the last entry is {meta.head_seq}"
                )
            acked = max(meta.acked_up_to, up_to_seq)
            if acked != meta.acked_up_to:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'acked_up_to'", (str(acked),))
        return acked

    def purge(self, retention_seconds: float) -> int:
        """Delete acknowledged entries recorded more than ``retention_seconds`` ago; returns
        how many. Only a prefix of the chain is deleted, and the hash of the newest deleted
        entry becomes the anchor from which :meth:`verify` walks."""
        cutoff = self._clock.now() - retention_seconds
        deleted = 0
        while True:
            with self._write_transaction("cannot purge") as conn:
                meta = self._meta(conn)
                last: tuple[int, str] | None = None
                rows = conn.execute(
                    "SELECT seq, time, hash FROM entries WHERE seq > ? AND seq <= ? "
                    "ORDER BY seq LIMIT ?",
                    (meta.anchor_seq, meta.acked_up_to, PURGE_CHUNK),
                ).fetchall()
                for seq, time, hash_hex in rows:
                    if time >= cutoff:
                        break  # keep the chain whole: only ever drop a prefix
                    last = (seq, hash_hex)
                if last is not None:
                    conn.execute("DELETE FROM entries WHERE seq <= ?", (last[0],))
                    conn.execute(
                        "UPDATE meta SET value = ? WHERE key = 'anchor'",
                        (f"{last[0]} {last[1]}",),
                    )
                    deleted += last[0] - meta.anchor_seq
            if last is None or len(rows) < PURGE_CHUNK or last[0] != rows[-1][0]:
                break
        if deleted:
            log.info("journal %s: purged %d acknowledged entries", self.path, deleted)
        return deleted

    # --- reading ---------------------------------------------------------------------------

    def unacked(self, limit: int = 1000, after_seq: int = 0) -> list[JournalEntry]:
        """Up to ``limit`` entries not yet acknowledged, in ``seq`` order, after
        ``after_seq`` (page through a backlog without loading it)."""
        return self._page(limit, after_seq, unacked_only=True)

    def entries(self, after_seq: int = 0, limit: int | None = None) -> Iterator[JournalEntry]:
        """All retained entries after ``after_seq`` in ``seq`` order, fetched a page at a
        time (acknowledged or not)."""
        remaining = limit
        while remaining is None or remaining > 0:
            page = self._page(
                READ_PAGE if remaining is None else min(READ_PAGE, remaining),
                after_seq,
                unacked_only=False,
            )
            if not page:
                return
            yield from page
            after_seq = page[-1].seq
            if remaining is not None:
                remaining -= len(page)

    def _page(self, limit: int, after_seq: int, unacked_only: bool) -> list[JournalEntry]:
        with self._lock:
            conn = self._connection()
            try:
                if unacked_only:
                    rows = conn.execute(
                        "SELECT seq, body, hash FROM entries WHERE seq > MAX(?, "
                        "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'acked_up_to')) "
                        "ORDER BY seq LIMIT ?",
                        (after_seq, limit),
                    ).fetchall()
                else:
                    rows = conn.execute(
                        "SELECT seq, body, hash FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after_seq, limit),
                    ).fetchall()
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, "cannot read") from None
        try:
            return [entry_from_stored(body, hash_hex) for _, body, hash_hex in rows]
        except JournalEntryError as exc:
            raise JournalCorruptError(f"unreadable entry: {exc.reason}", str(self.path)) from None

    def since(self, when: float) -> Iterator[JournalEntry]:
        """Retained entries recorded at or after wall time ``when``, newest first, read a
        page at a time backwards from the head (the runtime rebuilds its repeat-tap and
        passback windows from these at start). Seq order is time order but for a wall clock
        set back: the walk ends only at a whole page older than ``when``, so an entry a
        little out of order is still found."""
        before: int | None = None
        while True:
            with self._lock:
                conn = self._connection()
                try:
                    rows = conn.execute(
                        "SELECT seq, time, body, hash FROM entries WHERE seq < ? "
                        "ORDER BY seq DESC LIMIT ?",
                        (before if before is not None else 2**63 - 1, READ_PAGE),
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise ERRORS.of(exc, self.path, "cannot read") from None
            if not rows:
                return
            recent = [row for row in rows if row[1] >= when]
            for _, _, body, hash_hex in recent:
                try:
                    yield entry_from_stored(body, hash_hex)
                except JournalEntryError as exc:
                    raise JournalCorruptError(
                        f"unreadable entry: {exc.reason}", str(self.path)
                    ) from None
            if not recent:
                return
            before = rows[-1][0]

    def wire_page(self, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` retained entries after ``after_seq`` as they travel - JSON text of
        the entry with ``hash`` - straight from the stored canonical body, without decoding
        (the uploader's path: a large backlog costs no parse and re-encode per entry)."""
        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute(
                    "SELECT seq, body, hash FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, "cannot read") from None
        # The body is a canonical JSON object; the key order of the wire form is free, so
        # "hash" is appended before the closing brace.
        return [(seq, f'{body[:-1]},"hash":"{hash_hex}"}}') for seq, body, hash_hex in rows]

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        # A separate read-only connection in one read transaction: a consistent view for a
        # long walk that neither blocks nor is disturbed by appends, acks and purges.
        self._connection()
        conn = durable.open_read_only(self.path)
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.close()

    def verify(self) -> ChainReport:
        """Walk the whole retained chain from the anchor to the head and report the first
        entry that was edited, deleted or added behind the journal's back."""
        try:
            with self._snapshot() as conn:
                return _walk(conn, self._meta(conn))
        except sqlite3.Error as exc:
            return ChainReport(False, 0, None, f"database damaged: {exc}")

    def export(self, fp: IO[str], after_seq: int = 0) -> int:
        """Write the retained entries after ``after_seq`` to ``fp`` as JSON lines (each the
        entry as it travels, with ``hash``); returns how many."""
        import json

        count = 0
        with self._snapshot() as conn:
            for _, body, hash_hex in conn.execute(
                "SELECT seq, body, hash FROM entries WHERE seq > ? ORDER BY seq", (after_seq,)
            ):
                entry = entry_from_stored(body, hash_hex)
                fp.write(json.dumps(entry.to_json_dict(), sort_keys=True, ensure_ascii=False))
                fp.write("\n")
                count += 1
        return count

    def stats(self) -> JournalStats:
        with self._lock:
            conn = self._connection()
            meta = self._meta(conn)
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.path.getsize(f"{self.path}{suffix}")
        return JournalStats(
            entries=meta.head_seq - meta.anchor_seq,
            unacked=meta.head_seq - meta.acked_up_to,
            last_seq=meta.head_seq,
            acked_up_to=meta.acked_up_to,
            anchor_seq=meta.anchor_seq,
            size_bytes=size,
        )

    def durability(self) -> dict[str, str]:
        """The SQLite settings that make a returned entry durable, as the connection has
        them: ``journal_mode`` (``wal``) and ``synchronous`` (``FULL``)."""
        with self._lock:
            conn = self._connection()
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            level = conn.execute("PRAGMA synchronous").fetchone()[0]
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {"journal_mode": str(mode).lower(), "synchronous": names.get(level, str(level))}

    @property
    def acked_up_to(self) -> int:
        return self.stats().acked_up_to
