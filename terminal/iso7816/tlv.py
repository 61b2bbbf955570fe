"""Tag-length-value codecs of ISO/IEC 7816-4 section 5.2, and the FCI of a selected DF.

Two families live here:

* SIMPLE-TLV (ISO 7816-4 5.2.1): a one-byte tag ``01..FE`` and a length of one byte
  ``00..FE`` or ``FF`` followed by two bytes. Every record of the SSC files EF05/EF06 is one
  SIMPLE-TLV object whose tag is the record identifier.
* BER-TLV (ISO 7816-4 5.2.2, the subset of ISO/IEC 8825-1 / X.690 cards use): tags of one to
  three bytes, definite lengths in short form or long form ``81``/``82``/``83``, constructed
  objects (bit 6 of the first tag byte) that nest further objects, and ``00``/``FF`` padding
  bytes allowed before, between and after objects. The FCI a card answers to SELECT is one.

Pure functions over bytes, no I/O. The only exception that escapes a parser here is
:class:`~terminal.errors.TlvError`, whose reason names the tag and the offset at fault.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from terminal.errors import TlvError

__all__ = [
    "BER_MAX_DEPTH",
    "BER_MAX_TAG_BYTES",
    "AlgorithmFlag",
    "BerTlv",
    "FileControlInfo",
    "encode_ber_tlv",
    "encode_simple_tlv",
    "find_ber",
    "parse_ber_tlv",
    "parse_fci",
    "parse_simple_tlv",
    "records_by_tag",
]

# --- SIMPLE-TLV ---------------------------------------------------------------------------

SIMPLE_MAX_LENGTH = 0xFFFF


def parse_simple_tlv(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``data`` into its SIMPLE-TLV objects ``(tag, value)``, in order.

    Raises :class:`TlvError` for a tag of ``00``/``FF`` or an object cut short, naming the
    offset of the object at fault.
    """
    data = bytes(data)
    out: list[tuple[int, bytes]] = []
    off = 0
    end = len(data)
    while off < end:
        start = off
        tag = data[off]
        if tag in (0x00, 0xFF):
            raise TlvError(f"SIMPLE-TLV tag {tag:02X} at offset {start} is invalid")
        off += 1
        if off >= end:
            raise TlvError(f"SIMPLE-TLV tag {tag:02X} at offset {start}: length byte missing")
        length = data[off]
        off += 1
        if length == 0xFF:
            if off + 2 > end:
                raise TlvError(
                    f"SIMPLE-TLV tag {tag:02X} at offset {start}: three-byte length truncated"
                )
            length = int.from_bytes(data[off : off + 2], "big")
            off += 2
        if off + length > end:
            raise TlvError(
                f"SIMPLE-TLV tag {tag:02X} at offset {start}: value of {length} bytes"
                f" truncated to {end - off}"
            )
        out.append((tag, data[off : off + length]))
        off += length
    return out


def encode_simple_tlv(tag: int, value: bytes) -> bytes:
    """One SIMPLE-TLV object; the length takes one byte up to 254, else ``FF`` + 2 bytes."""
    if not 0x01 <= tag <= 0xFE:
        raise TlvError(f"SIMPLE-TLV tag {tag!r} outside 01..FE")
    n = len(value)
    if n <= 0xFE:
        length = bytes((n,))
    elif n <= SIMPLE_MAX_LENGTH:
        length = b"\xff" + n.to_bytes(2, "big")
    else:
        raise TlvError(f"SIMPLE-TLV tag {tag:02X}: value of {n} bytes exceeds 65535")
    return bytes((tag,)) + length + bytes(value)


def records_by_tag(data: bytes) -> dict[int, bytes]:
    """Values by tag of a concatenation of SSC records (a 'read all records' answer).

    Each EF05/EF06 record is one SIMPLE-TLV object and the tag is the record identifier, so a
    tag seen twice is an error.
    """
    out: dict[int, bytes] = {}
    for tag, value in parse_simple_tlv(data):
        if tag in out:
            raise TlvError(f"record tag {tag:02X} appears more than once")
        out[tag] = value
    return out


# --- BER-TLV ------------------------------------------------------------------------------

BER_MAX_DEPTH = 16
"""Deepest nesting of constructed objects accepted before the input is called malformed."""

BER_MAX_TAG_BYTES = 3
"""ISO 7816-4 5.2.2.1: tag fields of one, two or three bytes."""

_BER_MAX_LENGTH_BYTES = 3  # long form 81, 82, 83
_PADDING = (0x00, 0xFF)
_CONSTRUCTED = 0x20
_HIGH_TAG = 0x1F


