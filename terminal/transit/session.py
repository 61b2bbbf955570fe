"""The plumbing of every e-purse session: steps, answers, and the drivers that run them.

A session is a pure state machine (h11's way: no I/O). ``next_step()`` says what to do next -
a :class:`CardStep` (a command APDU for the e-purse), a :class:`Mac1Step` or a
:class:`Mac2Step` (a request to the secure module) - and ``receive()`` takes the answer: the
card's final :class:`ResponseAPDU` (after the channel's 61xx/6Cxx handling),
:data:`CARD_GONE` when the card left during a step that may tear, a
:class:`~terminal.transit.secure_module.Mac1Answer`, or a
:class:`~terminal.transit.secure_module.Mac2Verdict`. :func:`drive` and :func:`run_session`
run a session over a :class:`terminal.devices.reader.CardChannel` and a
:class:`~terminal.transit.secure_module.PsamPurchase`.

The sessions: :mod:`terminal.transit.purchase` (purchase, recovery),
:mod:`terminal.transit.selection` (SELECT, balance), :mod:`terminal.transit.purse` (the
read-only ``onecard purse``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from terminal.devices.reader import CardChannel
from terminal.errors import (
    CardRemovedError,
    CardUnresponsiveError,
    NoCardError,
    NoTransitApplicationError,
    TransitCardError,
    TransitError,
    TransitRecordError,
)
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import SW
from terminal.transit.commands import (
    BALANCE_LENGTH,
    SW_NO_APPLICATION,
    describe_sw,
    read_public_info,
    select_tunion,
)
from terminal.transit.records import (
    PUBLIC_INFO_LENGTH,
    PublicInfo,
    decode_balance,
    decode_public_info,
    parse_purse_fci,
)
from terminal.transit.results import PendingPurchase, PurchaseResult
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict, PsamPurchase


@dataclass(frozen=True)
class CardStep:
    command: CommandAPDU
    name: str
    may_tear: bool = False  # the card leaving during this step is a torn purchase
    pending: PendingPurchase | None = None
    """Set on DEBIT: what must be on record before the command leaves (see run_session)."""


@dataclass(frozen=True)
class Mac1Step:
    request: Mac1Request


@dataclass(frozen=True)
class Mac2Step:
    mac2: bytes
    terminal_serial: int | None


PurchaseStep = CardStep | Mac1Step | Mac2Step


class CardGone:
    """The type of :data:`CARD_GONE`."""

    def __repr__(self) -> str:
        return "CARD_GONE"


CARD_GONE = CardGone()
"""Passed to ``receive()`` when the card left during a step with ``may_tear``."""

Answer = ResponseAPDU | Mac1Answer | Mac2Verdict | CardGone
R = TypeVar("R")
Steps = Generator[PurchaseStep, Answer, R]
"""What a session's ``_run`` is: a generator of steps, fed answers, returning the result."""


