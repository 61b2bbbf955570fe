"""Command bytes of ISO/IEC 7816-4 as the social security card specification uses them.

The SSC specification part 5 (commands) restricts ISO 7816-4: a card answers only the
parameter values listed here; any other value is refused (``6A86``), an unknown class
``6E00``, an unknown instruction ``6D00``.
"""

from __future__ import annotations

import enum

CLA_INTERINDUSTRY = 0x00  # ISO 7816-4 interindustry class, no secure messaging
CLA_PROPRIETARY = 0x80  # proprietary class: CHANGE PIN, the e-purse and PSAM commands
CLA_PCSC = 0xFF  # PC/SC part 3 pseudo-APDUs, answered by the contactless reader


class Ins(enum.IntEnum):
    """Instruction bytes (ISO 7816-4 table 4 and the SSC specification part 5)."""

    SELECT = 0xA4  # SELECT FILE
    READ_BINARY = 0xB0
    READ_RECORD = 0xB2
    GET_CHALLENGE = 0x84
    GET_RESPONSE = 0xC0
    INTERNAL_AUTHENTICATE = 0x88
    EXTERNAL_AUTHENTICATE = 0x82
    VERIFY = 0x20  # VERIFY PIN
    CHANGE_PIN = 0x5E  # CHANGE PIN (CLA 80), 修改个人识别码
    GET_DATA = 0xCA  # with CLA FF: the contactless card's UID


class SelectBy(enum.IntEnum):
    """SELECT P1: how the file is named."""

    FID = 0x00  # file identifier (none or 3F00: the MF)
    CHILD_DF = 0x01  # DF under the current DF
    EF_UNDER_CURRENT_DF = 0x02  # EF under the current DF (`00 A4 02 00 02 EF05`)
    PARENT_DF = 0x03  # the parent of the current DF, no data
    DF_NAME = 0x04  # DF name (AID), 1 to 16 bytes


class SelectOccurrence(enum.IntEnum):
    """SELECT P2 on social security cards: 00 or 02 only (P2 0C is not defined for them)."""

    FIRST = 0x00  # first or only occurrence, FCI answered for a DF
    NEXT = 0x02  # next occurrence of a DF name


SELECT_NO_RESPONSE_DATA = 0x0C
"""ISO P2 0C (no response data): not defined on social security cards, ``6A86``; a card
profile may accept it (``select_p2_0c``) to imitate a lenient card."""

# READ RECORD P2 = SFI (bits 8-4, 0: the current EF) | mode (bits 3-1)
RECORD_BY_IDENTIFIER = 0b000  # first record whose identifier (the SIMPLE-TLV tag) is P1
RECORD_BY_NUMBER = 0b100  # record number P1
RECORD_P1_TO_LAST = 0b101  # records P1 to the last, concatenated (multi-record cards)
SFI_CURRENT_EF = 0
SFI_MAX = 30  # 31 is RFU

# READ BINARY P1 bit 8: SFI in bits 5-1 and offset in P2, else a 15-bit offset in P1-P2
READ_BINARY_BY_SFI = 0x80

SHORT_LE_MAX = 256  # Le byte 00
EXTENDED_LE_MAX = 65536  # extended Le 0000

CHALLENGE_LENGTH = 8  # GET CHALLENGE `00 84 00 00 08` (domain.md 2)
CHALLENGE_LENGTHS = frozenset({4, 8, 16})
"""GET CHALLENGE Le values a card may answer: PBOC 4, SSC 8, SM4-sized 16. A strict card
answers 8 only; a profile may add the others (``challenge_lengths``)."""

# FCI template (ISO 7816-4 5.3.3 / EMV): what SELECT of a DF answers
TAG_FCI = 0x6F  # FCI template
TAG_DF_NAME = 0x84  # DF name (AID)
TAG_FCI_PROPRIETARY = 0xA5  # FCI proprietary template
TAG_ISSUER_DISCRETIONARY = 0x9F0C  # issuer discretionary data inside A5 (EMV)
