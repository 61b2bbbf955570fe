"""Compact card-verifiable certificates: a fixed binary layout a smart card can hold and a
terminal can check without ASN.1 (byte-by-byte layout in docs/pki.md, section 1).

::

    off  len  field
      0    1  version            01
      1    1  type               01 root, 02 issuer, 03 card
      2    1  algorithm          01 SM2, 02 ECDSA P-256 (subject key and issuer signature)
      3    8  serial
     11    8  issuer key id      key id of the signing key (= subject key id for a root)
     19    8  subject key id     first 8 bytes of SM3(public key)
     27    1  subject length L   1..64
     28    L  subject            root: GBK name; issuer: 6 ASCII digits (region) + GBK name;
                                 card: the 16-byte card identification code (EF05 tag 01)
   28+L    4  not before         BCD YYYYMMDD
   32+L    4  not after          BCD YYYYMMDD
   36+L   65  public key         04 || X || Y
  101+L   64  signature          r || s over bytes 0 .. 100+L, by the issuer's key

A certificate is ``165 + L`` bytes: a card certificate 181, so every certificate fits one
short READ BINARY. :func:`parse_certificate` is strict and raises only
:class:`CertificateError`; it checks the form, never the signature
(:func:`verify_certificate_signature` does, given the issuer's public key).
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from dataclasses import dataclass

from terminal.crypto.signing import (
    Algorithm,
    PrivateKey,
    check_public_key,
    sign,
    verify,
)
from terminal.crypto.sm2 import sm3
from terminal.errors import CertificateError, SignatureFormatError

VERSION = 0x01
SERIAL_LENGTH = 8
KEY_ID_LENGTH = 8
PUBLIC_KEY_LENGTH = 65
SIGNATURE_LENGTH = 64
DATE_LENGTH = 4
MAX_SUBJECT_LENGTH = 64
"""Keeps the largest certificate (229 bytes) inside one short READ BINARY (Le 256)."""
CARD_ID_LENGTH = 16
REGION_LENGTH = 6

_SUBJECT_LENGTH_OFFSET = 1 + 1 + 1 + SERIAL_LENGTH + 2 * KEY_ID_LENGTH  # 27
FIXED_LENGTH = _SUBJECT_LENGTH_OFFSET + 1 + 2 * DATE_LENGTH + PUBLIC_KEY_LENGTH + SIGNATURE_LENGTH
"""Every byte but the subject: 165."""
CARD_CERTIFICATE_LENGTH = FIXED_LENGTH + CARD_ID_LENGTH  # 181
MAX_CERTIFICATE_LENGTH = FIXED_LENGTH + MAX_SUBJECT_LENGTH  # 229


class CertType(enum.IntEnum):
    """Byte 1: what the certificate's subject is."""

    ROOT = 0x01
    ISSUER = 0x02
    CARD = 0x03


ALGORITHM_CODES: dict[int, Algorithm] = {0x01: Algorithm.SM2, 0x02: Algorithm.ECDSA_P256}
_CODE_OF = {alg: code for code, alg in ALGORITHM_CODES.items()}


def key_id(public_key: bytes) -> bytes:
    """The 8-byte key id of a public key ``04 || X || Y``: the first 8 bytes of its SM3 hash
    (SM3 for both algorithms, so one key id names a key whatever its curve)."""
    return sm3(bytes(public_key))[:KEY_ID_LENGTH]


@dataclass(frozen=True)
class Certificate:
    """A parsed certificate. ``tbs`` is every byte the signature covers."""

    version: int
    cert_type: CertType
    algorithm: Algorithm
    serial: bytes
    issuer_key_id: bytes
    subject_key_id: bytes
    subject: bytes
    not_before: dt.date
    not_after: dt.date
    public_key: bytes
    tbs: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        return self.tbs + self.signature

    def is_valid_at(self, day: dt.date) -> bool:
        """True when ``day`` lies in ``not_before .. not_after`` (both days included)."""
        return self.not_before <= day <= self.not_after

    @property
    def is_self_signed(self) -> bool:
        return self.issuer_key_id == self.subject_key_id

    @property
    def region(self) -> str | None:
        """The 6-digit region of an issuer (subject prefix) or a card (first 6 digits of the
        identification code); None for a root."""
        if self.cert_type is CertType.ISSUER:
            return self.subject[:REGION_LENGTH].decode("ascii")
        if self.cert_type is CertType.CARD:
            return self.subject.hex()[:REGION_LENGTH]
        return None

    @property
    def subject_name(self) -> str:
        """Human form of the subject: the root or issuer name, the card id in hex."""
        if self.cert_type is CertType.CARD:
            return self.subject.hex().upper()
        if self.cert_type is CertType.ISSUER:
            name = self.subject[REGION_LENGTH:].decode("gbk")
            return f"{self.region} {name}".rstrip()
        return self.subject.decode("gbk")

    def describe(self) -> str:
        return (
            f"{self.cert_type.name.lower()} certificate {self.serial.hex().upper()} of "
            f"{self.subject_name!r} (key {self.subject_key_id.hex().upper()}, "
            f"{self.not_before:%Y-%m-%d}..{self.not_after:%Y-%m-%d})"
        )


