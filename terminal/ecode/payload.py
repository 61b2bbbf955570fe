"""The electronic social security card code (电子社保卡 二维码): layout, signing, parsing.

A code is ``SC1:`` followed by the Base45 text (RFC 9285) of a compact binary payload and
its 64-byte signature ``r || s`` over every byte before it; docs/ecode.md gives the layout
byte by byte and the measured QR size (version 7 at error correction M for every code the
issuing side may produce: :data:`MAX_TEXT_LENGTH` characters in alphanumeric mode).

:func:`parse_code` only checks the form; what a code is worth (issuer trusted, signature,
time window, hotlist, replay) is :mod:`terminal.ecode.verify`. It raises
:class:`NotOurCodeError` for a text without our prefix and :class:`MalformedCodeError` (or
its subclass :class:`Base45Error`) for everything else; nothing else escapes.
"""

from __future__ import annotations

import enum
import secrets
import struct
from dataclasses import dataclass, field

from terminal.crypto.signing import Algorithm, PrivateKey, sign
from terminal.ecode import base45
from terminal.errors import MalformedCodeError, NotOurCodeError
from terminal.ssc.cardnumber import is_valid as card_number_is_valid
from terminal.ssc.fields import CardCategory

PREFIX = "SC1:"
"""Marks a scanned text as an onecard code (as ``HC1:`` marks an EU DCC); QR alphanumeric."""

FORMAT_VERSION = 1
KEY_ID_LENGTH = 8
NONCE_LENGTH = 8
TOKEN_LENGTH = 16
CARD_NUMBER_LENGTH = 9
SIGNATURE_LENGTH = 64
MAX_VALIDITY = 120
DEFAULT_VALIDITY = 60
MAX_TEXT_LENGTH = 178
"""Alphanumeric capacity of a QR code version 7 at error correction M (ISO/IEC 18004
table 7, measured with the ``qrcode`` package in tests/unit/test_ecode_payload.py)."""

_ALGORITHM_BYTE = {Algorithm.SM2: 0x01, Algorithm.ECDSA_P256: 0x02}
_BYTE_ALGORITHM = {v: k for k, v in _ALGORITHM_BYTE.items()}
# issued-at (uint32), validity (uint16), both big-endian
_TIME = struct.Struct(">IH")


class CardReferenceKind(enum.IntEnum):
    """How a code names its card: the card number in clear, or its keyed card token
    (:mod:`terminal.privacy.cardtoken`), which says nothing about the card without the token key."""

    CARD_NUMBER = 0x01
    CARD_TOKEN = 0x02


def _bad(reason: str) -> MalformedCodeError:
    return MalformedCodeError(reason)


