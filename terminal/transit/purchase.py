"""The T-Union composite purchase (docs/transit.md), as a pure state machine over two devices.

:class:`PurchaseSession` owns no I/O. ``next_step()`` says what to do next - a
:class:`CardStep` (a command APDU for the e-purse), a :class:`Mac1Step` or a :class:`Mac2Step`
(a request to the secure module) - and ``receive()`` takes the answer: the card's final
:class:`ResponseAPDU` (after the channel's 61xx/6Cxx handling), :data:`CARD_GONE` when the card
left during a step that may tear, a :class:`Mac1Answer`, or a :class:`Mac2Verdict`.
:func:`purchase`, :func:`recover`, :func:`read_balance` and :func:`select_purse` drive the
sessions over a :class:`terminal.devices.reader.CardChannel` and a :class:`PsamPurchase` (the PSAM
module, or the :class:`SoftwarePurchaseModule`). The commands and every card constant are in
:mod:`terminal.transit.commands`.

The purchase on the wire, card APDUs only (4 over T=1 when the FCI carries file 0x15, 5 when
it does not; GET RESPONSE adds some over T=0):

1. ``00 A4 04 00 08 A000000632010105 00`` SELECT the e-purse; most FCIs carry file 0x15 in tag
   ``9F0C``, so the application serial (key diversification) needs no READ BINARY. When
   ``9F0C`` is absent: ``00 B0 95 00 1E`` READ BINARY of 0x15 by SFI (domain.md 5b).
   A session given the 0x15 of an e-purse the card path has just selected
   (``public_info=``) skips this step.
2. ``80 50 03 02 0B 01 amount(4) terminalNo(6) 0F`` INITIALIZE FOR PURCHASE (composite):
   balance (bit 31 dropped), counter, overdraft, key version, algorithm, card random.
   ``9401``: not enough money, nothing happens (one ``80 5C`` GET BALANCE follows).
3. (PSAM) ``80 70 00 00 24`` MAC1: terminal serial and MAC1.
4. ``80 DC <id> F0 30 <trip record>`` UPDATE CAPP DATA CACHE: stages the 0x1E trip record.
5. ``80 54 01 00 0F serial(4) date(4) time(3) MAC1(4) 08`` DEBIT FOR PURCHASE: the card checks
   MAC1, debits, logs, writes the staged trip record; answers TAC(4) MAC2(4).
6. (PSAM) ``80 72 00 00 04 MAC2`` MAC2 check.

A card gone during DEBIT ends in status ``torn`` with a :class:`PendingPurchase`; on the next
tap :func:`recover` asks ``80 5A 00 09 02 <counter+1> 08`` GET TRANSACTION PROVE and lets the
PSAM check the MAC2 it answers, so a purchase is charged exactly once.
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from terminal.crypto.symmetric import SymmetricAlgorithm, diversify, session_key, sm_mac
from terminal.devices.reader import CardChannel
from terminal.errors import (
    AlgorithmMissingError,
    CardRemovedError,
    CardUnresponsiveError,
    KeyMissingError,
    NoCardError,
    NoTransitApplicationError,
    PendingMismatchError,
    TransitCardError,
    TransitError,
    TransitRecordError,
)
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import SW
from terminal.privacy.masking import mask_middle

# The command table lives in terminal.transit.commands. Its names stay importable from this
# module (the PSAM module and the simulator import them from here): the re-exports are marked.
from terminal.transit.commands import (
    ALGORITHM_IDS,
    BALANCE_LENGTH,
    DEFAULT_KEY_INDEX,
    INIT_ANSWER_LENGTH,
    MAC1_DATA_LENGTH,
    MAC_LENGTH,
    MAX_AMOUNT,
    PURCHASE_LOG_CAPACITY,
    PURCHASE_TYPES,
    SW_BLOCKED,
    SW_INSUFFICIENT_BALANCE,
    SW_MAC_INVALID,
    SW_NO_APPLICATION,
    SW_NO_RECORD,
    TAC_LENGTH,
    TYPE_COMPOSITE,
    TYPE_PURCHASE,
    debit_for_purchase,
    describe_sw,
    get_balance,
    get_transaction_prove,
    initialize_for_purchase,
    read_public_info,
    read_purchase_log,
    select_tunion,
    update_capp_data_cache,
)
from terminal.transit.records import (
    APP_SERIAL_LENGTH,
    ISSUER_ID_LENGTH,
    PUBLIC_INFO_LENGTH,
    PURCHASE_LOG_LENGTH,
    TERMINAL_NUMBER_LENGTH,
    PublicInfo,
    TripRecord,
    decode_balance,
    decode_public_info,
    encode_bcd_date,
    encode_bcd_time,
    is_empty_record,
    parse_purse_fci,
)

log = logging.getLogger(__name__)

TAC_VARIANT = b"TAC\x00\x00\x00\x00\x00"
"""Diversification data turning the card's purchase key into its TAC key (docs/transit.md)."""
MAX_LOG_RECORDS_ON_RECOVERY = PURCHASE_LOG_CAPACITY
"""Recovery reads the purchase log newest first until a record older than the pending
purchase, an empty record, 6A83 - or the whole cyclic file (its capacity)."""


