"""Social security cards in the field's shapes (domain.md 5b), simulator only: a T=0 card
without the algorithm template or tag 4E, the real 3.0 card log replayed, card numbers
longer than 9 characters and an empty spec version."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.card_exchange import tx
from helpers.card_faults import answer_of
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.cardos import CardOS
from firmware_sim.keys import MasterKeys
from firmware_sim.profile import CardProfile, load_sample, sample_names
from firmware_sim.psam_applet import build_psam
from firmware_sim.spec.ssc import EF06, SSSE_NAME, Generation, record_order
from firmware_sim.ssc_applet import build_card, ssse_fci
from terminal.iso7816.apdu import CommandAPDU

REAL_3_0_FCI = bytes.fromhex("6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103")
SELECT = "00A404000F" + SSSE_NAME.hex()


def powered(profile: CardProfile, contactless: bool = False) -> CardOS:
    card = build_card(profile, contactless)
    card.power_on()
    return card


def with_issuer(profile: CardProfile, **changes: object) -> CardProfile:
    assert profile.issuer is not None
    return dataclasses.replace(profile, issuer=dataclasses.replace(profile.issuer, **changes))


def with_card(profile: CardProfile, **changes: object) -> CardProfile:
    return dataclasses.replace(profile, card=dataclasses.replace(profile.card, **changes))


def test_the_real_3_0_contact_log_replays() -> None:
    """gdgly/SI_3rdCard docs/加密机方式指令流.txt, commands as sent, on the Sichuan sample."""
    card = powered(load_sample("sichuan-3.0"))
    assert tx(card, SELECT) == (REAL_3_0_FCI, 0x9000)
    assert tx(card, "00A4020002EF05") == (b"", 0x9000)
    record, sw = tx(card, "00B2010012")
    assert sw == 0x9000 and record[:2] == b"\x01\x10" and record[2:5] == bytes.fromhex("510104")
    assert tx(card, "00B2030006") == (b"\x03\x043.00", 0x9000)
    assert tx(card, "00B207000B") == (b"\x07\x09B02000020", 0x9000)


def test_t0_card_without_algorithm_template() -> None:
    card = powered(load_sample("chongqing-2.0-t0"))
    fci = ssse_fci(1, template=False)
    assert fci == bytes.fromhex("6F16840F") + SSSE_NAME + bytes.fromhex("A50388011E")
    assert tx(card, SELECT) == (b"", 0x6100 | len(fci))
    assert tx(card, f"00C00000{len(fci):02X}") == (fci, 0x9000)
    assert tx(card, "00A4020002EF05") == (b"", 0x9000)
    assert tx(card, "00B2070000") == (b"", 0x6C0B)
    assert tx(card, "00B207000B") == (b"\x07\x09D04000045", 0x9000)


def test_t0_card_reads_only_by_number_or_current_ef_identifier() -> None:
    card = powered(load_sample("chongqing-2.0-t0"))
    tx(card, SELECT)
    assert tx(card, "00B2012D00") == (b"", 0x6A86)  # 'P1 to last'
    assert tx(card, "00B2072800") == (b"", 0x6A86)  # SFI 05 + identifier 07
    assert tx(card, "00B2072C0B") == (b"\x07\x09D04000045", 0x9000)  # SFI 05, record 7


def test_2_0_card_without_tag_4e() -> None:
    profile = load_sample("chongqing-2.0-t0")
    card = powered(profile)
    tx(card, SELECT)
    tx(card, "00A4020002EF06")
    assert tx(card, "00B24E0016") == (b"", 0x6A83)
    tags = []
    for number in range(1, 10):
        _, sw = tx(card, f"00B2{number:02X}0400")
        if sw == 0x6A83:
            break
        data, sw = tx(card, f"00B2{number:02X}04{sw & 0xFF:02X}")
        tags.append(data[0])
    assert tuple(tags) == tuple(t for t in record_order(Generation.V2, EF06) if t != 0x4E)


def test_card_number_value_longer_than_9_characters() -> None:
    profile = with_issuer(load_sample("chongqing-2.0"), card_number="A010000130")
    card = powered(profile, contactless=True)
    tx(card, SELECT)
    tx(card, "00A4020002EF05")
    assert tx(card, "00B207000B") == (b"", 0x6C0C)
    assert tx(card, "00B207000C") == (b"\x07\x0aA010000130", 0x9000)


def test_empty_spec_version_is_a_1_0_card() -> None:
    profile = with_card(load_sample("chongqing-1.0"), spec_version="")
    card = powered(profile, contactless=True)
    tx(card, SELECT)
    tx(card, "00A4020002EF05")
    assert tx(card, "00B2030006") == (b"\x03\x04" + bytes(4), 0x9000)
    tx(card, "00A4020002EF06")
    assert tx(card, "00B24E0016")[1] == 0x6A83  # 1.0 order: no 4E


def test_lenient_options_are_explicit() -> None:
    strict = powered(load_sample("chongqing-2.0"), contactless=True)
    assert tx(strict, "00A4040C0F" + SSSE_NAME.hex())[1] == 0x6A86
    lenient = powered(with_card(load_sample("chongqing-2.0"), select_p2_0c=True), True)
    assert tx(lenient, "00A4040C0F" + SSSE_NAME.hex()) == (b"", 0x9000)


@pytest.mark.parametrize(
    "sample", ["chongqing-2.0-t0", "zhejiang-2.0", "sichuan-3.0-transit", "tunion-plain"]
)
def test_new_samples_answer_every_command_with_a_status_word(sample: str) -> None:
    card = powered(load_sample(sample))
    for raw in (b"", b"\x00", bytes.fromhex("00A4040C"), bytes(300), bytes.fromhex("FFFFFFFF")):
        answer_of(card, raw)


_header = st.tuples(
    st.sampled_from([0x00, 0x80, 0x84, 0xBF, 0xFF, 0x0C]),
    st.sampled_from([0xA4, 0xB0, 0xB2, 0x84, 0xC0, 0x88, 0x82, 0x20, 0x5E, 0x50, 0x54, 0x5C]),
    st.integers(0, 255),
    st.integers(0, 255),
)
_command = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda h, data, le: CommandAPDU(*h, data=data, le=le).to_bytes(),
        _header,
        st.binary(max_size=24),
        st.none() | st.integers(1, 300),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sample_names()), st.booleans(), st.lists(_command, max_size=10))
def test_every_sample_answers_every_sequence_with_a_status_word(
    sample: str, contactless: bool, commands: list[bytes]
) -> None:
    card = powered(load_sample(sample), contactless)
    for raw in [bytes.fromhex(SELECT), *commands]:
        answer = answer_of(card, raw)
        assert answer[-2] in (
            0x90,
            0x61,
            0x62,
            0x63,
            0x67,
            0x69,
            0x6A,
            0x6B,
            0x6C,
            0x6D,
            0x6E,
            0x93,
            0x94,
        )


@settings(max_examples=100, deadline=None)
@given(st.lists(_command, max_size=10))
def test_the_psam_answers_every_sequence_with_a_status_word(commands: list[bytes]) -> None:
    psam = build_psam(
        MasterKeys("000000000001", {(1, "irk"): bytes(16), (3, "purchase"): bytes(16)})
    )
    psam.power_on()
    for raw in [bytes.fromhex("00A4040006D15600000590"), *commands]:
        answer_of(psam, raw)


def test_unknown_instruction_of_an_applications_class_is_6d00() -> None:
    card = powered(load_sample("sichuan-3.0-transit"), contactless=True)
    assert tx(card, "80EE000000")[1] == 0x6D00  # no application selected: the card knows 80
    assert tx(card, "805C000204")[1] == 0x6D00  # GET BALANCE before SELECT of the e-purse
    tx(card, SELECT)
    assert tx(card, "80EE000000")[1] == 0x6D00  # SSSE: class 80 is CHANGE PIN's
    assert tx(card, "00EE000000")[1] == 0x6D00
    assert tx(card, "00A4040008A000000632010105")[1] == 0x9000
    assert tx(card, "80EE000000")[1] == 0x6D00  # the e-purse's class
    assert tx(card, "84B2010C00")[1] == 0x6E00  # secure messaging class: not offered
