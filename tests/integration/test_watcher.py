"""Card events from SCardGetStatusChange, across a pcscd restart."""

from __future__ import annotations

import queue

import pytest
from helpers.pcscd_service import start_pcscd, stop_pcscd, wait_for_service

from drivers.pcsc import CardWatcher
from terminal.devices.reader import CardInserted, CardRemoved, ServiceLost, ServiceRestored

pytestmark = pytest.mark.integration

EVENT_WAIT = 20.0


def next_event(events: queue.Queue, kind: type, reader: str | None = None):
    """The next event of ``kind`` (for ``reader``), skipping others; fails after EVENT_WAIT."""
    while True:
        try:
            event = events.get(timeout=EVENT_WAIT)
        except queue.Empty:
            pytest.fail(f"no {kind.__name__} event within {EVENT_WAIT}s")
        if isinstance(event, kind) and (reader is None or getattr(event, "reader", None) == reader):
            return event


def test_insert_and_remove_events(insert_card):
    events: queue.Queue = queue.Queue()
    with CardWatcher(events.put):
        card = insert_card("chongqing-2.0", slot=1)
        inserted = next_event(events, CardInserted, card.reader)
        assert inserted.atr == card.bridge.card.atr
        card.remove()
        next_event(events, CardRemoved, card.reader)


def test_events_resume_after_pcscd_restart(insert_card, pcscd):
    events: queue.Queue = queue.Queue()
    with CardWatcher(events.put):
        card = insert_card("chongqing-2.0", slot=0)
        next_event(events, CardInserted, card.reader)
        stop_pcscd()
        next_event(events, ServiceLost)
        start_pcscd()
        next_event(events, ServiceRestored)
        # The card stayed in the reader: the restarted service reports it again, by itself.
        assert card.bridge.wait_connected(EVENT_WAIT)
        next_event(events, CardInserted, card.reader)
        card.remove()
        next_event(events, CardRemoved, card.reader)
    wait_for_service()
