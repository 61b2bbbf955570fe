"""The signing interface: SM2 / ECDSA P-256, back-end choice, key loading, error contract."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto import signing, sm2_native
from terminal.crypto.signing import Algorithm
from terminal.errors import CryptoError, OneCardError, SignatureFormatError

KAT_D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
KAT_SIG = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)


@pytest.fixture(params=["pure", "native"])
def backend(request, monkeypatch) -> str:
    if request.param == "native" and not sm2_native.available():
        pytest.skip("tongsuopy not installed")
    monkeypatch.setenv(signing.BACKEND_ENV, request.param)
    return request.param


def test_backend_env(backend: str) -> None:
    assert signing.sm2_backend() == backend


def test_backend_env_invalid(monkeypatch) -> None:
    monkeypatch.setenv(signing.BACKEND_ENV, "fast")
    with pytest.raises(CryptoError):
        signing.sm2_backend()


def test_default_backend(monkeypatch) -> None:
    monkeypatch.delenv(signing.BACKEND_ENV, raising=False)
    want = "native" if signing.native_sm2_usable() else "pure"
    assert signing.sm2_backend() == want
    if sm2_native.available():
        assert want == "native"  # the self-test passes on a working tongsuopy


@pytest.mark.parametrize("alg", list(Algorithm))
def test_sign_verify_round_trip(alg: Algorithm, backend: str) -> None:
    key = signing.generate_private_key(alg)
    pub = signing.public_key_bytes(key)
    assert len(pub) == 65 and pub[0] == 4
    sig = signing.sign(alg, key, b"hello", signer_id=b"issuer-1")
    assert len(sig) == 64
    assert signing.verify(alg, pub, b"hello", sig, signer_id=b"issuer-1")
    assert not signing.verify(alg, pub, b"hellO", sig, signer_id=b"issuer-1")
    again = signing.load_private_key(alg, signing.private_key_bytes(key))
    assert signing.public_key_bytes(again) == pub


def test_sm2_known_answer_through_interface(backend: str) -> None:
    key = signing.load_private_key(Algorithm.SM2, KAT_D)
    pub = signing.public_key_bytes(key)
    assert signing.verify(Algorithm.SM2, pub, b"message digest", KAT_SIG)


def test_ecdsa_cross_check_with_cryptography() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert signing.verify(Algorithm.ECDSA_P256, signing.public_key_bytes(key), b"m", raw)


def test_wrong_key_types() -> None:
    sm2_key = signing.generate_private_key(Algorithm.SM2)
    p256_key = signing.generate_private_key(Algorithm.ECDSA_P256)
    with pytest.raises(CryptoError):
        signing.sign(Algorithm.ECDSA_P256, sm2_key, b"m")
    with pytest.raises(CryptoError):
        signing.sign(Algorithm.SM2, p256_key, b"m")
    with pytest.raises(CryptoError):
        signing.load_private_key(Algorithm.SM2, bytes(32))
    with pytest.raises(CryptoError):
        signing.load_private_key(Algorithm.ECDSA_P256, b"\xff" * 32)
    with pytest.raises(CryptoError):
        signing.load_private_key(Algorithm.SM2, bytes(31))


@pytest.mark.parametrize("alg", list(Algorithm))
def test_bad_public_key(alg: Algorithm) -> None:
    with pytest.raises(SignatureFormatError):
        signing.verify(alg, b"\x04" + bytes(64), b"m", bytes(64))
    with pytest.raises(SignatureFormatError):
        signing.check_public_key(alg, b"\x03" + bytes(32))


_KEYS = {alg: signing.generate_private_key(alg) for alg in Algorithm}
_SIGS = {alg: signing.sign(alg, _KEYS[alg], b"fixed") for alg in Algorithm}


@settings(max_examples=100, deadline=None)
@given(
    alg=st.sampled_from(list(Algorithm)),
    pos=st.integers(0, 63),
    xor=st.integers(1, 255),
)
def test_mutated_signature_never_verifies(alg: Algorithm, pos: int, xor: int) -> None:
    pub = signing.public_key_bytes(_KEYS[alg])
    sig = bytearray(_SIGS[alg])
    sig[pos] ^= xor
    assert not signing.verify(alg, pub, b"fixed", bytes(sig))


@settings(max_examples=150, deadline=None)
@given(
    alg=st.sampled_from(list(Algorithm)),
    pub=st.binary(max_size=70),
    sig=st.binary(max_size=70),
)
def test_garbage_raises_only_typed_errors(alg: Algorithm, pub: bytes, sig: bytes) -> None:
    for candidate in (pub, signing.public_key_bytes(_KEYS[alg])):
        with contextlib.suppress(OneCardError):
            assert signing.verify(alg, candidate, b"fixed", sig) is False
