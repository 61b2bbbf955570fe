"""The e-purse as real cards have it (domain.md 5b), on small fake cards: FCIs without 9F0C
(READ BINARY 0x15), bit 31 in the balance, unwritten log records of zero bytes, and cards
that answer out of spec (typed errors naming the file and the status word)."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from helpers.fake_epurse import (
    AID,
    OK,
    TERMINAL,
    EnginePsam,
    FakeEPurse,
    TableCard,
    log_record,
    public_info,
    real_fci,
    sw,
    tlv,
)
from hypothesis import given
from hypothesis import strategies as st

from terminal.devices.reader import CardChannel
from terminal.errors import (
    NoTransitApplicationError,
    OneCardError,
    ParseError,
    PendingMismatchError,
    TransitCardError,
    TransitRecordError,
)
from terminal.transit import (
    PendingPurchase,
    PurchaseStatus,
    decode_balance,
    decode_trip_record,
    is_empty_record,
    parse_purse_fci,
    purchase,
    read_balance,
    recover,
    select_purse,
)
from terminal.transit.commands import (
    PURCHASE_LOG_CAPACITY,
    SFI_PUBLIC_INFO,
    TUNION_AID,
    read_public_info,
    read_purchase_log,
    read_trip_record,
)
from terminal.transit.records import public_info_from_fci

WHEN = dt.datetime(2026, 3, 2, 8, 15, 0)
INFO = public_info()
SELECT = "00A4040008A00000063201010500"
READ_BINARY_15 = "00B095001E"


def channel(card) -> CardChannel:
    return CardChannel(card)


# --- the command table ----------------------------------------------------------------------


def test_commands_on_the_wire() -> None:
    assert TUNION_AID == AID and SFI_PUBLIC_INFO == 0x15
    assert read_public_info().to_bytes().hex().upper() == READ_BINARY_15
    assert read_purchase_log(1).to_bytes().hex().upper() == "00B201C417"
    assert read_trip_record(3).to_bytes().hex().upper() == "00B203F430"


# --- the FCI --------------------------------------------------------------------------------


def test_real_fci_with_public_info() -> None:
    fci = real_fci(INFO.to_bytes())
    assert fci[:2] == b"\x6f\x50" and fci[12:14] == b"\xa5\x44"  # the real lengths
    parsed = parse_purse_fci(fci)
    assert parsed.public_info == INFO and parsed.label == "MOT_T_EP" and parsed.df_name == AID
    assert public_info_from_fci(fci) == INFO


def test_real_fci_without_9f0c_is_a_value_not_an_error() -> None:
    parsed = parse_purse_fci(real_fci(None))
    assert parsed.public_info is None and parsed.label == "MOT_T_EP"
    with pytest.raises(TransitRecordError, match="9F0C"):
        public_info_from_fci(real_fci(None))
    assert parse_purse_fci(b"").public_info is None


def test_9f0c_of_another_length_means_read_binary() -> None:
    fci = tlv(b"\x6f", tlv(b"\x84", AID) + tlv(b"\xa5", tlv(b"\x9f\x0c", bytes(8))))
    assert parse_purse_fci(fci).public_info is None


@pytest.mark.parametrize(
    ("fci", "words"),
    [
        (tlv(b"\x6f", tlv(b"\x84", bytes(8))), "names DF"),  # another application
        (tlv(b"\x84", AID), "6F template"),
        (b"\x6f\x05\x84\x08", "FCI"),  # truncated
    ],
)
def test_wrong_fci_is_a_typed_error(fci: bytes, words: str) -> None:
    with pytest.raises(TransitRecordError, match=words):
        parse_purse_fci(fci)


@given(st.binary(max_size=120))
def test_any_fci_bytes_give_a_value_or_a_typed_error(raw: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_purse_fci(raw)


# --- the balance and empty records --------------------------------------------------------


def test_bit_31_of_the_balance_is_dropped() -> None:
    assert decode_balance(bytes.fromhex("80001388")) == 5000
    assert decode_balance(bytes.fromhex("00001388")) == 5000
    assert decode_balance(bytes.fromhex("FFFFFFFF")) == 0x7FFFFFFF
    with pytest.raises(TransitRecordError):
        decode_balance(b"\x00\x01")


@given(st.binary(max_size=8))
def test_any_balance_bytes(raw: bytes) -> None:
    try:
        value = decode_balance(raw)
    except TransitRecordError:
        assert len(raw) != 4
    else:
        assert 0 <= value < 2**31


@given(st.binary(max_size=60))
def test_is_empty_record_answers_for_any_bytes(raw: bytes) -> None:
    assert is_empty_record(raw) == (len(raw) > 0 and raw.count(0) == len(raw))


def test_empty_records() -> None:
    assert is_empty_record(bytes(23)) and is_empty_record(bytes(48))
    assert not is_empty_record(b"") and not is_empty_record(b"\x00" * 22 + b"\x01")
    with pytest.raises(TransitRecordError):
        decode_trip_record(bytes(48))  # an empty trip record does not decode: callers check first


# --- sessions on fake cards -----------------------------------------------------------------


@pytest.mark.parametrize(("in_fci", "apdus"), [(True, 4), (False, 5)])
def test_purchase_with_and_without_9f0c(in_fci: bool, apdus: int) -> None:
    card = FakeEPurse(1000, fci_public_info=in_fci)
    result = purchase(channel(card), EnginePsam(), 150, WHEN)
    assert result.status is PurchaseStatus.DONE and result.mac2_verified
    assert result.apdu_count == apdus
    sent = [c.hex().upper() for c in card.sent]
    assert (READ_BINARY_15 in sent) is not in_fci
    assert card.balance == 850 and result.balance_after == 850


def test_purchase_with_bit_31_set_debits_the_real_balance() -> None:
    card = FakeEPurse(1000, bit31=True, fci_public_info=False)
    result = purchase(channel(card), EnginePsam(), 150, WHEN)
    assert (result.balance_before, result.balance_after) == (1000, 850)
    staged = decode_trip_record(card.trips[0])
    assert staged.balance_after == 850  # not 21 million yuan
    assert read_balance(channel(card)) == 850


def test_insufficient_balance_shows_the_masked_balance() -> None:
    card = FakeEPurse(100, bit31=True)
    result = purchase(channel(card), EnginePsam(), 150, WHEN)
    assert result.status is PurchaseStatus.INSUFFICIENT_BALANCE
    assert result.balance_before == 100


def test_purchase_on_an_already_selected_purse_sends_no_select() -> None:
    card = FakeEPurse(1000, fci_public_info=False)
    info = select_purse(channel(card))
    assert info == INFO and len(card.sent) == 2  # SELECT + READ BINARY
    card.sent.clear()
    result = purchase(channel(card), EnginePsam(), 10, WHEN, public_info=info)
    assert result.status is PurchaseStatus.DONE and result.apdu_count == 3
    assert card.sent[0][:2] == b"\x80\x50"


def test_select_purse_on_a_card_without_one() -> None:
    card = TableCard({SELECT: sw(0x6A82)})
    assert select_purse(channel(card)) is None
    with pytest.raises(NoTransitApplicationError) as caught:
        read_balance(channel(card))
    assert caught.value.sw == 0x6A82 and "6A82" in caught.value.reason


@pytest.mark.parametrize(
    ("table", "error", "words"),
    [
        ({SELECT: sw(0x6283)}, TransitCardError, "SELECT e-purse failed: 6283"),
        ({SELECT: real_fci(None) + OK, READ_BINARY_15: sw(0x6982)}, TransitCardError, "0x15"),
        (
            {SELECT: real_fci(None) + OK, READ_BINARY_15: bytes(20) + OK},
            TransitRecordError,
            "READ BINARY 0x15 answered 20 bytes, not 30 \\(SW 9000\\)",
        ),
        (
            {SELECT: real_fci(INFO.to_bytes()) + OK, "805C000204": b"\x00\x01" + OK},
            TransitRecordError,
            "GET BALANCE answered 2 bytes",
        ),
        (
            {SELECT: real_fci(INFO.to_bytes()) + OK, "805C000204": sw(0x6F00)},
            TransitCardError,
            "GET BALANCE failed: 6F00",
        ),
    ],
)
def test_out_of_spec_answers_are_typed_errors(table, error, words) -> None:
    with pytest.raises(error, match=words) as caught:
        read_balance(channel(TableCard(table)))
    if isinstance(caught.value, TransitCardError):
        assert caught.value.to_json()["sw"] == f"{caught.value.sw:04X}"


@pytest.mark.parametrize(
    ("init", "error", "words"),
    [
        (bytes(10) + OK, TransitRecordError, "INITIALIZE FOR PURCHASE answered 10 bytes"),
        (sw(0x6F00), TransitCardError, "INITIALIZE FOR PURCHASE failed: 6F00"),
        (sw(0x9403), TransitCardError, "9403 key index not supported"),
    ],
)
def test_initialize_out_of_spec(init: bytes, error, words) -> None:
    card = TableCard({SELECT: real_fci(INFO.to_bytes()) + OK, "8050*": init})
    with pytest.raises(error, match=words):
        purchase(channel(card), EnginePsam(), 10, WHEN)


def test_debit_answering_9000_short_is_an_error_not_a_result() -> None:
    """A 9000 DEBIT may have debited: the error keeps the pending record for the next tap."""
    init = bytes.fromhex("000003E80000000000010411223344") + OK
    card = TableCard(
        {
            SELECT: real_fci(INFO.to_bytes()) + OK,
            "8050*": init,
            "80DC*": OK,
            "8054*": b"\x01\x02" + OK,
        }
    )
    written = []
    with pytest.raises(TransitRecordError, match="DEBIT FOR PURCHASE answered 2 bytes"):
        purchase(channel(card), EnginePsam(), 10, WHEN, before_debit=written.append)
    assert len(written) == 1


# --- recovery of a torn purchase ------------------------------------------------------------


def torn_card(**options) -> tuple[FakeEPurse, PendingPurchase, EnginePsam]:
    card = FakeEPurse(1000, **options)
    card.tear_debit = True
    psam = EnginePsam()
    torn = purchase(channel(card), psam, 150, WHEN)
    assert torn.status is PurchaseStatus.TORN and torn.pending is not None
    return card, torn.pending, psam


def test_torn_purchase_recovered_by_the_prove() -> None:
    card, pending, psam = torn_card(fci_public_info=False, bit31=True)
    result = recover(channel(card), psam, pending)
    assert result.status is PurchaseStatus.DONE and result.mac2_verified and result.recovered
    assert card.balance == 850


def test_recovery_on_an_empty_log_is_not_charged_not_a_crash() -> None:
    """The card never got DEBIT and has no purchase yet: record 1 answers 23 zero bytes."""
    card = FakeEPurse(1000)
    psam = EnginePsam()
    pending = PendingPurchase(INFO.app_serial, 0, 150, 0x09, bytes.fromhex(TERMINAL), 1, WHEN, 1000)
    result = recover(channel(card), psam, pending)
    assert result.status is PurchaseStatus.NOT_CHARGED
    reads = [c for c in card.sent if c[:2] == b"\x00\xb2"]
    assert len(reads) == 1  # the empty record ends the log


@pytest.mark.parametrize("empty_records", [True, False])
def test_recovery_finds_the_purchase_in_the_log_after_the_psam_lost_it(empty_records) -> None:
    card, pending, _ = torn_card(empty_records=empty_records)
    card._prove = None  # the card has since done something the prove does not cover
    result = recover(channel(card), EnginePsam(serial=99), pending)
    assert result.status is PurchaseStatus.DONE and not result.mac2_verified


def test_recovery_finds_the_purchase_behind_newer_ones() -> None:
    card, pending, psam = torn_card()
    later = WHEN + dt.timedelta(hours=1)
    card.log[0:0] = [log_record(2, 200, later), log_record(1, 200, later)]
    card._prove = None
    result = recover(channel(card), psam, pending)
    assert result.status is PurchaseStatus.DONE
    assert [c[2] for c in card.sent if c[:2] == b"\x00\xb2"] == [1, 2, 3]


def test_recovery_stops_at_an_older_record() -> None:
    old = log_record(4, 100, WHEN - dt.timedelta(days=1))
    card = FakeEPurse(1000, counter=5, log=[old])
    pending = PendingPurchase(INFO.app_serial, 5, 150, 0x09, bytes.fromhex(TERMINAL), 1, WHEN, 1000)
    result = recover(channel(card), EnginePsam(), pending)
    assert result.status is PurchaseStatus.NOT_CHARGED


def test_recovery_reads_no_more_than_the_log_holds() -> None:
    newer = [log_record(20 - n, 100, WHEN) for n in range(PURCHASE_LOG_CAPACITY + 3)]
    card = FakeEPurse(1000, counter=20, log=newer)
    pending = PendingPurchase(INFO.app_serial, 3, 150, 0x09, bytes.fromhex(TERMINAL), 1, WHEN, 1000)
    result = recover(channel(card), EnginePsam(), pending)
    assert result.status is PurchaseStatus.NOT_CHARGED
    assert len([c for c in card.sent if c[:2] == b"\x00\xb2"]) == PURCHASE_LOG_CAPACITY


def test_recovery_with_a_short_log_record_keeps_the_pending_purchase() -> None:
    card = FakeEPurse(1000, log=[bytes(5) + b"\x01"])
    pending = PendingPurchase(INFO.app_serial, 0, 150, 0x09, bytes.fromhex(TERMINAL), 1, WHEN, 1000)
    with pytest.raises(TransitRecordError, match="0x18 record 1 has 6 bytes, not 23"):
        recover(channel(card), EnginePsam(), pending)


def test_recovery_matches_a_record_whose_date_does_not_decode_elsewhere() -> None:
    """The record is compared as the card wrote it: a bad neighbour does not matter."""
    bad = b"\x00\x07" + bytes(3) + (99).to_bytes(4, "big") + b"\x09" + bytes(6) + b"\xff" * 7
    card, pending, psam = torn_card()
    card.log.insert(0, bad)
    card._prove = None
    assert recover(channel(card), psam, pending).status is PurchaseStatus.DONE


def test_recovery_on_a_selected_purse_and_on_another_card() -> None:
    card, pending, psam = torn_card()
    info = select_purse(channel(card))
    card.sent.clear()
    result = recover(channel(card), psam, pending, public_info=info)
    assert result.status is PurchaseStatus.DONE and card.sent[0][:2] == b"\x80\x5a"
    other = FakeEPurse(1000, info=public_info(serial=bytes.fromhex("31000000000000009999")))
    with pytest.raises(PendingMismatchError):
        recover(channel(other), psam, pending)


# --- any answer at all ----------------------------------------------------------------------


answers = st.one_of(
    st.just(sw(0x9000)),
    st.binary(max_size=40).map(lambda b: b + OK),
    st.sampled_from([0x6A82, 0x6A83, 0x6283, 0x9401, 0x9406, 0x6F00, 0x6700]).map(sw),
    st.just(real_fci(INFO.to_bytes()) + OK),
    st.just(real_fci(None) + OK),
)


class Scripted(TableCard):
    """A card answering from a script, then 6A83."""

    def __init__(self, script: list[bytes]) -> None:
        super().__init__({})
        self.script = list(script)

    def transmit_raw(self, apdu: bytes) -> bytes:
        self.sent.append(apdu.hex())
        return self.script.pop(0) if self.script else sw(0x6A83)


@given(st.lists(answers, max_size=12), st.lists(answers, max_size=14))
def test_any_card_answers_give_a_result_or_a_typed_error(first, second) -> None:
    """Whatever the card answers, a purchase or a recovery ends in a status or a
    OneCardError - never another exception."""
    with contextlib.suppress(OneCardError):
        purchase(channel(Scripted(first)), EnginePsam(), 10, WHEN)
    pending = PendingPurchase(INFO.app_serial, 0, 10, 0x09, bytes.fromhex(TERMINAL), 1, WHEN, 9)
    with contextlib.suppress(OneCardError):
        recover(channel(Scripted(second)), EnginePsam(), pending)
    with contextlib.suppress(OneCardError):
        read_balance(channel(Scripted(second)))


@given(st.binary(min_size=0, max_size=4))
def test_any_city_code_gives_a_six_digit_region(city: bytes) -> None:
    from terminal.transit.identity import UNKNOWN_REGION, purse_region

    region = purse_region(city)
    assert len(region) == 6 and region.isdigit()
    assert region == UNKNOWN_REGION or region.endswith("0000")  # a province, never a city


def test_recovery_skips_a_load_whose_online_counter_is_lower() -> None:
    """A load (type 02) logs the online counter, which has no order with the offline one
    purchases run under: the scan goes past it to the pending purchase."""
    card, pending, _psam = torn_card()
    card._prove = None
    top_up = log_record(3, 5000, WHEN + dt.timedelta(hours=1), kind=0x02)
    card.log.insert(0, top_up)
    result = recover(channel(card), EnginePsam(serial=99), pending)
    assert result.status is PurchaseStatus.DONE  # not "not charged": no second charge


@pytest.mark.parametrize("answer", ["6D00", "6985", "6A86"])
def test_recovery_falls_back_to_the_log_on_any_refused_prove(answer: str) -> None:
    card, pending, _psam = torn_card()
    card._prove_command = lambda apdu: bytes.fromhex(answer)
    result = recover(channel(card), EnginePsam(serial=99), pending)
    assert result.status is PurchaseStatus.DONE
