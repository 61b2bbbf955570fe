"""The three service profiles, thin compositions of the same transaction steps.

* :class:`GateProfile` - museum and library gates: a physical card or an e-code, the
  policy's region and category rules, anti-passback (the same card within
  ``passback_minutes`` is refused ``passback``), and the gate opens only on accept, after
  the journal holds the entry.
* :class:`ValidatorProfile` - bus validators: the T-Union e-purse purchase through the PSAM
  (:mod:`terminal.transit.purchase`) for the policy's fare; a repeat tap within
  ``repeat_seconds`` is refused ``repeat_tap``; e-codes are accepted as pay-later records.
  It pays by e-purse (``pays_by_purse``), so it takes every transit card: an SSC with the
  transport function, a plain T-Union card, and an SSC whose social security side this
  terminal cannot authenticate (at the full fare) - docs/runtime.md "Cards at a validator".
* :class:`CounterProfile` - hospital counters: contact card read and verified, the holder's
  PIN, then the holder record handed to the hospital system (:mod:`terminal.counter.api`).

The passback and repeat-tap windows survive a restart: they are rebuilt from the journal at
start (:mod:`terminal.runtime.recent`), so a card left on the reader while the terminal
restarts is refused, not charged or let through again (docs/runtime.md, "Exactly once
across restarts").

Modules built alongside this one (transit, counter API) are imported where they are used.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from terminal.credential import CredentialKind
from terminal.host.clock import CST, Clock
from terminal.policy import Decision
from terminal.runtime.recent import RecentTokens
from terminal.runtime.transaction import Action, Presented
from terminal.transit.pending import PendingPurchases
from terminal.transit.purchase import purchase, recover
from terminal.transit.results import PendingPurchase, PurchaseStatus

log = logging.getLogger(__name__)

PASSBACK = "passback"
REPEAT_TAP = "repeat_tap"
PAY_LATER = "pay_later"
RECOVERED = "torn_purchase_recovered"
MAC2_MISMATCH = "mac2_mismatch"
CHARGED_REASONS = frozenset({"ok", RECOVERED, MAC2_MISMATCH})
"""Validator outcomes whose journal entry records money the card gave."""
JOURNAL_SLACK = 300.0
"""Seconds before a pending purchase's time from which the journal is searched for its
charge (the entry is appended after the purchase; slack for a wall clock set back)."""


def _from_decision(decision: Decision, **more: Any) -> Action:
    return Action(
        accepted=decision.accepted,
        reason=decision.reason,
        detail=decision.detail,
        fare=decision.fare,
        **more,
    )


class GateProfile:
    """Entry gates: open on accept only, refuse a card that entered within the passback
    window (it is being handed back through the gate)."""

    name = "gate"
    read_holder = False  # a gate needs no name: EF06 is not read
    pays_by_purse = False  # gates take the social security card only

    def __init__(self, clock: Clock, passback_minutes: float) -> None:
        self.recent = RecentTokens(clock, passback_minutes * 60.0)
        """Cards that entered within the passback window; rebuilt from the journal at start
        (:func:`terminal.runtime.recent.restore_from_journal`)."""

    def admit(self, presented: Presented, decision: Decision) -> Decision:
        assert presented.credential is not None
        if self.recent.recent(presented.credential.card_token):
            return Decision(False, PASSBACK, "this card has just been used to enter")
        return decision

    def act(self, presented: Presented, decision: Decision) -> Action:
        return _from_decision(decision, amount=decision.fare or None, open_gate=True)

    def committed(self, presented: Presented, action: Action) -> None:
        if action.accepted and presented.credential is not None:
            self.recent.remember(presented.credential.card_token)


class TransitPurchases:
    """The validator's purchase and its recovery: :func:`terminal.transit.purchase.purchase`
    and :func:`~terminal.transit.purchase.recover`."""

    purchase = staticmethod(purchase)
    recover = staticmethod(recover)


class ValidatorProfile:
    """Bus validators: debit the fare from the card's e-purse with the PSAM; e-codes ride
    now and pay later (the journal entry is the claim)."""

    name = "validator"
    read_holder = False
    pays_by_purse = True

    def __init__(
        self,
        clock: Clock,
        repeat_seconds: float,
        psam: Any,
        purchases: Any = None,
        pending: PendingPurchases | None = None,
        journaled: Callable[[PendingPurchase], bool] | None = None,
    ) -> None:
        self._purchase = purchases if purchases is not None else TransitPurchases()
        """What runs the purchase and its recovery (tests hand in a wrapper that counts)."""
        self._psam = psam
        self._clock = clock
        self.recent = RecentTokens(clock, repeat_seconds)
        """Cards that went through within the repeat window, by both of their tokens (the
        card's and its e-purse's); rebuilt from the journal at start
        (:func:`terminal.runtime.recent.restore_from_journal`)."""
        self._pending = pending if pending is not None else PendingPurchases(None)
        """Purchases that may have charged a card but are not journaled yet, by card token
        (durable in production: :class:`terminal.transit.pending.PendingPurchases`)."""
        self._journaled = journaled or (lambda pending: False)
        """Whether the journal already holds the charge of a pending purchase (the terminal
        died between the journal append and the removal of the pending record):
        :func:`charge_in_journal` over the journal's entries since the purchase."""

    @staticmethod
    def _key(presented: Presented) -> bytes:
        """What pending purchases are keyed by: the e-purse's token when the card path read
        the e-purse - the same on every tap, whether the social security side of the card
        answered this time or not - else the credential's token."""
        credential = presented.credential
        assert credential is not None
        return credential.purse_token or credential.card_token

    @staticmethod
    def _tokens(presented: Presented) -> tuple[bytes, bytes | None]:
        """What repeat taps are keyed by: the card's token (the one the journal holds, from
        which the window is rebuilt) and its e-purse's, if read."""
        credential = presented.credential
        assert credential is not None
        return credential.card_token, credential.purse_token

    def admit(self, presented: Presented, decision: Decision) -> Decision:
        assert presented.credential is not None
        if self.recent.recent(*self._tokens(presented)):
            return Decision(False, REPEAT_TAP, "this card has just paid")
        return decision

    def act(self, presented: Presented, decision: Decision) -> Action:
        if presented.kind is CredentialKind.CODE:
            if not decision.accepted:
                return _from_decision(decision)
            fare = decision.fare or 0
            return Action(True, PAY_LATER, "e-code: fare billed later", amount=fare, fare=fare)
        assert presented.channel is not None and presented.credential is not None
        token = self._key(presented)
        # The card path left the e-purse selected and read its 0x15: no second SELECT.
        # None (not read, or no e-purse): the purchase selects and reports what it finds.
        selected = presented.purse
        pending = self._pending.get(token)
        if pending is not None and self._journaled(pending):
            # The journal holds this purchase already: the terminal died after the append,
            # before the record went. It has done its job; this tap is a tap of its own.
            log.info("pending purchase already journaled: record dropped")
            self._pending.remove(token)
            pending = None
        if pending is not None:
            # The card may have been charged last time without the journal learning of it
            # (pulled after DEBIT, or the terminal died): settle that first - whatever today's
            # decision, since the money was taken under yesterday's - and never charge twice.
            # The record goes only once the journal holds the outcome (committed), or here
            # when the card proves it was not charged; a card pulled again during recovery
            # (ReaderError) keeps it for the tap after.
            result = self._purchase.recover(
                presented.channel, self._psam, pending, public_info=selected
            )
            if result.status is not PurchaseStatus.DONE:
                self._pending.remove(token)
            else:
                extra = {
                    "counter": pending.counter,
                    "psam_serial": pending.terminal_serial,
                    "tac": result.tac,
                    "recovered": True,
                    "mac2_verified": result.mac2_verified,
                }
                if result.tac_input is not None:
                    extra.update(result.tac_input.to_extra())  # for clearing's TAC check
                # The torn tap was journaled refused with no amount, so this entry is the
                # one that records the money the card gave: the journal sums to the debits.
                return Action(
                    True,
                    RECOVERED,
                    "the earlier payment went through: not charged again",
                    amount=pending.amount,
                    fare=pending.amount,
                    balance=result.balance_after,
                    extra=extra,
                )
        if not decision.accepted:
            return _from_decision(decision)
        fare = decision.fare or 0
        if fare == 0:
            # A free ride (e.g. elderly): there is nothing to debit, and a zero-amount
            # INITIALIZE is refused by the card anyway.
            return _from_decision(decision, amount=0)
        when = dt.datetime.fromtimestamp(self._clock.now(), CST)
        result = self._purchase.purchase(
            presented.channel,
            self._psam,
            fare,
            when,
            before_debit=lambda record: self._pending.put(token, record, self._clock.now()),
            public_info=selected,
        )
        extra: dict[str, object] = {"counter": result.counter}
        if result.terminal_serial is not None:
            # With the counter it names this purchase: how a pending record left by a crash
            # after the journal append is known to be journaled (charge_in_journal).
            extra["psam_serial"] = result.terminal_serial
        if result.tac:
            extra["tac"] = result.tac
            if result.tac_input is not None:
                extra.update(result.tac_input.to_extra())  # for clearing's TAC check
        if result.status is PurchaseStatus.DONE:
            # False when the PSAM had lost the session: the TAC is for the back office to check.
            extra["mac2_verified"] = result.mac2_verified
            return Action(
                True,
                "ok",
                decision.detail,
                amount=fare,
                fare=fare,
                balance=result.balance_after,
                extra=extra,
            )
        if result.status is PurchaseStatus.TORN:
            # The pending record written before DEBIT stays: the next tap settles it. What the
            # back office needs to reconcile a card that never comes back goes along.
            if result.pending is not None:
                extra.update(
                    attempted=result.pending.amount, psam_serial=result.pending.terminal_serial
                )
            return Action(False, "torn", "card removed during payment: tap again", extra=extra)
        if result.reason == MAC2_MISMATCH:
            # The card debited (it answered DEBIT with a TAC) but its MAC2 does not verify
            # under our keys: money was taken from a card that is not what it claims. Journal
            # the charge with its TAC; the rider is sent to staff.
            extra["mac2_verified"] = False
            return Action(
                False,
                MAC2_MISMATCH,
                "the card's payment proof does not verify",
                amount=fare,
                extra=extra,
            )
        # No charge happened (refused before or by DEBIT): nothing to settle later.
        self._pending.remove(token)
        if result.status is PurchaseStatus.INSUFFICIENT_BALANCE:
            return Action(
                False,
                "insufficient_balance",
                "balance too low",
                balance=result.balance_before,
                extra=extra,
            )
        return Action(False, "purchase_refused", "the card refused the payment", extra=extra)

    def committed(self, presented: Presented, action: Action) -> None:
        if presented.credential is None:
            return
        if presented.kind is CredentialKind.CODE:
            if action.accepted:
                self.recent.remember(presented.credential.card_token)
            return
        if action.accepted:
            self.recent.remember(*self._tokens(presented))
        if action.reason in CHARGED_REASONS:
            # The journal now holds the charge: the pending record has done its job.
            self._pending.remove(self._key(presented))


