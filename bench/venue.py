"""Benchmark: venue gates (docs/venues.md), in one run, with ratios to a baseline measured in
the same run.

1. **A library gate's decision with the ILS on the loopback.** Two gates built from a
   ``terminal.toml`` with :func:`onecard.runtime.build_runtime` as ``onecard run`` builds
   them (bench/runtime.py's world and config, the screen off), the same Chongqing 2.0 card
   held in vpcd slot 0 through pcscd: a plain gate (the baseline) and the same gate with
   ``[venue] kind = "library"`` asking pysip2's SIP2 server (tests/helpers/sip2_ils.py, on
   127.0.0.1) about the holder. Their taps alternate (one of each per round, so both see
   the same machine); each is ``runtime.handle(CardPresented(...))``: read, verify, decide,
   the SIP2 patron status round trip, journal append with its fsync. Median and p95 ms,
   the ratio to the plain gate, and, from the test ILS's own counters, SIP2 messages per
   admission (1: one patron request on the kept, logged-in connection) and logins (1).
   A last row: the same library gate with the ILS stopped (the configured fallback admits;
   a dead ILS must add no latency). Target: <= 25 ms median.
2. **Reservation lookup among ``--holders`` (1 million) reservations**:
   :class:`terminal.venue.reservations.Reservations` against a dict of token -> slots built
   from the same holders, with bench/venue_reservations.py's ``make_body``, ``measured``
   and ``timings``: median and p99 us of hits and misses, memory (tracemalloc peak of the
   build, RSS growth, bytes held), ratios. Target: <= 5 us median.

pcscd + vpcd must be running (``make setup``); serialize with other users of the machine::

    flock /tmp/onecard-pcscd.lock .venv/bin/python bench/venue.py [--rounds 200]
        [--holders 1000000] [--lookups 50000]

Exits 1 when a target is missed or a tap did not end as it should.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import runtime as runtime_bench  # noqa: E402  (bench/runtime.py)
import venue_reservations  # noqa: E402  (bench/venue_reservations.py)
from helpers.sip2_ils import INSTITUTION, PASSWORD, USER, Patron, TestIls  # noqa: E402

from drivers.pcsc import establish_context, list_readers, release_context, wait_for_card  # noqa: E402
from firmware_sim.profile import load_profile  # noqa: E402
from firmware_sim.ssc_applet import build_card  # noqa: E402
from firmware_sim.vpcd import VpcdBridge, reader_name  # noqa: E402
from onecard.runtime import build_runtime  # noqa: E402
from terminal.runtime.config import load_config  # noqa: E402
from terminal.runtime.transaction import CardPresented  # noqa: E402
from terminal.venue.reservations import Slot, parse_reservations  # noqa: E402

CARD_SLOT = runtime_bench.CARD_SLOT
TARGET_GATE_MS = 25.0
TARGET_LOOKUP_US = 5.0


def library_section(port: int) -> str:
    return f"""
[venue]
kind = "library"
id = "lib-1"

