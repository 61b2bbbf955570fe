"""The LD/T 33-2015 unified reader interface output (``iReadCardBas``) and its error codes.

Hospital and HR systems integrate readers through this function set; a terminal that prints
the same pipe-delimited string plugs into them without new integration work. Field order,
with a trailing pipe::

    region|ssn|card number|card id|name|ATR historical bytes|spec version|issue date|
    expiry date|terminal number|terminal device number|
"""

from __future__ import annotations

import datetime

from terminal.errors import (
    AlgorithmMissingError,
    CardError,
    CardRemovedError,
    CardUnresponsiveError,
    KeyMissingError,
    NoCardError,
    NoReaderError,
    NoSecureModuleError,
    NotSocialSecurityCardError,
    OneCardError,
    PcscUnavailableError,
)
from terminal.iso7816.atr import historical_bytes

NO_PSAM_TERMINAL_NUMBER = "0" * 12

# iReadCardBas(iType, ...) interface selector.
TYPE_CONTACT = 1
TYPE_CONTACTLESS = 2
TYPE_AUTO_CONTACT_FIRST = 3
TYPE_AUTO_CONTACTLESS_FIRST = 4

WRONG_CARD_TYPE = -1
NO_CARD = -2
CARD_NOT_POWERED = -3
NO_ANSWER = -4
READER_CONNECTION = -11
INTERNAL_AUTH_FAILED = -21
PSAM_KEY_LEVEL_TOO_LOW = -24
PIN_WRONG = -51
PIN_BLOCKED = -52
NO_PSAM = -2201
PSAM_LACKS_SM4 = -2202
NO_RKSSSE = -2203


def _date(value: datetime.date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def ireadcardbas(
    *,
    region: str | None,
    ssn: str | None,
    card_number: str | None,
    card_id: str | None,
    name: str | None,
    atr: bytes,
    spec_version: str | None,
    issue_date: datetime.date | None,
    expiry_date: datetime.date | None,
    terminal_number: str = NO_PSAM_TERMINAL_NUMBER,
    device_number: str = "",
) -> str:
    """The ``iReadCardBas`` output string, trailing pipe included."""
    fields = [
        region or "",
        ssn or "",
        card_number or "",
        card_id or "",
        name or "",
        historical_bytes(atr).hex().upper(),
        spec_version or "",
        _date(issue_date),
        _date(expiry_date),
        terminal_number,
        device_number,
    ]
    return "|".join(fields) + "|"


def error_code(error: OneCardError) -> int:
    """The LD/T 33 return code for ``error``: a card status word becomes ``-SW`` (decimal)."""
    if isinstance(error, NoSecureModuleError):
        return NO_PSAM
    if isinstance(error, AlgorithmMissingError):
        return PSAM_LACKS_SM4
    if isinstance(error, KeyMissingError):
        return NO_RKSSSE
    if isinstance(error, NotSocialSecurityCardError):
        return WRONG_CARD_TYPE
    if isinstance(error, CardError):
        return -error.sw
    if isinstance(error, NoCardError):
        return NO_CARD
    if isinstance(error, CardRemovedError | CardUnresponsiveError):
        return NO_ANSWER
    if isinstance(error, NoReaderError | PcscUnavailableError):
        return READER_CONNECTION
    return NO_ANSWER
