"""The social security card number check character (terminal.ssc.cardnumber)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import FieldError
from terminal.ssc.cardnumber import WEIGHTS, check_character, is_valid


def test_spec_worked_example() -> None:
    # D=13: 13*3 + 2*7 + 1*9 + 4*10 + 3*5 + 5*8 + 6*4 + 9*2 = 199; 199 mod 11 = 1; 11-1 = 10.
    assert check_character("D2143569") == "X"
    assert is_valid("D2143569X")


def test_check_eleven_is_written_zero() -> None:
    # A=10: 10*3 + 7*2 = 44 = 4*11, so 11 - 0 = 11, written 0.
    assert check_character("A0000007") == "0"
    assert is_valid("A00000070")
    assert not is_valid("A0000007B")


def test_plain_digit_check() -> None:
    # A=10: 30; 11 - 30 mod 11 = 11 - 8 = 3.
    assert check_character("A0000000") == "3"
    assert is_valid("A00000003")


@pytest.mark.parametrize("number", ["D2143569", "D2143569XX", "", "D21435690", "d2143569X"])
def test_is_valid_rejects(number: str) -> None:
    assert not is_valid(number)


@pytest.mark.parametrize("body", ["D214356", "D21435690", ""])
def test_check_character_wrong_length(body: str) -> None:
    with pytest.raises(FieldError, match="8 characters"):
        check_character(body)


@pytest.mark.parametrize("body", ["d2143569", "D214356-", "D214356é"])
def test_check_character_bad_characters(body: str) -> None:
    with pytest.raises(FieldError, match="neither a digit nor A-Z"):
        check_character(body)


bodies = st.builds(
    lambda letter, digits: letter + digits,
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.text("0123456789", min_size=7, max_size=7),
)


@given(bodies)
def test_check_character_makes_valid_numbers(body: str) -> None:
    check = check_character(body)
    assert check in "0123456789X"
    assert is_valid(body + check)
    for other in "0123456789X":
        if other != check:
            assert not is_valid(body + other)


@given(bodies)
def test_check_character_formula(body: str) -> None:
    values = [ord(c) - 55 if c.isalpha() else int(c) for c in body]
    total = sum(v * w for v, w in zip(values, WEIGHTS, strict=True))
    expected = 11 - total % 11
    assert check_character(body) == {10: "X", 11: "0"}.get(expected, str(expected))


@given(st.text(max_size=12))
def test_is_valid_never_raises(text: str) -> None:
    assert isinstance(is_valid(text), bool)
