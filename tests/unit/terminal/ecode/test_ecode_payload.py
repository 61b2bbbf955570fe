"""The electronic-card code layout (docs/ecode.md): round trips, byte layout, QR size,
strict parsing."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import qrcode
import qrcode.util
from hypothesis import given, settings
from hypothesis import strategies as st
from qrcode.constants import ERROR_CORRECT_M

from firmware_sim.ecode_issuing import issue_code, make_issuer_key
from terminal.crypto.signing import Algorithm, verify
from terminal.ecode import base45
from terminal.ecode.payload import (
    MAX_TEXT_LENGTH,
    PREFIX,
    CardReferenceKind,
    CodePayload,
    code_text,
    encode_payload,
    parse_code,
    sign_code,
)
from terminal.errors import MalformedCodeError, NotOurCodeError, ParseError
from terminal.ssc.fields import CardCategory

CARD = "D2143569X"  # the spec's worked example: body D2143569, check X
TOKEN = bytes(range(16))
NOW = 1_795_000_000


@pytest.fixture(scope="module", params=list(Algorithm), ids=lambda a: a.value)
def issuer(request: pytest.FixtureRequest) -> tuple[Algorithm, object, bytes]:
    key, key_id = make_issuer_key(request.param)
    return request.param, key, key_id


def _payload(alg: Algorithm = Algorithm.SM2, **kw: object) -> CodePayload:
    fields: dict[str, object] = {
        "algorithm": alg,
        "issuer_key_id": bytes.fromhex("0102030405060708"),
        "region": "500101",
        "category": CardCategory.ADULT,
        "issued_at": NOW,
        "card_number": CARD,
        "nonce": bytes.fromhex("A1A2A3A4A5A6A7A8"),
    }
    fields.update(kw)
    return CodePayload(**fields)  # type: ignore[arg-type]


def qr_version(text: str) -> int:
    """The smallest QR version at error correction M holding ``text`` in alphanumeric mode."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    qr.add_data(qrcode.util.QRData(text, mode=qrcode.util.MODE_ALPHA_NUM))
    qr.make(fit=True)
    assert qr.data_list[0].mode == qrcode.util.MODE_ALPHA_NUM
    return qr.version


# --- layout ---------------------------------------------------------------------------------


def test_byte_layout_card_number() -> None:
    raw = encode_payload(_payload(scope="S01"))
    assert raw.hex().upper() == (
        "01"  # version
        "01"  # algorithm SM2
        "0102030405060708"  # issuer key id
        "500101"  # region BCD
        "01"  # card reference: card number
        + b"D2143569X".hex().upper()
        + "03"  # category adult
        + f"{NOW:08X}"  # issued-at
        + "003C"  # validity 60 s
        + "A1A2A3A4A5A6A7A8"  # nonce
        + "03"
        + b"S01".hex().upper()  # scope
    )
    assert len(encode_payload(_payload())) == 39


def test_byte_layout_card_token() -> None:
    raw = encode_payload(_payload(Algorithm.ECDSA_P256, card_number=None, card_token=TOKEN))
    assert raw[1] == 0x02
    assert raw[13] == CardReferenceKind.CARD_TOKEN
    assert raw[14:30] == TOKEN
    assert len(raw) == 46


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("card", [CARD, TOKEN], ids=["number", "token"])
@pytest.mark.parametrize("scope", [None, "S01"])
def test_round_trip(issuer: tuple[Algorithm, object, bytes], card: object, scope: object) -> None:
    alg, key, key_id = issuer
    text = issue_code(key, key_id, alg, "510104", card, "2", NOW, 90, scope)  # type: ignore[arg-type]
    assert text.startswith(PREFIX)
    code = parse_code(text)
    p = code.payload
    assert (p.algorithm, p.issuer_key_id, p.region, p.category) == (
        alg,
        key_id,
        "510104",
        CardCategory.STUDENT,
    )
    assert (p.issued_at, p.validity, p.scope) == (NOW, 90, scope)
    assert (p.card_number if isinstance(card, str) else p.card_token) == card
    assert code.signed_bytes == encode_payload(p)
    from terminal.crypto.signing import public_key_bytes

    assert verify(alg, public_key_bytes(key), code.signed_bytes, code.signature)  # type: ignore[arg-type]
    assert p.card_reference[:3] == bytes.fromhex("510104")


def test_fresh_nonce_per_code(issuer: tuple[Algorithm, object, bytes]) -> None:
    alg, key, key_id = issuer
    a = parse_code(issue_code(key, key_id, alg, "500101", CARD, "3", NOW))  # type: ignore[arg-type]
    b = parse_code(issue_code(key, key_id, alg, "500101", CARD, "3", NOW))  # type: ignore[arg-type]
    assert a.payload.nonce != b.payload.nonce


# --- QR size --------------------------------------------------------------------------------


