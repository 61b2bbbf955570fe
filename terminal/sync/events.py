"""Terminal events - a holder's "call staff" request, its acknowledgement or cancellation -
on their way to the back office, ``POST /v1/events`` (docs/sync.md, "Terminal events").

A :class:`TerminalEvent` is small and non-personal: an ``id`` (1, 2, 3... per terminal), a
``kind`` from :data:`EVENT_KINDS`, the wall time ``at`` and a flat ``detail`` of machine
codes. :func:`event_from_json` is its strict parser, shared with the back office.

The :class:`EventOutbox` is an SQLite file (WAL, ``synchronous=FULL``, like the journal):
:meth:`EventOutbox.add` assigns the id and commits the event to disk before it returns, so
a staff call the holder saw accepted survives a network outage, a kill -9 or a power cut.
The :class:`EventSender` posts what the outbox has not seen acknowledged, in id order, with
the journal uploader's signed HTTP client and back-off. Exactly-once at the back office
comes from the same two halves as the journal upload: the back office ignores an event id
it already holds, and the terminal resends everything above its last acknowledgement - so a
lost answer only means the batch is sent again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from terminal.errors import (
    JournalEntryError,
    OneCardError,
    ParseError,
    SyncAnswerError,
    SyncError,
)
from terminal.host.atomicfile import write_atomically
from terminal.host.clock import Clock
from terminal.journal.entry import check_extra, check_terminal_id
from terminal.sync.auth import TerminalCredentials
from terminal.sync.uploader import (
    DEFAULT_BASE_BACKOFF,
    DEFAULT_IDLE_INTERVAL,
    DEFAULT_TIMEOUT,
    IngestClient,
    backoff_delays,
    parse_ingest_answer,
)
from terminal.wire.document import DocumentError, canonical_json, parse_json

log = logging.getLogger(__name__)

EVENT_KINDS = frozenset({"call_staff", "call_acknowledged", "call_cancelled"})
EVENTS_PATH = "/v1/events"
MAX_EVENTS_PER_REQUEST = 1000
"""The back office takes at most this many events per request (docs/sync.md)."""
MAX_DETAIL_BYTES = 512
"""``detail`` is a few machine codes; its canonical JSON may not exceed this."""
MAX_EVENT_ID = 2**63 - 1  # the back office's BIGINT column
MAX_EVENT_TIME = 1e15
DEFAULT_KEEP_SENT = 10_000
"""Acknowledged events the outbox keeps for :meth:`EventOutbox.recent` before dropping
the oldest: the file stays small on a kiosk that runs for years."""

_FIELDS = frozenset({"id", "kind", "at", "detail"})
_DETAIL_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SCHEMA_VERSION = "1"
_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 5000
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    "CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, "
    "detail TEXT NOT NULL)",
)
_TABLES = {"meta": ["key", "value"], "events": ["id", "at", "kind", "detail"]}


# --- errors -------------------------------------------------------------------------------


class EventError(ParseError):
    """An event (or an event message) that breaks docs/sync.md: an unknown kind, a bad id
    or time, a ``detail`` that is nested, too large or names personal data."""

    code = "bad_event"


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


# --- the event (pure) ---------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_detail(detail: Mapping[str, object] | None) -> dict[str, object]:
    """A JSON-ready copy of ``detail`` after checking it is flat (machine-code keys; values
    str, int, bool or None), at most :data:`MAX_DETAIL_BYTES` of canonical JSON, and free of
    personal data (the journal's deny-list, :func:`terminal.journal.entry.check_extra`).
    Raises :class:`EventError`."""
    if detail is None:
        return {}
    if not isinstance(detail, Mapping):
        raise EventError("detail must be a mapping")
    # Personal data first, so that a refused name or ID number is reported as what it is.
    try:
        checked = check_extra(dict(detail))  # a plain dict: json cannot encode a proxy
    except JournalEntryError as exc:
        raise EventError(f"detail: {exc.reason}") from None
    for key, value in checked.items():
        if not _DETAIL_KEY.fullmatch(key):
            raise EventError(f"detail key {key[:40]!r} is not a machine code")
        if value is not None and not isinstance(value, str | int):  # bool is an int
            raise EventError(f"detail {key}: {type(value).__name__} is not str, int, bool or None")
    size = len(canonical_json(checked))
    if size > MAX_DETAIL_BYTES:
        raise EventError(f"detail is {size} bytes of JSON, at most {MAX_DETAIL_BYTES}")
    return checked


@dataclass(frozen=True)
class TerminalEvent:
    """One event of a terminal, exactly as it travels (docs/sync.md, "Terminal events")."""

    id: int
    """1, 2, 3... per terminal, assigned by the outbox; never reused."""
    kind: str
    """One of :data:`EVENT_KINDS`."""
    at: float
    """Wall time of the event, Unix seconds (UTC), from the terminal's clock."""
    detail: Mapping[str, object] = field(default_factory=dict)
    """Small, flat, non-personal details (e.g. ``{"source": "holder_screen"}``)."""

    def __post_init__(self) -> None:
        if not _is_int(self.id) or not 1 <= self.id <= MAX_EVENT_ID:
            raise EventError("event id must be an integer in 1..2^63-1")
        # isinstance first: "in" on a frozenset hashes the value, and a list is unhashable.
        if not isinstance(self.kind, str) or self.kind not in EVENT_KINDS:
            raise EventError(f"event kind must be one of {sorted(EVENT_KINDS)}")
        at = self.at
        if not (_is_int(at) or isinstance(at, float)) or not math.isfinite(at):
            raise EventError("event time must be a finite number")
        if not 0 <= at <= MAX_EVENT_TIME:
            raise EventError("event time out of range")
        object.__setattr__(self, "at", float(at))
        object.__setattr__(self, "detail", MappingProxyType(check_detail(self.detail)))

    def to_json(self) -> dict[str, object]:
        """The event as it travels: ``{"id", "kind", "at", "detail"}``, JSON-ready."""
        return {"id": self.id, "kind": self.kind, "at": self.at, "detail": dict(self.detail)}


def event_from_json(obj: object) -> TerminalEvent:
    """Parse one event: a decoded JSON object, or its JSON text (str or UTF-8 bytes, parsed
    strictly: no duplicate keys, no NaN). Exactly the fields ``id``, ``kind``, ``at`` and
    ``detail``; raises only :class:`EventError`."""
    if isinstance(obj, str):
        obj = obj.encode("utf-8", "surrogatepass")
    if isinstance(obj, bytes | bytearray | memoryview):
        try:
            obj = parse_json(bytes(obj))
        except DocumentError as exc:
            raise EventError(f"event is not strict JSON: {exc.reason}") from None
    if not isinstance(obj, dict):
        raise EventError("an event must be a JSON object")
    if obj.keys() != _FIELDS:
        missing = sorted(_FIELDS - obj.keys())
        unknown = sorted(str(k)[:40] for k in obj.keys() - _FIELDS)
        raise EventError(f"event: missing fields {missing}, unknown fields {unknown}")
    if not isinstance(obj["detail"], dict):
        raise EventError("event detail must be a JSON object")
    return TerminalEvent(obj["id"], obj["kind"], obj["at"], obj["detail"])


def events_body(terminal_id: str, events: list[TerminalEvent]) -> bytes:
    """The body of ``POST /v1/events``: canonical JSON ``{"terminal_id", "events"}``."""
    return canonical_json({"terminal_id": terminal_id, "events": [e.to_json() for e in events]})


# --- the outbox ---------------------------------------------------------------------------


def _sqlite_failure(exc: sqlite3.Error, path: str, doing: str) -> EventOutboxError:
    """The typed error of an SQLite failure: damage, or a problem that is not the file's
    (disk full, I/O error, locked, permissions) - then nothing was recorded."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return EventOutboxCorruptError(f"{doing}: {exc}", path)
    return EventOutboxError(f"{path}: {doing}: {exc}")


def _new_outbox_image(terminal_id: str) -> bytes:
    """The bytes of an empty outbox database, built in memory."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
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
        return conn.serialize()
    finally:
        conn.close()


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
    last_id, sent_up_to = int(rows["last_id"]), int(rows["sent_up_to"])
    if not 0 <= sent_up_to <= last_id:
        raise ValueError(f"sent_up_to {sent_up_to} and last_id {last_id} out of order")
    return _Meta(str(rows["terminal_id"]), last_id, sent_up_to)


def _check(conn: sqlite3.Connection, path: str) -> _Meta:
    """Check an opened outbox before anything writes to it; its meta, or
    :class:`EventOutboxCorruptError`."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
    if problems != ["ok"]:
        raise EventOutboxCorruptError(f"quick_check: {'; '.join(problems)}", path)
    for table, expected in _TABLES.items():
        if [row[1] for row in conn.execute(f"PRAGMA table_info({table})")] != expected:
            raise EventOutboxCorruptError(f"table {table} missing or not as written", path)
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

        A new outbox is written whole (built in memory, then put in place atomically), so a
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
        try:
            if not path.exists():
                write_atomically(path, _new_outbox_image(terminal_id))
            with open(path, "rb") as f:
                header = f.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise EventOutboxError(
                f"{where}: cannot create or read: {exc.strerror or exc}"
            ) from None
        if header != _SQLITE_HEADER:
            raise EventOutboxCorruptError("not an SQLite database (empty or bad header)", where)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise EventOutboxError(f"{where}: cannot open: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            meta = _check(conn, where)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=FULL")
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        except sqlite3.Error as exc:
            conn.close()
            raise _sqlite_failure(exc, where, "cannot open") from None
        except BaseException:
            conn.close()
            raise
        if mode != "wal" or synchronous != 2:
            conn.close()
            # Without WAL and FULL an event the holder saw accepted could be lost on power loss.
            raise EventOutboxError(
                f"{where}: durable mode refused (journal_mode={mode}, synchronous={synchronous})"
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
            try:
                if not write:
                    yield conn
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced here
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _sqlite_failure(exc, str(self.path), doing) from None

    def _meta(self, conn: sqlite3.Connection) -> _Meta:
        try:
            return _read_meta(conn)
        except (KeyError, ValueError) as exc:
            raise EventOutboxCorruptError(f"meta table damaged: {exc!r}", str(self.path)) from None

    def _events(self, rows: list[tuple[int, float, str, str]]) -> list[TerminalEvent]:
        try:
            return [
                TerminalEvent(id_, kind, at, parse_json(detail.encode()))
                for id_, at, kind, detail in rows
            ]
        except (EventError, DocumentError) as exc:
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


class EventSender:
    """Posts an outbox's unsent events to the back office, ``POST /v1/events``.

    :meth:`run_once` sends everything pending and returns (or raises a :class:`SyncError`);
    :meth:`start` runs it in a background thread that retries with back-off
    (:func:`terminal.sync.uploader.backoff_delays`) until :meth:`stop`. ``backoff_sleep``
    replaces the wait between retries (tests). The thread never dies of an error: it logs it
    and tries again.
    """

    def __init__(
        self,
        outbox: EventOutbox,
        credentials: TerminalCredentials,
        clock: Clock,
        *,
        batch_size: int = 100,
        base_backoff: float = DEFAULT_BASE_BACKOFF,
        max_backoff: float = 60.0,
        rng: random.Random | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        idle_interval: float = DEFAULT_IDLE_INTERVAL,
        backoff_sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"batch_size must be 1..{MAX_EVENTS_PER_REQUEST}")
        if credentials.terminal_id != outbox.terminal_id:
            raise EventOutboxError(
                f"credentials of terminal {credentials.terminal_id!r} "
                f"for the outbox of {outbox.terminal_id!r}"
            )
        self._outbox = outbox
        self._terminal_id = credentials.terminal_id
        self.batch_size = batch_size
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.idle_interval = idle_interval
        self._rng = rng if rng is not None else random.Random()
        self._client = IngestClient(credentials, clock, timeout)
        self._backoff_sleep = backoff_sleep
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent = threading.Condition()
        # One pass at a time: run_once() from a caller while the thread runs must not share
        # the HTTP connection with it.
        self._pass = threading.Lock()
        self.last_error: str | None = None
        """``code: reason`` of the last failed pass, None after a success (status pages)."""

    # --- one pass --------------------------------------------------------------------------

    def _post(self, batch: list[TerminalEvent]) -> int:
        """Send one batch; the back office's ``acked_up_to``, or a typed SyncError."""
        status, answer = self._client.post(EVENTS_PATH, events_body(self._terminal_id, batch))
        return parse_ingest_answer(status, answer)

    def run_once(self) -> SendResult:
        """Send every unsent event, a batch at a time, marking each batch sent on the back
        office's ``{"acked_up_to": N}``. Raises a :class:`SyncError` on any failure; what
        was acknowledged before it stays marked."""
        with self._pass:
            return self._send_all()

    def _send_all(self) -> SendResult:
        requests = sent = 0
        while batch := self._outbox.pending(self.batch_size):
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

    # --- the background thread -------------------------------------------------------------

    def start(self) -> None:
        """Send continuously in a background thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="onecard-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (after its current request at most) and close the connection."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None
        self._client.close()

    def notify(self) -> None:
        """An event was added: send now, rather than at the next idle poll or back-off."""
        self._wake.set()

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

    def _loop(self) -> None:
        delays: Iterator[float] | None = None
        while not self._stop.is_set():
            self._wake.clear()  # a notify() from here on triggers another pass
            try:
                self.run_once()
            except Exception as exc:
                # Never let the thread die: a dead sender silently drops every staff call.
                if isinstance(exc, OneCardError):
                    level = logging.WARNING if isinstance(exc, SyncError) else logging.ERROR
                    log.log(level, "sending events failed: %s: %s", exc.code, exc.reason)
                    self.last_error = f"{exc.code}: {exc.reason}"
                else:
                    log.exception("sending events failed unexpectedly")
                    self.last_error = f"internal: {exc!r}"
                if delays is None:
                    delays = backoff_delays(self.base_backoff, self.max_backoff, self._rng)
                delay = next(delays)
                log.info("next attempt to send events in %.1fs", delay)
                if self._backoff_sleep is not None:
                    self._backoff_sleep(delay)
                else:
                    # Unlike the journal uploader, a notify() cuts the back-off short: a
                    # holder is waiting for staff, and staff calls are rare enough not to
                    # hammer a back office that is down.
                    self._wake.wait(delay)
                continue
            delays = None
            self.last_error = None
            self._wake.wait(self.idle_interval)
        self._client.close()
