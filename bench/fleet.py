"""A city's fleet against the back office (issue 16, "Performance"): 10,000 simulated
terminals against the new stack (Starlette on uvicorn, backoffice/stack.py) and today's
server (backoffice/legacy_http.py), in the same run.

Run: .venv/bin/python bench/fleet.py [--terminals 10000] [--active 500] [--seconds 20]
[--runs 3]

Each terminal is an asyncio client with its own key (enrolled, SQLite), and holds one
kept-alive connection for the whole run: all of them are connected before the measure
starts and stay connected (the server's idle timeout is set above the run; ``held`` in the
table counts those still open at the end). A terminal's turn is one sync: upload a batch of
10 journal entries, then poll the application list and the hotlist with the ETags of its
last answers (``If-None-Match``: ``304`` once it has them), four polls in all.

This is a 2-core machine running both the server and the 10,000 clients, so not every
terminal can be in a sync at the same instant: ``--active`` of them are (a semaphore, taken
in turn), the others keep their connection open and idle meanwhile, as terminals between
syncs do. Printed: sustained ingest tx/s and document polls/s (with the share of 304s),
p50/p99 latency of all requests, errors (any answer but 200/304, a connection refused,
dropped or timed out), the server's peak RSS, thread count and open files, and the ratios
new / today. Each server runs in its own process with the connection cap set for the fleet
(``--max-connections`` = terminals + 5 %) and RLIMIT_NOFILE raised to match; figures are
the medians of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backoffice_stack import (
    REQUEST_TIMEOUT,
    SQLITE_BATCH,
    Server,
    Terminal,
    _head,
    exchange,
    make_terminals,
    prepare,
    raise_open_files,
    start_server,
)

from backoffice import keys
from backoffice.publish import generate_publication_key

POLLS = ("/v1/applist", "/v1/hotlist?since=0")
POLLS_PER_SYNC = 4
CONNECT_CONCURRENCY = 256
"""Connections being opened at once while the fleet connects (a city's terminals come up
over minutes; this is faster, within the listen backlog)."""
IDLE_TIMEOUT = 600.0
"""The servers' idle timeout in the bench: above the run, so that a terminal waiting for its
turn keeps its connection (what is measured is holding them, not reconnecting)."""


@dataclass
class Tally:
    ingested: int = 0
    polls: int = 0
    not_modified: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)  # what the errors were

    def error(self, kind: str) -> None:
        self.errors += 1
        self.kinds[kind] += 1


@dataclass
class Link:
    """One terminal's connection and what it remembers between syncs."""

    terminal: Terminal
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    next_batch: int = 0
    etags: dict[str, bytes] = field(default_factory=dict)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def connect(link: Link, port: int, gate: asyncio.Semaphore, tally: Tally) -> None:
    async with gate:
        try:
            link.reader, link.writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), REQUEST_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            tally.error(f"connect: {type(exc).__name__}")


async def request(link: Link, port: int, tally: Tally, method: str, path: str, body: bytes):
    """One request on the terminal's connection (reconnecting, as an error, if it broke):
    the status and headers, or None if it failed."""
    try:
        if link.writer is None:
            tally.error("held connection lost")  # the server dropped it: reconnect
            link.reader, link.writer = await asyncio.open_connection("127.0.0.1", port)
        etag = link.etags.get(path)
        extra = f"If-None-Match: {etag.decode()}\r\n" if etag else ""
        head = _head(link.terminal, method, path, body, extra)
        assert link.reader is not None
        start = time.perf_counter()
        status, headers, _ = await asyncio.wait_for(
            exchange(link.reader, link.writer, head, body), REQUEST_TIMEOUT
        )
        tally.latencies.append(time.perf_counter() - start)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        tally.error(f"{method}: {type(exc).__name__}")
        link.close()
        return None
    if status == 200 and b"etag" in headers:
        link.etags[path] = headers[b"etag"]
    return status, headers


