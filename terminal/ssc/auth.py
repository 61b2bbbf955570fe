"""Symmetric card authentication of the SSSE: commands and cryptograms.

The protocol is written down in docs/card-authentication.md.

Pure functions: the command APDUs of INTERNAL AUTHENTICATE, GET CHALLENGE and EXTERNAL
AUTHENTICATE, and the cryptogram both the card and the secure module compute. The command
bytes live in :data:`COMMANDS` so a deployment can adjust them where the public
specification is unconfirmed.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from terminal.apdu import CommandAPDU
from terminal.crypto.symmetric import (
    SymmetricAlgorithm,
    block_size,
    encrypt_block,
    session_key,
    ssc_card_key,
)
from terminal.errors import CryptoError

CRYPTOGRAM_LENGTH = 8
PROCESS_FACTOR_LENGTH = 8
CHALLENGE_LENGTH = 8


class KeyName(enum.Enum):
    """The SSSE keys a secure module holds masters of."""

    IRK = "irk"  # internal authentication
    RKSSSE = "rkssse"  # read key: external authentication before EF06 on 3.0 cards
    UKSSSE = "ukssse"  # update key


@dataclass(frozen=True)
class AuthCommands:
    """Header bytes of the authentication commands (ISO 7816-4 defaults)."""

    internal_authenticate: tuple[int, int, int] = (0x00, 0x88, 0x00)  # CLA INS P1
    get_challenge: tuple[int, int] = (0x00, 0x84)
    external_authenticate: tuple[int, int, int] = (0x00, 0x82, 0x00)
    irk_key_id: int = 0x01
    rkssse_key_id: int = 0x02


COMMANDS = AuthCommands()


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
    """The whole derivation: card key from the master, session key from the process factor,
    then the cryptogram of ``data``. What a secure module computes from its master keys."""
    card_key = ssc_card_key(master_key, region6, historical13, algorithm)
    return cryptogram(algorithm, session_key(card_key, process_factor, algorithm), data)


def internal_authenticate(process_factor: bytes, original: bytes) -> CommandAPDU:
    """``00 88 00 01 10 P || R 00``: the card answers the cryptogram of R under its IRK."""
    cla, ins, p1 = COMMANDS.internal_authenticate
    return CommandAPDU(cla, ins, p1, COMMANDS.irk_key_id, process_factor + original, 256)


def get_challenge() -> CommandAPDU:
    """``00 84 00 00 08``: 8 random bytes from the card, for EXTERNAL AUTHENTICATE."""
    cla, ins = COMMANDS.get_challenge
    return CommandAPDU(cla, ins, 0x00, 0x00, le=CHALLENGE_LENGTH)


def external_authenticate(auth_data: bytes, process_factor: bytes) -> CommandAPDU:
    """``00 82 00 02 10 A || P``: the terminal's cryptogram of the card challenge."""
    cla, ins, p1 = COMMANDS.external_authenticate
    return CommandAPDU(cla, ins, p1, COMMANDS.rkssse_key_id, auth_data + process_factor)
