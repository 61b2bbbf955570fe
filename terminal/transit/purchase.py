"""The T-Union composite purchase (docs/transit.md), as a pure state machine over two devices.

:class:`PurchaseSession` (and :class:`RecoverySession`, the next tap after a torn purchase)
own no I/O: they are :class:`terminal.transit.session.EPurseSession` state machines whose
steps are card APDUs and requests to the secure module the purchase declares,
:class:`terminal.transit.secure_module.PsamPurchase` (a PSAM, or the software module of
:mod:`terminal.secure`). :func:`purchase` and :func:`recover` drive them over a
:class:`terminal.devices.reader.CardChannel`. The commands and every card constant are in
:mod:`terminal.transit.commands`; the MACs the PSAM and the card compute in
:mod:`terminal.transit.macs`.

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
4. ``80 DC 00 F0 30 <trip record>`` UPDATE CAPP DATA CACHE: stages the 0x1E trip record
   (a rail gate stages the 0x1A journey record, ``80 DC <id> D0 80``, instead or as well:
   :mod:`terminal.transit.ride`).
5. ``80 54 01 00 0F serial(4) date(4) time(3) MAC1(4) 08`` DEBIT FOR PURCHASE: the card checks
   MAC1, debits, logs, writes the staged trip record; answers TAC(4) MAC2(4).
6. (PSAM) ``80 72 00 00 04 MAC2`` MAC2 check.

A card gone during DEBIT ends in status ``torn`` with a :class:`PendingPurchase`; on the next
tap :func:`recover` asks ``80 5A 00 09 02 <counter+1> 08`` GET TRANSACTION PROVE and lets the
PSAM check the MAC2 it answers, so a purchase is charged exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from terminal.devices.reader import CardChannel
from terminal.errors import PendingMismatchError, TransitError, TransitRecordError
from terminal.iso7816.status_words import SW
from terminal.privacy.masking import mask_middle
from terminal.transit.commands import (
    BALANCE_LENGTH,
    DEFAULT_KEY_INDEX,
    INIT_ANSWER_LENGTH,
    MAC_LENGTH,
    PURCHASE_LOG_CAPACITY,
    PURCHASE_TYPES,
    SFI_TRIP_RECORDS,
    SW_BLOCKED,
    SW_INSUFFICIENT_BALANCE,
    SW_MAC_INVALID,
    SW_NO_RECORD,
    TAC_LENGTH,
    TYPE_COMPOSITE,
    TYPE_PURCHASE,
    check_purchase_amount,
    debit_for_purchase,
    describe_sw,
    get_balance,
    get_transaction_prove,
    initialize_for_purchase,
    read_purchase_log,
    update_capp_data_cache,
)
from terminal.transit.records import (
    PURCHASE_LOG_LENGTH,
    TERMINAL_NUMBER_LENGTH,
    PublicInfo,
    TripRecord,
    decode_balance,
    encode_bcd_date,
    encode_bcd_time,
    is_empty_record,
)
from terminal.transit.results import (
    PendingPurchase,
    PurchaseResult,
    PurchaseStatus,
    TacInput,
)
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict, PsamPurchase
from terminal.transit.session import (
    CardGone,
    CardStep,
    EPurseSession,
    Mac1Step,
    Mac2Step,
    Steps,
    command_failed,
    run_session,
)

log = logging.getLogger(__name__)

MAX_LOG_RECORDS_ON_RECOVERY = PURCHASE_LOG_CAPACITY
"""Recovery reads the purchase log newest first until a record older than the pending
purchase, an empty record, 6A83 - or the whole cyclic file (its capacity)."""


TRIP_TYPE_RIDE = TYPE_COMPOSITE
"""0x1E transaction type of a single-fare ride (bus): the composite purchase's type, 09
(unconfirmed: real metro code writes 03 at an entry and 08 for updates)."""
TRIP_TYPE_ENTRY = 0x03
"""0x1E transaction type of a rail entry, as a real metro terminal writes it."""
TRIP_TYPE_EXIT = 0x04
"""0x1E transaction type of a rail exit (the real code's comment; unconfirmed)."""


@dataclass(frozen=True)
class TripInfo:
    """What the validator writes into the 0x1E trip record besides amount, balance, time."""

    industry: int = 0x02  # bus
    line: int = 0
    station: int = 0
    operator: int = 0
    city_code: bytes = b"\x00\x00"
    acquirer_id: bytes = bytes(8)
    trip_type: int = TRIP_TYPE_RIDE

    def record(
        self, terminal_number: bytes, amount: int, balance_after: int, when: dt.datetime
    ) -> bytes:
        """The 48-byte 0x1E record of a purchase of ``amount`` at ``when``."""
        return TripRecord(
            transaction_type=self.trip_type,
            terminal_number=terminal_number,
            industry=self.industry,
            line=self.line,
            station=self.station,
            operator=self.operator,
            amount=amount,
            balance_after=balance_after,
            when=when,
            city_code=self.city_code,
            acquirer_id=self.acquirer_id,
        ).to_bytes()


@dataclass(frozen=True)
class Staged:
    """A record UPDATE CAPP DATA CACHE stages for the DEBIT to write: the file's SFI and the
    record (0x1E trip record, 0x1A journey record)."""

    sfi: int
    record: bytes


StageRecords = Callable[[int, int], Sequence[Staged]]
"""``(balance before, PSAM transaction serial) -> records to stage``: called once the card has
answered INITIALIZE and the PSAM MAC1, so the records can carry both."""


class PurchaseSession(EPurseSession[PurchaseResult]):
    """One purchase of ``amount`` fen at ``when`` by the terminal ``terminal_number`` (12
    digits, the PSAM's). ``composite`` (the default) stages records with UPDATE CAPP DATA
    CACHE - ``stage`` says which (default: the 0x1E trip record ``trip``), and may stage
    none; ``composite=False`` is the plain purchase (type 06). A composite purchase may be
    of 0 fen (a rail entry writes its record so). ``public_info``: the 0x15 of the e-purse
    the caller has just selected on this card (the validator's card path), so SELECT is not
    sent again."""

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
        stage: StageRecords | None = None,
    ) -> None:
        check_purchase_amount(amount, composite)
        self.amount = amount
        self.terminal_number = bytes.fromhex(terminal_number)
        if len(self.terminal_number) != TERMINAL_NUMBER_LENGTH:
            raise TransitError("the terminal number is 12 digits")
        self.when = when.replace(microsecond=0)
        self.composite = composite
        self.trip = trip or TripInfo()
        self.key_index = key_index
        self.selected = public_info
        self.stage = stage
        self.public_info: PublicInfo | None = None
        super().__init__()

    def _run(self) -> Steps[PurchaseResult]:
        info = yield from self._select(self.selected)
        self.public_info = info
        return (yield from self._purchase(info))

    def _staged(self, balance: int, terminal_serial: int) -> Sequence[Staged]:
        if self.stage is not None:
            return self.stage(balance, terminal_serial)
        record = self.trip.record(
            self.terminal_number, self.amount, balance - self.amount, self.when
        )
        return (Staged(SFI_TRIP_RECORDS, record),)

    def _purchase(self, info: PublicInfo) -> Steps[PurchaseResult]:
        """INITIALIZE, MAC1, the staged records, DEBIT, MAC2: the purchase once 0x15 is known."""
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
            raise command_failed("INITIALIZE FOR PURCHASE", response.sw)
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
            for staged in self._staged(balance, mac1.terminal_serial):
                name = f"UPDATE CAPP DATA CACHE 0x{staged.sfi:02X}"
                response = self._card(
                    (yield CardStep(update_capp_data_cache(staged.record, staged.sfi), name))
                )
                if response.sw != SW.OK:
                    raise command_failed(name, response.sw)
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
        if isinstance(answer, CardGone):
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
            raise command_failed("DEBIT FOR PURCHASE", response.sw)
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
            tac_input=TacInput(
                info.issuer_id,
                info.app_serial,
                kind,
                self.terminal_number,
                mac1.terminal_serial,
                self.when,
                init[10],
            ),
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


class RecoverySession(EPurseSession[PurchaseResult]):
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

    def _run(self) -> Steps[PurchaseResult]:
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
        tac_input = TacInput(
            info.issuer_id,
            p.app_serial,
            p.transaction_type,
            p.terminal_number,
            p.terminal_serial,
            p.when,
            None,  # the prove does not say; the back office tries its masters
        )
        proved_tac: str | None = None
        if response.sw == SW.OK and len(response.data) == MAC_LENGTH + TAC_LENGTH:
            mac2, tac = response.data[:4], response.data[4:]
            verdict = yield Mac2Step(mac2, p.terminal_serial)
            if verdict is Mac2Verdict.VALID:
                return replace(done, tac=tac.hex().upper(), mac2_verified=True, tac_input=tac_input)
            if verdict is Mac2Verdict.UNKNOWN:
                # The PSAM lost the session (a restart resets it): the MAC2 cannot be checked
                # here, but the TAC can be by the back office - kept if the log confirms.
                proved_tac = tac.hex().upper()
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
                if proved_tac is not None:
                    return replace(done, tac=proved_tac, tac_input=tac_input)
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
    ``before_debit``: see :func:`terminal.transit.session.drive`; ``public_info``: see
    :class:`PurchaseSession`."""
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
