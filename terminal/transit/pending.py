"""Purchases that may have charged a card but are not yet in the journal.

A validator writes the purchase here (SQLite, WAL, synchronous=FULL) just before DEBIT FOR
PURCHASE leaves for the card, and deletes it once the journal holds the transaction. What
is left here after a crash, a pulled card or a full journal is settled on the card's next
tap with GET TRANSACTION PROVE (:func:`terminal.transit.purchase.recover`): journaled if
the card was charged, dropped if it was not. So a card is never charged without the
journal learning of it, and never charged twice.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

from terminal.errors import TransitError
from terminal.transit.purchase import PendingPurchase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_purchases (
    card_token BLOB PRIMARY KEY,
    record TEXT NOT NULL,
    created REAL NOT NULL
)
"""


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
        target = ":memory:" if path is None else str(path)
        try:
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise TransitError(f"cannot open the pending purchases {target}: {exc}") from None

    def put(self, card_token: bytes, pending: PendingPurchase, now: float) -> None:
        """Record ``pending`` durably (committed before this returns)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pending_purchases VALUES (?, ?, ?)",
                (bytes(card_token), encode_pending(pending), now),
            )

    def get(self, card_token: bytes) -> PendingPurchase | None:
        with self._lock:
            row = self._db.execute(
                "SELECT record FROM pending_purchases WHERE card_token = ?", (bytes(card_token),)
            ).fetchone()
        return None if row is None else decode_pending(row[0])

    def remove(self, card_token: bytes) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM pending_purchases WHERE card_token = ?", (bytes(card_token),)
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM pending_purchases").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
