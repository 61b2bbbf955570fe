"""Command and response APDUs (terminal.iso7816.apdu)."""

from __future__ import annotations

import pytest
from helpers.mutations import mutate
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import ApduError, ParseError
from terminal.iso7816.apdu import Case, CommandAPDU, ResponseAPDU
from terminal.ssc import layout


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- encodings of each case ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "wire", "case", "extended"),
    [
        (CommandAPDU(0x00, 0x84, 0x00, 0x00), "00840000", Case.ONE, False),
        (CommandAPDU(0x00, 0x84, 0x00, 0x00, le=8), "0084000008", Case.TWO, False),
        (CommandAPDU(0x00, 0xB2, 0x01, 0x00, le=256), "00B2010000", Case.TWO, False),
        (CommandAPDU(0x00, 0xB2, 0x01, 0x00, le=257), "00B20100000101", Case.TWO, True),
        (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000000000", Case.TWO, True),
        (
            CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=256, extended=True),
            "00B00000000100",
            Case.TWO,
            True,
        ),
        (CommandAPDU(0x00, 0xA4, 0x02, 0x00, h("EF05")), "00A4020002EF05", Case.THREE, False),
        (
            CommandAPDU(0x00, 0xA4, 0x02, 0x00, h("EF05"), extended=True),
            "00A402000000 02 EF05",
            Case.THREE,
            True,
        ),
        (
            CommandAPDU(0x00, 0x88, 0x00, 0x00, bytes(16), le=256),
            "0088000010" + "00" * 16 + "00",
            Case.FOUR,
            False,
        ),
        (
            CommandAPDU(0x00, 0x88, 0x00, 0x00, h("0102"), le=65536),
            "00880000 000002 0102 0000",
            Case.FOUR,
            True,
        ),
        (
            CommandAPDU(0x00, 0x88, 0x00, 0x00, h("0102"), le=300),
            "00880000 000002 0102 012C",
            Case.FOUR,
            True,
        ),
    ],
)
def test_command_encoding(cmd: CommandAPDU, wire: str, case: Case, extended: bool) -> None:
    raw = h(wire)
    assert cmd.to_bytes() == raw
    assert cmd.case is case
    assert cmd.is_extended is extended
    parsed = CommandAPDU.from_bytes(raw)
    assert parsed == cmd
    assert parsed.to_bytes() == raw


def test_select_ssse() -> None:
    cmd = CommandAPDU(0x00, 0xA4, 0x04, 0x00, layout.SSSE_NAME)
    assert str(cmd) == "00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF"


def test_extended_data_length() -> None:
    cmd = CommandAPDU(0x80, 0xD6, 0x00, 0x00, bytes(256))
    raw = cmd.to_bytes()
    assert raw[4:7] == h("000100")
    assert CommandAPDU.from_bytes(raw) == cmd
    biggest = CommandAPDU(0x80, 0xD6, 0x00, 0x00, bytes(65535), le=65536)
    raw = biggest.to_bytes()
    assert raw[4:7] == h("00FFFF") and raw[-2:] == h("0000")
    assert CommandAPDU.from_bytes(raw) == biggest


def test_with_le_reissues_after_6cxx() -> None:
    cmd = CommandAPDU(0x00, 0xB2, 0x01, 0x2C, le=256)
    again = cmd.with_le(0x10)
    assert again.to_bytes() == h("00B2012C10")
    assert cmd.with_le(None).case is Case.ONE
    forced = CommandAPDU(0x00, 0xB2, 0x01, 0x2C, le=1, extended=True).with_le(2)
    assert forced.to_bytes() == h("00B2012C000002")


