"""Compact card-verifiable certificates (docs/pki.md section 1): layout, round trips for SM2
and ECDSA P-256, strict parsing, and what forgers and noisy cards send."""

from __future__ import annotations

import contextlib
import datetime as dt
from functools import cache

import pytest
from helpers.mutations import mutate
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.pki_issuing import (
    DemoHierarchy,
    key_from_hex,
    key_to_hex,
    make_card_credentials,
    make_hierarchy,
    make_issuer,
)
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.crypto.sm2 import sm3
from terminal.errors import CertificateError, ParseError
from terminal.pki.certificate import (
    CARD_CERTIFICATE_LENGTH,
    FIXED_LENGTH,
    MAX_CERTIFICATE_LENGTH,
    CertType,
    card_subject,
    certificate_length,
    encode_certificate,
    encode_tbs,
    issue_certificate,
    issuer_subject,
    key_id,
    parse_certificate,
    root_subject,
    verify_certificate_signature,
)

TODAY = dt.date(2025, 6, 1)
CARD_ID = "510104D15600000520000002A1B2C3D4"
ALGS = (Algorithm.SM2, Algorithm.ECDSA_P256)


@cache
def hierarchy(alg: Algorithm) -> DemoHierarchy:
    return make_hierarchy(alg, CARD_ID, TODAY)


