"""A simulated T-Union (交通联合) e-purse: the transit application of a card.

File tree, under the MF (docs/transit.md "Files")::

    3F00 MF
     └─ 1001  e-purse ADF, DF name A000000632010105, FCI (below)
         ├─ EF15  public information, transparent, SFI 15, 30 bytes, free read
         ├─ EF17  management information, transparent, SFI 17, 60 bytes, free read
         ├─ EF18  purchase log, cyclic, SFI 18, 23-byte records (record 1 = newest)
         ├─ EF1A  rail composite records, variable length, SFI 1A, 128-byte records named
         │        by their identifier (byte 1); one by default, none with ``rail_record``
         │        off
         └─ EF1E  transit process (trip) records, cyclic, SFI 1E, 48-byte records

The FCI: ``6F .. 84 08 <AID> A5 .. 9F0C 1E <0x15>`` (this simulator's first shape), or the
real card's ``6F 50 84 08 <AID> A5 44 {50 08 "MOT_T_EP", 87 01 01, 9F08 01 02, 9F12 0F
"CARD IMAGE 0001", 9F0C 1E <0x15>}`` (``fci_label``); either without 9F0C when
``fci_public_info`` is off, and a terminal reads 0x15 with ``00 B0 95 00 1E``.

Commands the applet answers while its ADF is selected (READ BINARY / READ RECORD / SELECT
are the card OS's):

======================================  ===========================================================
``80 5C 00 02 04``                      GET BALANCE: balance(4), fen (bit 31 set on a card with
                                        ``balance_bit31``: garbage, not money).
``80 50 01|03 02 0B k amt(4) term(6)``  INITIALIZE FOR PURCHASE (P1 03 composite): balance(4)
                                        counter(2) overdraft(3) keyVer(1) algId(1) random(4).
                                        ``9401`` balance < amount (the overdraft limit is only
                                        reported: this e-purse never goes below zero),
                                        ``9403`` unknown key index
                                        (or no purchase key), ``9303`` locked after
                                        :data:`MAC1_TRIES` wrong MAC1s.
``80 DC <id> D0 80 <128 bytes>``        UPDATE CAPP DATA CACHE of 0x1A (after a P1 03
                                        INITIALIZE, else ``6985``): stage the record whose
                                        identifier is P1 = byte 1 (``6A83`` no such record,
                                        ``6A80`` byte 1 is not P1, ``6700`` Lc not 80).
``80 DC 00 F0 30 <48 bytes>``           UPDATE CAPP DATA CACHE of 0x1E: stage a trip record
                                        (P1 not 00 ``6A86``, Lc not 30 ``6700``). One staged
                                        record per file, a second replaces it; other P2 ``6A86``.
``80 54 01 00 0F ser date time MAC1``   DEBIT FOR PURCHASE: MAC1 checked under the session key
                                        (``9302`` wrong, one try less, nothing debited); then
                                        debit, counter + 1, log and the staged records, all at
                                        once; TAC(4) MAC2(4).
``80 5A 00 <type> 02 <cnt+1> 08``       GET TRANSACTION PROVE: MAC2(4) TAC(4) of the last
                                        transaction when type and counter match, else ``9406``.
``00 84 00 00 04``                      GET CHALLENGE, 4 bytes (other lengths: the card OS's).
``84 1E 00 00|01 04 MAC(4)``            APPLICATION BLOCK, temporary (00) or permanent (01):
                                        MAC of ``84 1E 00 P2 04`` (ISO 9797-1 padding 2) with
                                        initial value challenge || 00.. under the DAMK. Then,
                                        for good: SELECT answers the FCI with ``6283``, GET
                                        BALANCE and INITIALIZE ``9303``; reads still work.
                                        ``6984`` no challenge (each serves one command),
                                        ``6988`` wrong MAC, ``6A86`` P1 not 00 / P2 not 00-01,
                                        ``6700`` Lc not 4, ``6A88`` no maintenance key.
======================================  ===========================================================

The balance, counter, logs, records, block state and MAC1 try counter are EEPROM: they
survive power-off (they are attributes of the applet and its files;
:meth:`TUnionApplet.reset` drops only the purchase in progress).

:attr:`TUnionApplet.after_debit`, when set, is called once right after a DEBIT is committed and
before its answer leaves: tests set it to ``bridge.remove`` to model a card pulled out of the
field after it debited but before the terminal heard the answer.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_sim import crypto
from firmware_sim.apdu import Command, Response, status
from firmware_sim.cardos import Applet, CardOS
from firmware_sim.filesystem import DedicatedFile, RecordEF, TransparentEF
from firmware_sim.keys import MasterKeys
from firmware_sim.profile import TUnionSettings, sample_public_info
from firmware_sim.spec import iso7816, tunion
from firmware_sim.spec.status import SW
from firmware_sim.spec.tunion import (
    LOG_CAPACITY,
    MANAGEMENT_INFO,
    PUBLIC_INFO,
    PURCHASE_LOG,
    RAIL_RECORDS,
    TRIP_CAPACITY,
    TRIP_RECORDS,
    TUNION_ADF_FID,
    TUNION_AID,
    Ins,
    PublicInfo,
)
from firmware_sim.tlv import fci, tlv

MAC1_TRIES = 3
DEFAULT_BALANCE = 5000  # fen
DEFAULT_APP_SERIAL = bytes.fromhex("50000000000000000001")
COUNTRY_CODE = b"\x01\x56\x00\x00"  # 0x17: country 156 (China)


def tunion_fci(public_info: bytes | None, *, label: bool = False) -> bytes:
    """The e-purse FCI: ``6F L 84 08 <AID> A5 L [..label..] [9F0C 1E <0x15>]``.

    ``public_info`` None leaves 9F0C out; ``label`` adds the tags real cards carry before it
    (50 "MOT_T_EP", 87 priority, 9F08 version, 9F12 preferred name).
    """
    proprietary = b""
    if label:
        proprietary += tlv(tunion.TAG_APPLICATION_LABEL, tunion.TUNION_LABEL)
        proprietary += tlv(tunion.TAG_PRIORITY_INDICATOR, b"\x01")
        proprietary += tlv(tunion.TAG_APPLICATION_VERSION, b"\x02")
        proprietary += tlv(tunion.TAG_PREFERRED_NAME, tunion.PREFERRED_NAME)
    if public_info is not None:
        proprietary += tlv(iso7816.TAG_ISSUER_DISCRETIONARY, public_info)
    return fci(TUNION_AID, proprietary)


@dataclass
class _Purchase:
    """A purchase between INITIALIZE and DEBIT (RAM)."""

    amount: int
    transaction_type: int
    terminal_number: bytes
    random: bytes
    staged: dict[int, bytes] = field(default_factory=dict)
    """SFI -> the record UPDATE CAPP DATA CACHE staged for that file (one per file)."""


@dataclass(frozen=True)
class _Prove:
    """What GET TRANSACTION PROVE answers for the last transaction (EEPROM)."""

    transaction_type: int
    counter_after: int
    mac2: bytes
    tac: bytes


class TUnionApplet(Applet):
    """The e-purse with ``balance`` fen, debited under ``purchase_key`` (the card's
    diversified DPK, 16 bytes; None: INITIALIZE answers 9403) with ``algorithm`` (the card
    algorithm flag: 1 3DES, 3 SM4); ``public_info`` is file 0x15.

    ``tac_key``: the card's separate TAC key DTK (16 bytes, the ``separate-master`` scheme);
    None makes the TAC under the DPK diversified by "TAC" (``dpk-variant``, the project's
    convention) - which real cards do is not confirmed (docs/transit.md).

    Options imitating real cards: ``balance_bit31`` (bit 31 of the answered balance set),
    ``fci_public_info`` (0x15 in the FCI), ``fci_label`` (the real FCI's tags),
    ``empty_log_records`` (all-zero records after ``purchase_log`` in 0x18).

    File 0x1A: ``rail_record`` False leaves it out; otherwise it holds one record,
    ``rail_record_data`` (128 bytes as another operator wrote them, or corrupt ones: its
    byte 1 is its identifier) or a fresh one with ``rail_record_id``.
    ``maintenance_key``: the card's DAMK (16 bytes) APPLICATION BLOCK's MAC is made under;
    None: the card refuses the command (``6A88``).
    """

    def __init__(
        self,
        balance: int,
        purchase_key: bytes | None,
        algorithm: int,
        public_info: PublicInfo,
        *,
        counter: int = 0,
        overdraft: int = 0,
        purchase_log: list[bytes] | None = None,
        trip_records: list[bytes] | None = None,
        balance_bit31: bool = False,
        fci_public_info: bool = True,
        fci_label: bool = False,
        empty_log_records: int = 0,
        tac_key: bytes | None = None,
        maintenance_key: bytes | None = None,
        rail_record: bool = True,
        rail_record_id: int = tunion.DEFAULT_RAIL_RECORD_ID,
        rail_record_data: bytes | None = None,
    ) -> None:
        if purchase_key is not None and len(purchase_key) != 16:
            raise ValueError("the purchase key is 16 bytes")
        if tac_key is not None and len(tac_key) != 16:
            raise ValueError("the TAC key is 16 bytes")
        if maintenance_key is not None and len(maintenance_key) != 16:
            raise ValueError("the maintenance key is 16 bytes")
        if rail_record_data is not None:
            if not rail_record:
                raise ValueError("rail record data for a card without file 0x1A")
            if len(rail_record_data) != RAIL_RECORDS.length:
                raise ValueError(f"a 0x1A record is {RAIL_RECORDS.length} bytes")
        if int(algorithm) not in tunion.ALGORITHM_ID_OF_FLAG:
            raise ValueError(f"no e-purse with algorithm {algorithm!r} (1 3DES, 3 SM4)")
        if not 0 <= balance <= tunion.BALANCE_MASK:
            raise ValueError(f"balance {balance} does not fit 31 bits")
        self.algorithm = int(algorithm)
        self.balance = balance
        """The true balance, fen; the answers may carry bit 31 on top (``balance_bit31``)."""
        self.counter = counter
        self.overdraft = overdraft
        self.public_info = public_info
        self.balance_bit31 = balance_bit31
        self.fci_public_info = fci_public_info
        self.fci_label = fci_label
        self.mac1_tries = MAC1_TRIES
        self._key = None if purchase_key is None else bytes(purchase_key)
        self._tac_key = None if tac_key is None else bytes(tac_key)
        log = list(purchase_log or []) + [tunion.EMPTY_LOG_RECORD] * empty_log_records
        self._log_capacity = max(LOG_CAPACITY, len(log))
        self._initial_log = log
        self._initial_trips = list(trip_records or [])
        self._initial_rail: list[bytes] | None = None
        if rail_record:
            data = rail_record_data or tunion.fresh_rail_record(rail_record_id)
            self._initial_rail = [bytes(data)]
        self._maintenance_key = None if maintenance_key is None else bytes(maintenance_key)
        self.blocked: int | None = None
        """None, or how APPLICATION BLOCK blocked the application (EEPROM):
        :data:`tunion.BLOCK_TEMPORARY` or :data:`tunion.BLOCK_PERMANENT`."""
        self._purchase: _Purchase | None = None
        self._prove: _Prove | None = None
        self.log_ef: RecordEF | None = None
        self.trip_ef: RecordEF | None = None
        self.rail_ef: RecordEF | None = None
        self.after_debit: Callable[[], None] | None = None
        """Called once after the next committed DEBIT, before its answer (tests: tearing)."""
        self.handlers: dict[int, Callable[[CardOS, Command], Response]] = {
            Ins.GET_BALANCE: self._get_balance,
            Ins.INITIALIZE: self._initialize,
            Ins.UPDATE_CAPP_DATA_CACHE: self._update_cache,
            Ins.DEBIT_FOR_PURCHASE: self._debit,
            Ins.GET_TRANSACTION_PROVE: self._prove_command,
        }

    def __repr__(self) -> str:
        return (
            f"TUnionApplet(serial={self.public_info.app_serial.hex()}, balance={self.balance}, "
            f"counter={self.counter}, algorithm={self.algorithm})"
        )

    def install(self, card: CardOS) -> None:
        info = self.public_info.to_bytes()
        fci = tunion_fci(info if self.fci_public_info else None, label=self.fci_label)
        adf = card.mf.add(DedicatedFile(TUNION_ADF_FID, name=TUNION_AID, fci=fci))
        adf.add(TransparentEF(PUBLIC_INFO.fid, info, sfi=PUBLIC_INFO.sfi))
        management = COUNTRY_CODE + self.public_info.city_code * 2
        management += bytes(MANAGEMENT_INFO.length - len(management))
        adf.add(TransparentEF(MANAGEMENT_INFO.fid, management, sfi=MANAGEMENT_INFO.sfi))
        self.log_ef = adf.add(
            RecordEF(PURCHASE_LOG.fid, sfi=PURCHASE_LOG.sfi, records=self._initial_log)
        )
        if self._initial_rail is not None:
            self.rail_ef = adf.add(
                RecordEF(RAIL_RECORDS.fid, sfi=RAIL_RECORDS.sfi, records=self._initial_rail)
            )
        self.trip_ef = adf.add(
            RecordEF(TRIP_RECORDS.fid, sfi=TRIP_RECORDS.sfi, records=self._initial_trips)
        )
        self.root = adf

    def reset(self) -> None:
        # A purchase in progress is RAM: power loss before DEBIT leaves nothing behind.
        self._purchase = None

    def process(self, card: CardOS, cmd: Command) -> Response | None:
        if not self.is_selected(card):
            return None
        if cmd.cla == iso7816.CLA_INTERINDUSTRY and cmd.ins == iso7816.Ins.GET_CHALLENGE:
            return self._get_challenge(card, cmd)
        if cmd.cla == tunion.CLA_SECURE_MESSAGING and cmd.ins == tunion.INS_APPLICATION_BLOCK:
            # The one secure-messaging command; any other in class 84 stays the OS's 6E00.
            self._purchase = None
            return self._application_block(card, cmd)
        if cmd.cla != iso7816.CLA_PROPRIETARY:
            return None
        handler = self.handlers.get(cmd.ins)
        if handler is None:
            self._purchase = None
            return status(SW.INS_NOT_SUPPORTED)  # class 80 is the e-purse's own
        if cmd.ins not in (Ins.UPDATE_CAPP_DATA_CACHE, Ins.DEBIT_FOR_PURCHASE):
            # Anything but the next purchase step abandons the purchase in progress.
            self._purchase = None
        return handler(card, cmd)

    def _answered_balance(self) -> bytes:
        garbage = tunion.BALANCE_GARBAGE_BIT if self.balance_bit31 else 0
        return (self.balance | garbage).to_bytes(tunion.BALANCE_LENGTH, "big")

    # --- commands -------------------------------------------------------------------------

    def _get_balance(self, card: CardOS, cmd: Command) -> Response:
        """``80 5C 00 02 04``."""
        if cmd.p1 != 0x00 or cmd.p2 != tunion.P2_EPURSE:
            return status(SW.INCORRECT_P1_P2)
        if cmd.data:
            return status(SW.WRONG_LENGTH)
        if self.blocked is not None:
            return status(SW.APPLICATION_LOCKED)
        return card.respond(cmd, self._answered_balance())

    def _initialize(self, card: CardOS, cmd: Command) -> Response:
        """``80 50 01|03 02 0B keyIdx amount(4) terminal(6) [0F]``."""
        if cmd.p1 not in tunion.TRANSACTION_TYPE or cmd.p2 != tunion.P2_EPURSE:
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != tunion.INITIALIZE_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        if self.mac1_tries == 0 or self.blocked is not None:
            return status(SW.APPLICATION_LOCKED)
        if cmd.data[0] != tunion.KEY_INDEX or self._key is None:
            return status(SW.KEY_INDEX_NOT_SUPPORTED)
        amount = int.from_bytes(cmd.data[1:5], "big")
        if amount == 0 and cmd.p1 != tunion.P1_COMPOSITE:
            # A composite purchase of 0 is how a metro entry writes its record (the real
            # BOM code sends amount 0 with P1 03); a plain purchase of nothing is not one.
            return status(SW.INCORRECT_DATA)
        if amount > self.balance:
            # docs/transit.md: 9401 when amount > balance. The overdraft limit is reported
            # in the answer and the log, never spent: the balance stays a 31-bit count.
            return status(SW.INSUFFICIENT_BALANCE)
        random = secrets.token_bytes(4)
        transaction_type = tunion.TRANSACTION_TYPE[cmd.p1]
        self._purchase = _Purchase(amount, transaction_type, cmd.data[5:11], random)
        answer = (
            self._answered_balance()
            + self.counter.to_bytes(2, "big")
            + self.overdraft.to_bytes(3, "big")
            + bytes((tunion.KEY_VERSION, tunion.ALGORITHM_ID_OF_FLAG[self.algorithm]))
            + random
        )
        return card.respond(cmd, answer)

    def _update_cache(self, card: CardOS, cmd: Command) -> Response:
        """Stage a record of a composite purchase (P2 = SFI << 3), written by DEBIT:
        ``80 DC <record id> D0 80 <128 bytes>`` the 0x1A record with that identifier (byte
        1), ``80 DC 00 F0 30 <48 bytes>`` a 0x1E trip record. A second one for the same
        file replaces the first."""
        purchase = self._purchase
        if purchase is None or purchase.transaction_type != tunion.TYPE_COMPOSITE:
            return status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        ref = tunion.CACHE_FILES.get(cmd.p2)
        if ref is None:
            return status(SW.INCORRECT_P1_P2)
        if ref is TRIP_RECORDS and cmd.p1 != tunion.CACHE_P1_CYCLIC:
            return status(SW.INCORRECT_P1_P2)  # a cyclic file has no record identifiers
        if ref is RAIL_RECORDS and self.rail_ef is None:
            return status(SW.FILE_NOT_FOUND)
        if len(cmd.data) != ref.length:
            return status(SW.WRONG_LENGTH)
        if ref is RAIL_RECORDS:
            if self._rail_index(cmd.p1) is None:
                return status(SW.RECORD_NOT_FOUND)
            if cmd.data[tunion.RAIL_RECORD_ID_OFFSET] != cmd.p1:
                return status(SW.INCORRECT_DATA)  # P1 names the record: byte 1 must agree
        purchase.staged[ref.sfi] = bytes(cmd.data)
        return status(SW.NORMAL_PROCESSING)

    def _rail_index(self, record_id: int) -> int | None:
        """The index in 0x1A of the record with identifier ``record_id`` (byte 1)."""
        if self.rail_ef is None:
            return None
        for index, record in enumerate(self.rail_ef.records):
            if len(record) > tunion.RAIL_RECORD_ID_OFFSET and record[1] == record_id:
                return index
        return None

    def _debit(self, card: CardOS, cmd: Command) -> Response:
        """``80 54 01 00 0F serial(4) date(4) time(3) MAC1(4) [08]``."""
        if (cmd.p1, cmd.p2) != (tunion.DEBIT_P1, tunion.DEBIT_P2):
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != tunion.DEBIT_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        purchase, self._purchase = self._purchase, None  # one DEBIT per INITIALIZE
        if purchase is None or self._key is None:
            return status(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
        if self.mac1_tries == 0:
            return status(SW.APPLICATION_LOCKED)
        serial = int.from_bytes(cmd.data[0:4], "big")
        date, time, mac1 = cmd.data[4:8], cmd.data[8:11], cmd.data[11:15]
        if not (tunion.is_bcd_date(date) and tunion.is_bcd_time(time)):
            return status(SW.INCORRECT_DATA)
        if purchase.amount > self.balance:  # INITIALIZE checked it; the balance never goes below 0
            return status(SW.INSUFFICIENT_BALANCE)
        alg = self.algorithm
        sk = crypto.purchase_session_key(alg, self._key, purchase.random, self.counter, serial)
        expected = crypto.mac1(
            alg,
            sk,
            purchase.amount,
            purchase.transaction_type,
            purchase.terminal_number,
            date,
            time,
        )
        if not hmac.compare_digest(expected, mac1):
            self.mac1_tries -= 1
            return status(SW.MAC_INVALID if self.mac1_tries else SW.APPLICATION_LOCKED)
        self.mac1_tries = MAC1_TRIES
        # Commit: all of it happens, or (a power loss before this point) none of it.
        log = tunion.purchase_log_record(
            self.counter,
            self.overdraft,
            purchase.amount,
            purchase.transaction_type,
            purchase.terminal_number,
            date,
            time,
        )
        self.balance -= purchase.amount
        self.counter = (self.counter + 1) & 0xFFFF
        assert self.log_ef is not None and self.trip_ef is not None
        _append_cyclic(self.log_ef, log, self._log_capacity)
        rail = purchase.staged.get(RAIL_RECORDS.sfi)
        if rail is not None:
            index = self._rail_index(rail[tunion.RAIL_RECORD_ID_OFFSET])
            assert self.rail_ef is not None and index is not None, "checked when staged"
            self.rail_ef.records[index] = rail
        trip = purchase.staged.get(TRIP_RECORDS.sfi)
        if trip is not None:
            _append_cyclic(self.trip_ef, trip, TRIP_CAPACITY)
        mac2 = crypto.mac2(alg, sk, purchase.amount)
        tac = crypto.tac(
            alg,
            self._key,
            purchase.amount,
            purchase.transaction_type,
            purchase.terminal_number,
            serial,
            date,
            time,
            dtk=self._tac_key,
        )
        self._prove = _Prove(purchase.transaction_type, self.counter, mac2, tac)
        hook, self.after_debit = self.after_debit, None
        if hook is not None:
            hook()
        return card.respond(cmd, tac + mac2)

    def _get_challenge(self, card: CardOS, cmd: Command) -> Response | None:
        """``00 84 00 00 04``: 4 random bytes for APPLICATION BLOCK (PBOC); other lengths
        are the card OS's (its ``challenge_lengths``)."""
        if cmd.p1 or cmd.p2 or cmd.data or cmd.le != tunion.EPURSE_CHALLENGE_LENGTH:
            return None
        card.last_challenge = secrets.token_bytes(tunion.EPURSE_CHALLENGE_LENGTH)
        return Response(card.last_challenge, SW.NORMAL_PROCESSING)

    def _application_block(self, card: CardOS, cmd: Command) -> Response:
        """``84 1E 00 <00|01> 04 MAC(4)``: block the application, temporarily (P2 00) or
        for good (01). The MAC covers the header ``84 1E 00 P2 04`` padded with ISO 9797-1
        method 2, initial value the last challenge || zeros, under the DAMK."""
        if cmd.p1 != 0x00 or cmd.p2 not in (tunion.BLOCK_TEMPORARY, tunion.BLOCK_PERMANENT):
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != tunion.BLOCK_MAC_LENGTH:
            return status(SW.WRONG_LENGTH)
        challenge = card.take_challenge()  # one command per challenge, right or wrong
        if challenge is None:
            return status(SW.REFERENCED_DATA_INVALIDATED)
        if self._maintenance_key is None:
            return status(SW.REFERENCED_DATA_NOT_FOUND)
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data)))
        expected = crypto.application_block_mac(
            self.algorithm, self._maintenance_key, challenge, header
        )
        if not hmac.compare_digest(expected, cmd.data):
            return status(SW.SECURE_MESSAGING_DATA_INCORRECT)
        if self.blocked != tunion.BLOCK_PERMANENT:  # a permanent block stays permanent
            self.blocked = cmd.p2
        assert self.root is not None
        self.root.invalidated = True
        return status(SW.NORMAL_PROCESSING)

    def _prove_command(self, card: CardOS, cmd: Command) -> Response:
        """``80 5A 00 <06|09> 02 <counter + 1> [08]``."""
        if cmd.p1 != 0x00 or cmd.p2 not in tunion.TRANSACTION_TYPE.values():
            return status(SW.INCORRECT_P1_P2)
        if len(cmd.data) != tunion.PROVE_DATA_LENGTH:
            return status(SW.WRONG_LENGTH)
        prove = self._prove
        counter = int.from_bytes(cmd.data, "big")
        if prove is None or prove.transaction_type != cmd.p2 or prove.counter_after != counter:
            return status(SW.MAC_NOT_AVAILABLE)
        return card.respond(cmd, prove.mac2 + prove.tac)


