"""Scenic-area passes: strict parsing (each refusal names its field), the pass of a card by
its token, validity by day, and any JSON value giving passes or a :class:`PassesError`
within a deadline."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, hostile_json, total
from hypothesis import given, settings

from terminal.privacy.cardtoken import card_token
from terminal.venue.passes import Pass, PassesError, parse_passes
from terminal.wire.canonical import JsonError, parse_json
from terminal.wire.document import DocumentError

KEY = bytes(range(32))
CARD = card_token(KEY, "A01000013")[:8]
OTHER = card_token(KEY, "B02000020")[:8]
GOOD: dict[str, Any] = {
    "area": "jinfo-mountain",
    "passes": [
        [CARD.hex(), "annual", "2026-01-01", "2026-12-31", 2],
        [OTHER.hex(), "senior", "2026-06-01", "2026-06-01", 1],
    ],
}


def changed(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is ...:
            out.pop(key)
        else:
            out[key] = value
    return out


def one(*fields: Any) -> dict[str, Any]:
    return changed(passes=[list(fields)])


def test_good_passes() -> None:
    passes = parse_passes({**GOOD, "kind": "passes", "version": 2})
    assert passes.version == 2 and passes.area == "jinfo-mountain" and len(passes) == 2
    assert passes.pass_for(CARD) == Pass("annual", dt.date(2026, 1, 1), dt.date(2026, 12, 31), 2)
    assert passes.pass_for(OTHER).kind == "senior"
    assert passes.pass_for(card_token(KEY, "C03000031")[:8]) is None


@pytest.mark.parametrize(
    ("day", "valid"),
    [
        (dt.date(2025, 12, 31), False),
        (dt.date(2026, 1, 1), True),
        (dt.date(2026, 7, 15), True),
        (dt.date(2026, 12, 31), True),
        (dt.date(2027, 1, 1), False),
        (dt.datetime(2026, 12, 31, 23, 59), True),
    ],
)
def test_valid_on(day: dt.date, valid: bool) -> None:
    assert parse_passes(GOOD).pass_for(CARD).valid_on(day) is valid


def test_a_one_day_pass() -> None:
    senior = parse_passes(GOOD).pass_for(OTHER)
    assert senior.valid_on(dt.date(2026, 6, 1))
    assert not senior.valid_on(dt.date(2026, 6, 2))


def test_a_token_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(PassesError):
        parse_passes(GOOD).pass_for(b"\x00" * 7)


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "missing area": (changed(area=...), "area"),
    "missing passes": (changed(passes=...), "passes"),
    "unknown key": (changed(holders=[]), "holders"),
    "wrong kind": (changed(kind="fares"), "kind"),
    "bad area": (changed(area=""), "area"),
    "passes not a list": (changed(passes={}), "passes"),
    "pass of four fields": (one(CARD.hex(), "annual", "2026-01-01", 2), "passes[0]"),
    "bad kind": (one(CARD.hex(), "Annual Pass", "2026-01-01", "2026-12-31", 2), "passes[0] kind"),
    "bad date": (one(CARD.hex(), "annual", "2026-02-30", "2026-12-31", 2), "passes[0] valid_from"),
    "date shape": (one(CARD.hex(), "annual", "2026-1-1", "2026-12-31", 2), "passes[0] valid_from"),
    "date not text": (one(CARD.hex(), "annual", "2026-01-01", 20261231, 2), "passes[0] valid_to"),
    "ends before it starts": (
        one(CARD.hex(), "annual", "2026-12-31", "2026-01-01", 2),
        "passes[0]",
    ),
    "no entries": (one(CARD.hex(), "annual", "2026-01-01", "2026-12-31", 0), "entries_per_day"),
    "fractional entries": (
        one(CARD.hex(), "annual", "2026-01-01", "2026-12-31", 1.5),
        "entries_per_day",
    ),
    "token not hex": (one("xy" * 8, "annual", "2026-01-01", "2026-12-31", 1), "passes"),
    "token is a card number": (one("A01000013", "annual", "2026-01-01", "2026-12-31", 1), "passes"),
    "two passes for a card": (
        changed(passes=[GOOD["passes"][0], [CARD.hex(), "senior", "2026-01-01", "2026-01-02", 1]]),
        f"token {CARD.hex()}",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_malformed_passes_are_refused_naming_the_field(name: str) -> None:
    body, field = REFUSED[name]
    with pytest.raises(PassesError) as caught:
        parse_passes(body)
    assert field in caught.value.reason
    assert caught.value.code == "bad_passes"


def _parse_bytes(raw: bytes) -> object:
    try:
        body = parse_json(raw)
    except JsonError:
        return None
    return parse_passes(body)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(GOOD))
def test_any_json_gives_passes_or_a_passes_error(raw: bytes) -> None:
    total(_parse_bytes, raw, DocumentError)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json({"p": GOOD["passes"][0]}))
def test_hostile_pieces_inside_a_pass(raw: bytes) -> None:
    try:
        piece = parse_json(raw)
    except JsonError:
        return
    for body in (changed(passes=[piece]), changed(passes=piece), changed(area=piece)):
        total(parse_passes, body, PassesError)
    if isinstance(piece, dict) and isinstance(piece.get("p"), list):
        total(parse_passes, changed(passes=[piece["p"]]), PassesError)
