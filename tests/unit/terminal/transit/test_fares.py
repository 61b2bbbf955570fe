"""The rail fare table: strict parsing (each refusal names its field), the quote rules
(distance bands, pairs, same station, category percentages rounded half up, overtime),
re-entry, and any JSON value giving a table or a :class:`FaresError` within a deadline."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, hostile_json, total
from hypothesis import given, settings

from terminal.transit.fares import (
    FaresError,
    FareTable,
    UnknownStationError,
    parse_fare_table,
    station_code,
)
from terminal.wire.canonical import JsonError, parse_json
from terminal.wire.document import DocumentError

DISTANCE: dict[str, Any] = {
    "network": "rail",
    "stations": [
        {"code": "0101", "name": "Xiaoshizi", "line": "01"},
        {"code": "0105", "name": "Jiaochangkou", "line": "01"},
        {"code": "0110", "name": "Shapingba", "line": "01"},
        {"code": "02a1", "name": "Yangjiaping", "line": "02"},
    ],
    "pricing": "distance",
    "distances": [["0101", "0105", 6], ["0105", "0110", 7.2], ["0101", "0110", 17.5]],
    "bands": [[6, 200], [11, 300], [17, 400], [None, 500]],
    "categories": {"adult": 100, "student": 50, "elderly": 0, "disabled": 0, "odd": 33},
    "max_minutes": 240,
    "overtime_fen": 400,
    "same_station_minutes": 20,
    "same_station_fen": 200,
    "reentry_minutes": 10,
}
PAIRS: dict[str, Any] = {
    **{k: v for k, v in DISTANCE.items() if k not in ("distances", "bands")},
    "pricing": "pairs",
    "pairs": [["0101", "0105", 300], ["0110", "0101", 600], ["02A1", "0105", 450]],
}


def table(body: dict[str, Any] = DISTANCE) -> FareTable:
    return parse_fare_table(body)


def changed(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    for key, value in changes.items():
        if value is ...:
            out.pop(key)
        else:
            out[key] = value
    return out


# --- parsing ----------------------------------------------------------------------------------


def test_a_good_table_parses() -> None:
    fares = table()
    assert fares.network == "rail" and fares.pricing == "distance"
    assert fares.station("0101") is not None and fares.station("0101").name == "Xiaoshizi"
    assert fares.station("02A1") == fares.station("02a1")  # codes are hex, either case
    assert fares.station("02A1").code == "02A1" and fares.station("02A1").line == "02"
    assert fares.station("0999") is None
    assert fares.distance("0110", "0105") == 7.2
    assert fares.bands[-1] == (None, 500)


def test_a_signed_body_parses_with_its_envelope() -> None:
    body = {**DISTANCE, "kind": "fares", "version": 3, "signature": {"x": 1}}
    assert table(body).version == 3
    with pytest.raises(FaresError, match="kind"):
        table({**DISTANCE, "kind": "applist"})


def test_station_code_of_the_card_bytes() -> None:
    assert station_code(b"\x02\xa1") == "02A1"
    with pytest.raises(UnknownStationError):
        station_code(b"\x01")


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "unknown pricing": (changed(DISTANCE, pricing="zones"), "pricing"),
    "pricing not a string": (changed(DISTANCE, pricing=["distance"]), "pricing"),
    "missing max_minutes": (changed(DISTANCE, max_minutes=...), "max_minutes"),
    "missing bands": (changed(DISTANCE, bands=...), "bands"),
    "missing pairs": (changed(PAIRS, pairs=...), "pairs"),
    "pairs with distance pricing": (changed(DISTANCE, pairs=[]), "pairs"),
    "unknown key": (changed(DISTANCE, zones=[]), "zones"),
    "bad network": (changed(DISTANCE, network=""), "network"),
    "no stations": (changed(DISTANCE, stations=[]), "stations"),
    "station code not hex": (
        changed(DISTANCE, stations=[{"code": "01G1", "name": "x", "line": "01"}]),
        "stations[0].code",
    ),
    "station code 3 digits": (
        changed(DISTANCE, stations=[{"code": "011", "name": "x", "line": "01"}]),
        "stations[0].code",
    ),
    "station line not its byte": (
        changed(DISTANCE, stations=[{"code": "0101", "name": "x", "line": "02"}]),
        "stations[0].line",
    ),
    "station without name": (
        changed(DISTANCE, stations=[{"code": "0101", "name": "", "line": "01"}]),
        "stations[0].name",
    ),
    "duplicate station": (
        changed(
            DISTANCE, stations=[*DISTANCE["stations"], {"code": "02A1", "name": "y", "line": "02"}]
        ),
        "stations[4].code",
    ),
    "unknown station in distances": (
        changed(DISTANCE, distances=[["0101", "0999", 3]]),
        "distances[0]",
    ),
    "unknown station in pairs": (changed(PAIRS, pairs=[["0999", "0101", 300]]), "pairs[0]"),
    "pair of one station": (changed(PAIRS, pairs=[["0101", "0101", 300]]), "pairs[0]"),
    "pair twice, reversed": (
        changed(PAIRS, pairs=[["0101", "0105", 300], ["0105", "0101", 300]]),
        "pairs[1]",
    ),
    "negative fen": (changed(PAIRS, pairs=[["0101", "0105", -1]]), "pairs 0101-0105 fen"),
    "fractional fen": (changed(PAIRS, pairs=[["0101", "0105", 2.5]]), "pairs 0101-0105 fen"),
    "boolean fen": (changed(DISTANCE, overtime_fen=True), "overtime_fen"),
    "negative km": (changed(DISTANCE, distances=[["0101", "0105", -2]]), "distances 0101-0105"),
    "bands not increasing": (
        changed(DISTANCE, bands=[[6, 200], [6, 300], [None, 500]]),
        "bands[1]",
    ),
    "bands without the open end": (changed(DISTANCE, bands=[[6, 200], [11, 300]]), "bands"),
    "open band not last": (changed(DISTANCE, bands=[[None, 200], [11, 300]]), "bands[0]"),
    "band fen negative": (changed(DISTANCE, bands=[[6, -200], [None, 300]]), "bands[0] fen"),
    "category over 100": (changed(DISTANCE, categories={"adult": 150}), "categories.adult"),
    "category not a code": (changed(DISTANCE, categories={"Adult!": 100}), "categories"),
    "negative minutes": (changed(DISTANCE, same_station_minutes=-1), "same_station_minutes"),
    "minutes as text": (changed(DISTANCE, reentry_minutes="10"), "reentry_minutes"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_malformed_table_is_refused_naming_the_field(name: str) -> None:
    body, field = REFUSED[name]
    with pytest.raises(FaresError) as caught:
        parse_fare_table(body)
    assert field in caught.value.reason
    assert isinstance(caught.value, DocumentError) and caught.value.code == "bad_fares"


# --- quotes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "exit", "base"),
    [
        ("0101", "0105", 200),  # 6 km: the first band is inclusive
        ("0105", "0110", 300),  # 7.2 km
        ("0110", "0101", 500),  # 17.5 km: beyond 17
    ],
)
def test_distance_bands(entry: str, exit: str, base: int) -> None:
    quote = table().quote(entry, exit, 30, "adult")
    assert (quote.base_fen, quote.fare_fen, quote.total_fen, quote.rule) == (
        base,
        base,
        base,
        "distance",
    )
    assert quote.surcharge_fen == 0 and quote.category_percent == 100


def test_pairs_are_symmetric() -> None:
    fares = table(PAIRS)
    for a, b in [("0101", "0110"), ("0110", "0101")]:
        quote = fares.quote(a, b, 5, None)
        assert (quote.base_fen, quote.rule) == (600, "pair")
    assert fares.quote("0105", "02a1", 5, None).base_fen == 450


@pytest.mark.parametrize(
    ("category", "percent", "fare"),
    [
        ("student", 50, 150),
        ("elderly", 0, 0),
        ("disabled", 0, 0),
        ("adult", 100, 300),
        (None, 100, 300),
        ("unlisted", 100, 300),
        ("odd", 33, 99),  # 300 * 0.33 = 99
    ],
)
def test_categories(category: str | None, percent: int, fare: int) -> None:
    quote = table().quote("0105", "0110", 30, category)
    assert (quote.category_percent, quote.fare_fen, quote.total_fen) == (percent, fare, fare)


def test_category_rounds_half_up_to_the_fen() -> None:
    fares = table(changed(PAIRS, pairs=[["0101", "0105", 3], ["0101", "0110", 1]]))
    assert fares.quote("0101", "0105", 1, "student").fare_fen == 2  # 1.5 -> 2
    assert fares.quote("0101", "0110", 1, "student").fare_fen == 1  # 0.5 -> 1
    assert fares.quote("0101", "0105", 1, "odd").fare_fen == 1  # 0.99 -> 1


def test_overtime_surcharge_is_not_reduced_by_the_category() -> None:
    fares = table()
    assert fares.quote("0101", "0105", 240, "student").surcharge_fen == 0  # at the limit
    quote = fares.quote("0101", "0105", 240.5, "student")
    assert (quote.fare_fen, quote.surcharge_fen, quote.total_fen) == (100, 400, 500)
    elderly = fares.quote("0101", "0105", 300, "elderly")
    assert (elderly.fare_fen, elderly.total_fen) == (0, 400)


def test_same_station() -> None:
    fares = table()
    free = fares.quote("0101", "0101", 20, "adult")
    assert (free.base_fen, free.total_fen, free.rule) == (0, 0, "same_station_free")
    paid = fares.quote("0101", "0101", 21, "adult")
    assert (paid.base_fen, paid.total_fen, paid.rule) == (200, 200, "same_station")
    assert fares.quote("0101", "0101", 21, "student").total_fen == 100
    late = fares.quote("0101", "0101", 241, "adult")
    assert (late.total_fen, late.rule) == (600, "same_station")


def test_unknown_station_and_unpriced_pair() -> None:
    fares = table()
    with pytest.raises(UnknownStationError):
        fares.quote("0101", "0999", 5, None)
    with pytest.raises(UnknownStationError):
        fares.quote(1234, "0101", 5, None)  # type: ignore[arg-type]
    with pytest.raises(FaresError, match="no distance") as caught:
        fares.quote("0101", "02A1", 5, None)
    assert not isinstance(caught.value, UnknownStationError)
    with pytest.raises(FaresError, match="no price"):
        table(PAIRS).quote("0110", "0105", 5, None)


@pytest.mark.parametrize("minutes", [-1, float("nan"), float("inf"), True, "5"])
def test_minutes_must_be_a_non_negative_number(minutes: object) -> None:
    with pytest.raises(FaresError):
        table().quote("0101", "0105", minutes, None)  # type: ignore[arg-type]


def test_reentry() -> None:
    fares = table()
    assert fares.reentry_free("0101", "0101", 10)
    assert not fares.reentry_free("0101", "0101", 10.5)
    assert not fares.reentry_free("0101", "0105", 1)
    with pytest.raises(UnknownStationError):
        fares.reentry_free("0999", "0999", 1)


def test_lookups_are_dictionaries_built_at_parse_time() -> None:
    fares = table()
    assert dict(fares.base_fares) == {
        ("0101", "0105"): 200,
        ("0105", "0110"): 300,
        ("0101", "0110"): 500,
    }


# --- hostile input ----------------------------------------------------------------------------


def _parse_bytes(raw: bytes) -> object:
    try:
        body = parse_json(raw)
    except JsonError:
        return None
    return parse_fare_table(body)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(DISTANCE) | hostile_json(PAIRS))
def test_any_json_gives_a_table_or_a_fares_error(raw: bytes) -> None:
    total(_parse_bytes, raw, DocumentError)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(DISTANCE["stations"][0]) | hostile_json({"a": DISTANCE["bands"]}))
def test_hostile_pieces_inside_the_lists(raw: bytes) -> None:
    try:
        piece = parse_json(raw)
    except JsonError:
        return
    for body in (
        changed(DISTANCE, stations=[piece]),
        changed(DISTANCE, bands=piece),
        changed(DISTANCE, distances=[piece]),
        changed(PAIRS, pairs=piece),
        changed(DISTANCE, categories=piece),
    ):
        total(parse_fare_table, body, FaresError)


def test_the_good_bodies_are_json() -> None:
    assert parse_fare_table(json.loads(json.dumps(DISTANCE))).pricing == "distance"
