"""Status words (ISO/IEC 7816-4 section 5.6 and the SSC specification), by name.

Fixed status words are an :class:`SW` enum; the families that carry a number in SW2
(``61xx`` bytes available, ``6Cxx`` exact length, ``63Cx`` tries left) have predicates.
"""

from __future__ import annotations

import enum


class SW(enum.IntEnum):
    OK = 0x9000
    DATA_MAY_BE_CORRUPTED = 0x6281
    END_OF_FILE = 0x6282
    FILE_INVALIDATED = 0x6283  # selected file deactivated
    FCI_FORMAT_ERROR = 0x6284
    VERIFY_FAILED = 0x6300
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    CLA_FUNCTION_NOT_SUPPORTED = 0x6800
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    COMMAND_INCOMPATIBLE = 0x6981
    SECURITY_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_INVALIDATED = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    SM_DATA_MISSING = 0x6987
    SM_DATA_INCORRECT = 0x6988
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    WRONG_P1P2 = 0x6A86
    REFERENCE_DATA_NOT_FOUND = 0x6A88
    WRONG_PARAMETERS = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00
    APPLICATION_TEMPORARILY_BLOCKED = 0x9302  # MAC error / temporarily locked (SSC, PBOC)
    APPLICATION_BLOCKED = 0x9303  # application permanently locked, e.g. hotlisted


_NAMES: dict[int, str] = {
    SW.OK: "success",
    SW.DATA_MAY_BE_CORRUPTED: "part of returned data may be corrupted",
    SW.END_OF_FILE: "end of file or record reached before Le bytes",
    SW.FILE_INVALIDATED: "selected file invalidated",
    SW.FCI_FORMAT_ERROR: "FCI not formatted per ISO 7816-4",
    SW.VERIFY_FAILED: "verification failed",
    SW.MEMORY_FAILURE: "memory failure",
    SW.WRONG_LENGTH: "wrong length",
    SW.CLA_FUNCTION_NOT_SUPPORTED: "function in CLA not supported",
    SW.LOGICAL_CHANNEL_NOT_SUPPORTED: "logical channel not supported",
    SW.SECURE_MESSAGING_NOT_SUPPORTED: "secure messaging not supported",
    SW.COMMAND_INCOMPATIBLE: "command incompatible with file structure",
    SW.SECURITY_NOT_SATISFIED: "security status not satisfied",
    SW.AUTH_METHOD_BLOCKED: "authentication method blocked",
    SW.REFERENCE_DATA_INVALIDATED: "reference data invalidated",
    SW.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW.COMMAND_NOT_ALLOWED: "command not allowed (no current EF)",
    SW.SM_DATA_MISSING: "expected secure messaging data objects missing",
    SW.SM_DATA_INCORRECT: "secure messaging data objects incorrect",
    SW.WRONG_DATA: "incorrect parameters in the data field",
    SW.FUNCTION_NOT_SUPPORTED: "function not supported",
    SW.FILE_NOT_FOUND: "file or application not found",
    SW.RECORD_NOT_FOUND: "record not found",
    SW.NOT_ENOUGH_MEMORY: "not enough memory space in the file",
    SW.WRONG_P1P2: "incorrect parameters P1-P2",
    SW.REFERENCE_DATA_NOT_FOUND: "referenced data not found",
    SW.WRONG_PARAMETERS: "wrong parameters P1-P2",
    SW.INS_NOT_SUPPORTED: "instruction not supported",
    SW.CLA_NOT_SUPPORTED: "class not supported",
    SW.NO_PRECISE_DIAGNOSIS: "no precise diagnosis",
    SW.APPLICATION_TEMPORARILY_BLOCKED: "application temporarily blocked",
    SW.APPLICATION_BLOCKED: "application blocked",
}


def is_bytes_available(sw: int) -> bool:
    """``61xx``: SW2 more bytes wait for GET RESPONSE (T=0)."""
    return sw >> 8 == 0x61


def is_wrong_le(sw: int) -> bool:
    """``6Cxx``: wrong Le; SW2 is the exact length to re-issue with (00 = 256)."""
    return sw >> 8 == 0x6C


def is_warning(sw: int) -> bool:
    """``62xx``/``63xx``: processed with a warning; data may still follow."""
    return sw >> 8 in (0x62, 0x63)


def tries_left(sw: int) -> int | None:
    """``63Cx``: x further tries; None for any other status word."""
    return sw & 0x0F if sw & 0xFFF0 == 0x63C0 else None


def format_sw(sw: int) -> str:
    """``6A82`` style hex."""
    return f"{sw:04X}"


def describe(sw: int) -> str:
    """A human name for ``sw``, e.g. ``6A82 file or application not found``."""
    name = _NAMES.get(sw)
    if name is None:
        if is_bytes_available(sw):
            name = f"{(sw & 0xFF) or 256} bytes available"
        elif is_wrong_le(sw):
            name = f"wrong Le, exact length {(sw & 0xFF) or 256}"
        elif (n := tries_left(sw)) is not None:
            name = f"verification failed, {n} tries left"
        else:
            name = "unknown status"
    return f"{format_sw(sw)} {name}"
