"""SM2 digital signatures in pure Python (GB/T 32918.1-2016 and GB/T 32918.2-2016).

Curve: the recommended 256-bit prime curve ``sm2p256v1`` (GB/T 32918.5-2017, also
GM/T 0003.5-2012), ``y^2 = x^3 + a x + b`` over GF(p) with ``a = p - 3``.

Signature (GB/T 32918.2 section 6):

* ``Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)``, ENTL = bit length of ID as 2 bytes
  big-endian (GB/T 32918.2 section 5.5); the default signer ID is ``1234567812345678``
  (GM/T 0009-2012 section 10).
* ``e = SM3(Z || M)``; ``(x1, y1) = k G``; ``r = (e + x1) mod n``;
  ``s = (1 + d)^-1 (k - r d) mod n``.
* Verify: ``r, s in [1, n-1]``, ``t = (r + s) mod n != 0``, ``(x1, y1) = s G + t P``,
  accept iff ``(e + x1) mod n == r``.

Signatures travel as raw ``r || s`` (64 bytes) or DER ``SEQUENCE { INTEGER r, INTEGER s }``
(GM/T 0009-2012 section 7.3). Public keys are uncompressed points ``04 || X || Y`` (65 bytes,
SEC 1 section 2.3.3).

Error policy (also in docs/crypto.md): :func:`verify` answers ``False`` for *any* signature
that is not a valid signature - wrong length, r or s out of range, mismatch - because to the
caller a malformed signature is simply not a valid one. A malformed *public key* is a
configuration or data error of its own and raises :class:`SignatureFormatError`.
:func:`der_to_raw` raises :class:`SignatureFormatError` on any encoding that is not strict DER.

Speed: point arithmetic is in Jacobian coordinates (the ``a = -3`` doubling formula). The
fixed base G uses a table of ``j * 64^i * G`` (43 windows of 6 bits, 2709 affine points,
tens of milliseconds) built lazily once per process, so ``k G`` costs 43 mixed additions and no
doubling. A variable point uses a
width-5 NAF over an affine table of odd multiples.

Side channels: Python integers are not constant-time. Signing here leaks timing about the
nonce and the key to a local observer; prefer the native back-end (``sm2_native``) for
signing with long-lived keys. Verification handles only public data.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from terminal.errors import CryptoError, SignatureFormatError

# --- domain parameters (GB/T 32918.5-2017, section 4) --------------------------------------

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_SIGNER_ID = b"1234567812345678"

PUBLIC_KEY_LEN = 65
RAW_SIGNATURE_LEN = 64

# ENTL is two bytes of *bits*, so the ID is at most 8191 bytes.
_MAX_ID_LEN = 0xFFFF // 8

_FIXED_WINDOW = 6
_NAF_WIDTH = 5

# A Jacobian point (X, Y, Z); Z == 0 is the point at infinity.
_Jac = tuple[int, int, int]
_Aff = tuple[int, int]
_INF: _Jac = (1, 1, 0)


def sm3(data: bytes) -> bytes:
    """SM3 hash (GB/T 32905-2016) of ``data`` via pyca/cryptography."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


# --- field and group arithmetic -------------------------------------------------------------


def _jac_double(pt: _Jac) -> _Jac:
    # dbl-2001-b (Bernstein-Lange EFD) for a = -3: 3 M + 5 S.
    x1, y1, z1 = pt
    if z1 == 0 or y1 == 0:
        return _INF
    delta = z1 * z1 % P
    gamma = y1 * y1 % P
    beta = x1 * gamma % P
    alpha = 3 * (x1 - delta) * (x1 + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y1 + z1) ** 2 - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return (x3, y3, z3)


def _jac_add_affine(pt: _Jac, x2: int, y2: int) -> _Jac:
    # Mixed addition Jacobian + affine (madd): 8 M + 3 S.
    x1, y1, z1 = pt
    if z1 == 0:
        return (x2, y2, 1)
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - x1) % P
    r = (s2 - y1) % P
    if h == 0:
        # Same x: either the same point (double) or opposite points (infinity).
        return _jac_double(pt) if r == 0 else _INF
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - y1 * hhh) % P
    z3 = z1 * h % P
    return (x3, y3, z3)


