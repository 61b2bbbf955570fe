"""The T-Union (交通联合) e-purse: JT/T 978 / PBOC e-purse tables (domain.md section 4 and 5b,
docs/transit.md).

Application, files and record layouts, command bytes and the answers' field layouts. The
public information file 0x15 and the purchase log record 0x18 are small dataclasses with
their byte layouts, so a profile can describe a card's files and the applet can write them.
"""

from __future__ import annotations

import datetime as dt
import enum
import zlib
from dataclasses import dataclass

TUNION_AID = bytes.fromhex("A000000632010105")
"""DF name of the T-Union e-purse application (PPSE label ``MOT_T_EP``)."""
TUNION_LABEL = b"MOT_T_EP"  # FCI tag 50, application label
TUNION_ADF_FID = 0x1001

# FCI of a real card: 6F 50 84 08 <AID> A5 44 {50 08 "MOT_T_EP", 87 01 .., 9F08 01 ..,
# 9F12 0F "CARD IMAGE ...", 9F0C 1E <file 0x15>}; 9F0C (issuer discretionary data, the FCI
# template tags of spec/iso7816.py) is optional.
TAG_APPLICATION_LABEL = 0x50
TAG_PRIORITY_INDICATOR = 0x87  # application priority indicator
TAG_APPLICATION_VERSION = 0x9F08
TAG_PREFERRED_NAME = 0x9F12  # application preferred name
PREFERRED_NAME = b"CARD IMAGE 0001"  # 15 bytes, as a real card's A5 44 adds up


@dataclass(frozen=True)
class EFRef:
    """An EF of the e-purse ADF: FID, SFI and the record or file length."""

    name: str
    fid: int
    sfi: int
    length: int


PUBLIC_INFO = EFRef("0x15", 0x0015, 0x15, 30)  # 公共应用基本信息, transparent
MANAGEMENT_INFO = EFRef("0x17", 0x0017, 0x17, 60)  # 管理信息, transparent
PURCHASE_LOG = EFRef("0x18", 0x0018, 0x18, 23)  # 交易明细, cyclic, record 1 newest
TRIP_RECORDS = EFRef("0x1E", 0x001E, 0x1E, 48)  # 公共交通过程信息, cyclic
RAIL_RECORDS = EFRef("0x1A", 0x001A, 0x1A, 128)  # 公共交通过程信息变长记录文件, variable length
LOG_CAPACITY = 10  # records a cyclic file keeps
TRIP_CAPACITY = 10

# File 0x1E, 48-byte cyclic trip records (the real layout, as a Shanghai metro BOM's JT/T 978
# code writes them). The card does not interpret them: it checks the length only.
TRIP_RECORD_FIELDS: dict[str, slice] = {
    "transaction_type": slice(0, 1),
    "terminal_number": slice(1, 9),
    "industry_code": slice(9, 10),  # 01 rail, 02 bus (unconfirmed)
    "line": slice(10, 12),
    "station": slice(12, 14),
    "operator_code": slice(14, 16),
    "rfu_16": slice(16, 17),
    "amount": slice(17, 21),
    "balance_after": slice(21, 25),
    "date_time": slice(25, 32),  # BCD YYYYMMDDhhmmss
    "city_code": slice(32, 34),
    "acquirer": slice(34, 42),
    "rfu_42": slice(42, 48),
}

# File 0x1A, the composite application record of rail transit: 128-byte records, each named
# by its record identifier (byte 1). The card reads the header only; the terminal owns the
# rest (in/out status, entry and exit data, CRC-32 over bytes 6..123 in bytes 124-127).
RAIL_RECORD_FIELDS: dict[str, slice] = {
    "composite_flag": slice(0, 1),
    "record_id": slice(1, 2),
    "record_length": slice(2, 4),
    "interconnection_flag": slice(4, 5),
    "application_lock_flag": slice(5, 6),
    "transaction_serial": slice(6, 14),  # BCD
    "transaction_status": slice(14, 15),  # 01 entry, 02 exit, 03/04 updates
    "entry_city": slice(15, 17),
    "exit_city": slice(17, 19),
    "entry_operator": slice(19, 27),
    "exit_operator": slice(27, 35),
    "entry_station": slice(35, 43),
    "exit_station": slice(43, 51),
    "entry_device": slice(51, 59),
    "exit_device": slice(59, 67),
    "entry_time": slice(67, 74),  # BCD YYYYMMDDhhmmss
    "exit_time": slice(74, 81),
    "max_consume_amount": slice(81, 85),
    "entry_line": slice(85, 86),
    "exit_line": slice(86, 87),
    "entry_amount": slice(87, 91),
    "entry_balance": slice(91, 95),
    "actual_amount": slice(95, 99),
    "last_transaction_time": slice(99, 106),
    "last_rail_terminal": slice(106, 110),
    "cumulative_amount": slice(110, 113),
    "cumulative_count": slice(113, 115),
    "transfer_info": slice(115, 120),  # industry(1) MMDDhhmm(4 BCD)
    "entry_transaction_flag": slice(120, 121),
    "exit_transaction_flag": slice(121, 122),
    "in_out_status": slice(122, 123),  # 55 inside, 66 exited
    "rfu_123": slice(123, 124),
    "crc32": slice(124, 128),  # big-endian CRC-32 (zlib) of bytes 6..123
}
RAIL_RECORD_ID_OFFSET = 1
RAIL_CRC_COVERS = slice(6, 124)
RAIL_COMPOSITE_FLAG = 0x01  # byte 0 of a record this simulator personalises
DEFAULT_RAIL_RECORD_ID = 0x02
"""The identifier of the personalised rail record (the real value is not confirmed)."""