@dataclass(frozen=True)
class CodePayload:
    """The signed content of an electronic social security card code.

    Exactly one of ``card_number`` (9 characters, check character included) and
    ``card_token`` (16 bytes) is set. ``issued_at`` is Unix seconds; the code is good for
    ``validity`` seconds (1..120) after it. ``nonce`` tells apart two codes of one card
    issued in the same second. ``scope`` optionally limits the code to one service (a
    service item code, printable ASCII). A payload that breaks the layout cannot be built:
    the constructor raises :class:`MalformedCodeError`.
    """

    algorithm: Algorithm
    issuer_key_id: bytes
    region: str
    category: CardCategory
    issued_at: int
    card_number: str | None = None
    card_token: bytes | None = None
    validity: int = DEFAULT_VALIDITY
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(NONCE_LENGTH))
    scope: str | None = None
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise _bad(f"payload version {self.version} is not {FORMAT_VERSION}")
        if not isinstance(self.algorithm, Algorithm):
            raise _bad(f"unknown signature algorithm {self.algorithm!r}")
        if not isinstance(self.issuer_key_id, bytes) or len(self.issuer_key_id) != KEY_ID_LENGTH:
            raise _bad(f"issuer key id must be {KEY_ID_LENGTH} bytes")
        if not (
            isinstance(self.region, str)
            and len(self.region) == 6
            and self.region.isascii()
            and self.region.isdigit()
        ):
            raise _bad(f"region must be 6 digits, got {self.region!r}")
        if not isinstance(self.category, CardCategory):
            raise _bad(f"unknown card category {self.category!r}")
        if (self.card_number is None) == (self.card_token is None):
            raise _bad("a code names its card by exactly one of card number and card token")
        if self.card_number is not None and not (
            isinstance(self.card_number, str)
            and self.card_number.isascii()
            and card_number_is_valid(self.card_number)
        ):
            raise _bad("card number is not 9 characters with a correct check character")
        if self.card_token is not None and (
            not isinstance(self.card_token, bytes) or len(self.card_token) != TOKEN_LENGTH
        ):
            raise _bad(f"card token must be {TOKEN_LENGTH} bytes")
        if not isinstance(self.issued_at, int) or not 0 <= self.issued_at <= 0xFFFFFFFF:
            raise _bad(f"issued-at {self.issued_at!r} is not a 32-bit Unix time")
        if not isinstance(self.validity, int) or not 1 <= self.validity <= MAX_VALIDITY:
            raise _bad(f"validity {self.validity!r} is not 1..{MAX_VALIDITY} seconds")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_LENGTH:
            raise _bad(f"nonce must be {NONCE_LENGTH} bytes")
        if self.scope is not None and not (
            isinstance(self.scope, str)
            and 1 <= len(self.scope) <= 255
            and all(0x21 <= ord(ch) <= 0x7E for ch in self.scope)
        ):
            raise _bad("scope must be 1..255 printable ASCII characters")

    @property
    def reference_kind(self) -> CardReferenceKind:
        """Whether the code carries the card number or the card token."""
        if self.card_number is not None:
            return CardReferenceKind.CARD_NUMBER
        return CardReferenceKind.CARD_TOKEN

    @property
    def card_reference(self) -> bytes:
        """The card as the code names it, in bytes (region, kind, number or token): what the
        replay cache knows the card by."""
        return _card_reference_bytes(self)

    @property
    def expires_at(self) -> int:
        """The last Unix second of the code's own validity window (skew not included)."""
        return self.issued_at + self.validity


@dataclass(frozen=True)
class SignedCode:
    """A parsed code: its payload, the 64-byte signature ``r || s`` and the bytes it signs."""

    payload: CodePayload
    signature: bytes
    signed_bytes: bytes


def _card_reference_bytes(p: CodePayload) -> bytes:
    region = bytes.fromhex(p.region)  # 6 digits -> 3 BCD bytes
    if p.card_number is not None:
        return region + bytes([CardReferenceKind.CARD_NUMBER]) + p.card_number.encode("ascii")
    assert p.card_token is not None
    return region + bytes([CardReferenceKind.CARD_TOKEN]) + p.card_token


def encode_payload(payload: CodePayload) -> bytes:
    """The bytes a code signs (docs/ecode.md, "Layout"), everything before the signature."""
    scope = payload.scope.encode("ascii") if payload.scope is not None else b""
    return b"".join(
        (
            bytes([payload.version, _ALGORITHM_BYTE[payload.algorithm]]),
            payload.issuer_key_id,
            _card_reference_bytes(payload),
            bytes([int(payload.category.value)]),
            _TIME.pack(payload.issued_at, payload.validity),
            payload.nonce,
            bytes([len(scope)]),
            scope,
        )
    )


def code_text(signed_bytes: bytes, signature: bytes) -> str:
    """The scannable text of signed bytes and their signature: ``SC1:`` + Base45."""
    return PREFIX + base45.encode(signed_bytes + signature)


