"""Benchmark: a full basic read (EF05 + EF06) through pcscd + vpcd, ours vs the per-tag baseline.

The baseline is what most reader SDKs do: SELECT each EF, then one READ RECORD per tag with
Le=00 and a re-send on 6Cxx. Ours is :func:`terminal.ssc.session.read_ssc` in AUTO mode
(multi-record, falling back to per tag), and "ours (learned)" is what the runtime does from
the second card of a kind on (:class:`terminal.ssc.session.ReadModeMemo`: a card kind without
the multi-record mode is not probed again). Cards: the classic samples and the field's shapes
(a T=0 2.0 card without template or tag 4E, a Zhejiang county card, a contactless 3.0 card
whose EF06 is locked). All paths run in the same process, on the same simulated card,
interleaved, so machine noise hits them alike. Per read: SCardConnect, the read,
SCardDisconnect (what one card tap costs the terminal). Needs pcscd running with the vpcd
driver (`make setup`).

    .venv/bin/python bench/read_card.py [--reads 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from drivers.pcsc import (
    PcscBackend,
    establish_context,
    list_readers,
    release_context,
    wait_for_card,
)
from firmware_sim.profile import load_profile, sample_profile_path
from firmware_sim.ssc_applet import build_card
from firmware_sim.vpcd import VpcdBridge, reader_name
from terminal.devices.reader import CardChannel
from terminal.iso7816 import atr
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.tlv import records_by_tag
from terminal.ssc import layout
from terminal.ssc.records import HolderData, decode_holder_data, decode_issuer_data
from terminal.ssc.session import ReadModeMemo, read_ssc

AIR_MS_PER_APDU = 10.0  # mid-range of the 5-20 ms a real card costs per APDU over the air


def baseline_read(channel: CardChannel) -> tuple[object, object]:
    """Per-tag read: SELECT SSSE, SELECT each EF, READ RECORD Le=00 per tag (+ 6Cxx re-send)."""
    channel.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, layout.SSSE_NAME, 256))
    values: dict[int, dict[int, bytes]] = {}
    for fid in (layout.EF05_FID, layout.EF06_FID):
        channel.transmit(CommandAPDU(0x00, 0xA4, 0x02, 0x00, fid.to_bytes(2, "big"), 256))
        got: dict[int, bytes] = {}
        for tag in layout.file_tags(layout.Generation.V2, fid):
            answer = channel.transmit(CommandAPDU(0x00, 0xB2, tag, 0x00, le=256))
            if answer.ok:
                got.update(records_by_tag(answer.data))
        values[fid] = got
    return decode_issuer_data(values[layout.EF05_FID]), decode_holder_data(values[layout.EF06_FID])


def ours_read(channel: CardChannel) -> tuple[object, object]:
    result = read_ssc(channel)
    return result.issuer, result.holder or HolderData()


def learned_read(memo: ReadModeMemo) -> Callable[[CardChannel], tuple[object, object]]:
    """The runtime's read: the mode its memo learned for this kind of card."""

    def read(channel: CardChannel) -> tuple[object, object]:
        historical = atr.historical_bytes(channel.connection.atr)
        result = read_ssc(channel, memo.mode_for(historical))
        memo.learn(historical, result.mode)
        return result.issuer, result.holder or HolderData()

    return read


def one_tap(backend: PcscBackend, reader: str, read: Callable[[CardChannel], object]):
    started = time.perf_counter()
    connection = backend.connect(reader)
    try:
        channel = CardChannel(connection)
        data = read(channel)
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000, channel.apdu_count, data


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_profile(
    profile: str, slot: int, reads: int, rounds: int, contactless: bool = False
) -> list[dict[str, object]]:
    context = establish_context()
    try:
        name = reader_name(slot, list_readers(context))
    finally:
        release_context(context)
    assert name is not None, f"vpcd slot {slot} not registered (run make setup)"
    card = build_card(load_profile(sample_profile_path(profile)), contactless=contactless)
    bridge = VpcdBridge(card, slot=slot)
    bridge.insert()
    try:
        wait_for_card(name)
        backend = PcscBackend()
        paths = {
            "ours (auto)": ours_read,
            "ours (learned)": learned_read(ReadModeMemo()),
            "baseline (per tag)": baseline_read,
        }
        times: dict[str, list[float]] = {label: [] for label in paths}
        round_medians: dict[str, list[float]] = {label: [] for label in paths}
        apdus: dict[str, int] = {}
        reference = None
        for _ in range(rounds):
            per_round: dict[str, list[float]] = {label: [] for label in paths}
            for _ in range(reads):
                for label, read in paths.items():
                    ms, count, data = one_tap(backend, name, read)
                    per_round[label].append(ms)
                    apdus[label] = count
                    reference = reference or data
                    assert data == reference, "paths disagree on the card's data"
            for label in paths:
                times[label] += per_round[label]
                round_medians[label].append(statistics.median(per_round[label]))
        rows = []
        for label in paths:
            rows.append(
                {
                    "card": profile + (" (CL)" if contactless else ""),
                    "protocol": card.protocol,
                    "path": label,
                    "median_ms": statistics.median(times[label]),
                    "p95_ms": percentile(times[label], 0.95),
                    "round_medians": round_medians[label],
                    "apdus": apdus[label],
                }
            )
        return rows
    finally:
        bridge.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=200, help="reads per path per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians reported)")
    args = parser.parse_args()

    cards = (
        ("chongqing-2.0", 0, False),
        ("chongqing-1.0", 2, False),
        ("chongqing-2.0-t0", 0, False),
        ("zhejiang-2.0", 2, False),
        ("sichuan-3.0-transit", 0, True),
    )
    rows = []
    for profile, slot, contactless in cards:
        rows += bench_profile(profile, slot, args.reads, args.rounds, contactless)

    print(
        f"\nbasic read EF05+EF06 through pcscd + vpcd: {args.rounds} rounds x {args.reads} reads "
        f"per path; connect + read + disconnect per read"
    )
    header = (
        f"{'card':<24} {'T':<3} {'path':<20} {'APDUs':>5} {'median ms':>9} {'p95 ms':>7} "
        f"{'round medians ms':<30} {'on air @10ms/APDU':>17}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = " ".join(f"{m:.2f}" for m in row["round_medians"])
        print(
            f"{row['card']:<24} {row['protocol'][2:]:<3} {row['path']:<20} {row['apdus']:>5} "
            f"{row['median_ms']:>9.2f} {row['p95_ms']:>7.2f} {spread:<30} "
            f"{row['apdus'] * AIR_MS_PER_APDU:>15.0f} ms"
        )
    print()
    per_card = len(rows) // len(cards)
    for i in range(0, len(rows), per_card):
        ours, learned, base = rows[i : i + per_card]
        print(
            f"{ours['card']}: baseline/ours time x{base['median_ms'] / ours['median_ms']:.2f}, "
            f"APDUs x{base['apdus'] / ours['apdus']:.2f} ({base['apdus']} -> {ours['apdus']}; "
            f"learned {learned['apdus']})"
        )


if __name__ == "__main__":
    main()