def charge_in_journal(entries: Iterable[Any], pending: PendingPurchase) -> bool:
    """Whether ``entries`` (journal entries) hold the charge of ``pending``: an entry with
    a charging reason (:data:`CHARGED_REASONS`) naming the same PSAM transaction serial and
    card counter. Entries journaled before the PSAM serial was recorded never match (their
    pending records are settled with the card, as always). Pure."""
    for entry in entries:
        extra: Mapping[str, object] = entry.extra
        if (
            entry.reason in CHARGED_REASONS
            and extra.get("psam_serial") == pending.terminal_serial
            and extra.get("counter") == pending.counter
        ):
            return True
    return False


class CounterProfile:
    """Hospital counters: the holder proves the card is theirs with the PIN, then the
    holder record is served to the hospital system for this transaction."""

    name = "counter"
    read_holder = True  # the hospital needs the holder's identity
    pays_by_purse = False

    def __init__(self, pinpad: Any, api: Any, require_pin: bool = True) -> None:
        self._pinpad = pinpad
        self._api = api
        self._require_pin = require_pin
        self.before_pin: Callable[[], None] | None = None
        """Called just before the PIN is asked for (the holder screen says where to type)."""

    def admit(self, presented: Presented, decision: Decision) -> Decision:
        return decision

    def act(self, presented: Presented, decision: Decision) -> Action:
        from terminal.devices.pinpad import PinEntryCancelled

        if not decision.accepted:
            return _from_decision(decision)
        if presented.kind is CredentialKind.CARD and self._require_pin:
            from terminal.ssc.pin import PinOutcome, verify_pin

            assert presented.channel is not None
            if self.before_pin is not None:
                self.before_pin()
            try:
                pin = self._pinpad.read_pin("PIN: ")
            except PinEntryCancelled:
                return Action(False, "pin_cancelled", "PIN entry cancelled")
            result = verify_pin(presented.channel, pin)
            del pin
            if result.outcome is PinOutcome.WRONG:
                return Action(False, "pin_wrong", f"wrong PIN: {result.tries_left} tries left")
            if result.outcome is not PinOutcome.OK:
                return Action(False, "pin_blocked", "PIN blocked")
        if presented.kind is not CredentialKind.CARD or presented.reading is None:
            # An e-code names a card, not a holder record: nothing to hand the hospital.
            return _from_decision(decision)
        reading, verdict = presented.reading, presented.authenticity.verdict
        # The hand-off carries personal data: it happens only once the journal holds the
        # (personal-data-free) entry, so a refused transaction hands nothing over.
        return _from_decision(
            decision,
            after_journal=lambda: self._api.publish(reading, None, verdict),
            holder=_masked_name(reading),
        )

    def committed(self, presented: Presented, action: Action) -> None:
        return None


def _masked_name(reading: Any) -> str | None:
    """The greeting name a counter screen may show: the family name and two stars, whatever
    the name's length (the length would say more than the screen needs to)."""
    holder = getattr(getattr(reading, "ssc", None), "holder", None)
    name = getattr(holder, "name", None)
    name = name.strip() if isinstance(name, str) else ""
    return name[0] + "**" if name else None
