"""The simulator's own APDU parser (firmware_sim.apdu): ISO 7816-3/-4 cases, short and
extended, and that it agrees with the terminal's encoder on every command it can build."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.apdu import Command, Response, parse_command
from terminal.errors import ApduError
from terminal.iso7816.apdu import CommandAPDU


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00A40000", Command(0x00, 0xA4, 0x00, 0x00)),  # case 1
        ("0084000008", Command(0x00, 0x84, 0x00, 0x00, le=8)),  # case 2
        ("00B2070000", Command(0x00, 0xB2, 0x07, 0x00, le=256)),  # Le 00 = 256
        ("00A4020002EF05", Command(0x00, 0xA4, 0x02, 0x00, bytes.fromhex("EF05"))),  # case 3
        (
            "0088000010" + "11" * 16 + "00",
            Command(0x00, 0x88, 0x00, 0x00, bytes([0x11]) * 16, 256),
        ),  # case 4
        ("00B0000000FFFF", Command(0x00, 0xB0, 0x00, 0x00, le=0xFFFF, extended=True)),
        ("00B0000000000000", None),  # 6 bytes after the header: no case
        ("00B00000000000", Command(0x00, 0xB0, 0, 0, le=65536, extended=True)),
        ("00D60000000002AABB", Command(0x00, 0xD6, 0, 0, b"\xaa\xbb", extended=True)),
        ("00D60000000002AABB0100", Command(0x00, 0xD6, 0, 0, b"\xaa\xbb", 256, extended=True)),
    ],
)
def test_cases(raw: str, expected: Command | None) -> None:
    if expected is None:
        with pytest.raises(ApduError):
            parse_command(bytes.fromhex(raw))
    else:
        assert parse_command(bytes.fromhex(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "00", "00A404", "00A404000F01", "00A40400000002A0", "00A4040000000000", "00B2000103AA"],
)
def test_malformed(raw: str) -> None:
    with pytest.raises(ApduError):
        parse_command(bytes.fromhex(raw))


def test_case_numbers() -> None:
    assert [parse_command(bytes.fromhex(r)).case for r in ("00A40000", "0084000008")] == [1, 2]
    assert parse_command(bytes.fromhex("00A4020002EF05")).case == 3
    assert parse_command(bytes.fromhex("00A4020002EF0500")).case == 4


def test_response_bytes() -> None:
    assert Response(b"\x01", 0x9000).to_bytes() == b"\x01\x90\x00"


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_parser_never_raises_anything_but_apdu_error(raw: bytes) -> None:
    try:
        cmd = parse_command(raw)
    except ApduError:
        return
    assert cmd.to_bytes() == raw  # whatever parses is read exactly


_commands = st.builds(
    CommandAPDU,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=300),
    st.none() | st.integers(1, 65536),
)


@settings(max_examples=300)
@given(_commands)
def test_reads_what_the_terminal_encodes(cmd: CommandAPDU) -> None:
    parsed = parse_command(cmd.to_bytes())
    assert (parsed.cla, parsed.ins, parsed.p1, parsed.p2) == (cmd.cla, cmd.ins, cmd.p1, cmd.p2)
    assert (parsed.data, parsed.le) == (cmd.data, cmd.le)
