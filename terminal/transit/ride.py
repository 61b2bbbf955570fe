"""A ride paid with the e-purse, decided from the card's own journey record: the bus tap, the
rail entry and the rail exit (docs/transit.md "Rides: bus, rail entry, rail exit").

:func:`plan_ride` is pure: from the journey record 0x1A (or None when the card has none),
the time, where the terminal is (:class:`RideSite`) and what it charges
(:class:`RideTerms`), it says what to do - a :class:`RidePlan`: charge this amount and
write this record, or refuse with a reason. :class:`RideSession` is the purchase session
that reads the record, asks the plan and runs the composite purchase that writes it; on the
wire (T=1, the FCI carrying 0x15):

=============  =========================================================================
bus tap        SELECT, READ RECORD 0x1A, INITIALIZE (03), UPDATE CAPP 0x1A, DEBIT = 5
rail entry     SELECT, READ RECORD 0x1A, INITIALIZE (03, 0 fen), UPDATE CAPP 0x1A, DEBIT = 5
rail exit      the entry's five and UPDATE CAPP 0x1E (the trip record) = 6
=============  =========================================================================

The balance comes from INITIALIZE's answer, never from a GET BALANCE (sent only when
INITIALIZE says the balance is too low, to tell the rider how much is missing). A card
without the journey record pays a bus fare with a plain purchase (no transfers, no
limits); a rail gate refuses it, as it refuses a record it cannot trust
(:class:`terminal.transit.journey_record.JourneyRecordError`): never a guessed fare.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from terminal.devices.reader import CardChannel
from terminal.errors import OneCardError, TransitError
from terminal.iso7816.status_words import SW
from terminal.transit.commands import (
    JOURNEY_RECORD_ID,
    SFI_JOURNEY_RECORD,
    SFI_TRIP_RECORDS,
    read_journey_record,
)
from terminal.transit.journey_record import (
    JourneyRecord,
    JourneyRecordError,
    Station,
    decode_journey_record,
)
from terminal.transit.purchase import (
    TRIP_TYPE_EXIT,
    PurchaseSession,
    Staged,
    TripInfo,
)
from terminal.transit.records import PublicInfo
from terminal.transit.results import PendingPurchase, PurchaseResult, PurchaseStatus
from terminal.transit.secure_module import PsamPurchase
from terminal.transit.session import CardStep, Steps, command_failed, run_session

MODES = ("bus", "rail")
CATEGORY_NAMES = {"1": "preschool", "2": "student", "3": "adult", "4": "elderly"}
"""Card category codes (EF05 tag 02, the journal's) by the names fare tables use."""
ROLES = ("ride", "entry", "exit")
SW_NO_JOURNEY_RECORD = frozenset({SW.FILE_NOT_FOUND, SW.RECORD_NOT_FOUND})
"""READ RECORD 0x1A answers meaning "this card has no journey record" (6A82, 6A83)."""

# Reasons a plan gives (the journal's ``reason``; the holder screen words them).
ENTRY = "entry"
REENTRY = "reentry"
EXIT_WITHOUT_ENTRY = "exit_without_entry"
ALREADY_INSIDE = "already_inside"
RIDE_LIMIT = "ride_limit"
UNKNOWN_STATION = "unknown_station"
NO_FARE_TABLE = "no_fare_table"
NO_JOURNEY_RECORD = "no_journey_record"
BAD_JOURNEY_RECORD = "bad_journey_record"


@dataclass(frozen=True)
class RideSite:
    """Where the terminal is: ``mode`` (bus, rail), ``role`` (``ride`` for a bus validator,
    ``entry`` or ``exit`` for a rail gate), the station (rail), and what it writes into the
    records (the network's city code, the operator's 8-byte id, the journey record's id)."""

    mode: str = "bus"
    role: str = "ride"
    station: Station | None = None
    line: int = 0
    city_code: bytes = b"\x00\x00"
    operator: bytes = bytes(8)
    record_id: int = JOURNEY_RECORD_ID
    journey_record: bool = True
    """Bus: read and update the journey record (transfers and ride limits work across
    modes); False: the composite purchase writes the 0x1E trip record only, as before."""

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.role not in ROLES:
            raise TransitError(f"a ride site is bus/ride or rail/entry|exit, not {self}")
        if self.mode == "rail" and (self.station is None or self.role == "ride"):
            raise TransitError("a rail gate needs its station and the role entry or exit")
        if len(self.city_code) != 2 or len(self.operator) != 8:
            raise TransitError("a ride site's city code is 2 bytes and its operator 8")

    @property
    def reads_record(self) -> bool:
        return self.mode == "rail" or self.journey_record


@dataclass(frozen=True)
class RideTerms:
    """What this tap costs: ``fare`` (bus: the service's fare for the card's category),
    the card's ``category``, the service's transfer rules and daily ride limits
    (:class:`terminal.policy.ServiceItem`), and the rail fare table
    (:class:`terminal.transit.fares.FareTable`)."""

    fare: int = 0
    category: str | None = None
    transfers: Sequence[Any] = ()
    rides_per_day: Any = field(default_factory=dict)
    fares: Any = None


@dataclass(frozen=True)
class RidePlan:
    """What to do with this tap. ``charge`` False: refuse with ``reason`` (nothing is
    written). Otherwise charge ``amount`` (0 at an entry) and write ``journey`` (a
    function of the balance before and the PSAM serial, since the record carries both) and,
    at an exit, the trip record."""

    charge: bool
    reason: str
    detail: str
    amount: int = 0
    base_fare: int = 0
    discount: int = 0
    surcharge: int = 0
    entry_station: str | None = None
    minutes: float | None = None
    journey: Callable[[int, int], JourneyRecord] | None = field(default=None, compare=False)
    trip: TripInfo | None = None

    def facts(self) -> dict[str, object]:
        """What the journal keeps of the plan (no personal data: stations and money)."""
        out: dict[str, object] = {"ride": self.reason}
        if self.base_fare:
            out["base_fare"] = self.base_fare
        if self.discount:
            out["transfer_discount"] = self.discount
        if self.surcharge:
            out["surcharge"] = self.surcharge
        if self.entry_station is not None:
            out["entry_station"] = self.entry_station
        if self.minutes is not None:
            out["minutes"] = round(self.minutes, 1)
        return out


def _refuse(reason: str, detail: str, **more: Any) -> RidePlan:
    return RidePlan(False, reason, detail, **more)


def _transfer_discount(
    record: JourneyRecord | None, now: dt.datetime, terms: RideTerms, fare: int
) -> int:
    if record is None or not terms.transfers or fare == 0:
        return 0
    last = record.last_ride(now)
    if last is None:
        return 0
    minutes = (now - last.when).total_seconds() / 60.0
    for rule in terms.transfers:
        discount = rule.discount(last.mode, minutes)
        if discount:
            return min(discount, fare)
    return 0


def _limit_reached(record: JourneyRecord | None, now: dt.datetime, terms: RideTerms) -> int | None:
    limit = terms.rides_per_day.get(terms.category) if terms.category else None
    if limit is None or record is None:
        return None
    return limit if record.rides_on(now.date()) >= limit else None


def plan_ride(
    record: JourneyRecord | None,
    now: dt.datetime,
    site: RideSite,
    terms: RideTerms,
    terminal_number: bytes,
) -> RidePlan:
    """The plan for a tap at ``now`` (local time, naive: the card keeps local times) of a
    card whose journey record is ``record`` (None: the card has none). Pure."""
    if site.mode == "bus":
        return _plan_bus(record, now, site, terms, terminal_number)
    if record is None:
        return _refuse(NO_JOURNEY_RECORD, "this card has no rail journey record")
    if site.role == "entry":
        return _plan_entry(record, now, site, terms, terminal_number)
    return _plan_exit(record, now, site, terms, terminal_number)


def _plan_bus(
    record: JourneyRecord | None,
    now: dt.datetime,
    site: RideSite,
    terms: RideTerms,
    terminal_number: bytes,
) -> RidePlan:
    limit = _limit_reached(record, now, terms)
    if limit is not None:
        return _refuse(RIDE_LIMIT, f"the {limit} rides of today are used")
    discount = _transfer_discount(record, now, terms, terms.fare)
    amount = terms.fare - discount
    journey = None
    if record is not None:

        def journey(balance: int, serial: int) -> JourneyRecord:
            return record.paid_ride(now, "bus", amount, terminal_number, serial)

    detail = "transfer discount" if discount else "fare paid"
    return RidePlan(True, "ok", detail, amount, terms.fare, discount, journey=journey)


def _minutes(since: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if since is None else (now - since).total_seconds() / 60.0


def _plan_entry(
    record: JourneyRecord,
    now: dt.datetime,
    site: RideSite,
    terms: RideTerms,
    terminal_number: bytes,
) -> RidePlan:
    assert site.station is not None
    table = terms.fares
    if table is None:
        return _refuse(NO_FARE_TABLE, "no fare table in force")
    if table.station(site.station.code) is None:
        return _refuse(UNKNOWN_STATION, f"station {site.station.code} is not in the fare table")
    reason, detail = ENTRY, "entry recorded"
    if record.inside and record.entry_city == site.city_code:
        minutes = _minutes(record.entry_time, now)
        entered_at = record.entry_station.code
        if minutes is not None and table.reentry_free(entered_at, site.station.code, minutes):
            reason, detail = REENTRY, "re-entry at the same station: free"
        else:
            return _refuse(
                ALREADY_INSIDE,
                "the card entered and did not exit: see the station staff",
                entry_station=record.entry_station.code,
                minutes=minutes,
            )
    limit = _limit_reached(record, now, terms)
    if limit is not None:
        return _refuse(RIDE_LIMIT, f"the {limit} rides of today are used")

    def journey(balance: int, serial: int) -> JourneyRecord:
        return record.entered(
            now,
            site.station,  # type: ignore[arg-type]
            city_code=site.city_code,
            operator=site.operator,
            terminal_number=terminal_number,
            serial=serial,
            balance=balance,
        )

    return RidePlan(True, reason, detail, 0, journey=journey, entry_station=site.station.code)


def _plan_exit(
    record: JourneyRecord,
    now: dt.datetime,
    site: RideSite,
    terms: RideTerms,
    terminal_number: bytes,
) -> RidePlan:
    assert site.station is not None
    table = terms.fares
    if table is None:
        return _refuse(NO_FARE_TABLE, "no fare table in force")
    if not record.inside or record.entry_city != site.city_code:
        return _refuse(EXIT_WITHOUT_ENTRY, "no entry on this card: see the station staff")
    entry = record.entry_station
    minutes = _minutes(record.entry_time, now)
    if minutes is None or minutes < 0:
        return _refuse(BAD_JOURNEY_RECORD, "the entry time on the card is in the future")
    try:
        quote = table.quote(
            entry.code, site.station.code, minutes, CATEGORY_NAMES.get(terms.category or "")
        )
    except OneCardError as error:  # unknown station, no price for the pair
        return _refuse(UNKNOWN_STATION, error.reason, entry_station=entry.code, minutes=minutes)
    base = quote.fare_fen
    discount = _transfer_discount(record, now, terms, base)
    amount = base - discount + quote.surcharge_fen
    rule = quote.rule
    detail = {
        "same_station_free": "exit at the entry station: free",
        "same_station": "exit at the entry station",
    }.get(rule, "fare paid")
    if quote.surcharge_fen:
        detail = "fare and overtime surcharge paid"
    elif discount:
        detail = "fare paid with a transfer discount"

    def journey(balance: int, serial: int) -> JourneyRecord:
        return record.exited(
            now,
            site.station,  # type: ignore[arg-type]
            amount,
            city_code=site.city_code,
            operator=site.operator,
            terminal_number=terminal_number,
            serial=serial,
        )

    trip = TripInfo(
        industry=0x01,
        line=site.station.line,
        station=site.station.number,
        city_code=site.city_code,
        acquirer_id=site.operator,
        trip_type=TRIP_TYPE_EXIT,
    )
    return RidePlan(
        True,
        "ok",
        detail,
        amount,
        base,
        discount,
        quote.surcharge_fen,
        entry.code,
        minutes,
        journey=journey,
        trip=trip,
    )


class RideSession(PurchaseSession):
    """SELECT (unless the 0x15 of the e-purse just selected is given), READ RECORD 0x1A,
    :func:`plan_ride`, then the composite purchase that writes the plan's records. The
    result is a :class:`PurchaseResult` (status ``refused`` with the plan's reason when the
    plan refuses; :attr:`plan` holds the plan)."""

    def __init__(
        self,
        site: RideSite,
        terms: RideTerms,
        terminal_number: str,
        when: dt.datetime,
        *,
        public_info: PublicInfo | None = None,
    ) -> None:
        self.site = site
        self.terms = terms
        self.plan: RidePlan | None = None
        # ``local``: the card keeps local time without a zone; the DEBIT's date and time too.
        self.local = when.replace(tzinfo=None, microsecond=0)
        super().__init__(
            terms.fare if terms.fare > 0 else 0,
            terminal_number,
            self.local,
            composite=True,
            public_info=public_info,
        )

    def _run(self) -> Steps[PurchaseResult]:
        info = yield from self._select(self.selected)
        self.public_info = info
        serial_hex = info.app_serial.hex()
        record: JourneyRecord | None = None
        if self.site.reads_record:
            response = self._card((yield self._record_step()))
            if response.sw == SW.OK:
                try:
                    record = decode_journey_record(response.data, self.site.record_id)
                except JourneyRecordError as error:
                    self.plan = _refuse(BAD_JOURNEY_RECORD, error.reason)
                    return self._refused(BAD_JOURNEY_RECORD, serial_hex)
            elif response.sw not in SW_NO_JOURNEY_RECORD:
                raise command_failed("READ RECORD 0x1A", response.sw)
        plan = plan_ride(record, self.local, self.site, self.terms, self.terminal_number)
        self.plan = plan
        if not plan.charge:
            return self._refused(plan.reason, serial_hex)
        self.amount = plan.amount
        if plan.journey is None and self.amount == 0:
            return self._free(serial_hex)  # a free bus ride on a card without the record
        return (yield from self._purchase(info))

    @staticmethod
    def _record_step() -> CardStep:
        return CardStep(read_journey_record(), "READ RECORD 0x1A")

    def _free(self, serial_hex: str) -> PurchaseResult:
        return PurchaseResult(PurchaseStatus.DONE, None, None, None, None, 0, app_serial=serial_hex)

    def _staged(self, balance: int, terminal_serial: int) -> Sequence[Staged]:
        plan = self.plan
        assert plan is not None
        if plan.journey is None:
            # A bus card without the journey record: the trip record, as ever.
            return super()._staged(balance, terminal_serial)
        staged = [Staged(SFI_JOURNEY_RECORD, plan.journey(balance, terminal_serial).to_bytes())]
        if plan.trip is not None:
            record = plan.trip.record(
                self.terminal_number, self.amount, balance - self.amount, self.when
            )
            staged.append(Staged(SFI_TRIP_RECORDS, record))
        return staged


def ride(
    card: CardChannel,
    psam: PsamPurchase,
    site: RideSite,
    terms: RideTerms,
    when: dt.datetime,
    *,
    before_debit: Callable[[PendingPurchase], None] | None = None,
    public_info: PublicInfo | None = None,
) -> tuple[RidePlan | None, PurchaseResult]:
    """Run one ride (:class:`RideSession`) over ``card`` and ``psam``: the plan (None if the
    card's answer ended the ride before one was made) and the purchase result, whose
    ``apdu_count`` counts the ride's card APDUs."""
    session = RideSession(site, terms, psam.terminal_number, when, public_info=public_info)
    result = run_session(session, card, psam, before_debit)
    if result.status is PurchaseStatus.REFUSED and session.plan and not session.plan.charge:
        result = replace(result, reason=session.plan.reason)
    return session.plan, result
