"""Hotlist lookup time and resident memory at 1 and 10 million entries, against a Python set
of 8-byte keys; and the time to apply and save a 10,000-entry delta at 10 million.

Run: .venv/bin/python bench/hotlist.py [--lookups N] [--no-set-10m]
Targets: lookup <= 5 us median at 10 million entries with <= 200 MB resident.

Each measurement runs in a fresh child process of this script, so its VmRSS
(/proc/self/status) shows what the structure holds, not what building the test data left
in the allocator: "RSS +MB" is the growth across loading the list (or building the set),
"RSS MB" the child's whole resident size afterwards (interpreter and numpy included).
Lookup time is the median, over batches of 1,000 random lookups by 16-byte card token, of
the time per lookup; hits and misses apart. ``numpy.searchsorted`` called per lookup on the
same array is shown to say why HotList does not use it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from terminal.hotlist import HotList

BATCH = 1000
DELTA_SIZE = 10_000


def status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median_us(fn: Callable[[bytes], object], probes: Sequence[bytes]) -> float:
    per_batch = []
    for start in range(0, len(probes) - BATCH + 1, BATCH):
        batch = probes[start : start + BATCH]
        t0 = time.perf_counter()
        for p in batch:
            fn(p)
        per_batch.append((time.perf_counter() - t0) / BATCH)
    return statistics.median(per_batch) * 1e6


def tokens_of(keys: np.ndarray) -> list[bytes]:
    # A card token is 16 bytes; the hotlist looks at the first 8 (big-endian).
    raw = keys.astype(">u8").tobytes()
    return [raw[i : i + 8] + bytes(8) for i in range(0, len(raw), 8)]


def numpy_lookups(
    arr: np.ndarray, hits: Sequence[bytes], misses: Sequence[bytes]
) -> tuple[float, float]:
    """The same lookup through ``numpy.searchsorted`` per call (the key converted to a numpy
    uint64 first: a Python int above 2**63 makes numpy copy the whole array each call)."""
    n = len(arr)

    def numpy_contains(token: bytes) -> bool:
        k = np.uint64(int.from_bytes(token[:8], "big"))
        i = int(arr.searchsorted(k))
        return i < n and arr[i] == k

    return median_us(numpy_contains, hits), median_us(numpy_contains, misses)


# --- children: one measurement each, printed as JSON ----------------------------------------


def child_hotlist(path: Path, hits_path: Path, misses_path: Path, delta: bool) -> dict:
    hits, misses = tokens_of(np.load(hits_path)), tokens_of(np.load(misses_path))
    before = status_mb("VmRSS")
    t0 = time.perf_counter()
    hotlist = HotList.load(path)
    out: dict = {"load_s": time.perf_counter() - t0}
    out["rss_delta"] = status_mb("VmRSS") - before
    out["rss"] = status_mb("VmRSS")
    assert all(hotlist.contains(t) for t in hits[:1000])
    out["hit_us"] = median_us(hotlist.contains, hits)
    out["miss_us"] = median_us(hotlist.contains, misses)
    out["np_hit_us"], out["np_miss_us"] = numpy_lookups(hotlist.keys(), hits, misses)
    if delta:
        rng = np.random.default_rng(3)
        keys = hotlist.keys()
        removed = keys[rng.choice(len(keys), DELTA_SIZE // 2, replace=False)].tolist()
        added = rng.integers(0, 2**64, DELTA_SIZE // 2, dtype=np.uint64, endpoint=False)
        added = added.tolist()
        t0 = time.perf_counter()
        updated = hotlist.apply_delta(hotlist.version + 1, hotlist.version, added, removed)
        out["apply_ms"] = (time.perf_counter() - t0) * 1e3
        out["rss_both"] = status_mb("VmRSS")
        out["hwm"] = status_mb("VmHWM")
        assert not updated.contains_key(removed[0]) and updated.contains_key(added[0])
        t0 = time.perf_counter()
        updated.save(path.with_suffix(".new"))
        out["save_ms"] = (time.perf_counter() - t0) * 1e3
        path.with_suffix(".new").unlink()
    return out


def child_set(path: Path, hits_path: Path, misses_path: Path) -> dict:
    hits, misses = tokens_of(np.load(hits_path)), tokens_of(np.load(misses_path))
    before = status_mb("VmRSS")
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        fh.seek(64)
        baseline: set[bytes] = set()
        while chunk := fh.read(8 * 65536):
            swapped = np.frombuffer(chunk, dtype="<u8").astype(">u8").tobytes()
            baseline.update(swapped[i : i + 8] for i in range(0, len(swapped), 8))
    out: dict = {"load_s": time.perf_counter() - t0}
    out["rss_delta"] = status_mb("VmRSS") - before
    out["rss"] = status_mb("VmRSS")

    def set_contains(token: bytes) -> bool:
        return token[:8] in baseline

    assert all(set_contains(t) for t in hits[:1000])
    out["hit_us"] = median_us(set_contains, hits)
    out["miss_us"] = median_us(set_contains, misses)
    return out


def run_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


# --- the table ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="hotlist lookup and memory bench")
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--no-set-10m", action="store_true", help="skip the 10M set baseline")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *paths = args.child
        files = [Path(p) for p in paths]
        if mode == "set":
            result = child_set(*files)
        else:
            result = child_hotlist(*files, delta=mode == "hotlist+delta")
        print(json.dumps(result))
        return

    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for n in (1_000_000, 10_000_000):
            label = f"{n // 1_000_000}M"
            rng = np.random.default_rng(n)
            keys = np.unique(rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False))
            path, hits, misses = tmp / "hotlist.bin", tmp / "hits.npy", tmp / "misses.npy"
            HotList(1, keys).save(path)
            np.save(hits, keys[rng.integers(0, len(keys), args.lookups)])
            np.save(misses, rng.integers(0, 2**64, args.lookups, dtype=np.uint64, endpoint=False))
            del keys
            files = (str(path), str(hits), str(misses))
            big = n >= 10_000_000
            h = run_child("hotlist+delta" if big else "hotlist", *files)
            rows.append(
                (f"HotList {label}", f"{h['hit_us']:.2f}", f"{h['miss_us']:.2f}",
                 f"{h['rss_delta']:.0f}", f"{h['rss']:.0f}", f"{h['load_s']:.2f}")
            )  # fmt: skip
            rows.append(
                (f"np.searchsorted {label}", f"{h['np_hit_us']:.2f}", f"{h['np_miss_us']:.2f}",
                 "", "", "")
            )  # fmt: skip
            if big and args.no_set_10m:
                rows.append((f"set[bytes] {label}", "skipped", "", "", "", ""))
            else:
                s = run_child("set", *files)
                rows.append(
                    (f"set[bytes] {label}", f"{s['hit_us']:.2f}", f"{s['miss_us']:.2f}",
                     f"{s['rss_delta']:.0f}", f"{s['rss']:.0f}", f"{s['load_s']:.2f}")
                )  # fmt: skip
                rows.append(
                    (f"  HotList / set {label}", f"{h['hit_us'] / s['hit_us']:.2f}x",
                     f"{h['miss_us'] / s['miss_us']:.2f}x",
                     f"{h['rss_delta'] / s['rss_delta']:.2f}x", "", "")
                )  # fmt: skip
            if big:
                rows.append(
                    (f"apply {DELTA_SIZE} delta {label}", f"{h['apply_ms']:.0f} ms", "",
                     f"{h['rss_both']:.0f} both", f"{h['hwm']:.0f} peak", "")
                )  # fmt: skip
                rows.append((f"save {label} (fsync)", f"{h['save_ms']:.0f} ms", "", "", "", ""))

    print(f"hotlist bench: {args.lookups} lookups each, median per lookup over batches of {BATCH}")
    head = ("", "hit us", "miss us", "RSS +MB", "RSS MB", "load/build s")
    widths = (28, 12, 10, 12, 12, 14)
    for row in (head, *rows):
        print(
            row[0].ljust(widths[0])
            + "".join(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        )


if __name__ == "__main__":
    main()
