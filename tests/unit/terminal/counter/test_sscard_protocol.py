"""The SSCARD/1 wire between libonecard_sscard.so and the counter service: requests parsed
or refused with a reason, answers framed in the caller's encoding, outcomes as LD/T 33 codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal import ldt33
from terminal.counter import sscard_protocol as proto
from terminal.counter.sscard_protocol import (
    Encoding,
    Function,
    SscardAnswerError,
    SscardRequest,
    SscardRequestError,
    format_answer,
    format_request,
    parse_answer,
    parse_request,
)
from terminal.devices.pinpad import PinEntryCancelled
from terminal.errors import CardError, CardRemovedError, NoCardError, NotSocialSecurityCardError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"SSCARD/1 GBK READ 3\n", SscardRequest(Function.READ, Encoding.GBK, itype=3)),
        (b"SSCARD/1 UTF-8 READ 1", SscardRequest(Function.READ, Encoding.UTF8, itype=1)),
        (b"SSCARD/1 GBK VERIFYPIN 2\n", SscardRequest(Function.VERIFY_PIN, Encoding.GBK, itype=2)),
        (b"SSCARD/1 GBK CHANGEPIN 4\n", SscardRequest(Function.CHANGE_PIN, Encoding.GBK, itype=4)),
        (b"SSCARD/1 GBK HSM1 1\n", SscardRequest(Function.HSM1, Encoding.GBK, itype=1)),
        (
            b"SSCARD/1 GBK HSM2 0011223344556677|" + b"A" * 32 + b"\n",
            SscardRequest(Function.HSM2, Encoding.GBK, key="0011223344556677|" + "A" * 32),
        ),
        (b"SSCARD/1 GBK HSM2\n", SscardRequest(Function.HSM2, Encoding.GBK, key="")),
        (b"SSCARD/1 UTF-8 PING\n", SscardRequest(Function.PING, Encoding.UTF8)),
    ],
)
def test_requests_parse(line: bytes, expected: SscardRequest) -> None:
    assert parse_request(line) == expected
    assert parse_request(format_request(expected)) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "printable"),
        (b"\n", "printable"),
        (b"SSCARD/2 GBK READ 1\n", "SSCARD/1"),
        (b"GET / HTTP/1.0\n", "SSCARD/1"),
        (b"SSCARD/1 GBK\n", "encoding and a function"),
        (b"SSCARD/1 LATIN1 READ 1\n", "GBK or UTF-8"),
        (b"SSCARD/1 GBK READCARD 1\n", "unknown function"),
        (b"SSCARD/1 GBK READ\n", "one iType"),
        (b"SSCARD/1 GBK READ 0\n", "iType"),
        (b"SSCARD/1 GBK READ 5\n", "iType"),
        (b"SSCARD/1 GBK READ 12\n", "iType"),
        (b"SSCARD/1 GBK READ 1 2\n", "one iType"),
        (b"SSCARD/1 GBK PING 1\n", "no argument"),
        (b"SSCARD/1 GBK HSM2 a b\n", "one key"),
        (b"SSCARD/1 GBK HSM2 " + b"A" * 129 + b"\n", "longer"),
        (b"SSCARD/1 GBK READ\t1\n", "printable"),
        (b"SSCARD/1 GBK READ 1\r\n", "printable"),
        (b"SSCARD/1 GBK READ 1\n" + b"x" * 300, "longer"),
        ("SSCARD/1 GBK READ １\n".encode(), "printable"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(SscardRequestError) as caught:
        parse_request(line)
    assert reason in caught.value.reason
    assert proto.error_answer(caught.value)[0] == proto.BAD_PARAMETER


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_are_refused(line: bytes) -> None:
    try:
        request = parse_request(line)
    except SscardRequestError:
        return
    assert parse_request(format_request(request)) == request


def test_answers_carry_names_in_the_callers_encoding() -> None:
    text = "500100|500101199001011234|D2143569X|0110...|张三丰|86|3.00|"
    gbk = format_answer(0, text, Encoding.GBK)
    assert gbk == b"0 " + text.encode("gbk") + b"\n"
    assert b"\n" not in gbk[:-1]
    assert parse_answer(gbk).text.decode("gbk") == text
    utf8 = format_answer(0, text, Encoding.UTF8)
    assert parse_answer(utf8).text.decode("utf-8") == text
    refused = parse_answer(format_answer(-27266, "card_error: 6A82", Encoding.GBK))
    assert refused.code == -27266 and refused.text == b"card_error: 6A82"


def test_answers_never_carry_control_characters_or_overflow_the_buffer() -> None:
    line = format_answer(0, "a\nb\rc\x1bd", Encoding.UTF8)
    assert line == b"0 a b c d\n"
    long = format_answer(0, "名" * 600, Encoding.GBK)  # 1200 bytes in GBK
    answer = parse_answer(long)
    assert answer.code == proto.BAD_ANSWER and len(long) <= proto.MAX_ANSWER
    assert len(format_answer(0, "名" * 511, Encoding.GBK)) == 2 + 1022 + 1
    with pytest.raises(ValueError):
        format_answer(1, "", Encoding.GBK)


@pytest.mark.parametrize(
    "line",
    [b"0 ok", b"0ok\n", b"+1 x\n", b"-0 x\n", b"-01 x\n", b"-12345678 x\n", b"x\n", b"0 a\x01\n"],
)
def test_malformed_answers_are_refused(line: bytes) -> None:
    with pytest.raises(SscardAnswerError):
        parse_answer(line)


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("not_ssc", ldt33.WRONG_CARD_TYPE),
        ("pin_wrong", ldt33.PIN_WRONG),
        ("pin_blocked", ldt33.PIN_BLOCKED),
        ("pin_cancelled", proto.PIN_NOT_ENTERED),
        ("card_removed", ldt33.NO_ANSWER),
        ("no_card", ldt33.NO_CARD),
        ("not_authentic", ldt33.INTERNAL_AUTH_FAILED),
        ("blocked", -0x9303),
        ("hotlisted", ldt33.WRONG_CARD_TYPE),
        ("card_expired", ldt33.WRONG_CARD_TYPE),
        ("journal_full", ldt33.READER_CONNECTION),
        ("internal_error", ldt33.READER_CONNECTION),
        ("pcsc_unavailable", ldt33.READER_CONNECTION),
    ],
)
def test_outcomes_map_to_ldt33_codes(reason: str, code: int) -> None:
    assert proto.outcome_code(reason) == code


def test_errors_map_to_ldt33_codes() -> None:
    assert proto.error_answer(NoCardError("x"))[0] == ldt33.NO_CARD
    assert proto.error_answer(CardRemovedError("x"))[0] == ldt33.NO_ANSWER
    assert proto.error_answer(NotSocialSecurityCardError("x", 0x6A82))[0] == -1
    assert proto.error_answer(CardError("x", 0x6A82)) == (-27266, "card_error: x")
    assert proto.error_answer(PinEntryCancelled("x"))[0] == proto.PIN_NOT_ENTERED