# --- crypto (the card, the PSAM and the back office compute the same) ------------------------


def card_purchase_key(
    master: bytes, issuer_id: bytes, app_serial: bytes, algorithm: SymmetricAlgorithm
) -> bytes:
    """The card's purchase key DPK: the master diversified by the issuer id (0x15 bytes 0-7),
    then by the low 8 bytes of the application serial (0x15 bytes 12-19)."""
    if len(issuer_id) != ISSUER_ID_LENGTH or len(app_serial) != APP_SERIAL_LENGTH:
        raise TransitError("issuer id is 8 bytes and application serial 10 bytes")
    return diversify(diversify(master, issuer_id, algorithm), app_serial[2:], algorithm)


def purchase_session_key(
    card_key: bytes, random: bytes, counter: int, terminal_serial: int, alg: SymmetricAlgorithm
) -> bytes:
    """SK = E_DPK(random(4) || counter(2) || terminal serial low 2 bytes): 8 bytes (single
    DES) for 3DES, 16 for SM4 (input padded with 8 zero bytes, as the SSSE session keys)."""
    seed = random + counter.to_bytes(2, "big") + (terminal_serial & 0xFFFF).to_bytes(2, "big")
    return session_key(card_key, seed, alg)


def mac1_input(
    amount: int, transaction_type: int, terminal_number: bytes, date: bytes, time: bytes
) -> bytes:
    """amount(4) || type(1) || terminal number(6) || date(4) || time(3): 18 bytes."""
    return amount.to_bytes(4, "big") + bytes((transaction_type,)) + terminal_number + date + time


def purchase_mac1(alg: SymmetricAlgorithm, sk: bytes, data: bytes) -> bytes:
    """MAC1: the 4-byte secure-messaging MAC (zero IV, ISO 9797-1 padding 2) of
    :func:`mac1_input` under SK."""
    return sm_mac(alg, sk, data)


def purchase_mac2(alg: SymmetricAlgorithm, sk: bytes, amount: int) -> bytes:
    """MAC2: the 4-byte MAC of amount(4) under SK."""
    return sm_mac(alg, sk, amount.to_bytes(4, "big"))


def tac_key(card_key: bytes, alg: SymmetricAlgorithm) -> bytes:
    """The TAC key: DPK diversified with "TAC" || 00*5; for 3DES folded (left XOR right) into
    a single-DES key, as PBOC folds the DTK."""
    key = diversify(card_key, TAC_VARIANT, alg)
    if alg is SymmetricAlgorithm.SM4:
        return key
    return bytes(a ^ b for a, b in zip(key[:8], key[8:], strict=True))


