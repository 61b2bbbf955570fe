"""The 0x1A journey record (公共交通过程信息变长记录文件): where a T-Union card carries an
unfinished rail journey and its last paid ride, so that every gate and validator decides from
the card alone, offline and across operators (docs/transit.md "The journey record 0x1A").

One 128-byte record, read with ``00 B2 01 D4 80`` and rewritten by the composite purchase
(``80 DC <id> D0 80``), as real metro terminals do. Offsets (:data:`LAYOUT`):

====== =========================================== ======================================
bytes  field                                       how onecard uses it
====== =========================================== ======================================
0      composite flag                              kept as the card has it
1      record identifier (UPDATE CAPP P1)          must be the configured id
2-3    record length                               kept
4      interconnection flag                        kept
5      application lock flag                       kept
6-13   transaction serial (BCD)                    the PSAM serial of the last write
14     transaction status                          01 entry, 02 exit
15-16  entry city code                             the network's city code
17-18  exit city code
19-26  entry organisation                          the operator id
27-34  exit organisation
35-42  entry station                               line byte, station byte in 41-42
43-50  exit station
51-58  entry device                                the terminal number, right-aligned
59-66  exit device
67-73  entry time (BCD YYYYMMDDhhmmss)
74-80  exit time
81-84  maximum consume amount
85     entry line
86     exit line
87-90  entry amount
91-94  entry balance
95-98  actual amount (the exit's fare)
99-105 last transaction time                       the last paid ride (transfers, limits)
106-109 last terminal (low 4 bytes)
110-112 cumulative amount of the day
113-114 cumulative count of the day                rides today (ride limits)
115    transfer information: industry              01 rail, 02 bus (unconfirmed)
116-119 transfer information: MMDDhhmm (BCD)
120    entry transaction flag
121    exit transaction flag
122    in/out status                               55 inside, 66 exited, 00 never used
123    RFU
124-127 CRC32 of bytes 6-123, big-endian           checked on every read
====== =========================================== ======================================

A record whose bytes 6-127 are all zero is one never written (a new card): no journey, no
last ride. Anything else must have a good CRC and decodable times, else
:class:`JourneyRecordError` - a gate then refuses the card rather than guess a fare.

Pure: bytes in, a :class:`JourneyRecord` out, and back.
"""

from __future__ import annotations

import datetime as dt
import enum
import zlib
from dataclasses import dataclass

from terminal.errors import TransitRecordError
from terminal.transit.records import decode_datetime7, encode_datetime7

JOURNEY_RECORD_LENGTH = 128
CRC_START, CRC_END = 6, 124  # the CRC covers bytes 6..123
TRANSFER_INDUSTRY_RAIL = 0x01
TRANSFER_INDUSTRY_BUS = 0x02
INDUSTRY_BY_MODE = {"rail": TRANSFER_INDUSTRY_RAIL, "bus": TRANSFER_INDUSTRY_BUS}
MODE_BY_INDUSTRY = {code: mode for mode, code in INDUSTRY_BY_MODE.items()}
STATUS_ENTRY = 0x01
STATUS_EXIT = 0x02
FLAG_ENTRY = 0x41  # entry transaction flag real terminals write
FLAG_EXIT = 0x81


class JourneyRecordError(TransitRecordError):
    """A 0x1A record that is not a journey record onecard can trust: wrong length, another
    record identifier, a CRC that does not match, a time that is no time, an unknown
    in/out status. The card is refused, never charged a guessed fare."""

    code = "bad_journey_record"


class InOut(enum.IntEnum):
    """Byte 122: where the card is."""

    NEVER = 0x00
    INSIDE = 0x55
    EXITED = 0x66


@dataclass(frozen=True)
class Station:
    """A station as the record holds it: line and station bytes (fare tables write it as the
    4 hex digits ``LLSS``)."""

    line: int
    number: int

    @property
    def code(self) -> str:
        return f"{self.line:02X}{self.number:02X}"

    @classmethod
    def parse(cls, code: str) -> Station:
        try:
            raw = bytes.fromhex(code)
        except ValueError:
            raw = b""
        if len(raw) != 2:
            raise TransitRecordError(f"a station code is 4 hex digits, not {code!r}")
        return cls(raw[0], raw[1])


@dataclass(frozen=True)
class LastRide:
    """The last paid ride the record remembers (transfer information, bytes 115-119)."""

    mode: str  # "rail", "bus", or the industry byte in hex
    when: dt.datetime


