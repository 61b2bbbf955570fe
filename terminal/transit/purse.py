"""The e-purse as a counter, an inspector or a kiosk reads it: ``onecard purse``.

:class:`PurseReadSession` is a pure state machine like the purchase sessions
(:mod:`terminal.transit.session`): it asks for card APDUs and takes their answers, and
:func:`read_purse` drives it over a :class:`terminal.devices.reader.CardChannel`. Nothing is written
to the card and no secure module is needed.

On the wire (T=1; GET RESPONSE adds some over T=0):

1. ``00 A4 04 00 08 A000000632010105 00`` SELECT; file 0x15 from the FCI's ``9F0C``, else
   ``00 B0 95 00 1E`` READ BINARY (domain.md 5b).
2. ``80 5C 00 02 04`` GET BALANCE (bit 31 dropped:
   :func:`~terminal.transit.records.decode_balance`).
3. ``00 B2 <n> C4 17`` READ RECORD of the purchase log 0x18, n = 1 (newest), 2, ...
4. ``00 B2 <n> F4 30`` READ RECORD of the trip records 0x1E, the same way.

A cyclic file is read until the first empty record (``9000`` with zero bytes, as real cards
answer an unwritten record), ``6A83`` (record not found) or any other status word, and never
beyond its capacity (:data:`~terminal.transit.commands.PURCHASE_LOG_CAPACITY`,
:data:`~terminal.transit.commands.TRIP_RECORDS_CAPACITY`). A record that does not decode
(wrong length, a date that is no date) is kept as an :class:`OddRecord` and the read goes on:
an odd optional record never fails the whole read. SELECT, 0x15 and the balance are not
optional: their failures are typed errors (:class:`~terminal.errors.NoTransitApplicationError`,
:class:`~terminal.errors.TransitCardError`, :class:`~terminal.errors.TransitRecordError`).

APDUs: 2 + (records + 1) per file, the + 1 being the answer that ends it (none when the file
is full); one more when the FCI lacks 0x15. An e-purse with 3 purchases and 3 trips: 10.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from terminal.devices.reader import CardChannel
from terminal.errors import TransitRecordError
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.status_words import SW
from terminal.transit.commands import (
    PURCHASE_LOG_CAPACITY,
    TRANSACTION_TYPE_NAMES,
    TRIP_RECORDS_CAPACITY,
    get_balance,
    read_purchase_log,
    read_trip_record,
)
from terminal.transit.records import (
    PublicInfo,
    PurchaseLogRecord,
    TripRecord,
    decode_purchase_log,
    decode_trip_record,
    is_empty_record,
)
from terminal.transit.session import Answer, CardStep, EPurseSession, PurchaseStep, drive

T = TypeVar("T")

END_EMPTY = "empty"
"""The file ended at an unwritten record (9000, zero bytes)."""
END_CAPACITY = "capacity"
"""Every record the cyclic file can hold was read."""


def yuan(fen: int) -> str:
    """``1234`` fen -> ``"12.34"`` (exact: no floating point for money)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def transaction_type_name(transaction_type: int) -> str:
    """``purchase`` (06), ``composite purchase`` (09), else the type in hex (``02``)."""
    return TRANSACTION_TYPE_NAMES.get(transaction_type, f"{transaction_type:02X}")


@dataclass(frozen=True)
class OddRecord:
    """A record the card answered with 9000 that does not decode: kept, not fatal."""

    file: str  # "0x18" or "0x1E"
    number: int
    reason: str
    raw: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "number": self.number,
            "reason": self.reason,
            "raw": self.raw.hex().upper(),
        }


@dataclass(frozen=True)
class Numbered(Generic[T]):
    """A decoded record and its record number (1 = newest)."""

    number: int
    record: T


