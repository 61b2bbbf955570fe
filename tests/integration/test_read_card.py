"""Reading simulated cards through the real pcscd + vpcd stack."""

from __future__ import annotations

import pytest

from firmware_sim.cardos import CardOS
from terminal.devices.reader import Interface
from terminal.errors import CardRemovedError, NoCardError, NoReaderError, NotSocialSecurityCardError
from terminal.ssc.reading import read_card
from terminal.ssc.session import ReadMode

pytestmark = pytest.mark.integration


def test_reads_chongqing_2_0_contact_card_in_four_apdus(insert_card, backend):
    card = insert_card("chongqing-2.0", slot=0)
    reading = read_card(backend, card.reader)
    data = reading.to_json()
    assert data["interface"] == "contact"
    assert data["protocol"] == "T=0"
    assert data["region"].startswith("50")
    assert data["card_number_valid"] is True
    assert data["spec_version"].startswith("2.0")
    assert data["unreadable"] == []
    holder = data["holder"]
    assert holder is not None and "*" in holder["ssn"] and "*" in holder["name"]
    # SELECT + GET RESPONSE (T=0), EF05 and EF06 each in one multi-record READ RECORD.
    assert reading.apdu_count == 4
    assert reading.ssc.mode is ReadMode.MULTI_RECORD
    revealed = reading.to_json(reveal=True)["holder"]
    assert "*" not in revealed["ssn"] and len(revealed["ssn"]) == 18


def test_reads_sichuan_3_0_card_reports_ef06_unreadable(insert_card, backend):
    card = insert_card("sichuan-3.0", slot=1)
    reading = read_card(backend, card.reader)
    data = reading.to_json()
    assert data["region"].startswith("51")
    assert data["spec_version"] == "3.00"
    assert data["algorithm"] == 3
    assert data["holder"] is None
    assert data["unreadable"] == [{"file": "EF06", "tag": None, "sw": "6982"}]
    assert reading.apdu_count <= 3  # T=1: SELECT, EF05, the refused EF06


def test_reads_1_0_card_without_multi_record_mode_one_apdu_per_record(insert_card, backend):
    card = insert_card("chongqing-1.0", slot=2)
    reading = read_card(backend, card.reader)
    assert reading.ssc.mode is ReadMode.PER_TAG
    assert reading.ssc.holder is not None
    assert reading.ssc.issuer.spec_version.startswith("1.0")
    # SELECT + GET RESPONSE, one refused multi-record probe, then as the field reads:
    # SELECT EF05 + 7 records, SELECT EF06 + 6 records.
    assert reading.apdu_count == 2 + 1 + (1 + 7) + (1 + 6)


def test_reads_contactless_card_with_uid(insert_card, backend):
    card = insert_card("chongqing-2.0", slot=3, contactless=True)
    reading = read_card(backend, card.reader)
    assert reading.interface is Interface.CONTACTLESS
    assert reading.protocol == "T=1"
    assert reading.uid is not None and len(reading.uid) in (4, 7, 10)
    assert reading.ssc.holder is not None
    assert reading.apdu_count == 4  # UID, SELECT, EF05, EF06


def test_per_tag_baseline_mode_reads_the_same_data(insert_card, backend):
    card = insert_card("chongqing-2.0", slot=0)
    fast = read_card(backend, card.reader)
    slow = read_card(backend, card.reader, mode=ReadMode.PER_TAG)
    assert slow.ssc.issuer == fast.ssc.issuer
    assert slow.ssc.holder == fast.ssc.holder
    assert slow.apdu_count > fast.apdu_count


def test_card_removed_during_read_is_a_typed_error(insert_card, backend):
    card = insert_card("chongqing-2.0", slot=0)
    card.bridge.tear_after(2)  # the card leaves instead of answering the EF05 read
    with pytest.raises(CardRemovedError):
        read_card(backend, card.reader)


def test_card_without_ssc_application_is_not_ssc(insert_card, backend):
    blank = CardOS(atr=bytes.fromhex("3B6D000000814A444686605199000001AC"), protocol="T=0")
    card = insert_card(card=blank, slot=1)
    with pytest.raises(NotSocialSecurityCardError) as info:
        read_card(backend, card.reader)
    assert info.value.code == "not_ssc"


def test_empty_reader_and_unknown_reader(pcscd, backend):
    empty = [info.name for info in backend.readers() if not info.card_present]
    assert empty, "expected an empty vpcd slot"
    with pytest.raises(NoCardError):
        read_card(backend, empty[0])
    with pytest.raises(NoReaderError):
        read_card(backend, "No Such Reader 00 00")


def test_readers_lists_card_and_interface(insert_card, backend):
    card = insert_card("chongqing-2.0", slot=3, contactless=True)
    infos = {info.name: info for info in backend.readers()}
    assert infos[card.reader].card_present
    assert infos[card.reader].atr is not None and infos[card.reader].atr[2:4] == b"\x80\x01"
