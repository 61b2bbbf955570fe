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
from terminal.errors import OneCardError, ReaderError
from terminal.host.clock import CST, Clock
from terminal.policy import Decision
from terminal.runtime.recent import RecentTokens
from terminal.runtime.transaction import Action, Presented
from terminal.transit.pending import PendingPurchases
from terminal.transit.purchase import purchase, recover
from terminal.transit.results import PendingPurchase, PurchaseStatus
from terminal.transit.ride import RideSite, RideTerms, ride

log = logging.getLogger(__name__)

PASSBACK = "passback"
REPEAT_TAP = "repeat_tap"
PAY_LATER = "pay_later"
RECOVERED = "torn_purchase_recovered"
MAC2_MISMATCH = "mac2_mismatch"
CHARGED_REASONS = frozenset({"ok", RECOVERED, MAC2_MISMATCH})
RIDE_REFUSALS = frozenset({"bad_journey_record", "no_journey_record"})
HOTLISTED = "hotlisted"
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
    pays_by_purse = False  # gates take the social security card only

    def __init__(self, clock: Clock, passback_minutes: float, venue: Any = None) -> None:
        self.recent = RecentTokens(clock, passback_minutes * 60.0)
        """Cards that entered within the passback window; rebuilt from the journal at start
        (:func:`terminal.runtime.recent.restore_from_journal`)."""
        self.venue = venue
        """The venue's part of the decision (:class:`terminal.venue.gate.VenueGate`: a
        library's patron, a museum's reservation and occupancy, a scenic area's pass)."""
        self._clock = clock

    @property
    def read_holder(self) -> bool:
        """A gate needs no name: EF06 is read only for a venue that needs the holder's
        identity number (a museum's real-name reservation), and nothing of it is kept."""
        return bool(self.venue is not None and self.venue.needs_identity_number)

    def admit(self, presented: Presented, decision: Decision) -> Decision:
        assert presented.credential is not None
        if self.recent.recent(presented.credential.card_token):
            return Decision(False, PASSBACK, "this card has just been used to enter")
        return decision

    def act(self, presented: Presented, decision: Decision) -> Action:
        if self.venue is None or not decision.accepted or presented.credential is None:
            return _from_decision(decision, amount=decision.fare or None, open_gate=True)
        now = dt.datetime.fromtimestamp(self._clock.now(), CST)
        verdict = self.venue.check(
            presented.credential.card_token,
            presented.card_number,
            presented.identity_number,
            now,
        )
        # What was read for the venue's question goes with the answer: nothing keeps it.
        presented.identity_number = None
        note = (verdict.message_zh, verdict.message_en)
        if not verdict.admit:
            return Action(False, verdict.reason, verdict.message_en, extra=verdict.extra, note=note)
        venue = self.venue
        return Action(
            True,
            verdict.reason,
            verdict.message_en,
            amount=decision.fare or None,
            fare=decision.fare or None,
            extra=verdict.extra,
            open_gate=True,
            after_journal=lambda: venue.admitted(verdict, now),
            note=note,
        )

    def committed(self, presented: Presented, action: Action) -> None:
        if action.accepted and presented.credential is not None:
            self.recent.remember(presented.credential.card_token)


