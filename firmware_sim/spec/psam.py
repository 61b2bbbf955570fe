"""The PSAM's social security application (docs/card-authentication.md, docs/transit.md).

Command headers the simulated PSAM answers while its application is selected, the key
usages of DELIVERY SESSION KEY and the layout of the MAC1 request.
"""

from __future__ import annotations

import enum

PSAM_AID = bytes.fromhex("D15600000590")
"""DF name (AID) of the social security application of a PSAM."""
PSAM_ADF_FID = 0x1001  # the FID PBOC-style PSAMs give their application DF
TERMINAL_NUMBER_FID = 0x0016  # EF16
TERMINAL_NUMBER_SFI = 0x16  # READ BINARY `00 B0 96 00 06`
HISTORICAL_MARKER = b"PSAM"
"""This simulator's PSAM historical bytes start with this; the 6 BCD bytes of the terminal
number follow."""


class Command(enum.Enum):
    """(CLA, INS) of the PSAM commands."""

    DELIVERY_SESSION_KEY = (0xBF, 0xDE)  # 分散密钥 / 下发会话密钥
    CIPHER_DATA = (0x80, 0xFA)  # 加密数据
    MAC1 = (0x80, 0x70)  # 消费交易初始化: MAC1
    MAC2 = (0x80, 0x72)  # 验证 MAC2
    INIT_SAM_FOR_DESCRYPT = (0x80, 0x1A)  # 通用 DES 计算初始化


class KeyUsage(enum.IntEnum):
    """DELIVERY SESSION KEY P1: which master key to diversify."""

    IRK = 0x01  # internal authentication key
    RKSSSE = 0x02  # read key of the SSSE
    UKSSSE = 0x03  # update key of the SSSE


SSC_KEY_NAMES: dict[KeyUsage, str] = {
    KeyUsage.IRK: "irk",
    KeyUsage.RKSSSE: "rkssse",
    KeyUsage.UKSSSE: "ukssse",
}
"""The social security master keys by usage, named as the key file and a card profile's
``[keys]`` table name them (in that order: IRK, RKSSSE, UKSSSE)."""
PURCHASE_KEY_NAME = "purchase"  # the e-purse purchase master key
MAINTENANCE_KEY_NAME = "maintenance"  # the e-purse application maintenance master (MAMK)

# INIT SAM FOR DESCRYPT `80 1A 45 <key version> 10 <serial low 8 || issuer id 8>`: the
# maintenance master of the key version, diversified by issuer id then serial (= the card's
# DAMK). Key versions 02 3DES, 03 SM4: this project's convention (unconfirmed).
DESCRYPT_USAGE_MAINTENANCE = 0x45
MAINTENANCE_KEY_VERSIONS = {0x02: 1, 0x03: 3}  # key version -> card algorithm flag
DESCRYPT_DATA_LENGTH = 0x10
# CIPHER DATA P1: 00 the cryptogram under the delivered session key; 05 a MAC with an
# initial value under the key INIT SAM FOR DESCRYPT set up: `80 FA 05 00 Lc IV(8) data`.
CIPHER_P1_CRYPTOGRAM = 0x00
CIPHER_P1_MAC_WITH_IV = 0x05
CIPHER_IV_LENGTH = 8

DELIVERY_DATA_LENGTH = 0x18  # D1(8) D2(8) P(8)
CIPHER_DATA_LENGTH = 0x08
MAC1_DATA_LENGTH = 0x24
MAC2_LENGTHS = (0x04, 0x08)  # MAC2, or serial(4) MAC2 (recovery)
KEPT_SESSIONS = 16  # purchase sessions in RAM, by serial

# MAC1 data: random(4) counter(2) amount(4) type(1) date(4) time(3) keyVer(1) algId(1)
# app serial low 8 (8) issuer id (8)
MAC1_FIELDS: dict[str, slice] = {
    "random": slice(0, 4),
    "counter": slice(4, 6),
    "amount": slice(6, 10),
    "type": slice(10, 11),
    "date": slice(11, 15),
    "time": slice(15, 18),
    "key_version": slice(18, 19),
    "algorithm_id": slice(19, 20),
    "serial_low8": slice(20, 28),
    "issuer_id": slice(28, 36),
}
