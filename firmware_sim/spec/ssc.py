"""The social security application (SSSE), from the SSC specification and domain.md section 2.

Everything a simulated social security card needs to be personalised and to answer: the DF
name, the files, the EF05/EF06 layout (tag, file, format, length, first generation), the card
number and citizen ID check characters, the key identifiers of the authentication commands
and the region factor of key diversification (Sichuan reader specification 10.3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SSSE_NAME = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
"""DF name of the application environment SSSE: ``sx1.sh.社会保障`` in GBK (15 bytes)."""
SSSE_FID = 0xDDF1  # the SSSE DDF under the MF


@dataclass(frozen=True)
class FileRef:
    """An EF of the SSSE: file identifier and short file identifier."""

    name: str
    fid: int
    sfi: int


EF05 = FileRef("EF05", 0xEF05, 0x05)  # 发卡机构数据: issuer data, record EF, free read
EF06 = FileRef("EF06", 0xEF06, 0x06)  # 持卡人基本信息: holder data, record EF, RKSSSE on 3.0
EF07 = FileRef("EF07", 0xEF07, 0x07)  # fingerprint, transparent, read key (RKSSSE)
EF08 = FileRef("EF08", 0xEF08, 0x08)  # photo, transparent, read key (RKSSSE)
DIRECTORY_SFI = 0x1E  # FCI tag 88: SFI of the directory EF of the SSSE

# FCI of the SSSE (a real 3.0 card: 6F1C 840F<name> A509 88011E 9F0C03 860103): the FCI
# template tags are ISO's (spec/iso7816.py); 9F0C, issuer discretionary data, wraps tag 86.
TAG_SFI_OF_DIRECTORY = 0x88
TAG_ALGORITHM_FLAG = 0x86


class Algorithm(enum.IntEnum):
    """The algorithm flag, FCI tag 86 inside 9F0C. A card without 9F0C is a DES card
    (Sichuan reader specification 10.1)."""

    DES3 = 0x01  # DES / 3DES
    SSF33 = 0x02  # a non-public cipher: no implementation here
    SM4 = 0x03


SUB_APPLICATION_RID = bytes.fromhex("D156000005")
SUB_APPLICATIONS: dict[int, bytes] = {
    0xDF01: SUB_APPLICATION_RID + b"\x00",  # public (公共应用)
    0xDF02: SUB_APPLICATION_RID + b"\x01",  # employment (就业)
    0xDF03: SUB_APPLICATION_RID + b"\x02",  # social insurance (社会保险)
    0xDF04: SUB_APPLICATION_RID + b"\x03",  # social insurance (社会保险)
    0xDF07: SUB_APPLICATION_RID + b"\x04",  # personnel (人事人才)
}

# --- authentication (SSC specification part 5; Sichuan reader specification table B.1) ----

INTERNAL_AUTHENTICATE_P1 = 0x00  # table 22: P1 = P2 = 00, anything else 6A86
INTERNAL_AUTHENTICATE_P2 = 0x00
EXTERNAL_AUTHENTICATE_P1 = 0x00
KEY_ID_RKSSSE = 0x0A  # EXTERNAL AUTHENTICATE P2: the read key of the SSSE (RKSSSE)
AUTHENTICATE_DATA_LENGTH = 0x10  # 8 bytes process factor or auth data + 8 bytes original
PROCESS_FACTOR_LENGTH = 8
CRYPTOGRAM_LENGTH = 8

RKSSSE = "RKSSSE"
"""The security state EXTERNAL AUTHENTICATE with key 0A sets: reads EF06 on 3.0 cards and
EF07/EF08 on every card."""

# --- card identification code and institution number ------------------------------------

CARD_ID_RID = "D156000005"  # registered application provider id inside the card id
INSTITUTION_PREFIX = "9156000002"
"""初始化机构编号 (EF05 tag 04) opens with this; then the issuing region (3 BCD bytes), the
initialiser region (3) and a sequence number (1): 24 digits in all."""


# --- EF05 / EF06 layout -------------------------------------------------------------------


class Generation(enum.Enum):
    """Card generation, from EF05 tag 03: "1.0x", "2.0x", "3.00"; empty means 1.0."""

    V1 = "1.0"
    V2 = "2.0"
    V3 = "3.0"

    @classmethod
    def from_spec_version(cls, version: str) -> Generation | None:
        """The generation of a tag 03 value; an empty value is 1.0 (Sichuan specification)."""
        text = version.rstrip("\x00").strip()
        if not text:
            return cls.V1
        return {"1": cls.V1, "2": cls.V2, "3": cls.V3}.get(text[:1])


class Format(enum.Enum):
    """How an item's value is stored (the spec's cn / an, with the encodings they take)."""

    CN_ID = "cn id"  # cn identifier with hex RID / serial nibbles, right-padded with F
    CN = "cn"  # BCD digits, right-padded with F
    AN = "an"  # ASCII, right-padded with 00
    GBK = "an gbk"  # an holding GBK text (names), right-padded with 00
    DATE = "cn date"  # cn YYYYMMDD in 4 bytes


@dataclass(frozen=True)
class Item:
    """One data element: ``tag`` (the record identifier), home file, format, value length,
    and the first generation that has it."""

    tag: int
    file: FileRef
    fmt: Format
    length: int
    name: str
    since: Generation = Generation.V1


ITEMS: tuple[Item, ...] = (
    Item(0x01, EF05, Format.CN_ID, 16, "card_id"),  # 卡识别码
    Item(0x02, EF05, Format.AN, 1, "category"),  # 卡的类别
    Item(0x03, EF05, Format.AN, 4, "spec_version"),  # 规范版本
    Item(0x04, EF05, Format.CN_ID, 12, "institution"),  # 初始化机构编号
    Item(0x05, EF05, Format.DATE, 4, "issue_date"),  # 发卡日期
    Item(0x06, EF05, Format.DATE, 4, "expiry_date"),  # 卡有效期
    Item(0x07, EF05, Format.AN, 9, "card_number"),  # 卡号
    Item(0x08, EF06, Format.AN, 18, "ssn"),  # 社会保障号码
    Item(0x09, EF06, Format.GBK, 30, "name"),  # 姓名
    Item(0x4E, EF06, Format.GBK, 20, "name_ext", Generation.V2),  # 姓名扩展
    Item(0x0A, EF06, Format.AN, 1, "sex"),  # 性别
    Item(0x0B, EF06, Format.CN, 1, "ethnicity"),  # 民族
    Item(0x0C, EF06, Format.CN, 3, "birthplace"),  # 出生地
    Item(0x0D, EF06, Format.DATE, 4, "birth_date"),  # 出生日期
)
BY_TAG: dict[int, Item] = {item.tag: item for item in ITEMS}

NAME_TAG, NAME_EXTENSION_TAG = 0x09, 0x4E


def record_order(generation: Generation, file: FileRef) -> tuple[int, ...]:
    """Tags of ``file`` in record order: table order, items of later generations left out.
    Tag 4E (2.0 on) sits after the name, which shifts the record numbers of 0A..0D."""
    order = list(Generation)
    return tuple(
        item.tag
        for item in ITEMS
        if item.file == file and order.index(item.since) <= order.index(generation)
    )


# --- check characters ---------------------------------------------------------------------

CARD_NUMBER_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
CARD_NUMBER_LENGTH = 9  # 8-character body + check character; a reader takes the first 9


def card_number_check(body: str) -> str:
    """Check character of an 8-character card number body (letters count A=10, B=11, ...).

    C9 = 11 - (sum of Ci * Wi mod 11), written ``X`` for 10 and ``0`` for 11: the spec's
    worked example ``D2143569`` gives ``X``. Raises ValueError for a malformed body.
    """
    if len(body) != 8 or not all(c.isascii() and (c.isdigit() or c.isupper()) for c in body):
        raise ValueError(f"a card number body is 8 characters 0-9 / A-Z, not {body!r}")
    values = [int(c) if c.isdigit() else ord(c) - ord("A") + 10 for c in body]
    check = 11 - sum(v * w for v, w in zip(values, CARD_NUMBER_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(check, str(check))


CITIZEN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def citizen_id_check(body: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character of the first 17 digits of a citizen ID."""
    if len(body) != 17 or not body.isascii() or not body.isdigit():
        raise ValueError(f"a citizen ID body is 17 digits, not {body!r}")
    total = sum(int(d) * w for d, w in zip(body, CITIZEN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


# --- key diversification (Sichuan reader specification 10.3) -----------------------------

REGION_FACTOR_SUFFIX = b"sx"
ZHEJIANG_PREFIX = "33"


def region_factor(region: str) -> bytes:
    """Level-1 diversification data of the SSC card keys, 8 bytes.

    ``ASCII(6-digit region) || "sx"``, except for Zhejiang (card identification codes
    starting with 33): ``ASCII(first 4 region digits) || "00" || "sx"`` (330381 -> 330300sx).
    """
    if len(region) != 6 or not region.isascii() or not region.isdigit():
        raise ValueError(f"a region code is 6 digits, not {region!r}")
    if region.startswith(ZHEJIANG_PREFIX):
        region = region[:4] + "00"
    return region.encode("ascii") + REGION_FACTOR_SUFFIX


def card_factor(historical: bytes) -> bytes:
    """Level-2 diversification data: ATR historical bytes T6..TD (``historical[5:13]``)."""
    if len(historical) < 13:
        raise ValueError(f"need 13 ATR historical bytes, got {len(historical)}")
    return bytes(historical[5:13])