def patched(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


# --- layout and round trips -----------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_card_certificate_round_trip(alg: Algorithm) -> None:
    h = hierarchy(alg)
    cert = parse_certificate(h.card_cert)
    issuer = parse_certificate(h.issuer_cert)
    assert len(h.card_cert) == CARD_CERTIFICATE_LENGTH == 181
    assert cert.version == 1 and cert.cert_type is CertType.CARD and cert.algorithm is alg
    assert cert.subject == bytes.fromhex(CARD_ID)
    assert cert.region == "510104"
    assert cert.public_key == public_key_bytes(h.card_key)
    assert cert.subject_key_id == key_id(cert.public_key) == sm3(cert.public_key)[:8]
    assert cert.issuer_key_id == issuer.subject_key_id
    assert cert.not_before == TODAY - dt.timedelta(days=1)
    assert cert.is_valid_at(TODAY) and not cert.is_valid_at(cert.not_before - dt.timedelta(1))
    assert encode_certificate(cert) == cert.to_bytes() == h.card_cert
    assert cert.tbs == h.card_cert[:-64] and cert.signature == h.card_cert[-64:]
    assert verify_certificate_signature(cert, issuer.public_key)
    assert not verify_certificate_signature(cert, cert.public_key)


@pytest.mark.parametrize("alg", ALGS)
def test_root_and_issuer_round_trip(alg: Algorithm) -> None:
    h = hierarchy(alg)
    root = parse_certificate(h.root_cert)
    issuer = parse_certificate(h.issuer_cert)
    assert root.cert_type is CertType.ROOT and root.is_self_signed
    assert root.subject_name == "onecard demo root"
    assert len(h.root_cert) == FIXED_LENGTH + len("onecard demo root")
    assert verify_certificate_signature(root, root.public_key)
    assert issuer.cert_type is CertType.ISSUER and issuer.region == "510104"
    assert issuer.subject_name == "510104 demo issuer"
    assert issuer.issuer_key_id == root.subject_key_id
    assert verify_certificate_signature(issuer, root.public_key)


def test_byte_layout_matches_docs() -> None:
    h = hierarchy(Algorithm.SM2)
    raw = h.card_cert
    cert = parse_certificate(raw)
    assert raw[0:3] == b"\x01\x03\x01"
    assert raw[3:11] == cert.serial
    assert raw[11:19] == cert.issuer_key_id
    assert raw[19:27] == cert.subject_key_id
    assert raw[27] == 16 and raw[28:44] == bytes.fromhex(CARD_ID)
    assert raw[44:48] == bytes.fromhex(f"{cert.not_before:%Y%m%d}")
    assert raw[48:52] == bytes.fromhex(f"{cert.not_after:%Y%m%d}")
    assert raw[52:117] == cert.public_key and raw[52] == 0x04
    assert raw[117:] == cert.signature and len(raw) == 181
    assert certificate_length(raw) == 181 and certificate_length(raw[:27]) is None
    assert parse_certificate(hierarchy(Algorithm.ECDSA_P256).card_cert).tbs[2] == 0x02


def test_issuer_name_in_gbk_and_chinese_root_name() -> None:
    key = generate_private_key(Algorithm.SM2)
    pub = public_key_bytes(key)
    root = issue_certificate(
        key, key_id(pub), Algorithm.SM2, CertType.ROOT, root_subject("人社部根"), TODAY, TODAY, pub
    )
    assert parse_certificate(root).subject_name == "人社部根"
    _, issuer = make_issuer(key, root, "500000", "重庆市人社局", (TODAY, TODAY))
    assert parse_certificate(issuer).subject_name == "500000 重庆市人社局"


def test_explicit_serial_and_largest_certificate_fits_one_read() -> None:
    key = generate_private_key(Algorithm.ECDSA_P256)
    pub = public_key_bytes(key)
    raw = issue_certificate(
        key,
        key_id(pub),
        Algorithm.ECDSA_P256,
        CertType.ROOT,
        b"R" * 64,
        TODAY,
        TODAY,
        pub,
        serial=bytes(range(8)),
    )
    assert parse_certificate(raw).serial == bytes(range(8))
    assert len(raw) == MAX_CERTIFICATE_LENGTH == 229 < 256


def test_keys_round_trip_as_hex() -> None:
    for alg in ALGS:
        key = hierarchy(alg).card_key
        assert public_key_bytes(key_from_hex(alg, key_to_hex(key))) == public_key_bytes(key)


def test_chain_keeps_one_algorithm() -> None:
    h = hierarchy(Algorithm.SM2)
    with pytest.raises(ValueError, match="chain"):
        make_card_credentials(
            h.issuer_key, h.issuer_cert, CARD_ID, (TODAY, TODAY), Algorithm.ECDSA_P256
        )


# --- strict parsing -------------------------------------------------------------------------


def _bad_cases() -> dict[str, tuple[bytes, str]]:
    h = hierarchy(Algorithm.SM2)
    raw = h.card_cert
    cert = parse_certificate(raw)
    other = public_key_bytes(generate_private_key(Algorithm.SM2))
    off_point = b"\x04" + bytes(63) + b"\x01"
    return {
        "version": (patched(raw, 0, b"\x02"), "version"),
        "type": (patched(raw, 1, b"\x04"), "type"),
        "algorithm": (patched(raw, 2, b"\x03"), "algorithm"),
        "truncated": (raw[:-1], "subject length says"),
        "trailing": (raw + b"\x00", "subject length says"),
        "short": (raw[:100], "shorter"),
        "empty": (b"", "shorter"),
        "subject length": (patched(raw, 27, b"\x11"), "subject length says"),
        "bcd": (patched(raw, 44, b"\x20\x2a\x01\x01"), "BCD"),
        "calendar": (patched(raw, 44, b"\x20\x25\x02\x30"), "calendar"),
        "dates reversed": (
            patched(patched(raw, 44, b"\x20\x30\x01\x01"), 48, b"\x20\x20\x01\x01"),
            "earlier",
        ),
        "point": (patched(raw, 52, off_point), "public key"),
        "compressed": (patched(raw, 52, b"\x02"), "public key"),
        "key id": (patched(raw, 52, other), "key id"),
        "p256 key in sm2 cert": (
            patched(raw, 52, public_key_bytes(hierarchy(Algorithm.ECDSA_P256).card_key)),
            "public key",
        ),
        "root not self-issued": (
            patched(hierarchy(Algorithm.SM2).root_cert, 11, cert.issuer_key_id),
            "self-issued",
        ),
        "issuer region": (patched(h.issuer_cert, 28, b"5X"), "region"),
        "not bytes": ("01" * 181, "bytes"),  # type: ignore[dict-item]
    }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_malformed_certificates_are_refused_with_a_reason(case: str) -> None:
    data, reason = _bad_cases()[case]
    with pytest.raises(CertificateError, match=reason):
        parse_certificate(data)


def test_card_subject_must_be_16_bytes() -> None:
    h = hierarchy(Algorithm.ECDSA_P256)
    issuer = parse_certificate(h.issuer_cert)
    pub = public_key_bytes(h.card_key)
    with pytest.raises(CertificateError, match="16"):
        encode_tbs(CertType.CARD, Algorithm.ECDSA_P256, bytes(8), issuer.subject_key_id, b"x" * 15,
                   TODAY, TODAY, pub)  # fmt: skip
    with pytest.raises(CertificateError):
        card_subject("zz")
    with pytest.raises(CertificateError):
        issuer_subject("5001", "x")
    with pytest.raises(CertificateError, match="GBK"):
        root_subject("\U0001f600")


def test_certificate_error_is_a_parse_error() -> None:
    assert issubclass(CertificateError, ParseError)


# --- forgers and noise ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_certificate_error_only(data: bytes) -> None:
    with contextlib.suppress(CertificateError):
        parse_certificate(data)


@st.composite
def _header_shaped(draw: st.DrawFn) -> bytes:
    # Random certificates that get past the first checks, so later ones are exercised too.
    subject_length = draw(st.integers(0, 80))
    body = draw(st.binary(min_size=FIXED_LENGTH + subject_length - 4,
                          max_size=FIXED_LENGTH + subject_length - 4))  # fmt: skip
    head = bytes((1, draw(st.integers(1, 3)), draw(st.integers(1, 2))))
    return head + body[:24] + bytes((subject_length,)) + body[24:]


@settings(max_examples=300, deadline=None)
@given(_header_shaped())
def test_header_shaped_random_bytes_give_certificate_error_only(data: bytes) -> None:
    with contextlib.suppress(CertificateError):
        parse_certificate(data)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from(ALGS), st.sampled_from(["card_cert", "issuer_cert"]))
def test_mutated_certificates_never_verify(data: st.DataObject, alg: Algorithm, which: str) -> None:
    h = hierarchy(alg)
    raw = getattr(h, which)
    signer = h.issuer_cert if which == "card_cert" else h.root_cert
    mutated = mutate(data.draw, raw)
    try:
        cert = parse_certificate(mutated)
    except CertificateError:
        return
    # A mutation that still parses (serial, dates, signature, ...) must break the signature.
    assert not verify_certificate_signature(cert, parse_certificate(signer).public_key)


def test_signature_under_a_key_of_another_curve_is_false_not_an_error() -> None:
    cert = parse_certificate(hierarchy(Algorithm.SM2).card_cert)
    other = parse_certificate(hierarchy(Algorithm.ECDSA_P256).issuer_cert)
    assert verify_certificate_signature(cert, other.public_key) is False
    assert verify_certificate_signature(cert, b"\x04" + bytes(64)) is False
