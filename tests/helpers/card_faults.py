"""Catching a fault inside a simulated card (unit tests only).

``CardOS.process`` never raises: whatever goes wrong inside the card answers ``6F00`` and is
logged as a "card fault". A test that only checks that an answer came back passes on a crash;
:func:`answer_of` fails on one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from firmware_sim.cardos import CardOS

CARD_OS_LOGGER = "firmware_sim.cardos"
FAULT_SW1 = 0x6F  # 6F00, no precise diagnosis: what the card OS answers for a fault


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def no_card_fault() -> Iterator[None]:
    """Fail when the card OS logs a fault while the block runs (works inside hypothesis
    tests, where the caplog fixture does not)."""
    handler = _Collect()
    logger = logging.getLogger(CARD_OS_LOGGER)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, f"the card faulted: {handler.messages}"


def answer_of(card: CardOS, raw: bytes) -> bytes:
    """``card``'s answer to ``raw``: a status word, never ``6Fxx``, no card fault logged."""
    with no_card_fault():
        answer = card.process(raw)
    assert isinstance(answer, bytes) and len(answer) >= 2, answer
    assert answer[-2] != FAULT_SW1, f"{raw.hex().upper()} answered {answer.hex().upper()}"
    return answer