@dataclass(frozen=True)
class JourneyRecord:
    """The decoded 0x1A record; :meth:`to_bytes` re-encodes it with a fresh CRC, keeping
    every byte onecard does not interpret as the card had it."""

    raw: bytes  # the 128 bytes as read (or as they will be written, CRC included)

    # --- reading -----------------------------------------------------------------------------

    @property
    def record_id(self) -> int:
        return self.raw[1]

    @property
    def fresh(self) -> bool:
        """Never written: a new card, no journey and no ride yet."""
        return not any(self.raw[CRC_START:])

    @property
    def inout(self) -> InOut:
        return InOut(self.raw[122])

    @property
    def inside(self) -> bool:
        return not self.fresh and self.inout is InOut.INSIDE

    @property
    def entry_station(self) -> Station:
        return Station(self.raw[41], self.raw[42])

    @property
    def entry_city(self) -> bytes:
        return self.raw[15:17]

    @property
    def entry_time(self) -> dt.datetime | None:
        return _time7(self.raw[67:74], "entry time")

    @property
    def exit_time(self) -> dt.datetime | None:
        return _time7(self.raw[74:81], "exit time")

    @property
    def last_time(self) -> dt.datetime | None:
        return _time7(self.raw[99:106], "last transaction time")

    @property
    def cumulative_count(self) -> int:
        return int.from_bytes(self.raw[113:115], "big")

    @property
    def cumulative_amount(self) -> int:
        return int.from_bytes(self.raw[110:113], "big")

    def rides_on(self, day: dt.date) -> int:
        """Paid rides the card made on ``day`` (the day's cumulative count; it restarts with
        the first ride of a new day)."""
        last = self.last_time
        return self.cumulative_count if last is not None and last.date() == day else 0

    def last_ride(self, now: dt.datetime) -> LastRide | None:
        """The last paid ride, from the transfer information: an industry byte and
        ``MMDDhhmm`` without a year - the year is the one that puts it at or before ``now``."""
        industry = self.raw[115]
        digits = self.raw[116:120].hex()
        if self.fresh or industry == 0 or not digits.isdigit():
            return None
        month, day, hour, minute = (int(digits[i : i + 2]) for i in (0, 2, 4, 6))
        for year in (now.year, now.year - 1):
            try:
                when = dt.datetime(year, month, day, hour, minute, tzinfo=now.tzinfo)
            except ValueError:
                continue
            if when <= now + dt.timedelta(minutes=1):
                mode = MODE_BY_INDUSTRY.get(industry, f"{industry:02X}")
                return LastRide(mode, when)
        return None

    # --- writing -----------------------------------------------------------------------------

    def entered(
        self,
        when: dt.datetime,
        station: Station,
        *,
        city_code: bytes,
        operator: bytes,
        terminal_number: bytes,
        serial: int,
        balance: int,
    ) -> JourneyRecord:
        """The record after an entry at ``station``: inside, the entry fields set, the exit
        fields cleared."""
        raw = bytearray(self.raw)
        raw[6:14] = _serial_bcd(serial)
        raw[14] = STATUS_ENTRY
        raw[15:17] = city_code
        raw[17:19] = bytes(2)
        raw[19:27] = operator
        raw[27:35] = bytes(8)
        raw[35:43] = bytes(6) + bytes((station.line, station.number))
        raw[43:51] = bytes(8)
        raw[51:59] = terminal_number.rjust(8, b"\x00")
        raw[59:67] = bytes(8)
        raw[67:74] = encode_datetime7(when)
        raw[74:81] = bytes(7)
        raw[85] = station.line
        raw[86] = 0
        raw[87:91] = bytes(4)
        raw[91:95] = balance.to_bytes(4, "big")
        raw[95:99] = bytes(4)
        raw[120] = FLAG_ENTRY
        raw[121] = 0
        raw[122] = InOut.INSIDE
        return JourneyRecord(_with_crc(raw))

    def exited(
        self,
        when: dt.datetime,
        station: Station,
        fare: int,
        *,
        city_code: bytes,
        operator: bytes,
        terminal_number: bytes,
        serial: int,
    ) -> JourneyRecord:
        """The record after a paid exit at ``station``: exited, the exit fields set, and the
        ride counted (:meth:`paid_ride`)."""
        raw = bytearray(self.raw)
        raw[6:14] = _serial_bcd(serial)
        raw[14] = STATUS_EXIT
        raw[17:19] = city_code
        raw[27:35] = operator
        raw[43:51] = bytes(6) + bytes((station.line, station.number))
        raw[59:67] = terminal_number.rjust(8, b"\x00")
        raw[74:81] = encode_datetime7(when)
        raw[86] = station.line
        raw[95:99] = fare.to_bytes(4, "big")
        raw[121] = FLAG_EXIT
        raw[122] = InOut.EXITED
        return JourneyRecord(bytes(raw)).paid_ride(when, "rail", fare, terminal_number, serial)

    def paid_ride(
        self,
        when: dt.datetime,
        mode: str,
        fare: int,
        terminal_number: bytes,
        serial: int,
    ) -> JourneyRecord:
        """The record after a paid ride by ``mode`` (a bus tap, or a rail exit): last time
        and terminal, the day's cumulative amount and count, the transfer information.
        The journey fields are left as they are."""
        raw = bytearray(self.raw)
        if self.fresh:
            raw[122] = InOut.EXITED  # a record now in use, with no journey open
        rides, amount = self.rides_on(when.date()), 0
        if rides:
            amount = self.cumulative_amount
        raw[6:14] = _serial_bcd(serial)
        raw[99:106] = encode_datetime7(when)
        raw[106:110] = terminal_number[-4:].rjust(4, b"\x00")
        raw[110:113] = min(amount + fare, 0xFFFFFF).to_bytes(3, "big")
        raw[113:115] = min(rides + 1, 0xFFFF).to_bytes(2, "big")
        raw[115] = INDUSTRY_BY_MODE[mode]
        raw[116:120] = bytes.fromhex(
            f"{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}"
        )
        return JourneyRecord(_with_crc(raw))

    def to_bytes(self) -> bytes:
        return self.raw