@dataclass(frozen=True)
class PurseReading:
    """What ``onecard purse`` shows: file 0x15, the balance, the purchase log and the trip
    records, and why each cyclic file's read ended (``empty``, ``capacity``, or the status
    word in hex, e.g. ``6A83``)."""

    public_info: PublicInfo
    balance: int
    """Fen, bit 31 dropped."""
    purchase_log: tuple[Numbered[PurchaseLogRecord], ...]
    trips: tuple[Numbered[TripRecord], ...]
    odd_records: tuple[OddRecord, ...]
    purchase_log_end: str
    trips_end: str
    apdu_count: int = 0

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict: hex for codes, ISO 8601 for dates, fen and yuan for money."""
        info = self.public_info
        return {
            "app_serial": info.app_serial.hex().upper(),
            "issuer_code": info.issuer_code.hex().upper(),
            "city_code": info.city_code.hex().upper(),
            "industry_code": info.industry_code.hex().upper(),
            "app_type": f"{info.app_type:02X}",
            "app_version": f"{info.app_version:02X}",
            "start_date": info.start_date.isoformat(),
            "expiry_date": info.expiry_date.isoformat(),
            "card_type": f"{info.card_type:02X}",
            "balance_fen": self.balance,
            "balance_yuan": yuan(self.balance),
            "purchase_log": [_log_json(n) for n in self.purchase_log],
            "purchase_log_end": self.purchase_log_end,
            "trips": [_trip_json(n) for n in self.trips],
            "trips_end": self.trips_end,
            "odd_records": [odd.to_json() for odd in self.odd_records],
            "apdu_count": self.apdu_count,
        }


def _log_json(numbered: Numbered[PurchaseLogRecord]) -> dict[str, object]:
    r = numbered.record
    return {
        "number": numbered.number,
        "counter": r.counter,
        "amount_fen": r.amount,
        "amount_yuan": yuan(r.amount),
        "type": f"{r.transaction_type:02X}",
        "type_name": transaction_type_name(r.transaction_type),
        "terminal": r.terminal_number.hex().upper(),
        "when": r.when.isoformat(),
        "overdraft_fen": r.overdraft,
    }


def _trip_json(numbered: Numbered[TripRecord]) -> dict[str, object]:
    r = numbered.record
    return {
        "number": numbered.number,
        "type": f"{r.transaction_type:02X}",
        "type_name": transaction_type_name(r.transaction_type),
        "terminal": r.terminal_number.hex().upper(),
        "industry": f"{r.industry:02X}",
        "line": r.line,
        "station": r.station,
        "operator": r.operator,
        "amount_fen": r.amount,
        "amount_yuan": yuan(r.amount),
        "balance_after_fen": r.balance_after,
        "balance_after_yuan": yuan(r.balance_after),
        "when": r.when.isoformat(),
        "city_code": r.city_code.hex().upper(),
        "acquirer_id": r.acquirer_id.hex().upper(),
    }


_ReadRun = Generator[PurchaseStep, Answer, PurseReading]


class PurseReadSession(EPurseSession[PurseReading]):
    """SELECT (+ READ BINARY 0x15), GET BALANCE, the purchase log 0x18 and the trip records
    0x1E, read-only (module docstring)."""

    def _run(self) -> _ReadRun:
        info = yield from self._select()
        balance = self._balance(
            self._card((yield CardStep(get_balance(), "GET BALANCE"))), "GET BALANCE"
        )
        odd: list[OddRecord] = []
        purchase_log, log_end = yield from self._read_cyclic(
            "0x18", read_purchase_log, PURCHASE_LOG_CAPACITY, decode_purchase_log, odd
        )
        trips, trips_end = yield from self._read_cyclic(
            "0x1E", read_trip_record, TRIP_RECORDS_CAPACITY, decode_trip_record, odd
        )
        return PurseReading(
            public_info=info,
            balance=balance,
            purchase_log=tuple(purchase_log),
            trips=tuple(trips),
            odd_records=tuple(odd),
            purchase_log_end=log_end,
            trips_end=trips_end,
        )

    def _read_cyclic(
        self,
        file: str,
        command: Callable[[int], CommandAPDU],
        capacity: int,
        decode: Callable[[bytes], T],
        odd: list[OddRecord],
    ) -> Generator[PurchaseStep, Answer, tuple[list[Numbered[T]], str]]:
        """Records 1.. of a cyclic file until the end (module docstring)."""
        records: list[Numbered[T]] = []
        for number in range(1, capacity + 1):
            step = CardStep(command(number), f"READ RECORD {file} #{number}")
            response = self._card((yield step))
            if response.sw != SW.OK:
                # 6A83 is the usual end; any other word (6A82: no such file on this card,
                # 6982: not readable) ends this file only, not the read.
                return records, f"{response.sw:04X}"
            if is_empty_record(response.data):
                return records, END_EMPTY
            try:
                records.append(Numbered(number, decode(response.data)))
            except TransitRecordError as error:
                odd.append(OddRecord(file, number, error.reason, response.data))
        return records, END_CAPACITY


def read_purse(card: CardChannel) -> PurseReading:
    """Run a :class:`PurseReadSession` over ``card``; ``apdu_count`` = the card APDUs sent."""
    start = card.apdu_count
    reading = drive(PurseReadSession(), card, None)
    return replace(reading, apdu_count=card.apdu_count - start)
