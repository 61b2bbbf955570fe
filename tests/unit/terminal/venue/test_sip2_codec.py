"""The SIP2 codec (terminal/venue/sip2.py): builds, parses, checksums, and every refusal.

Checksum examples are the SIP2 specification's own (``941AY3AZFDFA``, ``9900401.00AY1AZ
FCA5``, the ``63`` and ``01`` examples) and pysip2's independent ``calculate_checksum``. The
specification's ``24``/``64``/``98`` examples lost blanks in print, so their checksums do
not add up: their layout is read without their ``AY``/``AZ`` trailer, error detection off.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, bounded, total
from hypothesis import given, settings
from hypothesis import strategies as st
from pysip2.codec import calculate_checksum

from terminal.errors import ConfigError
from terminal.venue.sip2 import (
    MAX_MESSAGE_LENGTH,
    NAME_MASK,
    AcsStatus,
    Login,
    LoginResponse,
    PatronFlag,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStanding,
    PatronStatusRequest,
    PatronStatusResponse,
    ResendRequest,
    ScStatus,
    Sip2ChecksumError,
    Sip2Error,
    Sip2FormatError,
    Sip2Framer,
    Sip2ResendRequested,
    Sip2SequenceError,
    checksum,
    encode,
    parse_message,
    parse_response,
    parse_standing,
    patron_status_field,
)

WHEN = dt.datetime(2026, 12, 6, 9, 30, 5)
SPEC_24 = (
    b"24              00119960212    100239AO|AA104000000105|AEJohn Doe|"
    b"AFScreen Message|AGCheck Print message|AY2AZDFC4"
)
SPEC_64 = (
    b"64              00119980723    104009000100000002000100020000"
    b"AOInstitutionID for PatronID|AAPatronID|AEPatron Name|BZ0002|CA0003|CB0010|BLY|"
    b"ASItemID1 for PatronID|AUChargeItem1|AUChargeItem2|BDHome Address|BEE Mail Address|"
    b"BFHome Phone for PatronID|AFScreenMessage 0 for PatronID, Language 1|"
    b"AGPrint Line 0 for PatronID, Language 1|AY4AZ608F"
)
SPEC_98 = (
    b"98YYYNYN01000319960214    1447001.00AOID_21|AMCentral Library|ANtty30|"
    b"AFScreen Message|AGPrint Message|AY1AZDA74"
)


def sealed(body: bytes, sequence: int | None = 0) -> bytes:
    """``body`` closed with AY/AZ as an ACS would, and CR."""
    prefix = body + (b"AY%dAZ" % sequence if sequence is not None else b"AZ")
    return prefix + checksum(prefix).encode() + b"\r"


def status_24(flags: str = " " * 14, fields: bytes = b"BLY|", charset: str = "utf-8") -> bytes:
    body = (
        b"24"
        + flags.encode()
        + b"00020261206    093005AOCNLIB|AA0001|AE"
        + ("张三".encode(charset) + b"|" + fields)
    )
    return sealed(body)


# --- checksum -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        b"941AY3AZFDFA",
        b"990 402.00AY1AZFCB4",
        b"9900401.00AY1AZFCA5",
        b"6300119980723    091905Y         AOInstitutionID|AAPatronID|BP00001|BQ00005|AY1AZEA83",
        b"01N19960213    162352AO|ALCARD BLOCK TEST|AA104000000705|AC|AY2AZF02F",
    ],
)
def test_checksum_of_the_specification_examples(message: bytes) -> None:
    assert checksum(message[:-4]) == message[-4:].decode()


@given(st.binary(max_size=300))
@settings(max_examples=EXAMPLES, deadline=DEADLINE)
def test_checksum_agrees_with_pysip2(prefix: bytes) -> None:
    assert checksum(prefix) == calculate_checksum(prefix)


# --- building -----------------------------------------------------------------------------


def test_sc_status_is_the_specification_example() -> None:
    assert encode(ScStatus(0, 40, "1.00"), sequence=1, charset="utf-8") == (
        b"9900401.00AY1AZFCA5\r"
    )


def test_login_bytes() -> None:
    raw = encode(Login("gate01", "secret", "lobby"), sequence=0, charset="utf-8")
    assert raw == sealed(b"9300CNgate01|COsecret|CPlobby|")
    assert encode(Login("u", "p"), sequence=None, charset="utf-8") == b"9300CNu|COp|\r"


def test_patron_status_request_bytes() -> None:
    raw = encode(PatronStatusRequest("CNLIB", "A12345678", WHEN), sequence=7, charset="utf-8")
    assert raw == sealed(b"2300020261206    093005AOCNLIB|AAA12345678|AC|AD|", 7)


def test_patron_information_request_leaves_an_empty_patron_password_out() -> None:
    raw = encode(PatronInformationRequest("CNLIB", "A1", WHEN), sequence=3, charset="utf-8")
    assert raw == sealed(b"6300020261206    093005" + b" " * 10 + b"AOCNLIB|AAA1|AC|", 3)
    with_password = PatronInformationRequest("CNLIB", "A1", WHEN, patron_password="1234")
    assert b"AD1234|" in encode(with_password, sequence=3, charset="utf-8")


def test_requests_round_trip_through_pysip2() -> None:
    from pysip2.codec import decode_message

    for charset in ("utf-8", "gbk"):
        raw = encode(Login("图书馆闸机", "pw", "一楼"), sequence=4, charset=charset)
        decoded = decode_message(raw, encoding=charset)
        assert decoded.sequence_number == 4
        assert decoded.message.login_user_id == "图书馆闸机"
        assert decoded.message.location_code == "一楼"
        raw = encode(PatronStatusRequest("图书馆", "A1", WHEN), sequence=5, charset=charset)
        assert decode_message(raw, encoding=charset).message.institution_id == "图书馆"


@pytest.mark.parametrize(
    "request_",
    [
        Login("a|b", "p"),
        Login("a", "p\r"),
        Login("a", "p", uid_algorithm="00"),
        PatronStatusRequest("CNLIB", "A|1", WHEN),
        PatronStatusRequest("CNLIB", "A1", WHEN, language="cn"),
        ScStatus(3),
        ScStatus(0, 1000),
        ScStatus(0, 0, "2.0"),
    ],
)
def test_values_that_cannot_be_sent(request_: object) -> None:
    with pytest.raises(Sip2FormatError):
        encode(request_, sequence=0, charset="utf-8")  # type: ignore[arg-type]


def test_bad_sequence_and_charset() -> None:
    with pytest.raises(Sip2FormatError):
        encode(Login("a", "b"), sequence=10, charset="utf-8")
    with pytest.raises(ConfigError):
        encode(Login("a", "b"), sequence=0, charset="latin-1")
    with pytest.raises(ConfigError):
        parse_message(b"941AY3AZFDFA", charset="big5", sequence=3)


def test_text_outside_gbk_cannot_be_sent() -> None:
    with pytest.raises(Sip2FormatError):
        encode(Login("😀", "b"), sequence=0, charset="gbk")


# --- parsing ------------------------------------------------------------------------------


def test_login_response() -> None:
    assert parse_message(b"941AY3AZFDFA", charset="utf-8", sequence=3) == LoginResponse(True)
    assert parse_message(sealed(b"940", 1), charset="utf-8", sequence=1) == LoginResponse(False)


def test_specification_24_layout() -> None:
    answer = parse_message(SPEC_24[:-9], charset="utf-8", sequence=2, error_detection=False)
    assert isinstance(answer, PatronStatusResponse)
    assert answer.flags == frozenset()
    assert answer.language == "001"
    assert answer.transaction_date == "19960212    100239"
    assert answer.valid_patron is None
    assert answer.screen_message == ("Screen Message",)
    assert "John" not in repr(answer)


def test_specification_64_layout() -> None:
    answer = parse_message(SPEC_64[:-9], charset="utf-8", sequence=4, error_detection=False)
    assert isinstance(answer, PatronInformationResponse)
    assert (answer.hold_items_count, answer.overdue_items_count) == (1, 0)
    assert (answer.charged_items_count, answer.fine_items_count) == (2, 1)
    assert (answer.recall_items_count, answer.unavailable_holds_count) == (2, 0)
    assert answer.valid_patron is True
    assert "Patron Name" not in repr(answer)
    assert "Home Address" not in repr(answer)


def test_specification_98_layout() -> None:
    answer = parse_message(SPEC_98[:-9], charset="utf-8", sequence=1, error_detection=False)
    assert isinstance(answer, AcsStatus)
    assert answer.online and answer.checkin_ok and answer.checkout_ok
    assert not answer.renewal_policy and answer.status_update_ok and not answer.offline_ok
    assert (answer.timeout_period, answer.retries_allowed) == ("010", "003")
    assert answer.protocol_version == "1.00"
    assert answer.institution_id == "ID_21"
    assert answer.library_name == "Central Library"
    assert answer.supported_messages == ""  # 1.00: no BX


def test_a_blocked_patron_with_fines() -> None:
    flags = patron_status_field({PatronFlag.too_many_items_overdue, PatronFlag.recall_overdue})
    raw = status_24(flags, b"BLY|CQN|BHCNY|BV12.50|AF\xe6\xac\xa2\xe8\xbf\x8e|AGline|")
    answer = parse_standing(raw, charset="utf-8", sequence=0)
    assert answer == PatronStanding(
        valid_patron=True,
        flags=frozenset({PatronFlag.too_many_items_overdue, PatronFlag.recall_overdue}),
        fee_amount=Decimal("12.50"),
        currency="CNY",
        screen_message="欢迎",
    )


def test_the_name_is_masked_in_screen_messages() -> None:
    raw = status_24(fields="BLY|AF欢迎，张三|AG张三 借阅单|".encode())
    answer = parse_message(raw, charset="utf-8", sequence=0)
    assert isinstance(answer, PatronStatusResponse)
    assert answer.screen_message == (f"欢迎，{NAME_MASK}",)
    assert answer.print_line == (f"{NAME_MASK} 借阅单",)
    assert "张三" not in repr(answer)


def test_gbk_answer_with_a_delimiter_byte_inside_a_character() -> None:
    # 亅 is 81 7C in GBK: its second byte is "|". Splitting bytes would cut the field there.
    fields = "BLY|AF请到亅服务台|".encode("gbk")
    raw = status_24(fields=fields, charset="gbk")
    assert b"\x81|" in raw
    answer = parse_standing(raw, charset="gbk", sequence=0)
    assert answer.screen_message == "请到亅服务台"
    with pytest.raises(Sip2FormatError):
        parse_standing(raw, charset="utf-8", sequence=0)


def test_crlf_answers_and_unknown_fields_are_read() -> None:
    raw = status_24(fields=b"BLY|XYvendor extension|ZZ|")
    framer = Sip2Framer()
    assert framer.feed(raw + b"\n" + raw) == [raw[:-1], raw[:-1]]
    assert parse_standing(raw, charset="utf-8", sequence=0).valid_patron is True


def test_resend_request() -> None:
    assert parse_message(sealed(b"96", None), charset="utf-8", sequence=4) == ResendRequest()
    with pytest.raises(Sip2ResendRequested):
        parse_response(sealed(b"96", None), LoginResponse, charset="utf-8", sequence=4)


# --- refusals -----------------------------------------------------------------------------


def refused(raw: bytes, error: type[Sip2Error], *, sequence: int | None = 0) -> str:
    with pytest.raises(error) as caught:
        parse_message(raw, charset="utf-8", sequence=sequence)
    return caught.value.reason


def test_wrong_checksum() -> None:
    raw = bytearray(status_24())
    raw[-2] = ord("0") if raw[-2] != ord("0") else ord("1")
    assert "does not add up" in refused(bytes(raw), Sip2ChecksumError)


def test_a_damaged_byte_is_a_checksum_error() -> None:
    raw = bytearray(status_24())
    raw[5] ^= 0x01
    refused(bytes(raw), Sip2ChecksumError)


def test_no_checksum_with_error_detection_on() -> None:
    refused(b"941\r", Sip2ChecksumError)
    assert parse_message(b"941\r", charset="utf-8", sequence=None, error_detection=False)


def test_sequence_number_must_match() -> None:
    assert "sequence number 3" in refused(b"941AY3AZFDFA", Sip2SequenceError, sequence=4)
    refused(sealed(b"941", None), Sip2SequenceError, sequence=4)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "no message id"),
        (b"9", "no message id"),
        (b"95", "unknown"),
        (b"64" + b" " * 14, "truncated"),
        (b"942", "malformed"),
        (b"9411", "bytes after"),
        (b"24" + b"N" * 14 + b"00020261206    093005AOx|AAy|AEz|", "patron status"),
        (b"24" + b" " * 14 + b"0x020261206    093005AOx|AAy|AEz|", "language"),
        (b"24" + b" " * 14 + b"00020261206????093005AOx|AAy|AEz|", "transaction date"),
        (b"24" + b" " * 14 + b"000202612061   093005AOx|AAy|AEz|", "transaction date"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|", "AE is missing"),
        (b"24" + b" " * 14 + b"00020261206    093005AAy|AEz|", "AO is missing"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|AEz", "no closing"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|AEz|BLX|", "not Y or N"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|AEz|BV1e5|", "not an amount"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|AEz|BHyuan|", "three letters"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|AEz|BLY|BLN|", "twice"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|AEz|\xff|", "not utf-8"),
        (b"24" + b" " * 14 + b"00020261206    093005AOx|AAy|AEz|!!a|", "identifier"),
        (b"64" + b" " * 14 + b"00020261206    093005000X" + b"0" * 20, "count"),
        (b"98YYYNYN0100031996021" + b"4    1447001.00AOa|BXYNZ|", "supported"),
        (b"96AF|", "fields"),
    ],
)
def test_malformed_answers(body: bytes, why: str) -> None:
    sequence = None if body.startswith(b"96") else 0
    raw = sealed(body, sequence)
    assert why in refused(raw, Sip2FormatError, sequence=sequence)


def test_cr_or_nul_inside_and_oversize() -> None:
    refused(b"94\r1AY3AZFDFA", Sip2FormatError)
    refused(b"94\x001AY3AZFDFA", Sip2FormatError)
    refused(b"24" + b" " * MAX_MESSAGE_LENGTH, Sip2FormatError)


def test_the_answer_must_be_the_one_asked_for() -> None:
    with pytest.raises(Sip2FormatError, match="expected a LoginResponse"):
        parse_response(status_24(), LoginResponse, charset="utf-8", sequence=0)
    with pytest.raises(Sip2FormatError):
        parse_standing(b"941AY3AZFDFA", charset="utf-8", sequence=3)


# --- framing ------------------------------------------------------------------------------


def test_framer_joins_and_splits() -> None:
    framer = Sip2Framer()
    raw = status_24()
    assert framer.feed(raw[:10]) == []
    assert framer.pending == 10
    assert framer.feed(raw[10:] + b"941AY3AZFDFA\r94") == [raw[:-1], b"941AY3AZFDFA"]
    assert framer.pending == 2


def test_framer_refuses_an_endless_message_and_stays_refused() -> None:
    framer = Sip2Framer(max_length=64)
    with pytest.raises(Sip2FormatError, match="without a CR"):
        for _ in range(10):
            framer.feed(b"x" * 16)
    assert framer.pending == 0
    with pytest.raises(Sip2FormatError):
        framer.feed(b"941AY3AZFDFA\r")
    with pytest.raises(Sip2FormatError, match="over 64"):
        Sip2Framer(max_length=64).feed(b"y" * 80 + b"\r")


# --- hostile bytes ------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"|",
        b"AY",
        b"AZ",
        b"24",
        b"64",
        b"94",
        b"98",
        b"96",
        b"Y" * 14,
        b" " * 14,
        b"20261206    093005",
        b"AO",
        b"AE",
        b"BL",
        b"BV",
        "亅".encode("gbk"),
        b"\x81",
        b"\xff",
        b"\x00",
    ]
)
_hostile = st.one_of(
    st.binary(max_size=200),
    st.lists(_pieces | st.binary(max_size=8), max_size=40).map(b"".join),
    st.builds(
        lambda body, seq: sealed(body, seq),
        st.lists(_pieces | st.binary(max_size=6), max_size=30).map(b"".join),
        st.none() | st.integers(0, 9),
    ),
)


@given(_hostile, st.sampled_from(["utf-8", "gbk"]), st.none() | st.integers(0, 9), st.booleans())
@settings(max_examples=EXAMPLES * 5, deadline=DEADLINE)
def test_hostile_bytes_give_messages_or_sip2_errors(
    raw: bytes, charset: str, sequence: int | None, detect: bool
) -> None:
    def parse_all(data: bytes) -> None:
        for message in Sip2Framer(max_length=256).feed(data):
            parse_message(message, charset=charset, sequence=sequence, error_detection=detect)

    total(parse_all, raw, Sip2Error)
    total(
        lambda data: parse_standing(
            data, charset=charset, sequence=sequence, error_detection=detect
        ),
        raw,
        Sip2Error,
    )


@pytest.mark.parametrize(
    "raw",
    [b"x" * (1 << 20), b"24" + b"|" * (1 << 20), (b"AF" + b"a" * 200 + b"|") * 5000],
    ids=["1 MB without CR", "1 MB of delimiters", "a megabyte of fields"],
)
def test_a_megabyte_is_refused_in_bounded_time_and_memory(raw: bytes) -> None:
    def framed() -> None:
        with pytest.raises(Sip2FormatError):
            Sip2Framer().feed(raw)

    def parsed() -> None:
        with pytest.raises(Sip2Error):
            parse_message(raw, charset="gbk", sequence=None, error_detection=False)

    bounded(framed)
    bounded(parsed)
