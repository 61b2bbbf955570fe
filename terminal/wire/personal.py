"""The personal-data deny-list of docs/sync.md: what a journal entry's ``extra`` and a
terminal event's ``detail`` may never hold - names, ID numbers, phones, addresses.

Keys are compared after lower-casing and dropping separators (``ID-Number``, ``id_number``
and ``idNumber`` are one key), and a key made of a personal word (``holder_name``,
``patientName``) is personal too. A value shaped like a resident identity number is refused
whatever its key is called. A refused mapping is an error, never a silently dropped field,
so the caller learns at once that it tried to send a person.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from terminal.errors import JournalEntryError
from terminal.wire.canonical import JsonError, canonical_json, parse_json

MAX_DEPTH = 3
"""Levels of nesting below the mapping itself: details are small and flat-ish."""

# A resident identity number (GB 11643: 17 digits and a check character) or a bare card
# number is personal data wherever it appears.
_ID_NUMBER_VALUE = re.compile(r"[1-9][0-9]{5}(18|19|20)[0-9]{9}[0-9Xx]")

DENIED_EXTRA_KEYS = frozenset(
    {
        "name",
        "fullname",
        "holder",
        "holdername",
        "cardholder",
        "cardholdername",
        "firstname",
        "lastname",
        "surname",
        "givenname",
        "ssn",
        "idnumber",
        "idno",
        "idnum",
        "idcard",
        "idcardnumber",
        "identity",
        "identitynumber",
        "identification",
        "nationalid",
        "citizenid",
        "residentid",
        "socialsecuritynumber",
        "cardnumber",
        "cardno",
        "pan",
        "passport",
        "passportnumber",
        "phone",
        "phonenumber",
        "mobile",
        "telephone",
        "email",
        "address",
        "birthdate",
        "dateofbirth",
        "dob",
        "birthday",
        "gender",
        "sex",
        "photo",
        "xm",  # 姓名 in pinyin initials, as card layouts name it
        "sfzh",  # 身份证号
        "zjhm",  # 证件号码
        "姓名",
        "身份证号",
        "身份证号码",
        "证件号码",
        "社会保障号码",
        "社会保障号",
        "卡号",
        "手机号",
        "电话",
        "地址",
        "出生日期",
        "性别",
    }
)
"""Keys that name personal data, lower-cased and without separators."""
DENIED_KEY_WORDS = frozenset(
    {"name", "ssn", "dob", "birthday", "birthdate", "phone", "mobile", "address", "passport"}
)
"""Words that make a compound key personal (``holder_name``, ``patientName``)."""


def _key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^0-9A-Za-z\u0080-\uffff]+", spaced.lower()) if w]


def _check_value(value: object, where: str, depth: int) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise JournalEntryError(f"extra {where}: not a finite number")
        return
    if isinstance(value, str):
        if _ID_NUMBER_VALUE.search(value):
            raise JournalEntryError(f"extra {where}: looks like an ID number; not journalled")
        return
    if depth >= MAX_DEPTH:
        raise JournalEntryError(f"extra {where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        _check_mapping(value, where, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]", depth + 1)
        return
    raise JournalEntryError(f"extra {where}: {type(value).__name__} is not a JSON value")


def _check_mapping(mapping: Mapping[Any, object], where: str, depth: int) -> None:
    for key, value in mapping.items():
        if not isinstance(key, str) or not key:
            raise JournalEntryError(f"extra {where}: keys must be non-empty strings")
        words = _key_words(key)
        if "".join(words) in DENIED_EXTRA_KEYS or any(w in DENIED_KEY_WORDS for w in words):
            raise JournalEntryError(f"extra key {key!r} names personal data; not journalled")
        _check_value(value, f"{where}.{key}" if where else key, depth)


def check_non_personal(mapping: Mapping[str, object]) -> None:
    """Check that ``mapping`` holds no personal data and only JSON values (string keys,
    finite numbers, at most :data:`MAX_DEPTH` levels below it). Raises
    :class:`JournalEntryError` naming the key or value refused."""
    if not isinstance(mapping, Mapping):
        raise JournalEntryError("extra must be a mapping")
    _check_mapping(mapping, "", 0)


def non_personal_copy(
    mapping: Mapping[str, object], max_bytes: int, what: str = "extra"
) -> dict[str, object]:
    """A JSON-ready copy of ``mapping`` (called ``what`` in errors) after
    :func:`check_non_personal`, refused as well beyond ``max_bytes`` of canonical JSON.
    Raises :class:`JournalEntryError`."""
    check_non_personal(mapping)
    try:
        text = canonical_json(dict(mapping))  # a plain dict: json cannot encode a proxy
    except JsonError as exc:
        raise JournalEntryError(f"{what} is not JSON: {exc.reason}") from None
    if len(text) > max_bytes:
        raise JournalEntryError(f"{what} is {len(text)} bytes of JSON, at most {max_bytes}")
    copied: dict[str, object] = parse_json(text)
    return copied
