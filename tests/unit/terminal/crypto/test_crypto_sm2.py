"""SM2 (GB/T 32918.2) pure and native back-ends: known answers, cross-checks, fuzzing."""

from __future__ import annotations

import contextlib
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto import sm2, sm2_native
from terminal.errors import OneCardError, SignatureFormatError

# GM/T 0003.5-2012 example on the recommended curve sm2p256v1 (default ID 1234567812345678).
KAT_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
KAT_PUB = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
KAT_Z = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
KAT_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
KAT_MSG = b"message digest"
KAT_SIG = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)

native = pytest.mark.skipif(not sm2_native.available(), reason="tongsuopy not installed")


def test_sm3_abc() -> None:
    assert sm2.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_known_answer_public_key_z_and_signature() -> None:
    key = sm2.private_key_from_int(KAT_D)
    assert key.public_key().to_bytes() == KAT_PUB
    assert sm2.z_value(key.public_key()) == KAT_Z
    assert sm2.sign_with_k(key, KAT_MSG, KAT_K) == KAT_SIG
    assert sm2.verify(KAT_PUB, KAT_MSG, KAT_SIG)
    assert not sm2.verify(KAT_PUB, b"message digesT", KAT_SIG)
    # The signer ID enters Z: another ID must not verify.
    assert not sm2.verify(KAT_PUB, KAT_MSG, KAT_SIG, b"ALICE123@YAHOO.COM")


def test_generator_and_order() -> None:
    assert sm2.is_on_curve(sm2.GX, sm2.GY)
    # n G = infinity, (n-1) G = -G.
    assert sm2._mul_g(sm2.N)[2] == 0
    assert sm2._to_affine(sm2._mul_g(sm2.N - 1)) == (sm2.GX, sm2.P - sm2.GY)
    assert sm2._to_affine(sm2._mul_point(sm2.N - 1, sm2.GX, sm2.GY)) == (sm2.GX, sm2.P - sm2.GY)


@pytest.mark.parametrize("k", [1, 2, 3, 15, 16, 17, 2**255 + 12345, sm2.N - 2])
def test_fixed_base_matches_variable_base(k: int) -> None:
    a = sm2._to_affine(sm2._mul_g(k))
    b = sm2._to_affine(sm2._mul_point(k, sm2.GX, sm2.GY))
    assert a == b


def test_sign_verify_random_keys_and_ids() -> None:
    for _ in range(20):
        key = sm2.generate_private_key()
        pub = key.public_key().to_bytes()
        msg = secrets.token_bytes(secrets.randbelow(100))
        ident = secrets.token_bytes(secrets.randbelow(40))
        sig = sm2.sign(key, msg, ident)
        assert sm2.verify(pub, msg, sig, ident)
        assert not sm2.verify(pub, msg + b"x", sig, ident)


def test_der_round_trip_and_strictness() -> None:
    r, s = sm2.raw_to_rs(KAT_SIG)
    der = sm2.rs_to_der(r, s)
    assert sm2.der_to_raw(der) == KAT_SIG
    assert sm2.raw_to_der(KAT_SIG) == der
    small = sm2.rs_to_der(1, 0x7F)
    assert small == bytes.fromhex("300602010102017f")
    bad = [
        b"",
        der + b"\x00",  # trailing byte
        b"\x31" + der[1:],  # SET, not SEQUENCE
        der[:2] + b"\x02\x21\x00\x00" + der[4:],  # garbage
        bytes.fromhex("30070202000102017f"),  # non-minimal INTEGER
        bytes.fromhex("3006020181020101"),  # negative INTEGER
        bytes.fromhex("30058102010102"),
        bytes.fromhex("3006020100020101")[:-1],
    ]
    for b in bad:
        with pytest.raises(SignatureFormatError):
            sm2.der_to_rs(b)


@pytest.mark.parametrize(
    "pub",
    [
        b"",
        KAT_PUB[:-1],
        b"\x02" + KAT_PUB[1:33],  # compressed: not accepted
        b"\x04" + bytes(64),  # (0, 0) is not on the curve
        KAT_PUB[:-1] + bytes([KAT_PUB[-1] ^ 1]),  # off the curve
        b"\x04" + sm2.P.to_bytes(32, "big") + KAT_PUB[33:],  # x >= p
    ],
)
def test_bad_public_keys_raise_typed_error(pub: bytes) -> None:
    with pytest.raises(SignatureFormatError):
        sm2.verify(pub, KAT_MSG, KAT_SIG)