async def sync(link: Link, port: int, tally: Tally) -> None:
    """One terminal's sync: a batch up (if it has one left), then its document polls."""
    terminal = link.terminal
    if link.next_batch < len(terminal.bodies):
        answer = await request(
            link, port, tally, "POST", "/v1/ingest", terminal.bodies[link.next_batch]
        )
        if answer is not None:
            if answer[0] == 200:
                before = terminal.acked[link.next_batch - 1] if link.next_batch else 0
                tally.ingested += terminal.acked[link.next_batch] - before
                link.next_batch += 1
            else:
                tally.error(f"POST: {answer[0]}")
    for i in range(POLLS_PER_SYNC):
        answer = await request(link, port, tally, "GET", POLLS[i % len(POLLS)], b"")
        if answer is None:
            continue
        if answer[0] in (200, 304):
            tally.polls += 1
            tally.not_modified += answer[0] == 304
        else:
            tally.error(f"GET: {answer[0]}")


async def terminal_loop(
    link: Link, port: int, turn: asyncio.Semaphore, until: float, tally: Tally
) -> None:
    while time.perf_counter() < until:
        async with turn:
            if time.perf_counter() >= until:
                break
            await sync(link, port, tally)
        # Let the terminals waiting for a turn have it (the semaphore is first come, first
        # served): this one's connection now idles like a terminal's between syncs.
        await asyncio.sleep(0)


@dataclass
class Run:
    held: float
    connect_s: float
    ingest: float
    polls: float
    not_modified_pct: float
    p50_ms: float
    p99_ms: float
    errors: float
    rss_mib: float
    threads: float
    files: float
    kinds: str = ""


def open_files(server: Server) -> int:
    total = 0
    for pid in server.tree():
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


