"""Status words by name (terminal.iso7816.status_words)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.iso7816.status_words import (
    SW,
    describe,
    format_sw,
    is_bytes_available,
    is_warning,
    is_wrong_le,
    tries_left,
)

# The status words domain.md section 2 says must be handled by name.
NAMED = [
    0x9000,
    0x6281,
    0x6282,
    0x6283,
    0x6284,
    0x6700,
    0x6982,
    0x6983,
    0x6984,
    0x6985,
    0x6A82,
    0x6A83,
    0x6A88,
    0x6D00,
    0x6E00,
    0x9302,
    0x9303,
]


@pytest.mark.parametrize("sw", NAMED)
def test_required_status_words_have_names(sw: int) -> None:
    assert SW(sw) == sw
    text = describe(sw)
    assert text.startswith(f"{sw:04X} ")
    assert "unknown" not in text


@pytest.mark.parametrize("sw", list(SW))
def test_every_enum_member_is_described(sw: SW) -> None:
    assert "unknown" not in describe(sw)


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "9000 success"),
        (0x6A82, "6A82 file or application not found"),
        (0x6110, "6110 16 bytes available"),
        (0x6100, "6100 256 bytes available"),
        (0x6C1E, "6C1E wrong Le, exact length 30"),
        (0x6C00, "6C00 wrong Le, exact length 256"),
        (0x63C2, "63C2 verification failed, 2 tries left"),
        (0x63C0, "63C0 verification failed, 0 tries left"),
        (0x6983, "6983 authentication method blocked"),
        (0x9303, "9303 application blocked"),
        (0x1234, "1234 unknown status"),
    ],
)
def test_describe(sw: int, text: str) -> None:
    assert describe(sw) == text


def test_predicates() -> None:
    assert is_bytes_available(0x6110) and is_bytes_available(0x6100)
    assert not is_bytes_available(0x9000) and not is_bytes_available(0x6C10)
    assert is_wrong_le(0x6C10) and is_wrong_le(0x6C00)
    assert not is_wrong_le(0x6110)
    assert is_warning(0x6282) and is_warning(0x63C1) and is_warning(0x6300)
    assert not is_warning(0x9000) and not is_warning(0x6A82) and not is_warning(0x6983)


def test_tries_left() -> None:
    assert tries_left(0x63C3) == 3
    assert tries_left(0x63C0) == 0
    assert tries_left(0x63CF) == 15
    assert tries_left(0x6300) is None
    assert tries_left(0x6983) is None
    assert tries_left(0x9000) is None


def test_format_sw() -> None:
    assert format_sw(0x6A82) == "6A82"
    assert format_sw(0x9000) == "9000"
    assert format_sw(0x0061) == "0061"


@given(st.integers(0, 0xFFFF))
def test_describe_any_status_word(sw: int) -> None:
    text = describe(sw)
    assert text.startswith(format_sw(sw) + " ")
    assert len(text) > 5


@given(st.integers(0, 0xFF))
def test_families_by_sw2(sw2: int) -> None:
    assert is_bytes_available(0x6100 | sw2)
    assert is_wrong_le(0x6C00 | sw2)
    assert is_warning(0x6200 | sw2) and is_warning(0x6300 | sw2)
    assert (tries_left(0x6300 | sw2) is not None) == (sw2 & 0xF0 == 0xC0)
