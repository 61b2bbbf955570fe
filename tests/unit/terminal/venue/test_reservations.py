"""Venue reservations: the identity token, strict parsing (each refusal names its field),
slot lookups with the grace before a slot, large lists, and any JSON value giving
reservations or a :class:`ReservationsError` within a deadline."""

from __future__ import annotations

import copy
import datetime as dt
import os
from typing import Any

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, hostile_json, total
from hypothesis import given, settings

from terminal.privacy.cardtoken import card_token
from terminal.venue.reservations import (
    ReservationsError,
    identity_token,
    parse_reservations,
)
from terminal.wire.canonical import JsonError, parse_json
from terminal.wire.document import DocumentError

KEY = bytes(range(32))
CST = dt.timezone(dt.timedelta(hours=8))
ALICE = identity_token(KEY, "11010519491231002x")
BOB = identity_token(KEY, "110105194912310029")
NOBODY = identity_token(KEY, "440105199001010011")
SLOTS = [
    {"id": "am", "start": "2026-12-06T09:00:00+08:00", "end": "2026-12-06T12:00:00+08:00"},
    {"id": "pm", "start": "2026-12-06T13:00:00+08:00", "end": "2026-12-06T17:00:00+08:00"},
    {"id": "eve", "start": "2026-12-06T10:00:00Z", "end": "2026-12-06T12:00:00Z"},
]
GOOD: dict[str, Any] = {
    "venue": "museum-1",
    "slots": SLOTS,
    "holders": [[ALICE.hex(), ["pm", "am"]], [BOB.hex(), ["eve"]]],
}


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 6, hour, minute, tzinfo=CST)


