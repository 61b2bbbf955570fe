"""The terminal's side of terminal events (docs/sync.md, "Terminal events"): the durable
outbox and the sender that posts it to the back office, ``POST /v1/events``.

The events themselves - :class:`terminal.wire.events.TerminalEvent`, their strict parser
and the request body - are the wire's, shared with the back office.

The :class:`EventOutbox` is an SQLite file (:mod:`terminal.host.sqlite`: WAL,
``synchronous=FULL``, checked at open, like the journal): :meth:`EventOutbox.add` assigns
the id and commits the event to disk before it returns, so a staff call the holder saw
accepted survives a network outage, a kill -9 or a power cut. The :class:`EventSender`
posts what the outbox has not seen acknowledged, in id order, through the terminal's back
office client, backing off as the journal uploader does
(:class:`terminal.sync.sender.BackgroundSender`). Exactly-once at the back office comes
from the same two halves as the journal upload: the back office ignores an event id it
already holds, and the terminal resends everything above its last acknowledgement - so a
lost answer only means the batch is sent again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

from terminal.errors import JournalEntryError, OneCardError, SyncAnswerError
from terminal.host import sqlite as durable
from terminal.host.clock import Clock
from terminal.sync.auth import TerminalCredentials
from terminal.sync.client import parse_acked_answer
from terminal.sync.sender import (
    BackgroundSender,
    SenderOptions,
)
from terminal.wire.canonical import JsonError, canonical_json, parse_json_text
from terminal.wire.events import (
    MAX_EVENTS_PER_REQUEST,
    EventError,
    TerminalEvent,
    events_body,
)
from terminal.wire.journal import check_terminal_id
from terminal.wire.requests import EVENTS_PATH

log = logging.getLogger(__name__)

DEFAULT_KEEP_SENT = 10_000
"""Acknowledged events the outbox keeps for :meth:`EventOutbox.recent` before dropping
the oldest: the file stays small on a kiosk that runs for years."""

_SCHEMA_VERSION = "1"
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    "CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, "
    "detail TEXT NOT NULL)",
)
_TABLES = {"meta": ["key", "value"], "events": ["id", "at", "kind", "detail"]}


class EventOutboxError(OneCardError):
    """The event outbox cannot be used as asked: closed, unopenable, another terminal's, or
    a write the disk refused (then nothing was recorded)."""

    code = "event_outbox_error"


class EventOutboxCorruptError(EventOutboxError):
    """The outbox file is not a sound outbox (not SQLite, damaged pages, missing tables or
    meta, unsent events missing). The file is left untouched; ``path`` names it."""

    code = "event_outbox_corrupt"

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "reason": self.reason, "path": self.path}


ERRORS = durable.StoreErrors(
    "the event outbox", EventOutboxError, EventOutboxCorruptError, EventOutboxError
)
"""How the outbox's SQLite failures are typed (:class:`terminal.host.sqlite.StoreErrors`)."""


# --- the outbox ---------------------------------------------------------------------------


def _build(conn: sqlite3.Connection, terminal_id: str) -> None:
    """The schema and meta rows of a new, empty outbox."""
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [
            ("schema_version", _SCHEMA_VERSION),
            ("terminal_id", terminal_id),
            ("last_id", "0"),
            ("sent_up_to", "0"),
        ],
    )


@dataclass(frozen=True)
class _Meta:
    terminal_id: str
    last_id: int
    sent_up_to: int


def _read_meta(conn: sqlite3.Connection) -> _Meta:
    """The meta table, checked for shape; ValueError/KeyError for anything amiss."""
    rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if rows.get("schema_version") != _SCHEMA_VERSION:
        raise ValueError(f"schema version {rows.get('schema_version')!r}")
    try:
        last_id, sent_up_to = int(rows["last_id"]), int(rows["sent_up_to"])
    except TypeError:  # NULL, or a BLOB int() cannot take
        raise ValueError("last_id or sent_up_to is not a number") from None
    if not 0 <= sent_up_to <= last_id:
        raise ValueError(f"sent_up_to {sent_up_to} and last_id {last_id} out of order")
    return _Meta(str(rows["terminal_id"]), last_id, sent_up_to)


def _check(conn: sqlite3.Connection, path: str) -> _Meta:
    """The outbox's own checks (after :func:`terminal.host.sqlite.inspect`'s): its meta,
    or :class:`EventOutboxCorruptError`."""
    try:
        meta = _read_meta(conn)
    except (KeyError, ValueError) as exc:
        raise EventOutboxCorruptError(f"meta table damaged: {exc!r}", path) from None
    highest, unsent = conn.execute(
        "SELECT MAX(id), COUNT(*) FILTER (WHERE id > ?) FROM events", (meta.sent_up_to,)
    ).fetchone()
    # Unsent events have their only copy here: every id above sent_up_to must be present.
    if (highest or 0) > meta.last_id or unsent != meta.last_id - meta.sent_up_to:
        raise EventOutboxCorruptError(
            f"{unsent} unsent events where ids {meta.sent_up_to + 1}..{meta.last_id} should be",
            path,
        )
    return meta


