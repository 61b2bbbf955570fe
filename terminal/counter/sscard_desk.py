"""What the LD/T 33 reader library asks of the counter, answered (docs/his-integration.md).

The counter runtime reads every card the holder inserts (read, verify, the holder's PIN,
then the hand-off). :class:`CardTracker` follows those transactions reader by reader, so
that ``iReadCardBas`` answers with the record of the card in the reader now - waiting a
bounded time when that card's transaction is still running - and never with the record of
a card that has left. :class:`WatchedSteps` is the runtime's
:class:`~terminal.runtime.transaction.TransactionSteps` telling the tracker when each card
transaction starts and ends, and holding the desk's card lock while it runs, so that the
library's own card work (PIN, the HSM steps) never interleaves with a transaction's APDUs.

:class:`CounterDesk` serves one parsed request (:mod:`terminal.counter.sscard_protocol`):

* ``READ`` - the record of the card present in a reader of the counter (by ``iType``);
* ``VERIFYPIN`` / ``CHANGEPIN`` - the PIN typed on the counter's PIN pad
  (:class:`terminal.devices.pinpad.PinPad`) sent to that card: the caller never holds it;
* ``HSM1`` / ``HSM2`` - the secure-module-by-HSM read (shared domain.md section 3): the
  card's challenges and internal-authentication answer out, the HSM's answer in;
* ``PING`` - the service and its readers, for ``iGetReaderInfo``.

Personal data goes into the answer and nowhere else: nothing here logs a name, an ID
number, a card number or a PIN.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from terminal import ldt33
from terminal.counter import sscard_protocol as proto
from terminal.counter.sscard_protocol import Function, SscardRequest, SscardRequestError
from terminal.devices.pinpad import PinEntryCancelled, PinPad
from terminal.devices.reader import CardChannel, CardConnection, ReaderBackend, ReaderInfo
from terminal.errors import CardError, NoCardError, NoReaderError, OneCardError
from terminal.iso7816.atr import historical_bytes
from terminal.runtime.transaction import CardPresented, TransactionOutcome, TransactionSteps
from terminal.ssc import auth
from terminal.ssc.authenticity import card_algorithm
from terminal.ssc.layout import Generation
from terminal.ssc.pin import PinOutcome, PinResult, change_pin, verify_pin
from terminal.ssc.reading import CardReading
from terminal.ssc.session import ReadMode, SscRead, holder_generation, read_holder_data, read_ssc

log = logging.getLogger(__name__)

SERVICE_NAME = "onecard-sscard/1"
HSM_SESSION_SECONDS = 60.0
"""How long a Step1 waits for its Step2: the card's challenges are worth nothing after."""
HSM_ISSUER_ITEMS = frozenset(
    {"card_id", "spec_version", "card_number", "issue_date", "expiry_date"}
)
"""EF05 items read in Step1: SSCARD.js reads 01/03/07 there and 05/06 in Step2; all five are
read before the external authentication here, because selecting the application again after
it would drop the read right the HSM just granted."""
_HSM_KEY = re.compile(r"([0-9A-Fa-f]{16})\|([0-9A-Fa-f]{32})")


def is_contactless_atr(atr: bytes) -> bool:
    """A PC/SC part 3 pseudo-ATR (``3B 8n 80 01 ...``): the reader's, for a contactless card."""
    return len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"


def pick_card(readers: list[ReaderInfo], itype: int) -> ReaderInfo:
    """The reader whose card ``iType`` asks for: 1 contact, 2 contactless, 3 contact first,
    4 contactless first. :class:`NoReaderError` without readers, :class:`NoCardError` when
    no card of that interface is in one. Pure."""
    if not readers:
        raise NoReaderError("the counter has no card reader")
    contact = [r for r in readers if r.card_present and r.atr and not is_contactless_atr(r.atr)]
    contactless = [r for r in readers if r.card_present and r.atr and is_contactless_atr(r.atr)]
    order = {
        ldt33.TYPE_CONTACT: contact,
        ldt33.TYPE_CONTACTLESS: contactless,
        ldt33.TYPE_AUTO_CONTACT_FIRST: contact + contactless,
        ldt33.TYPE_AUTO_CONTACTLESS_FIRST: contactless + contact,
    }[itype]
    if not order:
        raise NoCardError("no card in the counter's reader")
    return order[0]


