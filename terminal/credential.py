"""A credential presented at the terminal - a physical card or an electronic-card code -
reduced to what the decision needs: no names, no ID numbers."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass


class CredentialKind(enum.Enum):
    CARD = "card"  # the physical card, contact or contactless
    CODE = "code"  # the electronic card's dynamic QR code


class CardKind(enum.Enum):
    """Which card it is, for the application list's ``cards`` (docs/policy.md)."""

    SSC = "ssc"
    """The social security application was read (an e-code is an SSC's electronic form)."""
    TUNION = "tunion"
    """A card known only by its T-Union e-purse: a plain transit card, or a card whose social
    security application could not be read."""


@dataclass(frozen=True)
class Credential:
    kind: CredentialKind
    card_token: bytes
    """:func:`terminal.privacy.cardtoken.card_token` of the card number (16 bytes); for a
    :attr:`CardKind.TUNION` card, :func:`terminal.privacy.cardtoken.tunion_card_token` of its
    e-purse application serial."""
    region: str
    """The issuing region, 6 digits (GB/T 2260): 50xxxx Chongqing, 51xxxx Sichuan."""
    category: str | None
    """Card category: 1 pre-school, 2 student, 3 adult, 4 elderly; None when unknown (or not
    to be trusted)."""
    expiry: datetime.date | None = None
    """Card expiry date (physical cards)."""
    card_kind: CardKind = CardKind.SSC
    other_tokens: tuple[bytes, ...] = ()
    """Further tokens of the same card - the e-purse token of an SSC with the transport
    function - so that a card reported under either identity is refused (hotlist)."""
    purse_token: bytes | None = None
    """The token of the card's T-Union e-purse when one was read: the same on every tap
    whichever side of the card identified it, so a validator keys its pending purchases and
    repeat taps by it."""

    @property
    def tokens(self) -> tuple[bytes, ...]:
        """Every token the card is known by, :attr:`card_token` first."""
        return (self.card_token, *self.other_tokens)
