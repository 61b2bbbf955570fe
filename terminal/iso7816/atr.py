"""The Answer To Reset (ISO/IEC 7816-3 section 8): where its historical bytes are.

An SSC's historical bytes carry T1-T2 chip vendor, T3-T5 OS vendor, T6-T7 card
manufacturer, T8-T9 the first four region digits and TA-TD the card's unique number
(domain.md 2); key diversification uses T6..TD. A contactless card shows the PC/SC part 3
pseudo-ATR ``3B 8n 80 01 <historical> TCK``, whose historical bytes are the ATS's.
"""

from __future__ import annotations


def historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ATR (ISO 7816-3): the K bytes after the interface bytes."""
    if len(atr) < 2:
        return b""
    t0 = atr[1]
    count = t0 & 0x0F
    index = 2
    y = t0 >> 4
    while True:
        index += bin(y).count("1")
        if not y & 0x8 or index > len(atr):
            break
        y = atr[index - 1] >> 4
    return atr[index : index + count]
