"""Data layout of the social security application (SSSE): which item lives where.

The layout is a table, not scattered constants: the terminal reads and decodes by it, the
card simulator personalises by it. Each EF05/EF06 record is SIMPLE-TLV ``tag len value``
and the tag is the record identifier, so record numbers may differ between generations
(tag 4E was inserted in 2.0) while tags do not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SSSE_NAME = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
"""DF name of the SSSE application environment: ``sx1.sh.社会保障`` in GBK."""

EF05_FID = 0xEF05
EF06_FID = 0xEF06
EF05_SFI = 0x05
EF06_SFI = 0x06


class Format(enum.Enum):
    HEX = "hex"  # cn identifiers that embed a RID or hex serial: kept as upper-case hex
    CN = "cn"  # BCD digits, right-padded with F nibbles
    AN = "an"  # ASCII (or GBK for names), right-padded with 00
    BCD_DATE = "date"  # cn YYYYMMDD in 4 bytes
    GBK = "gbk"  # GBK text, right-padded with 00


@dataclass(frozen=True)
class Item:
    """One data element: ``tag`` (= record identifier), home file, format, value length.

    ``required``: without it the card cannot be identified (a read fails naming the item);
    any other item that is absent or odd is reported and left out. ``truncate``: a longer
    value is cut to ``length`` rather than refused (tag 07, Sichuan spec 10.4).
    """

    tag: int
    file: int
    fmt: Format
    length: int
    name: str
    required: bool = False
    truncate: bool = False
    optional_record: bool = False
    """The record may be missing on a card of a generation that has it (2.0 cards without
    tag 4E): its absence is not worth reporting."""


ITEMS: tuple[Item, ...] = (
    Item(0x01, EF05_FID, Format.HEX, 16, "card_id", required=True),  # 卡识别码
    Item(0x02, EF05_FID, Format.AN, 1, "category"),  # 卡类别
    Item(0x03, EF05_FID, Format.AN, 4, "spec_version"),  # 规范版本
    Item(0x04, EF05_FID, Format.HEX, 12, "institution"),  # 初始化机构编号
    Item(0x05, EF05_FID, Format.BCD_DATE, 4, "issue_date"),
    Item(0x06, EF05_FID, Format.BCD_DATE, 4, "expiry_date"),
    Item(0x07, EF05_FID, Format.AN, 9, "card_number", required=True, truncate=True),  # 卡号
    Item(0x08, EF06_FID, Format.AN, 18, "ssn"),  # 社会保障号码
    Item(0x09, EF06_FID, Format.GBK, 30, "name"),
    Item(0x4E, EF06_FID, Format.GBK, 20, "name_ext", optional_record=True),
    Item(0x0A, EF06_FID, Format.AN, 1, "sex"),
    Item(0x0B, EF06_FID, Format.CN, 1, "ethnicity"),
    Item(0x0C, EF06_FID, Format.CN, 3, "birthplace"),
    Item(0x0D, EF06_FID, Format.BCD_DATE, 4, "birth_date"),
)

BY_TAG: dict[int, Item] = {item.tag: item for item in ITEMS}

DECISION_ITEMS = frozenset({"card_id", "category", "spec_version", "expiry_date", "card_number"})
"""The EF05 items an acceptance decision needs (identity, region, category, generation,
validity): a gate or a validator reading per tag asks for these alone."""


class Generation(enum.Enum):
    """Card generation, from EF05 tag 03 (spec version "1.0x", "2.0x", "3.00")."""

    V1 = "1.0"
    V2 = "2.0"
    V3 = "3.0"

    @classmethod
    def from_spec_version(cls, version: str | None) -> Generation | None:
        """``"1.0x"`` -> V1, ``"2.0x"`` -> V2, ``"3.00"`` -> V3; an empty or absent version is
        a 1.0 card (Sichuan spec); a later major version reads as the latest we know; None
        for anything else."""
        head = (version or "").strip()[:1]
        if not head:
            return cls.V1
        if head.isdigit() and head > "3":
            return cls.V3
        return {"1": cls.V1, "2": cls.V2, "3": cls.V3}.get(head)


# Record order on the card, per generation. Tag 4E (name extension) exists from 2.0 on and
# was inserted after the name, which shifts the record numbers of 0A..0D.
RECORD_ORDER: dict[Generation, dict[int, tuple[int, ...]]] = {
    Generation.V1: {
        EF05_FID: (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07),
        EF06_FID: (0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D),
    },
    Generation.V2: {
        EF05_FID: (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07),
        EF06_FID: (0x08, 0x09, 0x4E, 0x0A, 0x0B, 0x0C, 0x0D),
    },
}
RECORD_ORDER[Generation.V3] = RECORD_ORDER[Generation.V2]


def file_tags(generation: Generation, fid: int) -> tuple[int, ...]:
    """Tags of file ``fid`` in record order for ``generation``."""
    return RECORD_ORDER[generation][fid]


def file_length(generation: Generation, fid: int) -> int:
    """Bytes a 'read all records' of ``fid`` returns: every record as ``tag len value``."""
    return sum(2 + BY_TAG[tag].length for tag in file_tags(generation, fid))
