"""The strict trace card: a card (and a PSAM) that answers only what a trace recorded.

The simulator and the terminal were written by the same hands, so a misreading of the
specification shared by both passes every test. A trace (:mod:`terminal.trace.format`) puts the
field in the simulator's place: exchanges in the shape of real card logs, replayed here in
their recorded order. A command that is not the next recorded one - another P2, a missing Le,
an extra command, a command for the card while the PSAM's turn is next, anything after the
end - is a :class:`TraceMismatch` (an ``AssertionError``: no terminal code catches it, the test
fails naming the position and both commands in hex).

Two ways in:

* :class:`TraceBackend`, a :class:`terminal.devices.reader.ReaderBackend` in process: a card reader
  and, when the trace has PSAM exchanges, a PSAM reader;
* :class:`TraceCard`, a :class:`firmware_sim.vpcd.VirtualICC`, so a trace runs through the
  real pcscd (tests/integration/test_traces_vpcd.py).

:class:`TraceRandom` hands the terminal the recorded random values, so INTERNAL and EXTERNAL
AUTHENTICATE carry the recorded process factor and originals.

This module is the card side only: it reads the trace format (:mod:`terminal.trace.format`) and
shows the trace as the reader interface the terminal uses (:mod:`terminal.devices.reader`); it never
runs terminal code. Running the flow a trace names is the tests' job
(``tests/unit/trace_flows.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from firmware_sim.spec.status import SW
from terminal.devices.reader import Interface, ReaderInfo
from terminal.errors import NoCardError, NoReaderError
from terminal.trace.format import Exchange, Slot, Trace

CARD_READER = "Trace card reader"
PSAM_READER = "Trace PSAM reader"
DEFAULT_PSAM_ATR = bytes.fromhex("3B6900004F4E45434152442D50")
"""The ATR of a PSAM whose trace gives none: T=0, historical bytes "ONECARD-P"."""
NO_PRECISE_DIAGNOSIS = SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big")
"""What a :class:`TraceCard` answers over vpcd after a mismatch (the mismatch is kept)."""

_FIELD_NAMES = ("CLA", "INS", "P1", "P2", "Lc/Le")


class TraceMismatch(AssertionError):
    """The terminal sent what the trace did not record (position, expected, received)."""


def _hex(data: bytes) -> str:
    return data.hex(" ").upper() if data else "(nothing)"


def _where(index: int, exchange: Exchange) -> str:
    line = f", line {exchange.line}" if exchange.line else ""
    return f"exchange {index + 1}{line}"


def _difference(expected: bytes, received: bytes) -> str:
    """Where two commands part: the first differing byte, by its header name."""
    for i, (a, b) in enumerate(zip(expected, received, strict=False)):
        if a != b:
            name = _FIELD_NAMES[i] if i < len(_FIELD_NAMES) else f"data byte {i - 5}"
            return f"first difference at byte {i} ({name}): {a:02X} expected, {b:02X} received"
    if len(received) > len(expected):
        return f"the terminal's command is longer (extra {_hex(received[len(expected) :])})"
    return f"the terminal's command is shorter (missing {_hex(expected[len(received) :])})"


class TraceReplay:
    """The position in a trace, shared by every connection (card and PSAM) of one replay."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.position = 0
        self.failures: list[TraceMismatch] = []
        self._lock = threading.Lock()

    def answer(self, slot: Slot, command: bytes) -> bytes:
        """The recorded answer to ``command`` on ``slot`` if it is the next exchange."""
        with self._lock:
            try:
                return self._answer(slot, bytes(command))
            except TraceMismatch as mismatch:
                self.failures.append(mismatch)
                raise

    def _answer(self, slot: Slot, command: bytes) -> bytes:
        exchanges = self.trace.exchanges
        if self.failures:
            raise TraceMismatch(
                f"the replay already failed ({self.failures[0]}); the {slot.value} then "
                f"received {_hex(command)}"
            )
        if self.position >= len(exchanges):
            raise TraceMismatch(
                f"after the end of the trace ({len(exchanges)} exchanges): the {slot.value} "
                f"received {_hex(command)}"
            )
        expected = exchanges[self.position]
        where = _where(self.position, expected)
        if expected.slot is not slot:
            raise TraceMismatch(
                f"{where}: the trace expects {_hex(expected.command)} for the "
                f"{expected.slot.value}; the {slot.value} received {_hex(command)}"
            )
        if expected.command != command:
            raise TraceMismatch(
                f"{where} ({slot.value}): expected {_hex(expected.command)}, received "
                f"{_hex(command)}; {_difference(expected.command, command)}"
            )
        if expected.answer is None:
            raise TraceMismatch(
                f"{where} ({slot.value}): the trace holds no answer to {_hex(command)}"
                + (f" ({expected.note})" if expected.note else "")
            )
        self.position += 1
        return expected.answer

    def assert_complete(self) -> None:
        """Fail with the first mismatch, or if recorded exchanges were left unused."""
        if self.failures:
            raise self.failures[0]
        left = len(self.trace.exchanges) - self.position
        if left:
            nxt = self.trace.exchanges[self.position]
            raise TraceMismatch(
                f"{left} recorded exchange(s) not used; the next is {_where(self.position, nxt)}"
                f": {_hex(nxt.command)} for the {nxt.slot.value}"
            )


