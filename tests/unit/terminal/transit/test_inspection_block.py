"""The inspector's verdict from the card's records, and the block session's steps (pure)."""

from __future__ import annotations

import datetime as dt

from terminal.iso7816.apdu import ResponseAPDU
from terminal.transit.block import MaintenanceMacStep, block_steps
from terminal.transit.inspection import PAID, UNPAID, InspectionRules, inspect
from terminal.transit.journey_record import Station, fresh_record
from terminal.transit.records import TripRecord, decode_public_info

T0 = dt.datetime(2026, 12, 6, 8, 0, 0)
VALIDATOR = bytes.fromhex("500100000007")
INFO = decode_public_info(
    bytes.fromhex("310069000001000002010001234567890123456720200101203012310100")
)


def bus_ride(when: dt.datetime):
    return fresh_record(2).paid_ride(when, "bus", 200, VALIDATOR, 1)


def test_a_bus_ride_on_this_vehicle_within_the_minutes_is_paid() -> None:
    rules = InspectionRules("bus", 60.0, 0, ("500100000007",))
    assert inspect(bus_ride(T0), None, T0 + dt.timedelta(minutes=30), rules).reason == PAID
    late = inspect(bus_ride(T0), None, T0 + dt.timedelta(minutes=61), rules)
    assert not late.paid and late.reason == UNPAID
    other = InspectionRules("bus", 60.0, 0, ("500100000099",))
    assert not inspect(bus_ride(T0), None, T0 + dt.timedelta(minutes=5), other).paid
    assert not inspect(None, None, T0, rules).paid


def test_a_trip_record_on_the_line_is_paid() -> None:
    trip = TripRecord(0x09, VALIDATOR, 0x02, 71, 3, 0, 200, 800, T0, b"\x69\x00", bytes(8))
    assert inspect(None, trip, T0 + dt.timedelta(minutes=10), InspectionRules("bus", 60, 71)).paid
    assert not inspect(None, trip, T0, InspectionRules("bus", 60, 72)).paid


def test_rail_is_paid_while_inside() -> None:
    inside = fresh_record(2).entered(
        T0, Station(1, 1), city_code=b"\x69\x00", operator=bytes(8),
        terminal_number=VALIDATOR, serial=1, balance=1000,
    )  # fmt: skip
    rules = InspectionRules("rail", 120.0)
    verdict = inspect(inside, None, T0 + dt.timedelta(minutes=30), rules)
    assert verdict.paid and verdict.station == "0101"
    assert not inspect(inside, None, T0 + dt.timedelta(minutes=121), rules).paid
    assert not inspect(bus_ride(T0), None, T0, rules).paid


def test_the_block_asks_a_challenge_then_the_mac_then_blocks() -> None:
    steps = block_steps(INFO, 0x02)
    first = next(steps)
    assert bytes(first.to_bytes()) == bytes.fromhex("0084000004")
    mac_step = steps.send(ResponseAPDU(bytes.fromhex("01020304"), 0x9000))
    assert isinstance(mac_step, MaintenanceMacStep)
    assert mac_step.challenge == bytes.fromhex("01020304")
    assert mac_step.data == bytes.fromhex("841E000004")
    assert mac_step.app_serial_low8 == INFO.serial_low8 and mac_step.issuer_id == INFO.issuer_id
    block = steps.send(bytes.fromhex("AABBCCDD"))
    assert bytes(block.to_bytes()) == bytes.fromhex("841E000004AABBCCDD")
    try:
        steps.send(ResponseAPDU(b"", 0x9000))
    except StopIteration as stop:
        assert stop.value.blocked
    else:
        raise AssertionError("the block did not end")


def test_a_refused_challenge_ends_the_block_without_asking_the_psam() -> None:
    steps = block_steps(INFO, 0x02)
    next(steps)
    try:
        steps.send(ResponseAPDU(b"", 0x6D00))
    except StopIteration as stop:
        assert not stop.value.blocked and stop.value.sw == 0x6D00
