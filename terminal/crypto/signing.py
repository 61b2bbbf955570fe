"""The small signing interface of onecard: SM2 or ECDSA P-256, raw ``r || s`` signatures.

* SM2: GB/T 32918.2 with SM3 and the Z value over ``signer_id`` (default
  ``1234567812345678``, GM/T 0009-2012). Back-end: Tongsuo through tongsuopy ("native") when
  it is installed and passes a known-answer self-test at first use, else pure Python
  ("pure"). ``ONECARD_SM2_BACKEND=pure|native`` forces one; forcing "native" where it does
  not work raises :class:`CryptoError` rather than silently falling back.
* ECDSA P-256: FIPS 186-4 with SHA-256 through pyca/cryptography (the algorithm of the EU
  Digital COVID Certificate, COSE ``ES256``). ``signer_id`` is ignored.

Both produce and accept raw 64-byte ``r || s`` (the COSE and GM/T 0009 "raw" form); public
keys are uncompressed SEC 1 points ``04 || X || Y``; private keys are 32-byte scalars.

Error contract: :func:`verify` returns ``False`` for any signature that does not verify,
including malformed ones; a malformed public key raises :class:`SignatureFormatError`; key
material of the wrong size or type raises :class:`CryptoError`. Nothing else escapes.
"""

from __future__ import annotations

import enum
import os
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from terminal.crypto import sm2, sm2_native
from terminal.errors import CryptoError, SignatureFormatError

DEFAULT_SIGNER_ID = sm2.DEFAULT_SIGNER_ID
BACKEND_ENV = "ONECARD_SM2_BACKEND"

_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class Algorithm(enum.Enum):
    """Signature algorithms the terminal knows."""

    SM2 = "sm2"
    ECDSA_P256 = "ecdsa-p256"


PrivateKey = sm2.PrivateKey | ec.EllipticCurvePrivateKey


# --- SM2 back-end choice --------------------------------------------------------------------

# GM/T 0003.5-2012 example on sm2p256v1 (default ID, message "message digest"): checked
# against the pure implementation and gmssl in tests/unit/test_crypto_sm2.py.
_KAT_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
_KAT_MSG = b"message digest"
_KAT_SIG = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)

_native_ok: bool | None = None
_native_lock = threading.Lock()


def _native_self_test() -> bool:
    # Known answer through the native verify, a native signature checked by the pure code
    # (catches a native sign that hashes e again), and a rejected forgery.
    try:
        key = sm2.private_key_from_int(_KAT_D)
        pub = key.public_key()
        if not sm2_native.verify(pub, _KAT_MSG, _KAT_SIG):
            return False
        bad = _KAT_SIG[:-1] + bytes([_KAT_SIG[-1] ^ 1])
        if sm2_native.verify(pub, _KAT_MSG, bad):
            return False
        sig = sm2_native.sign(key, b"onecard self-test", b"onecard", pub)
        return sm2.verify(pub, b"onecard self-test", sig, b"onecard")
    except Exception:  # a broken native library is "not usable", never a crash
        return False


def native_sm2_usable() -> bool:
    """True when tongsuopy is installed and passed the known-answer self-test (run once)."""
    global _native_ok
    if _native_ok is None:
        with _native_lock:
            if _native_ok is None:
                _native_ok = sm2_native.available() and _native_self_test()
    return _native_ok


def sm2_backend() -> str:
    """``"native"`` or ``"pure"``: the SM2 back-end :func:`sign` and :func:`verify` use."""
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if forced == "pure":
        return "pure"
    if forced == "native":
        if not native_sm2_usable():
            raise CryptoError(f"{BACKEND_ENV}=native but the native SM2 back-end is not usable")
        return "native"
    if forced:
        raise CryptoError(f"{BACKEND_ENV} must be 'pure' or 'native', not {forced!r}")
    return "native" if native_sm2_usable() else "pure"


# --- keys -----------------------------------------------------------------------------------


def _check_alg(alg: Algorithm) -> Algorithm:
    if not isinstance(alg, Algorithm):
        raise CryptoError(f"unknown signature algorithm {alg!r}")
    return alg


