"""The bearer token a loopback server may require (terminal/loopback/credential.py), as a
value; a server that requires it: test_loopback_server.py."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.loopback import BearerToken
from terminal.loopback.credential import challenge

TOKEN = secrets.token_urlsafe(32)


# --- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "short",
        "x" * 31,
        "x" * 513,
        "has space" + "x" * 32,
        "x" * 32 + "\n",
        "日本" * 20,
        "x" * 16 + "=" + "x" * 16,
    ],
)
def test_a_token_that_could_be_guessed_or_not_sent_is_refused(token: str) -> None:
    with pytest.raises(ValueError) as caught:
        BearerToken(token)
    if token:
        assert token not in str(caught.value)


def test_generated_tokens_are_tokens() -> None:
    for _ in range(20):
        BearerToken(secrets.token_urlsafe(32))
    BearerToken(secrets.token_hex(16))
    BearerToken("A" * 40 + "==")


def test_the_token_is_in_no_repr() -> None:
    token = BearerToken(TOKEN)
    assert TOKEN not in repr(token)
    assert TOKEN not in str(vars(token))


@pytest.mark.parametrize(
    "header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} ", f" Bearer {TOKEN}"]
)
def test_the_token_is_allowed(header: str) -> None:
    assert BearerToken(TOKEN).allows(header)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        TOKEN,
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN} {TOKEN}",
        f"Bearer {TOKEN.upper()}" if TOKEN.upper() != TOKEN else "Bearer x",
    ],
)
def test_anything_else_is_not(header: str | None) -> None:
    assert not BearerToken(TOKEN).allows(header)


@given(st.text(max_size=600))
def test_any_header_is_an_answer_never_an_error(header: str) -> None:
    allowed = BearerToken(TOKEN).allows(header)
    assert allowed is (TOKEN in header and header.strip()[:7].lower() == "bearer ")


def test_the_challenge_says_invalid_token_only_when_one_was_sent() -> None:
    assert challenge(False) == 'Bearer realm="onecard"'
    assert challenge(True) == 'Bearer realm="onecard", error="invalid_token"'