@dataclass(frozen=True)
class BerTlv:
    """One BER-TLV data object: ``tag`` is the tag field read as a big-endian integer
    (``0x9F0C`` for ``9F 0C``); ``children`` are the nested objects of a constructed object
    and ``None`` for a primitive one. ``value`` is always the raw value field."""

    tag: int
    value: bytes
    children: tuple[BerTlv, ...] | None = None

    @property
    def constructed(self) -> bool:
        """True for a constructed object (bit 6 of the first tag byte set)."""
        return self.children is not None

    def find(self, tag: int) -> BerTlv | None:
        """The first object with ``tag`` in depth-first pre-order, this object included."""
        if self.tag == tag:
            return self
        return find_ber(self.children or (), tag)

    def to_bytes(self) -> bytes:
        """This object encoded again (tag, minimal length, raw value)."""
        return encode_ber_tlv(self.tag, self.value)


def find_ber(objects: Iterable[BerTlv], tag: int) -> BerTlv | None:
    """The first object with ``tag`` among ``objects`` and their descendants, depth-first."""
    for obj in objects:
        found = obj.find(tag)
        if found is not None:
            return found
    return None


def _read_ber_tag(data: bytes, off: int) -> tuple[bytes, int]:
    start = off
    first = data[off]
    off += 1
    if first & _HIGH_TAG == _HIGH_TAG:
        while True:
            if off >= len(data):
                raise TlvError(
                    f"BER-TLV tag {data[start:off].hex().upper()} at offset {start} truncated"
                )
            b = data[off]
            off += 1
            if off - start > BER_MAX_TAG_BYTES:
                raise TlvError(
                    f"BER-TLV tag {data[start:off].hex().upper()}.. at offset {start} is longer"
                    f" than {BER_MAX_TAG_BYTES} bytes"
                )
            if not b & 0x80:
                break
    return data[start:off], off


def _read_ber_length(data: bytes, off: int, tag_hex: str, start: int) -> tuple[int, int]:
    if off >= len(data):
        raise TlvError(f"BER-TLV tag {tag_hex} at offset {start}: length missing")
    first = data[off]
    off += 1
    if first < 0x80:
        return first, off
    if first == 0x80:
        raise TlvError(
            f"BER-TLV tag {tag_hex} at offset {start}: indefinite length (80) not allowed"
        )
    count = first & 0x7F
    if count > _BER_MAX_LENGTH_BYTES:
        raise TlvError(
            f"BER-TLV tag {tag_hex} at offset {start}: length field {first:02X} announces"
            f" {count} length bytes, at most {_BER_MAX_LENGTH_BYTES} allowed"
        )
    if off + count > len(data):
        raise TlvError(f"BER-TLV tag {tag_hex} at offset {start}: length field truncated")
    return int.from_bytes(data[off : off + count], "big"), off + count


def _parse_ber(data: bytes, base: int, depth: int) -> tuple[BerTlv, ...]:
    if depth > BER_MAX_DEPTH:
        raise TlvError(f"BER-TLV nesting deeper than {BER_MAX_DEPTH} levels at offset {base}")
    out: list[BerTlv] = []
    off = 0
    end = len(data)
    while off < end:
        if data[off] in _PADDING:
            off += 1
            continue
        start = off
        tag_bytes, off = _read_ber_tag(data, off)
        tag_hex = tag_bytes.hex().upper()
        length, off = _read_ber_length(data, off, tag_hex, base + start)
        if off + length > end:
            raise TlvError(
                f"BER-TLV tag {tag_hex} at offset {base + start}: value of {length} bytes"
                f" truncated to {end - off}"
            )
        value = data[off : off + length]
        children = None
        if tag_bytes[0] & _CONSTRUCTED:
            children = _parse_ber(value, base + off, depth + 1)
        out.append(BerTlv(int.from_bytes(tag_bytes, "big"), value, children))
        off += length
    return tuple(out)


def parse_ber_tlv(data: bytes) -> tuple[BerTlv, ...]:
    """The BER-TLV objects of ``data`` in order, constructed ones parsed recursively.

    ``00``/``FF`` padding before, between and after objects is skipped. Raises
    :class:`TlvError` for a truncated object, an indefinite length, a length field of more
    than three bytes, a tag longer than three bytes or nesting deeper than
    :data:`BER_MAX_DEPTH`; the reason names the tag and the offset within ``data``.
    """
    return _parse_ber(bytes(data), 0, 1)


def _ber_tag_bytes(tag: int) -> bytes:
    if tag <= 0:
        raise TlvError(f"BER-TLV tag {tag!r} is not a positive integer")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    hex_ = raw.hex().upper()
    if len(raw) > BER_MAX_TAG_BYTES:
        raise TlvError(f"BER-TLV tag {hex_} is longer than {BER_MAX_TAG_BYTES} bytes")
    if raw[0] == 0xFF:
        raise TlvError(f"BER-TLV tag {hex_}: first byte FF is reserved for padding")
    multi = raw[0] & _HIGH_TAG == _HIGH_TAG
    if multi != (len(raw) > 1):
        raise TlvError(
            f"BER-TLV tag {hex_}: low five bits 11111 of the first byte must be followed by"
            " further tag bytes, and only then"
        )
    if any(not b & 0x80 for b in raw[1:-1]) or (len(raw) > 1 and raw[-1] & 0x80):
        raise TlvError(
            f"BER-TLV tag {hex_}: subsequent tag bytes must have bit 8 set except the last"
        )
    return raw


