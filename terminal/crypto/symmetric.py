"""Symmetric primitives of the social security card: SM4, DES/3DES, MACs, key derivation.

* SM4 block cipher, GB/T 32907-2016 (128-bit block and key), ECB.
* DES / two- and three-key 3DES (TDEA), ISO/IEC 18033-3 / NIST SP 800-67, ECB. A single DES
  key is run as 3DES ``K||K||K`` (EDE with equal keys is DES).
* Padding method 2 of ISO/IEC 9797-1 (append ``80`` then ``00`` to a block boundary, always).
* ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC, zero IV) and algorithm 3 (the "retail MAC",
  ANSI X9.19: single-DES CBC under K1, last block decrypted under K2, encrypted under K1).
* The card's secure-messaging MAC (4 bytes, zero IV, padding method 2):
  8-byte block ciphers keep the left 4 bytes of the final CBC block; SM4 XORs the four 4-byte
  chunks of the final 16-byte block together.
* PBOC-style key diversification (JR/T 0025 / the PBOC 2.0 e-purse scheme, as used by the
  social security card, see docs/crypto.md): for 3DES ``K' = E_K(D) || E_K(~D)``; for SM4
  ``K' = E_K(D || ~D)``; two levels for a card key (region factor, then ATR historical
  bytes; the data itself is the card's business: :mod:`terminal.ssc.cardspec`).
* Session key: the card challenge enciphered under the card key.

Every failure raises :class:`terminal.errors.CryptoError`.
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from terminal.errors import CryptoError

try:  # cryptography >= 43 moved TripleDES to the "decrepit" namespace.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - older cryptography
    _TripleDES = algorithms.TripleDES  # type: ignore[attr-defined,misc]


class SymmetricAlgorithm(enum.IntEnum):
    """The algorithm flag of the SSSE FCI (tag 86 in 9F0C): the card's symmetric cipher."""

    DES3 = 1
    SSF33 = 2  # a non-public cipher: recognised, never implemented
    SM4 = 3


def _check_alg(algorithm: SymmetricAlgorithm | int) -> SymmetricAlgorithm:
    try:
        alg = SymmetricAlgorithm(algorithm)
    except ValueError:
        raise CryptoError(f"unknown symmetric algorithm {algorithm!r}") from None
    if alg is SymmetricAlgorithm.SSF33:
        raise CryptoError("unsupported algorithm SSF33")
    return alg