def sign_code(payload: CodePayload, private_key: PrivateKey, alg: Algorithm | None = None) -> str:
    """Sign ``payload`` with the issuer's key and return the code text to show as a QR code.

    ``alg`` defaults to the payload's algorithm and must agree with it. Raises
    :class:`MalformedCodeError` when the code would not fit a version 7-M QR code
    (:data:`MAX_TEXT_LENGTH`; only a long ``scope`` can do that), and
    :class:`~terminal.errors.CryptoError` for a key that does not suit the algorithm.
    """
    alg = payload.algorithm if alg is None else alg
    if alg is not payload.algorithm:
        raise _bad(f"payload says {payload.algorithm.value} but the key is {alg.value}")
    signed = encode_payload(payload)
    length = len(PREFIX) + base45.encoded_length(len(signed) + SIGNATURE_LENGTH)
    if length > MAX_TEXT_LENGTH:
        raise _bad(f"code would be {length} characters, more than {MAX_TEXT_LENGTH} (QR 7-M)")
    return code_text(signed, sign(alg, private_key, signed))


class _Reader:
    """Cursor over the decoded bytes; every short read is a :class:`MalformedCodeError`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise _bad(f"code ends inside {what} (byte {self.pos}, {n} needed)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _decode_region(bcd: bytes) -> str:
    digits = bcd.hex()
    if not digits.isdigit():
        raise _bad(f"region {digits!r} is not 3 BCD bytes")
    return digits


def decode_payload(data: bytes) -> SignedCode:
    """Split the decoded bytes of a code into its payload and signature (no crypto)."""
    r = _Reader(data)
    version, alg_byte = r.take(2, "the header")
    if version != FORMAT_VERSION:
        raise _bad(f"payload version {version} is not {FORMAT_VERSION}")
    alg = _BYTE_ALGORITHM.get(alg_byte)
    if alg is None:
        raise _bad(f"unknown algorithm byte {alg_byte:#04x}")
    key_id = r.take(KEY_ID_LENGTH, "the issuer key id")
    region = _decode_region(r.take(3, "the region"))
    (kind,) = r.take(1, "the card reference kind")
    card_number: str | None = None
    card_token: bytes | None = None
    if kind == CardReferenceKind.CARD_NUMBER:
        raw = r.take(CARD_NUMBER_LENGTH, "the card number")
        if not all(0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A for b in raw):
            raise _bad("card number is not 9 characters 0-9 A-Z")
        card_number = raw.decode("ascii")
    elif kind == CardReferenceKind.CARD_TOKEN:
        card_token = r.take(TOKEN_LENGTH, "the card token")
    else:
        raise _bad(f"unknown card reference kind {kind:#04x}")
    (category_byte,) = r.take(1, "the card category")
    category = CardCategory.from_code(str(category_byte)) if 1 <= category_byte <= 9 else None
    if category is None:
        raise _bad(f"unknown card category {category_byte:#04x}")
    issued_at, validity = _TIME.unpack(r.take(_TIME.size, "issued-at and validity"))
    nonce = r.take(NONCE_LENGTH, "the nonce")
    (scope_length,) = r.take(1, "the scope length")
    scope: str | None = None
    if scope_length:
        raw_scope = r.take(scope_length, "the scope")
        if not all(0x21 <= b <= 0x7E for b in raw_scope):
            raise _bad("scope is not printable ASCII")
        scope = raw_scope.decode("ascii")
    signed_end = r.pos
    signature = r.take(SIGNATURE_LENGTH, "the signature")
    if r.pos != len(data):
        raise _bad(f"{len(data) - r.pos} byte(s) after the signature")
    payload = CodePayload(
        algorithm=alg,
        issuer_key_id=key_id,
        region=region,
        category=category,
        issued_at=issued_at,
        card_number=card_number,
        card_token=card_token,
        validity=validity,
        nonce=nonce,
        scope=scope,
        version=version,
    )
    return SignedCode(payload=payload, signature=signature, signed_bytes=data[:signed_end])


def parse_code(text: str) -> SignedCode:
    """Parse a scanned code text: prefix, Base45, layout (docs/ecode.md). Form only."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise NotOurCodeError(f"not an onecard electronic card code (no {PREFIX!r} prefix)")
    if len(text) > MAX_TEXT_LENGTH:
        raise _bad(f"code is {len(text)} characters, more than any code issued ({MAX_TEXT_LENGTH})")
    return decode_payload(base45.decode(text[len(PREFIX) :]))