def test_qr_version_is_7_at_m(issuer: tuple[Algorithm, object, bytes]) -> None:
    alg, key, key_id = issuer
    number = issue_code(key, key_id, alg, "500101", CARD, "3", NOW)  # type: ignore[arg-type]
    token = issue_code(key, key_id, alg, "500101", TOKEN, "3", NOW)  # type: ignore[arg-type]
    longest = issue_code(key, key_id, alg, "500101", CARD, "3", NOW, scope="S" * 13)  # type: ignore[arg-type]
    assert (len(number), len(token), len(longest)) == (159, 169, MAX_TEXT_LENGTH)
    assert qr_version(number) == 7
    assert qr_version(token) == 7
    assert qr_version(longest) == 7
    # and MAX_TEXT_LENGTH is exactly what 7-M holds in alphanumeric mode
    assert qr_version("A" * MAX_TEXT_LENGTH) == 7
    assert qr_version("A" * (MAX_TEXT_LENGTH + 1)) == 8


def test_sign_refuses_a_code_beyond_7m(issuer: tuple[Algorithm, object, bytes]) -> None:
    alg, key, key_id = issuer
    with pytest.raises(MalformedCodeError, match="QR 7-M"):
        issue_code(key, key_id, alg, "500101", TOKEN, "3", NOW, scope="S" * 7)  # type: ignore[arg-type]


def test_sign_refuses_algorithm_mismatch(issuer: tuple[Algorithm, object, bytes]) -> None:
    alg, key, _ = issuer
    other = next(a for a in Algorithm if a is not alg)
    with pytest.raises(MalformedCodeError):
        sign_code(_payload(alg), key, other)  # type: ignore[arg-type]


# --- strict construction and parsing -------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"region": "50010"},
        {"region": "5001AB"},
        {"card_number": "D2143569Y"},  # wrong check character
        {"card_number": None},
        {"card_token": TOKEN},  # both
        {"card_number": None, "card_token": b"short"},
        {"validity": 121},
        {"validity": 0},
        {"issued_at": -1},
        {"issued_at": 1 << 32},
        {"nonce": b"1234"},
        {"issuer_key_id": b"1234"},
        {"scope": "with space"},
        {"scope": "x" * 256},
        {"category": "3"},
        {"version": 2},
    ],
)
def test_payload_rejects(kw: dict[str, object]) -> None:
    with pytest.raises(MalformedCodeError):
        _payload(**kw)


def _text(raw: bytes) -> str:
    return PREFIX + base45.encode(raw)


GOOD = encode_payload(_payload()) + bytes(64)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (GOOD[:-1], "signature"),
        (GOOD + b"\x00", "after the signature"),
        (b"\x02" + GOOD[1:], "version"),
        (GOOD[:1] + b"\x07" + GOOD[2:], "algorithm"),
        (GOOD[:10] + b"\x5a\x01\x01" + GOOD[13:], "BCD"),
        (GOOD[:13] + b"\x03" + GOOD[14:], "reference kind"),
        (GOOD[:14] + b"d2143569X" + GOOD[23:], "0-9 A-Z"),
        (GOOD[:14] + b"D2143569Y" + GOOD[23:], "check character"),
        (GOOD[:23] + b"\x05" + GOOD[24:], "category"),
        (GOOD[:28] + b"\x00\x79" + GOOD[30:], "validity"),
        (GOOD[:38] + b"\x01\x20" + GOOD[39:], "printable"),
        (b"", "header"),
    ],
)
def test_parse_rejects(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedCodeError, match=why):
        parse_code(_text(raw))


def test_parse_good_layout_with_zero_signature() -> None:
    code = parse_code(_text(GOOD))
    assert code.payload == _payload()
    assert code.signature == bytes(64)


@pytest.mark.parametrize("text", ["", "HC1:NCFOXN", "sc1:BB8", "SC2:BB8", "https://x", " SC1:"])
def test_not_our_code(text: str) -> None:
    with pytest.raises(NotOurCodeError):
        parse_code(text)


def test_not_a_string() -> None:
    with pytest.raises(NotOurCodeError):
        parse_code(b"SC1:BB8")  # type: ignore[arg-type]


def test_too_long_text() -> None:
    with pytest.raises(MalformedCodeError, match="more than"):
        parse_code(PREFIX + "0" * MAX_TEXT_LENGTH)


def test_code_text_is_prefix_and_base45() -> None:
    assert code_text(b"AB", b"") == "SC1:BB8"


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_typed_errors_only(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_code(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_typed_errors_only(raw: bytes) -> None:
    with contextlib.suppress(MalformedCodeError):
        parse_code(_text(raw))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(-3, 3),
)
def test_mutated_codes_parse_or_fail_typed(edits: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(GOOD)
    for pos, value in edits:
        raw[pos] = value
    data = bytes(raw[: len(raw) + cut]) if cut < 0 else bytes(raw) + bytes(cut)
    try:
        code = parse_code(_text(data))
    except MalformedCodeError:
        return
    # whatever parses re-encodes to exactly the bytes it came from
    assert code.signed_bytes + code.signature == data
    assert encode_payload(code.payload) == code.signed_bytes
    assert dataclasses.replace(code.payload) == code.payload
