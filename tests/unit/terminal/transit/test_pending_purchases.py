"""The validator's durable record of purchases that may have charged a card."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import TransitError
from terminal.transit.pending import PendingPurchases, decode_pending, encode_pending
from terminal.transit.purchase import PendingPurchase

CST = dt.timezone(dt.timedelta(hours=8))


def pending(counter: int = 7) -> PendingPurchase:
    return PendingPurchase(
        app_serial=bytes.fromhex("50000000000000000101"),
        counter=counter,
        amount=200,
        transaction_type=9,
        terminal_number=bytes.fromhex("000000000001"),
        terminal_serial=42,
        when=dt.datetime(2026, 11, 27, 8, 15, 3, 123456, tzinfo=CST),
        balance_before=5000,
    )


def test_round_trip():
    assert decode_pending(encode_pending(pending())) == pending()


def test_survives_reopening(tmp_path):
    path = tmp_path / "pending.db"
    store = PendingPurchases(path)
    store.put(b"\x01" * 16, pending(), 1.0)
    store.close()
    again = PendingPurchases(path)
    assert again.get(b"\x01" * 16) == pending()
    assert again.get(b"\x02" * 16) is None
    again.remove(b"\x01" * 16)
    assert len(again) == 0


def test_a_new_purchase_replaces_the_old_record_of_the_card():
    store = PendingPurchases(None)
    store.put(b"\x01" * 16, pending(1), 1.0)
    store.put(b"\x01" * 16, pending(2), 2.0)
    assert store.get(b"\x01" * 16).counter == 2 and len(store) == 1


@given(st.text(max_size=200))
def test_garbage_records_are_typed_errors(text):
    with pytest.raises(TransitError):
        decode_pending(text)


def test_a_plain_tunion_card_is_kept_under_its_purse_token():
    from terminal.privacy.cardtoken import tunion_card_token

    key = b"k" * 32
    token = tunion_card_token(key, pending().app_serial)
    store = PendingPurchases(None)
    store.put(token, pending(), 1.0)
    # The same serial on the next tap gives the same token: the record is found again.
    assert store.get(tunion_card_token(key, bytes(pending().app_serial))) == pending()