# --- following the counter's transactions ---------------------------------------------------


@dataclass(frozen=True)
class CardResult:
    """How the transaction of one card ended: ``code`` 0 with the ``reading`` handed over,
    or the LD/T 33 code and reason of a transaction that handed nothing over."""

    atr: bytes
    code: int
    reason: str
    reading: CardReading | None = None


@dataclass
class _ReaderState:
    running_atr: bytes | None = None
    published: CardReading | None = None
    result: CardResult | None = None
    finished: int = 0
    """Transactions finished in this reader: a waiter knows a new one ended."""


class CardTracker:
    """The counter's card transactions, reader by reader: told by :class:`WatchedSteps`
    (``started``, ``finished``) and the hand-off (``publish``); asked by the desk
    (:meth:`result_for`). Thread-safe."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._changed = threading.Condition()
        self._readers: dict[str, _ReaderState] = {}

    def _state(self, reader: str) -> _ReaderState:
        return self._readers.setdefault(reader, _ReaderState())

    def started(self, reader: str, atr: bytes) -> None:
        with self._changed:
            state = self._state(reader)
            state.running_atr = atr or b"?"
            state.published = None
            state.result = None  # a new presentation: the last card's record goes
            self._changed.notify_all()

    def publish(self, reading: CardReading) -> None:
        """The hand-off of an accepted transaction (called inside it, after the journal)."""
        with self._changed:
            self._state(reading.reader).published = reading

    def finished(self, reader: str, outcome: TransactionOutcome | None) -> None:
        with self._changed:
            state = self._state(reader)
            atr = state.running_atr or b""
            if outcome is None:
                result = CardResult(atr, ldt33.READER_CONNECTION, "internal_error")
            elif outcome.accepted and state.published is not None:
                reading = state.published
                result = CardResult(reading.atr, 0, "ok", reading)
            elif outcome.accepted:
                # Accepted without a record (cannot happen for a card at a counter): nothing
                # to hand over is a card this counter cannot serve.
                result = CardResult(atr, ldt33.WRONG_CARD_TYPE, "no_record")
            else:
                result = CardResult(atr, proto.outcome_code(outcome.reason), outcome.reason)
            state.running_atr = None
            state.published = None
            state.result = result
            state.finished += 1
            self._changed.notify_all()

    def forget(self, reader: str) -> None:
        """The reader is empty: its card's record goes (holder data does not linger)."""
        with self._changed:
            state = self._readers.get(reader)
            if state is not None:
                state.result = None

    def forget_absent(self, present: set[str]) -> None:
        """Forget the records of every reader not in ``present``."""
        with self._changed:
            for name, state in self._readers.items():
                if name not in present:
                    state.result = None

    def result_for(self, reader: str, atr: bytes, timeout: float) -> CardResult | None:
        """The result of the card with ``atr`` now in ``reader``: at once when its
        transaction has ended, else once it ends, for at most ``timeout`` seconds (None
        then). A result of another card (another ATR) is not this card's."""
        deadline = self._monotonic() + timeout
        with self._changed:
            while True:
                state = self._state(reader)
                result = state.result
                if state.running_atr is None and result is not None and result.atr == atr:
                    return result
                left = deadline - self._monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def wait_finished(self, reader: str, since: int, timeout: float) -> CardResult | None:
        """The result of the first transaction in ``reader`` to end after ``since``
        transactions had ended there (a call that was waiting for the card's transaction
        gets its ending, whatever the reader holds by then)."""
        deadline = self._monotonic() + timeout
        with self._changed:
            while True:
                state = self._state(reader)
                if state.finished > since:
                    return state.result
                left = deadline - self._monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def snapshot(self, reader: str) -> tuple[bytes | None, int]:
        """(ATR of the transaction running in ``reader`` or None, transactions ended)."""
        with self._changed:
            state = self._state(reader)
            return state.running_atr, state.finished