class TransitPurchases:
    """The validator's ride (a purchase decided from the card's journey record) and the
    recovery of a torn one: :func:`terminal.transit.ride.ride` and
    :func:`terminal.transit.purchase.recover`."""

    ride = staticmethod(ride)
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
        *,
        site: RideSite | None = None,
        service: Callable[[], Any] | None = None,
        reads_ssc: bool = True,
        card_types: Mapping[int, str] | None = None,
        low_balance_fen: int = 0,
        fares: Callable[[], Any] | None = None,
        block_hotlisted: bool = False,
        block_key_version: int = 0x02,
    ) -> None:
        self.site = site or RideSite()
        """Where the terminal is and what it writes (docs/transit.md "Rides")."""
        self._service = service or (lambda: None)
        """The application list's entry of this terminal's service (transfers, limits)."""
        self.reads_ssc = reads_ssc
        """False: cards are known by their e-purse alone (the fewest APDUs per tap)."""
        self.card_types = dict(card_types or {})
        """0x15 card type -> category, for cards known by their e-purse."""
        self.low_balance_fen = low_balance_fen
        """Below this balance after a ride the holder is told to top up; 0: never."""
        self._fares = fares or (lambda: None)
        """The rail fare table in force (:class:`terminal.transit.fares.FareTable`)."""
        self.block_hotlisted = block_hotlisted
        """Block the e-purse of a hotlisted card (APPLICATION BLOCK), as real validators do."""
        self.block_key_version = block_key_version
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
                if self.site.mode == "rail" and self.site.station is not None:
                    extra["station"] = self.site.station.code
                # A rail gate opens for it: the card's record already says the rider
                # entered (or left), so a refusal now would leave a paying rider stuck.
                return Action(
                    True,
                    RECOVERED,
                    "the earlier payment went through: not charged again",
                    amount=pending.amount,
                    fare=pending.amount,
                    balance=result.balance_after,
                    extra=extra,
                    open_gate=self.site.mode == "rail",
                )
        if not decision.accepted:
            if decision.reason == HOTLISTED and self.block_hotlisted and selected is not None:
                return self._block(presented, decision, selected)
            return _from_decision(decision)
        if selected is None and not decision.fare and self.site.mode == "bus":
            # A free ride on a card without an e-purse (read from its social security side):
            # nothing to debit and nothing to write.
            return _from_decision(decision, amount=0)
        return self._ride(presented, decision, token, selected)

    def _block(self, presented: Presented, decision: Decision, selected: Any) -> Action:
        """Refuse the hotlisted card and block its e-purse (docs/transit.md "Blocking a
        hotlisted e-purse"); the journal records whether the card took the block."""
        from terminal.transit.block import block_purse

        assert presented.channel is not None
        extra: dict[str, object]
        try:
            result = block_purse(presented.channel, self._psam, selected, self.block_key_version)
            extra = {"purse_blocked": result.blocked}
            if not result.blocked:
                extra["block_refused"] = result.reason
        except ReaderError:
            raise
        except OneCardError as error:  # the PSAM has no maintenance key, or is down
            log.error("could not block a hotlisted e-purse: %s", error.reason)
            extra = {"purse_blocked": False, "block_refused": error.code}
        return _from_decision(decision, extra=extra)

    def _terms(self, presented: Presented, decision: Decision) -> RideTerms:
        assert presented.credential is not None
        item = self._service()
        return RideTerms(
            fare=decision.fare or 0,
            category=presented.credential.category,
            transfers=getattr(item, "transfers", ()),
            rides_per_day=getattr(item, "rides_per_day", {}),
            fares=self._fares(),
        )

    def _ride(
        self, presented: Presented, decision: Decision, token: bytes, selected: Any
    ) -> Action:
        """The ride: read the journey record, plan, pay (docs/transit.md "Rides")."""
        assert presented.channel is not None and presented.credential is not None
        when = dt.datetime.fromtimestamp(self._clock.now(), CST)
        plan, result = self._purchase.ride(
            presented.channel,
            self._psam,
            self.site,
            self._terms(presented, decision),
            when,
            before_debit=lambda record: self._pending.put(token, record, self._clock.now()),
            public_info=selected,
        )
        category = presented.credential.category
        extra: dict[str, object] = plan.facts() if plan is not None else {}
        if self.site.mode == "rail" and self.site.station is not None:
            extra["station"] = self.site.station.code
        if result.counter is not None:
            extra["counter"] = result.counter
        if result.terminal_serial is not None:
            # With the counter it names this purchase: how a pending record left by a crash
            # after the journal append is known to be journaled (charge_in_journal).
            extra["psam_serial"] = result.terminal_serial
        if result.tac:
            extra["tac"] = result.tac
            if result.tac_input is not None:
                extra.update(result.tac_input.to_extra())  # for clearing's TAC check
        amount = plan.amount if plan is not None else 0
        if result.status is PurchaseStatus.DONE:
            # False when the PSAM had lost the session: the TAC is for the back office to check.
            extra["mac2_verified"] = result.mac2_verified
            notice = None
            balance = result.balance_after
            if balance is not None and self.low_balance_fen > 0 and balance < self.low_balance_fen:
                notice = "low_balance"
            elif plan is not None and plan.discount:
                notice = "transfer_discount"
            return Action(
                True,
                "ok",
                plan.detail if plan is not None else decision.detail,
                amount=amount,
                fare=amount,
                balance=balance,
                extra=extra,
                open_gate=self.site.mode == "rail",
                concession=category,
                notice=notice,
                ride=plan.reason if plan is not None else None,
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
                amount=amount,
                extra=extra,
            )
        # No charge happened (refused before or by DEBIT): nothing to settle later.
        self._pending.remove(token)
        if result.status is PurchaseStatus.INSUFFICIENT_BALANCE:
            balance = result.balance_before
            if balance is not None and amount > balance:
                extra["shortfall"] = amount - balance
            return Action(
                False,
                "insufficient_balance",
                "balance too low",
                fare=amount,
                balance=balance,
                extra=extra,
                concession=category,
                shortfall=extra.get("shortfall"),  # type: ignore[arg-type]
            )
        if result.status is PurchaseStatus.REFUSED and plan is not None and not plan.charge:
            return Action(False, plan.reason, plan.detail, extra=extra, concession=category)
        reason = result.reason or ""
        if reason in RIDE_REFUSALS:
            return Action(False, reason, "the card's journey record cannot be used", extra=extra)
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


class RailGateProfile(ValidatorProfile):
    """Rail entry and exit gates: the validator's payment path with a rail site - the entry
    writes the journey record (0 fen), the exit debits the fare table's fare and closes it;
    the gate opens only once the journal holds the entry (docs/transit.md "Rides")."""

    name = "rail"


class InspectorProfile:
    """The inspector's handheld: a tap shows whether the card paid on this vehicle or line
    within the last minutes, from the card's records alone; nothing is debited or written
    (docs/transit.md "Inspection"). The check is journaled (paid or not), by the card's
    e-purse token."""

    name = "inspector"
    read_holder = False
    pays_by_purse = True
    reads_ssc = False

    def __init__(
        self,
        clock: Clock,
        rules: Any,
        record_id: int,
        card_types: Mapping[int, str] | None = None,
    ) -> None:
        self._clock = clock
        self.rules = rules
        self.record_id = record_id
        self.card_types = dict(card_types or {})

    def admit(self, presented: Presented, decision: Decision) -> Decision:
        return decision

    def act(self, presented: Presented, decision: Decision) -> Action:
        from terminal.transit.inspection import PAID, inspect_card

        if presented.kind is CredentialKind.CODE or presented.channel is None:
            return Action(False, "not_inspectable", "only cards carry their rides")
        if not decision.accepted:
            return _from_decision(decision)  # hotlisted, another region's card...
        now = dt.datetime.fromtimestamp(self._clock.now(), CST)
        result = inspect_card(
            presented.channel, self.rules, now, self.record_id, public_info=presented.purse
        )
        return Action(
            result.reason == PAID,
            result.reason,
            result.detail,
            extra=result.facts(),
            concession=presented.credential.category if presented.credential else None,
        )

    def committed(self, presented: Presented, action: Action) -> None:
        return None


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
