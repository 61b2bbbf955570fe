"""SIMPLE-TLV, BER-TLV and FCI parsing (terminal.iso7816.tlv)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import ParseError, TlvError
from terminal.iso7816.tlv import (
    BER_MAX_DEPTH,
    AlgorithmFlag,
    BerTlv,
    FileControlInfo,
    encode_ber_tlv,
    encode_simple_tlv,
    find_ber,
    parse_ber_tlv,
    parse_fci,
    parse_simple_tlv,
    records_by_tag,
)
from terminal.ssc import layout

REAL_FCI = bytes.fromhex("6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103")
REAL_CARD_ID = bytes.fromhex("519900D15600000510000B26FFFFFFFF")


# --- SIMPLE-TLV ---------------------------------------------------------------------------


def test_simple_tlv_parses_in_order() -> None:
    data = bytes.fromhex("0110") + REAL_CARD_ID + bytes.fromhex("0304") + b"3.00" + b"\x02\x00"
    assert parse_simple_tlv(data) == [(0x01, REAL_CARD_ID), (0x03, b"3.00"), (0x02, b"")]


def test_simple_tlv_empty_input() -> None:
    assert parse_simple_tlv(b"") == []


def test_simple_tlv_three_byte_length() -> None:
    value = bytes(range(256)) * 2
    data = b"\x42\xff\x02\x00" + value
    assert parse_simple_tlv(data) == [(0x42, value)]


def test_simple_tlv_three_byte_length_may_be_small() -> None:
    assert parse_simple_tlv(b"\x42\xff\x00\x02ab") == [(0x42, b"ab")]


@pytest.mark.parametrize("tag", [0x00, 0xFF])
def test_simple_tlv_invalid_tags(tag: int) -> None:
    with pytest.raises(TlvError, match=f"tag {tag:02X} at offset 3"):
        parse_simple_tlv(b"\x01\x01a" + bytes((tag, 0x00)))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01", "tag 01 at offset 0: length byte missing"),
        (b"\x01\x03ab", "tag 01 at offset 0: value of 3 bytes truncated to 2"),
        (b"\x01\x00\x02\xff\x01", "tag 02 at offset 2: three-byte length truncated"),
        (b"\x01\x00\x02\xff\x00\x05abc", "tag 02 at offset 2: value of 5 bytes truncated"),
    ],
)
def test_simple_tlv_truncated(data: bytes, match: str) -> None:
    with pytest.raises(TlvError, match=match):
        parse_simple_tlv(data)


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, "0100"),
        (1, "0101"),
        (254, "01FE"),
        (255, "01FF00FF"),
        (65535, "01FFFFFF"),
    ],
)
def test_encode_simple_tlv_lengths(length: int, header: str) -> None:
    encoded = encode_simple_tlv(0x01, b"\xaa" * length)
    assert encoded[: len(header) // 2].hex().upper() == header
    assert parse_simple_tlv(encoded) == [(0x01, b"\xaa" * length)]


@pytest.mark.parametrize("tag", [0x00, 0xFF, -1, 0x100])
def test_encode_simple_tlv_rejects_bad_tag(tag: int) -> None:
    with pytest.raises(TlvError):
        encode_simple_tlv(tag, b"")


def test_encode_simple_tlv_rejects_long_value() -> None:
    with pytest.raises(TlvError, match="65536"):
        encode_simple_tlv(0x01, bytes(65536))


def test_records_by_tag() -> None:
    data = (
        encode_simple_tlv(0x01, REAL_CARD_ID)
        + encode_simple_tlv(0x03, b"3.00")
        + encode_simple_tlv(0x07, b"D2143569X")
    )
    assert records_by_tag(data) == {0x01: REAL_CARD_ID, 0x03: b"3.00", 0x07: b"D2143569X"}


def test_records_by_tag_rejects_duplicates() -> None:
    data = encode_simple_tlv(0x4E, b"a") + encode_simple_tlv(0x4E, b"b")
    with pytest.raises(TlvError, match="tag 4E"):
        records_by_tag(data)


simple_tags = st.integers(min_value=0x01, max_value=0xFE)
simple_objects = st.lists(st.tuples(simple_tags, st.binary(max_size=300)), max_size=8)


@given(simple_objects)
def test_simple_tlv_round_trip(objects: list[tuple[int, bytes]]) -> None:
    data = b"".join(encode_simple_tlv(tag, value) for tag, value in objects)
    assert parse_simple_tlv(data) == objects


@given(st.dictionaries(simple_tags, st.binary(max_size=40), max_size=10))
def test_records_by_tag_round_trip(values: dict[int, bytes]) -> None:
    data = b"".join(encode_simple_tlv(tag, value) for tag, value in values.items())
    assert records_by_tag(data) == values


# --- BER-TLV ------------------------------------------------------------------------------


def test_ber_primitive_and_multibyte_tag() -> None:
    (obj,) = parse_ber_tlv(bytes.fromhex("9F0C03860103"))
    assert obj == BerTlv(0x9F0C, b"\x86\x01\x03", None)
    assert not obj.constructed


def test_ber_three_byte_tag() -> None:
    (obj,) = parse_ber_tlv(bytes.fromhex("5F8101 01 AA"))
    assert obj.tag == 0x5F8101
    assert obj.value == b"\xaa"


def test_ber_tag_longer_than_three_bytes() -> None:
    with pytest.raises(TlvError, match="longer than 3 bytes"):
        parse_ber_tlv(bytes.fromhex("5F81818101AA"))


def test_ber_truncated_tag() -> None:
    with pytest.raises(TlvError, match="tag 9F at offset 0 truncated"):
        parse_ber_tlv(b"\x9f")
    with pytest.raises(TlvError, match="truncated"):
        parse_ber_tlv(b"\x9f\x81")


@pytest.mark.parametrize(
    ("length", "field"),
    [
        (0, "00"),
        (0x7F, "7F"),
        (0x80, "8180"),
        (0xFF, "81FF"),
        (0x100, "820100"),
        (0x10000, "83010000"),
    ],
)
def test_ber_lengths(length: int, field: str) -> None:
    value = b"\x5a" * length
    encoded = encode_ber_tlv(0x04, value)
    assert encoded[1 : 1 + len(field) // 2].hex().upper() == field
    assert parse_ber_tlv(encoded) == (BerTlv(0x04, value),)


def test_ber_non_minimal_length_is_accepted() -> None:
    assert parse_ber_tlv(bytes.fromhex("04820001AA")) == (BerTlv(0x04, b"\xaa"),)


def test_ber_indefinite_length_rejected() -> None:
    with pytest.raises(TlvError, match=r"tag 30 at offset 0: indefinite length"):
        parse_ber_tlv(bytes.fromhex("30800000"))


def test_ber_length_of_four_bytes_rejected() -> None:
    with pytest.raises(TlvError, match="tag 04 at offset 0: length field 84"):
        parse_ber_tlv(bytes.fromhex("048400000001AA"))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("04", "tag 04 at offset 0: length missing"),
        ("0482 01", "tag 04 at offset 0: length field truncated"),
        ("0403 AABB", "tag 04 at offset 0: value of 3 bytes truncated to 2"),
        ("0401AA 5F2002 AA", "tag 5F20 at offset 3: value of 2 bytes truncated to 1"),
    ],
)
def test_ber_truncated(data: str, match: str) -> None:
    with pytest.raises(TlvError, match=match):
        parse_ber_tlv(bytes.fromhex(data))


def test_ber_error_offsets_are_absolute_inside_constructed() -> None:
    # 6F 05 [84 01 AA  86 05 ..] the inner 86 at offset 5 claims more than its parent holds.
    with pytest.raises(TlvError, match="tag 86 at offset 5"):
        parse_ber_tlv(bytes.fromhex("6F058401AA8605"))


def test_ber_padding_skipped() -> None:
    data = bytes.fromhex("00FF 0401AA 0000 A505 FF 88011E 00 FFFF")
    assert parse_ber_tlv(data) == (
        BerTlv(0x04, b"\xaa"),
        BerTlv(0xA5, bytes.fromhex("FF88011E00"), (BerTlv(0x88, b"\x1e"),)),
    )


def test_ber_only_padding() -> None:
    assert parse_ber_tlv(b"\x00\xff\x00") == ()
    assert parse_ber_tlv(b"") == ()


def test_ber_constructed_children_and_find() -> None:
    (fci,) = parse_ber_tlv(REAL_FCI)
    assert fci.tag == 0x6F and fci.constructed
    assert fci.children is not None
    assert [c.tag for c in fci.children] == [0x84, 0xA5]
    assert fci.find(0x6F) is fci
    sfi = fci.find(0x88)
    assert sfi is not None and sfi.value == b"\x1e"
    sec = fci.find(0x9F0C)
    assert sec is not None and not sec.constructed  # primitive by its first byte
    assert fci.find(0x86) is None  # nested in a primitive: not searched
    assert find_ber((BerTlv(0x04, b""), fci), 0x84) == fci.children[0]
    assert find_ber((), 0x84) is None


def test_ber_find_is_depth_first() -> None:
    inner = encode_ber_tlv(0xA1, encode_ber_tlv(0x80, b"deep"))
    data = encode_ber_tlv(0xA0, inner + encode_ber_tlv(0x80, b"shallow"))
    (obj,) = parse_ber_tlv(data)
    found = obj.find(0x80)
    assert found is not None and found.value == b"deep"


def test_ber_empty_constructed() -> None:
    assert parse_ber_tlv(b"\x30\x00") == (BerTlv(0x30, b"", ()),)
    assert parse_ber_tlv(b"\x30\x00")[0].constructed


def _nested(depth: int) -> bytes:
    data = encode_ber_tlv(0x04, b"x")
    for _ in range(depth):
        data = encode_ber_tlv(0x30, data)
    return data


def test_ber_depth_limit() -> None:
    assert parse_ber_tlv(_nested(BER_MAX_DEPTH - 1))
    with pytest.raises(TlvError, match="nesting deeper than"):
        parse_ber_tlv(_nested(BER_MAX_DEPTH))
    with pytest.raises(TlvError, match="nesting deeper than"):
        parse_ber_tlv(_nested(1000))


def test_ber_to_bytes() -> None:
    (obj,) = parse_ber_tlv(REAL_FCI)
    assert obj.to_bytes() == REAL_FCI


@pytest.mark.parametrize(
    ("tag", "encoded"),
    [(0x04, "04"), (0x6F, "6F"), (0x9F0C, "9F0C"), (0x5F2D, "5F2D"), (0xBF8101, "BF8101")],
)
def test_encode_ber_tags(tag: int, encoded: str) -> None:
    assert encode_ber_tlv(tag, b"").hex().upper() == encoded + "00"


@pytest.mark.parametrize(
    "tag",
    [
        0,  # no tag
        -4,
        0x1F,  # says "more tag bytes follow" but none do
        0x9F,
        0xFF,  # padding byte
        0xFF01,
        0x0401,  # second byte without a 11111 first byte
        0x9F81,  # last byte still announces continuation
        0x9F0101,  # middle byte without continuation
        0x9F818101,  # four bytes
    ],
)
def test_encode_ber_rejects_bad_tags(tag: int) -> None:
    with pytest.raises(TlvError):
        encode_ber_tlv(tag, b"")


def test_encode_ber_rejects_huge_value() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return 0x1000000

    with pytest.raises(TlvError, match="too long"):
        encode_ber_tlv(0x04, Huge())


# Strategies for valid BER-TLV trees: first tag bytes by form (bit 6) and tag length.
_SINGLE = [b for b in range(0x01, 0xFF) if b & 0x1F != 0x1F]
_MULTI = [b for b in range(0x01, 0xFF) if b & 0x1F == 0x1F]


@st.composite
def ber_tags(draw: st.DrawFn, constructed: bool) -> int:
    """A valid tag of one to three bytes, constructed or primitive by bit 6 of byte one."""
    bit = 0x20 if constructed else 0x00
    if draw(st.booleans()):
        first = draw(st.sampled_from([b for b in _SINGLE if b & 0x20 == bit]))
        rest: list[int] = []
    else:
        first = draw(st.sampled_from([b for b in _MULTI if b & 0x20 == bit]))
        rest = [draw(st.integers(0x80, 0xFF)) for _ in range(draw(st.integers(0, 1)))]
        rest.append(draw(st.integers(0x00, 0x7F)))
    return int.from_bytes(bytes([first, *rest]), "big")


primitive_objects = st.builds(
    lambda tag, value: BerTlv(tag, value, None),
    ber_tags(constructed=False),
    st.one_of(st.binary(max_size=20), st.binary(min_size=120, max_size=260)),
)


def _constructed(tag: int, children: list[BerTlv]) -> BerTlv:
    value = b"".join(c.to_bytes() for c in children)
    return BerTlv(tag, value, tuple(children))


ber_trees = st.recursive(
    primitive_objects,
    lambda kids: st.builds(_constructed, ber_tags(constructed=True), st.lists(kids, max_size=4)),
    max_leaves=8,
)


@given(st.lists(ber_trees, max_size=4))
def test_ber_round_trip(objects: list[BerTlv]) -> None:
    data = b"".join(o.to_bytes() for o in objects)
    assert parse_ber_tlv(data) == tuple(objects)


@given(st.lists(ber_trees, max_size=4), st.lists(st.sampled_from([b"\x00", b"\xff"]), max_size=3))
def test_ber_round_trip_with_padding(objects: list[BerTlv], pads: list[bytes]) -> None:
    pad = b"".join(pads)
    data = pad + pad.join(o.to_bytes() for o in objects) + pad
    assert parse_ber_tlv(data) == tuple(objects)


# --- FCI ----------------------------------------------------------------------------------


def test_parse_real_fci() -> None:
    fci = parse_fci(REAL_FCI)
    assert fci == FileControlInfo(
        df_name=layout.SSSE_NAME,
        sfi_of_dir=0x1E,
        algorithm=3,
        proprietary=bytes.fromhex("88011E9F0C03860103"),
    )
    assert fci.df_name is not None and fci.df_name.decode("gbk") == "sx1.sh.社会保障"
    assert fci.algorithm_flag is AlgorithmFlag.SM4


def test_parse_fci_with_trailing_padding() -> None:
    assert parse_fci(REAL_FCI + b"\x00\x00").sfi_of_dir == 0x1E


def test_parse_fci_name_only() -> None:
    fci = parse_fci(encode_ber_tlv(0x6F, encode_ber_tlv(0x84, layout.SSSE_NAME)))
    assert fci == FileControlInfo(layout.SSSE_NAME, None, None, b"")
    assert fci.algorithm_flag is None


def test_parse_fci_unknown_algorithm() -> None:
    prop = encode_ber_tlv(0x9F0C, encode_ber_tlv(0x86, b"\x07"))
    fci = parse_fci(encode_ber_tlv(0x6F, encode_ber_tlv(0xA5, prop)))
    assert fci.algorithm == 7
    assert fci.algorithm_flag is None


def test_parse_fci_9f0c_without_algorithm() -> None:
    prop = encode_ber_tlv(0x9F0C, encode_ber_tlv(0x87, b"\x01"))
    assert parse_fci(encode_ber_tlv(0x6F, encode_ber_tlv(0xA5, prop))).algorithm is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("", "empty"),
        ("0000", "empty"),
        ("5001AA", "starts with tag 50"),
        ("84 0F" + REAL_FCI.hex()[8:38], "starts with tag 84"),
        (REAL_FCI.hex() + "9000", "unexpected tag 90"),
        ("6F06 A504 88020000", "tag 88 in A5: expected 1 byte, got 2"),
        ("6F07 A505 9F0C02 8601", "tag 9F0C"),
        ("6F09 A507 9F0C04 86020000", "tag 86 in 9F0C: expected 1 byte, got 2"),
        ("6F02 8405", "tag 84 at offset 2"),
    ],
)
def test_parse_fci_rejects(data: str, match: str) -> None:
    with pytest.raises(TlvError, match=match):
        parse_fci(bytes.fromhex(data))


def test_algorithm_flag_values() -> None:
    assert [int(f) for f in AlgorithmFlag] == [1, 2, 3]
    assert AlgorithmFlag(1) is AlgorithmFlag.DES3
    assert AlgorithmFlag(2) is AlgorithmFlag.SSF33


# --- robustness: nothing but ParseError escapes -------------------------------------------

PARSERS = [parse_simple_tlv, records_by_tag, parse_ber_tlv, parse_fci]


def _only_parse_errors(parser: Callable[[bytes], object], data: bytes) -> None:
    try:
        parser(data)
    except ParseError as exc:
        assert isinstance(exc, TlvError)
        assert exc.reason


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_tlv_errors(data: bytes) -> None:
    for parser in PARSERS:
        _only_parse_errors(parser, data)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "delete"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i]
    return bytes(data)


valid_simple = simple_objects.map(lambda objs: b"".join(encode_simple_tlv(t, v) for t, v in objs))
valid_ber = st.lists(ber_trees, max_size=3).map(lambda objs: b"".join(o.to_bytes() for o in objs))
valid_fci = st.one_of(
    st.just(REAL_FCI),
    st.lists(ber_trees, max_size=3).map(
        lambda objs: encode_ber_tlv(0x6F, b"".join(o.to_bytes() for o in objs))
    ),
)


@given(mutated(valid_simple))
def test_mutated_simple_tlv_raises_only_tlv_errors(data: bytes) -> None:
    _only_parse_errors(parse_simple_tlv, data)
    _only_parse_errors(records_by_tag, data)


@given(mutated(valid_ber))
def test_mutated_ber_tlv_raises_only_tlv_errors(data: bytes) -> None:
    _only_parse_errors(parse_ber_tlv, data)


@given(mutated(valid_fci))
def test_mutated_fci_raises_only_tlv_errors(data: bytes) -> None:
    _only_parse_errors(parse_fci, data)
