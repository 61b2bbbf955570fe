"""The simulated T-Union e-purse on the wire, and the pure parsers of its files."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from helpers.card_exchange import tx
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.cardos import CardOS, t1_atr
from firmware_sim.profile import sample_public_info
from firmware_sim.tunion_applet import add_tunion
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.errors import ParseError, TransitRecordError
from terminal.transit.records import (
    PurchaseLogRecord,
    decode_public_info,
    decode_purchase_log,
    decode_trip_record,
    public_info_from_fci,
)

SERIAL = bytes.fromhex("50000000000000001234")
KEY = bytes(range(16))
SELECT = "00A4040008A00000063201010500"


@pytest.fixture
def card() -> CardOS:
    card = CardOS(t1_atr(b"TUNION"), "T=1")
    add_tunion(card, purchase_key=KEY, algorithm=Alg.SM4, balance=300, app_serial=SERIAL)
    card.power_on()
    return card


def test_select_answers_public_info_in_fci(card) -> None:
    data, sw = tx(card, SELECT)
    assert sw == 0x9000
    info = public_info_from_fci(data)
    # the terminal's parser reads the simulator's file 0x15 back to the same bytes
    assert info.app_serial == SERIAL and info.to_bytes() == sample_public_info(SERIAL).to_bytes()
    assert tx(card, "00B095001E") == (info.to_bytes(), 0x9000)


def test_balance_and_initialize(card) -> None:
    assert tx(card, "805C000204")[1] == 0x6E00  # not selected: the e-purse does not answer
    tx(card, SELECT)
    assert tx(card, "805C000204") == (bytes.fromhex("0000012C"), 0x9000)
    data, sw = tx(card, "805003020B01000000C8500100000042" + "0F")
    assert sw == 0x9000 and len(data) == 15
    assert data[:4] == bytes.fromhex("0000012C") and data[4:6] == b"\x00\x00"
    assert data[10] == 0x04  # SM4
    assert tx(card, "805003020B01000001F4500100000042" + "0F")[1] == 0x9401
    assert tx(card, "805003020B02000000C8500100000042" + "0F")[1] == 0x9403


def test_debit_needs_initialize_and_cache_needs_composite(card) -> None:
    tx(card, SELECT)
    debit = "805401000F" + "00000001" + "20240506" + "070809" + "00000000" + "08"
    assert tx(card, debit)[1] == 0x6985
    tx(card, "805001020B01000000C8500100000042" + "0F")
    assert tx(card, "80DC00F030" + "09" + "00" * 47)[1] == 0x6985
    tx(card, "805003020B01000000C8500100000042" + "0F")
    assert tx(card, "80DC02F030" + "09" + "00" * 47)[1] == 0x6A86  # cyclic 0x1E: P1 00 only
    assert tx(card, "80DC00F030" + "09" + "00" * 47)[1] == 0x9000
    assert tx(card, debit)[1] == 0x9302  # wrong MAC1
    assert tx(card, "805C000204")[0] == bytes.fromhex("0000012C")


def test_prove_without_transaction(card) -> None:
    tx(card, SELECT)
    assert tx(card, "805A0009020001" + "08")[1] == 0x9406
    assert tx(card, "805A0007020001" + "08")[1] == 0x6A86


VALID_INFO = sample_public_info(SERIAL).to_bytes()


def test_parsers_round_trip() -> None:
    assert decode_public_info(VALID_INFO).to_bytes() == VALID_INFO
    record = PurchaseLogRecord(7, 0, 150, 9, bytes(6), dt.datetime(2024, 5, 6, 7, 8, 9))
    assert decode_purchase_log(record.to_bytes()) == record
    with pytest.raises(TransitRecordError):
        decode_public_info(VALID_INFO[:29])
    with pytest.raises(TransitRecordError):
        decode_public_info(VALID_INFO[:20] + bytes.fromhex("20241399") + VALID_INFO[24:])
    with pytest.raises(TransitRecordError):
        public_info_from_fci(b"\x6f\x02\x84\x00")


@given(st.binary(max_size=64))
def test_random_bytes_give_typed_errors_only(raw: bytes) -> None:
    for parser in (
        decode_public_info,
        decode_purchase_log,
        decode_trip_record,
        public_info_from_fci,
    ):
        with contextlib.suppress(ParseError):
            parser(raw)


@given(st.binary(min_size=23, max_size=23))
def test_random_log_records(raw: bytes) -> None:
    try:
        record = decode_purchase_log(raw)
    except TransitRecordError:
        return
    assert record.to_bytes() == raw


@given(st.binary(min_size=30, max_size=30))
def test_random_public_info(raw: bytes) -> None:
    try:
        info = decode_public_info(raw)
    except TransitRecordError:
        return
    assert info.to_bytes() == raw
