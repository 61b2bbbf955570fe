"""Pure parsers (and encoders) of the T-Union e-purse files, docs/transit.md "Files".

* 0x15 public information, 30 bytes: :class:`PublicInfo` (:func:`decode_public_info`); the
  e-purse also answers it inside its SELECT FCI, tag ``9F0C`` (:func:`public_info_from_fci`),
  which saves the terminal a READ BINARY.
* 0x18 purchase log, cyclic, 23-byte records: :class:`PurchaseLogRecord`.
* 0x1E transit process (trip) records, cyclic, 48 bytes: :class:`TripRecord`.

Every decoder takes bytes from the card and raises :class:`TransitRecordError` (a
:class:`terminal.errors.ParseError`) and nothing else on bytes that do not fit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from terminal.errors import TlvError, TransitRecordError
from terminal.tlv import find_ber, parse_ber_tlv

PUBLIC_INFO_LENGTH = 30
PURCHASE_LOG_LENGTH = 23
TRIP_RECORD_LENGTH = 48
ISSUER_ID_LENGTH = 8
APP_SERIAL_LENGTH = 10
TERMINAL_NUMBER_LENGTH = 6
FCI_PUBLIC_INFO_TAG = 0x9F0C


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


def public_info_from_fci(fci: bytes) -> PublicInfo:
    """The 0x15 content the e-purse answers in its FCI: ``6F .. A5 .. 9F0C 1E <0x15>``."""
    try:
        objects = parse_ber_tlv(_bytes(fci, "FCI"))
    except TlvError as exc:
        raise TransitRecordError(f"e-purse FCI: {exc.reason}") from None
    found = find_ber(objects, FCI_PUBLIC_INFO_TAG)
    if found is None:
        raise TransitRecordError("e-purse FCI carries no 9F0C public information")
    return decode_public_info(found.value)


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


@dataclass(frozen=True)
class TripRecord:
    """One 48-byte record of file 0x1E, staged by UPDATE CAPP DATA CACHE (layout in
    docs/transit.md). ``record_id`` (byte 0) is the P1 of UPDATE CAPP DATA CACHE."""

    record_id: int
    transaction_type: int
    terminal_number: bytes  # 6
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
        return (
            bytes((self.record_id, self.transaction_type))
            + self.terminal_number
            + bytes((self.industry,))
            + self.line.to_bytes(2, "big")
            + self.station.to_bytes(2, "big")
            + self.operator.to_bytes(2, "big")
            + self.amount.to_bytes(4, "big")
            + self.balance_after.to_bytes(4, "big", signed=True)
            + encode_bcd_date(self.when.date())
            + encode_bcd_time(self.when)
            + self.city_code
            + self.acquirer_id
            + bytes(8)
        )


def decode_trip_record(raw: bytes) -> TripRecord:
    """One 0x1E record, exactly 48 bytes."""
    raw = _bytes(raw, "0x1E record")
    if len(raw) != TRIP_RECORD_LENGTH:
        raise TransitRecordError(f"0x1E record has {len(raw)} bytes, not 48")
    day = decode_bcd_date(raw[23:27], "0x1E date")
    time = decode_bcd_time(raw[27:30], "0x1E time")
    return TripRecord(
        record_id=raw[0],
        transaction_type=raw[1],
        terminal_number=raw[2:8],
        industry=raw[8],
        line=int.from_bytes(raw[9:11], "big"),
        station=int.from_bytes(raw[11:13], "big"),
        operator=int.from_bytes(raw[13:15], "big"),
        amount=int.from_bytes(raw[15:19], "big"),
        balance_after=int.from_bytes(raw[19:23], "big", signed=True),
        when=dt.datetime.combine(day, time),
        city_code=raw[30:32],
        acquirer_id=raw[32:40],
    )
