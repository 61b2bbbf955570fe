"""A simulated T-Union (交通联合) e-purse: the transit application of a social security card.

File tree, under the MF (docs/transit.md "Files")::

    3F00 MF
     └─ 1001  e-purse ADF, DF name A000000632010105, FCI 6F .. 84 <AID> A5 .. 9F0C 1E <0x15>
         ├─ EF15  public information, transparent, SFI 15, 30 bytes, free read
         ├─ EF17  management information, transparent, SFI 17, 60 bytes, free read
         ├─ EF18  purchase log, cyclic, SFI 18, 23-byte records (record 1 = newest)
         └─ EF1E  transit process (trip) records, cyclic, SFI 1E, 48-byte records

Commands the applet answers while its ADF is selected (READ BINARY / READ RECORD / SELECT
are the card OS's):

======================================  ===========================================================
``80 5C 00 02 04``                      GET BALANCE: balance(4), fen.
``80 50 01|03 02 0B k amt(4) term(6)``  INITIALIZE FOR PURCHASE (P1 03 composite): balance(4)
                                        counter(2) overdraft(3) keyVer(1) algId(1) random(4).
                                        ``9401`` balance < amount, ``9403`` unknown key index,
                                        ``9303`` locked after :data:`MAC1_TRIES` wrong MAC1s.
``80 DC <id> F0 30 <record>``           UPDATE CAPP DATA CACHE (after a P1 03 INITIALIZE): stage
                                        the 0x1E record, written on a successful DEBIT.
``80 54 01 00 0F ser date time MAC1``   DEBIT FOR PURCHASE: MAC1 checked under the session key
                                        (``9302`` wrong, one try less, nothing debited); then
                                        debit, counter + 1, log, staged trip record; TAC(4) MAC2(4).
``80 5A 00 <type> 02 <cnt+1> 08``       GET TRANSACTION PROVE: MAC2(4) TAC(4) of the last
                                        transaction when type and counter match, else ``9406``.
======================================  ===========================================================

The balance, counter, logs and MAC1 try counter are EEPROM: they survive power-off (they are
attributes of the applet; :meth:`TUnionApplet.reset` drops only the purchase in progress).

:attr:`TUnionApplet.after_debit`, when set, is called once right after a DEBIT is committed and
before its answer leaves: tests set it to ``bridge.remove`` to model a card pulled out of the
field after it debited but before the terminal heard the answer.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from firmware_sim.cardos import Applet, CardOS
from firmware_sim.filesystem import DedicatedFile, RecordEF, TransparentEF
from terminal.apdu import CommandAPDU, ResponseAPDU
from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import TransitRecordError
from terminal.secure.keyfile import KeySet, TransitKeyName
from terminal.status import SW
from terminal.transit.purchase import (
    ALGORITHM_ID,
    DEFAULT_KEY_INDEX,
    P1_COMPOSITE,
    P1_PURCHASE,
    P2_EPURSE,
    SFI_MANAGEMENT_INFO,
    SFI_PUBLIC_INFO,
    SFI_PURCHASE_LOG,
    SFI_TRIP_RECORDS,
    SW_BLOCKED,
    SW_INSUFFICIENT_BALANCE,
    SW_KEY_INDEX_UNSUPPORTED,
    SW_MAC_INVALID,
    SW_PROVE_UNAVAILABLE,
    TUNION_AID,
    TYPE_COMPOSITE,
    TYPE_PURCHASE,
    card_purchase_key,
    mac1_input,
    purchase_mac1,
    purchase_mac2,
    purchase_session_key,
    purchase_tac,
)
from terminal.transit.records import (
    TRIP_RECORD_LENGTH,
    PublicInfo,
    PurchaseLogRecord,
    decode_bcd_date,
    decode_bcd_time,
)

TUNION_ADF_FID = 0x1001
MAC1_TRIES = 3
LOG_CAPACITY = 10
TRIP_CAPACITY = 10
MANAGEMENT_INFO_LENGTH = 60
DEFAULT_BALANCE = 5000  # fen
KEY_VERSION = 0x01

INS_GET_BALANCE = 0x5C
INS_INITIALIZE = 0x50
INS_UPDATE_CACHE = 0xDC
INS_DEBIT = 0x54
INS_PROVE = 0x5A


def _sw(sw: int) -> ResponseAPDU:
    return ResponseAPDU(b"", sw)


def _tlv(tag: bytes, value: bytes) -> bytes:
    assert len(value) < 0x80  # short form is all the FCI needs
    return tag + bytes((len(value),)) + value


def tunion_fci(public_info: bytes) -> bytes:
    """``6F L 84 08 <AID> A5 L 9F0C 1E <0x15>``: the DF name and file 0x15."""
    return _tlv(b"\x6f", _tlv(b"\x84", TUNION_AID) + _tlv(b"\xa5", _tlv(b"\x9f\x0c", public_info)))


@dataclass
class _Purchase:
    """A purchase between INITIALIZE and DEBIT (RAM)."""

    amount: int
    transaction_type: int
    terminal_number: bytes
    random: bytes
    staged: tuple[int, bytes] | None = None  # (SFI, record) from UPDATE CAPP DATA CACHE


@dataclass(frozen=True)
class _Prove:
    """What GET TRANSACTION PROVE answers for the last transaction (EEPROM)."""

    transaction_type: int
    counter_after: int
    mac2: bytes
    tac: bytes


def sample_public_info(
    app_serial: bytes,
    *,
    issuer_code: bytes = b"\x50\x00",
    city_code: bytes = b"\x50\x00",
    industry_code: bytes = b"\x00\x01",
    start: dt.date = dt.date(2020, 1, 1),
    expiry: dt.date = dt.date(2040, 12, 31),
    card_type: int = 0x01,
) -> PublicInfo:
    """File 0x15 of a sample card."""
    return PublicInfo(
        issuer_code=issuer_code,
        city_code=city_code,
        industry_code=industry_code,
        issuer_rfu=b"\xff\xff",
        app_type=0x02,  # e-purse
        app_version=0x01,
        app_serial=app_serial,
        start_date=start,
        expiry_date=expiry,
        card_type=card_type,
        rfu=0x00,
    )


class TUnionApplet(Applet):
    """The e-purse with ``balance`` fen, debited under ``purchase_key`` (the card's
    diversified DPK, 16 bytes) with ``algorithm``; ``public_info`` is file 0x15."""

    def __init__(
        self,
        balance: int,
        purchase_key: bytes,
        algorithm: SymmetricAlgorithm,
        public_info: PublicInfo,
        *,
        counter: int = 0,
        overdraft: int = 0,
        purchase_log: list[bytes] | None = None,
        trip_records: list[bytes] | None = None,
    ) -> None:
        if len(purchase_key) != 16:
            raise ValueError("the purchase key is 16 bytes")
        self.algorithm = SymmetricAlgorithm(algorithm)
        if self.algorithm not in ALGORITHM_ID:
            raise ValueError(f"no e-purse with {self.algorithm.name}")
        self.balance = balance
        self.counter = counter
        self.overdraft = overdraft
        self.public_info = public_info
        self.mac1_tries = MAC1_TRIES
        self._key = bytes(purchase_key)
        self._initial_log = list(purchase_log or [])
        self._initial_trips = list(trip_records or [])
        self._purchase: _Purchase | None = None
        self._prove: _Prove | None = None
        self.log_ef: RecordEF | None = None
        self.trip_ef: RecordEF | None = None
        self.after_debit: Callable[[], None] | None = None
        """Called once after the next committed DEBIT, before its answer (tests: tearing)."""
        self.handlers: dict[int, Callable[[CardOS, CommandAPDU], ResponseAPDU]] = {
            INS_GET_BALANCE: self._get_balance,
            INS_INITIALIZE: self._initialize,
            INS_UPDATE_CACHE: self._update_cache,
            INS_DEBIT: self._debit,
            INS_PROVE: self._prove_command,
        }

    def __repr__(self) -> str:
        return (
            f"TUnionApplet(serial={self.public_info.app_serial.hex()}, balance={self.balance}, "
            f"counter={self.counter}, algorithm={self.algorithm.name})"
        )

    def install(self, card: CardOS) -> None:
        info = self.public_info.to_bytes()
        adf = card.mf.add(DedicatedFile(TUNION_ADF_FID, name=TUNION_AID, fci=tunion_fci(info)))
        adf.add(TransparentEF(0x0015, info, sfi=SFI_PUBLIC_INFO))
        adf.add(
            TransparentEF(
                0x0017,
                b"\x01\x56\x00\x00" + self.public_info.city_code * 2 + bytes(52),
                sfi=SFI_MANAGEMENT_INFO,
            )
        )
        self.log_ef = adf.add(RecordEF(0x0018, sfi=SFI_PURCHASE_LOG, records=self._initial_log))
        self.trip_ef = adf.add(RecordEF(0x001E, sfi=SFI_TRIP_RECORDS, records=self._initial_trips))
        self.root = adf

    def reset(self) -> None:
        # A purchase in progress is RAM: power loss before DEBIT leaves nothing behind.
        self._purchase = None

    def process(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU | None:
        if cmd.cla != 0x80 or not self.is_selected(card):
            return None
        handler = self.handlers.get(cmd.ins)
        if handler is None:
            return None
        if cmd.ins != INS_UPDATE_CACHE and cmd.ins != INS_DEBIT:
            # Anything but the next purchase step abandons the purchase in progress.
            self._purchase = None
        return handler(card, cmd)

    # --- commands -------------------------------------------------------------------------

    def _get_balance(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 != 0x00 or cmd.p2 != P2_EPURSE:
            return _sw(SW.WRONG_P1P2)
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        return card.respond(cmd, self.balance.to_bytes(4, "big"))

    def _initialize(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 not in (P1_PURCHASE, P1_COMPOSITE) or cmd.p2 != P2_EPURSE:
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) != 11:
            return _sw(SW.WRONG_LENGTH)
        if self.mac1_tries == 0:
            return _sw(SW_BLOCKED)
        if cmd.data[0] != DEFAULT_KEY_INDEX:
            return _sw(SW_KEY_INDEX_UNSUPPORTED)
        amount = int.from_bytes(cmd.data[1:5], "big")
        if amount == 0:
            return _sw(SW.WRONG_DATA)
        if amount > self.balance + self.overdraft:
            return _sw(SW_INSUFFICIENT_BALANCE)
        random = secrets.token_bytes(4)
        composite = cmd.p1 == P1_COMPOSITE
        self._purchase = _Purchase(
            amount, TYPE_COMPOSITE if composite else TYPE_PURCHASE, cmd.data[5:11], random
        )
        answer = (
            self.balance.to_bytes(4, "big")
            + self.counter.to_bytes(2, "big")
            + self.overdraft.to_bytes(3, "big")
            + bytes((KEY_VERSION, ALGORITHM_ID[self.algorithm]))
            + random
        )
        return card.respond(cmd, answer)

    def _update_cache(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        purchase = self._purchase
        if purchase is None or purchase.transaction_type != TYPE_COMPOSITE:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        sfi, mode = cmd.p2 >> 3, cmd.p2 & 0b111
        if sfi != SFI_TRIP_RECORDS or mode != 0:
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) != TRIP_RECORD_LENGTH:
            return _sw(SW.WRONG_LENGTH)
        if cmd.data[0] != cmd.p1:
            return _sw(SW.WRONG_DATA)  # P1 names the record by its identifier, byte 0
        purchase.staged = (sfi, bytes(cmd.data))
        return _sw(SW.OK)

    def _debit(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 != 0x01 or cmd.p2 != 0x00:
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) != 15:
            return _sw(SW.WRONG_LENGTH)
        purchase, self._purchase = self._purchase, None  # one DEBIT per INITIALIZE
        if purchase is None:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if self.mac1_tries == 0:
            return _sw(SW_BLOCKED)
        serial = int.from_bytes(cmd.data[0:4], "big")
        date, time, mac1 = cmd.data[4:8], cmd.data[8:11], cmd.data[11:15]
        try:
            when = dt.datetime.combine(decode_bcd_date(date), decode_bcd_time(time))
        except TransitRecordError:
            return _sw(SW.WRONG_DATA)
        sk = purchase_session_key(self._key, purchase.random, self.counter, serial, self.algorithm)
        expected = purchase_mac1(
            self.algorithm,
            sk,
            mac1_input(
                purchase.amount, purchase.transaction_type, purchase.terminal_number, date, time
            ),
        )
        if not hmac.compare_digest(expected, mac1):
            self.mac1_tries -= 1
            return _sw(SW_MAC_INVALID if self.mac1_tries else SW_BLOCKED)
        self.mac1_tries = MAC1_TRIES
        # Commit: all of it happens, or (a power loss before this point) none of it.
        log = PurchaseLogRecord(
            counter=self.counter,
            overdraft=self.overdraft,
            amount=purchase.amount,
            transaction_type=purchase.transaction_type,
            terminal_number=purchase.terminal_number,
            when=when,
        ).to_bytes()
        self.balance -= purchase.amount
        self.counter = (self.counter + 1) & 0xFFFF
        assert self.log_ef is not None and self.trip_ef is not None
        _append_cyclic(self.log_ef, log, LOG_CAPACITY)
        if purchase.staged is not None:
            _append_cyclic(self.trip_ef, purchase.staged[1], TRIP_CAPACITY)
        mac2 = purchase_mac2(self.algorithm, sk, purchase.amount)
        tac = purchase_tac(
            self.algorithm,
            self._key,
            purchase.amount,
            purchase.transaction_type,
            purchase.terminal_number,
            serial,
            date,
            time,
        )
        self._prove = _Prove(purchase.transaction_type, self.counter, mac2, tac)
        hook, self.after_debit = self.after_debit, None
        if hook is not None:
            hook()
        return card.respond(cmd, tac + mac2)

    def _prove_command(self, card: CardOS, cmd: CommandAPDU) -> ResponseAPDU:
        if cmd.p1 != 0x00 or cmd.p2 not in (TYPE_PURCHASE, TYPE_COMPOSITE):
            return _sw(SW.WRONG_P1P2)
        if len(cmd.data) != 2:
            return _sw(SW.WRONG_LENGTH)
        prove = self._prove
        counter = int.from_bytes(cmd.data, "big")
        if prove is None or prove.transaction_type != cmd.p2 or prove.counter_after != counter:
            return _sw(SW_PROVE_UNAVAILABLE)
        return card.respond(cmd, prove.mac2 + prove.tac)


def _append_cyclic(ef: RecordEF, record: bytes, capacity: int) -> None:
    # A cyclic EF: record 1 is the newest; the oldest falls off when the file is full.
    ef.records.insert(0, record)
    del ef.records[capacity:]


def add_tunion(
    card: CardOS,
    keyset: KeySet | None = None,
    *,
    purchase_key: bytes | None = None,
    algorithm: SymmetricAlgorithm = SymmetricAlgorithm.DES3,
    balance: int = DEFAULT_BALANCE,
    app_serial: bytes = bytes.fromhex("50000000000000000001"),
    public_info: PublicInfo | None = None,
    counter: int = 0,
) -> TUnionApplet:
    """Install the e-purse on ``card`` (e.g. from :func:`firmware_sim.ssc_applet.build_card`).

    The card's DPK is ``purchase_key`` as given, or derived from the ``purchase`` master of
    ``algorithm`` in ``keyset`` (the PSAM's key set) and file 0x15.
    """
    info = public_info or sample_public_info(app_serial)
    if purchase_key is None:
        if keyset is None:
            raise ValueError("give the PSAM key set or the card's purchase key")
        master = keyset.key(algorithm, TransitKeyName.PURCHASE)
        if master is None:
            raise ValueError(f"the key set holds no {algorithm.name} purchase master key")
        purchase_key = card_purchase_key(master, info.issuer_id, info.app_serial, algorithm)
    return card.install(TUnionApplet(balance, purchase_key, algorithm, info, counter=counter))
