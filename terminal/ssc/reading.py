"""Read a social security card in a reader: pick the reader, connect, read, report.

This is the one place that joins a :class:`terminal.devices.reader.ReaderBackend` to the pure read
session. The result, :class:`CardReading`, renders as the ``onecard read`` JSON (holder data
masked unless revealed) and as the LD/T 33 ``iReadCardBas`` string.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from terminal import ldt33
from terminal.devices.reader import CardChannel, CardConnection, Interface, ReaderBackend
from terminal.errors import NoCardError, NoReaderError
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.atr import historical_bytes
from terminal.pki.truststore import TrustStore
from terminal.privacy.masking import mask_date, mask_middle, mask_name, mask_region
from terminal.ssc.auth import RandomSource, random_bytes
from terminal.ssc.authenticity import CardVerification, card_algorithm, verify_card
from terminal.ssc.records import HolderData
from terminal.ssc.secure_module import SecureModule
from terminal.ssc.session import ReadMode, SscRead, read_ssc

GET_UID = CommandAPDU(0xFF, 0xCA, 0x00, 0x00, le=256)
"""PC/SC part 3 GET DATA (UID) pseudo-APDU, answered by contactless readers."""


@dataclass(frozen=True)
class CardReading:
    reader: str
    interface: Interface
    atr: bytes
    protocol: str
    uid: bytes | None
    ssc: SscRead
    apdu_count: int

    def to_json(self, reveal: bool = False) -> dict[str, object]:
        issuer = self.ssc.issuer
        holder = self.ssc.holder
        return {
            "reader": self.reader,
            "interface": self.interface.value,
            "protocol": self.protocol,
            "atr": self.atr.hex().upper(),
            "uid": self.uid.hex().upper() if self.uid else None,
            "region": issuer.region,
            "card_id": issuer.card_id,
            "card_number": issuer.card_number,
            "card_number_valid": issuer.card_number_valid,
            "category": issuer.category,
            "spec_version": issuer.spec_version,
            "institution": issuer.institution,
            "issue_date": _iso(issuer.issue_date),
            "expiry_date": _iso(issuer.expiry_date),
            # No algorithm template in the FCI is a DES/3DES card (Sichuan spec 10.1).
            "algorithm": _algorithm_flag(self.ssc),
            "algorithm_template": self.ssc.fci.algorithm is not None,
            "holder": None if holder is None else _holder_json(holder, reveal),
            "unreadable": [u.to_json() for u in self.ssc.unreadable],
            "odd": list(issuer.odd) + (list(holder.odd) if holder is not None else []),
            "read_mode": self.ssc.mode.value,
            "apdu_count": self.apdu_count,
        }

    def to_ireadcardbas(self, reveal: bool = False, device_number: str = "") -> str:
        issuer = self.ssc.issuer
        holder = self.ssc.holder
        ssn = holder.ssn if holder else None
        name = holder.name if holder else None
        if not reveal:
            ssn = mask_middle(ssn) if ssn else ssn
            name = mask_name(name) if name else name
        return ldt33.ireadcardbas(
            region=issuer.region,
            ssn=ssn,
            card_number=issuer.card_number,
            card_id=issuer.card_id,
            name=name,
            atr=self.atr,
            spec_version=issuer.spec_version,
            issue_date=issuer.issue_date,
            expiry_date=issuer.expiry_date,
            device_number=device_number,
        )


def _algorithm_flag(read: SscRead) -> int | None:
    """The card's algorithm flag as the terminal uses it (DES/3DES without a template); the
    raw flag for one no module holds (SSF33, unknown)."""
    algorithm = card_algorithm(read)
    return int(algorithm) if algorithm is not None else read.fci.algorithm


def _iso(value: datetime.date | None) -> str | None:
    return value.isoformat() if value else None


def _holder_json(holder: HolderData, reveal: bool) -> dict[str, object]:
    if reveal:
        return {
            "ssn": holder.ssn,
            "name": holder.name,
            "sex": holder.sex,
            "ethnicity": holder.ethnicity,
            "birthplace": holder.birthplace,
            "birth_date": _iso(holder.birth_date),
        }
    return {
        "ssn": mask_middle(holder.ssn) if holder.ssn else None,
        "name": mask_name(holder.name) if holder.name else None,
        "sex": holder.sex,
        "ethnicity": holder.ethnicity,
        "birthplace": mask_region(holder.birthplace) if holder.birthplace else None,
        "birth_date": mask_date(holder.birth_date) if holder.birth_date else None,
    }


def choose_reader(backend: ReaderBackend, reader: str | None) -> str:
    """``reader`` if it exists, else the first reader holding a card."""
    readers = backend.readers()
    if not readers:
        raise NoReaderError("no card reader is connected")
    if reader is not None:
        for info in readers:
            if info.name == reader:
                if not info.card_present:
                    raise NoCardError(f"no card in reader {reader!r}")
                return reader
        names = ", ".join(repr(info.name) for info in readers)
        raise NoReaderError(f"no reader named {reader!r} (readers: {names})")
    for info in readers:
        if info.card_present:
            return info.name
    raise NoCardError("no card in any reader")


@dataclass
class _OpenCard:
    name: str
    connection: CardConnection
    channel: CardChannel
    uid: bytes | None

    def reading(self, ssc: SscRead) -> CardReading:
        return CardReading(
            reader=self.name,
            interface=self.connection.interface,
            atr=self.connection.atr,
            protocol=self.connection.protocol,
            uid=self.uid,
            ssc=ssc,
            apdu_count=self.channel.apdu_count,
        )


@contextmanager
def _open_card(backend: ReaderBackend, reader: str | None) -> Iterator[_OpenCard]:
    """Connect to the card in ``reader`` (or the first card found); contactless cards are
    asked for their UID first."""
    name = choose_reader(backend, reader)
    connection = backend.connect(name)
    try:
        channel = CardChannel(connection)
        uid = None
        if connection.interface is Interface.CONTACTLESS:
            answer = channel.transmit(GET_UID)
            uid = answer.data if answer.ok else None
        yield _OpenCard(name, connection, channel, uid)
    finally:
        connection.close()


def verify_card_in_reader(
    backend: ReaderBackend,
    reader: str | None,
    module: SecureModule | None,
    trust_store: TrustStore | None,
    today: datetime.date,
    mode: ReadMode = ReadMode.AUTO,
    random: RandomSource = random_bytes,
) -> tuple[CardReading | None, CardVerification]:
    """Connect to the card in ``reader`` and run :func:`verify_card`; the reading is None
    when the card could not be read at all (blocked, not a social security card).
    ``random``: the terminal's random bytes (a trace replay hands in the recorded ones)."""
    with _open_card(backend, reader) as card:
        verification = verify_card(
            card.channel,
            historical_bytes(card.connection.atr),
            module,
            trust_store,
            today,
            mode,
            random=random,
        )
        reading = card.reading(verification.read) if verification.read is not None else None
        return reading, verification


def read_card(
    backend: ReaderBackend,
    reader: str | None = None,
    mode: ReadMode = ReadMode.AUTO,
    read_holder: bool = True,
) -> CardReading:
    """Connect to the card in ``reader`` (or the first card found) and read the SSSE."""
    with _open_card(backend, reader) as card:
        return card.reading(read_ssc(card.channel, mode, read_holder))
