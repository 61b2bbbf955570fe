"""The holder PIN of the simulated SSC: VERIFY and CHANGE PIN with a persistent retry counter.

``VERIFY`` ``00 20 00 00 Lc <PIN BCD, padded with F>``: 9000 and the ``PIN`` right on a
match; ``63Cx`` (x tries left) on a mismatch; ``6983`` once blocked. Without data it only
reports the tries left (``63Cx``), as ISO 7816-4 allows. ``CHANGE PIN``
``80 5E 01 00 Lc old || FF || new`` checks the old PIN under the same counter.

The counter lives in the card's non-volatile memory: it survives power-off and reset, which
is what makes guessing by pulling the card out useless.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_sim.apdu import Command, Response, status
from firmware_sim.spec import iso7816
from firmware_sim.spec.iso7816 import Ins
from firmware_sim.spec.status import SW, tries_left

PIN_RIGHT = "PIN"
PIN_SEPARATOR = 0xFF  # CHANGE PIN data: old PIN || FF || new PIN
VERIFY_P1P2 = (0x00, 0x00)  # VERIFY: P1 00, P2 00 (the holder PIN)
CHANGE_PIN_P1P2 = (0x01, 0x00)  # CHANGE PIN: P1 01, P2 00


def decode_pin_block(block: bytes) -> str | None:
    """Digits of a BCD PIN block padded with F nibbles; None when the block is malformed."""
    digits = block.hex().upper().rstrip("F")
    if not 4 <= len(digits) <= 12 or not digits.isdigit() or len(block) != (len(digits) + 1) // 2:
        return None
    return digits


class PinStore:
    """The PIN and its retry counter (EEPROM on a real card)."""

    def __init__(self, pin: str, max_tries: int) -> None:
        self._pin = pin
        self.max_tries = max_tries
        self.tries_left = max_tries

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    def check(self, candidate: str) -> int:
        """Compare and count; the status word the card answers."""
        if self.blocked:
            return SW.AUTHENTICATION_METHOD_BLOCKED
        if candidate == self._pin:
            self.tries_left = self.max_tries
            return SW.NORMAL_PROCESSING
        self.tries_left -= 1
        return SW.AUTHENTICATION_METHOD_BLOCKED if self.blocked else tries_left(self.tries_left)

    def change(self, new: str) -> None:
        self._pin = new


def process_pin_command(
    store: PinStore, card_grant: Callable[[str], None], cmd: Command
) -> Response | None:
    """Answer VERIFY / CHANGE PIN for ``store``; None for any other command.

    ``card_grant(right)`` records a verified PIN in the card's security state.
    """
    if cmd.cla == iso7816.CLA_INTERINDUSTRY and cmd.ins == Ins.VERIFY:
        if (cmd.p1, cmd.p2) != VERIFY_P1P2:
            return status(SW.INCORRECT_P1_P2)
        if not cmd.data:  # a query: how many tries are left
            sw = SW.AUTHENTICATION_METHOD_BLOCKED if store.blocked else tries_left(store.tries_left)
            return status(sw)
        candidate = decode_pin_block(cmd.data)
        if candidate is None:
            return status(SW.INCORRECT_DATA)
        sw = store.check(candidate)
        if sw == SW.NORMAL_PROCESSING:
            card_grant(PIN_RIGHT)
        return status(sw)
    if cmd.cla == iso7816.CLA_PROPRIETARY and cmd.ins == Ins.CHANGE_PIN:
        if (cmd.p1, cmd.p2) != CHANGE_PIN_P1P2:
            return status(SW.INCORRECT_P1_P2)
        old_block, sep, new_block = cmd.data.partition(bytes([PIN_SEPARATOR]))
        old, new = decode_pin_block(old_block), decode_pin_block(new_block)
        if not sep or old is None or new is None:
            return status(SW.INCORRECT_DATA)
        sw = store.check(old)
        if sw == SW.NORMAL_PROCESSING:
            store.change(new)
            card_grant(PIN_RIGHT)
        return status(sw)
    return None
