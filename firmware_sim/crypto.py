"""The simulated cards' symmetric cryptography, built directly on ``cryptography``.

Written from docs/crypto.md, docs/card-authentication.md and docs/transit.md (the card side
of each computation), independently of ``terminal.crypto.symmetric``: the known-answer tests
in ``tests/unit/test_sim_crypto.py`` hold the two to the same published vectors.

* Block ciphers: SM4 (GB/T 32907-2016) and DES / two-key 3DES (SP 800-67), ECB. An 8-byte
  key is single DES (run as 3DES K||K||K), a 16-byte key is 3DES K1 K2 K1.
* Secure-messaging MAC, 4 bytes: zero IV, ISO/IEC 9797-1 padding method 2 (``80 00..``).
  3DES: CBC-MAC, single DES under an 8-byte key (MAC algorithm 1), or the retail MAC under a
  16-byte key (algorithm 3: DES chain under K1, last block D_K2 then E_K1); left 4 bytes.
  SM4: CBC-MAC, then the last 16-byte block's four 4-byte chunks XORed together.
* PBOC diversification of a key K with 8 bytes D: 3DES ``E_K(D) || E_K(~D)``, SM4
  ``E_K(D || ~D)``. An SSC card key is two levels: the region factor, then ATR T6..TD.
* Session key = the process factor enciphered under the card key: 3DES ``E_K(P)`` (an
  8-byte single-DES key), SM4 ``E_K(P || 00*8)``.
* Cryptogram of 8 bytes X: leftmost 8 bytes of ``E_SK(X || 00..)`` (zero padding to the
  block).
* Purchase (T-Union): DPK = master diversified by issuer id then application serial low 8;
  SK = session key of random(4) || counter(2) || terminal serial low 2; MAC1, MAC2 and TAC
  as docs/transit.md defines them. The maintenance key DAMK is made like the DPK from the
  maintenance master; APPLICATION BLOCK's MAC is the same MAC with an initial value (the
  card's challenge || zeros).

Algorithms are the card's algorithm flag: 1 (3DES) or 3 (SM4); anything else, and any key
or data of the wrong size, raises :class:`terminal.errors.CryptoError`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware_sim.spec import ssc, tunion
from terminal.errors import CryptoError

try:  # cryptography >= 43 keeps TripleDES in the "decrepit" namespace
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    TripleDES = algorithms.TripleDES  # type: ignore[attr-defined,misc]

DES3 = ssc.Algorithm.DES3
SM4 = ssc.Algorithm.SM4
MAC_LENGTH = 4


def _algorithm(algorithm: int) -> ssc.Algorithm:
    if algorithm == DES3:
        return DES3
    if algorithm == SM4:
        return SM4
    raise CryptoError(f"no cipher for algorithm flag {algorithm!r} (1 3DES, 3 SM4)")


def block_size(algorithm: int) -> int:
    """8 for 3DES, 16 for SM4."""
    return 16 if _algorithm(algorithm) is SM4 else 8


def _cipher(algorithm: int, key: bytes) -> Cipher:  # type: ignore[type-arg]
    key = bytes(key)
    if _algorithm(algorithm) is SM4:
        if len(key) != 16:
            raise CryptoError(f"an SM4 key is 16 bytes, not {len(key)}")
        return Cipher(algorithms.SM4(key), modes.ECB())
    if len(key) == 8:
        key *= 3
    elif len(key) == 16:
        key += key[:8]
    elif len(key) != 24:
        raise CryptoError(f"a DES/3DES key is 8, 16 or 24 bytes, not {len(key)}")
    return Cipher(TripleDES(key), modes.ECB())


def encrypt(algorithm: int, key: bytes, data: bytes) -> bytes:
    """ECB encryption of whole blocks."""
    if len(data) % block_size(algorithm):
        raise CryptoError(f"{len(data)} bytes are not whole {block_size(algorithm)}-byte blocks")
    enc = _cipher(algorithm, key).encryptor()
    return enc.update(bytes(data)) + enc.finalize()


def decrypt(algorithm: int, key: bytes, data: bytes) -> bytes:
    """ECB decryption of whole blocks."""
    if len(data) % block_size(algorithm):
        raise CryptoError(f"{len(data)} bytes are not whole {block_size(algorithm)}-byte blocks")
    dec = _cipher(algorithm, key).decryptor()
    return dec.update(bytes(data)) + dec.finalize()


# --- MACs -----------------------------------------------------------------------------------


def pad_method_2(data: bytes, block: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2: ``data || 80 || 00..`` (the 80 always added)."""
    padded = bytes(data) + b"\x80"
    return padded + bytes(-len(padded) % block)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def cbc_mac(
    algorithm: int, key: bytes, data: bytes, *, pad: bool = True, iv: bytes | None = None
) -> bytes:
    """The last block of CBC encryption with a zero IV (MAC algorithm 1), data padded with
    method 2 first (``pad`` False: ``data`` is whole blocks already, padding method 1).
    ``iv``: an initial value of one block instead of zeros."""
    block = block_size(algorithm)
    padded = pad_method_2(data, block) if pad else bytes(data)
    if not padded or len(padded) % block:
        raise CryptoError(f"unpadded MAC input must be whole {block}-byte blocks")
    chain = bytes(block) if iv is None else bytes(iv)
    if len(chain) != block:
        raise CryptoError(f"an initial value is one {block}-byte block, not {len(chain)} bytes")
    for i in range(0, len(padded), block):
        chain = encrypt(algorithm, key, _xor(chain, padded[i : i + block]))
    return chain