# --- subjects -------------------------------------------------------------------------------


def root_subject(name: str) -> bytes:
    """Subject of a root: its name in GBK."""
    return _gbk(name)


def issuer_subject(region6: str, name: str = "") -> bytes:
    """Subject of an issuer: the 6-digit region code in ASCII, then an optional GBK name."""
    if len(region6) != REGION_LENGTH or not (region6.isascii() and region6.isdigit()):
        raise CertificateError(f"region {region6!r} is not 6 digits")
    return region6.encode("ascii") + _gbk(name) if name else region6.encode("ascii")


def card_subject(card_id_hex: str) -> bytes:
    """Subject of a card: its 16-byte identification code (EF05 tag 01, 32 hex digits)."""
    try:
        raw = bytes.fromhex(card_id_hex)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"card identification code {card_id_hex!r} is not hex") from exc
    if len(raw) != CARD_ID_LENGTH:
        raise CertificateError(f"card identification code has {len(raw)} bytes, not 16")
    return raw


def _gbk(text: str) -> bytes:
    try:
        return text.encode("gbk")
    except UnicodeEncodeError as exc:
        raise CertificateError(f"{text!r} cannot be written in GBK") from exc


def _check_subject(cert_type: CertType, subject: bytes) -> None:
    if not 1 <= len(subject) <= MAX_SUBJECT_LENGTH:
        raise CertificateError(f"subject of {len(subject)} bytes outside 1..{MAX_SUBJECT_LENGTH}")
    if cert_type is CertType.CARD:
        if len(subject) != CARD_ID_LENGTH:
            raise CertificateError(f"card subject has {len(subject)} bytes, not 16")
        return
    text = subject
    if cert_type is CertType.ISSUER:
        region = subject[:REGION_LENGTH]
        if len(region) != REGION_LENGTH or not all(0x30 <= b <= 0x39 for b in region):
            raise CertificateError("issuer subject does not start with a 6-digit region code")
        text = subject[REGION_LENGTH:]
    try:
        text.decode("gbk")
    except UnicodeDecodeError as exc:
        raise CertificateError("subject name is not GBK text") from exc


# --- dates ----------------------------------------------------------------------------------


def _encode_date(day: dt.date) -> bytes:
    if not isinstance(day, dt.date) or not 1000 <= day.year <= 9999:
        raise CertificateError(f"{day!r} is not a date with a 4-digit year")
    return bytes.fromhex(f"{day:%Y%m%d}")


def _decode_date(raw: bytes, what: str) -> dt.date:
    digits = raw.hex()
    if not digits.isdigit():
        raise CertificateError(f"{what} {digits.upper()} is not BCD")
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as exc:
        raise CertificateError(f"{what} {digits} is not a calendar date") from exc


# --- encode / parse -------------------------------------------------------------------------


def encode_tbs(
    cert_type: CertType | int,
    alg: Algorithm,
    serial: bytes,
    issuer_key_id: bytes,
    subject: bytes,
    not_before: dt.date,
    not_after: dt.date,
    public_key: bytes,
) -> bytes:
    """The signed part of a certificate (everything but the signature). The subject key id
    is computed from ``public_key``. Raises :class:`CertificateError` for fields that would
    not make a valid certificate."""
    try:
        cert_type = CertType(cert_type)
    except ValueError as exc:
        raise CertificateError(f"certificate type {cert_type!r} unknown") from exc
    if alg not in _CODE_OF:
        raise CertificateError(f"algorithm {alg!r} unknown")
    for name, value, size in (
        ("serial", serial, SERIAL_LENGTH),
        ("issuer key id", issuer_key_id, KEY_ID_LENGTH),
        ("public key", public_key, PUBLIC_KEY_LENGTH),
    ):
        if not isinstance(value, bytes) or len(value) != size:
            raise CertificateError(f"{name} must be {size} bytes")
    _check_subject(cert_type, subject)
    if not_after < not_before:
        raise CertificateError("not after is earlier than not before")
    try:
        check_public_key(alg, public_key)
    except SignatureFormatError as exc:
        raise CertificateError(f"public key: {exc.reason}") from exc
    return (
        bytes((VERSION, cert_type, _CODE_OF[alg]))
        + serial
        + issuer_key_id
        + key_id(public_key)
        + bytes((len(subject),))
        + subject
        + _encode_date(not_before)
        + _encode_date(not_after)
        + public_key
    )


def encode_certificate(cert: Certificate) -> bytes:
    """The wire bytes of ``cert``: ``tbs || signature``."""
    return cert.to_bytes()