def _as_bytes(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise CryptoError(f"{what} must be bytes")
    return bytes(value)


def block_size(algorithm: SymmetricAlgorithm | int) -> int:
    """Block size in bytes: 8 for DES/3DES, 16 for SM4."""
    return 16 if _check_alg(algorithm) is SymmetricAlgorithm.SM4 else 8


# --- raw ECB --------------------------------------------------------------------------------


def _ecb(algo: object, data: bytes, block: int, encrypt: bool) -> bytes:
    if len(data) % block:
        raise CryptoError(f"data length {len(data)} is not a multiple of {block}")
    cipher = Cipher(algo, modes.ECB())  # type: ignore[arg-type]
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def _sm4(key: bytes) -> object:
    key = _as_bytes(key, "SM4 key")
    if len(key) != 16:
        raise CryptoError(f"SM4 key must be 16 bytes, got {len(key)}")
    return algorithms.SM4(key)


def _tdes(key: bytes) -> object:
    key = _as_bytes(key, "DES key")
    if len(key) == 8:
        key = key * 3
    elif len(key) == 16:
        key = key + key[:8]  # two-key 3DES: K1 K2 K1
    elif len(key) != 24:
        raise CryptoError(f"DES/3DES key must be 8, 16 or 24 bytes, got {len(key)}")
    return _TripleDES(key)


def sm4_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """SM4-ECB encryption (GB/T 32907-2016); ``data`` must be whole 16-byte blocks."""
    return _ecb(_sm4(key), _as_bytes(data, "data"), 16, True)


def sm4_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """SM4-ECB decryption (GB/T 32907-2016)."""
    return _ecb(_sm4(key), _as_bytes(data, "data"), 16, False)


def des3_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """DES (8-byte key) or 3DES-EDE (16/24-byte key) ECB encryption, whole 8-byte blocks."""
    return _ecb(_tdes(key), _as_bytes(data, "data"), 8, True)


def des3_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """DES (8-byte key) or 3DES-EDE (16/24-byte key) ECB decryption."""
    return _ecb(_tdes(key), _as_bytes(data, "data"), 8, False)


def encrypt_block(algorithm: SymmetricAlgorithm | int, key: bytes, data: bytes) -> bytes:
    """ECB encryption with the cipher the FCI flag names."""
    if _check_alg(algorithm) is SymmetricAlgorithm.SM4:
        return sm4_ecb_encrypt(key, data)
    return des3_ecb_encrypt(key, data)


def decrypt_block(algorithm: SymmetricAlgorithm | int, key: bytes, data: bytes) -> bytes:
    """ECB decryption with the cipher the FCI flag names."""
    if _check_alg(algorithm) is SymmetricAlgorithm.SM4:
        return sm4_ecb_decrypt(key, data)
    return des3_ecb_decrypt(key, data)


# --- padding and MACs -----------------------------------------------------------------------


def pad_iso9797_m2(data: bytes, block: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2: ``data || 80 || 00..`` to a multiple of ``block``.
    The ``80`` is always added, so a whole-block input gains a full block."""
    if block <= 0:
        raise CryptoError("block size must be positive")
    data = _as_bytes(data, "data")
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % block)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _cbc_mac(algorithm: SymmetricAlgorithm, key: bytes, data: bytes, iv: bytes | None) -> bytes:
    # Final block of CBC encryption; data is already padded.
    block = block_size(algorithm)
    chain = bytes(block) if iv is None else _as_bytes(iv, "IV")
    if len(chain) != block:
        raise CryptoError(f"IV must be {block} bytes")
    for i in range(0, len(data), block):
        chain = encrypt_block(algorithm, key, _xor(chain, data[i : i + block]))
    return chain


def mac_iso9797_alg1(
    key: bytes,
    data: bytes,
    cipher: SymmetricAlgorithm | int = SymmetricAlgorithm.DES3,
    *,
    pad: bool = True,
    iv: bytes | None = None,
) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1: CBC-MAC with the full cipher at every step, zero IV
    unless ``iv`` is given. Pads with method 2 unless ``pad=False`` (then ``data`` must be
    whole blocks, i.e. padding method 1 was applied by the caller). Returns the whole final
    block (8 or 16 bytes); truncate as the protocol requires."""
    alg = _check_alg(cipher)
    block = block_size(alg)
    data = _as_bytes(data, "data")
    if pad:
        data = pad_iso9797_m2(data, block)
    elif not data or len(data) % block:
        raise CryptoError(f"unpadded MAC input must be a non-empty multiple of {block} bytes")
    return _cbc_mac(alg, key, data, iv)


def mac_iso9797_alg3(
    key: bytes, data: bytes, *, pad: bool = True, iv: bytes | None = None
) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC) with a 16-byte key K1||K2:
    single-DES CBC under K1, then the final block is decrypted under K2 and encrypted under
    K1 (which is 3DES on the last block only). Returns 8 bytes."""
    key = _as_bytes(key, "key")
    if len(key) != 16:
        raise CryptoError(f"retail MAC key must be 16 bytes, got {len(key)}")
    data = _as_bytes(data, "data")
    if pad:
        data = pad_iso9797_m2(data, 8)
    elif not data or len(data) % 8:
        raise CryptoError("unpadded MAC input must be a non-empty multiple of 8 bytes")
    k1, k2 = key[:8], key[8:]
    chain = _cbc_mac(SymmetricAlgorithm.DES3, k1, data, iv)
    return des3_ecb_encrypt(k1, des3_ecb_decrypt(k2, chain))


def sm_mac_3des(key: bytes, data: bytes, *, iv: bytes | None = None) -> bytes:
    """Secure-messaging MAC with an 8-byte block cipher (4 bytes): zero IV, padding method 2,
    left 4 bytes of the final block. An 8-byte (session) key gives single-DES MAC algorithm 1;
    a 16-byte key gives MAC algorithm 3 (DES chain, 3DES on the final block)."""
    key = _as_bytes(key, "key")
    if len(key) == 8:
        return mac_iso9797_alg1(key, data, SymmetricAlgorithm.DES3, iv=iv)[:4]
    if len(key) == 16:
        return mac_iso9797_alg3(key, data, iv=iv)[:4]
    raise CryptoError(f"secure-messaging 3DES MAC key must be 8 or 16 bytes, got {len(key)}")


def sm_mac_sm4(key: bytes, data: bytes, *, iv: bytes | None = None) -> bytes:
    """Secure-messaging MAC with SM4 (4 bytes): CBC-MAC with zero IV and padding method 2,
    then the final 16-byte block's four 4-byte chunks XORed together."""
    final = mac_iso9797_alg1(key, data, SymmetricAlgorithm.SM4, iv=iv)
    out = 0
    for i in range(0, 16, 4):
        out ^= int.from_bytes(final[i : i + 4], "big")
    return out.to_bytes(4, "big")


def sm_mac(algorithm: SymmetricAlgorithm | int, key: bytes, data: bytes) -> bytes:
    """The 4-byte secure-messaging MAC for the card's algorithm flag."""
    if _check_alg(algorithm) is SymmetricAlgorithm.SM4:
        return sm_mac_sm4(key, data)
    return sm_mac_3des(key, data)


# --- key diversification and session keys ---------------------------------------------------


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def diversify(master_key: bytes, data8: bytes, algorithm: SymmetricAlgorithm | int) -> bytes:
    """One level of PBOC-style diversification with 8 bytes of diversification data D.

    3DES: ``E_K(D) || E_K(~D)`` (16-byte key); SM4: ``E_K(D || ~D)`` (16 bytes)."""
    alg = _check_alg(algorithm)
    data8 = _as_bytes(data8, "diversification data")
    if len(data8) != 8:
        raise CryptoError(f"diversification data must be 8 bytes, got {len(data8)}")
    if alg is SymmetricAlgorithm.SM4:
        return sm4_ecb_encrypt(master_key, data8 + _invert(data8))
    return des3_ecb_encrypt(master_key, data8) + des3_ecb_encrypt(master_key, _invert(data8))


def ssc_card_key(master: bytes, d1: bytes, d2: bytes, algorithm: SymmetricAlgorithm | int) -> bytes:
    """Per-card key of a social security card: two diversification levels, ``d1`` (the region
    factor) then ``d2`` (ATR historical bytes T6..TD); both 8 bytes, made by
    :func:`terminal.ssc.cardspec.diversification_data`."""
    return diversify(diversify(master, d1, algorithm), d2, algorithm)


def session_key(card_key: bytes, challenge: bytes, algorithm: SymmetricAlgorithm | int) -> bytes:
    """Session key = the challenge enciphered under the card key.

    3DES: ``3DES_K(challenge8)`` - an 8-byte (single-DES) session key.
    SM4: ``SM4_K(challenge8 || 00*8)`` (a 16-byte challenge is used as is) - a 16-byte key.
    The SM4 input padding is this project's choice; see docs/crypto.md."""
    alg = _check_alg(algorithm)
    challenge = _as_bytes(challenge, "challenge")
    if alg is SymmetricAlgorithm.SM4:
        if len(challenge) == 8:
            challenge += bytes(8)
        elif len(challenge) != 16:
            raise CryptoError(f"SM4 session challenge must be 8 or 16 bytes, got {len(challenge)}")
        return sm4_ecb_encrypt(card_key, challenge)
    if len(challenge) != 8:
        raise CryptoError(f"3DES session challenge must be 8 bytes, got {len(challenge)}")
    return des3_ecb_encrypt(card_key, challenge)