class TraceConnection:
    """A :class:`terminal.devices.reader.CardConnection` on one slot of a replay."""

    def __init__(
        self,
        replay: TraceReplay,
        slot: Slot,
        reader: str,
        atr: bytes,
        protocol: str,
        interface: Interface,
    ) -> None:
        self._replay = replay
        self._slot = slot
        self.reader = reader
        self.atr = atr
        self.protocol = protocol
        self.interface = interface
        self.closed = False

    def transmit_raw(self, apdu: bytes) -> bytes:
        if self.closed:
            raise TraceMismatch(
                f"the {self._slot.value} connection was closed; received {_hex(bytes(apdu))}"
            )
        return self._replay.answer(self._slot, bytes(apdu))

    def close(self) -> None:
        self.closed = True


class TraceBackend:
    """A reader back-end holding the trace's card (``CARD_READER``) and, if the trace has
    PSAM exchanges, its PSAM (``PSAM_READER``)."""

    def __init__(self, trace: Trace) -> None:
        if trace.atr is None:
            raise ValueError("the trace has no ATR (no # atr: or # ats: line): no card to show")
        self.trace = trace
        self.replay = TraceReplay(trace)
        self.card_reader = CARD_READER
        self.psam_reader: str | None = PSAM_READER if trace.has_psam else None

    def readers(self) -> list[ReaderInfo]:
        assert self.trace.atr is not None
        out = [ReaderInfo(CARD_READER, True, self.trace.atr)]
        if self.psam_reader is not None:
            out.append(ReaderInfo(PSAM_READER, True, psam_atr(self.trace)))
        return out

    def connect(self, reader: str) -> TraceConnection:
        trace = self.trace
        if reader == CARD_READER:
            assert trace.atr is not None
            return TraceConnection(
                self.replay, Slot.CARD, reader, trace.atr, trace.protocol, trace.interface
            )
        if reader == PSAM_READER:
            if self.psam_reader is None:
                raise NoCardError("the trace has no PSAM exchange: the PSAM reader is empty")
            return TraceConnection(
                self.replay,
                Slot.PSAM,
                reader,
                psam_atr(trace),
                trace.psam_protocol,
                Interface.CONTACT,
            )
        raise NoReaderError(f"no reader named {reader!r} (readers: {CARD_READER!r}, ...)")

    def assert_complete(self) -> None:
        self.replay.assert_complete()


def psam_atr(trace: Trace) -> bytes:
    return trace.psam_atr if trace.psam_atr is not None else DEFAULT_PSAM_ATR


class TraceCard:
    """One slot of a replay as a :class:`firmware_sim.vpcd.VirtualICC`.

    Over vpcd an exception would only end the bridge's thread (the terminal would see a card
    removal), so a mismatch is kept in the replay - :meth:`TraceReplay.assert_complete` raises
    it - and the card answers ``6F00``.
    """

    def __init__(self, replay: TraceReplay, slot: Slot = Slot.CARD) -> None:
        self.replay = replay
        self.slot = slot
        self.powered = False
        trace = replay.trace
        self._atr = (trace.atr or b"") if slot is Slot.CARD else psam_atr(trace)

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> bytes:
        # The position is kept: a reader may power-cycle a card it already talked to.
        self.powered = True
        return self._atr

    def power_off(self) -> None:
        self.powered = False

    def process(self, apdu: bytes) -> bytes:
        try:
            return self.replay.answer(self.slot, bytes(apdu))
        except TraceMismatch:
            return NO_PRECISE_DIAGNOSIS


class TraceRandom:
    """The terminal's random source in a replay: the recorded values, in order.

    Asked for a size other than the next value's, or for more values than recorded, it
    fails (:class:`TraceMismatch`); :meth:`assert_complete` fails if values were left.
    """

    def __init__(self, values: Sequence[bytes]) -> None:
        self.values = tuple(bytes(v) for v in values)
        self.position = 0

    def __call__(self, n: int) -> bytes:
        if self.position >= len(self.values):
            raise TraceMismatch(
                f"the terminal drew random value {self.position + 1} ({n} bytes); the trace "
                f"records {len(self.values)}"
            )
        value = self.values[self.position]
        if len(value) != n:
            raise TraceMismatch(
                f"random value {self.position + 1}: the terminal asked for {n} bytes, the trace "
                f"records {len(value)} ({_hex(value)})"
            )
        self.position += 1
        return value

    def assert_complete(self) -> None:
        left = len(self.values) - self.position
        if left:
            raise TraceMismatch(f"{left} recorded random value(s) not drawn by the terminal")
