"""EF05 issuer data and EF06 holder data (terminal.ssc.records)."""

from __future__ import annotations

import datetime
import re

import pytest
from helpers.mutations import mutate
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import FieldError, ParseError, TlvError
from terminal.iso7816.tlv import encode_simple_tlv
from terminal.ssc import layout
from terminal.ssc.fields import CardCategory
from terminal.ssc.records import (
    HolderData,
    IssuerData,
    decode_holder_data,
    decode_issuer_data,
    parse_holder_file,
    parse_issuer_file,
)

REAL_CARD_ID = bytes.fromhex("519900D15600000510000B26FFFFFFFF")
INSTITUTION = bytes.fromhex("915600000251990051990001")

EF05 = {
    0x01: REAL_CARD_ID,
    0x02: b"3",
    0x03: b"3.00",
    0x04: INSTITUTION,
    0x05: bytes.fromhex("20200131"),
    0x06: bytes.fromhex("20300131"),
    0x07: b"D2143569X",
}
EF06 = {
    0x08: b"510100199001011234",
    0x09: "欧阳".encode("gbk").ljust(30, b"\x00"),
    0x4E: "娜娜".encode("gbk").ljust(20, b"\x00"),
    0x0A: b"2",
    0x0B: b"\x01",
    0x0C: bytes.fromhex("510100"),
    0x0D: bytes.fromhex("19900101"),
}


def _file(generation: layout.Generation, fid: int, values: dict[int, bytes]) -> bytes:
    """A 'read all records' answer: the records of ``fid`` in card order, values padded."""
    out = b""
    for tag in layout.file_tags(generation, fid):
        item = layout.BY_TAG[tag]
        out += encode_simple_tlv(tag, values[tag].ljust(item.length, b"\x00"))
    return out


def test_issuer_data_of_a_3_0_card() -> None:
    data = decode_issuer_data(EF05)
    assert data == IssuerData(
        card_id="519900D15600000510000B26FFFFFFFF",
        region="519900",
        category="3",
        spec_version="3.00",
        institution="915600000251990051990001",
        issue_date=datetime.date(2020, 1, 31),
        expiry_date=datetime.date(2030, 1, 31),
        card_number="D2143569X",
        card_number_valid=True,
    )
    assert data.generation is layout.Generation.V3
    assert data.card_category is CardCategory.ADULT


def test_issuer_data_all_missing() -> None:
    data = decode_issuer_data({})
    assert data == IssuerData(None, None, None, None, None, None, None, None, False)
    # No spec version at all reads as a 1.0 card (Sichuan spec: empty version = 1.0).
    assert data.generation is layout.Generation.V1
    assert data.card_category is None


@pytest.mark.parametrize(
    ("version", "generation"),
    [
        (b"1.00", layout.Generation.V1),
        (b"2.01", layout.Generation.V2),
        (b"3.00", layout.Generation.V3),
        (b"", layout.Generation.V1),  # empty means 1.0, not 2.0
        (b"\x00\x00\x00\x00", layout.Generation.V1),
        (b"9.00", layout.Generation.V3),  # a later version reads with the newest layout
        (b"x.00", None),
    ],
)
def test_issuer_data_generation(version: bytes, generation: layout.Generation | None) -> None:
    assert decode_issuer_data({0x03: version}).generation is generation


def test_issuer_data_bad_check_character() -> None:
    data = decode_issuer_data({0x07: b"D21435690"})
    assert data.card_number == "D21435690"
    assert not data.card_number_valid


def test_issuer_data_absent_dates_and_padded_values() -> None:
    data = decode_issuer_data(
        {0x03: b"2.0\x00", 0x05: b"\x00" * 4, 0x06: b"\xff" * 4, 0x07: b"\x00" * 9}
    )
    assert data.spec_version == "2.0"
    assert data.issue_date is None and data.expiry_date is None
    assert data.card_number is None and not data.card_number_valid


def test_issuer_data_ignores_other_file_and_unknown_tags() -> None:
    data = decode_issuer_data({**EF06, 0x55: b"\xff\xff", 0x03: b"3.00"})
    assert data == IssuerData(spec_version="3.00")


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({0x07: b"D214\x01569X"}, r"^EF05 tag 07 \(card_number\): "),
        ({0x01: bytes.fromhex("D15600000510000B")}, r"^EF05 tag 01 \(card_id\): .*6 digits"),
    ],
)
def test_issuer_data_bad_identity_names_the_tag(values: dict[int, bytes], match: str) -> None:
    """The items a card is identified by fail the read, naming the file and tag."""
    with pytest.raises(FieldError, match=match):
        decode_issuer_data(values)


@pytest.mark.parametrize(
    ("values", "odd"),
    [
        ({0x05: bytes.fromhex("20230229")}, r"^EF05 tag 05 \(issue_date\): "),
        ({0x06: bytes.fromhex("2023")}, r"^EF05 tag 06 \(expiry_date\): "),
        ({0x02: b"\x81"}, r"^EF05 tag 02 \(category\): "),
        ({0x04: b"\x00" * 13}, r"^EF05 tag 04 \(institution\): value of 13 bytes"),
    ],
)
def test_issuer_data_odd_optional_value_is_left_out(values: dict[int, bytes], odd: str) -> None:
    """One odd optional field never fails the read: it is left out and named."""
    data = decode_issuer_data({**EF05, **values})
    assert data.card_number == "D2143569X" and data.card_id is not None
    assert len(data.odd) == 1 and re.match(odd, data.odd[0])
    tag = next(iter(values))
    assert getattr(data, layout.BY_TAG[tag].name) is None


