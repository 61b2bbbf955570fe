"""One credential, start to finish: read -> verify -> decide -> act -> journal -> tell.

:class:`TransactionSteps` runs the steps for one presentation (a card in a reader, or a
scanned code) and returns a typed :class:`TransactionOutcome`. The steps are the same for
every service profile; a :class:`Profile` (terminal/runtime/profiles.py) adds its own rules
(anti-passback, repeat taps) and its action (open the gate, debit a fare, hand the holder
to the hospital system).

A profile that pays with the card's T-Union e-purse (``pays_by_purse``: the validator) reads
cards one step wider: after the social security side it SELECTs the e-purse (and reads its
file 0x15), so a plain T-Union card - no social security application - and a card whose
social security side cannot be authenticated are presented too, known by their e-purse
(:func:`identify_card`; docs/runtime.md "Cards at a validator"). The purchase that follows
is what proves the e-purse genuine (MAC1 from the PSAM, MAC2 checked by it, TAC journaled).

The order is the contract of docs/runtime.md: the journal append (durable when it returns)
happens before the holder is told and before any effect the holder can see or use - the
gate opening, the counter hand-off. A transaction the journal refuses (full disk, full
journal) is refused with reason ``journal_full``, and those effects are not taken. A
scanned code is checked without being recorded; its nonce is committed only for an accepted
transaction, just before the append, and released if the append fails - so a code refused
for any reason may be shown again, and an admitted one is refused as replayed ever after
(docs/ecode.md, "A code's nonce is recorded only when the code is admitted").

No device is touched here: cards come through a :class:`terminal.devices.reader.ReaderBackend`,
effects through an outputs object; both are handed in.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from terminal.credential import CardKind, Credential, CredentialKind
from terminal.devices.reader import CardChannel, CardConnection, ReaderBackend
from terminal.errors import JournalError, JournalFullError, OneCardError, ReaderError
from terminal.host.clock import Clock
from terminal.host.clock import today as local_today
from terminal.iso7816.atr import historical_bytes
from terminal.journal.entry import TransactionRecord
from terminal.pki.truststore import TrustStore
from terminal.policy import (
    CATEGORIES,
    ApplicationList,
    AuthenticityOutcome,
    Decision,
    HotListLike,
    Reason,
    decide,
)
from terminal.privacy.cardtoken import card_token, tunion_card_token
from terminal.ssc.authenticity import RkssseRefusals
from terminal.ssc.layout import DECISION_ITEMS
from terminal.ssc.secure_module import SecureModule
from terminal.ssc.session import ReadModeMemo

log = logging.getLogger(__name__)

ACCEPT = "accept"
REFUSE = "refuse"
ERROR = "error"
"""A transaction the terminal could not complete (card pulled, reader gone): not journaled."""


class TransactionStep(enum.Enum):
    """The steps, in order; :attr:`TransactionOutcome.timings` is keyed by their values."""

    READ = "read"
    VERIFY = "verify"
    DECIDE = "decide"
    ACT = "act"
    JOURNAL = "journal"
    TELL = "tell"


# --- what is presented ----------------------------------------------------------------------


@dataclass(frozen=True)
class CardPresented:
    """A card arrived in ``reader`` (a :class:`terminal.devices.reader.CardInserted`)."""

    reader: str
    atr: bytes = b""


@dataclass(frozen=True)
class CodePresented:
    """A code was scanned (a :class:`terminal.devices.scanner.ScanEvent`'s text)."""

    text: str
    source: str = ""


Presentation = CardPresented | CodePresented


@dataclass
class Presented:
    """What read + verify established about a credential, handed to the profile.

    ``reading`` (cards) and ``payload`` (codes) may hold personal data: they are for the
    profile's action (the counter hand-off) and never reach the journal.
    """

    kind: CredentialKind
    credential: Credential | None
    authenticity: AuthenticityOutcome
    channel: CardChannel | None = None
    reading: Any = None
    payload: Any = None
    purse: Any = None
    """The card's e-purse file 0x15 (:class:`terminal.transit.records.PublicInfo`), read by
    the card path of a profile that pays by e-purse and left selected on the card; None when
    not read or when the card has none."""
    card_number: str | None = None
    """The card number (EF05 tag 07), for a venue's library system; never journaled."""
    identity_number: str | None = None
    """The holder's identity number (EF06 tag 08), read only where a venue needs it (a
    museum's real-name reservation); never journaled, logged or kept past the action."""


# --- the profile's part ---------------------------------------------------------------------


@dataclass
class Action:
    """The profile's action on a decision: possibly a different outcome (a debit refused
    for balance), the amount to journal, small non-personal ``extra`` for the journal, and
    the effects to take only once the journal holds the entry."""

    accepted: bool
    reason: str
    detail: str
    amount: int | None = None
    fare: int | None = None
    balance: int | None = None
    extra: dict[str, object] = field(default_factory=dict)
    open_gate: bool = False
    after_journal: Callable[[], None] | None = None
    """An effect the holder may use (the counter hand-off): run after the append only."""
    holder: str | None = None
    """The holder's masked name for the screen (counter only; never journaled)."""
    concession: str | None = None
    """The card's category where a rider's fare depends on it (validators, rail gates): the
    screen names it aloud (老年卡) so staff can check the rider (article 21)."""
    notice: str | None = None
    """An extra prompt for the holder, e.g. ``low_balance``."""
    shortfall: int | None = None
    """Fen missing for the fare (a refusal for balance)."""
    ride: str | None = None
    """What the ride was (``entry``, ``reentry``, ``ok``): the holder's message for it."""
    note: tuple[str, str] | None = None
    """A text for the holder in Chinese and English beyond the reason's (a library system's
    word on the patron), shown and said after the message."""


class Profile(Protocol):
    """A service profile: gate, validator or counter (terminal/runtime/profiles.py)."""

    name: str
    read_holder: bool
    """Whether the card read includes holder data (EF06): only where the profile needs it."""
    pays_by_purse: bool
    """Whether the profile charges the card's T-Union e-purse (the validator): the card path
    then reads the e-purse after the social security side, takes cards known only by their
    e-purse, and trusts a card category only from a social security side verified genuine
    (:func:`identify_card`)."""

    def admit(self, presented: Presented, decision: Decision) -> Decision:
        """The profile's own rules on an accepted policy decision (anti-passback...)."""
        ...

    def act(self, presented: Presented, decision: Decision) -> Action:
        """Carry out the decision as far as may precede the journal append."""
        ...

    def committed(self, presented: Presented, action: Action) -> None:
        """The transaction is journaled: remember it (passback windows, repeat taps)."""
        ...


class JournalLike(Protocol):
    def append(self, record: TransactionRecord) -> Any: ...


class CodeVerifierLike(Protocol):
    """:class:`terminal.ecode.verify.CodeVerifier` or a fake: ``check`` decides what a code
    is worth without recording it; ``commit`` records a valid code's nonce (and says
    ``replayed`` if it was admitted meanwhile); ``release`` takes a commit back."""

    def check(self, text: str | bytes) -> Any: ...

    def commit(self, result: Any) -> Any: ...

    def release(self, result: Any) -> None: ...

    def card_token_of(self, payload: Any) -> bytes | None: ...


class OutputsLike(Protocol):
    """The Outputs protocol of docs/runtime.md (terminal/outputs.py)."""

    def open_gate(self) -> None: ...

    def indicate(self, outcome: Any) -> None: ...

    def show(self, message: Any) -> None: ...


MessageFactory = Callable[[str, str, int | None, int | None], tuple[Any, Any]]
"""``(decision, reason, fare, balance) -> (Outcome, HolderMessage)``."""


def default_messages(
    decision: str, reason: str, fare: int | None, balance: int | None
) -> tuple[Any, Any]:
    """The outcome and holder message from :mod:`terminal.outputs` (imported here, when
    first needed, because that module is built alongside this one)."""
    from terminal.outputs import Outcome, message_for

    outcome = {ACCEPT: Outcome.ACCEPTED, REFUSE: Outcome.REFUSED}.get(decision, Outcome.ERROR)
    return outcome, message_for(outcome, reason, fare, balance)


# --- the context: ready objects -------------------------------------------------------------


@dataclass
class TerminalContext:
    """Everything the steps need, as ready objects (no files, no configuration): the
    runtime builds it from ``terminal.toml``, tests and the demo build it directly.

    ``applist`` and ``hotlist`` are callables so a document downloaded while the terminal
    runs is in force for the next transaction.
    """

    service: str
    token_key: bytes
    journal: JournalLike
    clock: Clock
    applist: Callable[[], ApplicationList | None]
    hotlist: Callable[[], HotListLike]
    reader_backend: ReaderBackend | None = None
    secure_module: SecureModule | None = None
    trust_store: TrustStore | None = None
    code_verifier: CodeVerifierLike | None = None
    accept_unverified: bool = False
    offered: frozenset[str] | None = None


# --- the outcome ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionOutcome:
    """How one transaction ended. No personal data: safe to log and to count."""

    kind: str
    """``card`` or ``code``."""
    decision: str
    """``accept``, ``refuse``, or ``error`` (not completed, not journaled)."""
    reason: str
    detail: str
    fare: int | None = None
    amount: int | None = None
    balance: int | None = None
    apdu_count: int = 0
    timings: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Milliseconds per :class:`TransactionStep` that ran."""
    journaled: bool = False
    seq: int | None = None
    gate_opened: bool = False

    @property
    def accepted(self) -> bool:
        return self.decision == ACCEPT

    @property
    def total_ms(self) -> float:
        return sum(self.timings.values())

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "decision": self.decision,
            "reason": self.reason,
            "detail": self.detail,
            "fare": self.fare,
            "amount": self.amount,
            "apdu_count": self.apdu_count,
            "journaled": self.journaled,
            "seq": self.seq,
            "gate_opened": self.gate_opened,
            "timings_ms": {k: round(v, 2) for k, v in self.timings.items()},
        }


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def step(self, step: TransactionStep) -> _Timed:
        return _Timed(self.timings, step.value)


class _Timed:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self._timings = timings
        self._name = name
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = (time.perf_counter() - self._start) * 1000.0
        self._timings[self._name] = self._timings.get(self._name, 0.0) + elapsed


# --- verdict mapping ------------------------------------------------------------------------


def card_authenticity(verdict: str, reason: str, accept_unverified: bool) -> AuthenticityOutcome:
    """A card verdict as the policy sees it: ``genuine`` passes; ``unverified`` (nothing
    here could check the card) passes only where the operator allowed it."""
    ok = verdict == "genuine" or (verdict == "unverified" and accept_unverified)
    return AuthenticityOutcome(ok=ok, verdict=verdict, reason=reason)


REFUSING_VERDICTS = frozenset({"forged", "cloned", "blocked", "issuer_revoked"})
"""Verdicts on the social security side that are evidence against the card itself: refused
even where the e-purse pays. Every other verdict that is not ``genuine`` (``unverified``,
``unknown_issuer``, ``certificate_expired``, ``unsupported_algorithm``, ``card_error``)
only says this terminal could not authenticate that side."""
PURSE_VERDICT = "epurse"
RIDE_MESSAGES = {"entry": "rail_entry", "reentry": "rail_reentry"}
"""Holder messages of accepted rides that are not "fare paid" (a rail entry pays nothing)."""
"""The verdict journaled for a card known only by its e-purse: nothing was checked before
the decision; the purchase's MAC2, checked by the PSAM, is the proof (``mac2_verified``)."""


def purse_authenticity(verdict: str, reason: str) -> AuthenticityOutcome:
    """A card verdict where the fare is paid by the e-purse: the money is protected by the
    purchase itself (MAC1, MAC2, TAC), so only a verdict in :data:`REFUSING_VERDICTS` makes
    the card not authentic."""
    return AuthenticityOutcome(ok=verdict not in REFUSING_VERDICTS, verdict=verdict, reason=reason)


def identify_card(
    verification: Any,
    purse: Any,
    token_key: bytes,
    *,
    pays_by_purse: bool,
    accept_unverified: bool,
) -> tuple[Credential, AuthenticityOutcome] | None:
    """The credential and its authenticity from what the card path read: ``verification``
    (a :class:`terminal.ssc.authenticity.CardVerification`) and, where the profile pays by
    e-purse, ``purse`` (file 0x15, or None). None when nothing identifies the card.

    * The social security side identifies the card (card number, region): kind ``ssc``,
      its token; the e-purse's token, if there is an e-purse, is checked against the
      hotlist too. Where the profile pays by e-purse its category counts only if that side
      verified ``genuine`` (a forger could claim "elderly" for a free ride): otherwise the
      category is unknown and the card pays the full fare; and with an e-purse to pay, only
      :data:`REFUSING_VERDICTS` make it not authentic (:func:`purse_authenticity`).
    * Otherwise, where the profile pays by e-purse and the card has one: kind ``tunion``,
      known by its e-purse (:func:`terminal.transit.identity.purse_credential`), verdict
      :data:`PURSE_VERDICT` (or the refusing verdict the social security side gave).

    Pure: no I/O.
    """
    read = getattr(verification, "read", None)
    issuer = read.issuer if read is not None else None
    verdict = verification.verdict.value
    reason = verification.reason
    purse_tokens = (tunion_card_token(token_key, purse.app_serial),) if purse is not None else ()
    if issuer is not None and issuer.card_number and issuer.region:
        category = issuer.category if issuer.category in CATEGORIES else None
        if pays_by_purse and verdict != "genuine":
            category = None
        if pays_by_purse and purse is not None:
            authenticity = purse_authenticity(verdict, reason)
        else:
            authenticity = card_authenticity(verdict, reason, accept_unverified)
        credential = Credential(
            kind=CredentialKind.CARD,
            card_token=card_token(token_key, issuer.card_number),
            region=issuer.region,
            category=category,
            expiry=issuer.expiry_date,
            card_kind=CardKind.SSC,
            other_tokens=purse_tokens,
            purse_token=purse_tokens[0] if purse_tokens else None,
        )
        return credential, authenticity
    if not pays_by_purse or purse is None:
        return None
    from terminal.transit.identity import purse_credential

    if verdict in REFUSING_VERDICTS:
        authenticity = AuthenticityOutcome(ok=False, verdict=verdict, reason=reason)
    else:
        authenticity = AuthenticityOutcome(
            ok=True, verdict=PURSE_VERDICT, reason="e-purse only: MAC2 proves it in the purchase"
        )
    return purse_credential(purse, token_key), authenticity


def _holder_reason(profile: str, presented: Presented, reason: str) -> str:
    """The reason the holder is told: for a code that failed its checks, the code's own
    verdict (``replayed``: refresh the code), which the holder can act on; a card's is kept
    general (``not_authentic``: go to the desk) so a forger learns nothing. At a counter an
    accepted card is not "please pass" but "card read"."""
    if reason == "ok" and profile == "counter":
        return "card_read"
    if reason == "not_authentic" and presented.kind is CredentialKind.CODE:
        return presented.authenticity.verdict
    return reason


def code_authenticity(verdict: str, reason: str) -> AuthenticityOutcome:
    return AuthenticityOutcome(ok=verdict == "valid", verdict=verdict, reason=reason)


# --- the steps ------------------------------------------------------------------------------


class TransactionSteps:
    """Runs the steps for one presentation with one profile.

    ``outputs`` follows the Outputs protocol of docs/runtime.md; ``messages`` turns a
    decision into the holder's message (default: :func:`default_messages`).
    """

    def __init__(
        self,
        context: TerminalContext,
        profile: Profile,
        outputs: OutputsLike,
        messages: MessageFactory | None = None,
    ) -> None:
        self.context = context
        self.profile = profile
        self.outputs = outputs
        self.messages = messages or default_messages
        self.read_modes = ReadModeMemo()
        """How each kind of card is read best, learned tap by tap (the loop is one thread)."""
        self.rkssse_refusals = RkssseRefusals()
        """Card kinds whose RKSSSE our module got refused: their tries are not spent again."""

    def run(self, presentation: Presentation) -> TransactionOutcome:
        """Process ``presentation`` to completion and return how it ended. Never raises for
        what a credential or a device does; only a programming error escapes."""
        timer = _Timer()
        if isinstance(presentation, CardPresented):
            return self._run_card(presentation, timer)
        return self._run_code(presentation, timer)

    # --- read + verify --------------------------------------------------------------------

    def _run_card(self, card: CardPresented, timer: _Timer) -> TransactionOutcome:
        from terminal.ssc.authenticity import verify_card

        ctx = self.context
        if ctx.reader_backend is None:
            return self._tell_only("card", ERROR, "no_reader", "no card reader configured", timer)
        pays_by_purse = bool(getattr(self.profile, "pays_by_purse", False))
        connection: CardConnection | None = None
        channel: CardChannel | None = None
        try:
            with timer.step(TransactionStep.READ):
                connection = ctx.reader_backend.connect(card.reader)
                channel = CardChannel(connection)
            if pays_by_purse and not getattr(self.profile, "reads_ssc", True):
                return self._run_purse_card(card, connection, channel, timer)
            with timer.step(TransactionStep.VERIFY):
                historical = historical_bytes(connection.atr)
                verification = verify_card(
                    channel,
                    historical,
                    ctx.secure_module,
                    ctx.trust_store,
                    local_today(ctx.clock),
                    self.read_modes.mode_for(historical),
                    read_holder=self.profile.read_holder,
                    # Without the holder there is nothing to hand over: the decision's
                    # items are all the card is asked for.
                    issuer_items=None if self.profile.read_holder else DECISION_ITEMS,
                    rkssse_refusals=self.rkssse_refusals,
                )
                if verification.read is not None:
                    self.read_modes.learn(historical, verification.read.mode)
            purse = None
            if pays_by_purse:
                # After the SSC side, so the e-purse is the application left selected for
                # the purchase (which then sends no SELECT of its own).
                with timer.step(TransactionStep.READ):
                    purse = self._read_purse(channel)
            identified = identify_card(
                verification,
                purse,
                ctx.token_key,
                pays_by_purse=pays_by_purse,
                accept_unverified=ctx.accept_unverified,
            )
            if identified is None:
                # Nothing identifies the card (blocked, unreadable, not an SSC and no
                # e-purse where one would do): there is no token to journal it by, so the
                # holder is told and nothing is recorded.
                return self._tell_only(
                    "card",
                    REFUSE,
                    verification.verdict.value,
                    "card could not be read",
                    timer,
                    channel.apdu_count,
                )
            credential, authenticity = identified
            read = verification.read
            reading = None
            if self.profile.read_holder:
                from terminal.ssc.reading import CardReading

                reading = CardReading(
                    reader=card.reader,
                    interface=connection.interface,
                    atr=connection.atr,
                    protocol=connection.protocol,
                    uid=None,
                    ssc=read,
                    apdu_count=channel.apdu_count,
                )
            holder = getattr(read, "holder", None) if read is not None else None
            presented = Presented(
                kind=CredentialKind.CARD,
                credential=credential,
                authenticity=authenticity,
                channel=channel,
                reading=reading,
                purse=purse,
                card_number=getattr(getattr(read, "issuer", None), "card_number", None),
                identity_number=getattr(holder, "ssn", None) if holder is not None else None,
            )
            return self._complete(presented, timer, channel)
        except ReaderError as error:
            # The card left, or the reader or pcscd went away, part-way: nothing was
            # decided, so nothing is journaled; the holder is asked to present again.
            log.info("card transaction not completed: %s", error.reason)
            count = channel.apdu_count if channel is not None else 0
            return self._tell_only("card", ERROR, error.code, error.reason, timer, count)
        finally:
            if connection is not None:
                try:
                    connection.close()
                except OneCardError:
                    log.debug("closing a card connection failed", exc_info=True)

    def _run_purse_card(
        self,
        card: CardPresented,
        connection: CardConnection,
        channel: CardChannel,
        timer: _Timer,
    ) -> TransactionOutcome:
        """A card known by its e-purse alone (a profile with ``reads_ssc`` False): one SELECT
        (and READ BINARY 0x15 when the FCI lacks it), the category from the 0x15 card type,
        and the purchase's MAC1/MAC2/TAC as the proof - what real validators do, so a tap
        costs the e-purse's APDUs only (docs/runtime.md "Cards at a validator")."""
        from terminal.transit.identity import purse_credential

        with timer.step(TransactionStep.READ):
            purse = self._read_purse(channel)
        if purse is None:
            return self._tell_only(
                "card",
                REFUSE,
                "no_transit_application",
                "no e-purse on the card",
                timer,
                channel.apdu_count,
            )
        card_types = getattr(self.profile, "card_types", None)
        credential = purse_credential(purse, self.context.token_key, card_types)
        presented = Presented(
            kind=CredentialKind.CARD,
            credential=credential,
            authenticity=AuthenticityOutcome(
                ok=True, verdict=PURSE_VERDICT, reason="e-purse: MAC2 proves it in the purchase"
            ),
            channel=channel,
            purse=purse,
        )
        return self._complete(presented, timer, channel)

    @staticmethod
    def _read_purse(channel: CardChannel) -> Any:
        """The e-purse's file 0x15 (SELECT, + READ BINARY when the FCI lacks it), or None
        when the card has no e-purse - or one that answers out of spec: the SSC side may
        still identify the card, and the purchase then reports the e-purse's fault itself.
        A card that leaves (ReaderError) ends the transaction as any read does."""
        from terminal.transit.selection import select_purse

        try:
            return select_purse(channel)
        except ReaderError:
            raise
        except OneCardError as error:  # TransitCardError, TransitRecordError
            log.info("e-purse not usable: %s", error.reason)
            return None

    def _run_code(self, code: CodePresented, timer: _Timer) -> TransactionOutcome:
        ctx = self.context
        verifier = ctx.code_verifier
        if verifier is None:
            return self._tell_only("code", REFUSE, "codes_not_accepted", "no code verifier", timer)
        with timer.step(TransactionStep.VERIFY):
            try:
                # Checked, not recorded: the nonce is committed only if the transaction is
                # accepted (_complete), so a refusal never burns the code.
                result = verifier.check(code.text)
            except OneCardError as error:  # the terminal's own fault (replay cache unreadable)
                log.error("code verification failed: %s", error.reason)
                return self._tell_only("code", ERROR, error.code, error.reason, timer)
        payload = result.payload
        token = verifier.card_token_of(payload) if payload is not None else None
        if payload is None or token is None:
            return self._tell_only("code", REFUSE, result.verdict.value, "code not valid", timer)
        category = getattr(payload.category, "value", payload.category)
        credential = Credential(
            kind=CredentialKind.CODE,
            card_token=token,
            region=payload.region,
            category=category if category in CATEGORIES else None,
        )
        presented = Presented(
            kind=CredentialKind.CODE,
            credential=credential,
            authenticity=code_authenticity(result.verdict.value, result.reason),
            payload=payload,
        )
        return self._complete(presented, timer, None, code=result)

    # --- decide -> act -> journal -> tell -------------------------------------------------

    def _decide(self, presented: Presented) -> Decision:
        ctx = self.context
        applist = ctx.applist()
        if applist is None:
            return Decision(False, "no_application_list", "no application list in force")
        assert presented.credential is not None
        decision = decide(
            presented.credential,
            presented.authenticity,
            applist,
            ctx.hotlist(),
            ctx.service,
            local_today(ctx.clock),
            ctx.offered,
        )
        if decision.accepted:
            decision = self.profile.admit(presented, decision)
        return decision

    def _complete(
        self,
        presented: Presented,
        timer: _Timer,
        channel: CardChannel | None,
        code: Any = None,
    ) -> TransactionOutcome:
        """Decide, act, journal, tell. ``code`` is a scanned code's checked result: its
        nonce is committed when the action is accepted - just before the journal records
        the acceptance, so that two admissions of one code cannot both be journaled - and
        released if the journal refuses, so the code can be shown again."""
        credential = presented.credential
        assert credential is not None
        kind = credential.kind.value
        with timer.step(TransactionStep.DECIDE):
            decision = self._decide(presented)
        with timer.step(TransactionStep.ACT):
            try:
                action = self.profile.act(presented, decision)
            except ReaderError:
                raise  # handled by the card path: not completed
            except OneCardError as error:
                log.error("profile action failed: %s", error.reason)
                action = Action(False, error.code, error.reason)
        committed = None
        if code is not None and action.accepted:
            try:
                committed, action = self._commit_code(presented, code, action)
            except OneCardError as error:  # the replay cache cannot be written
                log.error("code not admitted: %s", error.reason)
                return self._tell_only(kind, ERROR, error.code, error.reason, timer)
        apdus = channel.apdu_count if channel is not None else 0
        record = TransactionRecord(
            kind=kind,
            service=self.context.service,
            decision=ACCEPT if action.accepted else REFUSE,
            reason=action.reason,
            amount=action.amount,
            card_token=credential.card_token,
            region=credential.region,
            category=credential.category,
            extra=self._journal_extra(presented, action),
        )
        with timer.step(TransactionStep.JOURNAL):
            try:
                entry = self.context.journal.append(record)
            except BaseException as error:
                # Not journaled, so not admitted: the code may be shown again.
                self._release_code(committed)
                if isinstance(error, JournalFullError):
                    # Not recorded, so not done: refuse, and take no effect (no gate).
                    log.error("journal full, transaction refused: %s", error.reason)
                    return self._tell_only(
                        kind, REFUSE, "journal_full", "terminal cannot record", timer, apdus
                    )
                if isinstance(error, JournalError):
                    log.error("journal failed, transaction refused: %s", error.reason)
                    return self._tell_only(kind, ERROR, error.code, error.reason, timer, apdus)
                raise
        seq = getattr(entry, "seq", None)
        self.profile.committed(presented, action)
        decision_text = ACCEPT if action.accepted else REFUSE
        gate_opened = False
        with timer.step(TransactionStep.TELL):
            if action.accepted and action.after_journal is not None:
                try:
                    action.after_journal()
                except OneCardError as error:
                    log.error("after-journal effect failed: %s", error.reason)
            if action.accepted and action.open_gate:
                self.outputs.open_gate()
                gate_opened = True
            told = _holder_reason(self.profile.name, presented, action.reason)
            if action.accepted and action.ride in RIDE_MESSAGES:
                told = RIDE_MESSAGES[action.ride]
            self._tell(
                decision_text,
                told,
                action.fare,
                action.balance,
                action.holder,
                concession=action.concession,
                notice=action.notice,
                shortfall=action.shortfall,
                note=action.note,
            )
        return TransactionOutcome(
            kind=kind,
            decision=decision_text,
            reason=action.reason,
            detail=action.detail,
            fare=action.fare,
            amount=action.amount,
            balance=action.balance,
            apdu_count=apdus,
            timings=MappingProxyType(dict(timer.timings)),
            journaled=True,
            seq=seq,
            gate_opened=gate_opened,
        )

    def _commit_code(self, presented: Presented, code: Any, action: Action) -> tuple[Any, Action]:
        """Commit the nonce of the accepted code ``code``: the committed result and the
        action, or - when the code was admitted since it was checked (another process
        sharing the replay cache) - None and a refusal of the replay. Raises what the
        verifier raises when the replay cache cannot be written."""
        verifier = self.context.code_verifier
        assert verifier is not None
        committed = verifier.commit(code)
        if getattr(committed, "accepted", False):
            return committed, action
        verdict = committed.verdict.value
        presented.authenticity = code_authenticity(verdict, committed.reason)
        return None, Action(False, Reason.NOT_AUTHENTIC.value, committed.reason)

    def _release_code(self, committed: Any) -> None:
        """Take back a committed nonce whose transaction was not journaled. A release that
        fails leaves the code used: refused when shown again, never admitted twice."""
        if committed is None:
            return
        verifier = self.context.code_verifier
        assert verifier is not None
        try:
            verifier.release(committed)
        except OneCardError as error:
            log.error("code stays used (not journaled, not released): %s", error.reason)

    def _journal_extra(self, presented: Presented, action: Action) -> dict[str, object]:
        extra = dict(action.extra, verdict=presented.authenticity.verdict)
        credential = presented.credential
        if (
            credential is not None
            and credential.kind is CredentialKind.CARD
            and getattr(self.profile, "pays_by_purse", False)
        ):
            # Says which namespace card_token is in: an SSC card number or an e-purse serial.
            extra["card_kind"] = credential.card_kind.value
        return extra

    def _tell(
        self,
        decision: str,
        reason: str,
        fare: int | None,
        balance: int | None,
        holder: str | None = None,
        **more: Any,
    ) -> None:
        outcome, message = self.messages(decision, reason, fare, balance)
        if holder is not None and hasattr(message, "holder"):
            message = dataclasses.replace(message, holder=holder)
        given = {k: v for k, v in more.items() if v is not None and hasattr(message, k)}
        if given:
            # The concession name, the low-balance prompt, the shortfall: the screen and
            # the voice add them to the message (terminal.outputs.HolderMessage).
            message = dataclasses.replace(message, **given)
        try:
            self.outputs.indicate(outcome)
            self.outputs.show(message)
        except OneCardError as error:  # a dead display must not stop the terminal
            log.error("outputs failed: %s", error.reason)

    def _tell_only(
        self,
        kind: str,
        decision: str,
        reason: str,
        detail: str,
        timer: _Timer,
        apdu_count: int = 0,
    ) -> TransactionOutcome:
        with timer.step(TransactionStep.TELL):
            self._tell(decision, reason, None, None)
        return TransactionOutcome(
            kind=kind,
            decision=decision,
            reason=reason,
            detail=detail,
            apdu_count=apdu_count,
            timings=MappingProxyType(dict(timer.timings)),
        )