def retail_mac(key: bytes, data: bytes, *, pad: bool = True, iv: bytes | None = None) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (ANSI X9.19) with K1 || K2: single-DES CBC under K1,
    the last block decrypted under K2 and encrypted under K1. 8 bytes."""
    if len(key) != 16:
        raise CryptoError(f"a retail MAC key is 16 bytes, not {len(key)}")
    k1, k2 = key[:8], key[8:]
    chain = cbc_mac(DES3, k1, data, pad=pad, iv=iv)
    return encrypt(DES3, k1, decrypt(DES3, k2, chain))


def sm_mac(
    algorithm: int, key: bytes, data: bytes, *, iv: bytes | None = None, pad: bool = True
) -> bytes:
    """The 4-byte MAC of the card's secure messaging and of the e-purse (MAC1, MAC2, TAC).

    ``iv`` (one block: 8 bytes 3DES, 16 SM4) replaces the zero initial value; ``pad`` False
    takes ``data`` as whole blocks already padded (what a PSAM's CIPHER DATA gets)."""
    if _algorithm(algorithm) is SM4:
        final = cbc_mac(SM4, key, data, pad=pad, iv=iv)
        folded = bytes(4)
        for i in range(0, 16, 4):
            folded = _xor(folded, final[i : i + 4])
        return folded
    if len(key) == 8:
        return cbc_mac(DES3, key, data, pad=pad, iv=iv)[:MAC_LENGTH]
    if len(key) == 16:
        return retail_mac(key, data, pad=pad, iv=iv)[:MAC_LENGTH]
    raise CryptoError(f"a 3DES MAC key is 8 or 16 bytes, not {len(key)}")


def mac_initial_value(algorithm: int, value: bytes) -> bytes:
    """An initial value of the MAC block size: ``value`` (a 4-byte challenge, or 8 bytes)
    right-padded with zeros to 8 bytes, then to 16 for SM4 (``value || 00..``)."""
    if len(value) > 8:
        raise CryptoError(f"a MAC initial value holds at most 8 bytes, not {len(value)}")
    return bytes(value) + bytes(block_size(algorithm) - len(value))


def application_block_mac(algorithm: int, damk: bytes, challenge: bytes, header: bytes) -> bytes:
    """The MAC of APPLICATION BLOCK (``84 1E 00 P2 04``): the command header padded with
    ISO 9797-1 method 2, initial value = the card's challenge || zeros, under the DAMK."""
    return sm_mac(algorithm, damk, header, iv=mac_initial_value(algorithm, challenge))


# --- keys -----------------------------------------------------------------------------------


def diversify(algorithm: int, key: bytes, data: bytes) -> bytes:
    """One PBOC diversification level: 3DES ``E_K(D) || E_K(~D)``, SM4 ``E_K(D || ~D)``."""
    if len(data) != 8:
        raise CryptoError(f"diversification data is 8 bytes, not {len(data)}")
    inverted = bytes(b ^ 0xFF for b in data)
    if _algorithm(algorithm) is SM4:
        return encrypt(SM4, key, bytes(data) + inverted)
    return encrypt(DES3, key, bytes(data)) + encrypt(DES3, key, inverted)


def ssc_card_key(algorithm: int, master: bytes, region: str, historical: bytes) -> bytes:
    """A social security card's own key: the master diversified with the region factor
    (``ASCII(region) || "sx"``, Zhejiang ``ASCII(4 digits) || "00sx"``), then with the ATR
    historical bytes T6..TD."""
    try:
        level1, level2 = ssc.region_factor(region), ssc.card_factor(historical)
    except ValueError as exc:
        raise CryptoError(str(exc)) from None
    return diversify(algorithm, diversify(algorithm, master, level1), level2)


def session_key(algorithm: int, card_key: bytes, process_factor: bytes) -> bytes:
    """The process factor (8 bytes) enciphered under the card key: 3DES gives an 8-byte
    single-DES key, SM4 a 16-byte key (factor padded with 8 zero bytes)."""
    if len(process_factor) != 8:
        raise CryptoError(f"a process factor is 8 bytes, not {len(process_factor)}")
    if _algorithm(algorithm) is SM4:
        return encrypt(SM4, card_key, bytes(process_factor) + bytes(8))
    return encrypt(DES3, card_key, process_factor)


def cryptogram(algorithm: int, key: bytes, data: bytes) -> bytes:
    """Leftmost 8 bytes of ``E_key(data || 00..)``: what INTERNAL AUTHENTICATE answers and
    EXTERNAL AUTHENTICATE expects, and what the PSAM's CIPHER DATA computes."""
    size = ssc.CRYPTOGRAM_LENGTH
    if len(data) != size:
        raise CryptoError(f"a cryptogram is of {size} bytes, not {len(data)}")
    return encrypt(algorithm, key, bytes(data) + bytes(block_size(algorithm) - size))[:size]


# --- the e-purse purchase -------------------------------------------------------------------


def purchase_key(algorithm: int, master: bytes, issuer_id: bytes, app_serial: bytes) -> bytes:
    """The card's purchase key DPK: the master diversified by the issuer id (0x15 bytes 0-7),
    then by the low 8 bytes of the application serial (0x15 bytes 12-19)."""
    if len(issuer_id) != 8 or len(app_serial) != 10:
        raise CryptoError("the issuer id is 8 bytes and the application serial 10")
    return diversify(algorithm, diversify(algorithm, master, issuer_id), app_serial[2:])


def purchase_session_key(
    algorithm: int, dpk: bytes, random: bytes, counter: int, terminal_serial: int
) -> bytes:
    """SK = session key of random(4) || counter(2) || terminal serial low 2 bytes."""
    if len(random) != 4:
        raise CryptoError(f"the card random is 4 bytes, not {len(random)}")
    factor = random + counter.to_bytes(2, "big") + (terminal_serial & 0xFFFF).to_bytes(2, "big")
    return session_key(algorithm, dpk, factor)


def mac1(
    algorithm: int,
    sk: bytes,
    amount: int,
    transaction_type: int,
    terminal_number: bytes,
    date: bytes,
    time: bytes,
) -> bytes:
    """MAC1 = MAC of amount(4) || type(1) || terminal number(6) || date(4) || time(3)."""
    data = amount.to_bytes(4, "big") + bytes((transaction_type,)) + terminal_number + date + time
    return sm_mac(algorithm, sk, data)


def mac2(algorithm: int, sk: bytes, amount: int) -> bytes:
    """MAC2 = MAC of amount(4) under SK."""
    return sm_mac(algorithm, sk, amount.to_bytes(4, "big"))


def tac_key(algorithm: int, dpk: bytes, dtk: bytes | None = None) -> bytes:
    """The key the TAC is made under: without ``dtk``, the DPK diversified with ``"TAC"
    00*5`` (the project's convention); with it, the card's separate TAC key DTK itself. For
    3DES either is folded into one DES key (left XOR right)."""
    key = diversify(algorithm, dpk, tunion.TAC_DIVERSIFIER) if dtk is None else dtk
    if len(key) != 16:
        raise CryptoError(f"a TAC key is 16 bytes before folding, not {len(key)}")
    if _algorithm(algorithm) is SM4:
        return key
    return _xor(key[:8], key[8:])


def maintenance_key(algorithm: int, master: bytes, issuer_id: bytes, app_serial: bytes) -> bytes:
    """The card's application maintenance key DAMK: the maintenance master (MAMK)
    diversified as the purchase master is (issuer id, then the application serial's low 8
    bytes)."""
    return purchase_key(algorithm, master, issuer_id, app_serial)


def tac_card_key(algorithm: int, tac_master: bytes, issuer_id: bytes, app_serial: bytes) -> bytes:
    """The card's separate TAC key DTK: the issuer's TAC master diversified exactly as the
    purchase master is for the DPK (issuer id, then the application serial's low 8 bytes)."""
    return purchase_key(algorithm, tac_master, issuer_id, app_serial)


def tac(
    algorithm: int,
    dpk: bytes,
    amount: int,
    transaction_type: int,
    terminal_number: bytes,
    terminal_serial: int,
    date: bytes,
    time: bytes,
    *,
    dtk: bytes | None = None,
) -> bytes:
    """TAC = MAC under the TAC key (:func:`tac_key`: from ``dpk``, or the card's separate
    ``dtk``) of amount(4) || type(1) || terminal number(6) || terminal serial(4) || date(4)
    || time(3)."""
    data = (
        amount.to_bytes(4, "big")
        + bytes((transaction_type,))
        + terminal_number
        + terminal_serial.to_bytes(4, "big")
        + date
        + time
    )
    return sm_mac(algorithm, tac_key(algorithm, dpk, dtk), data)
