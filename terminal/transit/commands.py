"""The e-purse's command table: every card-dependent constant of the T-Union (交通联合)
e-purse in one place, with the name the specifications give it (JT/T 978 part 3, the PBOC
e-purse of JR/T 0025 it builds on; docs/transit.md "Card commands"), and the command
builders. Pure: no I/O, no state.

The sessions (:mod:`terminal.transit.session` and the modules built on it) only ever
build commands here and compare status words named here, so a card family that differs
(another key index, another SFI) is one line to change.
"""

from __future__ import annotations

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import TransitError
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.status_words import SW, describe

# --- the application ------------------------------------------------------------------------

TUNION_AID = bytes.fromhex("A000000632010105")
"""DF name of the T-Union (交通联合) e-purse application (label ``MOT_T_EP``)."""

# --- files, by short file identifier (docs/transit.md "Files") ------------------------------

SFI_PUBLIC_INFO = 0x15
"""公共应用基本信息文件: public information, transparent, 30 bytes (also in the FCI, 9F0C)."""
SFI_MANAGEMENT_INFO = 0x17
"""管理信息文件: management information, transparent, 60 bytes."""
SFI_PURCHASE_LOG = 0x18
"""交易明细文件: purchase log, cyclic, 23-byte records, record 1 = newest."""
SFI_TRIP_RECORDS = 0x1E
"""公共交通过程信息循环记录文件: trip records, cyclic, 48-byte records."""
SFI_JOURNEY_RECORD = 0x1A
"""公共交通过程信息变长记录文件: the journey record (rail entry, last paid ride), 128 bytes,
read as record 1 (:mod:`terminal.transit.journey_record`)."""
JOURNEY_RECORD_ID = 0x02
"""The journey record's identifier (byte 1, UPDATE CAPP DATA CACHE's P1). Unconfirmed: real
cards' value was not found in public code, so ``[transit] journey_record_id`` sets it."""

PURCHASE_LOG_CAPACITY = 10
"""Records the purchase log (0x18) keeps: reading never asks for more than this many."""
TRIP_RECORDS_CAPACITY = 10
"""Records the trip file (0x1E) keeps: reading never asks for more than this many."""

# --- instruction bytes ----------------------------------------------------------------------

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
INS_SELECT = 0xA4  # SELECT
INS_READ_BINARY = 0xB0  # READ BINARY
INS_READ_RECORD = 0xB2  # READ RECORD
INS_GET_BALANCE = 0x5C  # GET BALANCE (读余额)
INS_INITIALIZE_FOR_PURCHASE = 0x50  # INITIALIZE FOR PURCHASE (消费初始化)
INS_UPDATE_CAPP_DATA_CACHE = 0xDC  # UPDATE CAPP DATA CACHE (更新复合应用数据缓存)
INS_DEBIT_FOR_PURCHASE = 0x54  # DEBIT FOR PURCHASE (消费)
INS_GET_TRANSACTION_PROVE = 0x5A  # GET TRANSACTION PROVE (取交易认证)
INS_GET_CHALLENGE = 0x84  # GET CHALLENGE (取随机数)
INS_APPLICATION_BLOCK = 0x1E  # APPLICATION BLOCK (应用锁定), CLA 84: secure messaging
CLA_SECURE_MESSAGING = 0x84
INS_INIT_SAM_FOR_DESCRYPT = 0x1A  # PSAM: INIT SAM FOR DESCRYPT (通用 DES 计算初始化)
INS_CIPHER_DATA = 0xFA  # PSAM: CIPHER DATA (通用 DES 计算)

