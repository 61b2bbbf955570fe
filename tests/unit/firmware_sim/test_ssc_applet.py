"""The SSSE application on the three sample cards, through CardOS.process(bytes) only."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from helpers.card_exchange import tx
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.cardos import CardOS, atr_checksum
from firmware_sim.profile import load_sample
from firmware_sim.spec.ssc import (
    BY_TAG,
    EF05,
    EF06,
    RKSSSE,
    SSSE_NAME,
    SUB_APPLICATIONS,
    Generation,
    record_order,
)
from firmware_sim.ssc_applet import build_card, encode_record, encode_value, ssse_fci
from terminal.errors import FieldError
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.status_words import SW, is_bytes_available, is_wrong_le

SAMPLES = ("chongqing-1.0", "chongqing-2.0", "sichuan-3.0")
FILES = {0xEF05: EF05, 0xEF06: EF06}


def file_tags(generation: Generation, fid: int) -> tuple[int, ...]:
    return record_order(generation, FILES[fid])


def file_length(generation: Generation, fid: int) -> int:
    """Bytes of every record of ``fid`` as ``tag len value``."""
    return sum(2 + BY_TAG[tag].length for tag in record_order(generation, FILES[fid]))


REAL_3_0_FCI = bytes.fromhex("6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103")


def card_for(sample: str, contactless: bool = False) -> CardOS:
    card = build_card(load_sample(sample), contactless)
    card.power_on()
    return card


def transmit(card: CardOS, cmd: CommandAPDU) -> tuple[bytes, int]:
    """What a terminal does: re-issue on 6Cxx, collect 61xx with GET RESPONSE."""
    data, sw = tx(card, cmd.to_bytes())
    if is_wrong_le(sw):
        data, sw = tx(card, cmd.with_le((sw & 0xFF) or 256).to_bytes())
    while is_bytes_available(sw):
        more, sw = tx(card, CommandAPDU(0x00, 0xC0, 0x00, 0x00, le=(sw & 0xFF) or 256).to_bytes())
        if is_wrong_le(sw):
            more, sw = tx(card, CommandAPDU(0x00, 0xC0, 0, 0, le=(sw & 0xFF) or 256).to_bytes())
        data += more
    return data, sw


def select_ssse(card: CardOS) -> bytes:
    fci, sw = transmit(card, CommandAPDU(0x00, 0xA4, 0x04, 0x00, SSSE_NAME, le=256))
    assert sw == SW.OK
    return fci


def read_tag(card: CardOS, sfi: int, tag: int) -> tuple[bytes, int]:
    """READ RECORD by record identifier via SFI: ``00 B2 <tag> <SFI<<3> 00``."""
    return transmit(card, CommandAPDU(0x00, 0xB2, tag, sfi << 3, le=256))


def value_of(record: bytes) -> bytes:
    assert record[1] == len(record) - 2
    return record[2:]


# --- ATR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", ["chongqing-1.0", "chongqing-2.0"])
def test_t0_contact_atr_layout(sample: str) -> None:
    profile = load_sample(sample)
    atr = build_card(profile).power_on()
    assert atr[:4] == bytes.fromhex("3B6D0000") and len(atr) == 17
    historical = atr[4:]
    assert historical[:2] == bytes.fromhex("0081")  # T1-T2 chip vendor
    assert historical[7:9] == bytes.fromhex(profile.issuer.card_id[:4])  # T8-T9 region
    assert historical[7:9].hex() == "5001"
    assert historical[9:] == profile.issuer.serial  # TA-TD


def test_t1_contact_atr_of_the_3_0_sample() -> None:
    profile = load_sample("sichuan-3.0")
    card = build_card(profile)
    atr = card.power_on()
    assert card.protocol == "T=1"
    assert atr.hex().upper() == "3BED00008131FE4500814A44468660510120000002BB"
    assert atr[8:-1] == profile.card.historical
    assert atr[8 + 7 : 8 + 9].hex() == "5101"
    assert atr_checksum(atr) == 0


@pytest.mark.parametrize("sample", SAMPLES)
def test_contactless_pseudo_atr(sample: str) -> None:
    profile = load_sample(sample)
    card = build_card(profile, contactless=True)
    atr = card.power_on()
    assert card.protocol == "T=1"
    assert atr[:4] == bytes.fromhex("3B8D8001")
    assert atr[4:-1] == profile.card.historical
    assert atr[-1] == atr_checksum(atr[:-1])


@pytest.mark.parametrize(("sample", "contactless"), [(s, c) for s in SAMPLES for c in (0, 1)])
def test_atrs_parse_with_pyscard(sample: str, contactless: int) -> None:
    atr_module = pytest.importorskip("smartcard.ATR")
    card = build_card(load_sample(sample), bool(contactless))
    atr = atr_module.ATR(list(card.power_on()))
    assert atr.getHistoricalBytes() == list(load_sample(sample).card.historical)
    if card.protocol == "T=1":
        assert atr.isT1Supported()
        assert atr.checksumOK
    else:
        assert atr.isT0Supported() and not atr.isT1Supported()


def test_exact_atrs_of_the_samples() -> None:
    atrs = {
        (s, c): build_card(load_sample(s), c).power_on().hex().upper()
        for s in SAMPLES
        for c in (False, True)
    }
    assert atrs == {
        ("chongqing-1.0", False): "3B6D000000814A44468660500130000003",
        ("chongqing-1.0", True): "3B8D800100814A4446866050013000000341",
        ("chongqing-2.0", False): "3B6D000000814A44468660500110000001",
        ("chongqing-2.0", True): "3B8D800100814A4446866050011000000163",
        ("sichuan-3.0", False): "3BED00008131FE4500814A44468660510120000002BB",
        ("sichuan-3.0", True): "3B8D800100814A4446866051012000000251",
    }


# --- SSSE selection -------------------------------------------------------------------------


def test_fci_matches_the_real_3_0_card() -> None:
    assert ssse_fci(3) == REAL_3_0_FCI
    assert select_ssse(card_for("sichuan-3.0")) == REAL_3_0_FCI


@pytest.mark.parametrize(("sample", "algorithm"), [("chongqing-1.0", 1), ("chongqing-2.0", 1)])
def test_fci_carries_the_algorithm_flag(sample: str, algorithm: int) -> None:
    fci = select_ssse(card_for(sample))
    assert fci[:-1] == REAL_3_0_FCI[:-1] and fci[-1] == algorithm


def test_select_ssse_on_t0_card_answers_61xx() -> None:
    card = card_for("chongqing-2.0")
    assert tx(card, "00A404000F" + SSSE_NAME.hex() + "00") == (b"", 0x611E)
    assert tx(card, "00C000001E") == (ssse_fci(1), SW.OK)


def test_select_ssse_on_t1_card_case3_answers_fci_directly() -> None:
    card = card_for("sichuan-3.0")
    assert tx(card, "00A404000F" + SSSE_NAME.hex()) == (REAL_3_0_FCI, SW.OK)


def test_select_ef05_needs_ssse_selected_first() -> None:
    card = card_for("chongqing-2.0")
    assert tx(card, "00A4020002EF05")[1] == SW.FILE_NOT_FOUND
    select_ssse(card)
    assert tx(card, "00A4020002EF05")[1] == SW.OK


@pytest.mark.parametrize(("fid", "aid"), SUB_APPLICATIONS.items())
def test_sub_applications_select_by_aid_and_fid(fid: int, aid: bytes) -> None:
    card = card_for("chongqing-2.0")
    fci, sw = transmit(card, CommandAPDU(0x00, 0xA4, 0x04, 0x00, aid, le=256))
    assert sw == SW.OK and fci == bytes.fromhex("6F0884") + b"\x06" + aid
    assert card.current_df.fid == fid
    tx(card, "00A40300")  # parent: the SSSE (its FCI: 6C1E on this exact T=0 card)
    assert card.current_df.name == SSSE_NAME
    tx(card, f"00A4000002{fid:04X}")  # child by FID
    assert card.current_df.fid == fid


# --- EF05 / EF06 contents -------------------------------------------------------------------


def test_ef05_items_of_the_2_0_sample() -> None:
    card = card_for("chongqing-2.0")
    select_ssse(card)
    records = {tag: read_tag(card, 5, tag) for tag in file_tags(Generation.V2, 0xEF05)}
    assert all(sw == SW.OK for _, sw in records.values())
    values = {tag: value_of(record) for tag, (record, _) in records.items()}
    assert values[0x01] == bytes.fromhex("500103D15600000510000001FFFFFFFF")
    assert values[0x02] == b"3"
    assert values[0x03] == b"2.00"
    assert values[0x04] == bytes.fromhex("915600000250010050010001")
    assert values[0x05] == bytes.fromhex("20190601")
    assert values[0x06] == bytes.fromhex("20290601")
    assert values[0x07] == b"A01000013"


def test_ef06_items_of_the_2_0_sample_are_free_to_read() -> None:
    card = card_for("chongqing-2.0")
    select_ssse(card)
    values = {tag: value_of(read_tag(card, 6, tag)[0]) for tag in file_tags(Generation.V2, 0xEF06)}
    assert values[0x08] == b"500103198506150014"
    assert values[0x09] == "张测试".encode("gbk").ljust(30, b"\x00")
    assert values[0x4E] == bytes(20)
    assert values[0x0A] == b"1"
    assert values[0x0B] == b"\x01"
    assert values[0x0C] == bytes.fromhex("500103")
    assert values[0x0D] == bytes.fromhex("19850615")


@pytest.mark.parametrize("sample", SAMPLES)
def test_record_numbers_follow_the_generation_order(sample: str) -> None:
    profile = load_sample(sample)
    card = card_for(sample)
    card.grant(RKSSSE)
    select_ssse(card)
    for sfi, fid in ((5, 0xEF05), (6, 0xEF06)):
        tags = []
        for number in range(1, 20):
            record, sw = transmit(card, CommandAPDU(0x00, 0xB2, number, sfi << 3 | 4, le=256))
            if sw == SW.RECORD_NOT_FOUND:
                break
            assert sw == SW.OK
            tags.append(record[0])
        assert tuple(tags) == file_tags(profile.generation, fid)


def test_1_0_card_has_no_name_extension() -> None:
    card = card_for("chongqing-1.0")
    select_ssse(card)
    assert 0x4E not in file_tags(Generation.V1, 0xEF06)
    assert read_tag(card, 6, 0x4E) == (b"", SW.RECORD_NOT_FOUND)
    assert read_tag(card, 6, 0x0A)[0] == b"\x0a\x011"
    record, sw = transmit(card, CommandAPDU(0x00, 0xB2, 3, 6 << 3 | 4, le=256))
    assert sw == SW.OK and record[0] == 0x0A  # record 3 is the sex on 1.0, 4E on 2.0


def test_1_0_card_refuses_multi_record_reads() -> None:
    card = card_for("chongqing-1.0")
    select_ssse(card)
    assert tx(card, "00B2012D00") == (b"", SW.WRONG_P1P2)


@pytest.mark.parametrize("sample", ["chongqing-2.0", "sichuan-3.0"])
def test_multi_record_read_returns_the_whole_file(sample: str) -> None:
    profile = load_sample(sample)
    card = card_for(sample)
    card.grant(RKSSSE)
    select_ssse(card)
    for sfi, fid in ((5, 0xEF05), (6, 0xEF06)):
        length = file_length(profile.generation, fid)
        assert tx(card, f"00B201{sfi << 3 | 5:02X}00") == (b"", 0x6C00 | length)
        data, sw = tx(card, f"00B201{sfi << 3 | 5:02X}{length:02X}")
        assert sw == SW.OK and len(data) == length
        assert data[0] == (0x01 if fid == 0xEF05 else 0x08)


def test_exact_le_on_read_by_tag() -> None:
    card = card_for("chongqing-2.0")
    select_ssse(card)
    tx(card, "00A4020002EF05")
    assert tx(card, "00B2070000") == (b"", 0x6C0B)  # tag 07: 2 + 9 bytes
    assert tx(card, "00B207000A") == (b"", 0x6C0B)
    assert tx(card, "00B207000B") == (b"\x07\x09A01000013", SW.OK)


# --- 3.0: EF06 behind RKSSSE ----------------------------------------------------------------


def test_3_0_ef06_needs_rksse_until_granted() -> None:
    card = card_for("sichuan-3.0")
    select_ssse(card)
    assert tx(card, "00B2083000")[1] == SW.SECURITY_NOT_SATISFIED
    assert tx(card, "00B0870010")[1] == SW.SECURITY_NOT_SATISFIED  # EF07 fingerprint
    assert tx(card, "00B0880010")[1] == SW.SECURITY_NOT_SATISFIED  # EF08 photo
    assert read_tag(card, 5, 0x03) == (b"\x03\x043.00", SW.OK)  # EF05 stays free
    card.grant(RKSSSE)
    assert read_tag(card, 6, 0x08) == (b"\x08\x12510104195003080020", SW.OK)
    assert tx(card, "00B0880002") == (b"\xff\xd8", SW.OK)
    card.power_on()
    select_ssse(card)
    assert tx(card, "00B2083000")[1] == SW.SECURITY_NOT_SATISFIED  # rights die at reset


def test_3_0_long_name_continues_in_tag_4e() -> None:
    card = card_for("sichuan-3.0")
    card.grant(RKSSSE)
    select_ssse(card)
    name = value_of(read_tag(card, 6, 0x09)[0])
    ext = value_of(read_tag(card, 6, 0x4E)[0])
    assert len(name) == 30 and len(ext) == 20
    assert ext != bytes(20)
    full = (name + ext).rstrip(b"\x00").decode("gbk")
    assert full == load_sample("sichuan-3.0").holder.name


@pytest.mark.parametrize("sample", SAMPLES)
def test_biometric_efs_need_the_read_key_on_every_generation(sample: str) -> None:
    """domain.md 2: EF07 fingerprint and EF08 photo are "transparent, read key"."""
    card = card_for(sample)
    select_ssse(card)
    assert tx(card, "00B0870004")[1] == SW.SECURITY_NOT_SATISFIED  # EF07 by SFI
    tx(card, "00A4020002EF08")
    assert tx(card, "00B0000002")[1] == SW.SECURITY_NOT_SATISFIED  # EF08 selected
    card.grant(RKSSSE)
    assert tx(card, "00B0870004") == (bytes(4), SW.OK)
    assert tx(card, "00B0880002") == (b"\xff\xd8", SW.OK)


def test_ef06_stays_free_on_older_cards() -> None:
    card = card_for("chongqing-2.0")
    select_ssse(card)
    assert read_tag(card, 6, 0x0A) == (b"\x0a\x011", SW.OK)


# --- a blocked card -------------------------------------------------------------------------


def blocked_card(**options: object) -> CardOS:
    profile = load_sample("sichuan-3.0-transit")
    card_settings = dataclasses.replace(profile.card, blocked=True, **options)
    card = build_card(dataclasses.replace(profile, card=card_settings), contactless=True)
    card.power_on()
    return card


@pytest.mark.parametrize(
    "select",
    [
        "00A404000F" + SSSE_NAME.hex(),  # by DF name
        "00A4000002DDF1",  # by FID from the MF
        "00A4010002DDF1",  # as a child DF
        "00A4040006D15600000500",  # a sub-application inside it, by AID
    ],
)
def test_a_blocked_ssse_cannot_be_selected_however_it_is_named(select: str) -> None:
    card = blocked_card()
    assert tx(card, select) == (b"", 0x9303)
    assert card.current_df is card.mf
    # Nothing is stuck: the MF and the e-purse still select and answer.
    assert tx(card, "00A40000023F00")[1] == SW.OK
    assert tx(card, "00A4040008A000000632010105")[1] == SW.OK
    assert tx(card, "805C000204") == ((2000).to_bytes(4, "big"), SW.OK)


def test_a_blocked_ssse_by_a_shortened_name_on_a_card_that_takes_one() -> None:
    card = blocked_card(partial_df_name=True)
    assert tx(card, "00A40400077378312E73682E") == (b"", 0x9303)  # "sx1.sh."
    assert tx(card, "00A40000023F00")[1] == SW.OK
    assert tx(card, "00A4040008A000000632010105")[1] == SW.OK


# --- contactless ----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES)
def test_uid_only_on_contactless(sample: str) -> None:
    profile = load_sample(sample)
    assert tx(card_for(sample, contactless=True), "FFCA000000") == (profile.card.uid, SW.OK)
    assert tx(card_for(sample), "FFCA000000") == (b"", SW.CLA_NOT_SUPPORTED)


def test_contactless_card_reads_the_same_data() -> None:
    card = card_for("chongqing-2.0", contactless=True)
    assert select_ssse(card) == ssse_fci(1)
    assert read_tag(card, 5, 0x07) == (b"\x07\x09A01000013", SW.OK)


# --- value encoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "value", "encoded"),
    [
        (0x01, "500103D15600000510000001", bytes.fromhex("500103D15600000510000001FFFFFFFF")),
        (0x02, "3", b"3"),
        (0x03, "1.00", b"1.00"),
        (0x05, dt.date(2021, 3, 1), bytes.fromhex("20210301")),
        (0x09, "张测试", "张测试".encode("gbk") + bytes(24)),
        (0x09, "张测试".encode("gbk"), "张测试".encode("gbk") + bytes(24)),
        (0x0B, "1", bytes.fromhex("1F")),
        (0x0C, "5001", bytes.fromhex("5001FF")),
    ],
)
def test_encode_value_pads_per_format(tag: int, value: object, encoded: bytes) -> None:
    assert encode_value(BY_TAG[tag], value) == encoded  # type: ignore[arg-type]


def test_encode_record_is_simple_tlv() -> None:
    assert encode_record(BY_TAG[0x0A], "2") == b"\x0a\x012"


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (0x01, "G" * 32),  # not hex
        (0x0B, "123"),  # too long for 1 BCD byte
        (0x0C, "50A1"),  # cn is digits only
        (0x07, "A010000134"),  # 10 > 9 bytes
        (0x08, "测试"),  # an is ASCII
        (0x09, "😀"),  # no GBK encoding
        (0x05, "20210301"),  # a date is a date
        (0x02, dt.date(2021, 3, 1)),
    ],
)
def test_encode_value_rejects_bad_values(tag: int, value: object) -> None:
    with pytest.raises(FieldError):
        encode_value(BY_TAG[tag], value)  # type: ignore[arg-type]


# --- robustness -----------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), st.booleans(), st.lists(st.binary(max_size=40), max_size=8))
def test_random_bytes_never_raise_on_a_personalised_card(
    sample: str, contactless: bool, commands: list[bytes]
) -> None:
    card = card_for(sample, contactless)
    select_ssse(card)
    for raw in commands:
        answer = card.process(raw)
        assert isinstance(answer, bytes) and len(answer) >= 2