def purchase_tac(
    alg: SymmetricAlgorithm,
    card_key: bytes,
    amount: int,
    transaction_type: int,
    terminal_number: bytes,
    terminal_serial: int,
    date: bytes,
    time: bytes,
) -> bytes:
    """TAC = MAC under :func:`tac_key` of amount(4) || type(1) || terminal number(6) ||
    terminal serial(4) || date(4) || time(3). Only the card and the back office compute it."""
    data = (
        amount.to_bytes(4, "big")
        + bytes((transaction_type,))
        + terminal_number
        + terminal_serial.to_bytes(4, "big")
        + date
        + time
    )
    return sm_mac(alg, tac_key(card_key, alg), data)


# --- the secure module's side ---------------------------------------------------------------


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
    or :class:`SoftwarePurchaseModule`. The terminal itself computes nothing secret."""

    terminal_number: str  # 12 digits: the terminal number INITIALIZE and MAC1 carry

    def purchase_mac1(self, request: Mac1Request) -> Mac1Answer: ...

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict: ...


@dataclass
class _MacSession:
    algorithm: SymmetricAlgorithm
    key: bytes
    amount: int


MAX_KEPT_SESSIONS = 16


class PurchaseMacEngine:
    """What a PSAM does for a purchase, from master keys (``{algorithm: master}``).

    MAC1 derives DPK and SK, increments the transaction serial (non-volatile, 4 bytes) and
    keeps the session; MAC2 is checked against the newest session, or against the session of
    ``terminal_serial`` among the last :data:`MAX_KEPT_SESSIONS` (recovery of a torn
    purchase). Sessions live in RAM: :meth:`drop_sessions` at power-on. The simulated PSAM
    applet and :class:`SoftwarePurchaseModule` both run this.
    """

    def __init__(
        self, masters: dict[SymmetricAlgorithm, bytes], terminal_number: bytes, serial: int = 0
    ) -> None:
        if len(terminal_number) != TERMINAL_NUMBER_LENGTH:
            raise TransitError("a terminal number is 6 bytes")
        self._masters = dict(masters)
        self.terminal_number = bytes(terminal_number)
        self.serial = serial
        self._sessions: OrderedDict[int, _MacSession] = OrderedDict()
        self._current: int | None = None

    def __repr__(self) -> str:
        algs = ", ".join(a.name for a in sorted(self._masters))
        return f"PurchaseMacEngine(algorithms=<{algs}>, serial={self.serial})"

    def drop_sessions(self) -> None:
        self._sessions.clear()
        self._current = None

    def mac1(self, request: Mac1Request) -> Mac1Answer:
        """Raises :class:`AlgorithmMissingError` (unknown algorithm id) or
        :class:`KeyMissingError` (no purchase master for it)."""
        # A failed MAC1 must not leave the previous card's session checkable as current.
        self._current = None
        alg = ALGORITHM_IDS.get(request.algorithm_id)
        if alg is None:
            raise AlgorithmMissingError(f"unknown algorithm id {request.algorithm_id:02X}")
        master = self._masters.get(alg)
        if master is None:
            raise KeyMissingError(f"no {alg.name} purchase master key")
        card_key = card_purchase_key(master, request.issuer_id, request.app_serial, alg)
        self.serial = (self.serial + 1) & 0xFFFFFFFF
        sk = purchase_session_key(card_key, request.random, request.counter, self.serial, alg)
        mac = purchase_mac1(
            alg,
            sk,
            mac1_input(
                request.amount,
                request.transaction_type,
                self.terminal_number,
                request.date,
                request.time,
            ),
        )
        self._sessions[self.serial] = _MacSession(alg, sk, request.amount)
        while len(self._sessions) > MAX_KEPT_SESSIONS:
            self._sessions.popitem(last=False)
        self._current = self.serial
        return Mac1Answer(self.serial, mac)

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict:
        serial = self._current if terminal_serial is None else terminal_serial
        session = None if serial is None else self._sessions.get(serial)
        if session is None:
            return Mac2Verdict.UNKNOWN
        expected = purchase_mac2(session.algorithm, session.key, session.amount)
        if not hmac.compare_digest(expected, bytes(mac2)):
            return Mac2Verdict.INVALID
        # A checked session is done with: a replayed MAC2 is not accepted twice as current.
        if terminal_serial is None:
            self._current = None
        return Mac2Verdict.VALID


class SoftwarePurchaseModule:
    """A :class:`PsamPurchase` from purchase master keys in RAM (tests, bench baselines).

    ``keyset`` is a :class:`terminal.secure.keyfile.KeySet` holding ``purchase`` keys.
    """

    def __init__(self, keyset: object, serial: int = 0) -> None:
        from terminal.secure.keyfile import KeySet, TransitKeyName

        if not isinstance(keyset, KeySet):
            raise TypeError("a SoftwarePurchaseModule needs a KeySet")
        masters = {
            alg: key
            for alg in keyset.algorithms()
            if (key := keyset.key(alg, TransitKeyName.PURCHASE)) is not None
        }
        self.terminal_number = keyset.terminal_number
        self._engine = PurchaseMacEngine(masters, bytes.fromhex(keyset.terminal_number), serial)

    def __repr__(self) -> str:
        return f"SoftwarePurchaseModule(terminal_number={self.terminal_number!r})"

    def purchase_mac1(self, request: Mac1Request) -> Mac1Answer:
        return self._engine.mac1(request)

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict:
        return self._engine.verify_mac2(mac2, terminal_serial)


# --- results --------------------------------------------------------------------------------


class PurchaseStatus(enum.StrEnum):
    DONE = "done"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    TORN = "torn"  # card gone during DEBIT: keep the PendingPurchase, recover on next tap
    REFUSED = "refused"  # see PurchaseResult.reason
    NOT_CHARGED = "not_charged"  # recovery: the torn purchase never reached the card


@dataclass(frozen=True)
class PendingPurchase:
    """A purchase whose DEBIT got no answer: what :func:`recover` needs on the next tap."""

    app_serial: bytes
    counter: int  # the counter INITIALIZE answered (the debit, if done, made it counter + 1)
    amount: int
    transaction_type: int
    terminal_number: bytes
    terminal_serial: int  # the PSAM transaction serial of MAC1
    when: dt.datetime
    balance_before: int


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


# --- the state machines ---------------------------------------------------------------------


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


class _CardGone:
    def __repr__(self) -> str:
        return "CARD_GONE"


CARD_GONE = _CardGone()
"""Passed to ``receive()`` when the card left during a step with ``may_tear``."""

Answer = ResponseAPDU | Mac1Answer | Mac2Verdict | _CardGone
R = TypeVar("R")
_Run = Generator[PurchaseStep, Answer, PurchaseResult]


@dataclass(frozen=True)
class TripInfo:
    """What the validator writes into the 0x1E trip record besides amount, balance, time."""

    record_id: int = 0x01
    industry: int = 0x02  # bus
    line: int = 0
    station: int = 0
    operator: int = 0
    city_code: bytes = b"\x00\x00"
    acquirer_id: bytes = bytes(8)


class EPurseSession(Generic[R]):
    """The plumbing of every e-purse session: a generator of steps, fed answers, whose
    return value is the result (a :class:`PurchaseResult`, or a
    :class:`terminal.transit.purse.PurseReading`)."""

    def __init__(self) -> None:
        self._result: R | None = None
        self._steps = self._run()
        self._pending: PurchaseStep | None = None
        self._advance(None)

    def _run(self) -> Generator[PurchaseStep, Answer, R]:
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

    def _select(
        self, selected: PublicInfo | None = None
    ) -> Generator[PurchaseStep, Answer, PublicInfo]:
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
            raise _fail("SELECT e-purse", response.sw)
        fci = parse_purse_fci(response.data)
        if fci.public_info is not None:
            return fci.public_info
        # Many real cards leave 9F0C out of the FCI (domain.md 5b): one READ BINARY more.
        response = self._card((yield CardStep(read_public_info(), "READ BINARY 0x15")))
        if response.sw != SW.OK:
            raise _fail("READ BINARY 0x15", response.sw)
        if len(response.data) != PUBLIC_INFO_LENGTH:
            raise TransitRecordError(
                f"READ BINARY 0x15 answered {len(response.data)} bytes, not 30 (SW 9000)"
            )
        return decode_public_info(response.data)

    def _balance(self, response: ResponseAPDU, command: str) -> int:
        """The balance in a 9000 answer of GET BALANCE: 4 bytes, bit 31 dropped."""
        if response.sw != SW.OK:
            raise _fail(command, response.sw)
        if len(response.data) != BALANCE_LENGTH:
            raise TransitRecordError(
                f"{command} answered {len(response.data)} bytes, not 4 (SW 9000)"
            )
        return decode_balance(response.data, command)


_Session = EPurseSession[PurchaseResult]


def _fail(command: str, sw: int) -> TransitCardError:
    return TransitCardError(f"{command} failed: {describe_sw(sw)}", sw)


class PurchaseSession(_Session):
    """One purchase of ``amount`` fen at ``when`` by the terminal ``terminal_number`` (12
    digits, the PSAM's). ``composite`` (the default) stages the trip record ``trip`` with
    UPDATE CAPP DATA CACHE; ``composite=False`` is the plain purchase (type 06).
    ``public_info``: the 0x15 of the e-purse the caller has just selected on this card (the
    validator's card path), so SELECT is not sent again."""

    def __init__(
        self,
        amount: int,
        terminal_number: str,
        when: dt.datetime,
        *,
        composite: bool = True,
        trip: TripInfo | None = None,
        key_index: int = DEFAULT_KEY_INDEX,
        public_info: PublicInfo | None = None,
    ) -> None:
        if not 0 < amount <= MAX_AMOUNT:
            raise TransitError(f"purchase amount {amount} outside 1..{MAX_AMOUNT} fen")
        self.amount = amount
        self.terminal_number = bytes.fromhex(terminal_number)
        if len(self.terminal_number) != TERMINAL_NUMBER_LENGTH:
            raise TransitError("the terminal number is 12 digits")
        self.when = when.replace(microsecond=0)
        self.composite = composite
        self.trip = trip or TripInfo()
        self.key_index = key_index
        self.selected = public_info
        self.public_info: PublicInfo | None = None
        super().__init__()

    def _run(self) -> _Run:
        info = yield from self._select(self.selected)
        self.public_info = info
        serial_hex = info.app_serial.hex()
        if not info.valid_on(self.when.date()):
            return self._refused("expired", serial_hex)
        kind = TYPE_COMPOSITE if self.composite else TYPE_PURCHASE
        response = self._card(
            (
                yield CardStep(
                    initialize_for_purchase(
                        self.amount,
                        self.terminal_number,
                        composite=self.composite,
                        key_index=self.key_index,
                    ),
                    "INITIALIZE FOR PURCHASE",
                )
            )
        )
        if response.sw == SW_INSUFFICIENT_BALANCE:
            # Only for the display: an unreadable balance does not change the outcome.
            balance_response = self._card((yield CardStep(get_balance(), "GET BALANCE")))
            balance = (
                decode_balance(balance_response.data)
                if balance_response.sw == SW.OK and len(balance_response.data) == BALANCE_LENGTH
                else None
            )
            return PurchaseResult(
                PurchaseStatus.INSUFFICIENT_BALANCE,
                balance,
                balance,
                None,
                None,
                0,
                app_serial=serial_hex,
            )
        if response.sw in (SW_BLOCKED, SW.APPLICATION_BLOCKED):
            return self._refused("blocked", serial_hex)
        if response.sw != SW.OK:
            raise _fail("INITIALIZE FOR PURCHASE", response.sw)
        init = response.data
        if len(init) != INIT_ANSWER_LENGTH:
            raise TransitRecordError(
                f"INITIALIZE FOR PURCHASE answered {len(init)} bytes, not 15 (SW 9000)"
            )
        # The same 4 bytes as GET BALANCE, with the same garbage bit 31 on real cards.
        balance = decode_balance(init[0:4], "INITIALIZE FOR PURCHASE balance")
        counter = int.from_bytes(init[4:6], "big")
        date, time = encode_bcd_date(self.when.date()), encode_bcd_time(self.when)
        mac1 = yield Mac1Step(
            Mac1Request(
                random=init[11:15],
                counter=counter,
                amount=self.amount,
                transaction_type=kind,
                date=date,
                time=time,
                key_version=init[9],
                algorithm_id=init[10],
                app_serial=info.app_serial,
                issuer_id=info.issuer_id,
            )
        )
        if not isinstance(mac1, Mac1Answer):
            raise TransitError(f"expected MAC1 from the secure module, got {mac1!r}")
        if self.composite:
            record = TripRecord(
                record_id=self.trip.record_id,
                transaction_type=kind,
                terminal_number=self.terminal_number,
                industry=self.trip.industry,
                line=self.trip.line,
                station=self.trip.station,
                operator=self.trip.operator,
                amount=self.amount,
                balance_after=balance - self.amount,
                when=self.when,
                city_code=self.trip.city_code,
                acquirer_id=self.trip.acquirer_id,
            ).to_bytes()
            response = self._card(
                (yield CardStep(update_capp_data_cache(record), "UPDATE CAPP DATA CACHE"))
            )
            if response.sw != SW.OK:
                raise _fail("UPDATE CAPP DATA CACHE", response.sw)
        pending = PendingPurchase(
            app_serial=info.app_serial,
            counter=counter,
            amount=self.amount,
            transaction_type=kind,
            terminal_number=self.terminal_number,
            terminal_serial=mac1.terminal_serial,
            when=self.when,
            balance_before=balance,
        )
        answer = yield CardStep(
            debit_for_purchase(mac1.terminal_serial, date, time, mac1.mac1),
            "DEBIT FOR PURCHASE",
            may_tear=True,
            pending=pending,
        )
        if isinstance(answer, _CardGone):
            log.warning("card %s left during DEBIT: purchase pending", mask_middle(serial_hex))
            return PurchaseResult(
                PurchaseStatus.TORN,
                balance,
                None,
                counter,
                None,
                0,
                app_serial=serial_hex,
                terminal_serial=mac1.terminal_serial,
                pending=pending,
            )
        response = self._card(answer)
        if response.sw == SW_MAC_INVALID:
            return self._refused("mac1_refused", serial_hex, balance, counter)
        if response.sw == SW_BLOCKED:
            return self._refused("blocked", serial_hex, balance, counter)
        if response.sw != SW.OK:
            raise _fail("DEBIT FOR PURCHASE", response.sw)
        if len(response.data) != TAC_LENGTH + MAC_LENGTH:
            # The card answered 9000 to DEBIT: it may well have debited. The error leaves the
            # pending record (written before DEBIT) for the next tap to settle.
            raise TransitRecordError(
                f"DEBIT FOR PURCHASE answered {len(response.data)} bytes, not 8 (SW 9000)"
            )
        tac, mac2 = response.data[:4], response.data[4:]
        verdict = yield Mac2Step(mac2, None)
        done = PurchaseResult(
            PurchaseStatus.DONE,
            balance,
            balance - self.amount,
            counter,
            tac.hex().upper(),
            0,
            app_serial=serial_hex,
            terminal_serial=mac1.terminal_serial,
            mac2_verified=verdict is Mac2Verdict.VALID,
        )
        if verdict is Mac2Verdict.INVALID:
            # The card says it debited, but not with the key our PSAM derives: not a genuine
            # e-purse (or a corrupted answer). Nothing to give the rider; report it.
            log.error("card %s: MAC2 of the DEBIT answer does not verify", mask_middle(serial_hex))
            return replace(done, status=PurchaseStatus.REFUSED, reason="mac2_mismatch")
        if verdict is Mac2Verdict.UNKNOWN:
            log.warning(
                "card %s: the secure module lost the session; MAC2 unchecked",
                mask_middle(serial_hex),
            )
        return done

    def _refused(
        self,
        reason: str,
        serial_hex: str,
        balance: int | None = None,
        counter: int | None = None,
    ) -> PurchaseResult:
        return PurchaseResult(
            PurchaseStatus.REFUSED,
            balance,
            balance,
            counter,
            None,
            0,
            app_serial=serial_hex,
            reason=reason,
        )


def _logged_as(record: bytes, p: PendingPurchase) -> bool:
    """Whether a 0x18 record is the pending purchase: counter, amount, terminal number, date
    and time (to the second, local, as the card keeps them) compared as the card wrote them,
    so a record whose other fields do not decode still answers the question."""
    return (
        record[0:2] == p.counter.to_bytes(2, "big")
        and record[5:9] == p.amount.to_bytes(4, "big")
        and record[10:16] == p.terminal_number
        and record[16:20] == encode_bcd_date(p.when.date())
        and record[20:23] == encode_bcd_time(p.when)
    )


class RecoverySession(_Session):
    """The next tap after a torn purchase: did DEBIT happen?

    SELECT (the application serial must be the pending one; skipped when ``public_info`` is
    given), GET TRANSACTION PROVE for ``counter + 1``: an answer whose MAC2 the PSAM verifies
    for the pending session means the card debited (``done``, recovered; charged once). A
    MAC2 of another transaction, or no prove (``9406`` or any other refusal), leads to the
    purchase log (0x18), newest first: a purchase record (type 06 or 09; loads are skipped,
    their counter is the online one) with the pending counter, amount, terminal and time
    means done (the card was used elsewhere since, or the PSAM lost the session). The log
    ends at an empty record (9000 with zero bytes: real cards), at 6A83 or another status
    word, at a purchase older than the pending counter, or after
    :data:`MAX_LOG_RECORDS_ON_RECOVERY` records; the purchase is then not on the card
    (``not_charged``). A record of the wrong
    length is a :class:`TransitRecordError` naming it: the pending purchase stays for the
    next tap rather than be guessed either way.
    """

    def __init__(self, pending: PendingPurchase, public_info: PublicInfo | None = None) -> None:
        self.pending = pending
        self.selected = public_info
        super().__init__()

    def _run(self) -> _Run:
        p = self.pending
        info = yield from self._select(self.selected)
        if info.app_serial != p.app_serial:
            raise PendingMismatchError(
                f"card {mask_middle(info.app_serial.hex())} is not the card "
                f"{mask_middle(p.app_serial.hex())} of the pending purchase"
            )
        serial_hex = info.app_serial.hex()
        done = PurchaseResult(
            PurchaseStatus.DONE,
            p.balance_before,
            p.balance_before - p.amount,
            p.counter,
            None,
            0,
            app_serial=serial_hex,
            terminal_serial=p.terminal_serial,
            recovered=True,
        )
        response = self._card(
            (
                yield CardStep(
                    get_transaction_prove(p.transaction_type, p.counter + 1),
                    "GET TRANSACTION PROVE",
                )
            )
        )
        if response.sw == SW.OK and len(response.data) == MAC_LENGTH + TAC_LENGTH:
            mac2, tac = response.data[:4], response.data[4:]
            verdict = yield Mac2Step(mac2, p.terminal_serial)
            if verdict is Mac2Verdict.VALID:
                return replace(done, tac=tac.hex().upper(), mac2_verified=True)
        # No usable prove (9406, or a card that does not offer the command at all): the
        # purchase log still tells, and a pending purchase must never stay unsettleable.
        for number in range(1, MAX_LOG_RECORDS_ON_RECOVERY + 1):
            response = self._card(
                (yield CardStep(read_purchase_log(number), f"READ RECORD 0x18 #{number}"))
            )
            if response.sw != SW.OK or is_empty_record(response.data):
                break  # 6A83, another status word, or an unwritten record: the end of the log
            record = response.data
            if len(record) != PURCHASE_LOG_LENGTH:
                raise TransitRecordError(
                    f"0x18 record {number} has {len(record)} bytes, not 23 (SW 9000)"
                )
            if record[9] not in PURCHASE_TYPES:
                # A load (top-up) logs the online counter, which has no order with the
                # offline counter purchases run under: skip it, don't stop at it.
                continue
            if _logged_as(record, p):
                return done
            if int.from_bytes(record[0:2], "big") < p.counter:
                break  # an older purchase: the pending one is not in the log
        if response.sw not in (SW.OK, SW_NO_RECORD):
            log.info("0x18 read ended with %s", describe_sw(response.sw))
        return PurchaseResult(
            PurchaseStatus.NOT_CHARGED,
            None,
            None,
            p.counter,
            None,
            0,
            app_serial=serial_hex,
            terminal_serial=p.terminal_serial,
        )


class BalanceSession(_Session):
    """SELECT the e-purse (+ READ BINARY 0x15 when the FCI lacks it), GET BALANCE
    ``80 5C 00 02 04``: result status ``done`` with the balance (bit 31 dropped)."""

    def __init__(self) -> None:
        self.public_info: PublicInfo | None = None
        super().__init__()

    def _run(self) -> _Run:
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

    def _run(self) -> Generator[PurchaseStep, Answer, PublicInfo]:
        return (yield from self._select())


# --- drivers --------------------------------------------------------------------------------

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
    session: _Session,
    card: CardChannel,
    psam: PsamPurchase | None,
    before_debit: Callable[[PendingPurchase], None] | None = None,
) -> PurchaseResult:
    """:func:`drive`, with ``apdu_count`` = the card APDUs this session sent."""
    start = card.apdu_count
    result = drive(session, card, psam, before_debit)
    return replace(result, apdu_count=card.apdu_count - start)


def purchase(
    card: CardChannel,
    psam: PsamPurchase,
    amount: int,
    when: dt.datetime | None = None,
    *,
    composite: bool = True,
    trip: TripInfo | None = None,
    before_debit: Callable[[PendingPurchase], None] | None = None,
    public_info: PublicInfo | None = None,
) -> PurchaseResult:
    """Charge ``amount`` fen (composite purchase, docs/transit.md). Typed errors for a card
    without the e-purse or an answer that ends the purchase; statuses for the rest.
    ``before_debit``: see :func:`drive`; ``public_info``: see :class:`PurchaseSession`."""
    session = PurchaseSession(
        amount,
        psam.terminal_number,
        when or dt.datetime.now(),
        composite=composite,
        trip=trip,
        public_info=public_info,
    )
    return run_session(session, card, psam, before_debit)


def recover(
    card: CardChannel,
    psam: PsamPurchase,
    pending: PendingPurchase,
    *,
    public_info: PublicInfo | None = None,
) -> PurchaseResult:
    """Settle a torn purchase on the next tap of its card: ``done`` (recovered, charged once)
    or ``not_charged`` (charge again with :func:`purchase`). ``public_info``: the 0x15 of
    the e-purse just selected on this card (no SELECT then)."""
    return run_session(RecoverySession(pending, public_info), card, psam)


def read_balance(card: CardChannel) -> int:
    """The e-purse balance in fen (SELECT [+ READ BINARY 0x15] + GET BALANCE)."""
    balance = run_session(BalanceSession(), card, None).balance_before
    assert balance is not None  # BalanceSession always answers one
    return balance


def select_purse(card: CardChannel) -> PublicInfo | None:
    """SELECT the e-purse and read its file 0x15 (1 APDU, or 2 when the FCI lacks it); None
    when the card has no e-purse. The e-purse stays selected: a :func:`purchase` or
    :func:`recover` given this 0x15 as ``public_info`` goes on from there."""
    try:
        return drive(SelectSession(), card, None)
    except NoTransitApplicationError:
        return None
