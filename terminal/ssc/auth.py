"""Symmetric card authentication of the SSSE: commands and cryptograms.

The protocol is written down in docs/card-authentication.md.

Pure functions: the command APDUs of INTERNAL AUTHENTICATE, GET CHALLENGE and EXTERNAL
AUTHENTICATE, and the cryptogram both the card and the secure module compute. The command
headers and the RKSSSE key id come from :data:`terminal.ssc.cardspec.CARD_SPEC`.

On the wire, as real cards take them (gdgly/SI_3rdCard card logs)::

    00 88 00 00 10 P || R             INTERNAL AUTHENTICATE -> C = cryptogram of R under
                                      the session key of IRK from P
    00 84 00 00 08                    GET CHALLENGE -> RC, the card's process factor
    00 82 00 0A 10 A || R'            EXTERNAL AUTHENTICATE with RKSSSE: A = cryptogram of R'
                                      under the session key of RKSSSE from RC
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable

from terminal.crypto.symmetric import (
    SymmetricAlgorithm,
    block_size,
    encrypt_block,
    session_key,
    ssc_card_key,
)
from terminal.errors import CryptoError
from terminal.iso7816.apdu import CommandAPDU
from terminal.ssc.cardspec import CARD_SPEC, CardSpec, diversification_data

CRYPTOGRAM_LENGTH = 8
PROCESS_FACTOR_LENGTH = 8
CHALLENGE_LENGTH = CARD_SPEC.challenge_length

RandomSource = Callable[[int], bytes]
"""Where the terminal's random bytes come from: ``secrets.token_bytes`` unless a test or a
trace replay hands in its own."""


class KeyName(enum.Enum):
    """The SSSE keys a secure module holds masters of."""

    IRK = "irk"  # internal authentication
    RKSSSE = "rkssse"  # read key: external authentication before EF06 on 3.0 cards
    UKSSSE = "ukssse"  # update key


def random_bytes(n: int = 8) -> bytes:
    """Process factors, originals and challenges: from ``secrets``, never ``random``."""
    return secrets.token_bytes(n)


def cryptogram(algorithm: SymmetricAlgorithm | int, key: bytes, data: bytes) -> bytes:
    """Leftmost 8 bytes of ``E_key(data || 00..)``, data padded with zeros to the block."""
    if len(data) != CRYPTOGRAM_LENGTH:
        raise CryptoError(f"cryptogram input must be 8 bytes, got {len(data)}")
    block = block_size(algorithm)
    return encrypt_block(algorithm, key, data + bytes(block - len(data)))[:CRYPTOGRAM_LENGTH]


def card_cryptogram(
    algorithm: SymmetricAlgorithm | int,
    master_key: bytes,
    region6: str,
    historical13: bytes,
    process_factor: bytes,
    data: bytes,
) -> bytes:
    """The whole derivation: card key from the master (region factor, then ATR historical
    bytes), session key from the process factor, then the cryptogram of ``data``. What a
    secure module computes from its master keys."""
    d1, d2 = diversification_data(region6, historical13)
    card_key = ssc_card_key(master_key, d1, d2, algorithm)
    return cryptogram(algorithm, session_key(card_key, process_factor, algorithm), data)


def internal_authenticate(
    process_factor: bytes, original: bytes, spec: CardSpec = CARD_SPEC
) -> CommandAPDU:
    """``00 88 00 00 10 P || R``: the card answers the cryptogram of R under its IRK.

    Sent without Le, as real readers send it: a T=0 card answers ``61 08`` and the channel
    fetches the cryptogram with GET RESPONSE, a T=1 or contactless card answers it at once.
    """
    cla, ins, p1, p2 = spec.internal_authenticate
    return CommandAPDU(cla, ins, p1, p2, bytes(process_factor) + bytes(original))


def get_challenge(spec: CardSpec = CARD_SPEC) -> CommandAPDU:
    """``00 84 00 00 08``: 8 random bytes from the card: the process factor of EXTERNAL
    AUTHENTICATE."""
    cla, ins, p1, p2 = spec.get_challenge
    return CommandAPDU(cla, ins, p1, p2, le=spec.challenge_length)


def external_authenticate(
    auth_data: bytes, original: bytes, spec: CardSpec = CARD_SPEC
) -> CommandAPDU:
    """``00 82 00 0A 10 A || R'``: the terminal's cryptogram A of the original R' under the
    session key of RKSSSE from the card's last challenge; the card grants the read right
    (``9000``) or answers ``63Cx`` (x tries left), ``6983`` once blocked."""
    cla, ins, p1 = spec.external_authenticate
    return CommandAPDU(cla, ins, p1, spec.rkssse_key_id, bytes(auth_data) + bytes(original))