class EPurseSession(Generic[R]):
    """The plumbing of every e-purse session: a generator of steps, fed answers, whose
    return value is the result (a :class:`PurchaseResult`, or a
    :class:`terminal.transit.purse.PurseReading`)."""

    def __init__(self) -> None:
        self._result: R | None = None
        self._steps = self._run()
        self._pending: PurchaseStep | None = None
        self._advance(None)

    def _run(self) -> Steps[R]:
        raise NotImplementedError

    def _advance(self, answer: Answer | None) -> None:
        try:
            self._pending = next(self._steps) if answer is None else self._steps.send(answer)
        except StopIteration as stop:
            self._pending = None
            self._result = stop.value

    def next_step(self) -> PurchaseStep | None:
        """What to do next, or None when the session is over (then :meth:`result`)."""
        return self._pending

    def receive(self, answer: Answer) -> None:
        """The answer to the step :meth:`next_step` gave."""
        if self._pending is None:
            raise TransitError("the session is over: nothing was asked")
        self._advance(answer)

    def result(self) -> R:
        if self._result is None:
            raise TransitError("the session is not over")
        return self._result

    # shared steps

    def _card(self, answer: Answer) -> ResponseAPDU:
        if not isinstance(answer, ResponseAPDU):
            raise TransitError(f"expected a card answer, got {answer!r}")
        return answer

    def _select(self, selected: PublicInfo | None = None) -> Steps[PublicInfo]:
        """SELECT the e-purse and return its file 0x15: from the FCI (tag 9F0C) when the card
        answers it there, else with one READ BINARY (``00 B0 95 00 1E``). ``selected``: the
        0x15 of the e-purse the caller has just selected on this card - no APDU at all."""
        if selected is not None:
            return selected
        response = self._card((yield CardStep(select_tunion(), "SELECT")))
        if response.sw in SW_NO_APPLICATION:
            raise NoTransitApplicationError(
                f"no T-Union e-purse on the card: SELECT answered {describe_sw(response.sw)}",
                response.sw,
            )
        if response.sw != SW.OK:
            raise command_failed("SELECT e-purse", response.sw)
        fci = parse_purse_fci(response.data)
        if fci.public_info is not None:
            return fci.public_info
        # Many real cards leave 9F0C out of the FCI (domain.md 5b): one READ BINARY more.
        response = self._card((yield CardStep(read_public_info(), "READ BINARY 0x15")))
        if response.sw != SW.OK:
            raise command_failed("READ BINARY 0x15", response.sw)
        if len(response.data) != PUBLIC_INFO_LENGTH:
            raise TransitRecordError(
                f"READ BINARY 0x15 answered {len(response.data)} bytes, not 30 (SW 9000)"
            )
        return decode_public_info(response.data)

    def _balance(self, response: ResponseAPDU, command: str) -> int:
        """The balance in a 9000 answer of GET BALANCE: 4 bytes, bit 31 dropped."""
        if response.sw != SW.OK:
            raise command_failed(command, response.sw)
        if len(response.data) != BALANCE_LENGTH:
            raise TransitRecordError(
                f"{command} answered {len(response.data)} bytes, not 4 (SW 9000)"
            )
        return decode_balance(response.data, command)


def command_failed(command: str, sw: int) -> TransitCardError:
    """The error of a status word that ends the operation, naming the command."""
    return TransitCardError(f"{command} failed: {describe_sw(sw)}", sw)


_GONE = (CardRemovedError, CardUnresponsiveError, NoCardError)


def drive(
    session: EPurseSession[R],
    card: CardChannel,
    psam: PsamPurchase | None,
    before_debit: Callable[[PendingPurchase], None] | None = None,
) -> R:
    """Drive ``session`` over ``card`` and ``psam`` to its result.

    ``before_debit`` is called with the pending purchase just before DEBIT FOR PURCHASE
    leaves: once it has, the card may be charged even if this process dies the next moment,
    so the caller records the purchase durably there and settles it on the card's next tap.
    """
    step = session.next_step()
    while step is not None:
        answer: Answer
        if isinstance(step, CardStep):
            if step.pending is not None and before_debit is not None:
                before_debit(step.pending)
            try:
                answer = card.transmit(step.command)
            except _GONE:
                if not step.may_tear:
                    raise
                answer = CARD_GONE
        else:
            if psam is None:
                raise TransitError("this session needs a secure module")
            if isinstance(step, Mac1Step):
                answer = psam.purchase_mac1(step.request)
            else:
                answer = psam.verify_mac2(step.mac2, step.terminal_serial)
        session.receive(answer)
        step = session.next_step()
    return session.result()


def run_session(
    session: EPurseSession[PurchaseResult],
    card: CardChannel,
    psam: PsamPurchase | None,
    before_debit: Callable[[PendingPurchase], None] | None = None,
) -> PurchaseResult:
    """:func:`drive`, with ``apdu_count`` = the card APDUs this session sent."""
    start = card.apdu_count
    result = drive(session, card, psam, before_debit)
    return replace(result, apdu_count=card.apdu_count - start)
