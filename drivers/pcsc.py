"""PC/SC readers through pyscard's thin ``smartcard.scard`` layer (pcsc-lite on Linux).

Every call maps a PC/SC result code to a typed :mod:`terminal.errors` error, so callers never
see a bare ``hresult``. :class:`CardWatcher` reports card and reader events from
``SCardGetStatusChange`` - it blocks in the service, it does not poll - and, unlike pyscard's
own monitors, survives a pcscd restart and a reader unplug: when the service goes away it
drops its context, waits for the service with back-off and carries on.
"""

from __future__ import annotations

import logging
import threading
import time

from smartcard import scard

from terminal.devices.reader import (
    CardInserted,
    CardRemoved,
    EventSink,
    Interface,
    ReaderAdded,
    ReaderInfo,
    ReaderRemoved,
    ServiceLost,
    ServiceRestored,
)
from terminal.errors import (
    CardRemovedError,
    CardUnresponsiveError,
    NoCardError,
    NoReaderError,
    PcscUnavailableError,
    ReaderError,
)

log = logging.getLogger(__name__)

PNP_READER = "\\\\?PnP?\\Notification"
INFINITE = 0xFFFFFFFF

_SERVICE_GONE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_E_INVALID_HANDLE,
    scard.SCARD_F_COMM_ERROR,
    scard.SCARD_E_NO_READERS_AVAILABLE,
}
_CARD_GONE = {
    scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_E_NO_SMARTCARD,
    scard.SCARD_W_RESET_CARD,
    scard.SCARD_E_NOT_TRANSACTED,
    scard.SCARD_E_COMM_DATA_LOST,
}
_PROTOCOLS = {"T=0": scard.SCARD_PROTOCOL_T0, "T=1": scard.SCARD_PROTOCOL_T1}


def _u32(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


def _message(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult)} (0x{_u32(hresult):08X})"


def _is(hresult: int, codes: set[int]) -> bool:
    return _u32(hresult) in {_u32(c) for c in codes}


def is_contactless_atr(atr: bytes) -> bool:
    """True for a PC/SC part 3 pseudo-ATR (``3B 8n 80 01 ...``) of a contactless card."""
    return len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"


def establish_context() -> int:
    """SCardEstablishContext, or :class:`PcscUnavailableError` when pcscd is not running."""
    try:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    except scard.error as exc:  # pyscard raises when the library itself cannot be used
        raise PcscUnavailableError(f"PC/SC library unusable: {exc}") from exc
    if hresult != scard.SCARD_S_SUCCESS:
        raise PcscUnavailableError(f"PC/SC service not available: {_message(hresult)}")
    return context


def release_context(context: int) -> None:
    scard.SCardReleaseContext(context)


def list_readers(context: int) -> list[str]:
    hresult, names = scard.SCardListReaders(context, [])
    if _is(hresult, {scard.SCARD_E_NO_READERS_AVAILABLE}):
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        if _is(hresult, _SERVICE_GONE):
            raise PcscUnavailableError(f"PC/SC service went away: {_message(hresult)}")
        raise ReaderError(f"cannot list readers: {_message(hresult)}")
    return list(names)


