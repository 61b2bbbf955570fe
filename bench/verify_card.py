"""Benchmark: SM2 verify per back-end, and full verification of a 3.0 card through pcscd + vpcd.

1. SM2 verify, the chosen back-end (native when tongsuopy passes its self-test) against the
   pure-Python baseline, in the same run: median over rounds, and the ratio.
2. Full verification of a genuine Sichuan 3.0 card - read, internal authentication, external
   authentication, EF06, PKI chain and dynamic signature - through pcscd + vpcd, per tap
   (connect, verify, disconnect): median and p95 terminal time and the APDU count, with the
   software secure module and with a PSAM in a second vpcd slot, each with the native and the
   pure SM2 back-end. Terminal time is what our side spends; on a real card add 5-20 ms of air
   time per APDU.

    .venv/bin/python bench/verify_card.py [--rounds 5] [--taps 100]
"""

from __future__ import annotations

import argparse
import datetime
import os
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
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.vpcd import VpcdBridge, reader_name
from terminal.crypto import signing, sm2
from terminal.pki.truststore import load_trust_store
from terminal.secure.keyfile import load_key_file
from terminal.secure.psam import PsamSecureModule
from terminal.secure.software import SoftwareSecureModule
from terminal.ssc.reading import verify_card_in_reader

AIR_MS_PER_APDU = 10.0


def median_ms(fn: Callable[[], object], rounds: int, iterations: int) -> tuple[float, list[float]]:
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        per_round.append((time.perf_counter() - start) / iterations * 1000)
    return statistics.median(per_round), per_round


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_sm2(rounds: int) -> None:
    sm2._get_g_table()
    key = signing.generate_private_key(signing.Algorithm.SM2)
    public = signing.public_key_bytes(key)
    message = b"onecard/card-auth/v1" + bytes(16)
    signature = signing.sign(signing.Algorithm.SM2, key, message)
    rows = []
    for backend in ("pure", "native"):
        os.environ["ONECARD_SM2_BACKEND"] = backend
        try:
            signing.sm2_backend()
        except Exception:
            print(f"SM2 back-end {backend}: not available")
            continue

        def verify() -> object:
            assert signing.verify(signing.Algorithm.SM2, public, message, signature)
            return None

        med, per_round = median_ms(verify, rounds, 300)
        rows.append((backend, med, per_round))
    os.environ.pop("ONECARD_SM2_BACKEND", None)
    print(f"\nSM2 verify (through terminal.crypto.signing), {rounds} rounds x 300")
    print(f"{'back-end':<10} {'median ms':>10} {'round medians ms':<40} {'vs pure':>8}")
    pure = rows[0][1]
    for name, med, per_round in rows:
        spread = " ".join(f"{m:.3f}" for m in per_round)
        print(f"{name:<10} {med:>10.3f} {spread:<40} x{pure / med:>6.2f}")
    print(f"chosen back-end: {signing.sm2_backend()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--taps", type=int, default=100, help="taps per configuration per round")
    args = parser.parse_args()

    bench_sm2(args.rounds)

    today = datetime.date.today()
    with tempfile.TemporaryDirectory() as tmp:
        world = issue_world(Path(tmp), today)
        context = establish_context()
        try:
            names = list_readers(context)
        finally:
            release_context(context)
        card_reader, psam_reader = reader_name(1, names), reader_name(2, names)
        assert card_reader and psam_reader, "vpcd slots missing: run make setup"
        card = build_card(load_profile(world["cards"]["genuine-sc-3.0"]["file"]))
        keyset = load_key_file(world["keys"])
        bridges = [VpcdBridge(card, slot=1), VpcdBridge(build_psam(keyset), slot=2)]
        for bridge in bridges:
            bridge.insert()
        try:
            wait_for_card(card_reader)
            wait_for_card(psam_reader)
            backend = PcscBackend()
            store = load_trust_store(world["trust_store"], today)
            software = SoftwareSecureModule(keyset)
            psam = PsamSecureModule(backend.connect(psam_reader))
            configs = {}
            for module_name, module in (("software", software), ("psam", psam)):
                for sm2_name in ("native", "pure"):
                    configs[f"{module_name} + {sm2_name} SM2"] = (module, sm2_name)
            times: dict[str, list[float]] = {name: [] for name in configs}
            round_medians: dict[str, list[float]] = {name: [] for name in configs}
            apdus: dict[str, int] = {}
            for _ in range(args.rounds):
                per_round: dict[str, list[float]] = {name: [] for name in configs}
                for _ in range(args.taps):
                    for name, (module, sm2_name) in configs.items():
                        os.environ["ONECARD_SM2_BACKEND"] = sm2_name
                        start = time.perf_counter()
                        reading, verification = verify_card_in_reader(
                            backend, card_reader, module, store, today
                        )
                        per_round[name].append((time.perf_counter() - start) * 1000)
                        assert verification.verdict.value == "genuine", verification.reason
                        apdus[name] = reading.apdu_count
                for name in configs:
                    times[name] += per_round[name]
                    round_medians[name].append(statistics.median(per_round[name]))
            os.environ.pop("ONECARD_SM2_BACKEND", None)
            psam.close()
        finally:
            for bridge in bridges:
                bridge.remove()

    print(
        f"\nfull verification of a 3.0 card through pcscd + vpcd: {args.rounds} rounds x "
        f"{args.taps} taps per configuration (connect + verify + disconnect)"
    )
    header = (
        f"{'configuration':<24} {'APDUs':>5} {'median ms':>9} {'p95 ms':>7} "
        f"{'round medians ms':<36} {'+ air @10ms/APDU':>16}"
    )
    print(header)
    print("-" * len(header))
    for name in configs:
        spread = " ".join(f"{m:.2f}" for m in round_medians[name])
        med = statistics.median(times[name])
        print(
            f"{name:<24} {apdus[name]:>5} {med:>9.2f} {percentile(times[name], 0.95):>7.2f} "
            f"{spread:<36} {med + apdus[name] * AIR_MS_PER_APDU:>13.0f} ms"
        )


if __name__ == "__main__":
    main()