def _jac_add(p1: _Jac, p2: _Jac) -> _Jac:
    # General Jacobian addition (add-1998-cmo-2); used only to merge two partial sums.
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    if h == 0:
        return _jac_double(p1) if r == 0 else _INF
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = z1 * z2 * h % P
    return (x3, y3, z3)


def _to_affine(pt: _Jac) -> _Aff | None:
    x, y, z = pt
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return (x * zi2 % P, y * zi2 * zi % P)


def _batch_to_affine(points: list[_Jac]) -> list[_Aff]:
    # Montgomery's trick: one inversion for the whole table instead of one per point.
    # Callers guarantee that no point is at infinity.
    prefix = []
    acc = 1
    for _, _, z in points:
        prefix.append(acc)
        acc = acc * z % P
    inv = pow(acc, -1, P)
    out: list[_Aff] = [(0, 0)] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z = points[i]
        zi = inv * prefix[i] % P
        inv = inv * z % P
        zi2 = zi * zi % P
        out[i] = (x * zi2 % P, y * zi2 * zi % P)
    return out


def is_on_curve(x: int, y: int) -> bool:
    """True when the affine point ``(x, y)`` has coordinates in [0, p-1] and is on the curve."""
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x + A * x + B)) % P == 0


# --- fixed-base table for G -----------------------------------------------------------------

_g_table: list[list[_Aff]] | None = None
_g_table_lock = threading.Lock()


def _build_g_table() -> list[list[_Aff]]:
    windows = (256 + _FIXED_WINDOW - 1) // _FIXED_WINDOW
    per = (1 << _FIXED_WINDOW) - 1
    flat: list[_Jac] = []
    base: _Jac = (GX, GY, 1)
    for _ in range(windows):
        acc = base
        row = [acc]
        for _ in range(per - 1):
            acc = _jac_add(acc, base)
            row.append(acc)
        flat.extend(row)
        for _ in range(_FIXED_WINDOW):
            base = _jac_double(base)
    aff = _batch_to_affine(flat)
    return [aff[i * per : (i + 1) * per] for i in range(windows)]


def _get_g_table() -> list[list[_Aff]]:
    global _g_table
    table = _g_table
    if table is None:
        with _g_table_lock:
            if _g_table is None:
                _g_table = _build_g_table()
            table = _g_table
    return table


def _mul_g(k: int) -> _Jac:
    """``k G`` for 0 <= k < 2^256 using the fixed-base window table."""
    table = _get_g_table()
    mask = (1 << _FIXED_WINDOW) - 1
    p = P
    x1, y1, z1 = 1, 1, 0
    i = 0
    while k:
        digit = k & mask
        k >>= _FIXED_WINDOW
        i += 1
        if not digit:
            continue
        x2, y2 = table[i - 1][digit - 1]
        if z1 == 0:
            x1, y1, z1 = x2, y2, 1
            continue
        # Mixed addition written out inline, as in _mul_point.
        z1z1 = z1 * z1 % p
        h = (x2 * z1z1 - x1) % p
        r = (y2 * z1 * z1z1 - y1) % p
        if h == 0:
            # Cannot happen: the partial sum is a multiple of G below the current window.
            x1, y1, z1 = _jac_add_affine((x1, y1, z1), x2, y2)  # pragma: no cover
            continue  # pragma: no cover
        hh = h * h % p
        hhh = h * hh % p
        v = x1 * hh % p
        x3 = (r * r - hhh - 2 * v) % p
        y1 = (r * (v - x3) - y1 * hhh) % p
        z1 = z1 * h % p
        x1 = x3
    return (x1, y1, z1)


def _wnaf(k: int, w: int) -> list[int]:
    # Width-w NAF, least significant digit first; digits are odd and |d| < 2^(w-1).
    digits = []
    full = 1 << w
    half = 1 << (w - 1)
    while k:
        if k & 1:
            d = k & (full - 1)
            if d >= half:
                d -= full
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    return digits


