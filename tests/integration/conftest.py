"""Integration fixtures: simulated cards in the real pcscd + vsmartcard-vpcd stack.

``make test`` (scripts/setup.sh) installs pcscd and vpcd and starts pcscd; these fixtures only
check that it is up, start it if it is not, and never wait a fixed time: they block in
SCardGetStatusChange until pcscd reports the card.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.pcscd_service import start_pcscd, wait_for_service

from drivers.pcsc import PcscBackend, wait_for_card
from firmware_sim.profile import load_profile, sample_profile_path
from firmware_sim.ssc_applet import build_card
from firmware_sim.vpcd import VpcdBridge, reader_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def pcscd() -> list[str]:
    if shutil.which("pcscd") is None:
        pytest.fail("pcscd is not installed: run `make test` (scripts/setup.sh) first")
    start_pcscd()
    return wait_for_service()


@dataclass
class InsertedCard:
    bridge: VpcdBridge
    reader: str
    slot: int

    def remove(self, wait: bool = True) -> None:
        self.bridge.remove()
        if wait:
            assert wait_for_card(self.reader, present=False), "pcscd did not see the removal"


CardFactory = Callable[..., InsertedCard]


@pytest.fixture
def insert_card(pcscd: list[str]) -> Iterator[CardFactory]:
    """``insert_card(profile="chongqing-2.0", slot=0, contactless=False)`` -> InsertedCard."""
    inserted: list[InsertedCard] = []

    def insert(
        profile: str = "chongqing-2.0", slot: int = 0, contactless: bool = False, card=None
    ) -> InsertedCard:
        names = wait_for_service()
        name = reader_name(slot, names)
        assert name is not None, f"no vpcd reader for slot {slot} in {names}"
        if card is None:
            card = build_card(load_profile(sample_profile_path(profile)), contactless=contactless)
        bridge = VpcdBridge(card, slot=slot)
        bridge.insert()
        item = InsertedCard(bridge, name, slot)
        inserted.append(item)
        assert wait_for_card(name, present=True), f"pcscd did not see the card in {name}"
        return item

    yield insert
    for item in inserted:
        if item.bridge.inserted:
            item.remove(wait=False)
    for item in inserted:
        wait_for_card(item.reader, present=False, timeout=5)


@pytest.fixture
def backend(pcscd: list[str]) -> PcscBackend:
    return PcscBackend()


# --- the system's headless Chromium (holder screen tests) ------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Debian's Chromium under Playwright, one per session (no browser is downloaded)."""
    from onecard.browser import launch, sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests leave screenshots: ``$ONECARD_ARTIFACTS``, else under pytest's
    temporary directory (never the repository)."""
    given = os.environ.get("ONECARD_ARTIFACTS")
    root = Path(given) if given else tmp_path_factory.getbasetemp()
    path = root / "artifacts" / "screens"
    path.mkdir(parents=True, exist_ok=True)
    return path