def changed(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            out.pop(key)
        else:
            out[key] = value
    return out


def test_identity_token_is_the_keyed_card_token_of_id_and_the_number_upper_cased() -> None:
    assert card_token(KEY, "id:11010519491231002X")[:8] == ALICE
    assert identity_token(KEY, " 11010519491231002X ") == ALICE
    assert len(ALICE) == 8 and card_token(KEY, "11010519491231002X")[:8] != ALICE


def test_good_reservations() -> None:
    res = parse_reservations({**GOOD, "kind": "reservations", "version": 4})
    assert res.version == 4 and res.venue == "museum-1" and len(res) == 2
    assert [s.id for s in res.slots_for(ALICE)] == ["am", "pm"]  # by start time
    assert [s.id for s in res.slots_for(BOB)] == ["eve"]
    assert res.slots_for(NOBODY) == ()
    assert res.slot("pm") is not None and res.slot("nope") is None


@pytest.mark.parametrize(
    ("when", "grace", "slot"),
    [
        (at(9), 0, "am"),
        (at(8, 45), 15, "am"),  # early by the grace
        (at(8, 44), 15, None),  # earlier
        (at(12), 0, "am"),  # the end is in
        (at(12, 1), 30, None),  # late: the grace is before the start only
        (at(12, 45), 15, "pm"),
        (at(17, 1), 0, None),
    ],
)
def test_slot_now_with_grace(when: dt.datetime, grace: float, slot: str | None) -> None:
    found = parse_reservations(GOOD).slot_now(ALICE, when, grace)
    assert (found.id if found else None) == slot


def test_slot_now_compares_instants_across_offsets() -> None:
    res = parse_reservations(GOOD)
    # "eve" is 10:00-12:00 UTC, i.e. 18:00-20:00 in Chongqing.
    assert res.slot_now(BOB, at(18, 30), 0).id == "eve"
    assert res.slot_now(BOB, dt.datetime(2026, 12, 6, 11, tzinfo=dt.UTC), 0).id == "eve"
    assert res.slot_now(BOB, at(11), 0) is None
    assert res.slot_now(NOBODY, at(10), 60) is None


@pytest.mark.parametrize(
    "args",
    [
        (ALICE, dt.datetime(2026, 12, 6, 10), 0),  # no offset
        (ALICE, at(10), -1),
        (ALICE, at(10), True),
        (b"short", at(10), 0),
        ("ab" * 8, at(10), 0),
    ],
)
def test_slot_now_refuses_what_is_no_token_time_or_grace(args: tuple[Any, ...]) -> None:
    with pytest.raises(ReservationsError):
        parse_reservations(GOOD).slot_now(*args)


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "missing venue": (changed(venue=...), "venue"),
    "missing holders": (changed(holders=...), "holders"),
    "unknown key": (changed(names=[]), "names"),
    "bad venue": (changed(venue="museum 1"), "venue"),
    "wrong kind": (changed(kind="passes"), "kind"),
    "no slots": (changed(slots=[]), "slots"),
    "slot without end": (changed(slots=[{"id": "am", "start": SLOTS[0]["start"]}]), "slots[0]"),
    "slot id twice": (changed(slots=[SLOTS[0], SLOTS[0]]), "slots[1].id"),
    "slot time without offset": (
        changed(slots=[{**SLOTS[0], "start": "2026-12-06T09:00:00"}]),
        "slots[0].start",
    ),
    "slot time not a time": (changed(slots=[{**SLOTS[0], "end": "tomorrow!!"}]), "slots[0].end"),
    "slot ends before it starts": (
        changed(slots=[{**SLOTS[0], "end": SLOTS[0]["start"]}]),
        "slots[0]",
    ),
    "holders not a list": (changed(holders={}), "holders"),
    "holder not a pair": (changed(holders=[[ALICE.hex()]]), "holders[0]"),
    "holder with unknown slot": (changed(holders=[[ALICE.hex(), ["noon"]]]), "holders[0]"),
    "holder with no slot": (changed(holders=[[ALICE.hex(), []]]), "holders[0]"),
    "holder with a slot twice": (changed(holders=[[ALICE.hex(), ["am", "am"]]]), "holders[0]"),
    "holder slot not a string": (changed(holders=[[ALICE.hex(), [1]]]), "holders[0]"),
    "token too short": (changed(holders=[[ALICE.hex()[:14], ["am"]]]), "holders"),
    "token not hex": (changed(holders=[["zz" * 8, ["am"]]]), "holders"),
    "token with spaces": (changed(holders=[[" " + ALICE.hex()[1:], ["am"]]]), "holders"),
    "token twice": (
        changed(holders=[[ALICE.hex(), ["am"]], [ALICE.hex().upper(), ["pm"]]]),
        f"token {ALICE.hex()}",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_malformed_reservations_are_refused_naming_the_field(name: str) -> None:
    body, field = REFUSED[name]
    with pytest.raises(ReservationsError) as caught:
        parse_reservations(body)
    assert field in caught.value.reason
    assert caught.value.code == "bad_reservations"


def test_a_hundred_thousand_holders() -> None:
    tokens = [os.urandom(8) for _ in range(100_000)]
    holders = [[t.hex(), ["am"] if i % 2 else ["pm", "eve"]] for i, t in enumerate(tokens)]
    res = parse_reservations(changed(holders=holders))
    assert len(res) == 100_000
    assert res.nbytes <= 12 * 100_000  # 8 bytes of token, 4 of slot index
    for i in (0, 1, 99_998, 99_999):
        assert [s.id for s in res.slots_for(tokens[i])] == (["am"] if i % 2 else ["pm", "eve"])
    held = set(tokens)
    misses = [t for t in (os.urandom(8) for _ in range(100)) if t not in held]
    assert all(res.slots_for(t) == () for t in misses)


# --- hostile input ----------------------------------------------------------------------------


def _parse_bytes(raw: bytes) -> object:
    try:
        body = parse_json(raw)
    except JsonError:
        return None
    return parse_reservations(body)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(GOOD))
def test_any_json_gives_reservations_or_a_reservations_error(raw: bytes) -> None:
    total(_parse_bytes, raw, DocumentError)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(SLOTS[0]) | hostile_json({"h": GOOD["holders"][0]}))
def test_hostile_pieces_inside_slots_and_holders(raw: bytes) -> None:
    try:
        piece = parse_json(raw)
    except JsonError:
        return
    for body in (
        changed(slots=[piece]),
        changed(holders=[piece]),
        changed(holders=piece),
        changed(holders=[[ALICE.hex(), piece]]),
    ):
        total(parse_reservations, body, ReservationsError)