P1_SELECT_BY_NAME = 0x04  # SELECT by DF name
P1_READ_BINARY_SFI = 0x80  # READ BINARY: bit 8 set, SFI in bits 1-5 of P1
P2_READ_RECORD_SFI = 0b100  # READ RECORD: record P1, SFI in bits 4-8 of P2
P1_PURCHASE = 0x01  # INITIALIZE FOR PURCHASE: purchase (消费)
P1_COMPOSITE = 0x03  # INITIALIZE FOR PURCHASE: composite purchase (复合消费)
P2_EPURSE = 0x02  # GET BALANCE / INITIALIZE: the e-purse (ED would be 01)
P1_DEBIT = 0x01  # DEBIT FOR PURCHASE: P1 01 P2 00
P1_READ_RECORD_FIRST = 0x01  # the journey record is record 1 of 0x1A
P2_BLOCK_TEMPORARY = 0x00  # APPLICATION BLOCK: blocked until unblocked by the issuer
P2_BLOCK_PERMANENT = 0x01
P1_MAINTENANCE_KEY = 0x45  # INIT SAM FOR DESCRYPT: key usage of the maintenance key
P1_MAC_WITH_IV = 0x05  # CIPHER DATA: MAC, the first 8 data bytes are the initial value
DEFAULT_MAINTENANCE_KEY_VERSION = {SymmetricAlgorithm.DES3: 0x02, SymmetricAlgorithm.SM4: 0x03}
"""Key version (INIT SAM FOR DESCRYPT's P2) of the PSAM's maintenance master per algorithm;
the values are this project's convention (unconfirmed): ``[validator] block_key_version``."""
DEFAULT_KEY_INDEX = 0x01
"""Key index of the purchase key (消费密钥索引号) the terminal asks INITIALIZE to use."""

# --- transaction types (交易类型标识) ---------------------------------------------------------

TYPE_PURCHASE = 0x06  # transaction type of a plain purchase (P1=01)
TYPE_COMPOSITE = 0x09  # transaction type of a composite purchase (P1=03)
PURCHASE_TYPES = frozenset({TYPE_PURCHASE, TYPE_COMPOSITE})
"""Transaction types of the purchases a terminal makes (0x18 also logs loads, type 02)."""
TRANSACTION_TYPE_NAMES: dict[int, str] = {
    TYPE_PURCHASE: "purchase",
    TYPE_COMPOSITE: "composite purchase",
}
"""The types a validator writes, by name; every other type is shown as hex."""

ALGORITHM_IDS: dict[int, SymmetricAlgorithm] = {
    0x00: SymmetricAlgorithm.DES3,
    0x04: SymmetricAlgorithm.SM4,
}
"""Algorithm identifier of the INITIALIZE answer (算法标识, PBOC: 00 3DES, 04 SM4)."""
ALGORITHM_ID = {alg: ident for ident, alg in ALGORITHM_IDS.items()}

# --- status words of the e-purse (besides ISO 7816-4's: terminal.iso7816.status_words.SW) ----

SW_INSUFFICIENT_BALANCE = 0x9401  # 金额不足
SW_KEY_INDEX_UNSUPPORTED = 0x9403  # 密钥索引不支持
SW_PROVE_UNAVAILABLE = 0x9406  # 所需 MAC (或 TAC) 不可用
SW_MAC_INVALID = 0x9302  # card: MAC1 wrong (one try less); PSAM: MAC2 wrong
SW_BLOCKED = 0x9303  # 应用永久锁定
SW_NO_APPLICATION = frozenset({SW.FILE_NOT_FOUND, SW.FUNCTION_NOT_SUPPORTED})
"""SELECT answers meaning "no e-purse on this card" (6A82, 6A81)."""
SW_NO_RECORD = SW.RECORD_NOT_FOUND
"""6A83: READ RECORD beyond the records a cyclic file holds: the end of the log."""

_SW_NAMES = {
    SW_INSUFFICIENT_BALANCE: "insufficient balance",
    SW_KEY_INDEX_UNSUPPORTED: "key index not supported",
    SW_PROVE_UNAVAILABLE: "transaction prove not available",
    SW_MAC_INVALID: "MAC invalid",
}

# --- lengths ----------------------------------------------------------------------------------

BALANCE_LENGTH = 4
INIT_ANSWER_LENGTH = 15
MAC1_DATA_LENGTH = 0x24
MAC_LENGTH = 4
TAC_LENGTH = 4
PUBLIC_INFO_LE = 0x1E  # 30
JOURNEY_RECORD_LE = 0x80  # 128
CHALLENGE_LENGTH = 4
PURCHASE_LOG_LE = 0x17  # 23
TRIP_RECORD_LE = 0x30  # 48
MAX_AMOUNT = 0xFFFFFFFF


