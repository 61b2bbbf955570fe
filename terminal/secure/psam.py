"""The PSAM secure module: SSSE master keys in a PSAM card in a PC/SC slot.

The module speaks to the PSAM through :class:`terminal.devices.reader.CardChannel` over any
:class:`terminal.devices.reader.CardConnection` (it imports no driver). On the wire
(docs/card-authentication.md, "PSAM commands"):

=========================  ==================================================================
on open                    ``00 A4 04 00 06 D15600000590 00`` SELECT the PSAM application;
                           ``6A82`` means this card is no PSAM (:class:`NoSecureModuleError`)
                           ``00 B0 96 00 06`` READ BINARY EF16 by SFI 16: the PSAM's terminal
                           number, 6 bytes BCD (a PSAM without EF16 reports 12 zeros)
``cryptogram()``           ``BF DE <usage> <alg> 18 D1 D2 P`` DELIVERY SESSION KEY: the PSAM
                           derives the card key from its master key (usage 01 irk, 02 rkssse,
                           03 ukssse; alg 01 3DES, 03 SM4) with D1 = the region factor
                           (``ASCII(region) || "sx"``, Zhejiang ``"3303" "00" "sx"``) and
                           D2 = ATR historical bytes T6..TD, then the session key from P, and
                           keeps it in RAM. ``6A88`` key not present, ``6A81`` algorithm not
                           present.
                           ``80 FA 00 00 08 X 08`` CIPHER DATA: the cryptogram of X under the
                           delivered session key (``6985`` if none was delivered).
``purchase_mac1()``        ``80 70 00 00 24 <36 bytes> 08`` MAC1 of a T-Union purchase
                           (docs/transit.md): the PSAM derives the card's purchase key from its
                           ``purchase`` master, increments its transaction serial, derives the
                           session key and answers serial(4) || MAC1(4); it keeps the session.
                           ``6A81`` no master for the card's algorithm, ``6A88`` no purchase key.
``verify_mac2()``          ``80 72 00 00 04 MAC2`` checks MAC2 against the newest session;
                           ``80 72 00 00 08 serial(4) MAC2`` against the session of that
                           serial (torn purchase recovery). ``9000`` valid, ``9302`` invalid,
                           ``6985`` no such session.
``algorithms()``           learned once, lazily, with one DELIVERY SESSION KEY per algorithm
                           (``6A81``: absent; ``9000`` or ``6A88``: the table is there)
=========================  ==================================================================

A cryptogram takes two APDUs that share state in the PSAM, so they run under a lock: two
threads using one module never interleave a delivery and a CIPHER DATA. (Another *process*
sharing the reader could; a PSAM slot belongs to one terminal process.)

**The link heals itself.** A module opened with :meth:`PsamSecureModule.open` knows how to
connect again: when an exchange fails with a reader error (pcscd restarted - every handle
it gave out is void -, the PSAM reset or reseated) the module drops the connection,
connects again, SELECTs the application and reads EF16 as on open, and repeats the
operation once. Every operation may be repeated so: a MAC1 that reached the PSAM before the
link broke only spent a transaction serial (the card sees the new one in DEBIT), a MAC2
check after a reset answers "no such session" (the purchase then journals the TAC
unverified), and a cryptogram is a delivery and a CIPHER DATA sent again together. When the
reconnection fails, the operation fails with that reader error and later operations fail at
once - without touching pcscd - until a back-off delay has passed (doubling from
:data:`RECONNECT_FIRST_DELAY` to :data:`RECONNECT_MAX_DELAY`); then the next operation tries
again. ``on_state(up, reason)`` hears every change of the link (the runtime's status page).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.devices.reader import CardChannel, CardConnection, ReaderBackend
from terminal.errors import (
    AlgorithmMissingError,
    KeyMissingError,
    NoCardError,
    NoReaderError,
    NoSecureModuleError,
    OneCardError,
    PcscUnavailableError,
    ReaderError,
    SecureModuleError,
)
from terminal.host.clock import Clock, SystemClock
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.status_words import SW, describe
from terminal.secure.module import (
    NO_TERMINAL_NUMBER,
    SUPPORTED_ALGORITHMS,
    check_algorithm,
    check_cryptogram_inputs,
    check_key_name,
)
from terminal.ssc.auth import CRYPTOGRAM_LENGTH, PROCESS_FACTOR_LENGTH, KeyName
from terminal.ssc.cardspec import region_factor
from terminal.transit.commands import SW_MAC_INVALID
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict

log = logging.getLogger(__name__)

PSAM_AID = bytes.fromhex("D15600000590")
"""AID (DF name) of the social security application of a PSAM."""

TERMINAL_NUMBER_SFI = 0x16
TERMINAL_NUMBER_LENGTH = 6  # BCD: 12 digits

KEY_USAGE: dict[KeyName, int] = {KeyName.IRK: 0x01, KeyName.RKSSSE: 0x02, KeyName.UKSSSE: 0x03}
"""P1 of DELIVERY SESSION KEY: which master key to diversify."""
DIVERSIFICATION_LENGTH = 8
MAC1_ANSWER_LENGTH = 8  # terminal serial(4) || MAC1(4)
RECONNECT_FIRST_DELAY = 0.25
"""Seconds after a failed reconnection before an operation tries again."""
RECONNECT_MAX_DELAY = 5.0
"""The longest wait between reconnection attempts: a PSAM back in its slot (or pcscd back)
serves again within this long of the next tap."""

T = TypeVar("T")
LinkListener = Callable[[bool, str], None]
"""``(up, reason)``: the PSAM link went down (why) or came back."""


@dataclass(frozen=True)
class PsamCommands:
    """Header bytes of the PSAM commands: one table, as
    :data:`terminal.ssc.cardspec.CARD_SPEC` is for the card."""

    delivery_session_key: tuple[int, int] = (0xBF, 0xDE)  # CLA INS; P1 usage, P2 algorithm
    cipher_data: tuple[int, int] = (0x80, 0xFA)  # CLA INS; P1 P2 00 00
    mac1: tuple[int, int] = (0x80, 0x70)  # purchase MAC1; P1 P2 00 00
    mac2: tuple[int, int] = (0x80, 0x72)  # purchase MAC2 check; P1 P2 00 00


PSAM_COMMANDS = PsamCommands()


# --- command APDUs --------------------------------------------------------------------------


def select_psam() -> CommandAPDU:
    """``00 A4 04 00 06 D15600000590 00``: select the PSAM application by AID, FCI wanted."""
    return CommandAPDU(0x00, 0xA4, 0x04, 0x00, PSAM_AID, 256)


def read_terminal_number() -> CommandAPDU:
    """``00 B0 96 00 06``: READ BINARY of EF16 by SFI (P1 = 80 | 16), the terminal number."""
    return CommandAPDU(0x00, 0xB0, 0x80 | TERMINAL_NUMBER_SFI, 0x00, le=TERMINAL_NUMBER_LENGTH)


def delivery_session_key(
    key: KeyName, algorithm: SymmetricAlgorithm, d1: bytes, d2: bytes, process_factor: bytes
) -> CommandAPDU:
    """``BF DE <usage> <alg> 18 D1 D2 P``: derive and keep the session key (no response data)."""
    body = bytes(d1) + bytes(d2) + bytes(process_factor)
    if len(body) != 2 * DIVERSIFICATION_LENGTH + PROCESS_FACTOR_LENGTH:
        raise ValueError("D1, D2 and P are 8 bytes each")
    cla, ins = PSAM_COMMANDS.delivery_session_key
    return CommandAPDU(cla, ins, KEY_USAGE[key], int(algorithm), body)


def cipher_data(data: bytes) -> CommandAPDU:
    """``80 FA 00 00 08 X 08``: the 8-byte cryptogram of X under the delivered session key."""
    if len(data) != CRYPTOGRAM_LENGTH:
        raise ValueError("CIPHER DATA enciphers 8 bytes")
    cla, ins = PSAM_COMMANDS.cipher_data
    return CommandAPDU(cla, ins, 0x00, 0x00, bytes(data), CRYPTOGRAM_LENGTH)


def purchase_mac1_command(request: Mac1Request) -> CommandAPDU:
    """``80 70 00 00 24 <request> 08``: MAC1 of a purchase; answer serial(4) || MAC1(4)."""
    cla, ins = PSAM_COMMANDS.mac1
    return CommandAPDU(cla, ins, 0x00, 0x00, request.to_bytes(), MAC1_ANSWER_LENGTH)


def verify_mac2_command(mac2: bytes, terminal_serial: int | None = None) -> CommandAPDU:
    """``80 72 00 00 04 MAC2`` (newest session) or ``80 72 00 00 08 serial(4) MAC2`` (the
    session of an earlier MAC1, for recovery): ``9000`` or ``9302``, no data."""
    if len(mac2) != 4:
        raise ValueError("MAC2 is 4 bytes")
    data = bytes(mac2) if terminal_serial is None else terminal_serial.to_bytes(4, "big") + mac2
    cla, ins = PSAM_COMMANDS.mac2
    return CommandAPDU(cla, ins, 0x00, 0x00, data)


def decode_terminal_number(raw: bytes) -> str:
    """12 digits from the 6 BCD bytes of EF16; :class:`SecureModuleError` if not BCD."""
    digits = raw.hex()
    if len(raw) != TERMINAL_NUMBER_LENGTH or not digits.isdigit():
        raise SecureModuleError(f"PSAM EF16 holds {raw.hex().upper()}: not a 12-digit BCD number")
    return digits


# --- the module -----------------------------------------------------------------------------


class PsamSecureModule:
    """A :class:`terminal.ssc.secure_module.SecureModule` and a
    :class:`terminal.transit.secure_module.PsamPurchase` in a PSAM.

    The module owns ``connection``: :meth:`close` closes it, and so does a failed open.
    ``apdu_count`` counts the APDUs sent to the PSAM (GET RESPONSE included), for benchmarks.
    """

    def __init__(
        self,
        connection: CardConnection,
        name: str | None = None,
        *,
        reconnect: Callable[[], CardConnection] | None = None,
        clock: Clock | None = None,
        on_state: LinkListener | None = None,
        down: OneCardError | None = None,
    ) -> None:
        self.connection = connection
        self.name = name or f"psam:{connection.reader}"
        self.terminal_number = NO_TERMINAL_NUMBER
        self._channel = CardChannel(connection)
        self._apdus_before = 0  # APDUs of the connections the module has dropped
        self._lock = threading.Lock()
        self._algorithms: frozenset[SymmetricAlgorithm] | None = None
        self._closed = False
        self._reconnect = reconnect
        self._clock: Clock = clock or SystemClock()
        self._on_state = on_state
        self._down: OneCardError | None = down
        """Why the link is down (the connection is dropped), None while it is up."""
        self._next_attempt = 0.0
        self._delay = RECONNECT_FIRST_DELAY
        self.reconnects = 0
        """Times the link came back after going down."""
        if down is not None:
            return  # not connected yet: the first use connects (open(when_ready=True))
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls,
        backend: ReaderBackend,
        reader: str,
        *,
        clock: Clock | None = None,
        on_state: LinkListener | None = None,
        when_ready: bool = False,
    ) -> PsamSecureModule:
        """Connect to the PSAM in ``reader``, and again whenever the link breaks (see the
        module docstring). An empty or absent reader is :class:`NoSecureModuleError`
        (LD/T 33 -2201), as is a card without the application. With ``when_ready`` a PC/SC
        service that is not up yet (the terminal starts while pcscd restarts) is no failure:
        the module starts down, says so to ``on_state``, and connects on its first use, with
        the back-off of a broken link."""

        def connect() -> CardConnection:
            return backend.connect(reader)

        try:
            connection = connect()
        except (NoCardError, NoReaderError) as exc:
            raise NoSecureModuleError(f"no PSAM: {exc.reason}") from exc
        except PcscUnavailableError as exc:
            if not when_ready:
                raise
            log.warning("PSAM in %r not reachable yet: %s", reader, exc.reason)
            module = cls(
                _NotConnected(reader), reconnect=connect, clock=clock, on_state=on_state, down=exc
            )
            module._tell(False, exc.reason)
            return module
        return cls(connection, reconnect=connect, clock=clock, on_state=on_state)

    @property
    def apdu_count(self) -> int:
        return self._apdus_before + self._channel.apdu_count

    @property
    def up(self) -> bool:
        """False from a broken exchange until the module has connected again."""
        return self._down is None

    def __repr__(self) -> str:
        return f"PsamSecureModule(name={self.name!r}, terminal_number={self.terminal_number!r})"

    # --- SecureModule (terminal.ssc.secure_module) ----------------------------------------

    def algorithms(self) -> frozenset[SymmetricAlgorithm]:
        with self._lock:
            if self._algorithms is None:
                self._algorithms = self._use(
                    lambda: frozenset(
                        alg for alg in sorted(SUPPORTED_ALGORITHMS) if self._probe(alg)
                    )
                )
            return self._algorithms

    def cryptogram(
        self,
        key: KeyName,
        algorithm: SymmetricAlgorithm,
        region6: str,
        historical13: bytes,
        process_factor: bytes,
        data: bytes,
    ) -> bytes:
        key, alg = check_key_name(key), check_algorithm(algorithm)
        d1, d2 = check_cryptogram_inputs(region6, historical13, process_factor, data)
        if alg not in SUPPORTED_ALGORITHMS:
            # SSF33: no PSAM of ours implements it, and what a real one answers is unknown.
            raise AlgorithmMissingError(f"secure module {self.name} holds no {alg.name} keys")
        delivery = delivery_session_key(key, alg, d1, d2, bytes(process_factor))

        def exchange() -> bytes:
            response = self._channel.transmit(delivery)
            if response.sw != SW.OK:
                raise self._error("DELIVERY SESSION KEY", response.sw, key, alg)
            response = self._channel.transmit(cipher_data(bytes(data)))
            if response.sw != SW.OK:
                raise self._error("CIPHER DATA", response.sw, key, alg)
            if len(response.data) != CRYPTOGRAM_LENGTH:
                raise SecureModuleError(
                    f"PSAM {self.name} answered CIPHER DATA with {len(response.data)} bytes, "
                    f"not {CRYPTOGRAM_LENGTH}"
                )
            return response.data

        with self._lock:
            return self._use(exchange)

    # --- T-Union purchase (terminal.transit.secure_module.PsamPurchase) -----------------------

    def purchase_mac1(self, request: Mac1Request) -> Mac1Answer:
        """MAC1 of a purchase, computed in the PSAM (``80 70``). :class:`KeyMissingError`
        when the PSAM has no purchase master for the card's algorithm."""
        with self._lock:
            response = self._use(lambda: self._channel.transmit(purchase_mac1_command(request)))
            if response.sw in (SW.REFERENCE_DATA_NOT_FOUND, SW.FUNCTION_NOT_SUPPORTED):
                raise KeyMissingError(
                    f"PSAM {self.name} holds no purchase master key for algorithm id "
                    f"{request.algorithm_id:02X} ({describe(response.sw)})",
                    response.sw,
                )
            if response.sw != SW.OK:
                raise SecureModuleError(
                    f"PSAM {self.name}: MAC1 failed: {describe(response.sw)}", response.sw
                )
            if len(response.data) != MAC1_ANSWER_LENGTH:
                raise SecureModuleError(
                    f"PSAM {self.name} answered MAC1 with {len(response.data)} bytes, not 8"
                )
            return Mac1Answer(int.from_bytes(response.data[:4], "big"), response.data[4:])

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict:
        """The PSAM's word on the card's MAC2 (``80 72``), for the newest session or for the
        session of ``terminal_serial``."""
        command = verify_mac2_command(mac2, terminal_serial)
        with self._lock:
            response = self._use(lambda: self._channel.transmit(command))
            if response.sw == SW.OK:
                return Mac2Verdict.VALID
            if response.sw == SW_MAC_INVALID:
                return Mac2Verdict.INVALID
            if response.sw == SW.CONDITIONS_NOT_SATISFIED:
                return Mac2Verdict.UNKNOWN
            raise SecureModuleError(
                f"PSAM {self.name}: MAC2 check failed: {describe(response.sw)}", response.sw
            )

    # --- e-purse maintenance (terminal.transit.secure_module.PsamMaintenance) ---------------

    def maintenance_mac(
        self,
        key_version: int,
        app_serial_low8: bytes,
        issuer_id: bytes,
        challenge: bytes,
        data: bytes,
    ) -> bytes:
        """The MAC of an APPLICATION BLOCK (``80 1A 45 <version>``, ``80 FA 05 00``).
        :class:`KeyMissingError` when the PSAM has no maintenance master of that version."""
        from terminal.transit.commands import cipher_data_mac, init_sam_for_descrypt

        init = init_sam_for_descrypt(key_version, app_serial_low8, issuer_id)
        mac = cipher_data_mac(challenge, data)

        def exchange() -> bytes:
            response = self._channel.transmit(init)
            if response.sw in (SW.REFERENCE_DATA_NOT_FOUND, SW.FUNCTION_NOT_SUPPORTED):
                raise KeyMissingError(
                    f"PSAM {self.name} holds no maintenance master of version "
                    f"{key_version:02X} ({describe(response.sw)})",
                    response.sw,
                )
            if response.sw != SW.OK:
                raise SecureModuleError(
                    f"PSAM {self.name}: INIT SAM FOR DESCRYPT failed: {describe(response.sw)}",
                    response.sw,
                )
            response = self._channel.transmit(mac)
            if response.sw != SW.OK or len(response.data) != 4:
                raise SecureModuleError(
                    f"PSAM {self.name}: CIPHER DATA (MAC) failed: {describe(response.sw)}",
                    response.sw,
                )
            return response.data

        with self._lock:
            return self._use(exchange)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.connection.close()
        except ReaderError as exc:
            # A PSAM pulled out of its slot cannot be disconnected cleanly; there is nothing
            # left to release and nothing the caller could do about it.
            log.debug("closing %s: %s", self.name, exc)

    # --- the link -------------------------------------------------------------------------

    def _use(self, exchange: Callable[[], T]) -> T:
        """``exchange()`` over the link (called with the lock held): reconnected first if it
        is down, and once more on a fresh connection if it breaks now (module docstring)."""
        self._check_open()
        if self._down is not None:
            self._connect_again()
        try:
            return exchange()
        except ReaderError as exc:
            if self._reconnect is None:
                raise
            self._lost(exc)
        self._connect_again()
        try:
            return exchange()
        except ReaderError as exc:
            self._lost(exc)
            raise

    def _lost(self, error: OneCardError) -> None:
        """The link broke: drop the connection; the next use connects again."""
        first = self._down is None
        self._down = error
        self._drop_connection()
        if first:
            log.warning("PSAM %s link down: %s", self.name, error.reason)
            self._tell(False, error.reason)

    def _connect_again(self) -> None:
        """Connect, SELECT and read EF16 again, or raise why not (at once, without trying,
        while the back-off delay of the last failed attempt runs)."""
        assert self._down is not None and self._reconnect is not None
        now = self._clock.monotonic()
        if now < self._next_attempt:
            raise _again(self._down, f"PSAM {self.name} link down: {self._down.reason}")
        try:
            self.connection = self._reconnect()
            self._channel = CardChannel(self.connection)
            self._open()
        except (ReaderError, SecureModuleError) as exc:
            self._drop_connection()
            self._down = exc
            self._next_attempt = now + self._delay
            self._delay = min(self._delay * 2, RECONNECT_MAX_DELAY)
            log.info("PSAM %s still down: %s", self.name, exc.reason)
            raise
        self._down = None
        self._next_attempt = 0.0
        self._delay = RECONNECT_FIRST_DELAY
        self.reconnects += 1
        log.info("PSAM %s link up again (reconnect %d)", self.name, self.reconnects)
        self._tell(True, "reconnected")

    def _drop_connection(self) -> None:
        self._apdus_before += self._channel.apdu_count
        self._channel = CardChannel(self.connection)
        try:
            self.connection.close()
        except ReaderError as exc:  # a void handle cannot be released: nothing is left
            log.debug("closing %s after a link failure: %s", self.name, exc.reason)

    def _tell(self, up: bool, reason: str) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(up, reason)
        except Exception:  # the status page must not break the PSAM
            log.exception("PSAM %s: link listener failed", self.name)

    # --- internals ------------------------------------------------------------------------

    def _open(self) -> None:
        response = self._channel.transmit(select_psam())
        if response.sw == SW.FILE_NOT_FOUND:
            raise NoSecureModuleError(
                f"the card in {self.connection.reader!r} has no PSAM application "
                f"{PSAM_AID.hex().upper()}",
                response.sw,
            )
        if response.sw != SW.OK:
            aid = PSAM_AID.hex().upper()
            raise SecureModuleError(
                f"PSAM {self.name}: SELECT {aid} failed: {describe(response.sw)}", response.sw
            )
        response = self._channel.transmit(read_terminal_number())
        if response.sw == SW.FILE_NOT_FOUND:
            log.warning("PSAM %s has no EF16: terminal number unknown", self.name)
            return
        if response.sw != SW.OK:
            raise SecureModuleError(
                f"PSAM {self.name}: READ BINARY EF16 failed: {describe(response.sw)}", response.sw
            )
        self.terminal_number = decode_terminal_number(response.data)

    def _check_open(self) -> None:
        if self._closed:
            raise SecureModuleError(f"secure module {self.name} is closed")

    def _probe(self, alg: SymmetricAlgorithm) -> bool:
        # Any diversification data will do: only the status word matters. The session key
        # this leaves in the PSAM is replaced by the next cryptogram's delivery.
        command = delivery_session_key(
            KeyName.IRK,
            alg,
            region_factor("000000"),
            bytes(DIVERSIFICATION_LENGTH),
            bytes(PROCESS_FACTOR_LENGTH),
        )
        response = self._channel.transmit(command)
        if response.sw == SW.FUNCTION_NOT_SUPPORTED:
            return False
        if response.sw in (SW.OK, SW.REFERENCE_DATA_NOT_FOUND):
            return True
        raise self._error("DELIVERY SESSION KEY", response.sw, KeyName.IRK, alg)

    def _error(
        self, command: str, sw: int, key: KeyName, alg: SymmetricAlgorithm
    ) -> SecureModuleError:
        if sw == SW.REFERENCE_DATA_NOT_FOUND:
            return KeyMissingError(
                f"PSAM {self.name} holds no {alg.name} {key.value} master key ({describe(sw)})",
                sw,
            )
        if sw == SW.FUNCTION_NOT_SUPPORTED:
            return AlgorithmMissingError(
                f"PSAM {self.name} holds no {alg.name} keys ({describe(sw)})", sw
            )
        return SecureModuleError(f"PSAM {self.name}: {command} failed: {describe(sw)}", sw)


class _NotConnected:
    """The connection of a module that has not reached its PSAM yet."""

    atr = b""
    protocol = "T=1"
    interface = None

    def __init__(self, reader: str) -> None:
        self.reader = reader

    def transmit_raw(self, apdu: bytes) -> bytes:
        raise PcscUnavailableError(f"PSAM in {self.reader!r} not connected yet")

    def close(self) -> None:
        pass


def _again(cause: OneCardError, reason: str) -> OneCardError:
    """An error of the same kind as ``cause`` (a reader error stays a reader error: the
    transaction is not completed, nothing is journaled) saying the link is still down."""
    try:
        return type(cause)(reason)
    except TypeError:  # an error class with another signature
        return ReaderError(reason)
