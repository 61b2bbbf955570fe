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

from terminal.apdu import CommandAPDU, ResponseAPDU
from terminal.status import SW

PIN_RIGHT = "PIN"
INS_VERIFY = 0x20
INS_CHANGE_PIN = 0x5E
CLA_PROPRIETARY = 0x80
PIN_SEPARATOR = 0xFF


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
            return SW.AUTH_METHOD_BLOCKED
        if candidate == self._pin:
            self.tries_left = self.max_tries
            return SW.OK
        self.tries_left -= 1
        return SW.AUTH_METHOD_BLOCKED if self.blocked else 0x63C0 | self.tries_left

    def change(self, new: str) -> None:
        self._pin = new


def process_pin_command(
    store: PinStore, card_grant: Callable[[str], None], cmd: CommandAPDU
) -> ResponseAPDU | None:
    """Answer VERIFY / CHANGE PIN for ``store``; None for any other command.

    ``card_grant(right)`` records a verified PIN in the card's security state.
    """
    if cmd.cla == 0x00 and cmd.ins == INS_VERIFY:
        if cmd.p1 != 0x00 or cmd.p2 != 0x00:
            return ResponseAPDU(b"", SW.WRONG_P1P2)
        if not cmd.data:  # a query: how many tries are left
            sw = SW.AUTH_METHOD_BLOCKED if store.blocked else 0x63C0 | store.tries_left
            return ResponseAPDU(b"", sw)
        candidate = decode_pin_block(cmd.data)
        if candidate is None:
            return ResponseAPDU(b"", SW.WRONG_DATA)
        sw = store.check(candidate)
        if sw == SW.OK:
            card_grant(PIN_RIGHT)
        return ResponseAPDU(b"", sw)
    if cmd.cla == CLA_PROPRIETARY and cmd.ins == INS_CHANGE_PIN:
        if cmd.p1 != 0x01 or cmd.p2 != 0x00:
            return ResponseAPDU(b"", SW.WRONG_P1P2)
        old_block, sep, new_block = cmd.data.partition(bytes([PIN_SEPARATOR]))
        old, new = decode_pin_block(old_block), decode_pin_block(new_block)
        if not sep or old is None or new is None:
            return ResponseAPDU(b"", SW.WRONG_DATA)
        sw = store.check(old)
        if sw == SW.OK:
            store.change(new)
            card_grant(PIN_RIGHT)
        return ResponseAPDU(b"", sw)
    return None