def describe_sw(sw: int) -> str:
    """``9401 insufficient balance`` for the e-purse's own status words, else
    :func:`terminal.iso7816.status_words.describe` (which names ISO 7816-4's)."""
    name = _SW_NAMES.get(sw)
    return f"{sw:04X} {name}" if name else describe(sw)


# --- command builders -------------------------------------------------------------------------


def check_purchase_amount(amount: int, composite: bool) -> None:
    """A purchase's amount in fen: 1..:data:`MAX_AMOUNT`, or 0 for a composite purchase - how
    a rail entry writes its record (real gates do so). :class:`TransitError` otherwise."""
    low = 0 if composite else 1
    if not low <= amount <= MAX_AMOUNT:
        raise TransitError(f"purchase amount {amount} outside {low}..{MAX_AMOUNT} fen")


def select_tunion() -> CommandAPDU:
    """``00 A4 04 00 08 A000000632010105 00``: select the e-purse, FCI wanted (it may carry
    file 0x15 in tag 9F0C)."""
    return CommandAPDU(CLA_ISO, INS_SELECT, P1_SELECT_BY_NAME, 0x00, TUNION_AID, 256)


def read_public_info() -> CommandAPDU:
    """``00 B0 95 00 1E``: READ BINARY of file 0x15 by SFI, for cards whose FCI lacks it."""
    return CommandAPDU(
        CLA_ISO, INS_READ_BINARY, P1_READ_BINARY_SFI | SFI_PUBLIC_INFO, 0x00, le=PUBLIC_INFO_LE
    )


def get_balance() -> CommandAPDU:
    """``80 5C 00 02 04``: the e-purse balance, 4 bytes in fen (bit 31 is not part of it:
    :func:`terminal.transit.records.decode_balance`)."""
    return CommandAPDU(CLA_PROPRIETARY, INS_GET_BALANCE, 0x00, P2_EPURSE, le=BALANCE_LENGTH)


def initialize_for_purchase(
    amount: int, terminal_number: bytes, *, composite: bool, key_index: int = DEFAULT_KEY_INDEX
) -> CommandAPDU:
    """``80 50 01|03 02 0B keyIdx amount(4) terminalNo(6) 0F``: start a (composite) purchase;
    the card answers balance(4) counter(2) overdraft(3) keyVer(1) algId(1) random(4)."""
    check_purchase_amount(amount, composite)
    data = bytes((key_index,)) + amount.to_bytes(4, "big") + terminal_number
    p1 = P1_COMPOSITE if composite else P1_PURCHASE
    return CommandAPDU(
        CLA_PROPRIETARY, INS_INITIALIZE_FOR_PURCHASE, p1, P2_EPURSE, data, INIT_ANSWER_LENGTH
    )


def update_capp_data_cache(record: bytes, sfi: int = SFI_TRIP_RECORDS) -> CommandAPDU:
    """``80 DC <P1> <SFI<<3> Lc record``: stage a record, written by the next successful
    DEBIT FOR PURCHASE. The cyclic trip file 0x1E: ``80 DC 00 F0 30``; the journey record
    0x1A: ``80 DC <id> D0 80``, P1 = its identifier (byte 1), as real metro terminals send
    them."""
    p1 = record[1] if sfi == SFI_JOURNEY_RECORD else 0x00
    return CommandAPDU(CLA_PROPRIETARY, INS_UPDATE_CAPP_DATA_CACHE, p1, sfi << 3, record)


def read_journey_record() -> CommandAPDU:
    """``00 B2 01 D4 80``: the journey record, record 1 of 0x1A."""
    return read_record(SFI_JOURNEY_RECORD, P1_READ_RECORD_FIRST, JOURNEY_RECORD_LE)


def get_challenge() -> CommandAPDU:
    """``00 84 00 00 04``: 4 random bytes, the initial value of the next secure-messaging
    MAC (APPLICATION BLOCK)."""
    return CommandAPDU(CLA_ISO, INS_GET_CHALLENGE, 0x00, 0x00, le=CHALLENGE_LENGTH)


