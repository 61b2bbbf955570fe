"""BER-TLV as the simulated cards write it (ISO/IEC 7816-4 5.2, EMV book 3 annex B).

:func:`tlv` encodes one data object ``tag || length || value``: the tag as its bytes (one
byte ``6F``, two bytes ``9F0C``), the length in the short form (``00``..``7F``) or the long
forms ``81 xx`` and ``82 xxxx``. :func:`fci` builds the FCI template every DF of this
simulator answers on SELECT::

    6F L  84 L <DF name>  [A5 L <proprietary data objects>]

The card only writes TLV (the terminal reads it), so there is no decoder here.
"""

from __future__ import annotations

from firmware_sim.spec.iso7816 import TAG_DF_NAME, TAG_FCI, TAG_FCI_PROPRIETARY

MAX_LENGTH = 0xFFFF  # the longest form written here: 82 xxxx


def _tag_bytes(tag: int) -> bytes:
    if not 0 < tag <= 0xFFFFFF:
        raise ValueError(f"tag {tag!r} is not one to three bytes")
    return tag.to_bytes((tag.bit_length() + 7) // 8, "big")


def _length_bytes(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= MAX_LENGTH:
        return b"\x82" + length.to_bytes(2, "big")
    raise ValueError(f"a value of {length} bytes does not fit a two-byte BER length")


def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV data object: ``tag`` (e.g. ``0x6F``, ``0x9F0C``), its length, ``value``."""
    return _tag_bytes(tag) + _length_bytes(len(value)) + bytes(value)


def fci(df_name: bytes, proprietary: bytes | None = None) -> bytes:
    """The FCI template of a DF: ``6F L 84 L <df_name> [A5 L <proprietary>]``.

    ``proprietary`` is the content of the A5 template (already encoded data objects); None
    leaves A5 out, as the PSAM, PKI and sub-application DFs answer.
    """
    body = tlv(TAG_DF_NAME, df_name)
    if proprietary is not None:
        body += tlv(TAG_FCI_PROPRIETARY, proprietary)
    return tlv(TAG_FCI, body)