# --- rejection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 0x100},
        {"ins": -1},
        {"p1": 256},
        {"p2": -3},
        {"le": 0},
        {"le": 65537},
        {"le": -1},
        {"data": bytes(65536)},
    ],
)
def test_command_rejects_bad_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"cla": 0, "ins": 0xA4, "p1": 0, "p2": 0, **kwargs}
    with pytest.raises(ApduError):
        CommandAPDU(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        ("", "shorter than its header"),
        ("00A404", "3 bytes is shorter"),
        ("00A40400 03 AABB", "short Lc 3 does not match 2"),
        ("00A40400 02 AABBCCDD", "short Lc 2 does not match 4"),
        ("00A40400 0001", "extended length field is truncated"),
        ("00A40400 000000AA", "extended Lc of zero"),
        ("00A40400 000003 AABB", "extended Lc 3 does not match 2"),
        ("00A40400 000002 AABB 00", "extended Lc 2 does not match 3"),
        ("00A40400 000002 AABB 000000", "extended Lc 2 does not match 5"),
    ],
)
def test_command_from_bytes_rejects(wire: str, match: str) -> None:
    with pytest.raises(ApduError, match=match):
        CommandAPDU.from_bytes(h(wire))


# --- properties ---------------------------------------------------------------------------

_byte = st.integers(0, 255)
_le = st.one_of(
    st.none(),
    st.integers(1, 256),
    st.integers(257, 65536),
    st.sampled_from([1, 255, 256, 257, 65535, 65536]),
)
_data = st.one_of(st.binary(max_size=40), st.binary(min_size=250, max_size=300))
commands = st.builds(CommandAPDU, _byte, _byte, _byte, _byte, _data, _le, st.booleans())


@given(commands)
def test_command_round_trip(cmd: CommandAPDU) -> None:
    raw = cmd.to_bytes()
    parsed = CommandAPDU.from_bytes(raw)
    assert parsed == cmd
    assert parsed.case is cmd.case
    assert parsed.to_bytes() == raw


@given(commands)
def test_command_length_fields(cmd: CommandAPDU) -> None:
    raw = cmd.to_bytes()
    body = len(cmd.data)
    if cmd.case is Case.ONE:
        assert len(raw) == 4
    elif not cmd.is_extended:
        assert len(raw) == 4 + (1 + body if body else 0) + (1 if cmd.le else 0)
    else:
        lc_len = 3 if body else 0
        le_len = (2 if body else 3) if cmd.le else 0
        assert len(raw) == 4 + lc_len + body + le_len


@given(st.binary(max_size=300))
def test_random_commands_raise_only_apdu_errors_and_reencode(raw: bytes) -> None:
    try:
        cmd = CommandAPDU.from_bytes(raw)
    except ParseError as exc:
        assert isinstance(exc, ApduError)
        return
    assert cmd.to_bytes() == raw  # every parseable command has exactly one encoding


@st.composite
def mutated_commands(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(commands).to_bytes())


@given(mutated_commands())
def test_mutated_commands_raise_only_apdu_errors(raw: bytes) -> None:
    try:
        cmd = CommandAPDU.from_bytes(raw)
    except ParseError as exc:
        assert isinstance(exc, ApduError)
        return
    assert cmd.to_bytes() == raw


# --- responses ----------------------------------------------------------------------------


def test_response_parse() -> None:
    resp = ResponseAPDU.from_bytes(h("6F1C84") + h("9000"))
    assert resp.data == h("6F1C84")
    assert resp.sw == 0x9000 and resp.sw1 == 0x90 and resp.sw2 == 0x00
    assert resp.ok
    assert str(resp) == "6F1C84 9000"
    assert resp.to_bytes() == h("6F1C849000")


def test_response_status_only() -> None:
    resp = ResponseAPDU.from_bytes(h("6C10"))
    assert resp.data == b"" and resp.sw1 == 0x6C and resp.sw2 == 0x10
    assert not resp.ok
    assert str(resp) == "6C10"


@pytest.mark.parametrize("wire", ["", "90"])
def test_response_rejects_short(wire: str) -> None:
    with pytest.raises(ApduError, match="no status word"):
        ResponseAPDU.from_bytes(h(wire))


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    resp = ResponseAPDU(data, sw)
    assert ResponseAPDU.from_bytes(resp.to_bytes()) == resp


@given(st.binary(max_size=40))
def test_random_responses_raise_only_apdu_errors(raw: bytes) -> None:
    try:
        resp = ResponseAPDU.from_bytes(raw)
    except ParseError as exc:
        assert isinstance(exc, ApduError)
        return
    assert resp.to_bytes() == raw