def generate_private_key(alg: Algorithm) -> PrivateKey:
    """A fresh private key from the OS CSPRNG."""
    if _check_alg(alg) is Algorithm.SM2:
        return sm2.generate_private_key()
    return ec.generate_private_key(ec.SECP256R1())


def load_private_key(alg: Algorithm, data: bytes) -> PrivateKey:
    """A private key from its 32-byte big-endian scalar."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) != 32:
        raise CryptoError("private key must be 32 bytes")
    if _check_alg(alg) is Algorithm.SM2:
        return sm2.private_key_from_bytes(bytes(data))
    d = int.from_bytes(data, "big")
    if not 1 <= d < _P256_N:
        raise CryptoError("P-256 private key out of range [1, n-1]")
    return ec.derive_private_key(d, ec.SECP256R1())


def private_key_bytes(private_key: PrivateKey) -> bytes:
    """The 32-byte big-endian scalar of a private key (handle with care)."""
    if isinstance(private_key, sm2.PrivateKey):
        return private_key.to_bytes()
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.private_numbers().private_value.to_bytes(32, "big")
    raise CryptoError("not a private key of a supported algorithm")


def public_key_bytes(private_key: PrivateKey) -> bytes:
    """The uncompressed public key ``04 || X || Y`` (65 bytes) of a private key."""
    if isinstance(private_key, sm2.PrivateKey):
        return private_key.public_key().to_bytes()
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        nums = private_key.public_key().public_numbers()
        return b"\x04" + nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")
    raise CryptoError("not a private key of a supported algorithm")


def check_public_key(alg: Algorithm, public_key: bytes) -> None:
    """Raise :class:`SignatureFormatError` unless ``public_key`` is a valid uncompressed
    point of the algorithm's curve (on the curve, not infinity)."""
    if _check_alg(alg) is Algorithm.SM2:
        sm2.decode_public_key(public_key)
    else:
        _load_p256_public(public_key)


def _load_p256_public(public_key: bytes) -> ec.EllipticCurvePublicKey:
    if (
        not isinstance(public_key, bytes | bytearray | memoryview)
        or len(public_key) != 65
        or public_key[0] != 0x04
    ):
        raise SignatureFormatError("P-256 public key must be 65 bytes 04||X||Y (uncompressed)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(public_key))
    except ValueError as exc:
        raise SignatureFormatError("P-256 public key is not a point on the curve") from exc


# --- sign / verify --------------------------------------------------------------------------


def sign(
    alg: Algorithm,
    private_key: PrivateKey,
    message: bytes,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> bytes:
    """Sign ``message``; returns raw ``r || s`` (64 bytes)."""
    if not isinstance(message, bytes | bytearray | memoryview):
        raise CryptoError("message must be bytes")
    message = bytes(message)
    if _check_alg(alg) is Algorithm.SM2:
        if not isinstance(private_key, sm2.PrivateKey):
            raise CryptoError("SM2 signing needs an SM2 private key")
        if sm2_backend() == "native":
            return sm2_native.sign(private_key, message, signer_id)
        return sm2.sign(private_key, message, signer_id)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise CryptoError("ECDSA P-256 signing needs a P-256 private key")
    r, s = decode_dss_signature(private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    return sm2.rs_to_raw(r, s)


def verify(
    alg: Algorithm,
    public_key: bytes,
    message: bytes,
    signature: bytes,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> bool:
    """True iff ``signature`` (raw ``r || s``) is valid for ``message`` under ``public_key``
    (``04 || X || Y``). See the module docstring for the error contract."""
    if not isinstance(message, bytes | bytearray | memoryview):
        raise CryptoError("message must be bytes")
    message = bytes(message)
    if _check_alg(alg) is Algorithm.SM2:
        pub = sm2.decode_public_key(public_key)
        if sm2_backend() == "native":
            return sm2_native.verify(pub, message, signature, signer_id)
        return sm2.verify(pub, message, signature, signer_id)
    key = _load_p256_public(public_key)
    if not isinstance(signature, bytes | bytearray | memoryview) or len(signature) != 64:
        return False
    r, s = sm2.raw_to_rs(bytes(signature))
    if not (1 <= r < _P256_N and 1 <= s < _P256_N):
        return False
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
