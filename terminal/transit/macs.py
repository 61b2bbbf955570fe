"""The keys and MACs of a T-Union purchase (docs/transit.md "Keys and MACs"): what the
card, the PSAM and the back office each compute the same way.

* DPK, the card's purchase key: :func:`card_purchase_key`.
* SK, the session key of one purchase: :func:`purchase_session_key`.
* MAC1 (the terminal's, checked by the card): :func:`mac1_input`, :func:`purchase_mac1`.
* MAC2 (the card's, checked by the PSAM): :func:`purchase_mac2`.
* TAC (the card's, checked by the back office): :func:`tac_key`, :func:`purchase_tac`.

Pure functions over :mod:`terminal.crypto.symmetric`; the terminal never calls them itself
(its secure module does: :mod:`terminal.secure.purchase`).
"""

from __future__ import annotations

from terminal.crypto.symmetric import SymmetricAlgorithm, diversify, session_key, sm_mac
from terminal.errors import TransitError
from terminal.transit.records import APP_SERIAL_LENGTH, ISSUER_ID_LENGTH

TAC_VARIANT = b"TAC\x00\x00\x00\x00\x00"
"""Diversification data turning the card's purchase key into its TAC key (docs/transit.md)."""


def card_purchase_key(
    master: bytes, issuer_id: bytes, app_serial: bytes, algorithm: SymmetricAlgorithm
) -> bytes:
    """The card's purchase key DPK: the master diversified by the issuer id (0x15 bytes 0-7),
    then by the low 8 bytes of the application serial (0x15 bytes 12-19)."""
    if len(issuer_id) != ISSUER_ID_LENGTH or len(app_serial) != APP_SERIAL_LENGTH:
        raise TransitError("issuer id is 8 bytes and application serial 10 bytes")
    return diversify(diversify(master, issuer_id, algorithm), app_serial[2:], algorithm)


def purchase_session_key(
    card_key: bytes, random: bytes, counter: int, terminal_serial: int, alg: SymmetricAlgorithm
) -> bytes:
    """SK = E_DPK(random(4) || counter(2) || terminal serial low 2 bytes): 8 bytes (single
    DES) for 3DES, 16 for SM4 (input padded with 8 zero bytes, as the SSSE session keys)."""
    seed = random + counter.to_bytes(2, "big") + (terminal_serial & 0xFFFF).to_bytes(2, "big")
    return session_key(card_key, seed, alg)


def mac1_input(
    amount: int, transaction_type: int, terminal_number: bytes, date: bytes, time: bytes
) -> bytes:
    """amount(4) || type(1) || terminal number(6) || date(4) || time(3): 18 bytes."""
    return amount.to_bytes(4, "big") + bytes((transaction_type,)) + terminal_number + date + time


def purchase_mac1(alg: SymmetricAlgorithm, sk: bytes, data: bytes) -> bytes:
    """MAC1: the 4-byte secure-messaging MAC (zero IV, ISO 9797-1 padding 2) of
    :func:`mac1_input` under SK."""
    return sm_mac(alg, sk, data)


def purchase_mac2(alg: SymmetricAlgorithm, sk: bytes, amount: int) -> bytes:
    """MAC2: the 4-byte MAC of amount(4) under SK."""
    return sm_mac(alg, sk, amount.to_bytes(4, "big"))


def tac_key(card_key: bytes, alg: SymmetricAlgorithm) -> bytes:
    """The TAC key: DPK diversified with "TAC" || 00*5; for 3DES folded (left XOR right) into
    a single-DES key, as PBOC folds the DTK."""
    key = diversify(card_key, TAC_VARIANT, alg)
    if alg is SymmetricAlgorithm.SM4:
        return key
    return bytes(a ^ b for a, b in zip(key[:8], key[8:], strict=True))


def purchase_tac(
    alg: SymmetricAlgorithm,
    card_key: bytes,
    amount: int,
    transaction_type: int,
    terminal_number: bytes,
    terminal_serial: int,
    date: bytes,
    time: bytes,
) -> bytes:
    """TAC = MAC under :func:`tac_key` of amount(4) || type(1) || terminal number(6) ||
    terminal serial(4) || date(4) || time(3). Only the card and the back office compute it."""
    data = (
        amount.to_bytes(4, "big")
        + bytes((transaction_type,))
        + terminal_number
        + terminal_serial.to_bytes(4, "big")
        + date
        + time
    )
    return sm_mac(alg, tac_key(card_key, alg), data)