# UPDATE CAPP DATA CACHE (80 DC P1 P2 Lc record): P2 = SFI << 3 names the file.
CACHE_FILES = {RAIL_RECORDS.sfi << 3: RAIL_RECORDS, TRIP_RECORDS.sfi << 3: TRIP_RECORDS}
CACHE_P1_CYCLIC = 0x00  # P1 for the cyclic 0x1E (P1 names the record id only in 0x1A)

# APPLICATION BLOCK (应用锁定): 84 1E 00 P2 04 MAC(4), secure messaging.
CLA_SECURE_MESSAGING = 0x84
INS_APPLICATION_BLOCK = 0x1E
BLOCK_TEMPORARY = 0x00
BLOCK_PERMANENT = 0x01
BLOCK_MAC_LENGTH = 4
EPURSE_CHALLENGE_LENGTH = 4  # GET CHALLENGE 00 84 00 00 04 on the e-purse


class Ins(enum.IntEnum):
    """Proprietary instructions of the e-purse (CLA 80)."""

    GET_BALANCE = 0x5C  # 读余额
    INITIALIZE = 0x50  # 初始化 (for purchase)
    UPDATE_CAPP_DATA_CACHE = 0xDC  # 更新复合应用数据缓存
    DEBIT_FOR_PURCHASE = 0x54  # 消费
    GET_TRANSACTION_PROVE = 0x5A  # 取交易认证


P2_EPURSE = 0x02  # GET BALANCE / INITIALIZE P2: the e-purse (ED would be 01)
P1_PURCHASE = 0x01  # INITIALIZE P1: purchase
P1_COMPOSITE = 0x03  # INITIALIZE P1: composite purchase (复合消费)
DEBIT_P1, DEBIT_P2 = 0x01, 0x00
INITIALIZE_DATA_LENGTH = 0x0B  # keyIdx(1) amount(4) terminal number(6)
DEBIT_DATA_LENGTH = 0x0F  # serial(4) date(4) time(3) MAC1(4)
PROVE_DATA_LENGTH = 0x02  # counter + 1
BALANCE_LENGTH = 4
BALANCE_GARBAGE_BIT = 1 << 31  # some cards set bit 31 of the balance: not money (5b)
BALANCE_MASK = BALANCE_GARBAGE_BIT - 1

TYPE_PURCHASE = 0x06  # transaction type of INITIALIZE P1 01
TYPE_COMPOSITE = 0x09  # transaction type of INITIALIZE P1 03
TRANSACTION_TYPE = {P1_PURCHASE: TYPE_PURCHASE, P1_COMPOSITE: TYPE_COMPOSITE}
KEY_INDEX = 0x01  # the one purchase key index
KEY_VERSION = 0x01


class AlgorithmId(enum.IntEnum):
    """algId of the INITIALIZE answer (PBOC)."""

    DES3 = 0x00
    SM4 = 0x04


ALGORITHM_ID_OF_FLAG = {0x01: AlgorithmId.DES3, 0x03: AlgorithmId.SM4}
"""Card algorithm flag (01 3DES, 03 SM4) -> algId."""
FLAG_OF_ALGORITHM_ID = {ident: flag for flag, ident in ALGORITHM_ID_OF_FLAG.items()}

TAC_DIVERSIFIER = b"TAC\x00\x00\x00\x00\x00"  # DPK diversified with this gives the TAC key

# How the card's TAC key is made is not confirmed (docs/transit.md "Keys and MACs"): both
# shapes are simulated, and the back office's issuer key file says which one to check.
TAC_SCHEME_DPK_VARIANT = "dpk-variant"
"""The TAC key is the DPK diversified with :data:`TAC_DIVERSIFIER` (the project's convention)."""
TAC_SCHEME_SEPARATE_MASTER = "separate-master"
"""The card holds a separate DTK, diversified from an issuer TAC master (MTK) like the DPK
from the purchase master (PBOC / JT/T 978 as generally described)."""
TAC_SCHEMES = (TAC_SCHEME_DPK_VARIANT, TAC_SCHEME_SEPARATE_MASTER)