def _mul_point(k: int, x: int, y: int) -> _Jac:
    """``k (x, y)`` for a validated affine point, by width-5 NAF."""
    # Odd multiples 1P, 3P, ..., 15P, made affine so the main loop uses mixed additions.
    p1: _Jac = (x, y, 1)
    two_p = _jac_double(p1)
    odd = [p1]
    for _ in range((1 << (_NAF_WIDTH - 2)) - 1):
        odd.append(_jac_add(odd[-1], two_p))
    if any(pt[2] == 0 for pt in odd):
        # Only for a point of tiny order, which a validated SM2 key (prime n) cannot be.
        raise CryptoError("point has small order")
    table = _batch_to_affine(odd)
    # The double-and-add loop is written out inline (same formulas as _jac_double and
    # _jac_add_affine): function calls and tuple packing dominate the cost in CPython.
    p = P
    x1, y1, z1 = 1, 1, 0
    for d in reversed(_wnaf(k, _NAF_WIDTH)):
        if z1:
            delta = z1 * z1 % p
            gamma = y1 * y1 % p
            beta = x1 * gamma % p
            alpha = 3 * (x1 - delta) * (x1 + delta) % p
            x3 = (alpha * alpha - 8 * beta) % p
            z1 = ((y1 + z1) ** 2 - gamma - delta) % p
            y1 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
            x1 = x3
        if d == 0:
            continue
        if d > 0:
            x2, y2 = table[d >> 1]
        else:
            x2, y2 = table[(-d) >> 1]
            y2 = p - y2
        if z1 == 0:
            x1, y1, z1 = x2, y2, 1
            continue
        z1z1 = z1 * z1 % p
        h = (x2 * z1z1 - x1) % p
        r = (y2 * z1 * z1z1 - y1) % p
        if h == 0:
            # Rare (needs a special relation between k and the point): fall back.
            x1, y1, z1 = _jac_add_affine((x1, y1, z1), x2, y2)
            continue
        hh = h * h % p
        hhh = h * hh % p
        v = x1 * hh % p
        x3 = (r * r - hhh - 2 * v) % p
        y1 = (r * (v - x3) - y1 * hhh) % p
        z1 = z1 * h % p
        x1 = x3
    return (x1, y1, z1)


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A validated SM2 public key (affine point on sm2p256v1, not infinity)."""

    x: int
    y: int

    def to_bytes(self) -> bytes:
        """Uncompressed encoding ``04 || X || Y`` (65 bytes)."""
        return b"\x04" + self.x.to_bytes(32, "big") + self.y.to_bytes(32, "big")


@dataclass(frozen=True, slots=True, repr=False)
class PrivateKey:
    """An SM2 private key ``d`` in [1, n-2] (``1 + d`` must be invertible mod n)."""

    d: int

    def __repr__(self) -> str:
        # Never let a key reach a log through repr().
        return "PrivateKey(<secret>)"

    def public_key(self) -> PublicKey:
        pt = _to_affine(_mul_g(self.d))
        if pt is None:  # pragma: no cover - impossible for d in range
            raise CryptoError("private key gives the point at infinity")
        return PublicKey(*pt)

    def to_bytes(self) -> bytes:
        """The 32-byte big-endian scalar."""
        return self.d.to_bytes(32, "big")


def private_key_from_int(d: int) -> PrivateKey:
    """Wrap a scalar, checking the range GB/T 32918.1 section 6.1 requires ([1, n-2])."""
    if not 1 <= d <= N - 2:
        raise CryptoError("SM2 private key out of range [1, n-2]")
    return PrivateKey(d)


def private_key_from_bytes(data: bytes) -> PrivateKey:
    """A private key from its 32-byte big-endian encoding."""
    if len(data) != 32:
        raise CryptoError(f"SM2 private key must be 32 bytes, got {len(data)}")
    return private_key_from_int(int.from_bytes(data, "big"))


def generate_private_key() -> PrivateKey:
    """A fresh key from the OS CSPRNG (``secrets``), uniform in [1, n-2]."""
    return PrivateKey(secrets.randbelow(N - 2) + 1)


def decode_public_key(data: bytes) -> PublicKey:
    """Parse and validate ``04 || X || Y``; :class:`SignatureFormatError` if it is not a
    curve point. The cofactor of sm2p256v1 is 1, so on-curve and not-infinity is enough."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SignatureFormatError("public key must be bytes")
    data = bytes(data)
    if len(data) != PUBLIC_KEY_LEN or data[0] != 0x04:
        raise SignatureFormatError("SM2 public key must be 65 bytes 04||X||Y (uncompressed)")
    x = int.from_bytes(data[1:33], "big")
    y = int.from_bytes(data[33:], "big")
    if not is_on_curve(x, y):
        raise SignatureFormatError("SM2 public key is not a point on sm2p256v1")
    return PublicKey(x, y)


