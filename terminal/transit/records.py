"""Pure parsers (and encoders) of the T-Union e-purse files, docs/transit.md "Files".

* the SELECT FCI: :func:`parse_purse_fci` (:class:`PurseFci`); most cards answer file 0x15
  inside it, tag ``9F0C``, which saves the terminal a READ BINARY - but not all do
  (domain.md 5b), so its absence is a value (``public_info`` None), not an error.
* 0x15 public information, 30 bytes: :class:`PublicInfo` (:func:`decode_public_info`).
* the balance of GET BALANCE and INITIALIZE: :func:`decode_balance` (bit 31 dropped).
* 0x18 purchase log, cyclic, 23-byte records: :class:`PurchaseLogRecord`.
* 0x1E transit process (trip) records, cyclic, 48 bytes: :class:`TripRecord`.
* an unwritten record of a cyclic file answers ``9000`` with zero bytes:
  :func:`is_empty_record` (the end of the log, not a malformed record).

Every decoder takes bytes from the card and raises :class:`TransitRecordError` (a
:class:`terminal.errors.ParseError`) and nothing else on bytes that do not fit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from terminal.errors import TlvError, TransitRecordError
from terminal.iso7816.tlv import parse_ber_tlv
from terminal.transit.commands import TUNION_AID

PUBLIC_INFO_LENGTH = 30
PURCHASE_LOG_LENGTH = 23
TRIP_RECORD_LENGTH = 48
ISSUER_ID_LENGTH = 8
APP_SERIAL_LENGTH = 10
TERMINAL_NUMBER_LENGTH = 6
FCI_TEMPLATE_TAG = 0x6F
FCI_DF_NAME_TAG = 0x84
FCI_LABEL_TAG = 0x50
FCI_PUBLIC_INFO_TAG = 0x9F0C
BALANCE_MASK = 0x7FFFFFFF
"""GET BALANCE and INITIALIZE answer 4 bytes, but only the low 31 bits are the balance:
real cards set bit 31 (Metrodroid: "upper bit is some garbage"; nfcard and NFSee mask it
too). Read whole, a balance of 50 yuan would show as 21 million."""


def _bytes(data: object, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TransitRecordError(f"{what} must be bytes")
    return bytes(data)


# --- BCD dates and times --------------------------------------------------------------------


def encode_bcd_date(day: dt.date) -> bytes:
    """``YYYYMMDD`` as 4 BCD bytes."""
    return bytes.fromhex(f"{day.year:04d}{day.month:02d}{day.day:02d}")


def encode_bcd_time(when: dt.time | dt.datetime) -> bytes:
    """``HHMMSS`` as 3 BCD bytes."""
    return bytes.fromhex(f"{when.hour:02d}{when.minute:02d}{when.second:02d}")


def decode_bcd_date(raw: bytes, what: str = "date") -> dt.date:
    """4 BCD bytes ``YYYYMMDD``; anything else (non-BCD, impossible day) is an error."""
    digits = _bytes(raw, what).hex()
    if len(raw) != 4 or not digits.isdigit():
        raise TransitRecordError(f"{what} {digits.upper()} is not a BCD date")
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise TransitRecordError(f"{what} {digits} is no calendar date") from None


def decode_bcd_time(raw: bytes, what: str = "time") -> dt.time:
    """3 BCD bytes ``HHMMSS``."""
    digits = _bytes(raw, what).hex()
    if len(raw) != 3 or not digits.isdigit():
        raise TransitRecordError(f"{what} {digits.upper()} is not a BCD time")
    try:
        return dt.time(int(digits[:2]), int(digits[2:4]), int(digits[4:]))
    except ValueError:
        raise TransitRecordError(f"{what} {digits} is no time of day") from None


# --- 0x15 public information ----------------------------------------------------------------


@dataclass(frozen=True)
class PublicInfo:
    """File 0x15 (offsets in docs/transit.md)."""

    issuer_code: bytes  # 0-1
    city_code: bytes  # 2-3
    industry_code: bytes  # 4-5
    issuer_rfu: bytes  # 6-7
    app_type: int  # 8
    app_version: int  # 9
    app_serial: bytes  # 10-19
    start_date: dt.date  # 20-23
    expiry_date: dt.date  # 24-27
    card_type: int  # 28
    rfu: int  # 29

    @property
    def issuer_id(self) -> bytes:
        """Bytes 0-7: the first diversification level of the purchase key."""
        return self.issuer_code + self.city_code + self.industry_code + self.issuer_rfu

    @property
    def serial_low8(self) -> bytes:
        """The low 8 bytes of the application serial: the second diversification level."""
        return self.app_serial[2:]

    def valid_on(self, day: dt.date) -> bool:
        return self.start_date <= day <= self.expiry_date

    def to_bytes(self) -> bytes:
        return (
            self.issuer_id
            + bytes((self.app_type, self.app_version))
            + self.app_serial
            + encode_bcd_date(self.start_date)
            + encode_bcd_date(self.expiry_date)
            + bytes((self.card_type, self.rfu))
        )


def decode_public_info(raw: bytes) -> PublicInfo:
    """File 0x15, exactly 30 bytes."""
    raw = _bytes(raw, "0x15 public information")
    if len(raw) != PUBLIC_INFO_LENGTH:
        raise TransitRecordError(f"0x15 public information has {len(raw)} bytes, not 30")
    return PublicInfo(
        issuer_code=raw[0:2],
        city_code=raw[2:4],
        industry_code=raw[4:6],
        issuer_rfu=raw[6:8],
        app_type=raw[8],
        app_version=raw[9],
        app_serial=raw[10:20],
        start_date=decode_bcd_date(raw[20:24], "0x15 start date"),
        expiry_date=decode_bcd_date(raw[24:28], "0x15 expiry date"),
        card_type=raw[28],
        rfu=raw[29],
    )


@dataclass(frozen=True)
class PurseFci:
    """What the e-purse's SELECT FCI says: ``6F L 84 08 <AID> A5 L {50 "MOT_T_EP", 87 ..,
    9F08 .., 9F12 .., 9F0C 1E <file 0x15>}`` on real cards (domain.md 5b); every part may
    be missing but the template."""

    df_name: bytes | None
    label: str | None
    """Tag 50, the application label (``MOT_T_EP``), when present."""
    public_info: PublicInfo | None
    """File 0x15 from tag 9F0C; None when the card does not answer it there (absent, or not
    30 bytes): read it with READ BINARY."""


def parse_purse_fci(fci: bytes) -> PurseFci:
    """The e-purse FCI. An empty answer is an FCI with nothing in it; bytes that are not a
    ``6F`` template, or a DF name other than the T-Union AID, are a :class:`TransitRecordError`
    (the card selected something that is not the e-purse). A ``9F0C`` of 30 bytes must
    decode as file 0x15."""
    raw = _bytes(fci, "FCI")
    if not raw:
        return PurseFci(None, None, None)
    try:
        objects = parse_ber_tlv(raw)
    except TlvError as exc:
        raise TransitRecordError(f"e-purse FCI: {exc.reason}") from None
    if not objects or objects[0].tag != FCI_TEMPLATE_TAG or not objects[0].constructed:
        # The first byte and the length only: the FCI carries the application serial, and
        # this reason is logged.
        raise TransitRecordError(
            f"e-purse FCI does not open with a 6F template: {raw[:1].hex().upper()}.. "
            f"({len(raw)} bytes)"
        )
    template = objects[0]
    name = template.find(FCI_DF_NAME_TAG)
    if name is not None and name.value != TUNION_AID:
        raise TransitRecordError(
            f"e-purse FCI names DF {name.value.hex().upper()}, not {TUNION_AID.hex().upper()}"
        )
    label = template.find(FCI_LABEL_TAG)
    found = template.find(FCI_PUBLIC_INFO_TAG)
    info = None
    if found is not None and not found.constructed and len(found.value) == PUBLIC_INFO_LENGTH:
        info = decode_public_info(found.value)
    return PurseFci(
        df_name=None if name is None else name.value,
        label=None if label is None else label.value.decode("ascii", "replace"),
        public_info=info,
    )


def public_info_from_fci(fci: bytes) -> PublicInfo:
    """The 0x15 content the e-purse answers in its FCI: ``6F .. A5 .. 9F0C 1E <0x15>``;
    a :class:`TransitRecordError` when the FCI does not carry it (use
    :func:`parse_purse_fci` where that is a case to handle)."""
    info = parse_purse_fci(fci).public_info
    if info is None:
        raise TransitRecordError("e-purse FCI carries no 9F0C public information")
    return info


# --- the balance ----------------------------------------------------------------------------


def decode_balance(raw: bytes, what: str = "balance") -> int:
    """The e-purse balance in fen from its 4 bytes (GET BALANCE, or bytes 0-3 of the
    INITIALIZE answer), bit 31 dropped (:data:`BALANCE_MASK`)."""
    raw = _bytes(raw, what)
    if len(raw) != 4:
        raise TransitRecordError(f"{what} has {len(raw)} bytes, not 4")
    return int.from_bytes(raw, "big") & BALANCE_MASK


# --- cyclic files ---------------------------------------------------------------------------


def is_empty_record(raw: bytes) -> bool:
    """True for a record the card never wrote: it answers ``9000`` with zero bytes only
    (real cards, domain.md 5b). Reading a log stops there."""
    raw = _bytes(raw, "record")
    return len(raw) > 0 and not any(raw)


# --- 0x18 purchase log ----------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseLogRecord:
    """One record of file 0x18: what the card wrote at DEBIT."""

    counter: int  # the e-purse transaction counter the purchase ran under (INIT's answer)
    overdraft: int
    amount: int  # fen
    transaction_type: int  # 06 purchase, 09 composite purchase
    terminal_number: bytes  # 6 bytes
    when: dt.datetime

    def to_bytes(self) -> bytes:
        return (
            self.counter.to_bytes(2, "big")
            + self.overdraft.to_bytes(3, "big")
            + self.amount.to_bytes(4, "big")
            + bytes((self.transaction_type,))
            + self.terminal_number
            + encode_bcd_date(self.when.date())
            + encode_bcd_time(self.when)
        )


def decode_purchase_log(raw: bytes) -> PurchaseLogRecord:
    """One 0x18 record, exactly 23 bytes."""
    raw = _bytes(raw, "0x18 record")
    if len(raw) != PURCHASE_LOG_LENGTH:
        raise TransitRecordError(f"0x18 record has {len(raw)} bytes, not 23")
    day = decode_bcd_date(raw[16:20], "0x18 date")
    time = decode_bcd_time(raw[20:23], "0x18 time")
    return PurchaseLogRecord(
        counter=int.from_bytes(raw[0:2], "big"),
        overdraft=int.from_bytes(raw[2:5], "big"),
        amount=int.from_bytes(raw[5:9], "big"),
        transaction_type=raw[9],
        terminal_number=raw[10:16],
        when=dt.datetime.combine(day, time),
    )


# --- 0x1E trip record -----------------------------------------------------------------------

TRIP_TERMINAL_LENGTH = 8
"""The 0x1E terminal number field: 8 bytes; a 12-digit (6-byte) number is right-aligned."""


def decode_datetime7(raw: bytes, what: str) -> dt.datetime:
    """7 BCD bytes ``YYYYMMDDhhmmss``; :class:`TransitRecordError` naming ``what`` if not."""
    return dt.datetime.combine(decode_bcd_date(raw[0:4], what), decode_bcd_time(raw[4:7], what))


def encode_datetime7(when: dt.datetime) -> bytes:
    """``YYYYMMDDhhmmss`` as 7 BCD bytes, as the trip and rail records keep times."""
    return encode_bcd_date(when.date()) + encode_bcd_time(when)


@dataclass(frozen=True)
class TripRecord:
    """One 48-byte record of file 0x1E (公共交通过程信息循环记录), staged by UPDATE CAPP DATA
    CACHE ``80 DC 00 F0 30`` (layout in docs/transit.md, as real metro terminals write it):
    0 transaction type, 1-8 terminal number, 9 industry, 10-11 line, 12-13 station, 14-15
    operator, 16 RFU, 17-20 amount, 21-24 balance after, 25-31 date and time (BCD), 32-33
    city code, 34-41 acquirer, 42-47 RFU."""

    transaction_type: int
    terminal_number: bytes  # 6 (the PSAM's) or 8
    industry: int
    line: int
    station: int
    operator: int
    amount: int
    balance_after: int
    when: dt.datetime
    city_code: bytes  # 2
    acquirer_id: bytes  # 8

    def to_bytes(self) -> bytes:
        terminal = self.terminal_number.rjust(TRIP_TERMINAL_LENGTH, b"\x00")
        return (
            bytes((self.transaction_type,))
            + terminal
            + bytes((self.industry,))
            + self.line.to_bytes(2, "big")
            + self.station.to_bytes(2, "big")
            + self.operator.to_bytes(2, "big")
            + b"\x00"
            + self.amount.to_bytes(4, "big")
            + max(self.balance_after, 0).to_bytes(4, "big")
            + encode_datetime7(self.when)
            + self.city_code
            + self.acquirer_id
            + bytes(6)
        )


def decode_trip_record(raw: bytes) -> TripRecord:
    """One 0x1E record, exactly 48 bytes."""
    raw = _bytes(raw, "0x1E record")
    if len(raw) != TRIP_RECORD_LENGTH:
        raise TransitRecordError(f"0x1E record has {len(raw)} bytes, not 48")
    return TripRecord(
        transaction_type=raw[0],
        terminal_number=raw[1:9],
        industry=raw[9],
        line=int.from_bytes(raw[10:12], "big"),
        station=int.from_bytes(raw[12:14], "big"),
        operator=int.from_bytes(raw[14:16], "big"),
        amount=int.from_bytes(raw[17:21], "big"),
        balance_after=int.from_bytes(raw[21:25], "big"),
        when=decode_datetime7(raw[25:32], "0x1E date and time"),
        city_code=raw[32:34],
        acquirer_id=raw[34:42],
    )