# --- BCD dates and times ------------------------------------------------------------------


def bcd_date(day: dt.date) -> bytes:
    """``YYYYMMDD`` in 4 BCD bytes."""
    return bytes.fromhex(f"{day.year:04d}{day.month:02d}{day.day:02d}")


def bcd_time(when: dt.time | dt.datetime) -> bytes:
    """``HHMMSS`` in 3 BCD bytes."""
    return bytes.fromhex(f"{when.hour:02d}{when.minute:02d}{when.second:02d}")


def is_bcd_date(raw: bytes) -> bool:
    """True when ``raw`` is 4 BCD bytes of a calendar date."""
    digits = raw.hex()
    if len(raw) != 4 or not digits.isdigit():
        return False
    try:
        dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return False
    return True


def is_bcd_time(raw: bytes) -> bool:
    """True when ``raw`` is 3 BCD bytes of a time of day."""
    digits = raw.hex()
    if len(raw) != 3 or not digits.isdigit():
        return False
    return int(digits[:2]) < 24 and int(digits[2:4]) < 60 and int(digits[4:]) < 60


# --- file 0x15 and purchase log records ----------------------------------------------------


@dataclass(frozen=True)
class PublicInfo:
    """File 0x15, 30 bytes: issuer code 0-1, city code 2-3, industry code 4-5, RFU 6-7
    (0-7 the issuer id), app type 8, app version 9, app serial 10-19, start date 20-23,
    expiry date 24-27, card type 28, RFU 29."""

    issuer_code: bytes
    city_code: bytes
    industry_code: bytes
    issuer_rfu: bytes
    app_type: int
    app_version: int
    app_serial: bytes
    start_date: dt.date
    expiry_date: dt.date
    card_type: int
    rfu: int = 0x00

    def __post_init__(self) -> None:
        sizes = (
            (self.issuer_code, 2, "issuer code"),
            (self.city_code, 2, "city code"),
            (self.industry_code, 2, "industry code"),
            (self.issuer_rfu, 2, "issuer RFU"),
            (self.app_serial, 10, "application serial"),
        )
        for value, size, what in sizes:
            if len(value) != size:
                raise ValueError(f"0x15 {what} is {size} bytes, not {len(value)}")

    @property
    def issuer_id(self) -> bytes:
        """Bytes 0-7: the first diversification level of the purchase key."""
        return self.issuer_code + self.city_code + self.industry_code + self.issuer_rfu

    @property
    def serial_low8(self) -> bytes:
        """The low 8 bytes of the application serial: the second diversification level."""
        return self.app_serial[2:]

    def to_bytes(self) -> bytes:
        return (
            self.issuer_id
            + bytes((self.app_type, self.app_version))
            + self.app_serial
            + bcd_date(self.start_date)
            + bcd_date(self.expiry_date)
            + bytes((self.card_type, self.rfu))
        )


def rail_crc(record: bytes) -> bytes:
    """The CRC-32 (zlib's) of bytes 6..123 of a 0x1A record, big-endian: bytes 124-127."""
    return zlib.crc32(record[RAIL_CRC_COVERS]).to_bytes(4, "big")


def fresh_rail_record(record_id: int, composite_flag: int = RAIL_COMPOSITE_FLAG) -> bytes:
    """A never-used 0x1A record: flag, identifier, length 0080, then zeros (128 bytes)."""
    if not 0 <= record_id <= 0xFF:
        raise ValueError(f"a rail record identifier is one byte, not {record_id!r}")
    header = bytes((composite_flag, record_id)) + RAIL_RECORDS.length.to_bytes(2, "big")
    return header + bytes(RAIL_RECORDS.length - len(header))


APP_TYPE_EPURSE = 0x02
EMPTY_LOG_RECORD = bytes(PURCHASE_LOG.length)
"""An unused record of the cyclic 0x18 file: 23 zero bytes, answered with 9000."""


def purchase_log_record(
    counter: int,
    overdraft: int,
    amount: int,
    transaction_type: int,
    terminal_number: bytes,
    date: bytes,
    time: bytes,
) -> bytes:
    """One 0x18 record: counter(2) overdraft(3) amount(4) type(1) terminal no(6) date(4)
    time(3) = 23 bytes. ``counter`` is the counter the purchase ran under."""
    record = (
        counter.to_bytes(2, "big")
        + overdraft.to_bytes(3, "big")
        + amount.to_bytes(4, "big")
        + bytes((transaction_type,))
        + terminal_number
        + date
        + time
    )
    if len(record) != PURCHASE_LOG.length:
        raise ValueError(f"a purchase log record is 23 bytes, not {len(record)}")
    return record
