"""Venue reservations at a million holders: lookup time and memory of
:class:`terminal.venue.reservations.Reservations` (a sorted ``uint64`` token array, a slot
combination index beside it) against a plain dict of token -> tuple of slots, built in the
same run from the same holders.

    .venv/bin/python bench/venue_reservations.py [--holders 1000000] [--lookups 200000]

Prints a table: median (and 99th percentile) microseconds per lookup for tokens held
(hits) and not held (misses), the ratio of the two structures, and their memory - the
tracemalloc peak while the structure is built from the parsed body, and the growth of the
process's resident set (RSS) it leaves behind. The target: a median lookup of at most 5 us.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from terminal.venue.reservations import Slot, parse_reservations

SLOTS = [
    {
        "id": f"s{h:02d}",
        "start": f"2026-12-06T{h:02d}:00:00+08:00",
        "end": f"2026-12-06T{h + 1:02d}:00:00+08:00",
    }
    for h in range(9, 17)
]


def rss_bytes() -> int:
    """The resident set of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def make_body(holders: int, seed: int = 7) -> tuple[dict[str, Any], list[bytes]]:
    """A reservations body of ``holders`` random tokens, one or two slots each."""
    raw = os.urandom(8 * holders) if seed < 0 else _seeded(8 * holders, seed)
    tokens = [raw[i : i + 8] for i in range(0, len(raw), 8)]
    ids = [s["id"] for s in SLOTS]
    rows = [
        [t.hex(), [ids[i % len(ids)]] if i % 5 else [ids[i % len(ids)], ids[(i + 3) % len(ids)]]]
        for i, t in enumerate(tokens)
    ]
    return {"venue": "museum-1", "slots": SLOTS, "holders": rows}, tokens


def _seeded(size: int, seed: int) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).bytes(size)


def measured(build: Callable[[], Any]) -> tuple[Any, int, int, float]:
    """``(value, tracemalloc peak, RSS growth, seconds)`` of ``build()``."""
    gc.collect()
    rss_before = rss_bytes()
    tracemalloc.start()
    started = time.perf_counter()
    value = build()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    gc.collect()
    return value, peak, rss_bytes() - rss_before, seconds


def timings(
    lookup: Callable[[bytes], object], tokens: list[bytes], repeat: int = 20
) -> list[float]:
    """Microseconds per lookup, each sample the mean of ``repeat`` lookups of one token
    (perf_counter's resolution is tens of nanoseconds)."""
    out = []
    clock = time.perf_counter
    for token in tokens:
        started = clock()
        for _ in range(repeat):
            lookup(token)
        out.append((clock() - started) / repeat * 1e6)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holders", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    args = parser.parse_args()

    body, tokens = make_body(args.holders)
    slots = {s["id"]: s for s in SLOTS}

    def build_dict() -> dict[bytes, tuple[Slot, ...]]:
        # The baseline: what one would write first. Slot objects are shared, as in
        # Reservations; the cost is a dict entry, a bytes key and a tuple per holder.
        made = {
            sid: Slot(
                sid, dt.datetime.fromisoformat(s["start"]), dt.datetime.fromisoformat(s["end"])
            )
            for sid, s in slots.items()
        }
        return {
            bytes.fromhex(t): tuple(sorted((made[i] for i in ids), key=lambda s: s.start))
            for t, ids in body["holders"]
        }

    reservations, res_peak, res_rss, res_s = measured(lambda: parse_reservations(body))
    baseline, dict_peak, dict_rss, dict_s = measured(build_dict)

    rng = _seeded(8 * args.lookups, 11)
    step = max(1, len(tokens) // args.lookups)
    hits = tokens[::step][: args.lookups]
    misses = [rng[i : i + 8] for i in range(0, len(rng), 8)]
    assert all(reservations.slots_for(t) for t in hits[:1000])
    assert all(reservations.slots_for(t) == baseline[t] for t in hits[:1000])
    assert not any(reservations.slots_for(t) for t in misses[:1000])

    empty: tuple[Slot, ...] = ()
    rows = []
    for name, lookup in (
        ("Reservations (sorted uint64)", reservations.slots_for),
        ("dict baseline", lambda t: baseline.get(t, empty)),
    ):
        hit = timings(lookup, hits)
        miss = timings(lookup, misses)
        rows.append((name, statistics.median(hit), _p99(hit), statistics.median(miss), _p99(miss)))
    res_hit, dict_hit = rows[0][1], rows[1][1]
    res_miss, dict_miss = rows[0][3], rows[1][3]

    print(f"venue reservations: {args.holders:,} holders, {len(hits):,} hit and "
          f"{len(misses):,} miss lookups; Python {sys.version.split()[0]}")  # fmt: skip
    print()
    header = ("structure", "hit med us", "hit p99 us", "miss med us", "miss p99 us")
    print(f"{header[0]:<30}" + "".join(f"{h:>13}" for h in header[1:]))
    for name, *values in rows:
        print(f"{name:<30}" + "".join(f"{v:>13.2f}" for v in values))
    print(f"{'ratio (Reservations / dict)':<30}{res_hit / dict_hit:>13.2f}{'':>13}"
          f"{res_miss / dict_miss:>13.2f}")  # fmt: skip
    print()
    mib = 1 << 20
    print(f"{'structure':<30}{'build s':>13}{'peak MiB':>13}{'RSS +MiB':>13}{'held MiB':>13}")
    print(f"{'Reservations (sorted uint64)':<30}{res_s:>13.2f}{res_peak / mib:>13.1f}"
          f"{res_rss / mib:>13.1f}{reservations.nbytes / mib:>13.1f}")  # fmt: skip
    print(f"{'dict baseline':<30}{dict_s:>13.2f}{dict_peak / mib:>13.1f}"
          f"{dict_rss / mib:>13.1f}{'':>13}")  # fmt: skip
    print(f"{'ratio (Reservations / dict)':<30}{'':>13}{res_peak / dict_peak:>13.2f}"
          f"{(res_rss / dict_rss) if dict_rss > 0 else float('nan'):>13.2f}")  # fmt: skip
    print()
    ok = res_hit <= 5.0 and res_miss <= 5.0
    print(f"target: median lookup <= 5 us: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


if __name__ == "__main__":
    raise SystemExit(main())
