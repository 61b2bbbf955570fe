"""SELECT the e-purse, and what a SELECT tells: who the e-purse is (:class:`SelectSession`,
:func:`select_purse`: its file 0x15) and, with one GET BALANCE more, what it holds
(:class:`BalanceSession`, :func:`read_balance`). Read-only: nothing here writes to the card.
"""

from __future__ import annotations

from terminal.devices.reader import CardChannel
from terminal.errors import NoTransitApplicationError
from terminal.transit.commands import get_balance
from terminal.transit.records import PublicInfo
from terminal.transit.results import PurchaseResult, PurchaseStatus
from terminal.transit.session import CardStep, EPurseSession, Steps, drive, run_session


class BalanceSession(EPurseSession[PurchaseResult]):
    """SELECT the e-purse (+ READ BINARY 0x15 when the FCI lacks it), GET BALANCE
    ``80 5C 00 02 04``: result status ``done`` with the balance (bit 31 dropped)."""

    def __init__(self) -> None:
        self.public_info: PublicInfo | None = None
        super().__init__()

    def _run(self) -> Steps[PurchaseResult]:
        info = yield from self._select()
        self.public_info = info
        response = self._card((yield CardStep(get_balance(), "GET BALANCE")))
        balance = self._balance(response, "GET BALANCE")
        return PurchaseResult(
            PurchaseStatus.DONE, balance, balance, None, None, 0, app_serial=info.app_serial.hex()
        )


class SelectSession(EPurseSession[PublicInfo]):
    """SELECT the e-purse (+ READ BINARY 0x15 when the FCI lacks it): the card path of a
    validator reads who the e-purse is before the decision, and leaves it selected for the
    purchase. :class:`NoTransitApplicationError` when the card has none."""

    def _run(self) -> Steps[PublicInfo]:
        return (yield from self._select())


def read_balance(card: CardChannel) -> int:
    """The e-purse balance in fen (SELECT [+ READ BINARY 0x15] + GET BALANCE)."""
    balance = run_session(BalanceSession(), card, None).balance_before
    assert balance is not None  # BalanceSession always answers one
    return balance


def select_purse(card: CardChannel) -> PublicInfo | None:
    """SELECT the e-purse and read its file 0x15 (1 APDU, or 2 when the FCI lacks it); None
    when the card has no e-purse. The e-purse stays selected: a
    :func:`terminal.transit.purchase.purchase` or :func:`~terminal.transit.purchase.recover`
    given this 0x15 as ``public_info`` goes on from there."""
    try:
        return drive(SelectSession(), card, None)
    except NoTransitApplicationError:
        return None
