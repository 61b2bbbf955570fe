"""Base45 (RFC 9285): the RFC's examples, its MUST-reject cases, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.ecode import base45
from terminal.errors import Base45Error, MalformedCodeError, ParseError

# RFC 9285 section 4.3 / 4.4 examples
VECTORS = [
    (b"", ""),
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
    (b"\x00", "00"),
    (b"\xff\xff", "FGW"),
    (b"\xff", "U5"),
]


@pytest.mark.parametrize(("raw", "text"), VECTORS)
def test_rfc_examples(raw: bytes, text: str) -> None:
    assert base45.encode(raw) == text
    assert base45.decode(text) == raw
    assert base45.encoded_length(len(raw)) == len(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("GGW", "65535"),  # 16 + 16*45 + 32*2025 = 65536
        (":::", "65535"),
        ("GG", "255"),  # final pair 16 + 16*45 = 736
        ("A", "modulo 3"),
        ("BB8A", "modulo 3"),
        ("bb8", "alphabet"),  # lower case is not Base45
        ("BB=", "alphabet"),
        ("BB\n", "alphabet"),
        ("Ä00", "alphabet"),
    ],
)
def test_rejects(text: str, why: str) -> None:
    with pytest.raises(Base45Error, match=why):
        base45.decode(text)


def test_error_family() -> None:
    assert issubclass(Base45Error, MalformedCodeError)
    assert issubclass(Base45Error, ParseError)
    with pytest.raises(Base45Error):
        base45.decode(b"BB8")  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_round_trip(raw: bytes) -> None:
    text = base45.encode(raw)
    assert set(text) <= set(base45.ALPHABET)
    assert base45.decode(text) == raw


@settings(max_examples=300)
@given(st.text(alphabet=base45.ALPHABET + "abc\x00é", max_size=60))
def test_random_text_gives_bytes_or_typed_error(text: str) -> None:
    try:
        raw = base45.decode(text)
    except Base45Error:
        return
    # strict decoding is a bijection: the bytes encode back to the very same text
    assert base45.encode(raw) == text