class HandOff:
    """The counter profile's hand-off: the loopback API and the tracker both get the
    record (``publish`` as :class:`terminal.counter.api.CounterApi` has it)."""

    def __init__(self, api: Any, tracker: CardTracker) -> None:
        self._api = api
        self._tracker = tracker

    @property
    def port(self) -> int:
        return int(self._api.port)

    def publish(self, reading: Any, error: Any, verdict: str | None) -> int:
        seq = int(self._api.publish(reading, error, verdict))
        if error is None and isinstance(reading, CardReading):
            self._tracker.publish(reading)
        return seq

    def __getattr__(self, name: str) -> Any:
        # Everything else (clear, has_record, shutdown, token_file...) is the API's.
        return getattr(self._api, name)


class WatchedSteps(TransactionSteps):
    """The runtime's transaction steps, telling ``tracker`` when a card transaction starts
    and ends, under ``card_lock`` (the desk's card work waits for it)."""

    def __init__(
        self,
        context: Any,
        profile: Any,
        outputs: Any,
        *,
        tracker: CardTracker,
        card_lock: threading.Lock,
        messages: Any = None,
    ) -> None:
        super().__init__(context, profile, outputs, messages)
        self.tracker = tracker
        self.card_lock = card_lock

    def run(self, presentation: Any) -> TransactionOutcome:
        if not isinstance(presentation, CardPresented):
            return super().run(presentation)
        with self.card_lock:
            self.tracker.started(presentation.reader, presentation.atr)
            outcome: TransactionOutcome | None = None
            try:
                outcome = super().run(presentation)
            finally:
                self.tracker.finished(presentation.reader, outcome)
        return outcome


# --- the desk ------------------------------------------------------------------------------


@dataclass
class _HsmSession:
    """A Step1 waiting for its Step2: the card connection stays open in between."""

    reader: str
    connection: CardConnection
    channel: CardChannel
    read: SscRead
    atr: bytes
    internal_answer: bytes | None
    started: float


