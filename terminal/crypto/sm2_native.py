"""SM2 signatures (GB/T 32918.2) through Tongsuo, the native back-end.

Tongsuo (the Ant Group fork of OpenSSL with the Chinese national algorithms) is reached
through ``tongsuopy``, which is optional (``pip install onecard[native]``). The import is
lazy: :func:`available` says whether it can be used, and nothing here raises ImportError.

What is computed where: ``e = SM3(Z || M)`` (the Z value over the signer ID, see
:mod:`terminal.crypto.sm2`) is computed in Python, because tongsuopy's public API fixes
the signer ID; Tongsuo then signs or verifies the 32-byte digest ``e`` with
``EVP_PKEY_sign``/``EVP_PKEY_verify`` on an SM2 key, which in Tongsuo (as in OpenSSL 1.1.1)
treat the input as ``e`` and do not hash it again. These two functions are reached through
tongsuopy's cffi binding, not its public API, so callers must not trust this module before
a known-answer self-test has passed (``terminal.crypto.signing`` runs one at first use).

Signatures here are raw ``r || s`` (64 bytes) like the pure path; the conversion to the DER
that Tongsuo speaks is done by the strict codec in :mod:`terminal.crypto.sm2`.
"""

from __future__ import annotations

import functools
from typing import Any

from terminal.crypto import sm2
from terminal.errors import CryptoError, SignatureFormatError

_state: dict[str, Any] = {}


def _load() -> dict[str, Any] | None:
    if "ok" not in _state:
        try:
            from tongsuopy.backends.tongsuo.backend import backend
            from tongsuopy.crypto.asymciphers import ec

            # Touch the entry points we rely on, so an incompatible tongsuopy is reported
            # as unavailable instead of failing later.
            for name in ("EVP_PKEY_CTX_new", "EVP_PKEY_sign", "EVP_PKEY_verify"):
                getattr(backend._lib, name)
        except Exception:  # any import or binding problem means "not available"
            _state["ok"] = False
        else:
            _state.update(ok=True, backend=backend, ec=ec)
    return _state if _state["ok"] else None


def available() -> bool:
    """True when tongsuopy imports and exposes what this module needs."""
    return _load() is not None


def _require() -> dict[str, Any]:
    st = _load()
    if st is None:
        raise CryptoError("native SM2 back-end (tongsuopy) is not available")
    return st


@functools.lru_cache(maxsize=64)
def _native_public_key(encoded: bytes) -> Any:
    # Verifiers check many signatures against few keys (a trust list), so keep them loaded.
    st = _require()
    try:
        return st["ec"].EllipticCurvePublicKey.from_encoded_point(st["ec"].SM2(), encoded)
    except Exception as exc:
        raise SignatureFormatError("SM2 public key rejected by Tongsuo") from exc


def _pkey_ctx(st: dict[str, Any], key: Any) -> Any:
    lib, ffi = st["backend"]._lib, st["backend"]._ffi
    ctx = lib.EVP_PKEY_CTX_new(key._evp_pkey, ffi.NULL)
    if ctx == ffi.NULL:
        raise CryptoError("Tongsuo: EVP_PKEY_CTX_new failed")
    return ffi.gc(ctx, lib.EVP_PKEY_CTX_free)


def sign(
    private_key: sm2.PrivateKey,
    message: bytes,
    signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
    public_key: sm2.PublicKey | None = None,
) -> bytes:
    """Sign ``message`` with Tongsuo; returns raw ``r || s``. The nonce comes from
    Tongsuo's CSPRNG."""
    st = _require()
    pub = public_key if public_key is not None else private_key.public_key()
    e = sm2.message_digest(pub, message, signer_id).to_bytes(32, "big")
    backend = st["backend"]
    lib, ffi = backend._lib, backend._ffi
    try:
        key = st["ec"].derive_private_key(private_key.d, st["ec"].SM2())
    except Exception as exc:
        raise CryptoError("Tongsuo rejected the SM2 private key") from exc
    ctx = _pkey_ctx(st, key)
    siglen = ffi.new("size_t *")
    if lib.EVP_PKEY_sign_init(ctx) != 1 or lib.EVP_PKEY_sign(ctx, ffi.NULL, siglen, e, 32) != 1:
        backend._consume_errors()
        raise CryptoError("Tongsuo: SM2 sign set-up failed")
    buf = ffi.new("unsigned char[]", siglen[0])
    if lib.EVP_PKEY_sign(ctx, buf, siglen, e, 32) != 1:
        backend._consume_errors()
        raise CryptoError("Tongsuo: SM2 sign failed")
    try:
        return sm2.der_to_raw(bytes(ffi.buffer(buf)[: siglen[0]]))
    except SignatureFormatError as exc:
        raise CryptoError("Tongsuo produced an unparsable SM2 signature") from exc


def verify(
    public_key: sm2.PublicKey | bytes,
    message: bytes,
    signature: bytes,
    signer_id: bytes = sm2.DEFAULT_SIGNER_ID,
) -> bool:
    """Check a raw ``r || s`` signature with Tongsuo. Same contract as
    :func:`terminal.crypto.sm2.verify`: ``False`` for any bad signature,
    :class:`SignatureFormatError` for a malformed public key."""
    st = _require()
    pub = public_key if isinstance(public_key, sm2.PublicKey) else sm2.decode_public_key(public_key)
    if not isinstance(signature, bytes | bytearray | memoryview):
        return False
    try:
        r, s = sm2.raw_to_rs(bytes(signature))
    except SignatureFormatError:
        return False
    # Range checks here keep the DER we hand to Tongsuo well-formed and canonical.
    if not (1 <= r < sm2.N and 1 <= s < sm2.N):
        return False
    der = sm2.rs_to_der(r, s)
    e = sm2.message_digest(pub, message, signer_id).to_bytes(32, "big")
    key = _native_public_key(pub.to_bytes())
    backend = st["backend"]
    lib = backend._lib
    ctx = _pkey_ctx(st, key)
    if lib.EVP_PKEY_verify_init(ctx) != 1:
        backend._consume_errors()
        raise CryptoError("Tongsuo: SM2 verify set-up failed")
    res = lib.EVP_PKEY_verify(ctx, der, len(der), e, len(e))
    if res != 1:
        # 0 is a mismatch, < 0 an internal refusal; either way the signature is not valid.
        backend._consume_errors()
        return False
    return True
