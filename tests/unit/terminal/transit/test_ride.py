"""The journey record 0x1A and the ride plans: bus tap, rail entry, rail exit (pure)."""

from __future__ import annotations

import datetime as dt
import zlib

import pytest
from helpers.hostile import DEADLINE, EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.policy import TransferRule
from terminal.transit.fares import parse_fare_table
from terminal.transit.journey_record import (
    InOut,
    JourneyRecordError,
    Station,
    decode_journey_record,
    fresh_record,
)
from terminal.transit.ride import (
    ALREADY_INSIDE,
    ENTRY,
    EXIT_WITHOUT_ENTRY,
    NO_JOURNEY_RECORD,
    REENTRY,
    RIDE_LIMIT,
    UNKNOWN_STATION,
    RideSite,
    RideTerms,
    plan_ride,
)

ID = 0x02
CITY = bytes.fromhex("6900")
TERMINAL = bytes.fromhex("500100000007")
T0 = dt.datetime(2026, 12, 6, 8, 0, 0)
A, B, C = Station(1, 1), Station(1, 5), Station(2, 3)

FARES = parse_fare_table(
    {
        "network": "rail",
        "stations": [
            {"code": "0101", "name": "A", "line": "01"},
            {"code": "0105", "name": "B", "line": "01"},
            {"code": "0203", "name": "C", "line": "02"},
        ],
        "pricing": "distance",
        "distances": [["0101", "0105", 7.0], ["0101", "0203", 20.0], ["0105", "0203", 13.0]],
        "bands": [[6, 200], [11, 300], [17, 400], [None, 500]],
        "categories": {"adult": 100, "student": 50, "elderly": 0},
        "max_minutes": 240,
        "overtime_fen": 400,
        "same_station_minutes": 20,
        "same_station_fen": 200,
        "reentry_minutes": 10,
    }
)


def site(role: str, station: Station) -> RideSite:
    return RideSite(mode="rail", role=role, station=station, line=station.line, city_code=CITY)


def enter(record, when, station=A, serial=1, balance=1000):
    plan = plan_ride(record, when, site("entry", station), RideTerms(fares=FARES), TERMINAL)
    assert plan.charge, plan
    return plan, plan.journey(balance, serial)


def round_trip(record):
    return decode_journey_record(record.to_bytes(), ID)


def test_a_fresh_record_has_no_journey_and_no_ride() -> None:
    record = round_trip(fresh_record(ID))
    assert record.fresh and not record.inside and record.last_ride(T0) is None
    assert record.rides_on(T0.date()) == 0


def test_entry_then_exit_charges_the_distance_fare() -> None:
    plan, inside = enter(fresh_record(ID), T0)
    assert plan.reason == ENTRY and plan.amount == 0
    inside = round_trip(inside)
    assert inside.inside and inside.entry_station == A and inside.entry_time == T0
    exit_at = T0 + dt.timedelta(minutes=25)
    plan = plan_ride(inside, exit_at, site("exit", B), RideTerms(fares=FARES), TERMINAL)
    assert plan.charge and plan.amount == 300 and plan.entry_station == "0101"
    assert plan.trip is not None and plan.trip.station == 5
    out = round_trip(plan.journey(1000, 2))
    assert out.inout is InOut.EXITED and not out.inside
    assert out.rides_on(exit_at.date()) == 1 and out.cumulative_amount == 300
    last = out.last_ride(exit_at)
    assert last is not None and last.mode == "rail"


def test_the_category_fare_and_the_overtime_surcharge() -> None:
    _, inside = enter(fresh_record(ID), T0)
    late = T0 + dt.timedelta(minutes=300)
    student = RideTerms(fares=FARES, category="2")
    plan = plan_ride(inside, late, site("exit", C), student, TERMINAL)
    assert plan.base_fare == 250 and plan.surcharge == 400 and plan.amount == 650


def test_same_station_exit_is_free_within_the_minutes_then_costs() -> None:
    _, inside = enter(fresh_record(ID), T0)
    soon = plan_ride(
        inside, T0 + dt.timedelta(minutes=5), site("exit", A), RideTerms(fares=FARES), TERMINAL
    )
    later = plan_ride(
        inside, T0 + dt.timedelta(minutes=40), site("exit", A), RideTerms(fares=FARES), TERMINAL
    )
    assert soon.charge and soon.amount == 0
    assert later.charge and later.amount == 200


