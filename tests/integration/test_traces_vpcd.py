"""Trace replay through the real pcscd: the strict trace card in a vpcd slot.

The same traces as tests/unit/test_traces.py, but the card (and the PSAM) are
:class:`firmware_sim.trace_card.TraceCard` objects behind vsmartcard's vpcd, and the terminal
reaches them through the PC/SC driver: what pcscd and the driver add or change on the way
(the UID pseudo-APDU, the protocol negotiated from the ATR, T=0 case handling) must still be
exactly what the trace recorded. A mismatch answers 6F00 over the wire and is raised by
``assert_complete``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The flow runner is test code shared with the unit tests (tests/unit/trace_flows.py);
# tests/ is on sys.path (its conftest.py), so it imports as unit.trace_flows from here.
from helpers.paths import TRACES
from helpers.trace_flows import expectation_failures, run_trace_flow

from firmware_sim.trace_card import TraceCard, TraceReplay
from terminal.trace.format import Slot, decode_trace_bytes, parse_trace

pytestmark = pytest.mark.integration

TRACE_FILES = sorted(TRACES.glob("*.trace"))

CARD_SLOT = 0
PSAM_SLOT = 1


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.stem for p in TRACE_FILES])
def test_trace_replays_through_pcscd(path: Path, insert_card, backend) -> None:
    trace = parse_trace(decode_trace_bytes(path.read_bytes()))
    replay = TraceReplay(trace)
    card = insert_card(card=TraceCard(replay, Slot.CARD), slot=CARD_SLOT)
    psam_reader = None
    if trace.has_psam:
        psam_reader = insert_card(card=TraceCard(replay, Slot.PSAM), slot=PSAM_SLOT).reader
    outcome = run_trace_flow(trace, backend, card.reader, psam_reader)
    replay.assert_complete()
    assert expectation_failures(trace, outcome) == []
