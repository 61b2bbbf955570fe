"""Blocking the e-purse of a hotlisted card, as real validators do (docs/transit.md "Blocking
a hotlisted e-purse"): the card refuses every later purchase on any terminal, offline.

On the wire, after the tap's SELECT (the 0x15 the card path read):

1. ``00 84 00 00 04`` GET CHALLENGE: 4 random bytes from the card;
2. (PSAM) ``80 1A 45 <version> 10 serial(8) issuer(8)`` and ``80 FA 05 00 10 <challenge
   || 00000000> 84 1E 00 00 04 80 00 00``: the MAC under the card's maintenance key;
3. ``84 1E 00 00 04 MAC`` APPLICATION BLOCK: ``9000``, the e-purse is blocked (SELECT answers
   ``6283`` from then on, INITIALIZE ``9303``).

:class:`BlockSession` is a pure state machine like the purchase sessions; :func:`block_purse`
drives it over a card channel and a :class:`~terminal.transit.secure_module.PsamMaintenance`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.devices.reader import CardChannel
from terminal.errors import TransitError
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import SW
from terminal.transit.commands import (
    CHALLENGE_LENGTH,
    DEFAULT_MAINTENANCE_KEY_VERSION,
    application_block,
    application_block_header,
    describe_sw,
    get_challenge,
)
from terminal.transit.records import PublicInfo
from terminal.transit.secure_module import PsamMaintenance


@dataclass(frozen=True)
class MaintenanceMacStep:
    """Ask the secure module for the MAC of ``data`` with the card's ``challenge``."""

    key_version: int
    app_serial_low8: bytes
    issuer_id: bytes
    challenge: bytes
    data: bytes


@dataclass(frozen=True)
class BlockResult:
    """``blocked``: the card answered ``9000`` to APPLICATION BLOCK; else ``reason`` says why
    not (``sw`` the card's last status word). ``apdu_count``: card APDUs only."""

    blocked: bool
    reason: str
    sw: int | None
    apdu_count: int = 0


BlockStep = CommandAPDU | MaintenanceMacStep
BlockSteps = Generator[BlockStep, ResponseAPDU | bytes, BlockResult]


def block_steps(info: PublicInfo, key_version: int, permanent: bool = False) -> BlockSteps:
    """The block as a generator of steps: card commands and one MAC request."""
    answer = yield get_challenge()
    if not isinstance(answer, ResponseAPDU):
        raise TransitError("expected the card's answer to GET CHALLENGE")
    if answer.sw != SW.OK or len(answer.data) != CHALLENGE_LENGTH:
        return BlockResult(False, f"GET CHALLENGE answered {describe_sw(answer.sw)}", answer.sw)
    mac = yield MaintenanceMacStep(
        key_version,
        info.serial_low8,
        info.issuer_id,
        answer.data,
        application_block_header(permanent),
    )
    if not isinstance(mac, bytes) or len(mac) != 4:
        raise TransitError("expected a 4-byte MAC from the secure module")
    answer = yield application_block(mac, permanent)
    if not isinstance(answer, ResponseAPDU):
        raise TransitError("expected the card's answer to APPLICATION BLOCK")
    if answer.sw != SW.OK:
        return BlockResult(False, f"APPLICATION BLOCK answered {describe_sw(answer.sw)}", answer.sw)
    return BlockResult(True, "blocked", answer.sw)


def block_purse(
    card: CardChannel,
    module: PsamMaintenance,
    info: PublicInfo,
    key_version: int = DEFAULT_MAINTENANCE_KEY_VERSION[SymmetricAlgorithm.DES3],
    permanent: bool = False,
) -> BlockResult:
    """Block the e-purse of ``info`` (just selected on ``card``): the result, never an
    exception for what the card answers (a reader or secure module error propagates)."""
    start = card.apdu_count
    steps = block_steps(info, key_version, permanent)
    answer: ResponseAPDU | bytes | None = None
    try:
        while True:
            step = steps.send(answer) if answer is not None else next(steps)
            if isinstance(step, MaintenanceMacStep):
                answer = module.maintenance_mac(
                    step.key_version,
                    step.app_serial_low8,
                    step.issuer_id,
                    step.challenge,
                    step.data,
                )
            else:
                answer = card.transmit(step)
    except StopIteration as stop:
        result: BlockResult = stop.value
    return BlockResult(result.blocked, result.reason, result.sw, card.apdu_count - start)
