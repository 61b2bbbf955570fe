"""The inspector's check: did this card pay for this vehicle or line within the last minutes?
From the card's own records alone, no debit (docs/transit.md "Inspection").

On the wire (T=1, 0x15 in the FCI): SELECT, ``00 B2 01 D4 80`` READ RECORD of the journey
record 0x1A, ``00 B2 01 F4 30`` READ RECORD of the newest trip record 0x1E = 3 APDUs.

:func:`inspect` is pure: the journey record (None when the card has none), the newest trip
record (None when the log is empty), the time and what the inspector checks
(:class:`InspectionRules`) give an :class:`Inspection`. :class:`InspectionSession` reads the
two records; :func:`inspect_card` runs it over a card channel.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from terminal.devices.reader import CardChannel
from terminal.errors import TransitRecordError
from terminal.iso7816.status_words import SW
from terminal.transit.commands import read_journey_record, read_trip_record
from terminal.transit.journey_record import (
    JourneyRecord,
    JourneyRecordError,
    decode_journey_record,
)
from terminal.transit.records import (
    PublicInfo,
    TripRecord,
    decode_trip_record,
    is_empty_record,
)
from terminal.transit.session import CardStep, EPurseSession, Steps, drive

PAID = "inspection_paid"
UNPAID = "inspection_unpaid"
UNREADABLE = "bad_journey_record"


@dataclass(frozen=True)
class InspectionRules:
    """What counts as paid: a ride by ``mode`` (``bus`` or ``rail``) within ``minutes``; for a
    bus, on one of ``terminals`` (the vehicle's validators, 12 digits; empty: any) or on
    ``line`` (0: any); for rail, a card inside the network, entered within ``minutes``."""

    mode: str = "bus"
    minutes: float = 90.0
    line: int = 0
    terminals: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inspection:
    """The verdict: ``paid``, the ``reason`` code, and the facts behind it (no personal data:
    times, line, station, amount)."""

    paid: bool
    reason: str
    detail: str
    when: dt.datetime | None = None
    line: int | None = None
    station: str | None = None
    amount: int | None = None

    def facts(self) -> dict[str, object]:
        out: dict[str, object] = {"inspection": self.detail}
        if self.when is not None:
            out["ride_time"] = self.when.strftime("%Y-%m-%dT%H:%M:%S")
        if self.line is not None:
            out["line"] = self.line
        if self.station is not None:
            out["entry_station"] = self.station
        if self.amount is not None:
            out["ride_amount"] = self.amount
        return out


def _within(when: dt.datetime | None, now: dt.datetime, minutes: float) -> bool:
    return when is not None and 0 <= (now - when).total_seconds() / 60.0 <= minutes


def inspect(
    record: JourneyRecord | None,
    trip: TripRecord | None,
    now: dt.datetime,
    rules: InspectionRules,
) -> Inspection:
    """Whether the card paid, from its records (``now``: local time, naive). Pure."""
    if rules.mode == "rail":
        if record is not None and record.inside and _within(record.entry_time, now, rules.minutes):
            return Inspection(
                True,
                PAID,
                "inside the network",
                record.entry_time,
                record.entry_station.line,
                record.entry_station.code,
            )
        return Inspection(False, UNPAID, "no entry within the time")
    terminals = {bytes.fromhex(t) for t in rules.terminals}
    if trip is not None and trip.industry != 0x01 and _within(trip.when, now, rules.minutes):
        on_vehicle = not terminals or trip.terminal_number[-6:] in terminals
        on_line = not rules.line or trip.line == rules.line
        if on_vehicle and on_line:
            return Inspection(
                True, PAID, "paid on this line", trip.when, trip.line, None, trip.amount
            )
    if record is not None:
        last = record.last_ride(now)
        recent = last is not None and last.mode == "bus" and _within(last.when, now, rules.minutes)
        last_terminal = record.raw[106:110]
        on_vehicle = not terminals or any(t[-4:] == last_terminal for t in terminals)
        if recent and on_vehicle and not rules.line:
            assert last is not None
            return Inspection(True, PAID, "paid on this vehicle", last.when)
    return Inspection(False, UNPAID, "no paid ride within the time")


class InspectionSession(EPurseSession[Inspection]):
    """SELECT (unless given the 0x15 just read), READ RECORD 0x1A, READ RECORD 0x1E #1,
    :func:`inspect`. A corrupt journey record is reported (``bad_journey_record``), never
    read as paid."""

    def __init__(
        self,
        rules: InspectionRules,
        now: dt.datetime,
        record_id: int,
        public_info: PublicInfo | None = None,
    ) -> None:
        self.rules = rules
        self.now = now.replace(tzinfo=None)
        self.record_id = record_id
        self.selected = public_info
        super().__init__()

    def _run(self) -> Steps[Inspection]:
        yield from self._select(self.selected)
        response = self._card((yield CardStep(read_journey_record(), "READ RECORD 0x1A")))
        record = None
        if response.sw == SW.OK:
            try:
                record = decode_journey_record(response.data, self.record_id)
            except JourneyRecordError as error:
                return Inspection(False, UNREADABLE, error.reason)
        response = self._card((yield CardStep(read_trip_record(1), "READ RECORD 0x1E #1")))
        trip = None
        if response.sw == SW.OK and not is_empty_record(response.data):
            try:
                trip = decode_trip_record(response.data)
            except TransitRecordError:
                trip = None  # an odd trip record proves nothing; the journey record may
        return inspect(record, trip, self.now, self.rules)


def inspect_card(
    card: CardChannel,
    rules: InspectionRules,
    now: dt.datetime,
    record_id: int,
    public_info: PublicInfo | None = None,
) -> Inspection:
    """Run :class:`InspectionSession` over ``card``."""
    return drive(InspectionSession(rules, now, record_id, public_info), card, None)
