"""The simulated T-Union e-purse in the field's shapes (domain.md 5b), simulator only: FCI
with and without 9F0C, balance bit 31, empty log records, plain T-Union cards, and a
purchase between the simulated card and the simulated PSAM."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.card_exchange import tx
from helpers.card_faults import answer_of
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim import crypto
from firmware_sim.cardos import CardOS, t1_atr
from firmware_sim.keys import MasterKeys
from firmware_sim.profile import load_sample, sample_public_info
from firmware_sim.psam_applet import build_psam
from firmware_sim.spec import tunion
from firmware_sim.spec.ssc import SSSE_NAME
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import TUnionApplet, add_tunion, tunion_fci

SERIAL = bytes.fromhex("44000000000000008002")
KEY = bytes(range(16))
SELECT = "00A4040008A000000632010105"
TERMINAL_NO = bytes.fromhex("500100000042")
DATE, TIME = bytes.fromhex("20240506"), bytes.fromhex("070809")


def card_with(**options: object) -> tuple[CardOS, TUnionApplet]:
    card = CardOS(t1_atr(b"TUNION"), "T=1", multi_record=False, sfi_record_id=False)
    kwargs: dict[str, object] = {"purchase_key": KEY, "algorithm": 1, "balance": 860}
    kwargs.update(options)
    applet = add_tunion(card, app_serial=SERIAL, **kwargs)  # type: ignore[arg-type]
    card.power_on()
    assert tx(card, SELECT)[1] == 0x9000
    return card, applet


def debit(card: CardOS, applet: TUnionApplet, amount: int, serial: int = 1) -> tuple[bytes, int]:
    """INITIALIZE (P1 01) and DEBIT with a MAC1 computed as a PSAM would."""
    init = "805001020B01" + amount.to_bytes(4, "big").hex() + TERMINAL_NO.hex() + "0F"
    answer, sw = tx(card, init)
    assert sw == 0x9000, hex(sw)
    counter, random = int.from_bytes(answer[4:6], "big"), answer[11:15]
    sk = crypto.purchase_session_key(applet.algorithm, KEY, random, counter, serial)
    mac1 = crypto.mac1(applet.algorithm, sk, amount, 0x06, TERMINAL_NO, DATE, TIME)
    data = serial.to_bytes(4, "big") + DATE + TIME + mac1
    return tx(card, "805401000F" + data.hex() + "08")


# --- FCI ------------------------------------------------------------------------------------


def test_fci_in_the_real_cards_shape() -> None:
    info = sample_public_info(SERIAL).to_bytes()
    fci = tunion_fci(info, label=True)
    assert fci[:2] == bytes.fromhex("6F50") and fci[2:12] == bytes.fromhex("8408A000000632010105")
    assert fci[12:14] == bytes.fromhex("A544")
    assert fci[14:24] == b"\x50\x08MOT_T_EP"
    assert fci.endswith(bytes.fromhex("9F0C1E") + info)
    assert b"\x9f\x12\x0fCARD IMAGE" in fci


def test_fci_without_9f0c_needs_read_binary() -> None:
    card, applet = card_with(fci_public_info=False, fci_label=True)
    fci, sw = tx(card, SELECT)
    assert sw == 0x9000 and b"\x9f\x0c" not in fci and fci[1] == len(fci) - 2
    assert tx(card, "00B095001E") == (applet.public_info.to_bytes(), 0x9000)


# --- balance bit 31 -------------------------------------------------------------------------


def test_balance_bit31_is_garbage_and_debits_use_the_true_balance() -> None:
    card, applet = card_with(balance_bit31=True)
    assert tx(card, "805C000204") == (bytes.fromhex("8000035C"), 0x9000)
    answer, sw = tx(card, "805001020B01" + "00000064" + TERMINAL_NO.hex() + "0F")
    assert sw == 0x9000 and answer[:4] == bytes.fromhex("8000035C")
    assert tx(card, "805001020B01" + "0000035D" + TERMINAL_NO.hex() + "0F")[1] == 0x9401
    answer, sw = debit(card, applet, 100)
    assert sw == 0x9000 and len(answer) == 8
    assert applet.balance == 760
    assert tx(card, "805C000204") == ((0x80000000 | 760).to_bytes(4, "big"), 0x9000)


def test_without_the_option_the_balance_is_plain() -> None:
    card, _ = card_with()
    assert tx(card, "805C000204") == (bytes.fromhex("0000035C"), 0x9000)


# --- overdraft ------------------------------------------------------------------------------


def test_the_overdraft_limit_is_reported_never_spent() -> None:
    """docs/transit.md: INITIALIZE answers 9401 when amount > balance; the overdraft field is
    reported in the answer (and the log), the balance never goes below zero."""
    card, applet = card_with(overdraft=1000)
    init = "805001020B01{:08X}" + TERMINAL_NO.hex() + "0F"
    assert tx(card, init.format(861))[1] == 0x9401  # within balance + overdraft: refused
    answer, sw = tx(card, init.format(100))
    assert sw == 0x9000 and answer[6:9] == (1000).to_bytes(3, "big")
    assert debit(card, applet, 860)[1] == 0x9000
    assert applet.balance == 0
    assert tx(card, "805C000204") == (bytes(4), 0x9000)
    assert tx(card, init.format(1))[1] == 0x9401
    answer, sw = tx(card, "00B201C417")
    assert sw == 0x9000 and answer[2:5] == (1000).to_bytes(3, "big")  # the log reports it
    assert tx(card, "805C000204") == (bytes(4), 0x9000)  # and the purse still answers


def _purchase(card: CardOS, applet: TUnionApplet, amount: int, serial: int) -> int:
    """INITIALIZE and, when it is accepted, DEBIT with a right MAC1; the last status word."""
    init = "805001020B01" + amount.to_bytes(4, "big").hex() + TERMINAL_NO.hex() + "0F"
    answer = answer_of(card, bytes.fromhex(init))
    if answer[-2:] != b"\x90\x00":
        return int.from_bytes(answer[-2:], "big")
    counter, random = int.from_bytes(answer[4:6], "big"), answer[11:15]
    sk = crypto.purchase_session_key(applet.algorithm, KEY, random, counter, serial)
    mac1 = crypto.mac1(applet.algorithm, sk, amount, 0x06, TERMINAL_NO, DATE, TIME)
    data = serial.to_bytes(4, "big") + DATE + TIME + mac1
    return int.from_bytes(answer_of(card, bytes.fromhex("805401000F" + data.hex() + "08"))[-2:])


@settings(max_examples=100, deadline=None)
@given(
    balance=st.integers(0, 3000),
    overdraft=st.integers(0, 0xFFFFFF),
    amounts=st.lists(st.integers(1, 6000), max_size=8),
    junk=st.lists(st.binary(max_size=20), max_size=4),
)
def test_purchases_with_an_overdraft_never_break_the_purse(
    balance: int, overdraft: int, amounts: list[int], junk: list[bytes]
) -> None:
    card, applet = card_with(balance=balance, overdraft=overdraft)
    for serial, amount in enumerate(amounts, start=1):
        before = applet.balance
        sw = _purchase(card, applet, amount, serial)
        assert sw == (0x9000 if amount <= before else 0x9401)
        assert applet.balance == (before - amount if sw == 0x9000 else before) >= 0
        answer = answer_of(card, bytes.fromhex("805C000204"))
        assert answer == applet.balance.to_bytes(4, "big") + b"\x90\x00"
    for raw in junk:
        answer_of(card, raw)
    answer_of(card, bytes.fromhex(SELECT))  # whatever the junk selected
    answer = answer_of(card, bytes.fromhex("805C000204"))
    assert answer == applet.balance.to_bytes(4, "big") + b"\x90\x00"


# --- the purchase log -----------------------------------------------------------------------


def test_empty_log_records_answer_23_zero_bytes() -> None:
    first = tunion.purchase_log_record(4, 0, 200, 0x09, TERMINAL_NO, DATE, TIME)
    card, applet = card_with(purchase_log=[first], empty_log_records=9)
    assert tx(card, "00B201C417") == (first, 0x9000)
    for number in range(2, 11):
        assert tx(card, f"00B2{number:02X}C417") == (bytes(23), 0x9000)
    assert tx(card, "00B20BC417") == (b"", 0x6A83)
    assert tx(card, "00B201C400") == (b"", 0x6C17)  # exact Le
    assert debit(card, applet, 50)[1] == 0x9000
    assert tx(card, "00B202C417") == (first, 0x9000)  # the new record is record 1
    assert tx(card, "00B20AC417") == (bytes(23), 0x9000)  # the file keeps 10 records
    assert tx(card, "00B20BC417")[1] == 0x6A83


# --- strict parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("805C000200", 0x6C04),  # Le 00: exact length
        ("805C010204", 0x6A86),
        ("805C000104", 0x6A86),
        ("805001010B01000000641111111111110F", 0x6A86),  # P2 01: not the e-purse
        ("805002020B01000000641111111111110F", 0x6A86),  # P1 02
        ("805001020A010000006411111111110F", 0x6700),  # Lc 0A
        ("805401010F" + "00" * 15 + "08", 0x6A86),
        ("805400000E" + "00" * 14 + "08", 0x6A86),
        ("805A000702000108", 0x6A86),  # type 07
        ("805A000603000001" + "08", 0x6700),
        ("80DC01E830" + "01" + "00" * 47, 0x6985),
    ],
)
def test_parameter_errors(apdu: str, sw: int) -> None:
    card, _ = card_with()
    assert tx(card, apdu) == (b"", sw)


def test_initialize_without_a_purchase_key_is_9403() -> None:
    card = CardOS(t1_atr(b"TUNION"), "T=1")
    card.install(TUnionApplet(100, None, 3, sample_public_info(SERIAL)))
    card.power_on()
    tx(card, SELECT)
    assert tx(card, "805001020B01" + "00000001" + TERMINAL_NO.hex() + "0F")[1] == 0x9403


# --- sample cards ---------------------------------------------------------------------------


def test_plain_tunion_card_has_no_ssse() -> None:
    card = build_card(load_sample("tunion-plain"), contactless=True)
    card.power_on()
    assert tx(card, "00A404000F" + SSSE_NAME.hex())[1] == 0x6A82
    assert tx(card, "FFCA000000") == (bytes.fromhex("A1B2C3D4"), 0x9000)
    fci, sw = tx(card, SELECT)
    assert sw == 0x9000 and fci[:2] == bytes.fromhex("6F50")
    assert tx(card, "805C000204") == ((12345).to_bytes(4, "big"), 0x9000)


def test_bit31_sample() -> None:
    card = build_card(load_sample("tunion-bit31"), contactless=True)
    card.power_on()
    fci, sw = tx(card, SELECT)
    assert sw == 0x9000 and b"\x9f\x0c" not in fci
    assert tx(card, "805C000204") == (bytes.fromhex("8000035C"), 0x9000)
    data, sw = tx(card, "00B095001E")
    assert sw == 0x9000 and data[10:20] == bytes.fromhex("44000000000000008002")
    assert tx(card, "00B201C417")[0][:2] == b"\x00\x04"
    assert tx(card, "00B203C417") == (bytes(23), 0x9000)


def test_sichuan_transit_card_carries_both_applications() -> None:
    card = build_card(load_sample("sichuan-3.0-transit"), contactless=True)
    card.power_on()
    fci, sw = tx(card, SELECT)
    assert sw == 0x9000 and fci.endswith(bytes.fromhex("9F0C1E") + fci[-30:])
    assert tx(card, "805C000204") == ((2000).to_bytes(4, "big"), 0x9000)
    fci, sw = tx(card, "00A404000F" + SSSE_NAME.hex())
    assert sw == 0x9000 and fci.endswith(bytes.fromhex("9F0C03860103"))
    assert tx(card, "805C000204")[1] == 0x6D00  # the SSSE knows no GET BALANCE


# --- a purchase between the simulated card and the simulated PSAM ---------------------------


@pytest.mark.parametrize("alg", [1, 3])
def test_purchase_between_card_and_psam(alg: int) -> None:
    masters = {(a, "purchase"): bytes([a]) * 16 for a in (1, 3)}
    keys = MasterKeys("500100000042", masters)
    psam = build_psam(keys)
    psam.power_on()
    assert tx(psam, "00A4040006D1560000059000")[1] == 0x9000
    card = CardOS(t1_atr(b"TUNION"), "T=1")
    applet = add_tunion(card, keys, algorithm=alg, balance=1000, app_serial=SERIAL)
    card.power_on()
    tx(card, SELECT)
    answer, sw = tx(card, "805003020B01000000C8" + TERMINAL_NO.hex() + "0F")
    assert sw == 0x9000 and answer[10] == (0x04 if alg == 3 else 0x00)
    info = applet.public_info
    request = (
        (answer[11:15] + answer[4:6] + bytes.fromhex("000000C8") + b"\x09" + DATE + TIME)
        + bytes((answer[9], answer[10]))
        + info.serial_low8
        + info.issuer_id
    )
    result, sw = tx(psam, "8070000024" + request.hex() + "08")
    assert sw == 0x9000 and len(result) == 8
    serial, mac1 = result[:4], result[4:]
    # 0x1E in its real layout: type, terminal number (8), industry 01 (rail), ... (48 bytes)
    trip = b"\x09" + bytes(2) + TERMINAL_NO + b"\x01" + bytes(38)
    assert len(trip) == tunion.TRIP_RECORDS.length
    assert tx(card, "80DC00F030" + trip.hex())[1] == 0x9000
    tac_mac2, sw = tx(card, "805401000F" + (serial + DATE + TIME + mac1).hex() + "08")
    assert sw == 0x9000
    assert tx(psam, "8072000004" + tac_mac2[4:].hex()) == (b"", 0x9000)
    assert tx(psam, "8072000008" + serial.hex() + tac_mac2[4:].hex()) == (b"", 0x9000)
    assert tx(psam, "8072000004" + tac_mac2[4:].hex()) == (b"", 0x6985)  # checked once
    assert applet.balance == 800 and applet.counter == 1
    assert tx(card, "00B201F430") == (trip, 0x9000)
    dpk = crypto.purchase_key(alg, bytes([alg]) * 16, info.issuer_id, info.app_serial)
    tsn = int.from_bytes(serial, "big")
    expected_tac = crypto.tac(alg, dpk, 200, 0x09, TERMINAL_NO, tsn, DATE, TIME)
    assert tac_mac2[:4] == expected_tac
    assert tx(card, "805A000902000108") == (tac_mac2[4:] + tac_mac2[:4], 0x9000)


def test_profile_purchase_key_is_used() -> None:
    profile = load_sample("tunion-plain")
    assert profile.tunion is not None
    settings = dataclasses.replace(profile.tunion, purchase_key=KEY)
    card = build_card(dataclasses.replace(profile, tunion=settings))
    card.power_on()
    tx(card, SELECT)
    applet = next(a for a in card.applets if isinstance(a, TUnionApplet))
    assert debit(card, applet, 100)[1] == 0x9000