def test_issuer_data_card_number_is_its_first_9_characters() -> None:
    """Sichuan spec 10.4: a longer tag 07 value is not an error."""
    data = decode_issuer_data({0x07: b"D2143569X0\x00"})
    assert data.card_number == "D2143569X" and data.card_number_valid
    assert data.odd == ()


def test_holder_data_with_name_extension() -> None:
    data = decode_holder_data(EF06)
    assert data == HolderData(
        ssn="510100199001011234",
        name="欧阳娜娜",
        sex="2",
        ethnicity="01",
        birthplace="510100",
        birth_date=datetime.date(1990, 1, 1),
    )


def test_holder_data_name_without_extension() -> None:
    values = {k: v for k, v in EF06.items() if k != 0x4E}
    assert decode_holder_data(values).name == "欧阳"
    assert decode_holder_data({**values, 0x4E: bytes(20)}).name == "欧阳"


def test_holder_data_all_missing() -> None:
    assert decode_holder_data({}) == HolderData(None, None, None, None, None, None)


def test_holder_data_ignores_other_file_and_unknown_tags() -> None:
    assert decode_holder_data({**EF05, 0x99: b"?"}) == HolderData()


@pytest.mark.parametrize(
    ("values", "odd"),
    [
        ({0x0D: bytes.fromhex("19901301")}, r"^EF06 tag 0D \(birth_date\): "),
        ({0x09: b"\x81"}, r"^EF06 tag 09 \(name\): "),
        ({0x4E: b"\x00" * 21}, r"^EF06 tag 4E \(name_ext\): value of 21 bytes exceeds 20"),
        ({0x0C: bytes.fromhex("5101AF")}, r"^EF06 tag 0C \(birthplace\): "),
        ({0x08: b"51010019900101123\x01"}, r"^EF06 tag 08 \(ssn\): "),
    ],
)
def test_holder_data_odd_values_are_left_out_and_named(values: dict[int, bytes], odd: str) -> None:
    data = decode_holder_data({**EF06, **values})
    assert len(data.odd) == 1 and re.match(odd, data.odd[0])
    assert data.sex is not None  # the rest is there


def test_repr_masks_personal_data() -> None:
    text = repr(decode_holder_data(EF06))
    assert "510100199001011234" not in text
    assert "5101**********1234" in text
    assert "欧阳" not in text and "1990" not in text
    issuer = repr(decode_issuer_data(EF05))
    assert "D2143569X" not in issuer and "10000B26" not in issuer
    assert "519900" in issuer


@pytest.mark.parametrize("generation", list(layout.Generation))
def test_parse_files_read_all_records(generation: layout.Generation) -> None:
    ef05 = _file(generation, layout.EF05_FID, EF05)
    ef06 = _file(generation, layout.EF06_FID, EF06)
    assert len(ef05) == layout.file_length(generation, layout.EF05_FID)
    assert len(ef06) == layout.file_length(generation, layout.EF06_FID)
    assert parse_issuer_file(ef05) == decode_issuer_data(EF05)
    holder = parse_holder_file(ef06)
    expected_name = "欧阳" if generation is layout.Generation.V1 else "欧阳娜娜"
    assert holder.name == expected_name


def test_parse_files_reject_broken_tlv() -> None:
    ef05 = _file(layout.Generation.V3, layout.EF05_FID, EF05)
    with pytest.raises(TlvError):
        parse_issuer_file(ef05[:-1])
    with pytest.raises(TlvError, match="tag 01"):
        parse_issuer_file(ef05 + encode_simple_tlv(0x01, REAL_CARD_ID))


# --- robustness ---------------------------------------------------------------------------

_tags = st.sampled_from([item.tag for item in layout.ITEMS] + [0x00, 0x55, 0xFE])


@given(st.dictionaries(_tags, st.binary(max_size=34), max_size=16))
def test_random_values_raise_only_field_errors(values: dict[int, bytes]) -> None:
    for decode in (decode_issuer_data, decode_holder_data):
        try:
            decode(values)
        except ParseError as exc:
            assert isinstance(exc, FieldError)
            assert exc.reason.startswith(("EF05 tag ", "EF06 tag "))


@st.composite
def _mutated_value(draw: st.DrawFn) -> dict[int, bytes]:
    values = dict(EF05 | EF06)
    tag = draw(st.sampled_from(sorted(values)))
    values[tag] = mutate(draw, values[tag])
    return values


@given(_mutated_value())
def test_mutated_values_raise_only_field_errors(values: dict[int, bytes]) -> None:
    for decode in (decode_issuer_data, decode_holder_data):
        try:
            decode(values)
        except ParseError as exc:
            assert isinstance(exc, FieldError)


@given(st.binary(max_size=120))
def test_random_files_raise_only_parse_errors(data: bytes) -> None:
    for parse in (parse_issuer_file, parse_holder_file):
        try:
            parse(data)
        except ParseError as exc:
            assert isinstance(exc, TlvError | FieldError)