class PcscConnection:
    """A connected card: ``SCardConnect`` in shared mode, T=0 or T=1."""

    def __init__(self, context: int, owns_context: bool, reader: str, protocol: str | None) -> None:
        self.reader = reader
        self._context = context
        self._owns_context = owns_context
        wanted = (
            _PROTOCOLS[protocol] if protocol else scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        hresult, handle, active = scard.SCardConnect(
            context, reader, scard.SCARD_SHARE_SHARED, wanted
        )
        if hresult != scard.SCARD_S_SUCCESS:
            self._release_context()
            raise _connect_error(reader, hresult)
        self._handle = handle
        self._active = active
        self.protocol = "T=1" if active == scard.SCARD_PROTOCOL_T1 else "T=0"
        hresult, _name, _state, _proto, atr = scard.SCardStatus(handle)
        if hresult != scard.SCARD_S_SUCCESS:
            self.close()
            raise _card_error(hresult)
        self.atr = bytes(atr)
        self.interface = (
            Interface.CONTACTLESS if is_contactless_atr(self.atr) else Interface.CONTACT
        )

    def transmit_raw(self, apdu: bytes) -> bytes:
        """SCardTransmit one APDU; typed errors when the card or the service is gone."""
        hresult, answer = scard.SCardTransmit(self._handle, self._active, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            raise _card_error(hresult)
        if len(answer) < 2:
            # vpcd and some readers report a dropped card as an empty answer.
            raise CardRemovedError(f"card gave no answer in {self.reader!r}: removed or mute")
        return bytes(answer)

    def close(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
            self._handle = None
        self._release_context()

    def _release_context(self) -> None:
        if self._owns_context and self._context is not None:
            release_context(self._context)
            self._context = None

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect_error(reader: str, hresult: int) -> ReaderError:
    code = _u32(hresult)
    if code in (_u32(scard.SCARD_E_NO_SMARTCARD), _u32(scard.SCARD_W_REMOVED_CARD)):
        return NoCardError(f"no card in reader {reader!r}")
    if code == _u32(scard.SCARD_E_UNKNOWN_READER):
        return NoReaderError(f"no reader named {reader!r}")
    if code in (_u32(scard.SCARD_W_UNRESPONSIVE_CARD), _u32(scard.SCARD_W_UNPOWERED_CARD)):
        return CardUnresponsiveError(f"card in {reader!r} does not answer: {_message(hresult)}")
    if _is(hresult, _SERVICE_GONE):
        return PcscUnavailableError(f"PC/SC service went away: {_message(hresult)}")
    return ReaderError(f"cannot connect to {reader!r}: {_message(hresult)}")


def _card_error(hresult: int) -> ReaderError:
    if _is(hresult, _CARD_GONE):
        return CardRemovedError(f"card left the reader: {_message(hresult)}")
    if _is(hresult, _SERVICE_GONE):
        return PcscUnavailableError(f"PC/SC service went away: {_message(hresult)}")
    if _u32(hresult) == _u32(scard.SCARD_W_UNRESPONSIVE_CARD):
        return CardUnresponsiveError(f"card does not answer: {_message(hresult)}")
    return ReaderError(f"PC/SC error: {_message(hresult)}")


class PcscBackend:
    """The PC/SC reader family. Each call opens its own short-lived context."""

    def __init__(self, protocol: str | None = None) -> None:
        if protocol is not None and protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be T=0 or T=1, not {protocol!r}")
        self.protocol = protocol

    def readers(self) -> list[ReaderInfo]:
        context = establish_context()
        try:
            names = list_readers(context)
            if not names:
                return []
            hresult, states = scard.SCardGetStatusChange(
                context, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in names]
            )
            if hresult != scard.SCARD_S_SUCCESS:
                raise _card_error(hresult)
            return [
                ReaderInfo(
                    name=name,
                    card_present=bool(state & scard.SCARD_STATE_PRESENT)
                    and not state & scard.SCARD_STATE_MUTE,
                    atr=bytes(atr) if state & scard.SCARD_STATE_PRESENT else None,
                )
                for name, state, atr in states
            ]
        finally:
            release_context(context)

    def connect(self, reader: str) -> PcscConnection:
        context = establish_context()
        return PcscConnection(context, True, reader, self.protocol)

    def watch(self, sink: EventSink) -> CardWatcher:
        return CardWatcher(sink)


class CardWatcher:
    """Reports :mod:`terminal.devices.reader` events for every reader: :meth:`run` in the
    caller's thread (the runtime's supervisor), or :meth:`start` for a daemon thread.

    Blocks in ``SCardGetStatusChange`` (the ``\\\\?PnP?\\Notification`` pseudo-reader covers
    readers coming and going). When pcscd stops, the call fails with a service error: the
    watcher reports :class:`ServiceLost`, reports every known card and reader as gone, and
    re-establishes a context with back-off; when that works it reports
    :class:`ServiceRestored` and the readers and cards it finds.

    A card found in a reader when the watcher starts, or when pcscd comes back, is reported
    :class:`CardInserted` like a card put down now: PC/SC cannot tell a card left lying from
    one put down while nobody watched, and a holder who put a card down during a restart
    expects it to be read. Not charging or admitting such a card twice is the runtime's
    part: its repeat-tap and passback windows are rebuilt from the journal
    (docs/runtime.md, "Exactly once across restarts").
    """

    def __init__(self, sink: EventSink, max_backoff: float = 1.0) -> None:
        self._sink = sink
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._context: int | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cards: dict[str, tuple[bytes, int]] = {}  # reader -> (ATR, pcsc-lite event count)
        self._readers: set[str] = set()

    def start(self) -> CardWatcher:
        """Run the watcher in a daemon thread of its own until :meth:`stop`."""
        self._thread = threading.Thread(target=self.run, name="pcsc-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._context is not None:
                scard.SCardCancel(self._context)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CardWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _emit(self, event: object) -> None:
        try:
            self._sink(event)  # type: ignore[arg-type]
        except Exception:  # a faulty consumer must not kill the watcher
            # The event's name and reader only: an ATR's historical bytes may carry an
            # issuer's card data, which logs never hold.
            log.exception(
                "reader event consumer failed on %s (%s)",
                type(event).__name__,
                getattr(event, "reader", "-"),
            )

    def run(self) -> None:
        """Watch until :meth:`stop`. Raises only for what is no service failure (a bug, an
        unexpected PC/SC answer); called again it carries on with the cards it knew, so a
        supervisor that restarts it reports no card twice."""
        backoff = 0.05
        lost = False
        while not self._stop.is_set():
            try:
                context = establish_context()
            except PcscUnavailableError as exc:
                if not lost:
                    lost = True
                    self._forget_all(str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            with self._lock:
                self._context = context
            if lost:
                lost = False
                self._emit(ServiceRestored())
            backoff = 0.05
            try:
                reason = self._watch(context)
            finally:
                with self._lock:
                    self._context = None
                release_context(context)
            if reason is not None and not self._stop.is_set():
                lost = True
                self._forget_all(reason)

    def _forget_all(self, reason: str) -> None:
        self._emit(ServiceLost(reason))
        for reader in sorted(self._cards):
            self._emit(CardRemoved(reader))
        self._cards.clear()
        for reader in sorted(self._readers):
            self._emit(ReaderRemoved(reader))
        self._readers.clear()

    def _sync_readers(self, context: int) -> list[str]:
        names = list_readers(context)
        for name in sorted(set(names) - self._readers):
            self._emit(ReaderAdded(name))
        for name in sorted(self._readers - set(names)):
            if self._cards.pop(name, None) is not None:
                self._emit(CardRemoved(name))
            self._emit(ReaderRemoved(name))
        self._readers = set(names)
        return names

    def _watch(self, context: int) -> str | None:
        """Watch until stopped (None) or the service fails (the reason)."""
        try:
            names = self._sync_readers(context)
        except PcscUnavailableError as exc:
            return exc.reason
        states: dict[str, int] = {name: scard.SCARD_STATE_UNAWARE for name in names}
        states[PNP_READER] = scard.SCARD_STATE_UNAWARE
        while not self._stop.is_set():
            hresult, new_states = scard.SCardGetStatusChange(
                context, INFINITE, list(states.items())
            )
            if _u32(hresult) == _u32(scard.SCARD_E_CANCELLED) or self._stop.is_set():
                return None
            if _u32(hresult) == _u32(scard.SCARD_E_TIMEOUT):
                continue
            if hresult != scard.SCARD_S_SUCCESS:
                return f"PC/SC service went away: {_message(hresult)}"
            readers_changed = False
            for name, event_state, atr in new_states:
                current = event_state & ~scard.SCARD_STATE_CHANGED
                if name == PNP_READER:
                    if event_state & scard.SCARD_STATE_CHANGED:
                        readers_changed = True
                    states[name] = current
                    continue
                if event_state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE):
                    readers_changed = True
                    continue
                states[name] = current
                self._card_state(name, event_state, bytes(atr))
            if readers_changed:
                try:
                    names = self._sync_readers(context)
                except PcscUnavailableError as exc:
                    return exc.reason
                kept = {n: states.get(n, scard.SCARD_STATE_UNAWARE) for n in names}
                kept[PNP_READER] = states[PNP_READER]
                states = kept
        return None

    def _card_state(self, reader: str, state: int, atr: bytes) -> None:
        present = bool(state & scard.SCARD_STATE_PRESENT) and not state & scard.SCARD_STATE_MUTE
        # pcsc-lite counts insertions and removals in the high word: a changed count with a
        # card present is a new card even when a quick swap left the same ATR.
        seen = (atr, state >> 16)
        known = reader in self._cards
        if present and (not known or self._cards[reader] != seen):
            if known:
                self._emit(CardRemoved(reader))
            self._cards[reader] = seen
            self._emit(CardInserted(reader, atr))
        elif not present and known:
            del self._cards[reader]
            self._emit(CardRemoved(reader))


def wait_for_card(reader: str, present: bool = True, timeout: float = 10.0) -> bool:
    """Block in SCardGetStatusChange until ``reader`` holds a card (or is empty when
    ``present`` is False). True when that happened within ``timeout`` seconds."""
    context = establish_context()
    try:
        state = scard.SCARD_STATE_UNAWARE
        deadline_ms = int(timeout * 1000)
        end = time.monotonic() + timeout
        while True:
            hresult, states = scard.SCardGetStatusChange(context, deadline_ms, [(reader, state)])
            if _u32(hresult) == _u32(scard.SCARD_E_TIMEOUT):
                return False
            if hresult != scard.SCARD_S_SUCCESS:
                raise _connect_error(reader, hresult)
            _name, event_state, _atr = states[0]
            is_present = bool(event_state & scard.SCARD_STATE_PRESENT) and not (
                event_state & scard.SCARD_STATE_MUTE
            )
            if is_present == present:
                return True
            state = event_state & ~scard.SCARD_STATE_CHANGED
            deadline_ms = int((end - time.monotonic()) * 1000)
            if deadline_ms <= 0:
                return False
    finally:
        release_context(context)