# --- Z value and digest ---------------------------------------------------------------------

_CURVE_BYTES = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY))


def z_value(public_key: PublicKey, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
    """``Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA)`` (GB/T 32918.2, 5.5)."""
    if len(signer_id) > _MAX_ID_LEN:
        raise CryptoError(f"SM2 signer ID longer than {_MAX_ID_LEN} bytes")
    entl = (len(signer_id) * 8).to_bytes(2, "big")
    return sm3(
        entl
        + bytes(signer_id)
        + _CURVE_BYTES
        + public_key.x.to_bytes(32, "big")
        + public_key.y.to_bytes(32, "big")
    )


def message_digest(
    public_key: PublicKey, message: bytes, signer_id: bytes = DEFAULT_SIGNER_ID
) -> int:
    """``e = SM3(Z_A || M)`` as an integer (GB/T 32918.2, 6.1 steps A1-A3)."""
    return int.from_bytes(sm3(z_value(public_key, signer_id) + bytes(message)), "big")


# --- signature encodings --------------------------------------------------------------------


def raw_to_rs(signature: bytes) -> tuple[int, int]:
    """Split a 64-byte ``r || s``; :class:`SignatureFormatError` on a wrong length."""
    if len(signature) != RAW_SIGNATURE_LEN:
        raise SignatureFormatError(f"raw signature must be 64 bytes, got {len(signature)}")
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")


def rs_to_raw(r: int, s: int) -> bytes:
    """``r || s`` as 2 x 32 bytes big-endian."""
    if not (0 <= r < 1 << 256 and 0 <= s < 1 << 256):
        raise SignatureFormatError("r or s does not fit in 32 bytes")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _der_int(v: int) -> bytes:
    body = v.to_bytes((v.bit_length() + 8) // 8, "big")  # leading 00 when the top bit is set
    return b"\x02" + bytes([len(body)]) + body


def rs_to_der(r: int, s: int) -> bytes:
    """DER ``SEQUENCE { INTEGER r, INTEGER s }`` (X.690 section 10, minimal encodings)."""
    if not (1 <= r < 1 << 256 and 1 <= s < 1 << 256):
        raise SignatureFormatError("r and s must be positive 256-bit integers")
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def _parse_der_int(data: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(data) or data[pos] != 0x02:
        raise SignatureFormatError("DER: expected INTEGER")
    length = data[pos + 1]
    # The longest INTEGER we accept is 33 bytes, so long-form lengths never occur in DER.
    if length == 0 or length > 33:
        raise SignatureFormatError("DER: bad INTEGER length")
    start = pos + 2
    end = start + length
    if end > len(data):
        raise SignatureFormatError("DER: truncated INTEGER")
    body = data[start:end]
    if body[0] & 0x80:
        raise SignatureFormatError("DER: negative INTEGER")
    if length > 1 and body[0] == 0 and not body[1] & 0x80:
        raise SignatureFormatError("DER: INTEGER not minimally encoded")
    return int.from_bytes(body, "big"), end


def der_to_rs(signature: bytes) -> tuple[int, int]:
    """Strictly parse DER ``SEQUENCE { INTEGER r, INTEGER s }``.

    Rejects (with :class:`SignatureFormatError`) long-form or indefinite lengths, trailing
    bytes, non-minimal or negative integers, and values wider than 256 bits. The range
    [1, n-1] is checked by :func:`verify`, not here."""
    data = bytes(signature)
    if len(data) < 8 or data[0] != 0x30 or data[1] != len(data) - 2 or data[1] > 0x7F:
        raise SignatureFormatError("DER: expected one short-form SEQUENCE and nothing after")
    r, pos = _parse_der_int(data, 2)
    s, pos = _parse_der_int(data, pos)
    if pos != len(data):
        raise SignatureFormatError("DER: bytes after the second INTEGER")
    if r >= 1 << 256 or s >= 1 << 256:
        raise SignatureFormatError("DER: INTEGER wider than 256 bits")
    return r, s


def der_to_raw(signature: bytes) -> bytes:
    """DER signature -> 64-byte ``r || s``."""
    return rs_to_raw(*der_to_rs(signature))


def raw_to_der(signature: bytes) -> bytes:
    """64-byte ``r || s`` -> DER."""
    return rs_to_der(*raw_to_rs(signature))


# --- sign / verify --------------------------------------------------------------------------


def sign_digest_with_k(private_key: PrivateKey, e: int, k: int) -> tuple[int, int] | None:
    """One signing attempt with a given nonce ``k`` (GB/T 32918.2, 6.1 steps A3-A6).

    Returns ``None`` when this ``k`` must be rejected (``r == 0``, ``r + k == n`` or
    ``s == 0``). Internal and for known-answer tests: a repeated ``k`` reveals the key."""
    if not 1 <= k < N:
        raise CryptoError("SM2 nonce out of range")
    d = private_key.d
    pt = _to_affine(_mul_g(k))
    if pt is None:  # pragma: no cover - k in range
        return None
    r = (e + pt[0]) % N
    if r == 0 or r + k == N:
        return None
    s = pow(1 + d, -1, N) * (k - r * d) % N
    if s == 0:
        return None
    return r, s


def sign_with_k(
    private_key: PrivateKey, message: bytes, k: int, signer_id: bytes = DEFAULT_SIGNER_ID
) -> bytes:
    """Deterministic signature with the given nonce, raw ``r || s``; for known-answer tests."""
    e = message_digest(private_key.public_key(), message, signer_id)
    rs = sign_digest_with_k(private_key, e, k)
    if rs is None:
        raise CryptoError("SM2 nonce rejected")
    return rs_to_raw(*rs)


def sign(
    private_key: PrivateKey,
    message: bytes,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    public_key: PublicKey | None = None,
) -> bytes:
    """Sign ``message``; returns raw ``r || s`` (64 bytes). Nonces come from ``secrets``.

    ``public_key`` may be passed to skip recomputing it (it enters Z)."""
    pub = public_key if public_key is not None else private_key.public_key()
    e = message_digest(pub, message, signer_id)
    while True:
        k = secrets.randbelow(N - 1) + 1
        rs = sign_digest_with_k(private_key, e, k)
        if rs is not None:
            return rs_to_raw(*rs)


def verify_digest(public_key: PublicKey, e: int, r: int, s: int) -> bool:
    """GB/T 32918.2 section 7.1 steps B1-B2 and B5-B7 on a computed ``e``."""
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if t == 0:
        return False
    pt = _jac_add(_mul_g(s), _mul_point(t, public_key.x, public_key.y))
    aff = _to_affine(pt)
    if aff is None:
        return False
    return (e + aff[0]) % N == r


def verify(
    public_key: PublicKey | bytes,
    message: bytes,
    signature: bytes,
    signer_id: bytes = DEFAULT_SIGNER_ID,
) -> bool:
    """Check a raw ``r || s`` signature. ``False`` for any invalid or malformed signature;
    :class:`SignatureFormatError` only for a malformed public key."""
    pub = public_key if isinstance(public_key, PublicKey) else decode_public_key(public_key)
    if not isinstance(signature, bytes | bytearray | memoryview):
        return False
    try:
        r, s = raw_to_rs(bytes(signature))
    except SignatureFormatError:
        return False
    return verify_digest(pub, message_digest(pub, message, signer_id), r, s)
