"""The two record files of the SSC application environment, decoded by the layout table.

* EF05, issuer data (发卡机构数据): card identification code, category, spec version,
  initialising institution, issue and expiry dates, card number.
* EF06, holder data (持卡人基本信息): social security number, name (tag 09, extended by
  tag 4E from 2.0 on), sex, ethnicity, birthplace, birth date.

Input is a mapping tag -> raw value (records are read by tag, since record numbers differ
between generations). A missing tag gives a ``None`` field; tags of the other file and
unknown tags are ignored. A bad value of an item the card is identified by (card
identification code, card number) raises :class:`~terminal.errors.FieldError` naming the file
and tag (``EF05 tag 07 (card_number): ...``); a bad value of any other item is left out and
named in ``odd``, so one odd optional field never fails a read. Nothing else escapes.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from terminal.errors import FieldError
from terminal.iso7816.tlv import records_by_tag
from terminal.ssc import cardnumber, layout
from terminal.ssc.fields import CardCategory, decode_item, item_label, region_of_card_id

__all__ = [
    "HolderData",
    "IssuerData",
    "decode_holder_data",
    "decode_issuer_data",
    "parse_holder_file",
    "parse_issuer_file",
]


def _mask(value: str | None, head: int = 4, tail: int = 4) -> str | None:
    """``5001**********1234``: an identifier with all but its ends hidden, for repr/logs."""
    if value is None:
        return None
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


@dataclass(frozen=True)
class IssuerData:
    """EF05, issuer data. ``card_id`` (tag 01) and ``institution`` (tag 04) are upper-case
    hex; ``region`` is the first 6 digits of ``card_id``; ``category`` is the raw code of
    tag 02; ``card_number_valid`` says whether tag 07 carries the right check character."""

    card_id: str | None = None
    region: str | None = None
    category: str | None = None
    spec_version: str | None = None
    institution: str | None = None
    issue_date: datetime.date | None = None
    expiry_date: datetime.date | None = None
    card_number: str | None = None
    card_number_valid: bool = False
    odd: tuple[str, ...] = ()
    """Items left out because their value did not decode, each with the reason."""

    @property
    def generation(self) -> layout.Generation | None:
        """Card generation from the spec version (tag 03): an absent or empty version is 1.0
        (Sichuan spec); None for a version this terminal does not know."""
        return layout.Generation.from_spec_version(self.spec_version)

    @property
    def card_category(self) -> CardCategory | None:
        """``category`` as a :class:`CardCategory`; None when absent or not a known code."""
        if self.category is None:
            return None
        return CardCategory.from_code(self.category)

    def __repr__(self) -> str:
        return (
            f"IssuerData(card_id={_mask(self.card_id, 6, 0)!r}, region={self.region!r},"
            f" category={self.category!r}, spec_version={self.spec_version!r},"
            f" institution={self.institution!r}, issue_date={self.issue_date!r},"
            f" expiry_date={self.expiry_date!r}, card_number={_mask(self.card_number, 1, 1)!r},"
            f" card_number_valid={self.card_number_valid!r}, odd={self.odd!r})"
        )


@dataclass(frozen=True)
class HolderData:
    """EF06, holder data. ``name`` is tag 09 with tag 4E (name extension) appended; ``sex``
    is the ASCII code (1 male, 2 female, 9 unstated); ``ethnicity`` the GB 3304 code and
    ``birthplace`` the GB/T 2260 region code, as digits.

    Its ``repr`` masks the social security number and hides the name and birth date.
    """

    ssn: str | None = None
    name: str | None = None
    sex: str | None = None
    ethnicity: str | None = None
    birthplace: str | None = None
    birth_date: datetime.date | None = None
    odd: tuple[str, ...] = ()
    """Items left out because their value did not decode, each with the reason."""

    def __repr__(self) -> str:
        hidden = "<hidden>"
        return (
            f"HolderData(ssn={_mask(self.ssn)!r},"
            f" name={hidden if self.name is not None else None},"
            f" sex={self.sex!r}, ethnicity={self.ethnicity!r},"
            f" birthplace={self.birthplace!r},"
            f" birth_date={hidden if self.birth_date is not None else None},"
            f" odd={self.odd!r})"
        )


def _decode_file(
    fid: int, values: Mapping[int, bytes]
) -> tuple[dict[str, str | datetime.date], tuple[str, ...]]:
    """Decoded items of file ``fid`` by item name, absent and empty values left out, and the
    reasons of the items that did not decode (a required item raises instead)."""
    out: dict[str, str | datetime.date] = {}
    odd: list[str] = []
    for tag, raw in values.items():
        item = layout.BY_TAG.get(tag)
        if item is None or item.file != fid:
            continue
        try:
            value = decode_item(item, raw)
        except FieldError as exc:
            if item.required:
                raise
            odd.append(exc.reason)
            continue
        if value is not None and value != "":
            out[item.name] = value
    return out, tuple(odd)


def _text(fields: Mapping[str, str | datetime.date], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) else None


def _date(fields: Mapping[str, str | datetime.date], name: str) -> datetime.date | None:
    value = fields.get(name)
    return value if isinstance(value, datetime.date) else None


def decode_issuer_data(values: Mapping[int, bytes]) -> IssuerData:
    """Decode EF05 (issuer data) from its values by tag."""
    f, odd = _decode_file(layout.EF05_FID, values)
    card_id = _text(f, "card_id")
    region = None
    if card_id is not None:
        try:
            region = region_of_card_id(card_id)
        except FieldError as exc:
            raise FieldError(f"{item_label(layout.BY_TAG[0x01])}: {exc.reason}") from exc
    card_number = _text(f, "card_number")
    return IssuerData(
        card_id=card_id,
        region=region,
        category=_text(f, "category"),
        spec_version=_text(f, "spec_version"),
        institution=_text(f, "institution"),
        issue_date=_date(f, "issue_date"),
        expiry_date=_date(f, "expiry_date"),
        card_number=card_number,
        card_number_valid=card_number is not None and cardnumber.is_valid(card_number),
        odd=odd,
    )


def decode_holder_data(values: Mapping[int, bytes]) -> HolderData:
    """Decode EF06 (holder data) from its values by tag; tag 4E is appended to the name."""
    f, odd = _decode_file(layout.EF06_FID, values)
    name_parts = [p for p in (_text(f, "name"), _text(f, "name_ext")) if p]
    return HolderData(
        ssn=_text(f, "ssn"),
        name="".join(name_parts) if name_parts else None,
        sex=_text(f, "sex"),
        ethnicity=_text(f, "ethnicity"),
        birthplace=_text(f, "birthplace"),
        birth_date=_date(f, "birth_date"),
        odd=odd,
    )


def parse_issuer_file(data: bytes) -> IssuerData:
    """Decode EF05 from a 'read all records' answer (concatenated SIMPLE-TLV records).

    Raises :class:`~terminal.errors.TlvError` or :class:`~terminal.errors.FieldError`.
    """
    return decode_issuer_data(records_by_tag(data))


def parse_holder_file(data: bytes) -> HolderData:
    """Decode EF06 from a 'read all records' answer (concatenated SIMPLE-TLV records)."""
    return decode_holder_data(records_by_tag(data))
