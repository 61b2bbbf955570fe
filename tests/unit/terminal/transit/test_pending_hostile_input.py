"""A stored pending purchase is read as outside data: whatever its row holds, the record or
a TransitError - never a value that fails later, in the next tap's recovery - within a time
and memory bound (issue 17: ``decode_pending`` raised ``OverflowError`` on ``1e400`` and
``RecursionError`` on deep nesting)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, LARGE_INPUTS, bounded, hostile_json, nested, total
from hypothesis import given, settings

from terminal.errors import TransitError
from terminal.transit.pending import decode_pending, encode_pending
from terminal.transit.results import PendingPurchase

PENDING = PendingPurchase(
    app_serial=bytes.fromhex("50000000000000000101"),
    counter=7,
    amount=200,
    transaction_type=9,
    terminal_number=bytes.fromhex("000000000001"),
    terminal_serial=42,
    when=dt.datetime(2026, 11, 27, 8, 15, 3, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    balance_before=5000,
)
GOOD = encode_pending(PENDING)


def _with(**changes: str) -> str:
    """The good record with each named field's JSON value replaced by the given text."""
    doc = json.loads(GOOD)
    text = "{" + ",".join(f'"{k}":{json.dumps(v)}' for k, v in doc.items() if k not in changes)
    return text + "".join(f',"{k}":{v}' for k, v in changes.items()) + "}"


def test_the_good_record_reads_back() -> None:
    assert decode_pending(GOOD) == PENDING
    assert decode_pending(GOOD.encode()) == PENDING


@pytest.mark.parametrize(
    "text",
    [
        _with(amount="1e400"),  # was OverflowError
        nested(100_000),  # was RecursionError
        _with(counter="1" * 4301),
        _with(counter="65536"),  # beyond 2 bytes: failed in recovery, far from here
        _with(amount="-1"),
        _with(amount="2.5"),
        _with(amount="true"),
        _with(amount='"200"'),
        _with(when='"\\ud800"'),
        _with(when="5"),
        _with(app_serial='"zz"'),
        _with(terminal_number='"00"'),
        _with(extra="1"),
        GOOD[:-1] + ', "amount": 1}',
        "\ud800",
    ],
    ids=[
        "1e400",
        "deep",
        "4301 digits",
        "counter beyond 2 bytes",
        "negative amount",
        "float amount",
        "bool amount",
        "text amount",
        "lone surrogate",
        "number for a time",
        "not hex",
        "short terminal number",
        "unknown field",
        "key twice",
        "raw surrogate",
    ],
)
def test_records_that_leaked_are_transit_errors(text: str) -> None:
    with pytest.raises(TransitError, match="unreadable pending purchase record"):
        decode_pending(text)


@pytest.mark.parametrize("value", [None, 12, 1.5])
def test_a_row_that_is_not_text_is_a_transit_error(value: object) -> None:
    with pytest.raises(TransitError):
        decode_pending(value)  # type: ignore[arg-type]


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(json.loads(GOOD)))
def test_decode_pending_is_total(raw: bytes) -> None:
    pending = total(decode_pending, raw, TransitError)
    if pending is not None:
        # What reads back can be recovered: the fields fit the sizes the purchase uses.
        assert isinstance(pending, PendingPurchase)
        pending.counter.to_bytes(2, "big")
        pending.amount.to_bytes(4, "big")
        pending.terminal_serial.to_bytes(4, "big")


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_records_are_refused_within_bounds(name: str) -> None:
    bounded(lambda: total(decode_pending, LARGE_INPUTS[name], TransitError))