def decode_journey_record(raw: bytes, record_id: int) -> JourneyRecord:
    """The 0x1A record of READ RECORD: 128 bytes, identifier ``record_id``; unless never
    written, a matching CRC, a known in/out status and times that are times."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise JourneyRecordError("the 0x1A record must be bytes")
    raw = bytes(raw)
    if len(raw) != JOURNEY_RECORD_LENGTH:
        raise JourneyRecordError(f"the 0x1A record has {len(raw)} bytes, not 128")
    if raw[1] != record_id:
        raise JourneyRecordError(
            f"the 0x1A record is record {raw[1]:02X}, not the journey record {record_id:02X}"
        )
    record = JourneyRecord(raw)
    if record.fresh:
        return record
    crc = zlib.crc32(raw[CRC_START:CRC_END]).to_bytes(4, "big")
    if crc != raw[CRC_END:]:
        raise JourneyRecordError("the 0x1A record's CRC does not match: the record is corrupt")
    if raw[122] not in InOut._value2member_map_:
        raise JourneyRecordError(f"the 0x1A record has an unknown in/out status {raw[122]:02X}")
    # Decoding the times now makes a record with a garbage time an error here, not later.
    record.entry_time, record.exit_time, record.last_time  # noqa: B018
    return record


def fresh_record(record_id: int) -> JourneyRecord:
    """A never-written record (tests, and the terminal's model of a new card)."""
    return JourneyRecord(bytes((0x01, record_id, 0x00, 0x80)) + bytes(JOURNEY_RECORD_LENGTH - 4))


def _with_crc(raw: bytearray) -> bytes:
    raw[CRC_END:] = zlib.crc32(bytes(raw[CRC_START:CRC_END])).to_bytes(4, "big")
    return bytes(raw)


def _serial_bcd(serial: int) -> bytes:
    return bytes.fromhex(f"{serial % 10**16:016d}")


def _time7(raw: bytes, what: str) -> dt.datetime | None:
    """A 7-byte BCD time of the record; None when all zero (never written)."""
    if not any(raw):
        return None
    try:
        return decode_datetime7(raw, f"the 0x1A {what}")
    except TransitRecordError as error:
        raise JourneyRecordError(error.reason) from None


__all__ = [
    "JOURNEY_RECORD_LENGTH",
    "InOut",
    "JourneyRecord",
    "JourneyRecordError",
    "LastRide",
    "Station",
    "decode_journey_record",
    "fresh_record",
]
