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
from terminal.wire.canonical import JsonError, parse_json_text

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


_FIELDS = frozenset(
    {
        "app_serial",
        "counter",
        "amount",
        "transaction_type",
        "terminal_number",
        "terminal_serial",
        "when",
        "balance_before",
    }
)


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


_INTEGER_RANGES = {
    # The sizes the purchase puts them in (docs/transit.md): a value beyond one would fail
    # far from here, in the recovery of a card's next tap.
    "counter": (0, 0xFFFF),
    "amount": (0, 0xFFFFFFFF),
    "transaction_type": (0, 0xFF),
    "terminal_serial": (0, 0xFFFFFFFF),
    "balance_before": (-(2**31), 2**31 - 1),
}
_HEX_LENGTHS = {"app_serial": (1, 16), "terminal_number": (6, 6)}


def _unreadable(reason: str) -> TransitError:
    return TransitError(f"unreadable pending purchase record: {reason}")


def _integer(raw: dict[str, object], name: str) -> int:
    value = raw.get(name)
    low, high = _INTEGER_RANGES[name]
    # Exactly an int: a float or a bool in a record this module wrote is damage, not data.
    if type(value) is not int or not low <= value <= high:
        raise _unreadable(f"{name} must be an integer in {low}..{high}")
    return value


def _hex(raw: dict[str, object], name: str) -> bytes:
    value = raw.get(name)
    shortest, longest = _HEX_LENGTHS[name]
    if not isinstance(value, str) or not shortest * 2 <= len(value) <= longest * 2:
        raise _unreadable(f"{name} must be {shortest}..{longest} bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _unreadable(f"{name} is not hex") from None


def decode_pending(text: str | bytes) -> PendingPurchase:
    """The purchase of a stored record (:func:`encode_pending`'s text, as the row holds it).
    Read by the one strict JSON reader and checked field by field, so a damaged row is a
    :class:`TransitError` - never a value that fails later, in the next tap's recovery."""
    try:
        raw = parse_json_text(text)
    except JsonError as exc:
        raise _unreadable(exc.reason) from None
    if not isinstance(raw, dict) or raw.keys() != _FIELDS:
        raise _unreadable(f"not an object of the fields {sorted(_FIELDS)}")
    when = raw["when"]
    if not isinstance(when, str):
        raise _unreadable("when must be an ISO 8601 time")
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError:
        raise _unreadable("when is not an ISO 8601 time") from None
    return PendingPurchase(
        app_serial=_hex(raw, "app_serial"),
        counter=_integer(raw, "counter"),
        amount=_integer(raw, "amount"),
        transaction_type=_integer(raw, "transaction_type"),
        terminal_number=_hex(raw, "terminal_number"),
        terminal_serial=_integer(raw, "terminal_serial"),
        when=moment,
        balance_before=_integer(raw, "balance_before"),
    )


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
