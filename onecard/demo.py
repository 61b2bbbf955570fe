"""``onecard demo``: simulated cards put into the real PC/SC stack, read, then verified.

A composition root like the CLI: it wires firmware_sim's cards into vpcd slots, waits for
pcscd to report them (SCardGetStatusChange, no fixed sleeps), and reads each one with the
same code path as ``onecard read``.
"""

from __future__ import annotations

import datetime
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.pcsc import (
    PcscBackend,
    establish_context,
    list_readers,
    release_context,
    wait_for_card,
)
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile, sample_profile_path
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.vpcd import VpcdBridge, reader_name
from terminal.errors import OneCardError, PcscUnavailableError
from terminal.pki.truststore import load_trust_store
from terminal.secure.keyfile import load_key_file
from terminal.secure.psam import PsamSecureModule
from terminal.ssc.reading import read_card, verify_card_in_reader


@dataclass(frozen=True)
class DemoCard:
    profile: str
    slot: int
    contactless: bool
    story: str


DEMO_CARDS = (
    DemoCard("chongqing-2.0", 0, False, "Chongqing 2.0 card, contact (T=0)"),
    DemoCard("sichuan-3.0", 1, False, "Sichuan 3.0 card, contact: holder data needs RKSSSE"),
    DemoCard("chongqing-1.0", 2, False, "1.0 card without multi-record reads"),
    DemoCard("chongqing-2.0", 3, True, "Chongqing 2.0 card, contactless"),
)


def run_demo(out: Callable[[str], None]) -> int:
    context = establish_context()
    try:
        names = list_readers(context)
    finally:
        release_context(context)
    bridges: list[tuple[DemoCard, VpcdBridge, str]] = []
    failures = 0
    try:
        for demo in DEMO_CARDS:
            name = reader_name(demo.slot, names)
            if name is None:
                raise PcscUnavailableError(
                    f"vpcd slot {demo.slot} is not registered with pcscd (run `make setup`)"
                )
            card = build_card(load_profile(sample_profile_path(demo.profile)), demo.contactless)
            bridge = VpcdBridge(card, slot=demo.slot)
            bridge.insert()
            bridges.append((demo, bridge, name))
        for _demo, _bridge, name in bridges:
            wait_for_card(name, present=True)

        out("Simulated cards inserted into vpcd slots; reading each through pcscd:\n")
        header = (
            f"{'reader':<20} {'card':<52} {'region':<7} {'card no.':<10} {'cat':<3} "
            f"{'ver':<5} {'holder':<8} {'unreadable':<11} {'APDUs':>5} {'ms':>6}"
        )
        out(header)
        out("-" * len(header))
        backend = PcscBackend()
        for demo, _bridge, name in bridges:
            started = time.perf_counter()
            try:
                reading = read_card(backend, name)
            except OneCardError as error:
                failures += 1
                out(f"{name:<20} {demo.story:<52} error {error.code}: {error.reason}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            data = reading.to_json()
            holder = data["holder"]
            holder_text = holder["name"] if isinstance(holder, dict) else "-"
            unreadable = ",".join(f"{u['file']}:{u['sw']}" for u in data["unreadable"]) or "-"
            number = f"{data['card_number']}{'' if data['card_number_valid'] else '!'}"
            out(
                f"{name:<20} {demo.story:<52} {data['region']:<7} {number:<10} "
                f"{data['category']:<3} {data['spec_version']:<5} {holder_text:<8} "
                f"{unreadable:<11} {data['apdu_count']:>5} {elapsed:>6.1f}"
            )
        out("\nHolder data is masked; `onecard read --reveal` shows it.")
    finally:
        for _demo, bridge, _name in bridges:
            bridge.remove()
        for _demo, _bridge, name in bridges:
            wait_for_card(name, present=False, timeout=5)
    failures += run_verification_demo(out, names)
    return 1 if failures else 0


def run_verification_demo(out: Callable[[str], None], names: list[str]) -> int:
    """Issue a test world, put a PSAM in slot 2, and verify one card of each kind in slot 0."""
    card_reader, psam_reader = reader_name(0, names), reader_name(2, names)
    if card_reader is None or psam_reader is None:
        raise PcscUnavailableError("vpcd slots 0 and 2 are not registered (run `make setup`)")
    today = datetime.date.today()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="onecard-demo-") as tmp:
        world = issue_world(Path(tmp), today)
        out(
            "\nIssued a test world (keys, trust store, personalised cards) with "
            "`onecard sim issue world`; a PSAM holds the master keys in "
            f"{psam_reader!r}. Verifying each card:\n"
        )
        psam_bridge = VpcdBridge(build_psam(load_key_file(world["keys"])), slot=2)
        psam_bridge.insert()
        try:
            wait_for_card(psam_reader)
            backend = PcscBackend()
            module = PsamSecureModule.open(backend, psam_reader)
            store = load_trust_store(world["trust_store"], today)
            header = f"{'card':<24} {'expected':<22} {'verdict':<22} {'APDUs':>5} {'ms':>6}  reason"
            out(header)
            out("-" * 110)
            for name, card in world["cards"].items():
                bridge = VpcdBridge(build_card(load_profile(card["file"])), slot=0)
                bridge.insert()
                try:
                    wait_for_card(card_reader)
                    started = time.perf_counter()
                    reading, verification = verify_card_in_reader(
                        backend, card_reader, module, store, today
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                finally:
                    bridge.remove()
                    wait_for_card(card_reader, present=False, timeout=5)
                verdict = verification.verdict.value
                mark = "" if verdict == card["expected"] else "  <- UNEXPECTED"
                failures += bool(mark)
                apdus = reading.apdu_count if reading else "-"
                out(
                    f"{name:<24} {card['expected']:<22} {verdict:<22} {apdus:>5} "
                    f"{elapsed:>6.1f}  {verification.reason[:60]}{mark}"
                )
            module.close()
        finally:
            psam_bridge.remove()
    return failures