def application_block_header(permanent: bool = False) -> bytes:
    """``84 1E 00 P2 04``: the header the APPLICATION BLOCK MAC covers."""
    p2 = P2_BLOCK_PERMANENT if permanent else P2_BLOCK_TEMPORARY
    return bytes((CLA_SECURE_MESSAGING, INS_APPLICATION_BLOCK, 0x00, p2, MAC_LENGTH))


def application_block(mac: bytes, permanent: bool = False) -> CommandAPDU:
    """``84 1E 00 00 04 MAC``: block the e-purse (a hotlisted card); the MAC is the PSAM's
    over :func:`application_block_header` with the card's challenge as initial value."""
    header = application_block_header(permanent)
    return CommandAPDU(header[0], header[1], header[2], header[3], mac)


def init_sam_for_descrypt(
    key_version: int, app_serial_low8: bytes, issuer_id: bytes
) -> CommandAPDU:
    """PSAM ``80 1A 45 <version> 10 serial(8) issuer(8)``: diversify the maintenance master
    for this card (issuer id first, then the serial) for the next CIPHER DATA."""
    return CommandAPDU(
        CLA_PROPRIETARY,
        INS_INIT_SAM_FOR_DESCRYPT,
        P1_MAINTENANCE_KEY,
        key_version,
        app_serial_low8 + issuer_id,
    )


def cipher_data_mac(challenge: bytes, data: bytes) -> CommandAPDU:
    """PSAM ``80 FA 05 00 Lc IV(8) data``: the MAC of ``data`` (padded ``80 00..`` to 8
    bytes here) with the initial value ``challenge || 00 00 00 00``; the PSAM answers 4
    bytes."""
    padded = data + b"\x80" + bytes(-(len(data) + 1) % 8)
    iv = challenge + bytes(8 - len(challenge))
    return CommandAPDU(
        CLA_PROPRIETARY, INS_CIPHER_DATA, P1_MAC_WITH_IV, 0x00, iv + padded, MAC_LENGTH
    )


def debit_for_purchase(terminal_serial: int, date: bytes, time: bytes, mac1: bytes) -> CommandAPDU:
    """``80 54 01 00 0F serial(4) date(4) time(3) MAC1(4) 08``: the card checks MAC1, debits,
    and answers TAC(4) MAC2(4)."""
    data = terminal_serial.to_bytes(4, "big") + date + time + mac1
    return CommandAPDU(
        CLA_PROPRIETARY, INS_DEBIT_FOR_PURCHASE, P1_DEBIT, 0x00, data, TAC_LENGTH + MAC_LENGTH
    )


def get_transaction_prove(transaction_type: int, counter_after: int) -> CommandAPDU:
    """``80 5A 00 <type> 02 <counter+1> 08``: MAC2(4) TAC(4) of the last transaction, if it
    ran under counter ``counter_after - 1``; ``9406`` otherwise."""
    return CommandAPDU(
        CLA_PROPRIETARY,
        INS_GET_TRANSACTION_PROVE,
        0x00,
        transaction_type,
        (counter_after & 0xFFFF).to_bytes(2, "big"),
        MAC_LENGTH + TAC_LENGTH,
    )


def read_record(sfi: int, number: int, length: int) -> CommandAPDU:
    """``00 B2 <n> <SFI<<3|4> Le``: record ``n`` (1 = newest of a cyclic EF) by SFI."""
    return CommandAPDU(CLA_ISO, INS_READ_RECORD, number, sfi << 3 | P2_READ_RECORD_SFI, le=length)


def read_purchase_log(number: int) -> CommandAPDU:
    """``00 B2 <n> C4 17``: purchase log (0x18) record ``n``."""
    return read_record(SFI_PURCHASE_LOG, number, PURCHASE_LOG_LE)


def read_trip_record(number: int) -> CommandAPDU:
    """``00 B2 <n> F4 30``: trip record (0x1E) ``n``."""
    return read_record(SFI_TRIP_RECORDS, number, TRIP_RECORD_LE)
