"""Benchmark: the T-Union composite purchase through pcscd + vpcd (card and PSAM in slots).

Per purchase (connection to the card already open, as a validator holds the card while it is
in the field): median and p95 terminal time and card APDUs, for

* composite purchase, PSAM in vpcd slot 2 (the validator's configuration): SELECT,
  INITIALIZE (03), UPDATE CAPP 0x1E (the trip record), DEBIT;
* the bus ride of :mod:`terminal.transit.ride` (``ride`` with ``RideSite(mode="bus")``, the
  journey record on, as a field validator with ``[transit] journey_record = true`` taps):
  SELECT, READ RECORD 0x1A, INITIALIZE (03), UPDATE CAPP 0x1A, DEBIT - one READ RECORD more
  than the composite purchase, which it is compared to;
* baseline: the same flow with the PSAM in software (no PSAM round trips);
* baseline: the plain purchase (P1=01, no trip record), PSAM in slot 2.

Card APDUs per purchase are a first-class figure: each row prints them (the range if they
varied within the row) beside the count docs/transit.md gives for T=1 with 0x15 in the FCI.
The card of this table is a T=0 card (contact): there SELECT, INITIALIZE and DEBIT each take
a GET RESPONSE, three APDUs more; the field card table below has T=1 cards, and the bus ride
against the composite purchase on each.

Terminal time is what our side spends (pcscd + vpcd + both simulated cards included); on a
real card add 5-20 ms of air time per card APDU. Targets: <= 30 ms median, <= 8 card APDUs.

Then the field's transit cards, one tap each (SCardConnect, purchase, SCardDisconnect): a T=0
social security card with the e-purse, a contactless Sichuan 3.0 card with it, a plain T-Union
card of another city and a T-Union card whose FCI lacks 9F0C (one READ BINARY more) and whose
balance carries bit 31; the composite purchase against the plain purchase baseline.

    .venv/bin/python bench/purchase.py [--purchases 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
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
from firmware_sim.tunion_applet import add_tunion
from firmware_sim.vpcd import VpcdBridge, reader_name
from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.devices.reader import CardChannel
from terminal.secure.keyfile import generate_key_set, load_key_file
from terminal.secure.psam import PsamSecureModule
from terminal.secure.software import SoftwarePurchaseModule
from terminal.transit import PurchaseResult, PurchaseStatus, purchase
from terminal.transit.ride import RideSite, RideTerms, ride
from terminal.transit.secure_module import PsamPurchase

TERMINAL = "500100000042"
CARD_SLOT, PSAM_SLOT = 0, 2
CITY_CODE = bytes.fromhex("6900")
BUS = RideSite(mode="bus", city_code=CITY_CODE)
"""A bus validator with the journey record (``RideSite.journey_record`` is on by default)."""
FARE = 1
EXPECTED_APDUS = {"composite": 4, "ride": 5, "plain": 3}
"""Card APDUs over T=1 when the FCI carries 0x15 (docs/transit.md); one more (READ BINARY)
without, three more over T=0 (GET RESPONSE after SELECT, INITIALIZE and DEBIT)."""
T0_GET_RESPONSES = 3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(n: int, one: Callable[[], PurchaseResult]) -> tuple[float, float, int, int]:
    """Median and p95 ms, and the fewest and most card APDUs, of ``n`` purchases."""
    times, counts = [], set()
    for _ in range(n):
        start = time.perf_counter()
        result = one()
        times.append((time.perf_counter() - start) * 1000)
        if result.status is not PurchaseStatus.DONE:
            raise SystemExit(f"purchase failed: {result}")
        counts.add(result.apdu_count)
    return statistics.median(times), percentile(times, 0.95), min(counts), max(counts)


def apdu_text(low: int, high: int) -> str:
    return str(high) if low == high else f"{low}-{high}"


def bus_ride(channel: CardChannel, psam: PsamPurchase, now: dt.datetime) -> PurchaseResult:
    """One bus tap with the journey record; the plan must charge the fare."""
    plan, result = ride(channel, psam, BUS, RideTerms(fare=FARE), now)
    if plan is None or not plan.charge or plan.amount != FARE:
        raise SystemExit(f"the bus ride did not charge {FARE}: {plan}, {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=200)
    parser.add_argument("--algorithm", choices=["des3", "sm4"], default="sm4")
    args = parser.parse_args()
    alg = SymmetricAlgorithm.SM4 if args.algorithm == "sm4" else SymmetricAlgorithm.DES3

    context = establish_context()
    try:
        names = list_readers(context)
    finally:
        release_context(context)
    card_reader, psam_reader = reader_name(CARD_SLOT, names), reader_name(PSAM_SLOT, names)
    if card_reader is None or psam_reader is None:
        raise SystemExit(f"no vpcd readers for slots {CARD_SLOT}/{PSAM_SLOT} in {names}")

    keyset = generate_key_set(TERMINAL, purchase=True)
    card = build_card(load_profile(sample_profile_path("chongqing-2.0")))
    applet = add_tunion(card, keyset, algorithm=alg, balance=10**9)
    bridges = [VpcdBridge(card, CARD_SLOT), VpcdBridge(build_psam(keyset), PSAM_SLOT)]
    for bridge, reader in zip(bridges, (card_reader, psam_reader), strict=True):
        # A card another run just took out may still be listed: wait until pcscd saw it go,
        # or the wait for ours returns at once and the first APDU finds the slot empty.
        wait_for_card(reader, present=False)
        bridge.insert()
        assert wait_for_card(reader, present=True)
    backend = PcscBackend()
    psam = PsamSecureModule.open(backend, psam_reader)
    software = SoftwarePurchaseModule(keyset)
    connection = backend.connect(card_reader)
    channel = CardChannel(connection)
    now = dt.datetime.now()
    try:
        purchase(channel, psam, 1, now)  # warm-up
        bus_ride(channel, psam, now)
        rows = [
            (
                "composite, PSAM in slot 2",
                "composite",
                run(args.purchases, lambda: purchase(channel, psam, 1, now)),
            ),
            (
                "bus ride + journey record 0x1A, PSAM slot 2",
                "ride",
                run(args.purchases, lambda: bus_ride(channel, psam, now)),
            ),
            (
                "baseline: composite, PSAM in software",
                "composite",
                run(args.purchases, lambda: purchase(channel, software, 1, now)),
            ),
            (
                "baseline: plain purchase, PSAM in slot 2",
                "plain",
                run(
                    args.purchases,
                    lambda: purchase(channel, psam, 1, now, composite=False),
                ),
            ),
        ]
    finally:
        connection.close()
        psam.close()
        for bridge in bridges:
            bridge.remove()
        for reader in (card_reader, psam_reader):
            wait_for_card(reader, present=False)
    reference = rows[0][2][0]
    print(
        f"T-Union purchase, {alg.name}, card {card.protocol} in {card_reader!r}, "
        f"{args.purchases} purchases each (card counter now {applet.counter}); ratio: to the "
        "composite purchase"
    )
    print(
        f"{'flow':44} {'median ms':>10} {'p95 ms':>8} {'card APDUs':>11} {'T=1 doc':>8} "
        f"{'ratio':>6}"
    )
    extra = T0_GET_RESPONSES if card.protocol == "T=0" else 0
    for name, kind, (median, p95, low, high) in rows:
        expected = EXPECTED_APDUS[kind]
        flag = "" if high <= expected + extra else "  MORE APDUs THAN DOCUMENTED"
        print(
            f"{name:44} {median:10.2f} {p95:8.2f} {apdu_text(low, high):>11} {expected:8d} "
            f"{median / reference:6.2f}{flag}"
        )
    ride_apdus, purchase_apdus = rows[1][2][3], rows[0][2][3]
    print(
        f"card APDUs per purchase: composite {purchase_apdus}, bus ride with the journey record "
        f"{ride_apdus} ({ride_apdus - purchase_apdus:+d}); median {reference:.2f} -> "
        f"{rows[1][2][0]:.2f} ms (ratio {rows[1][2][0] / reference:.2f})"
    )
    bench_field_cards(card_reader, psam_reader, min(args.purchases, 100))


FIELD_CARDS = (
    ("genuine-cq-2.0-t0", False),
    ("genuine-sc-3.0-transit", True),
    ("tunion-plain", False),
    ("tunion-bit31", False),
)


def bench_field_cards(card_reader: str, psam_reader: str, taps: int) -> None:
    """One tap per purchase on each field card: ours (composite) against the plain purchase."""
    with tempfile.TemporaryDirectory() as tmp:
        world = issue_world(Path(tmp))
        keyset = load_key_file(world["keys"])
        psam_bridge = VpcdBridge(build_psam(keyset), PSAM_SLOT)
        psam_bridge.insert()
        assert wait_for_card(psam_reader, present=True)
        backend = PcscBackend()
        psam = PsamSecureModule.open(backend, psam_reader)
        rows = []
        try:
            for name, contactless in FIELD_CARDS:
                profile = load_profile(world["cards"][name]["file"])
                card = build_card(profile, contactless=contactless)
                if profile.tunion is None:  # the T=0 sample carries no e-purse of its own
                    add_tunion(card, keyset, algorithm=SymmetricAlgorithm.DES3, balance=10**6)
                bridge = VpcdBridge(card, CARD_SLOT)
                bridge.insert()
                assert wait_for_card(card_reader, present=True)
                try:
                    now = dt.datetime.now()

                    def tap(composite: bool, now: dt.datetime = now) -> PurchaseResult:
                        connection = backend.connect(card_reader)
                        try:
                            return purchase(
                                CardChannel(connection), psam, 1, now, composite=composite
                            )
                        finally:
                            connection.close()

                    def ride_tap(now: dt.datetime = now) -> PurchaseResult:
                        connection = backend.connect(card_reader)
                        try:
                            return bus_ride(CardChannel(connection), psam, now)
                        finally:
                            connection.close()

                    ours = run(taps, lambda: tap(True))
                    rides = run(taps, ride_tap)
                    plain = run(taps, lambda: tap(False))
                    label = name + (" (CL)" if contactless else "")
                    rows.append((label, card.protocol, ours, rides, plain))
                finally:
                    bridge.remove()
                    wait_for_card(card_reader, present=False)
        finally:
            psam.close()
            psam_bridge.remove()
    print(f"\nfield transit cards, {taps} taps each (connect + purchase + disconnect), PSAM slot 2")
    print("ratio: composite to plain; ride ratio: the bus ride (journey record) to composite")
    print(
        f"{'card':28} {'T':3} {'composite ms':>12} {'p95':>6} {'APDUs':>5} "
        f"{'plain ms':>9} {'APDUs':>5} {'ratio':>6} {'ride ms':>8} {'APDUs':>5} {'ride ratio':>10}"
    )
    for label, protocol, ours, rides, plain in rows:
        med, p95, low, high = ours
        plain_med, _p, plain_low, plain_high = plain
        ride_med, _rp, ride_low, ride_high = rides
        print(
            f"{label:28} {protocol[2:]:3} {med:12.2f} {p95:6.2f} {apdu_text(low, high):>5} "
            f"{plain_med:9.2f} {apdu_text(plain_low, plain_high):>5} {med / plain_med:6.2f} "
            f"{ride_med:8.2f} {apdu_text(ride_low, ride_high):>5} {ride_med / med:10.2f}"
        )


if __name__ == "__main__":
    main()