def _append_cyclic(ef: RecordEF, record: bytes, capacity: int) -> None:
    # A cyclic EF: record 1 is the newest; the oldest falls off when the file is full.
    ef.records.insert(0, record)
    del ef.records[capacity:]


def add_tunion(
    card: CardOS,
    keyset: object | None = None,
    *,
    purchase_key: bytes | None = None,
    algorithm: int = crypto.DES3,
    balance: int = DEFAULT_BALANCE,
    app_serial: bytes = DEFAULT_APP_SERIAL,
    public_info: PublicInfo | None = None,
    counter: int = 0,
    tac_scheme: str = tunion.TAC_SCHEME_DPK_VARIANT,
    tac_master: bytes | None = None,
    rail_record_id: int = tunion.DEFAULT_RAIL_RECORD_ID,
    **options: object,
) -> TUnionApplet:
    """Install the e-purse on ``card`` (e.g. from :func:`firmware_sim.ssc_applet.build_card`).

    The card's DPK is ``purchase_key`` as given, or derived from the ``purchase`` master of
    ``algorithm`` in ``keyset`` (:class:`MasterKeys`, or a key set of the terminal's shape)
    and file 0x15. ``tac_scheme`` says how its TAC key is made (:data:`tunion.TAC_SCHEMES`):
    ``dpk-variant`` from the DPK, ``separate-master`` a DTK diversified from ``tac_master``
    (or given as the ``tac_key`` option). ``options`` are the :class:`TUnionApplet` keyword
    options (``balance_bit31``, ``fci_public_info``, ``fci_label``, ``purchase_log``,
    ``empty_log_records``, ``overdraft``, ``tac_key``, ``maintenance_key``,
    ``rail_record``, ``rail_record_data``). The maintenance key DAMK is the
    ``maintenance_key`` option, or derived from the key set's ``maintenance`` master when it
    has one (none: the card refuses APPLICATION BLOCK). ``rail_record_id`` is the
    identifier of the fresh 0x1A record.
    """
    info = public_info or sample_public_info(app_serial)
    if options.get("maintenance_key") is None and keyset is not None:
        mamk = MasterKeys.coerce(keyset).maintenance_master(algorithm)
        if mamk is not None:
            options["maintenance_key"] = crypto.maintenance_key(
                algorithm, mamk, info.issuer_id, info.app_serial
            )
    if purchase_key is None:
        if keyset is None:
            raise ValueError("give the PSAM key set or the card's purchase key")
        master = MasterKeys.coerce(keyset).purchase_master(algorithm)
        if master is None:
            raise ValueError(f"the key set holds no purchase master key of algorithm {algorithm}")
        purchase_key = crypto.purchase_key(algorithm, master, info.issuer_id, info.app_serial)
    if tac_scheme == tunion.TAC_SCHEME_SEPARATE_MASTER:
        if options.get("tac_key") is None:
            if tac_master is None:
                raise ValueError("the separate-master TAC scheme needs the TAC master or key")
            dtk = crypto.tac_card_key(algorithm, tac_master, info.issuer_id, info.app_serial)
            options["tac_key"] = dtk
    elif tac_scheme == tunion.TAC_SCHEME_DPK_VARIANT:
        if tac_master is not None or options.get("tac_key") is not None:
            raise ValueError("a TAC master or key is for the separate-master TAC scheme")
    else:
        raise ValueError(f"unknown TAC key scheme {tac_scheme!r} (one of {tunion.TAC_SCHEMES})")
    applet = TUnionApplet(
        balance,
        purchase_key,
        algorithm,
        info,
        counter=counter,
        rail_record_id=rail_record_id,
        **options,  # type: ignore[arg-type]
    )
    return card.install(applet)


def install_from_profile(card: CardOS, settings: TUnionSettings) -> TUnionApplet:
    """Install the e-purse a profile's ``[tunion]`` table describes."""
    applet = TUnionApplet(
        settings.balance,
        settings.purchase_key,
        settings.algorithm,
        settings.public_info,
        counter=settings.counter,
        overdraft=settings.overdraft,
        purchase_log=list(settings.purchase_log),
        balance_bit31=settings.balance_bit31,
        fci_public_info=settings.fci_public_info,
        fci_label=settings.fci_label,
        empty_log_records=settings.empty_log_records,
        tac_key=settings.tac_key,
        maintenance_key=settings.maintenance_key,
        rail_record=settings.rail_record,
        rail_record_id=settings.rail_record_id,
        rail_record_data=settings.rail_record_data,
    )
    return card.install(applet)
