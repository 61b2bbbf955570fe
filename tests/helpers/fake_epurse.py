"""Small in-test fake cards for the T-Union e-purse, built from the formats of domain.md
section 4 and the field facts of section 5b (not from the simulator: these are the card
behaviours the simulator does not have yet - FCIs without 9F0C, bit 31 set in balances,
unwritten log records that answer 23 zero bytes, plain T-Union cards without the SSC).

* :class:`TableCard` answers from a table of command -> response bytes.
* :class:`FakeEPurse` is a tiny stateful e-purse (balance, counter, logs) whose MAC2 is the
  one a PSAM with ``MASTER`` expects, so purchases and recoveries run end to end.
* :class:`EnginePsam` is the PSAM side: :class:`terminal.secure.purchase.PurchaseMacEngine`
  behind the :class:`terminal.transit.secure_module.PsamPurchase` interface.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.devices.reader import Interface
from terminal.errors import CardRemovedError
from terminal.secure.purchase import PurchaseMacEngine
from terminal.transit.macs import card_purchase_key, purchase_mac2, purchase_session_key
from terminal.transit.records import PublicInfo, PurchaseLogRecord
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict

AID = bytes.fromhex("A000000632010105")
SSSE_NAME = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
TERMINAL = "500100000042"
MASTER = bytes(range(16))
ALG = SymmetricAlgorithm.SM4
SERIAL = bytes.fromhex("31000000000000004321")
RANDOM = bytes.fromhex("11223344")
OK = b"\x90\x00"


def sw(word: int) -> bytes:
    return word.to_bytes(2, "big")


def public_info(
    serial: bytes = SERIAL,
    city: bytes = b"\x29\x00",
    start: dt.date = dt.date(2020, 1, 1),
    expiry: dt.date = dt.date(2040, 12, 31),
) -> PublicInfo:
    """File 0x15 of a Shanghai-issued (GB/T 13497 city 2900) plain T-Union card."""
    return PublicInfo(
        issuer_code=b"\x02\x90",
        city_code=city,
        industry_code=b"\x00\x01",
        issuer_rfu=b"\xff\xff",
        app_type=0x02,
        app_version=0x01,
        app_serial=serial,
        start_date=start,
        expiry_date=expiry,
        card_type=0x01,
        rfu=0x00,
    )


def tlv(tag: bytes, value: bytes) -> bytes:
    assert len(value) < 0x80
    return tag + bytes((len(value),)) + value


def real_fci(info: bytes | None) -> bytes:
    """The FCI as real cards answer it (domain.md 5b): ``6F 50 84 08 <AID> A5 44 {50 08
    "MOT_T_EP", 87 01 01, 9F08 01 02, 9F12 0F "CARD IMAGE 0001", 9F0C 1E <0x15>}``; without
    the 9F0C when ``info`` is None."""
    body = (
        tlv(b"\x50", b"MOT_T_EP")
        + tlv(b"\x87", b"\x01")
        + tlv(b"\x9f\x08", b"\x02")
        + tlv(b"\x9f\x12", b"CARD IMAGE 0001")
    )
    if info is not None:
        body += tlv(b"\x9f\x0c", info)
    return tlv(b"\x6f", tlv(b"\x84", AID) + tlv(b"\xa5", body))


def log_record(
    counter: int,
    amount: int,
    when: dt.datetime,
    kind: int = 0x09,
    terminal: str = "310100000001",
) -> bytes:
    return PurchaseLogRecord(counter, 0, amount, kind, bytes.fromhex(terminal), when).to_bytes()


class TableCard:
    """A CardConnection answering from ``table``: command hex (upper case, whole APDU or a
    prefix ending in ``*``) -> answer bytes, or a list of answers given in turn. Anything
    else answers 6D00. ``sent`` lists every command."""

    def __init__(self, table: dict[str, bytes | list[bytes]], protocol: str = "T=1") -> None:
        self.table = {k.replace(" ", "").upper(): v for k, v in table.items()}
        self.sent: list[str] = []
        self.reader = "table"
        self.atr = bytes.fromhex("3B8080010101")
        self.protocol = protocol
        self.interface = Interface.CONTACTLESS

    def transmit_raw(self, apdu: bytes) -> bytes:
        text = apdu.hex().upper()
        self.sent.append(text)
        answer = self.table.get(text)
        if answer is None:
            for key, value in self.table.items():
                if key.endswith("*") and text.startswith(key[:-1]):
                    answer = value
                    break
        if answer is None:
            return sw(0x6D00)
        if isinstance(answer, list):
            return answer.pop(0) if len(answer) > 1 else answer[0]
        return answer

    def close(self) -> None:
        pass


class FakeEPurse:
    """A stateful e-purse card (CardConnection) - the wire of docs/transit.md, with the
    field behaviours switched on by options:

    * ``fci_public_info`` False: the FCI has no 9F0C; 0x15 by ``00 B0 95 00 1E`` only.
    * ``bit31``: GET BALANCE and INITIALIZE answer the balance with bit 31 set.
    * ``empty_records`` True (real cards): records past the last answer 9000 and zeros;
      False: 6A83.
    * ``ssc_answer``: the answer to SELECT of the SSSE (6A82: a plain T-Union card).
    * ``tear_debit``: the card debits, then leaves before its answer (CardRemovedError).
    """

    def __init__(
        self,
        balance: int = 1000,
        *,
        info: PublicInfo | None = None,
        fci_public_info: bool = True,
        bit31: bool = False,
        empty_records: bool = True,
        counter: int = 0,
        log: list[bytes] | None = None,
        trips: list[bytes] | None = None,
        ssc_answer: bytes = sw(0x6A82),
    ) -> None:
        self.info = info or public_info()
        self.balance = balance
        self.counter = counter
        self.fci_public_info = fci_public_info
        self.bit31 = bit31
        self.empty_records = empty_records
        self.log = list(log or [])
        self.trips = list(trips or [])
        self.ssc_answer = ssc_answer
        self.tear_debit = False
        self.sent: list[bytes] = []
        self.selected = False
        self._init: tuple[int, int, int] | None = None  # amount, type, counter
        self._staged: bytes | None = None
        self._prove: tuple[int, int, bytes, bytes] | None = None  # type, counter+1, MAC2, TAC
        self._terminal = bytes(6)
        self.reader = "fake-epurse"
        self.atr = bytes.fromhex("3B8880010000000000000000")
        self.protocol = "T=1"
        self.interface = Interface.CONTACTLESS
        self.dpk = card_purchase_key(MASTER, self.info.issuer_id, self.info.app_serial, ALG)

    # -- the connection ------------------------------------------------------------------

    def close(self) -> None:
        self.selected = False
        self._init = None

    def transmit_raw(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        handler = self._handlers().get(apdu[:2])
        if handler is None:
            return sw(0x6D00)
        return handler(apdu)

    def _handlers(self) -> dict[bytes, Callable[[bytes], bytes]]:
        return {
            b"\x00\xa4": self._select,
            b"\x00\xb0": self._read_binary,
            b"\x00\xb2": self._read_record,
            b"\x80\x5c": self._get_balance,
            b"\x80\x50": self._initialize,
            b"\x80\xdc": self._update_cache,
            b"\x80\x54": self._debit,
            b"\x80\x5a": self._prove_command,
        }

    def _balance_bytes(self) -> bytes:
        return (self.balance | (0x80000000 if self.bit31 else 0)).to_bytes(4, "big")

    def _select(self, apdu: bytes) -> bytes:
        name = apdu[5 : 5 + apdu[4]]
        if name == SSSE_NAME:
            self.selected = False
            return self.ssc_answer
        if name != AID:
            return sw(0x6A82)
        self.selected = True
        info = self.info.to_bytes() if self.fci_public_info else None
        return real_fci(info) + OK

    def _read_binary(self, apdu: bytes) -> bytes:
        if not self.selected:
            return sw(0x6985)
        if apdu[2] != 0x95:
            return sw(0x6A82)
        return self.info.to_bytes() + OK

    def _read_record(self, apdu: bytes) -> bytes:
        if not self.selected:
            return sw(0x6985)
        number, sfi = apdu[2], apdu[3] >> 3
        records, length = {0x18: (self.log, 23), 0x1E: (self.trips, 48)}.get(sfi, (None, 0))
        if records is None:
            return sw(0x6A82)
        if 1 <= number <= len(records):
            return records[number - 1] + OK
        if self.empty_records and number <= 10:
            return bytes(length) + OK
        return sw(0x6A83)

    def _get_balance(self, apdu: bytes) -> bytes:
        return self._balance_bytes() + OK if self.selected else sw(0x6985)

    def _initialize(self, apdu: bytes) -> bytes:
        if not self.selected:
            return sw(0x6985)
        data = apdu[5 : 5 + apdu[4]]
        amount = int.from_bytes(data[1:5], "big")
        if amount > self.balance:
            return sw(0x9401)
        self._init = (amount, 0x09 if apdu[2] == 0x03 else 0x06, self.counter)
        self._terminal = data[5:11]
        return (
            self._balance_bytes()
            + self.counter.to_bytes(2, "big")
            + bytes(3)
            + b"\x01"
            + b"\x04"  # SM4
            + RANDOM
            + OK
        )

    def _update_cache(self, apdu: bytes) -> bytes:
        if self._init is None:
            return sw(0x6985)
        self._staged = apdu[5:]
        return OK

    def _debit(self, apdu: bytes) -> bytes:
        if self._init is None:
            return sw(0x6985)
        amount, kind, counter = self._init
        self._init = None
        data = apdu[5:]
        serial = int.from_bytes(data[0:4], "big")
        date, time = data[4:8], data[8:11]
        sk = purchase_session_key(self.dpk, RANDOM, counter, serial, ALG)
        mac2 = purchase_mac2(ALG, sk, amount)
        tac = b"\x7a\xc0\x00\x01"
        self.balance -= amount
        self.counter += 1
        record = (
            counter.to_bytes(2, "big")
            + bytes(3)
            + amount.to_bytes(4, "big")
            + bytes((kind,))
            + self._terminal
            + date
            + time
        )
        self.log.insert(0, record)
        if self._staged is not None:
            self.trips.insert(0, self._staged)
            self._staged = None
        self._prove = (kind, self.counter, mac2, tac)
        if self.tear_debit:
            self.tear_debit = False
            self.selected = False
            raise CardRemovedError("card left the field after DEBIT")
        return tac + mac2 + OK

    def _prove_command(self, apdu: bytes) -> bytes:
        if not self.selected:
            return sw(0x6985)
        kind, counter_after = apdu[3], int.from_bytes(apdu[5:7], "big")
        if self._prove is None or self._prove[:2] != (kind, counter_after):
            return sw(0x9406)
        return self._prove[2] + self._prove[3] + OK


class EnginePsam:
    """The PSAM of a purchase, as :class:`PurchaseMacEngine` with ``MASTER``."""

    def __init__(self, serial: int = 0) -> None:
        self.engine = PurchaseMacEngine({ALG: MASTER}, bytes.fromhex(TERMINAL), serial)
        self.terminal_number = TERMINAL

    def purchase_mac1(self, request: Mac1Request) -> Mac1Answer:
        return self.engine.mac1(request)

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict:
        return self.engine.verify_mac2(mac2, terminal_serial)
