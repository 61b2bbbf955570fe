"""Decoders of the SSC data elements, one per format of :class:`terminal.ssc.layout.Format`.

* ``cn``: BCD digits, right-padded with ``F`` nibbles (ethnicity, birthplace).
* ``hex``: ``cn`` identifiers that embed a RID (``D156000005``) or a hex serial, kept whole
  as upper-case hex (card identification code, initialising institution).
* ``an``: ASCII, right-padded with ``00`` (category, spec version, card number, SSN, sex).
* ``gbk``: GBK text, right-padded with ``00`` (name, name extension).
* ``date``: ``cn`` ``YYYYMMDD`` in 4 bytes (issue, expiry and birth dates).

Pure functions over bytes; the only exception that escapes is
:class:`~terminal.errors.FieldError`, whose reason says what was wrong and where - never the
value itself: these are holder data, and reasons end up in logs.
"""

from __future__ import annotations

import datetime
import enum

from terminal.errors import FieldError
from terminal.ssc import layout

__all__ = [
    "CardCategory",
    "decode_an",
    "decode_bcd_date",
    "decode_cn",
    "decode_gbk",
    "decode_hex",
    "decode_item",
    "item_label",
    "region_of_card_id",
]

_DIGITS = frozenset("0123456789")


def decode_cn(raw: bytes) -> str:
    """The digits of a ``cn`` (compressed numeric) value, its ``F`` nibble padding removed.

    Raises :class:`FieldError` for a nibble ``A``-``E``, or a digit after an ``F`` nibble.
    """
    nibbles = bytes(raw).hex().upper()
    digits = nibbles.rstrip("F")
    for i, ch in enumerate(digits):
        if ch not in _DIGITS:
            what = "padding nibble F before a digit" if ch == "F" else f"nibble {ch}"
            raise FieldError(f"cn value of {len(raw)} bytes: {what} at nibble {i}")
    return digits


def decode_hex(raw: bytes) -> str:
    """A ``cn`` identifier kept whole as upper-case hex (it may embed a RID or hex serial)."""
    return bytes(raw).hex().upper()


def decode_an(raw: bytes) -> str:
    """An ``an`` (alphanumeric) value: printable ASCII, trailing ``00`` padding removed.

    Raises :class:`FieldError` for a byte outside ``20``..``7E`` before the padding.
    """
    text = bytes(raw).rstrip(b"\x00")
    for i, b in enumerate(text):
        if not 0x20 <= b <= 0x7E:
            raise FieldError(f"an value of {len(raw)} bytes: byte {b:02X} at offset {i}")
    return text.decode("ascii")


def decode_gbk(raw: bytes) -> str:
    """GBK text (a name), trailing ``00`` and space padding removed.

    GB 18030 four-byte sequences (rare characters in names) are accepted too, GB 18030
    being the superset of GBK. Raises :class:`FieldError` for bytes that do not decode or
    for control characters.
    """
    text = bytes(raw).rstrip(b"\x00 ")
    try:
        decoded = text.decode("gbk")
    except UnicodeDecodeError:
        try:
            decoded = text.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise FieldError(
                f"GBK value of {len(raw)} bytes: undecodable byte at offset {exc.start}"
            ) from None
    for i, ch in enumerate(decoded):
        if ch < " " or ch == "\x7f":
            raise FieldError(
                f"GBK value of {len(raw)} bytes: control character {ord(ch):02X} at character {i}"
            )
    return decoded


def decode_bcd_date(raw: bytes) -> datetime.date | None:
    """A BCD date ``YYYYMMDD`` in 4 bytes; None when all ``00`` or all ``FF`` (absent).

    Raises :class:`FieldError` for another length, non-BCD nibbles or an impossible date.
    """
    raw = bytes(raw)
    hex_ = raw.hex().upper()
    if len(raw) != 4:
        raise FieldError(f"BCD date: expected 4 bytes, got {len(raw)}")
    if raw in (b"\x00" * 4, b"\xff" * 4):
        return None
    if any(ch not in _DIGITS for ch in hex_):
        raise FieldError("BCD date: not 8 BCD digits")
    try:
        return datetime.date(int(hex_[:4]), int(hex_[4:6]), int(hex_[6:]))
    except ValueError:
        raise FieldError("BCD date: no such date") from None


_DECODERS = {
    layout.Format.CN: decode_cn,
    layout.Format.HEX: decode_hex,
    layout.Format.AN: decode_an,
    layout.Format.GBK: decode_gbk,
    layout.Format.BCD_DATE: decode_bcd_date,
}


def item_label(item: layout.Item) -> str:
    """``EF05 tag 05 (issue_date)``: how errors name a data element."""
    return f"{item.file:04X} tag {item.tag:02X} ({item.name})"


def decode_item(item: layout.Item, raw: bytes) -> str | datetime.date | None:
    """Decode the value ``raw`` of data element ``item`` by its format.

    A value shorter than ``item.length`` is accepted (some cards trim padding); a longer one
    is cut to ``item.length`` for a truncating item (the card number: its first 9
    characters) and is a :class:`FieldError` otherwise. Every error reason starts with the
    file, tag and item name.
    """
    if len(raw) > item.length:
        if not item.truncate:
            raise FieldError(f"{item_label(item)}: value of {len(raw)} bytes exceeds {item.length}")
        raw = raw[: item.length]
    try:
        return _DECODERS[item.fmt](raw)
    except FieldError as exc:
        raise FieldError(f"{item_label(item)}: {exc.reason}") from exc


def region_of_card_id(card_id_hex: str) -> str:
    """The region of a card: the first 6 digits (GB/T 2260) of its identification code."""
    region = card_id_hex[:6]
    if len(region) != 6 or any(ch not in _DIGITS for ch in region):
        raise FieldError("card identification code does not open with 6 digits")
    return region


class CardCategory(enum.Enum):
    """Card category 卡类别 (EF05 tag 02), by its ASCII code."""

    PRE_SCHOOL = "1"  # 学龄前
    STUDENT = "2"  # 学生
    ADULT = "3"  # 成人
    ELDERLY = "4"  # 老年人

    @classmethod
    def from_code(cls, code: str) -> CardCategory | None:
        """The category for ``code`` ("1".."4"); None for any other code."""
        try:
            return cls(code)
        except ValueError:
            return None
