"""The PSAM link heals itself: after a reader error the module connects again, SELECTs its
application and repeats the operation; while it cannot, it fails at once until its back-off
delay has passed (terminal/secure/psam.py, "The link heals itself")."""

from __future__ import annotations

import itertools

import pytest

from drivers.inprocess import InProcessConnection
from firmware_sim.cardos import CardOS
from firmware_sim.psam_applet import build_psam
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.errors import NoCardError, PcscUnavailableError
from terminal.host.clock import FixedClock
from terminal.secure.keyfile import KeySet, generate_key_set
from terminal.secure.psam import RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY, PsamSecureModule
from terminal.ssc.auth import KeyName

TERMINAL = "500100000042"
REGION = "500000"
HISTORICAL = bytes(range(13))
FACTOR = bytes(8)
DATA = bytes(range(8))


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return generate_key_set(TERMINAL, purchase=True)


class Slot:
    """A PSAM slot whose connections pcscd can void (``restart``) and whose service can be
    gone (``service_down``), as a pcscd restart does to real handles."""

    def __init__(self, psam: CardOS) -> None:
        self.psam = psam
        self.service_down = False
        self.generation = 0
        self.connects = 0

    def connect(self) -> InProcessConnection:
        if self.service_down:
            raise PcscUnavailableError("PC/SC service not available")
        self.connects += 1
        return SlotConnection(self, self.generation)

    def restart(self) -> None:
        self.generation += 1


class SlotConnection(InProcessConnection):
    def __init__(self, slot: Slot, generation: int) -> None:
        super().__init__(slot.psam, reader="PSAM slot")
        self.slot = slot
        self.generation = generation

    def transmit_raw(self, apdu: bytes) -> bytes:
        if self.slot.generation != self.generation:
            raise PcscUnavailableError("PC/SC service went away: invalid handle")
        return super().transmit_raw(apdu)


def module(slot: Slot, clock: FixedClock, states: list) -> PsamSecureModule:
    return PsamSecureModule(
        slot.connect(),
        reconnect=slot.connect,
        clock=clock,
        on_state=lambda up, reason: states.append(up),
    )


def cryptogram(psam: PsamSecureModule) -> bytes:
    return psam.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, FACTOR, DATA)


def test_a_voided_connection_is_reopened_and_the_operation_repeated(keyset: KeySet) -> None:
    slot, clock, states = Slot(build_psam(keyset)), FixedClock(), []
    psam = module(slot, clock, states)
    before = cryptogram(psam)
    slot.restart()  # pcscd restarted: the module's handle is void
    assert cryptogram(psam) == before
    assert psam.up and psam.reconnects == 1 and slot.connects == 2
    assert states == [False, True]
    assert psam.terminal_number == TERMINAL  # EF16 read again on the new connection


def test_while_the_service_is_down_operations_fail_at_once_then_heal(keyset: KeySet) -> None:
    slot, clock, states = Slot(build_psam(keyset)), FixedClock(), []
    psam = module(slot, clock, states)
    slot.restart()
    slot.service_down = True
    with pytest.raises(PcscUnavailableError):
        cryptogram(psam)  # broke, reconnect tried once, failed
    assert not psam.up and slot.connects == 1
    # Within the back-off: no attempt, the same kind of error (a reader error: the tap is
    # not completed, nothing is journaled).
    with pytest.raises(PcscUnavailableError, match="link down"):
        cryptogram(psam)
    slot.service_down = False
    with pytest.raises(PcscUnavailableError):
        cryptogram(psam)  # still within the delay, although pcscd is back
    assert slot.connects == 1
    clock.advance(RECONNECT_FIRST_DELAY)
    assert len(cryptogram(psam)) == 8
    assert psam.up and psam.reconnects == 1 and states == [False, True]


def test_the_back_off_doubles_while_reconnection_fails(keyset: KeySet) -> None:
    slot, clock = Slot(build_psam(keyset)), FixedClock()
    tried: list[float] = []

    def connect() -> InProcessConnection:
        tried.append(clock.monotonic())
        return slot.connect()

    psam = PsamSecureModule(slot.connect(), reconnect=connect, clock=clock)
    slot.restart()
    slot.service_down = True
    for _ in range(100):  # a tap every 0.25 s for 25 s
        with pytest.raises(PcscUnavailableError):
            cryptogram(psam)
        clock.advance(0.25)
    gaps = [b - a for a, b in itertools.pairwise(tried)]
    assert gaps[:5] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert set(gaps[5:]) == {RECONNECT_MAX_DELAY}
    slot.service_down = False
    clock.advance(RECONNECT_MAX_DELAY)
    assert len(cryptogram(psam)) == 8 and psam.up


def test_a_removed_psam_is_a_reader_error_until_it_is_back(keyset: KeySet) -> None:
    card = build_psam(keyset)
    present = [True]

    def connect() -> InProcessConnection:
        if not present[0]:
            raise NoCardError("no card in reader 'PSAM slot'")
        return InProcessConnection(card, reader="PSAM slot")

    class Pulled(InProcessConnection):
        def transmit_raw(self, apdu: bytes) -> bytes:
            if not present[0]:
                raise NoCardError("card left")
            return super().transmit_raw(apdu)

    clock = FixedClock()
    psam = PsamSecureModule(Pulled(card, reader="PSAM slot"), reconnect=connect, clock=clock)
    present[0] = False
    with pytest.raises(NoCardError):
        cryptogram(psam)
    present[0] = True
    clock.advance(RECONNECT_FIRST_DELAY)
    assert len(cryptogram(psam)) == 8 and psam.up


def test_without_a_way_to_reconnect_errors_pass_through(keyset: KeySet) -> None:
    slot = Slot(build_psam(keyset))
    psam = PsamSecureModule(slot.connect())
    slot.restart()
    with pytest.raises(PcscUnavailableError):
        cryptogram(psam)
    assert slot.connects == 1


def test_a_psam_whose_service_is_not_up_yet_connects_on_first_use(keyset: KeySet) -> None:
    slot, clock, states = Slot(build_psam(keyset)), FixedClock(), []

    class Backend:
        def connect(self, reader: str) -> InProcessConnection:
            return slot.connect()

    slot.service_down = True
    psam = PsamSecureModule.open(
        Backend(),  # type: ignore[arg-type]
        "PSAM slot",
        clock=clock,
        on_state=lambda up, reason: states.append(up),
        when_ready=True,
    )
    assert not psam.up and states == [False]
    slot.service_down = False
    assert len(cryptogram(psam)) == 8
    assert psam.up and psam.terminal_number == TERMINAL and states == [False, True]
    psam.close()
