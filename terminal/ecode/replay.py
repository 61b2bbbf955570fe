"""The replay cache of electronic-card codes: each code is admitted once.

A code is known by its issuer key id, card reference, issued-at and nonce
(:class:`ReplayKey`). Checking and recording are apart, because a code is checked before
the terminal decides and recorded only when it is admitted (docs/ecode.md, "Verification"):
:meth:`ReplayCache.seen` says whether a key was recorded (a read, no disk write);
:meth:`ReplayCache.record` records it and says whether this was the first time - the one
atomic step, so two admissions of one code (two threads, two processes sharing the file)
cannot both succeed; :meth:`ReplayCache.forget` takes back a key recorded for a transaction
that was then not journaled. Entries are purged lazily once past their code's validity
window plus the clock skew (by then the time window check refuses the code anyway).

The cache is an SQLite file opened as every durable file of the terminal is
(:mod:`terminal.host.sqlite`: created whole, checked at open, WAL with
``synchronous=FULL``): the insert that records a code is committed to disk before the
terminal journals and acts on it, so a code the terminal admitted is not admitted again
after a crash or power loss. That costs one WAL fsync per admitted code (measured in
bench/ecode_verify.py). A file that is damaged (or empty) is refused rather than started
afresh: a fresh cache would admit used codes again. Recording is one ``INSERT ... ON
CONFLICT DO NOTHING``: atomic between threads and between processes sharing the file.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from terminal.errors import ReplayCacheError
from terminal.host import sqlite as durable
from terminal.host.clock import Clock

DEFAULT_SKEW = 30
PURGE_INTERVAL = 60.0
"""Seconds (monotonic) between two lazy purges of expired entries."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_codes (
    issuer_key_id BLOB NOT NULL,
    nonce BLOB NOT NULL,
    card_ref BLOB NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer_key_id, nonce, card_ref, issued_at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_codes_expiry ON seen_codes (expires_at);
"""
ERRORS = durable.StoreErrors(
    "the replay cache",
    ReplayCacheError,
    lambda reason, path: ReplayCacheError(f"replay cache {path}: {reason}"),
    ReplayCacheError,
)
"""How the cache's SQLite failures are typed: all of them mean that the terminal cannot
tell whether a code was used, so it must not accept it."""


def _build(conn: sqlite3.Connection) -> None:
    # One statement at a time: executescript() would commit on its own.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


@dataclass(frozen=True)
class ReplayKey:
    """What a code is known by in the replay cache. ``expires_at`` (Unix seconds, end of the
    code's validity window) is not part of the identity: it says when the entry may go."""

    issuer_key_id: bytes
    nonce: bytes
    card_ref: bytes
    issued_at: int
    expires_at: int


def _identity(key: ReplayKey) -> tuple[bytes, bytes, bytes, int]:
    return (bytes(key.issuer_key_id), bytes(key.nonce), bytes(key.card_ref), int(key.issued_at))


class ReplayCache:
    """Codes already admitted, in an SQLite file (or in memory, for unit tests).

    ``skew_seconds`` is kept on top of an entry's expiry before it is purged, so a clock
    stepped back by up to that much cannot make a purged code acceptable again.
    """

    def __init__(self, path: str | Path, clock: Clock, skew_seconds: int = DEFAULT_SKEW) -> None:
        self._clock = clock
        self._skew = int(skew_seconds)
        self._lock = threading.Lock()
        self._last_purge: float | None = None
        self.path = str(path)
        if self.path == ":memory:":
            self._db = durable.open_in_memory(ERRORS, _build)
            return
        # ensure: a cache file from before files were created whole may lack the table; it
        # gets it (IF NOT EXISTS), as it always did.
        self._db, _ = durable.open_store(
            Path(path), ERRORS, build=_build, check=lambda db: None, ensure=_build
        )

    @classmethod
    def in_memory(cls, clock: Clock, skew_seconds: int = DEFAULT_SKEW) -> ReplayCache:
        """A cache that lives as long as the object (unit tests, benchmarks)."""
        return cls(":memory:", clock, skew_seconds)

    def seen(self, key: ReplayKey) -> bool:
        """True when ``key`` is recorded (the code was admitted before). A read: nothing is
        written, so checking a code that is then refused leaves no trace.

        Raises :class:`ReplayCacheError` when the file cannot be read.
        """
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT 1 FROM seen_codes WHERE issuer_key_id = ? AND nonce = ?"
                    " AND card_ref = ? AND issued_at = ?",
                    _identity(key),
                ).fetchone()
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, "cannot look the code up") from None
            return row is not None

    def record(self, key: ReplayKey) -> bool:
        """Record ``key``; True if it was not there (first use), False if it was (a replay).
        Committed to disk when this returns.

        Raises :class:`ReplayCacheError` when the file cannot be written: the caller must
        then refuse the code, since it cannot know it was not used before.
        """
        with self._lock:
            try:
                self._maybe_purge()
                cur = self._db.execute(
                    "INSERT INTO seen_codes"
                    " (issuer_key_id, nonce, card_ref, issued_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (*_identity(key), int(key.expires_at)),
                )
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, "cannot record the code") from None
            return cur.rowcount == 1

    def forget(self, key: ReplayKey) -> None:
        """Take back a :meth:`record` whose transaction was not journaled (the journal
        refused it): the code may be shown again. Raises :class:`ReplayCacheError`; the key
        then stays recorded, which refuses the code - the safe side."""
        with self._lock:
            try:
                self._db.execute(
                    "DELETE FROM seen_codes WHERE issuer_key_id = ? AND nonce = ?"
                    " AND card_ref = ? AND issued_at = ?",
                    _identity(key),
                )
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, "cannot take the code back") from None

    def purge(self) -> int:
        """Forget entries past their expiry plus the skew; the number forgotten."""
        with self._lock:
            try:
                return self._purge()
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, "cannot purge") from None

    def __len__(self) -> int:
        with self._lock:
            try:
                return int(self._db.execute("SELECT count(*) FROM seen_codes").fetchone()[0])
            except sqlite3.Error as exc:
                raise ERRORS.of(exc, self.path, "cannot count") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ReplayCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _purge(self) -> int:
        self._last_purge = self._clock.monotonic()
        horizon = int(self._clock.now()) - self._skew
        cur = self._db.execute("DELETE FROM seen_codes WHERE expires_at < ?", (horizon,))
        return max(cur.rowcount, 0)

    def _maybe_purge(self) -> None:
        # A DELETE per check would double the disk work; once a minute keeps the table at
        # about a minute's worth of codes, which the primary key lookup does not notice.
        last = self._last_purge
        if last is None or self._clock.monotonic() - last >= PURGE_INTERVAL:
            self._purge()
