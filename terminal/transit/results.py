"""What an e-purse session ends with: the :class:`PurchaseResult` and its
:class:`PurchaseStatus`, and the :class:`PendingPurchase` a torn purchase leaves to settle
on the card's next tap (docs/transit.md "Torn purchase")."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class PurchaseStatus(enum.StrEnum):
    DONE = "done"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    TORN = "torn"  # card gone during DEBIT: keep the PendingPurchase, recover on next tap
    REFUSED = "refused"  # see PurchaseResult.reason
    NOT_CHARGED = "not_charged"  # recovery: the torn purchase never reached the card


@dataclass(frozen=True)
class PendingPurchase:
    """A purchase whose DEBIT got no answer: what
    :func:`terminal.transit.purchase.recover` needs on the next tap."""

    app_serial: bytes
    counter: int  # the counter INITIALIZE answered (the debit, if done, made it counter + 1)
    amount: int
    transaction_type: int
    terminal_number: bytes
    terminal_serial: int  # the PSAM transaction serial of MAC1
    when: dt.datetime
    balance_before: int


@dataclass(frozen=True)
class TacInput:
    """What a purchase's TAC covers besides the amount, and what diversifies the key it is
    made with (docs/transit.md "Keys and MACs"): journaled with the TAC so that the back
    office, which holds the issuer master, can check it (docs/clearing.md)."""

    issuer_id: bytes  # file 0x15 bytes 0-7: first diversification
    app_serial: bytes  # file 0x15 bytes 10-19; its low 8 bytes are the second
    transaction_type: int
    terminal_number: bytes
    terminal_serial: int  # the PSAM transaction serial
    when: dt.datetime  # the date and time DEBIT carried, to the second
    algorithm_id: int | None  # INITIALIZE's algId; None when unknown (a recovered purchase)

    def to_extra(self) -> dict[str, object]:
        """The journal entry's ``extra`` fields of clearing (docs/clearing.md). Only the
        serial's low 8 bytes go - what the key needs - never the whole application serial."""
        extra: dict[str, object] = {
            "issuer_id": self.issuer_id.hex().upper(),
            "app_serial_low": self.app_serial[2:].hex().upper(),
            "transaction_type": self.transaction_type,
            "terminal_number": self.terminal_number.hex().upper(),
            "purchase_time": self.when.strftime("%Y%m%d%H%M%S"),
        }
        if self.algorithm_id is not None:
            extra["algorithm_id"] = self.algorithm_id
        return extra


@dataclass(frozen=True)
class PurchaseResult:
    status: PurchaseStatus
    balance_before: int | None
    balance_after: int | None
    counter: int | None  # the counter the purchase ran under (INITIALIZE's answer)
    tac: str | None  # hex; None when the card gave none
    apdu_count: int  # card APDUs only (GET RESPONSE included)
    app_serial: str | None = None  # hex
    terminal_serial: int | None = None
    pending: PendingPurchase | None = None
    reason: str | None = None  # for REFUSED: mac1_refused, mac2_mismatch, blocked, expired
    mac2_verified: bool = False
    recovered: bool = False
    tac_input: TacInput | None = None  # with a TAC: what the back office checks it over
