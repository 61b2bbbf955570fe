"""The secure module the e-purse purchase needs: MAC1, and the word on MAC2.

The purchase sessions (:mod:`terminal.transit.purchase`) declare here what they ask of a
secure module, as Keyple's card extensions declare the SAM they drive: the application owns
the interface, and :mod:`terminal.secure` implements it and imports this module, never the
other way round - :class:`terminal.secure.psam.PsamSecureModule` (the PSAM commands
``80 70`` / ``80 72``) and :class:`terminal.secure.software.SoftwarePurchaseModule` (in
process). The terminal itself computes nothing secret.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from terminal.errors import TransitRecordError
from terminal.transit.commands import MAC1_DATA_LENGTH


@dataclass(frozen=True)
class Mac1Request:
    """What the PSAM needs for MAC1: the 36 data bytes of ``80 70 00 00 24``."""

    random: bytes  # 4, from the INITIALIZE answer
    counter: int  # 2, from the INITIALIZE answer
    amount: int
    transaction_type: int
    date: bytes  # 4 BCD
    time: bytes  # 3 BCD
    key_version: int
    algorithm_id: int
    app_serial: bytes  # 10 (0x15 bytes 10-19); the low 8 travel
    issuer_id: bytes  # 8 (0x15 bytes 0-7)

    def to_bytes(self) -> bytes:
        """random(4) counter(2) amount(4) type(1) date(4) time(3) keyVer(1) algId(1)
        serial low 8 (8) issuer id (8) = 36 bytes."""
        return (
            self.random
            + self.counter.to_bytes(2, "big")
            + self.amount.to_bytes(4, "big")
            + bytes((self.transaction_type,))
            + self.date
            + self.time
            + bytes((self.key_version, self.algorithm_id))
            + self.app_serial[2:]
            + self.issuer_id
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Mac1Request:
        """The inverse of :meth:`to_bytes` (the 2 high serial bytes are not sent: zeros)."""
        if len(data) != MAC1_DATA_LENGTH:
            raise TransitRecordError(f"MAC1 data has {len(data)} bytes, not 36")
        return cls(
            random=data[0:4],
            counter=int.from_bytes(data[4:6], "big"),
            amount=int.from_bytes(data[6:10], "big"),
            transaction_type=data[10],
            date=data[11:15],
            time=data[15:18],
            key_version=data[18],
            algorithm_id=data[19],
            app_serial=bytes(2) + data[20:28],
            issuer_id=data[28:36],
        )


@dataclass(frozen=True)
class Mac1Answer:
    """The PSAM's answer to MAC1: its transaction serial (4 bytes) and MAC1."""

    terminal_serial: int
    mac1: bytes


class Mac2Verdict(enum.Enum):
    """The PSAM's word on a MAC2."""

    VALID = "valid"
    INVALID = "invalid"  # 9302
    UNKNOWN = "unknown"  # no session for that transaction (PSAM reset, or too old)


class PsamPurchase(Protocol):
    """The secure module of the purchase: :class:`terminal.secure.psam.PsamSecureModule`
    or :class:`terminal.secure.software.SoftwarePurchaseModule`."""

    terminal_number: str  # 12 digits: the terminal number INITIALIZE and MAC1 carry

    def purchase_mac1(self, request: Mac1Request) -> Mac1Answer: ...

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict: ...


class PsamMaintenance(Protocol):
    """What blocking a hotlisted e-purse asks of the secure module (docs/transit.md
    "Blocking a hotlisted e-purse"): :class:`terminal.secure.psam.PsamSecureModule`."""

    def maintenance_mac(
        self,
        key_version: int,
        app_serial_low8: bytes,
        issuer_id: bytes,
        challenge: bytes,
        data: bytes,
    ) -> bytes:
        """The 4-byte MAC of ``data`` under the card's maintenance key (the PSAM's master,
        diversified by the issuer id then the serial), the card's ``challenge`` as initial
        value: ``80 1A 45 <version>`` then ``80 FA 05 00``."""
        ...