[venue.ils]
host = "127.0.0.1"
port = {port}
user = "{USER}"
password = "{PASSWORD}"
institution = "{INSTITUTION}"
timeout_seconds = 1.0
fallback = "admit"
"""


def tap_times(runtimes: dict[str, Any], presented: CardPresented, rounds: int) -> dict:
    """Alternating taps, one per runtime per round: ``name -> (ms samples, decisions,
    admissions)``."""
    samples: dict[str, tuple[list[float], list[str]]] = {n: ([], []) for n in runtimes}
    for _ in range(rounds):
        for name, runtime in runtimes.items():
            started = time.perf_counter()
            outcome = runtime.handle(presented)
            elapsed = (time.perf_counter() - started) * 1000.0
            times, decisions = samples[name]
            times.append(elapsed)
            decisions.append(f"{outcome.decision}/{outcome.reason}")
    return {
        name: (times, set(decisions), sum(d.startswith("accept/") for d in decisions))
        for name, (times, decisions) in samples.items()
    }


def bench_gates(rounds: int) -> tuple[list[tuple], dict[str, int], bool]:
    """The gate rows ``(name, median, p95, decisions)``, the ILS's counters, all as wanted."""
    context = establish_context()
    try:
        names = list_readers(context)
    finally:
        release_context(context)
    reader = reader_name(CARD_SLOT, names)
    if reader is None:
        raise SystemExit(f"no vpcd reader for slot {CARD_SLOT} in {names} (run `make setup`)")

    with tempfile.TemporaryDirectory(prefix="onecard-bench-venue-") as tmp:
        out = Path(tmp)
        world = runtime_bench.write_world(out)
        profile = load_profile(world["cards"]["genuine-cq-2.0"]["file"])
        card = build_card(profile, contactless=True)
        with TestIls({profile.issuer.card_number: Patron()}) as ils:
            # The library gate is bench/runtime.py's gate with a [venue] table: a variant.
            runtime_bench.VARIANTS["library"] = ("gate", library_section(ils.port))
            configs = {
                name: runtime_bench.write_config(out, name, reader, reader)
                for name in ("gate", "library")
            }
            bridge = VpcdBridge(card, CARD_SLOT)
            bridge.insert()
            if not wait_for_card(reader, present=True):
                raise SystemExit(f"pcscd did not see the card in {reader}")
            runtimes = {
                name: build_runtime(load_config(path), outputs=runtime_bench.NullOutputs())
                for name, path in configs.items()
            }
            try:
                presented = CardPresented(reader, card.atr)
                for runtime in runtimes.values():
                    runtime.handle(presented)  # warm-up: imports, connection, ILS login
                before = ils.counters.messages
                samples = tap_times(runtimes, presented, rounds)
                counters = {
                    "logins": ils.counters.logins,
                    "sc_status": ils.counters.sc_status,
                    "messages": ils.counters.messages - before,
                    "admissions": samples["library"][2],
                    "connections": ils.counters.connections,
                }
                ils.stop()
                # Each fallback is logged (a warning a tap): not this bench's output.
                quiet = logging.getLogger("terminal.venue")
                level, quiet.level = quiet.level, logging.ERROR
                try:
                    down = tap_times({"library": runtimes["library"]}, presented, rounds)
                finally:
                    quiet.setLevel(level)
            finally:
                for runtime in runtimes.values():
                    runtime.shutdown()
                bridge.remove()
                wait_for_card(reader, present=False, timeout=5)

    wanted = {
        "plain gate (baseline)": "accept/ok",
        "library gate, ILS up": "accept/patron_ok",
        "library gate, ILS down": "accept/ils_unreachable",
    }
    rows = []
    for label, (times, decisions, _admitted) in (
        ("plain gate (baseline)", samples["gate"]),
        ("library gate, ILS up", samples["library"]),
        ("library gate, ILS down", down["library"]),
    ):
        got = ",".join(sorted(decisions))
        rows.append(
            (
                label,
                statistics.median(times),
                runtime_bench.percentile(times, 0.95),
                got,
                got == wanted[label],
            )
        )
    return rows, counters, all(r[4] for r in rows)


def dict_baseline(body: dict[str, Any]) -> dict[bytes, tuple[Slot, ...]]:
    """The structure one would write first (bench/venue_reservations.py's baseline): a dict
    entry, a bytes key and a tuple of shared Slot objects per holder."""
    made = {
        s["id"]: Slot(
            s["id"], dt.datetime.fromisoformat(s["start"]), dt.datetime.fromisoformat(s["end"])
        )
        for s in body["slots"]
    }
    return {
        bytes.fromhex(t): tuple(sorted((made[i] for i in ids), key=lambda s: s.start))
        for t, ids in body["holders"]
    }


