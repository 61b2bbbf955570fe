"""Purchases that may have charged a card but are not yet in the journal.

A validator writes the purchase here (an SQLite file opened as every durable file of the
terminal is, :mod:`terminal.host.sqlite`: created whole, checked at open, WAL with
synchronous=FULL) just before DEBIT FOR PURCHASE leaves for the card, and deletes it once
the journal holds the transaction. What is left here after a crash, a pulled card or a full
journal is settled on the card's next tap with GET TRANSACTION PROVE
(:func:`terminal.transit.purchase.recover`): journaled if the card was charged, dropped if
it was not. So a card is never charged without the journal learning of it, and never
charged twice.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

from terminal.errors import TransitError
from terminal.host import sqlite as durable
from terminal.transit.purchase import PendingPurchase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_purchases (
    card_token BLOB PRIMARY KEY,
    record TEXT NOT NULL,
    created REAL NOT NULL
)
"""
ERRORS = durable.StoreErrors(
    "the pending purchases",
    TransitError,
    lambda reason, path: TransitError(f"pending purchases {path}: {reason}"),
    TransitError,
)
"""How the store's SQLite failures are typed. A write refused (a full disk) means the
purchase must not go ahead: DEBIT may only leave once its pending record is on disk."""


def _build(conn: sqlite3.Connection) -> None:
    conn.execute(_SCHEMA)


def encode_pending(pending: PendingPurchase) -> str:
    return json.dumps(
        {
            "app_serial": pending.app_serial.hex(),
            "counter": pending.counter,
            "amount": pending.amount,
            "transaction_type": pending.transaction_type,
            "terminal_number": pending.terminal_number.hex(),
            "terminal_serial": pending.terminal_serial,
            "when": pending.when.isoformat(),
            "balance_before": pending.balance_before,
        },
        sort_keys=True,
    )


def decode_pending(text: str) -> PendingPurchase:
    try:
        raw = json.loads(text)
        return PendingPurchase(
            app_serial=bytes.fromhex(raw["app_serial"]),
            counter=int(raw["counter"]),
            amount=int(raw["amount"]),
            transaction_type=int(raw["transaction_type"]),
            terminal_number=bytes.fromhex(raw["terminal_number"]),
            terminal_serial=int(raw["terminal_serial"]),
            when=dt.datetime.fromisoformat(raw["when"]),
            balance_before=int(raw["balance_before"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise TransitError(f"unreadable pending purchase record: {exc}") from None


class PendingPurchases:
    """Pending purchases by card token; ``path`` None keeps them in memory (tests only)."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self.path = ":memory:" if path is None else str(path)
        if path is None:
            self._db = durable.open_in_memory(ERRORS, _build)
            return
        # ensure: a file from before files were created whole may lack the table (IF NOT
        # EXISTS), as it always could.
        self._db, _ = durable.open_store(
            Path(path), ERRORS, build=_build, check=lambda db: None, ensure=_build
        )

    def _execute(self, doing: str, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        # Under the lock; autocommit: each statement is committed (and synced) when it returns.
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise ERRORS.of(exc, self.path, doing) from None

    def put(self, card_token: bytes, pending: PendingPurchase, now: float) -> None:
        """Record ``pending`` durably (committed before this returns)."""
        with self._lock:
            self._execute(
                "cannot record the purchase",
                "INSERT OR REPLACE INTO pending_purchases VALUES (?, ?, ?)",
                (bytes(card_token), encode_pending(pending), now),
            )

    def get(self, card_token: bytes) -> PendingPurchase | None:
        with self._lock:
            row = self._execute(
                "cannot read",
                "SELECT record FROM pending_purchases WHERE card_token = ?",
                (bytes(card_token),),
            ).fetchone()
        return None if row is None else decode_pending(row[0])

    def remove(self, card_token: bytes) -> None:
        with self._lock:
            self._execute(
                "cannot settle the purchase",
                "DELETE FROM pending_purchases WHERE card_token = ?",
                (bytes(card_token),),
            )

    def __len__(self) -> int:
        with self._lock:
            row = self._execute("cannot count", "SELECT count(*) FROM pending_purchases").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