class CounterDesk:
    """Answers library requests for a counter.

    ``backend`` lists the readers and opens the card (PIN, HSM steps); ``wanted(reader)``
    says which readers hold holders' cards (not the PSAM's); ``pinpad`` is the counter's PIN
    pad, the one the runtime asks too; ``card_lock`` is the lock :class:`WatchedSteps`
    holds during a transaction; ``wait`` the seconds ``iReadCardBas`` waits for a card's
    transaction, and the card work for the lock."""

    def __init__(
        self,
        backend: ReaderBackend,
        pinpad: PinPad,
        *,
        tracker: CardTracker,
        card_lock: threading.Lock,
        wanted: Callable[[str], bool] = lambda reader: True,
        wait: float = 10.0,
        terminal_id: str = "",
        device_number: str = "",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.pinpad = pinpad
        self.tracker = tracker
        self.card_lock = card_lock
        self.wanted = wanted
        self.wait = wait
        self.terminal_id = terminal_id
        self.device_number = device_number
        self._monotonic = monotonic
        self._hsm_lock = threading.Lock()
        self._hsm: _HsmSession | None = None

    # --- the one entry -----------------------------------------------------------------

    def serve(self, request: SscardRequest) -> tuple[int, str]:
        """(LD/T 33 code, text) for ``request``. A typed error becomes its code; anything
        else is logged (without data) and answered as the terminal's fault."""
        try:
            if request.function is Function.READ:
                return self.read_card(_itype(request))
            if request.function is Function.VERIFY_PIN:
                return self.verify_pin(_itype(request))
            if request.function is Function.CHANGE_PIN:
                return self.change_pin(_itype(request))
            if request.function is Function.HSM1:
                return self.hsm_step1(_itype(request))
            if request.function is Function.HSM2:
                return self.hsm_step2(request.key)
            return self.reader_info()
        except OneCardError as error:
            return proto.error_answer(error)
        except Exception:
            log.exception("sscard: %s failed unexpectedly", request.function.value)
            return ldt33.READER_CONNECTION, "internal_error: the counter service failed"

    # --- iReadCardBas ------------------------------------------------------------------

    def readers(self) -> list[ReaderInfo]:
        return [r for r in self.backend.readers() if self.wanted(r.name)]

    def purge(self) -> None:
        """Forget the records of cards no longer in their reader."""
        try:
            present = {r.name for r in self.readers() if r.card_present}
        except OneCardError:
            return  # PC/SC down: the next call finds out, and nothing new is kept meanwhile
        self.tracker.forget_absent(present)

    def read_card(self, itype: int) -> tuple[int, str]:
        card = pick_card(self.readers(), itype)
        assert card.atr is not None
        running, finished = self.tracker.snapshot(card.name)
        if running is not None:
            # The card's transaction runs now (its read, the holder typing the PIN): its
            # ending is this call's answer, even if the card is pulled meanwhile.
            result = self.tracker.wait_finished(card.name, finished, self.wait)
        else:
            result = self.tracker.result_for(card.name, card.atr, self.wait)
        if result is None:
            return ldt33.NO_ANSWER, (
                f"busy: the counter did not finish this card within {self.wait:g} s"
            )
        if result.code != 0 or result.reading is None:
            return result.code, result.reason
        return 0, result.reading.to_ireadcardbas(reveal=True, device_number=self.device_number)

    # --- the card, opened by the desk ---------------------------------------------------

    @contextmanager
    def _card_work(self) -> Iterator[None]:
        """The card lock, for at most ``wait`` seconds (a transaction holds it)."""
        if not self.card_lock.acquire(timeout=self.wait):
            raise _Busy("the counter is busy with a card transaction")
        try:
            yield
        finally:
            self.card_lock.release()

    def _pin_operation(
        self, itype: int, run: Callable[[CardChannel], PinResult]
    ) -> tuple[int, str]:
        card = pick_card(self.readers(), itype)
        with self._card_work():
            connection = self.backend.connect(card.name)
            try:
                result = run(CardChannel(connection))
            finally:
                _close(connection)
        if result.outcome is PinOutcome.OK:
            return 0, ""
        if result.outcome is PinOutcome.WRONG:
            # pOutInfo holds the tries left, as a number: the caller's screen says it.
            return ldt33.PIN_WRONG, str(result.tries_left)
        return ldt33.PIN_BLOCKED, "pin_blocked: the card's PIN is blocked"

    def verify_pin(self, itype: int) -> tuple[int, str]:
        """VERIFY with the PIN the holder types on the counter's pad."""

        def run(channel: CardChannel) -> PinResult:
            pin = self.pinpad.read_pin("PIN: ")
            try:
                return verify_pin(channel, pin)
            finally:
                del pin

        return self._pin_operation(itype, run)

    def change_pin(self, itype: int) -> tuple[int, str]:
        """CHANGE PIN: the old PIN, the new one and the new one again, all on the pad."""

        def run(channel: CardChannel) -> PinResult:
            old = self.pinpad.read_pin("old PIN: ")
            new = self.pinpad.read_pin("new PIN: ")
            again = self.pinpad.read_pin("new PIN again: ")
            try:
                if not hmac.compare_digest(new.encode(), again.encode()):
                    raise PinEntryCancelled("the new PIN was not typed the same twice")
                return change_pin(channel, old, new)
            finally:
                del old, new, again

        return self._pin_operation(itype, run)

    # --- the HSM read -------------------------------------------------------------------

    def _drop_hsm(self) -> None:
        session, self._hsm = self._hsm, None
        if session is not None:
            _close(session.connection)

    def hsm_step1(self, itype: int) -> tuple[int, str]:
        """Select, read EF05, and on a 3.0 card the internal authentication's challenges
        and answer, then two challenges for the external one; the connection is kept for
        Step2. Output ``region|ATR historical bytes|algorithm|card id|int. process
        factor|int. source|ext. process factor|ext. source|terminal serial|``."""
        card = pick_card(self.readers(), itype)
        with self._hsm_lock, self._card_work():
            self._drop_hsm()
            connection = self.backend.connect(card.name)
            try:
                channel = CardChannel(connection)
                read = read_ssc(
                    channel, ReadMode.PER_TAG, read_holder=False, items=HSM_ISSUER_ITEMS
                )
                algorithm = card_algorithm(read)
                fields = ["", "", "", ""]
                answer = None
                if holder_generation(read.issuer) is Generation.V3:
                    process, source = _challenge(channel), _challenge(channel)
                    reply = channel.transmit(auth.internal_authenticate(process, source))
                    if not reply.ok:
                        raise CardError("card refused INTERNAL AUTHENTICATE", reply.sw)
                    answer = reply.data
                    # The card keys the external authentication's session to its last
                    # challenge: the source first, the process factor last.
                    ext_source = _challenge(channel)
                    ext_process = _challenge(channel)
                    fields = [b.hex().upper() for b in (process, source, ext_process, ext_source)]
            except BaseException:
                _close(connection)
                raise
            self._hsm = _HsmSession(
                card.name, connection, channel, read, connection.atr, answer, self._monotonic()
            )
        issuer = read.issuer
        text = "|".join(
            [
                issuer.region or "",
                historical_bytes(connection.atr).hex().upper(),
                f"{int(algorithm):02d}" if algorithm is not None else "",
                issuer.card_id or "",
                *fields,
                ldt33.NO_PSAM_TERMINAL_NUMBER,
            ]
        )
        return 0, text + "|"

    def hsm_step2(self, key: str) -> tuple[int, str]:
        """Check the HSM's expected internal-authentication answer against the card's,
        send its EXTERNAL AUTHENTICATE, read the holder data: the iReadCardBas string
        (terminal number 12 zeros). Before 3.0 the key is not needed and not looked at."""
        with self._hsm_lock:
            session = self._hsm
            if session is None or self._monotonic() - session.started > HSM_SESSION_SECONDS:
                self._drop_hsm()
                raise SscardRequestError("no Step1 in progress: call iReadCardBas_HSM_Step1")
            self._hsm = None
            try:
                with self._card_work():
                    return self._step2(session, key)
            finally:
                _close(session.connection)

    def _step2(self, session: _HsmSession, key: str) -> tuple[int, str]:
        channel, read = session.channel, session.read
        generation = holder_generation(read.issuer)
        if generation is Generation.V3:
            match = _HSM_KEY.fullmatch(key)
            if match is None or session.internal_answer is None:
                raise SscardRequestError("pKey must be 16 hex digits, '|', 32 hex digits")
            expected = bytes.fromhex(match.group(1))
            if not hmac.compare_digest(expected, session.internal_answer):
                return ldt33.INTERNAL_AUTH_FAILED, "internal_auth_failed: not the HSM's answer"
            data = bytes.fromhex(match.group(2))
            reply = channel.transmit(auth.external_authenticate(data[:8], data[8:]))
            if not reply.ok:
                raise CardError("card refused EXTERNAL AUTHENTICATE", reply.sw)
        holder, _ = read_holder_data(channel, generation, ReadMode.PER_TAG)
        issuer = read.issuer
        text = ldt33.ireadcardbas(
            region=issuer.region,
            ssn=holder.ssn if holder else None,
            card_number=issuer.card_number,
            card_id=issuer.card_id,
            name=holder.name if holder else None,
            atr=session.atr,
            spec_version=issuer.spec_version,
            issue_date=issuer.issue_date,
            expiry_date=issuer.expiry_date,
            device_number=self.device_number,
        )
        return 0, text

    def close(self) -> None:
        with self._hsm_lock:
            self._drop_hsm()

    # --- iGetReaderInfo -----------------------------------------------------------------

    def reader_info(self) -> tuple[int, str]:
        """``service|terminal id|reader:state;...|``: no card data."""
        states = ";".join(
            f"{r.name}:{'card' if r.card_present else 'empty'}" for r in self.readers()
        )
        return 0, f"{SERVICE_NAME}|{self.terminal_id}|{states}|"


class _Busy(OneCardError):
    """The card lock was not free in time."""

    code = "busy"


def _itype(request: SscardRequest) -> int:
    assert request.itype is not None  # parse_request guarantees it for these functions
    return request.itype


def _challenge(channel: CardChannel) -> bytes:
    reply = channel.transmit(auth.get_challenge())
    if not reply.ok or len(reply.data) != auth.CHALLENGE_LENGTH:
        raise CardError("card gave no challenge", reply.sw)
    return reply.data


def _close(connection: CardConnection) -> None:
    try:
        connection.close()
    except OneCardError:
        log.debug("closing a card connection failed", exc_info=True)