async def fleet_load(server: Server, terminals: list[Terminal], args) -> Run:
    tally = Tally()
    links = [Link(t) for t in terminals]
    # Turns go in a shuffled order of terminals, the same for both servers, so that no
    # terminal id range (or the order of enrolment) is favoured.
    random.Random(1).shuffle(links)
    started = time.perf_counter()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    await asyncio.gather(*(connect(link, server.port, gate, tally) for link in links))
    connect_s = time.perf_counter() - started
    peak_threads = peak_files = 0
    turn = asyncio.Semaphore(args.active)
    start = time.perf_counter()
    until = start + args.seconds
    clients = asyncio.ensure_future(
        asyncio.gather(*(terminal_loop(link, server.port, turn, until, tally) for link in links))
    )
    while not clients.done():
        peak_threads = max(peak_threads, server.usage()[1])
        peak_files = max(peak_files, open_files(server))
        await asyncio.wait([clients], timeout=1.0)
    await clients
    elapsed = time.perf_counter() - start
    held = sum(
        1 for link in links if link.writer is not None and not link.writer.is_closing()
        and not (link.reader is not None and link.reader.at_eof())
    )  # fmt: skip
    for link in links:
        link.close()
    rss, _ = server.usage()
    lat = sorted(tally.latencies) or [0.0]
    return Run(
        held=held,
        connect_s=connect_s,
        ingest=tally.ingested / elapsed,
        polls=tally.polls / elapsed,
        not_modified_pct=100 * tally.not_modified / max(1, tally.polls),
        p50_ms=lat[len(lat) // 2] * 1000,
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        errors=tally.errors,
        rss_mib=rss / 1024,
        threads=peak_threads,
        files=peak_files,
        kinds=", ".join(f"{k} x{n}" for k, n in tally.kinds.most_common()),
    )


def median(runs: list[Run]) -> Run:
    figures = [f.name for f in fields(Run) if f.name != "kinds"]
    return Run(
        *(statistics.median(getattr(r, name) for r in runs) for name in figures),
        kinds="; ".join(r.kinds for r in runs if r.kinds),
    )


def print_table(args, rows: list[tuple[str, Run]], cap: int) -> None:
    print(
        f"\nFleet: {args.terminals:,} terminals, each with its own key and one kept-alive "
        f"connection held for the whole run; {args.active:,} in a sync at a time (2-core "
        f"machine: the rest hold their connection idle), {args.seconds:g} s measured, median "
        f"of {args.runs} run(s). Sync = upload {SQLITE_BATCH} entries, then "
        f"{POLLS_PER_SYNC} document polls with If-None-Match. SQLite; server cap "
        f"--max-connections {cap:,}."
    )
    header = (
        f"{'server':<28}{'held':>7}{'conn s':>7}{'ingest tx/s':>12}{'polls/s':>9}{'304 %':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}{'RSS MiB':>9}{'threads':>8}{'files':>7}"
    )
    print(header)
    for name, r in rows:
        print(
            f"{name:<28}{r.held:>7,.0f}{r.connect_s:>7.1f}{r.ingest:>12,.0f}{r.polls:>9,.0f}"
            f"{r.not_modified_pct:>7.0f}{r.p50_ms:>8.1f}{r.p99_ms:>8.1f}{r.errors:>8,.0f}"
            f"{r.rss_mib:>9.0f}{r.threads:>8,.0f}{r.files:>7,.0f}"
        )
    base = rows[0][1]
    print(
        "  held: connections open at the end, as the clients see them (a connection the\n"
        "  server has not accepted yet still looks open from the client: 'files' is the\n"
        "  server's side); 304 %: of the polls (a terminal's first poll of a document is a 200)"
    )
    for name, r in rows:
        if r.kinds:
            print(f"  errors of {name}, all runs: {r.kinds}")

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    for _name, r in rows[1:]:
        print(
            f"{'ratio new / today':<28}{ratio(r.held, base.held):>7}{'':>7}"
            f"{ratio(r.ingest, base.ingest):>12}{ratio(r.polls, base.polls):>9}{'':>7}"
            f"{ratio(r.p50_ms, base.p50_ms):>8}{ratio(r.p99_ms, base.p99_ms):>8}{'':>8}"
            f"{ratio(r.rss_mib, base.rss_mib):>9}{ratio(r.threads, base.threads):>8}"
            f"{ratio(r.files, base.files):>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=500, help="terminals in a sync at once")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8, help="batches prepared per terminal")
    parser.add_argument(
        "--servers", default="legacy,stack", help="which to run: legacy, stack or both"
    )
    args = parser.parse_args()
    # The clients hold one socket a terminal; the servers raise their own limit.
    soft = raise_open_files(args.terminals + 1024)
    if soft < args.terminals + 64:
        sys.exit(f"RLIMIT_NOFILE is {soft}: not enough for {args.terminals} terminals")
    cap = args.terminals + args.terminals // 20
    kinds = [k for k in ("legacy", "stack") if k in args.servers.split(",")]
    names = {"legacy": "today (ThreadingHTTPServer)", "stack": "new (Starlette/uvicorn)"}
    print(f"preparing {args.terminals:,} terminals...", file=sys.stderr)
    terminals = make_terminals(args.terminals, args.batches, SQLITE_BATCH, "F")
    key = generate_publication_key()
    results: dict[str, list[Run]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "publication.key"
        keys.write_publication_key(key, key_file)
        template = Path(tmp) / "template.sqlite"
        prepare(str(template), key, terminals)
        for run in range(args.runs):
            for kind in kinds:
                path = Path(tmp) / f"{kind}-{run}.sqlite"
                shutil.copy(template, path)
                server = start_server(kind, str(path), key_file, cap, idle_timeout=IDLE_TIMEOUT)
                try:
                    result = asyncio.run(fleet_load(server, terminals, args))
                finally:
                    server.stop()
                results[kind].append(result)
                print(f"run {run + 1} {kind}: {result}", file=sys.stderr)
    print_table(args, [(names[k], median(results[k])) for k in kinds], cap)
    if "stack" in results and any(r.errors for r in results["stack"]):
        sys.exit("the new stack had errors")


if __name__ == "__main__":
    main()
