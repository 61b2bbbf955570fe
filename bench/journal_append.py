"""Benchmark: durable journal appends, and memory while uploading a large backlog.

1. Durable appends per second, one commit per transaction as the runtime does (WAL,
   ``synchronous=FULL``: the WAL is synced before ``append`` returns), median over rounds,
   against two baselines in the same run: the same journal with ``synchronous=NORMAL`` (not
   durable against power loss in WAL mode), and a plain file append + ``fsync`` per record.
2. Peak RSS of a fresh process while ``Uploader.run_once`` uploads a backlog of N entries
   to a minimal local ingest server (in this process), against the same process's RSS just
   before the upload started. The target is <= 100 MB whatever N.

    .venv/bin/python bench/journal_append.py [--rounds 5] [--appends 1000] [--backlog 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from terminal.host.clock import SystemClock  # noqa: E402
from terminal.journal.entry import TransactionRecord  # noqa: E402
from terminal.journal.store import Journal  # noqa: E402

TERMINAL = "T0001"
SECRET = bytes(range(32))


def record(n: int) -> TransactionRecord:
    return TransactionRecord(
        kind="card",
        service="bus-fare",
        decision="accept",
        reason="ok",
        amount=200,
        card_token=n.to_bytes(16, "big"),
        region="500100",
        category="3",
        extra={"tac": f"{n & 0xFFFFFFFF:08x}"},
    )


# --- 1. appends -----------------------------------------------------------------------------


def journal_appends(directory: Path, n: int, synchronous: str) -> float:
    path = directory / f"journal-{synchronous}-{time.monotonic_ns()}.db"
    with Journal.open(path, TERMINAL, SystemClock(), min_free_bytes=0) as journal:
        if synchronous != "FULL":
            journal._conn.execute(f"PRAGMA synchronous={synchronous}")  # type: ignore[union-attr]
        records = [record(i) for i in range(n)]
        start = time.perf_counter()
        for r in records:
            journal.append(r)
        return n / (time.perf_counter() - start)


def file_appends(directory: Path, n: int) -> float:
    line = json.dumps({"seq": 1, "pad": "x" * 400}).encode() + b"\n"
    with open(directory / f"plain-{time.monotonic_ns()}.jsonl", "ab") as f:
        start = time.perf_counter()
        for _ in range(n):
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return n / (time.perf_counter() - start)


def bench_appends(rounds: int, n: int, directory: Path) -> None:
    cases = {
        "journal append, WAL + synchronous=FULL (runtime)": lambda: journal_appends(
            directory, n, "FULL"
        ),
        "baseline: journal, synchronous=NORMAL (not durable)": lambda: journal_appends(
            directory, n, "NORMAL"
        ),
        "baseline: plain file append + fsync per record": lambda: file_appends(directory, n),
    }
    results = {}
    for name, fn in cases.items():
        per_round = [fn() for _ in range(rounds)]
        results[name] = (statistics.median(per_round), min(per_round), max(per_round))
    reference = next(iter(results.values()))[0]
    print(f"\nDurable appends: {n} per round, {rounds} rounds, one commit each, in {directory}")
    print(f"{'case':<54} {'median/s':>10} {'min/s':>9} {'max/s':>9} {'runtime/this':>13}")
    for name, (median, low, high) in results.items():
        print(f"{name:<54} {median:>10.0f} {low:>9.0f} {high:>9.0f} {reference / median:>13.2f}")
    print("target: >= 1,000 durable appends/s:", "met" if reference >= 1000 else "NOT met")


# --- 2. upload of a backlog -------------------------------------------------------------------


class _MinimalIngest(BaseHTTPRequestHandler):
    """Acknowledges each batch up to its last seq (no storage: the client is measured)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        entries = json.loads(body)["entries"]
        self.server.entries_received += len(entries)  # type: ignore[attr-defined]
        answer = json.dumps({"acked_up_to": entries[-1]["seq"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def build_backlog(path: Path, n: int) -> float:
    start = time.perf_counter()
    with Journal.open(path, TERMINAL, SystemClock(), min_free_bytes=0) as journal:
        chunk = 10_000
        for base in range(0, n, chunk):
            journal.append_batch(record(i) for i in range(base, min(n, base + chunk)))
    return time.perf_counter() - start


def upload_child(path: str, url: str, batch_size: int) -> None:
    """Runs in a fresh process so that its peak RSS is the uploader's alone."""
    from terminal.sync.auth import TerminalCredentials
    from terminal.sync.uploader import Uploader

    credentials = TerminalCredentials(
        TERMINAL, SECRET, url, b"\x04" + bytes(64), "sm2", bytes(32), None
    )
    opening = time.perf_counter()
    with Journal.open(path, TERMINAL, SystemClock(), min_free_bytes=0) as journal:
        open_seconds = time.perf_counter() - opening
        uploader = Uploader(journal, credentials, SystemClock(), batch_size=batch_size)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        result = uploader.run_once()
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(
        {
            "sent": result.sent,
            "batches": result.batches,
            "pending": result.pending,
            "seconds": elapsed,
            "open_seconds": open_seconds,
            "rss_before_kb": before,
            "rss_peak_kb": peak,
        },
        sys.stdout,
    )


def bench_upload(n: int, batch_size: int, directory: Path) -> None:
    path = directory / "backlog.db"
    build_seconds = build_backlog(path, n)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _MinimalIngest)
    httpd.entries_received = 0  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--upload-child", str(path), url, str(batch_size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        total = time.perf_counter() - start
    finally:
        httpd.shutdown()
        httpd.server_close()
    m = json.loads(out)
    size_mb = sum(p.stat().st_size for p in directory.glob("backlog.db*")) / 1e6
    print(f"\nUpload of a {n:,}-entry backlog, batches of {batch_size}, to a local ingest server")
    print(f"{'measure':<52} {'value':>14}")
    rows = [
        ("journal file size (MB)", f"{size_mb:.0f}"),
        ("backlog build (append_batch, 10k/commit) s", f"{build_seconds:.1f}"),
        ("child process, start to end s", f"{total:.1f}"),
        ("Journal.open (quick_check, meta, newest 20k walked) s", f"{m['open_seconds']:.1f}"),
        ("run_once s", f"{m['seconds']:.1f}"),
        ("entries/s uploaded", f"{m['sent'] / m['seconds']:,.0f}"),
        ("batches / pending after", f"{m['batches']} / {m['pending']}"),
        ("RSS before run_once (MB)", f"{m['rss_before_kb'] / 1024:.1f}"),
        ("peak RSS during run_once (MB)", f"{m['rss_peak_kb'] / 1024:.1f}"),
        ("peak / before", f"{m['rss_peak_kb'] / m['rss_before_kb']:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:<52} {value:>14}")
    peak_mb = m["rss_peak_kb"] / 1024
    print("target: <= 100 MB RSS:", "met" if peak_mb <= 100 else "NOT met")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--upload-child":
        upload_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--appends", type=int, default=1000, help="appends per round")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="entries to upload")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--dir", help="directory for the files (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        bench_appends(args.rounds, args.appends, Path(directory))
        if args.backlog:
            bench_upload(args.backlog, args.batch_size, Path(directory))


if __name__ == "__main__":
    main()