class EventOutbox:
    """The terminal's durable queue of events for the back office (an SQLite file).

    Open with :meth:`open`. Thread-safe: the holder screen's HTTP handler threads add while
    the :class:`EventSender` reads and marks sent. One process owns the file.
    """

    def __init__(
        self, conn: sqlite3.Connection, path: Path, terminal_id: str, clock: Clock, keep_sent: int
    ) -> None:
        # Use open(): it checks the file before this object exists.
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.terminal_id = terminal_id
        self._clock = clock
        self.keep_sent = keep_sent
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        terminal_id: str,
        clock: Clock,
        *,
        keep_sent: int = DEFAULT_KEEP_SENT,
    ) -> EventOutbox:
        """Open (creating on first run) the outbox of ``terminal_id`` at ``path``.

        A new outbox is created whole (:func:`terminal.host.sqlite.create_whole`), so a
        file at ``path`` that is empty or not an outbox is damage, never a fresh start - a
        fresh start would hand out ids the back office already holds. Raises
        :class:`EventOutboxCorruptError` for a damaged file, :class:`EventOutboxError` when
        it cannot be opened or belongs to another terminal.
        """
        path = Path(path)
        where = str(path)
        try:
            check_terminal_id(terminal_id)
        except JournalEntryError as exc:
            raise EventOutboxError(exc.reason) from None
        if keep_sent < 0:
            raise ValueError("keep_sent must be >= 0")
        conn, meta = durable.open_store(
            path,
            ERRORS,
            build=lambda db: _build(db, terminal_id),
            tables=_TABLES,
            check=lambda db: _check(db, where),
        )
        if meta.terminal_id != terminal_id:
            conn.close()
            raise EventOutboxError(f"{where}: outbox of {meta.terminal_id!r}, not {terminal_id!r}")
        unsent = meta.last_id - meta.sent_up_to
        log.info("event outbox %s open (last id %d, %d unsent)", where, meta.last_id, unsent)
        return cls(conn, path, terminal_id, clock, keep_sent)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> EventOutbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventOutbox({str(self.path)!r}, terminal_id={self.terminal_id!r})"

    @contextlib.contextmanager
    def _locked(self, doing: str, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; with ``write`` inside ``BEGIN IMMEDIATE`` ...
        ``COMMIT`` (rolled back on failure). SQLite failures come out as typed errors."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise EventOutboxError(f"{self.path}: outbox is closed")
            if write:
                with durable.write_transaction(conn, ERRORS, self.path, doing):
                    yield conn
                return
            try:
                yield conn
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, doing) from None

    def _meta(self, conn: sqlite3.Connection) -> _Meta:
        try:
            return _read_meta(conn)
        except (KeyError, ValueError) as exc:
            raise EventOutboxCorruptError(f"meta table damaged: {exc!r}", str(self.path)) from None

    def _events(self, rows: list[tuple[int, float, str, str]]) -> list[TerminalEvent]:
        try:
            return [
                # A row is read as outside data: a damaged file may hold anything there.
                TerminalEvent(id_, kind, at, parse_json_text(detail))
                for id_, at, kind, detail in rows
            ]
        except (EventError, JsonError) as exc:
            raise EventOutboxCorruptError(
                f"unreadable event: {exc.reason}", str(self.path)
            ) from None

    # --- writing ---------------------------------------------------------------------------

    def add(self, kind: str, detail: Mapping[str, object] | None = None) -> TerminalEvent:
        """Record an event of ``kind`` at the clock's time, with the next id, and return it.

        The event is on disk when this returns. Raises :class:`EventError` (invalid kind or
        detail; nothing written) or :class:`EventOutboxError` (the disk refused it)."""
        # Checked before the lock: a bad call never costs the other threads a wait.
        probe = TerminalEvent(1, kind, 0.0, {} if detail is None else detail)
        text = canonical_json(dict(probe.detail)).decode()
        with self._locked("cannot record the event", write=True) as conn:
            event_id = self._meta(conn).last_id + 1
            # Millisecond resolution, as the journal: short, unambiguous JSON.
            event = TerminalEvent(event_id, kind, round(self._clock.now(), 3), probe.detail)
            conn.execute(
                "INSERT INTO events (id, at, kind, detail) VALUES (?, ?, ?, ?)",
                (event_id, event.at, kind, text),
            )
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_id'", (str(event_id),))
        log.info("event %d recorded: %s", event_id, kind)
        return event

    def mark_sent(self, up_to_id: int) -> int:
        """Record that the back office holds every event up to ``up_to_id``; returns the new
        ``sent_up_to``. Never moves backwards; beyond the last id is an
        :class:`EventOutboxError` (the back office holds events this outbox never wrote)."""
        with self._locked("cannot record the acknowledgement", write=True) as conn:
            meta = self._meta(conn)
            if up_to_id > meta.last_id:
                raise EventOutboxError(
                    f"acknowledgement up to {up_to_id} but the last event is {meta.last_id}"
                )
            sent = max(meta.sent_up_to, up_to_id)
            if sent != meta.sent_up_to:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'sent_up_to'", (str(sent),))
                conn.execute(
                    "DELETE FROM events WHERE id <= ?", (min(sent, meta.last_id - self.keep_sent),)
                )
        return sent

    # --- reading ---------------------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[TerminalEvent]:
        """Up to ``limit`` events not yet acknowledged, oldest (lowest id) first."""
        with self._locked("cannot read") as conn:
            rows = conn.execute(
                "SELECT id, at, kind, detail FROM events WHERE id > (SELECT CAST(value AS "
                "INTEGER) FROM meta WHERE key = 'sent_up_to') ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return self._events(rows)

    def recent(self, limit: int = 20) -> list[TerminalEvent]:
        """The last ``limit`` events recorded, sent or not, newest first (the operator's
        view)."""
        with self._locked("cannot read") as conn:
            rows = conn.execute(
                "SELECT id, at, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return self._events(rows)

    def unsent(self) -> int:
        """How many events the back office has not acknowledged yet."""
        with self._locked("cannot read") as conn:
            meta = self._meta(conn)
        return meta.last_id - meta.sent_up_to

    @property
    def last_id(self) -> int:
        """The id of the newest event recorded (0 before the first)."""
        with self._locked("cannot read") as conn:
            return self._meta(conn).last_id

    @property
    def sent_up_to(self) -> int:
        """The highest id the back office acknowledged (0 before the first)."""
        with self._locked("cannot read") as conn:
            return self._meta(conn).sent_up_to


# --- the sender ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    """One :meth:`EventSender.run_once`: requests made, events sent (resends included),
    the outbox's ``sent_up_to`` after it and events still unsent."""

    requests: int
    sent: int
    sent_up_to: int
    unsent: int


class EventSender(BackgroundSender):
    """Posts an outbox's unsent events to the back office, ``POST /v1/events``.

    :meth:`run_once` sends everything pending and returns (or raises a :class:`SyncError`);
    :meth:`start` runs it in a background thread that retries with back-off until
    :meth:`stop`. Unlike the journal uploader, a :meth:`notify` cuts a back-off short: a
    holder is waiting for staff, and staff calls are rare enough not to hammer a back office
    that is down. ``client`` is the terminal's shared back office client; without one the
    sender opens its own.
    """

    thread_name = "onecard-events"
    what = "sending events"
    wake_cuts_backoff = True
    max_batch = MAX_EVENTS_PER_REQUEST
    mismatch_error = EventOutboxError
    source_name = "outbox"

    def __init__(
        self,
        outbox: EventOutbox,
        credentials: TerminalCredentials,
        clock: Clock,
        batch_size: int = 100,
        **options: Unpack[SenderOptions],
    ) -> None:
        super().__init__(outbox, credentials, clock, batch_size, options)
        self._outbox = outbox
        self._sent = threading.Condition()

    # --- one pass --------------------------------------------------------------------------

    def _post(self, batch: list[TerminalEvent]) -> int:
        """Send one batch; the back office's ``acked_up_to``, or a typed SyncError."""
        status, answer = self._client.post(EVENTS_PATH, events_body(self._terminal_id, batch))
        return parse_acked_answer(status, answer)

    def run_once(self) -> SendResult:
        """Send every unsent event, a batch at a time, marking each batch sent on the back
        office's ``{"acked_up_to": N}``. Raises a :class:`SyncError` on any failure; what
        was acknowledged before it stays marked."""
        with self._pass:
            return self._send_all(stoppable=False)

    def _send_pending(self, stoppable: bool) -> int:
        return self._send_all(stoppable).unsent

    def _progress(self) -> int | None:
        sent = self._sent_up_to()
        return None if sent < 0 else sent

    def _send_all(self, stoppable: bool) -> SendResult:
        requests = sent = 0
        while not (stoppable and self._stop.is_set()):
            batch = self._outbox.pending(self.batch_size)
            if not batch:
                break
            first, last = batch[0].id, batch[-1].id
            acked = self._post(batch)
            requests += 1
            sent += len(batch)
            if acked > last:
                # Ids above what we sent: a second sender, or an outbox that was replaced.
                log.warning("back office holds events up to %d; sent only up to %d", acked, last)
            if acked >= first:
                self._outbox.mark_sent(min(acked, last))
                with self._sent:
                    self._sent.notify_all()
            if acked < last:
                # The batch is one transaction at the back office: all of it or an error.
                raise SyncAnswerError(f"back office acknowledged {acked} of events {first}..{last}")
            log.info("events %d..%d delivered", first, last)
        return SendResult(requests, sent, self._outbox.sent_up_to, self._outbox.unsent())

    # --- waiting ---------------------------------------------------------------------------

    def wait_sent(self, timeout: float) -> bool:
        """Block until the back office acknowledged every event recorded before this call
        (True), or ``timeout`` seconds pass (False). Wakes the sender."""
        target = self._outbox.last_id
        self._wake.set()
        with self._sent:
            return self._sent.wait_for(lambda: self._sent_up_to() >= target, timeout)

    def _sent_up_to(self) -> int:
        try:
            return self._outbox.sent_up_to
        except OneCardError:  # closed under us: nothing more will be sent
            return -1