def bench_reservations(holders: int, lookups: int) -> tuple[list[tuple], list[tuple]]:
    """``(timing rows, memory rows)`` for Reservations and the dict baseline."""
    body, tokens = venue_reservations.make_body(holders)
    reservations, res_peak, res_rss, res_s = venue_reservations.measured(
        lambda: parse_reservations(body)
    )
    baseline, dict_peak, dict_rss, dict_s = venue_reservations.measured(lambda: dict_baseline(body))
    rng = venue_reservations._seeded(8 * lookups, 11)
    step = max(1, len(tokens) // lookups)
    hits = tokens[::step][:lookups]
    misses = [rng[i : i + 8] for i in range(0, len(rng), 8)]
    assert all(reservations.slots_for(t) == baseline[t] for t in hits[:1000])
    assert not any(reservations.slots_for(t) for t in misses[:1000])
    empty: tuple[Slot, ...] = ()
    timing = []
    for name, lookup in (
        ("Reservations (sorted uint64)", reservations.slots_for),
        ("dict baseline", lambda t: baseline.get(t, empty)),
    ):
        hit = venue_reservations.timings(lookup, hits)
        miss = venue_reservations.timings(lookup, misses)
        timing.append(
            (
                name,
                statistics.median(hit),
                venue_reservations._p99(hit),
                statistics.median(miss),
                venue_reservations._p99(miss),
            )
        )
    memory = [
        ("Reservations (sorted uint64)", res_s, res_peak, res_rss, reservations.nbytes),
        ("dict baseline", dict_s, dict_peak, dict_rss, None),
    ]
    return timing, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="taps per gate")
    parser.add_argument("--holders", type=int, default=1_000_000, help="reservations held")
    parser.add_argument("--lookups", type=int, default=50_000, help="hit and miss lookups")
    args = parser.parse_args()

    gates, counters, decisions_ok = bench_gates(args.rounds)
    timing, memory = bench_reservations(args.holders, args.lookups)

    failures = 0 if decisions_ok else 1
    print(
        f"1. gate decision through pcscd + vpcd, {args.rounds} taps per row (alternating), "
        f"ILS: pysip2's SIP2 server on 127.0.0.1"
    )
    header = f"{'gate':<26} {'median ms':>9} {'p95 ms':>7} {'ratio':>6} {'target':>12}  decisions"
    print(header)
    print("-" * len(header))
    base = gates[0][1]
    for label, median, p95, decisions, ok in gates:
        target = ""
        if label == "library gate, ILS up":
            met = median <= TARGET_GATE_MS
            failures += not met
            target = f"<={TARGET_GATE_MS:.0f}ms {'ok' if met else 'MISS'}"
        flag = "" if ok else "  UNEXPECTED"
        print(
            f"{label:<26} {median:9.2f} {p95:7.2f} {median / base:6.2f} {target:>12}  "
            f"{decisions}{flag}"
        )
    per_admission = counters["messages"] / max(1, counters["admissions"])
    one = per_admission == 1.0 and counters["logins"] == 1
    failures += not one
    print(
        f"SIP2 at the ILS: {per_admission:.2f} messages per admission "
        f"({counters['messages']} after the warm-up tap for {counters['admissions']} "
        f"admissions), logins {counters['logins']}, SC status {counters['sc_status']}, "
        f"connections {counters['connections']} - {'ok' if one else 'NOT one kept connection'}"
    )

    print()
    print(
        f"2. reservation lookup among {args.holders:,} holders, {args.lookups:,} hit and "
        f"{args.lookups:,} miss lookups (bench/venue_reservations.py's functions); "
        f"Python {sys.version.split()[0]}"
    )
    header = (
        f"{'structure':<30}{'hit med us':>11}{'hit p99 us':>11}{'miss med us':>12}"
        f"{'miss p99 us':>12}{'target':>13}"
    )
    print(header)
    print("-" * len(header))
    for name, hit, hit99, miss, miss99 in timing:
        target = ""
        if name.startswith("Reservations"):
            met = hit <= TARGET_LOOKUP_US and miss <= TARGET_LOOKUP_US
            failures += not met
            target = f"<={TARGET_LOOKUP_US:.0f}us {'ok' if met else 'MISS'}"
        print(f"{name:<30}{hit:>11.2f}{hit99:>11.2f}{miss:>12.2f}{miss99:>12.2f}{target:>13}")
    (_, res_hit, _, res_miss, _), (_, dict_hit, _, dict_miss, _) = timing
    print(
        f"{'ratio (Reservations / dict)':<30}{res_hit / dict_hit:>11.2f}{'':>11}"
        f"{res_miss / dict_miss:>12.2f}"
    )
    mib = 1 << 20
    print(f"{'memory':<30}{'build s':>11}{'peak MiB':>11}{'RSS +MiB':>12}{'held MiB':>12}")
    for name, seconds, peak, rss, held in memory:
        held_text = "" if held is None else f"{held / mib:.1f}"
        print(f"{name:<30}{seconds:>11.2f}{peak / mib:>11.1f}{rss / mib:>12.1f}{held_text:>12}")
    (_, _, res_peak, res_rss, _), (_, _, dict_peak, dict_rss, _) = memory
    rss_ratio = f"{res_rss / dict_rss:.2f}" if dict_rss > 0 else "n/a"
    print(
        f"{'ratio (Reservations / dict)':<30}{'':>11}{res_peak / dict_peak:>11.2f}{rss_ratio:>12}"
    )
    print()
    print("all targets met" if not failures else f"{failures} target(s) or check(s) MISSED")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