def encode_ber_tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV object: the tag as its big-endian bytes and the minimal definite length.

    The value is written as given; for a constructed tag it should itself be a concatenation
    of encoded objects (this is not checked).
    """
    tag_raw = _ber_tag_bytes(tag)
    n = len(value)
    if n < 0x80:
        length = bytes((n,))
    elif n <= 0xFF:
        length = b"\x81" + bytes((n,))
    elif n <= 0xFFFF:
        length = b"\x82" + n.to_bytes(2, "big")
    elif n <= 0xFFFFFF:
        length = b"\x83" + n.to_bytes(3, "big")
    else:
        raise TlvError(f"BER-TLV tag {tag_raw.hex().upper()}: value of {n} bytes too long")
    return tag_raw + length + bytes(value)


# --- FCI of a DF --------------------------------------------------------------------------

TAG_FCI = 0x6F
TAG_DF_NAME = 0x84
TAG_FCI_PROPRIETARY = 0xA5
TAG_SFI = 0x88
TAG_SSC_SECURITY = 0x9F0C
TAG_ALGORITHM = 0x86


class AlgorithmFlag(enum.IntEnum):
    """The SSC algorithm flag (tag ``86`` inside ``9F0C`` of the SSSE FCI)."""

    DES3 = 0x01  # DES / 3DES
    SSF33 = 0x02
    SM4 = 0x03


@dataclass(frozen=True)
class FileControlInfo:
    """The FCI template ``6F`` a DF answers to SELECT.

    ``df_name`` is tag ``84``; inside the proprietary template ``A5``: ``sfi_of_dir`` is tag
    ``88`` (short EF identifier of the directory file) and ``algorithm`` is tag ``86`` nested
    in ``9F0C``, the SSC algorithm flag (01 DES/3DES, 02 SSF33, 03 SM4). ``proprietary`` is
    the raw value of ``A5`` (``b""`` when absent).
    """

    df_name: bytes | None
    sfi_of_dir: int | None
    algorithm: int | None
    proprietary: bytes = b""

    @property
    def algorithm_flag(self) -> AlgorithmFlag | None:
        """``algorithm`` as an :class:`AlgorithmFlag`; None when absent or not a known value."""
        if self.algorithm is None:
            return None
        try:
            return AlgorithmFlag(self.algorithm)
        except ValueError:
            return None


def _one_byte(obj: BerTlv, where: str) -> int:
    if len(obj.value) != 1:
        raise TlvError(f"FCI tag {obj.tag:02X} in {where}: expected 1 byte, got {len(obj.value)}")
    return obj.value[0]


def parse_fci(data: bytes) -> FileControlInfo:
    """Decode the FCI template ``6F`` of a DF (the response data of SELECT, without SW).

    Raises :class:`TlvError` when ``data`` is not one ``6F`` template (padding aside), when
    tag ``88`` or ``86`` is not one byte, or when ``9F0C`` does not hold BER-TLV objects.
    """
    objects = parse_ber_tlv(data)
    if not objects:
        raise TlvError("FCI is empty, expected template 6F")
    fci = objects[0]
    if fci.tag != TAG_FCI:
        raise TlvError(f"FCI starts with tag {fci.tag:02X}, expected template 6F")
    if len(objects) > 1:
        raise TlvError(f"FCI: unexpected tag {objects[1].tag:02X} after template 6F")
    children = fci.children or ()

    df_name = next((c.value for c in children if c.tag == TAG_DF_NAME), None)
    prop = next((c for c in children if c.tag == TAG_FCI_PROPRIETARY), None)
    sfi: int | None = None
    algorithm: int | None = None
    if prop is not None:
        for child in prop.children or ():
            if child.tag == TAG_SFI and sfi is None:
                sfi = _one_byte(child, "A5")
            elif child.tag == TAG_SSC_SECURITY and algorithm is None:
                # 9F0C is primitive by its first byte, but the SSC nests objects in it.
                try:
                    inner = parse_ber_tlv(child.value)
                except TlvError as exc:
                    raise TlvError(f"FCI tag 9F0C: {exc.reason}") from exc
                flag = next((o for o in inner if o.tag == TAG_ALGORITHM), None)
                if flag is not None:
                    algorithm = _one_byte(flag, "9F0C")
    return FileControlInfo(
        df_name=df_name,
        sfi_of_dir=sfi,
        algorithm=algorithm,
        proprietary=prop.value if prop is not None else b"",
    )