def test_out_of_range_signatures_are_false() -> None:
    r, s = sm2.raw_to_rs(KAT_SIG)
    for rr, ss in [(0, s), (r, 0), (sm2.N, s), (r, sm2.N), (r + sm2.N, s), (r, s + sm2.N)]:
        if rr < 2**256 and ss < 2**256:
            assert not sm2.verify(KAT_PUB, KAT_MSG, sm2.rs_to_raw(rr, ss))
    assert not sm2.verify(KAT_PUB, KAT_MSG, KAT_SIG[:-1])
    assert not sm2.verify(KAT_PUB, KAT_MSG, KAT_SIG + b"\x00")


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(0, 63), bit=st.integers(0, 7))
def test_any_single_bit_flip_fails(pos: int, bit: int) -> None:
    mutated = bytearray(KAT_SIG)
    mutated[pos] ^= 1 << bit
    assert not sm2.verify(KAT_PUB, KAT_MSG, bytes(mutated))
    if sm2_native.available():
        assert not sm2_native.verify(KAT_PUB, KAT_MSG, bytes(mutated))


@settings(max_examples=200, deadline=None)
@given(pub=st.binary(max_size=80), sig=st.binary(max_size=80), der=st.binary(max_size=80))
def test_random_inputs_raise_only_typed_errors(pub: bytes, sig: bytes, der: bytes) -> None:
    for candidate in (pub, b"\x04" + pub[:64].ljust(64, b"\x00"), KAT_PUB):
        with contextlib.suppress(OneCardError):
            assert sm2.verify(candidate, KAT_MSG, sig) in (True, False)
    with contextlib.suppress(OneCardError):
        sm2.der_to_raw(der)


# --- independent implementation: gmssl (test-time only) -------------------------------------


def _gmssl():
    return pytest.importorskip("gmssl.sm2")


def test_cross_check_with_gmssl() -> None:
    gm = _gmssl()
    for i in range(6):
        key = sm2.private_key_from_int(KAT_D) if i == 0 else sm2.generate_private_key()
        pub = key.public_key().to_bytes()
        pub_hex = pub[1:].hex()
        if pub_hex.startswith("04"):
            continue  # gmssl mis-strips such keys (lstrip("04")); not our bug
        c = gm.CryptSM2(private_key=key.to_bytes().hex(), public_key=pub_hex)
        msg = secrets.token_bytes(20)
        e = sm2.message_digest(key.public_key(), msg).to_bytes(32, "big")
        # gmssl signs ours, we verify; we sign, gmssl verifies (default ID path).
        k = secrets.randbelow(sm2.N - 1) + 1
        theirs = bytes.fromhex(c.sign(e, f"{k:064x}"))
        assert sm2.verify(pub, msg, theirs)
        assert theirs == sm2.sign_with_k(key, msg, k)
        ours = sm2.sign(key, msg)
        assert c.verify_with_sm3(ours.hex(), msg)
        assert c.verify(ours.hex(), e)


# --- native back-end ------------------------------------------------------------------------


@native
def test_native_known_answer() -> None:
    assert sm2_native.verify(KAT_PUB, KAT_MSG, KAT_SIG)
    assert not sm2_native.verify(KAT_PUB, KAT_MSG, KAT_SIG, b"ALICE123@YAHOO.COM")
    assert not sm2_native.verify(KAT_PUB, b"x", KAT_SIG)


@native
def test_native_and_pure_cross_verify() -> None:
    for _ in range(10):
        key = sm2.generate_private_key()
        pub = key.public_key().to_bytes()
        msg = secrets.token_bytes(33)
        ident = secrets.token_bytes(16)
        by_native = sm2_native.sign(key, msg, ident)
        by_pure = sm2.sign(key, msg, ident)
        assert sm2.verify(pub, msg, by_native, ident)
        assert sm2_native.verify(pub, msg, by_pure, ident)
        assert not sm2_native.verify(pub, msg, by_pure)  # default ID differs


@native
def test_native_bad_inputs() -> None:
    r, _s = sm2.raw_to_rs(KAT_SIG)
    assert not sm2_native.verify(KAT_PUB, KAT_MSG, sm2.rs_to_raw(r, sm2.N))
    assert not sm2_native.verify(KAT_PUB, KAT_MSG, b"")
    with pytest.raises(SignatureFormatError):
        sm2_native.verify(b"\x04" + bytes(64), KAT_MSG, KAT_SIG)