def test_exit_without_entry_and_entry_while_inside() -> None:
    fresh = fresh_record(ID)
    plan = plan_ride(fresh, T0, site("exit", B), RideTerms(fares=FARES), TERMINAL)
    assert not plan.charge and plan.reason == EXIT_WITHOUT_ENTRY
    _, inside = enter(fresh, T0)
    again = plan_ride(
        inside, T0 + dt.timedelta(minutes=3), site("entry", A), RideTerms(fares=FARES), TERMINAL
    )
    assert again.charge and again.reason == REENTRY
    elsewhere = plan_ride(
        inside, T0 + dt.timedelta(minutes=3), site("entry", B), RideTerms(fares=FARES), TERMINAL
    )
    assert not elsewhere.charge and elsewhere.reason == ALREADY_INSIDE


def test_a_rail_gate_refuses_a_card_without_the_record_or_an_unknown_station() -> None:
    plan = plan_ride(None, T0, site("entry", A), RideTerms(fares=FARES), TERMINAL)
    assert plan.reason == NO_JOURNEY_RECORD
    plan = plan_ride(
        fresh_record(ID), T0, site("entry", Station(9, 9)), RideTerms(fares=FARES), TERMINAL
    )
    assert plan.reason == UNKNOWN_STATION and not plan.charge


def test_transfer_discount_from_bus_to_rail_and_rail_to_bus() -> None:
    bus = RideSite(city_code=CITY)
    rule = TransferRule(frozenset({"bus", "rail"}), 60.0, 100)
    plan = plan_ride(fresh_record(ID), T0, bus, RideTerms(fare=200, transfers=(rule,)), TERMINAL)
    assert plan.amount == 200 and plan.discount == 0
    after_bus = round_trip(plan.journey(1000, 1))
    _, inside = enter(after_bus, T0 + dt.timedelta(minutes=10))
    exit_at = T0 + dt.timedelta(minutes=30)
    plan = plan_ride(
        inside, exit_at, site("exit", B), RideTerms(fares=FARES, transfers=(rule,)), TERMINAL
    )
    assert plan.base_fare == 300 and plan.discount == 100 and plan.amount == 200
    out = round_trip(plan.journey(800, 2))
    too_late = exit_at + dt.timedelta(minutes=61)
    plan = plan_ride(out, too_late, bus, RideTerms(fare=200, transfers=(rule,)), TERMINAL)
    assert plan.discount == 0 and plan.amount == 200


def test_daily_ride_limit_per_category_counts_on_the_card() -> None:
    bus = RideSite(city_code=CITY)
    terms = RideTerms(fare=0, category="4", rides_per_day={"4": 2})
    record = fresh_record(ID)
    for n in range(2):
        plan = plan_ride(record, T0 + dt.timedelta(hours=n), bus, terms, TERMINAL)
        assert plan.charge
        record = round_trip(plan.journey(1000, n))
    plan = plan_ride(record, T0 + dt.timedelta(hours=3), bus, terms, TERMINAL)
    assert not plan.charge and plan.reason == RIDE_LIMIT
    tomorrow = plan_ride(record, T0 + dt.timedelta(days=1), bus, terms, TERMINAL)
    assert tomorrow.charge


def test_a_corrupt_record_is_refused_never_priced() -> None:
    _, inside = enter(fresh_record(ID), T0)
    raw = bytearray(inside.to_bytes())
    raw[42] ^= 0x01  # the entry station, CRC not updated
    with pytest.raises(JourneyRecordError, match="CRC"):
        decode_journey_record(bytes(raw), ID)
    with pytest.raises(JourneyRecordError, match="record 02"):
        decode_journey_record(inside.to_bytes(), 0x07)
    with pytest.raises(JourneyRecordError, match="128"):
        decode_journey_record(inside.to_bytes()[:100], ID)
    bad_time = bytearray(inside.to_bytes())
    bad_time[67:74] = bytes.fromhex("20261399250000")
    bad_time[124:] = zlib.crc32(bytes(bad_time[6:124])).to_bytes(4, "big")
    with pytest.raises(JourneyRecordError, match="entry time"):
        decode_journey_record(bytes(bad_time), ID)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(st.binary(min_size=0, max_size=200))
def test_any_bytes_decode_or_are_refused(raw: bytes) -> None:
    try:
        record = decode_journey_record(raw, ID)
    except JourneyRecordError:
        return
    assert len(record.to_bytes()) == 128
    plan_ride(record, T0, site("exit", B), RideTerms(fares=FARES), TERMINAL)
