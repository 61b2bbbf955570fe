"""The in-process reader back-end: cards that live in this process, no PC/SC in between.

For unit tests and tools that drive a simulated card (or any other card object) directly.
It is a back-end like the PC/SC one, chosen by name through the registry (``--backend
inprocess``, ``[readers] backend = "inprocess"``), as python-can's virtual bus is a bus like
the others. What is in its readers is process-wide: :func:`insert` puts a card in a named
reader, :func:`plug` serves every reader of another back-end (a trace replay's card and
PSAM), :func:`clear` empties them all.

A card is anything with ``power_on() -> ATR``, ``power_off()`` and ``process(apdu) ->
answer`` (a :class:`firmware_sim.cardos.CardOS`); :meth:`InProcessConnection.transmit_raw`
hands it the command bytes and returns its answer, as vpcd would over its socket.
"""

from __future__ import annotations

import threading
from typing import Protocol

from terminal.devices.reader import CardConnection, Interface, ReaderBackend, ReaderInfo
from terminal.errors import NoCardError, NoReaderError


class InProcessCard(Protocol):
    """What a card needs to sit in an in-process reader."""

    protocol: str

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


class InProcessConnection:
    """A powered card: ``transmit_raw`` is the card's own ``process``."""

    def __init__(
        self,
        card: InProcessCard,
        reader: str = "in-process",
        interface: Interface = Interface.CONTACT,
    ) -> None:
        self.card = card
        self.atr = card.power_on()
        self.reader = reader
        self.protocol = card.protocol
        self.interface = interface

    def transmit_raw(self, apdu: bytes) -> bytes:
        return self.card.process(apdu)

    def close(self) -> None:
        self.card.power_off()


_lock = threading.Lock()
_cards: dict[str, tuple[InProcessCard, Interface]] = {}
_plugged: list[ReaderBackend] = []


def insert(reader: str, card: InProcessCard, interface: Interface = Interface.CONTACT) -> None:
    """Put ``card`` in the in-process reader ``reader`` (created if new)."""
    with _lock:
        _cards[reader] = (card, interface)


def plug(backend: ReaderBackend) -> None:
    """Serve every reader of ``backend`` (another back-end object) through this one."""
    with _lock:
        _plugged.append(backend)


def clear() -> None:
    """Empty every in-process reader."""
    with _lock:
        _cards.clear()
        _plugged.clear()


class InProcessBackend:
    """The :class:`terminal.devices.reader.ReaderBackend` over the process-wide readers."""

    def __init__(self, **options: object) -> None:
        if options:
            names = ", ".join(sorted(options))
            raise NoReaderError(f"the in-process back-end takes no options ({names})")

    def readers(self) -> list[ReaderInfo]:
        with _lock:
            cards = dict(_cards)
            plugged = list(_plugged)
        infos = [ReaderInfo(name, True, None) for name in cards]
        for backend in plugged:
            infos += backend.readers()
        return infos

    def connect(self, reader: str) -> CardConnection:
        with _lock:
            found = _cards.get(reader)
            plugged = list(_plugged)
        if found is not None:
            card, interface = found
            return InProcessConnection(card, reader, interface)
        for backend in plugged:
            if any(info.name == reader for info in backend.readers()):
                return backend.connect(reader)
        if not found and not plugged:
            raise NoCardError(f"no card in the in-process reader {reader!r}")
        raise NoReaderError(f"no in-process reader named {reader!r}")
