"""Benchmark: SM2 verify per back-end, and full verification of a 3.0 card through pcscd + vpcd.

1. SM2 verify, the chosen back-end (native when tongsuopy passes its self-test) against the
   pure-Python baseline, in the same run: median over rounds, and the ratio.
2. Full verification of a genuine Sichuan 3.0 card - read, internal authentication, external
   authentication, EF06, PKI chain and dynamic signature - through pcscd + vpcd, per tap
   (connect, verify, disconnect): median and p95 terminal time and the APDU count, with the
   software secure module and with a PSAM in a second vpcd slot, each with the native and the
   pure SM2 back-end. Terminal time is what our side spends; on a real card add 5-20 ms of air
   time per APDU.
3. The field's cards (a Chongqing 2.0 card, a T=0 2.0 card without algorithm template or tag
   4E, a Zhejiang county card, a contactless Sichuan 3.0 card with the T-Union e-purse)
   verified with a PSAM, ours (what the runtime does: the read mode learned per card kind,
   terminal randoms for INTERNAL AUTHENTICATE) against the flow of the vendor reader
   libraries in the public logs (SSCARD.js / the HSM stream: SELECT each EF, READ RECORD
   with Le 00 and a re-send on 6Cxx, two GET CHALLENGEs before each authentication).
   APDUs are the card's; the PSAM's are counted apart.

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
from terminal.devices.reader import CardChannel
from terminal.iso7816 import atr
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.tlv import parse_fci, records_by_tag
from terminal.pki.truststore import load_trust_store
from terminal.secure.keyfile import load_key_file
from terminal.secure.psam import PsamSecureModule
from terminal.secure.software import SoftwareSecureModule
from terminal.ssc import auth, layout
from terminal.ssc.authenticity import card_algorithm, verify_card
from terminal.ssc.reading import verify_card_in_reader
from terminal.ssc.session import ReadMode, ReadModeMemo, SscRead

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


# --- part 3: the field's cards, ours against the vendor libraries' flow -------------------------

FIELD_CARDS = (
    ("genuine-cq-2.0", False),
    ("genuine-cq-2.0-t0", False),
    ("genuine-zj-2.0", False),
    ("genuine-sc-3.0-transit", True),
)


def vendor_verify(channel: CardChannel, psam: PsamSecureModule) -> bool:
    """The flow of the public logs' reader libraries: SELECT SSSE, SELECT EF05, READ RECORD of
    01, 03, 07 with Le 00 (6Cxx re-sent), two GET CHALLENGEs and INTERNAL AUTHENTICATE with
    them, on a 3.0 card two more and EXTERNAL AUTHENTICATE, then EF05 05, 06 and EF06 08, 09,
    4E (and the rest of EF06). The PSAM computes what the HSM would. True when genuine."""

    def read(tags: tuple[int, ...]) -> dict[int, bytes]:
        got: dict[int, bytes] = {}
        for tag in tags:
            answer = channel.transmit(CommandAPDU(0x00, 0xB2, tag, 0x00, le=256))
            if answer.ok:
                got.update(records_by_tag(answer.data))
        return got

    fci = parse_fci(channel.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, layout.SSSE_NAME)).data)
    channel.transmit(CommandAPDU(0x00, 0xA4, 0x02, 0x00, b"\xef\x05"))
    ef05 = read((0x01, 0x03, 0x07))
    from terminal.ssc.records import decode_issuer_data

    issuer = decode_issuer_data(ef05)
    region = issuer.region or ""
    algorithm = card_algorithm(SscRead(fci, issuer, None, (), ReadMode.PER_TAG))
    assert algorithm is not None
    historical = atr.historical_bytes(channel.connection.atr)
    original = channel.transmit(auth.get_challenge()).data
    factor = channel.transmit(auth.get_challenge()).data
    answer = channel.transmit(auth.internal_authenticate(factor, original))
    expected = psam.cryptogram(auth.KeyName.IRK, algorithm, region, historical, factor, original)
    if answer.data != expected:
        return False
    if issuer.generation is layout.Generation.V3:
        original = channel.transmit(auth.get_challenge()).data
        factor = channel.transmit(auth.get_challenge()).data
        a = psam.cryptogram(auth.KeyName.RKSSSE, algorithm, region, historical, factor, original)
        if not channel.transmit(auth.external_authenticate(a, original)).ok:
            return False
    channel.transmit(CommandAPDU(0x00, 0xA4, 0x02, 0x00, b"\xef\x05"))
    read((0x05, 0x06))
    channel.transmit(CommandAPDU(0x00, 0xA4, 0x02, 0x00, b"\xef\x06"))
    read(layout.file_tags(issuer.generation or layout.Generation.V2, layout.EF06_FID))
    return True


def bench_field_cards(world: dict, rounds: int, taps: int) -> None:
    today = datetime.date.today()
    context = establish_context()
    try:
        names = list_readers(context)
    finally:
        release_context(context)
    card_reader, psam_reader = reader_name(1, names), reader_name(2, names)
    assert card_reader and psam_reader, "vpcd slots missing: run make setup"
    store = load_trust_store(world["trust_store"], today)
    psam_bridge = VpcdBridge(build_psam(load_key_file(world["keys"])), slot=2)
    for reader in (card_reader, psam_reader):
        wait_for_card(reader, present=False)  # a card another run took out may still be listed
    psam_bridge.insert()
    rows = []
    try:
        wait_for_card(psam_reader)
        backend = PcscBackend()
        psam = PsamSecureModule(backend.connect(psam_reader))
        for name, contactless in FIELD_CARDS:
            profile = load_profile(world["cards"][name]["file"])
            bridge = VpcdBridge(build_card(profile, contactless=contactless), slot=1)
            bridge.insert()
            try:
                wait_for_card(card_reader)
                memo = ReadModeMemo()

                def ours(channel: CardChannel, memo: ReadModeMemo = memo) -> bool:
                    historical = atr.historical_bytes(channel.connection.atr)
                    result = verify_card(
                        channel, historical, psam, store, today, memo.mode_for(historical)
                    )
                    if result.read is not None:
                        memo.learn(historical, result.read.mode)
                    return result.verdict.value == "genuine"

                paths = {"ours": ours, "vendor flow": lambda c: vendor_verify(c, psam)}
                times: dict[str, list[float]] = {label: [] for label in paths}
                apdus: dict[str, int] = {}
                psam_apdus: dict[str, int] = {}
                for _ in range(rounds):
                    for _ in range(taps):
                        for label, flow in paths.items():
                            before = psam.apdu_count
                            start = time.perf_counter()
                            connection = backend.connect(card_reader)
                            try:
                                channel = CardChannel(connection)
                                assert flow(channel), f"{label}: {name} not genuine"
                            finally:
                                connection.close()
                            times[label].append((time.perf_counter() - start) * 1000)
                            apdus[label] = channel.apdu_count
                            psam_apdus[label] = psam.apdu_count - before
                for label in paths:
                    rows.append(
                        (
                            name + (" (CL)" if contactless else ""),
                            profile.card.protocol if not contactless else "T=1",
                            label,
                            apdus[label],
                            psam_apdus[label],
                            statistics.median(times[label]),
                            percentile(times[label], 0.95),
                        )
                    )
            finally:
                bridge.remove()
                wait_for_card(card_reader, present=False)
        psam.close()
    finally:
        psam_bridge.remove()

    print(
        f"\nfield cards verified with a PSAM through pcscd + vpcd: {rounds} rounds x {taps} "
        "taps per path (connect + verify + disconnect; ours as the runtime reads: mode learned)"
    )
    header = (
        f"{'card':<26} {'T':<3} {'path':<12} {'card APDUs':>10} {'PSAM APDUs':>10} "
        f"{'median ms':>9} {'p95 ms':>7} {'+ air @10ms/card APDU':>21}"
    )
    print(header)
    print("-" * len(header))
    for card, protocol, label, count, psam_count, med, p95 in rows:
        print(
            f"{card:<26} {protocol[2:]:<3} {label:<12} {count:>10} {psam_count:>10} "
            f"{med:>9.2f} {p95:>7.2f} {med + count * AIR_MS_PER_APDU:>18.0f} ms"
        )
    print()
    for i in range(0, len(rows), 2):
        ours, vendor = rows[i], rows[i + 1]
        print(
            f"{ours[0]}: vendor/ours card APDUs x{vendor[3] / ours[3]:.2f} "
            f"({vendor[3]} -> {ours[3]}), time x{vendor[5] / ours[5]:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--taps", type=int, default=100, help="taps per configuration per round")

    parser.add_argument(
        "--part", choices=["all", "sm2", "sc3", "field"], default="all", help="which part to run"
    )
    args = parser.parse_args()

    if args.part in ("all", "sm2"):
        bench_sm2(args.rounds)

    today = datetime.date.today()
    with tempfile.TemporaryDirectory() as tmp:
        world = issue_world(Path(tmp), today)
        if args.part in ("all", "field"):
            bench_field_cards(world, args.rounds, max(1, args.taps // 2))
        if args.part not in ("all", "sc3"):
            return
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
        for reader in (card_reader, psam_reader):
            wait_for_card(reader, present=False)  # the field part's cards have left
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
