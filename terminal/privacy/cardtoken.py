"""The keyed token of a card number: what the journal and the hotlist know a card by.

``token = HMAC-SHA256(key, "onecard/card-token/v1" || card number)[:16]``. The key is a
deployment-wide secret (the back office computes the same tokens for the hotlist), read
from an operator file. Without the key a token says nothing about the card; the hotlist
keeps the first 8 bytes (:func:`hotlist_key`) as a 64-bit integer.

A card without the social security application - a plain T-Union (交通联合) transit card -
has no card number; it is known by its e-purse application serial instead:
:func:`tunion_card_token` is ``card_token(key, "tunion:" + serial as 20 lower-case hex
digits)``. The prefix keeps the two namespaces apart: no SSC card number (9 characters, no
colon) or e-code card reference is ever the input of a T-Union token.
"""

from __future__ import annotations

import hashlib
import hmac

from terminal.errors import ConfigError

DOMAIN = b"onecard/card-token/v1"
TOKEN_LENGTH = 16
MIN_KEY_LENGTH = 16
TUNION_PREFIX = "tunion:"
"""What precedes the e-purse application serial in the input of a T-Union card's token."""


def card_token(key: bytes, card_number: str) -> bytes:
    """16-byte token of ``card_number`` (the 9-character SSC card number, or an e-code's
    card reference) under the deployment's token key."""
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"card token key must be at least {MIN_KEY_LENGTH} bytes")
    digest = hmac.new(key, DOMAIN + card_number.encode("utf-8"), hashlib.sha256).digest()
    return digest[:TOKEN_LENGTH]


def hotlist_key(token: bytes) -> int:
    """The 64-bit hotlist key of a token: its first 8 bytes, big-endian."""
    return int.from_bytes(token[:8], "big")


def tunion_card_token(key: bytes, app_serial: bytes) -> bytes:
    """16-byte token of a T-Union e-purse by its application serial (file 0x15 bytes 10-19):
    ``card_token(key, "tunion:" + app_serial.hex())``. The back office computes the same
    to hotlist a reported transit card."""
    return card_token(key, TUNION_PREFIX + bytes(app_serial).hex())
