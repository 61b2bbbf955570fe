"""Decoders of SSC data elements (terminal.ssc.fields)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import FieldError, ParseError
from terminal.ssc import layout
from terminal.ssc.fields import (
    CardCategory,
    decode_an,
    decode_bcd_date,
    decode_cn,
    decode_gbk,
    decode_hex,
    decode_item,
    item_label,
    region_of_card_id,
)

REAL_CARD_ID = bytes.fromhex("519900D15600000510000B26FFFFFFFF")


def _bcd(digits: str, length: int) -> bytes:
    """``digits`` as cn: BCD, right-padded with F nibbles to ``length`` bytes."""
    return bytes.fromhex(digits.ljust(2 * length, "F"))


# --- cn -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("510100", "510100"),  # birthplace, 3 bytes, no padding
        ("01", "01"),  # ethnicity
        ("123F", "123"),  # odd number of digits
        ("12FF", "12"),
        ("FFFF", ""),  # all padding
        ("", ""),
        ("0000", "0000"),
    ],
)
def test_decode_cn(raw: str, digits: str) -> None:
    assert decode_cn(bytes.fromhex(raw)) == digits


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("1F2F", "padding nibble F before a digit at nibble 1"),
        ("F1", "padding nibble F before a digit at nibble 0"),
        ("1A", "nibble A at nibble 1"),
        ("E0FF", "nibble E at nibble 0"),
        ("12CF", "nibble C at nibble 2"),
    ],
)
def test_decode_cn_rejects(raw: str, match: str) -> None:
    with pytest.raises(FieldError, match=match):
        decode_cn(bytes.fromhex(raw))


@given(st.text("0123456789", max_size=12), st.integers(0, 3))
def test_decode_cn_round_trip(digits: str, extra: int) -> None:
    length = (len(digits) + 1) // 2 + extra
    assert decode_cn(_bcd(digits, length)) == digits


# --- hex ----------------------------------------------------------------------------------


def test_decode_hex_keeps_everything() -> None:
    assert decode_hex(REAL_CARD_ID) == "519900D15600000510000B26FFFFFFFF"
    assert decode_hex(b"") == ""
    assert decode_hex(b"\x0a\xbc") == "0ABC"


# --- an -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"3.00", "3.00"),
        (b"D2143569X", "D2143569X"),
        (b"1", "1"),
        (b"3.0\x00", "3.0"),
        (b"510100199001011234", "510100199001011234"),
        (b"\x00\x00", ""),
        (b"", ""),
        (b"A B", "A B"),
    ],
)
def test_decode_an(raw: bytes, text: str) -> None:
    assert decode_an(raw) == text


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"a\x00b", "byte 00 at offset 1"),
        (b"\x01", "byte 01 at offset 0"),
        (b"ab\x80", "byte 80 at offset 2"),
        (b"\xff\xff", "byte FF at offset 0"),
        (b"a\x7f", "byte 7F at offset 1"),
    ],
)
def test_decode_an_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(FieldError, match=match):
        decode_an(raw)


# --- GBK ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("张三".encode("gbk") + bytes(26), "张三"),
        ("欧阳娜娜".encode("gbk") + b"  ", "欧阳娜娜"),
        ("李 四".encode("gbk") + b" \x00 \x00", "李 四"),
        ("Zhang San".encode("gbk"), "Zhang San"),
        (bytes(30), ""),
        (b"", ""),
        ("王𬱖".encode("gb18030"), "王𬱖"),  # a GB 18030 four-byte character
    ],
)
def test_decode_gbk(raw: bytes, text: str) -> None:
    assert decode_gbk(raw) == text


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x81", "undecodable byte at offset 0"),
        ("张".encode("gbk") + b"\xff\xff", "undecodable byte at offset 2"),
        ("张".encode("gbk") + b"\x00" + "三".encode("gbk"), "control character 00"),
        (b"\x1b[31m", "control character 1B"),
    ],
)
def test_decode_gbk_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(FieldError, match=match):
        decode_gbk(raw)


_gbk_names = st.text(
    st.characters(codec="gbk", min_codepoint=0x21, exclude_characters="\x7f"), max_size=10
)


@given(_gbk_names)
def test_decode_gbk_round_trip(name: str) -> None:
    raw = name.encode("gbk")
    assert decode_gbk(raw.ljust(30, b"\x00")) == name.rstrip(" ")


# --- BCD dates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "date"),
    [
        ("20200131", datetime.date(2020, 1, 31)),
        ("19900101", datetime.date(1990, 1, 1)),
        ("20240229", datetime.date(2024, 2, 29)),
        ("00000000", None),
        ("FFFFFFFF", None),
    ],
)
def test_decode_bcd_date(raw: str, date: datetime.date | None) -> None:
    assert decode_bcd_date(bytes.fromhex(raw)) == date


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("20230229", "BCD date: no such date"),
        ("20231301", "no such date"),
        ("20230100", "no such date"),
        ("00000101", "no such date"),
        ("2023A101", "BCD date: not 8 BCD digits"),
        ("2023FFFF", "not 8 BCD digits"),
        ("202301", "expected 4 bytes, got 3"),
        ("2023010100", "expected 4 bytes, got 5"),
        ("", "expected 4 bytes, got 0"),
    ],
)
def test_decode_bcd_date_rejects(raw: str, match: str) -> None:
    with pytest.raises(FieldError, match=match):
        decode_bcd_date(bytes.fromhex(raw))


@given(st.dates(min_value=datetime.date(1, 1, 1)))
def test_decode_bcd_date_round_trip(date: datetime.date) -> None:
    raw = bytes.fromhex(f"{date.year:04d}{date.month:02d}{date.day:02d}")
    assert decode_bcd_date(raw) == date


# --- decode_item --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "raw", "value"),
    [
        (0x01, REAL_CARD_ID, "519900D15600000510000B26FFFFFFFF"),
        (0x02, b"3", "3"),
        (0x03, b"3.00", "3.00"),
        (0x04, bytes.fromhex("915600000251990051990001"), "915600000251990051990001"),
        (0x05, bytes.fromhex("20200131"), datetime.date(2020, 1, 31)),
        (0x06, bytes.fromhex("FFFFFFFF"), None),
        (0x07, b"D2143569X", "D2143569X"),
        (0x08, b"510100199001011234", "510100199001011234"),
        (0x09, "张三".encode("gbk").ljust(30, b"\x00"), "张三"),
        (0x4E, "丰".encode("gbk"), "丰"),
        (0x0A, b"1", "1"),
        (0x0B, b"\x01", "01"),
        (0x0C, bytes.fromhex("510100"), "510100"),
        (0x0D, bytes.fromhex("19900101"), datetime.date(1990, 1, 1)),
    ],
)
def test_decode_item_dispatches_on_format(
    tag: int, raw: bytes, value: str | datetime.date | None
) -> None:
    assert decode_item(layout.BY_TAG[tag], raw) == value


def test_decode_item_accepts_shorter_values() -> None:
    assert decode_item(layout.BY_TAG[0x09], "张三".encode("gbk")) == "张三"
    assert decode_item(layout.BY_TAG[0x03], b"3.0") == "3.0"
    assert decode_item(layout.BY_TAG[0x0C], b"\x51") == "51"


def test_decode_item_rejects_longer_values() -> None:
    with pytest.raises(FieldError, match=r"^EF05 tag 03 \(spec_version\): value of 5 bytes"):
        decode_item(layout.BY_TAG[0x03], b"3.000")


def test_decode_item_takes_the_first_9_characters_of_the_card_number() -> None:
    assert decode_item(layout.BY_TAG[0x07], b"D2143569X0") == "D2143569X"


def test_decode_item_names_the_tag_on_bad_values() -> None:
    with pytest.raises(FieldError, match=r"^EF05 tag 05 \(issue_date\): BCD date: no such date"):
        decode_item(layout.BY_TAG[0x05], bytes.fromhex("20230229"))
    with pytest.raises(FieldError, match=r"^EF06 tag 0B \(ethnicity\): cn value"):
        decode_item(layout.BY_TAG[0x0B], b"\xab")
    with pytest.raises(FieldError, match=r"^EF05 tag 06 \(expiry_date\): BCD date"):
        decode_item(layout.BY_TAG[0x06], bytes.fromhex("202301"))


def test_item_label() -> None:
    assert item_label(layout.BY_TAG[0x4E]) == "EF06 tag 4E (name_ext)"


@given(st.sampled_from(layout.ITEMS), st.binary(max_size=40))
def test_decode_item_random_bytes_raise_only_field_errors(item: layout.Item, raw: bytes) -> None:
    try:
        decode_item(item, raw)
    except ParseError as exc:
        assert isinstance(exc, FieldError)
        assert exc.reason.startswith(item_label(item))


@given(st.binary(max_size=40))
def test_decoders_random_bytes_raise_only_field_errors(raw: bytes) -> None:
    for decoder in (decode_cn, decode_hex, decode_an, decode_gbk, decode_bcd_date):
        try:
            decoder(raw)
        except ParseError as exc:
            assert isinstance(exc, FieldError)


# --- region and category ------------------------------------------------------------------


def test_region_of_real_card_id() -> None:
    assert region_of_card_id(decode_hex(REAL_CARD_ID)) == "519900"
    assert region_of_card_id("500101") == "500101"


@pytest.mark.parametrize("card_id", ["", "5199", "D15600000510", "51990A", "٥١٩٩٠٠D156"])
def test_region_of_card_id_rejects(card_id: str) -> None:
    with pytest.raises(FieldError, match="6 digits"):
        region_of_card_id(card_id)


def test_card_category() -> None:
    assert CardCategory.from_code("1") is CardCategory.PRE_SCHOOL
    assert CardCategory.from_code("2") is CardCategory.STUDENT
    assert CardCategory.from_code("3") is CardCategory.ADULT
    assert CardCategory.from_code("4") is CardCategory.ELDERLY
    for code in ("", "0", "5", "A", "3 ", "33"):
        assert CardCategory.from_code(code) is None


@pytest.mark.parametrize(
    ("item", "raw"),
    [
        (0x08, b"51010019900101123\x01"),  # social security number
        (0x09, b"\x81\x30\x81"),  # name bytes that do not decode
        (0x0D, bytes.fromhex("19901301")),  # birth date
        (0x0C, bytes.fromhex("5101AF")),  # birthplace
    ],
)
def test_a_bad_value_is_never_quoted_in_the_reason(item: int, raw: bytes) -> None:
    """Reasons end up in logs: they say where and what, never the holder's data."""
    with pytest.raises(FieldError) as info:
        decode_item(layout.BY_TAG[item], raw)
    reason = info.value.reason
    assert raw.hex().upper() not in reason.upper() and raw.hex() not in reason
    assert "5101" not in reason and "1990" not in reason