def issue_certificate(
    issuer_private_key: PrivateKey,
    issuer_key_id: bytes,
    alg: Algorithm,
    cert_type: CertType | int,
    subject: bytes,
    not_before: dt.date,
    not_after: dt.date,
    public_key: bytes,
    serial: bytes | None = None,
) -> bytes:
    """Build and sign a certificate with ``issuer_private_key`` (SM2: default signer ID).

    ``serial`` defaults to 8 random bytes. A root is issued with its own key and
    ``issuer_key_id = key_id(public_key)``. The result parses with
    :func:`parse_certificate` (checked before it is returned).
    """
    serial = secrets.token_bytes(SERIAL_LENGTH) if serial is None else serial
    tbs = encode_tbs(
        cert_type, alg, serial, issuer_key_id, subject, not_before, not_after, public_key
    )
    raw = tbs + sign(alg, issuer_private_key, tbs)
    parse_certificate(raw)
    return raw


def certificate_length(data: bytes) -> int | None:
    """The length the header of ``data`` announces (``165 + L``), None if too short to say.

    Lets a reader cut a certificate out of a fixed-size EF padded after it.
    """
    if len(data) <= _SUBJECT_LENGTH_OFFSET:
        return None
    return FIXED_LENGTH + data[_SUBJECT_LENGTH_OFFSET]


def parse_certificate(data: bytes) -> Certificate:
    """Parse and check the form of a certificate. Raises only :class:`CertificateError`.

    Checked: version 01, a known type and algorithm, the exact length ``165 + L`` (no
    trailing bytes), the subject's form for its type, BCD dates with ``not before <= not
    after``, a public key that is a point of the algorithm's curve, a subject key id that is
    the key id of that public key, and for a root ``issuer key id == subject key id``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CertificateError("certificate must be bytes")
    data = bytes(data)
    n = len(data)
    if n < FIXED_LENGTH + 1:
        raise CertificateError(f"certificate of {n} bytes is shorter than {FIXED_LENGTH + 1}")
    if data[0] != VERSION:
        raise CertificateError(f"certificate version {data[0]:02X} unsupported (want 01)")
    try:
        cert_type = CertType(data[1])
    except ValueError:
        raise CertificateError(f"certificate type {data[1]:02X} unknown") from None
    alg = ALGORITHM_CODES.get(data[2])
    if alg is None:
        raise CertificateError(f"algorithm {data[2]:02X} unknown")
    expected = certificate_length(data)
    if expected != n:
        raise CertificateError(f"certificate of {n} bytes, its subject length says {expected}")
    pos = 3
    serial = data[pos : pos + SERIAL_LENGTH]
    pos += SERIAL_LENGTH
    issuer_key_id = data[pos : pos + KEY_ID_LENGTH]
    pos += KEY_ID_LENGTH
    subject_key_id = data[pos : pos + KEY_ID_LENGTH]
    pos += KEY_ID_LENGTH
    subject_length = data[pos]
    pos += 1
    subject = data[pos : pos + subject_length]
    pos += subject_length
    _check_subject(cert_type, subject)
    not_before = _decode_date(data[pos : pos + DATE_LENGTH], "not before")
    pos += DATE_LENGTH
    not_after = _decode_date(data[pos : pos + DATE_LENGTH], "not after")
    pos += DATE_LENGTH
    if not_after < not_before:
        raise CertificateError("not after is earlier than not before")
    public_key = data[pos : pos + PUBLIC_KEY_LENGTH]
    pos += PUBLIC_KEY_LENGTH
    try:
        check_public_key(alg, public_key)
    except SignatureFormatError as exc:
        raise CertificateError(f"public key: {exc.reason}") from exc
    if key_id(public_key) != subject_key_id:
        raise CertificateError("subject key id is not the key id of the public key")
    if cert_type is CertType.ROOT and issuer_key_id != subject_key_id:
        raise CertificateError("root certificate is not self-issued (issuer key id differs)")
    return Certificate(
        version=VERSION,
        cert_type=cert_type,
        algorithm=alg,
        serial=serial,
        issuer_key_id=issuer_key_id,
        subject_key_id=subject_key_id,
        subject=subject,
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        tbs=data[:pos],
        signature=data[pos:],
    )


def verify_certificate_signature(cert: Certificate, issuer_public_key: bytes) -> bool:
    """True iff ``cert.signature`` is the issuer's signature over ``cert.tbs`` with the
    certificate's algorithm (SM2: default signer ID). False, never an exception, for a key
    of another curve or a malformed signature."""
    try:
        return verify(cert.algorithm, issuer_public_key, cert.tbs, cert.signature)
    except SignatureFormatError:
        return False


__all__ = [
    "ALGORITHM_CODES",
    "CARD_CERTIFICATE_LENGTH",
    "FIXED_LENGTH",
    "MAX_CERTIFICATE_LENGTH",
    "Algorithm",
    "CertType",
    "Certificate",
    "card_subject",
    "certificate_length",
    "encode_certificate",
    "encode_tbs",
    "issue_certificate",
    "issuer_subject",
    "key_id",
    "parse_certificate",
    "root_subject",
    "verify_certificate_signature",
]
