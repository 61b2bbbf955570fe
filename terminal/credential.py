"""A credential presented at the terminal - a physical card or an electronic-card code -
reduced to what the decision needs: no names, no ID numbers."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass


class CredentialKind(enum.Enum):
    CARD = "card"  # the physical card, contact or contactless
    CODE = "code"  # the electronic card's dynamic QR code


@dataclass(frozen=True)
class Credential:
    kind: CredentialKind
    card_token: bytes
    """:func:`terminal.cardtoken.card_token` of the card number (16 bytes)."""
    region: str
    """The issuing region, 6 digits (GB/T 2260): 50xxxx Chongqing, 51xxxx Sichuan."""
    category: str | None
    """Card category: 1 pre-school, 2 student, 3 adult, 4 elderly."""
    expiry: datetime.date | None = None
    """Card expiry date (physical cards)."""
