"""The back office's web stack under many kept-alive terminals: today's hand-written
``ThreadingHTTPServer`` (backoffice/legacy_http.py, kept for this comparison only) against
Starlette on uvicorn (backoffice/stack.py), in the same run.

Run: .venv/bin/python bench/backoffice_stack.py [--clients 1000] [--seconds 10] [--runs 3]
(the PostgreSQL part needs ONECARD_TEST_PG_URL; fresh schemas are made and dropped).

1. SQLite, one process each: ``--clients`` asyncio clients, each a terminal with its own
   key, each holding one kept-alive connection, each uploading a batch of 10 entries then
   polling documents (application list, hotlist) four times, for ``--seconds``. Printed:
   ingest tx/s, document polls/s, p50/p99 latency of all requests, errors (any answer but
   200, or a connection that failed), the server's peak RSS and thread count.
2. PostgreSQL ingest: 64 terminals uploading batches of 500 entries as fast as answers come:
   today's server (one process), the new stack with one worker and with two
   (``onecard backoffice serve --workers 2``).

Each server runs in its own process (its RSS and threads are its own; the clients' CPU is
the same for both). Each figure is the median of ``--runs`` runs; ratios are new / today.
Connection limits are set above the client count for both servers, so that what is
compared is how each serves them, not the cap.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backoffice import keys  # noqa: E402
from backoffice.publish import generate_publication_key  # noqa: E402
from backoffice.server import BackOffice  # noqa: E402
from backoffice.storage import open_storage  # noqa: E402
from backoffice.testing import make_entries  # noqa: E402
from terminal.wire.journal import ZERO_HASH  # noqa: E402

SQLITE_BATCH = 10
POLLS_PER_UPLOAD = 4
PG_TERMINALS = 64
PG_BATCH = 500
REQUEST_TIMEOUT = 30.0


# --- the server side (a subprocess) -----------------------------------------------------------


def raise_open_files(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards ``wanted`` (at most the hard
    limit: raising that needs root); the soft limit now. A server holding N terminals
    needs N sockets, and so does the bench's client process."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def serve_main(
    kind: str, storage_url: str, key_file: str, max_connections: int, idle_timeout: float = 30
) -> None:
    """``--serve``: one server process until SIGTERM; prints its URL."""
    import threading

    from backoffice.legacy_http import serve_legacy
    from backoffice.limits import ServeLimits

    # Each held connection is a socket (and, for today's server, a thread): the cap and the
    # open-file limit go together, as in a city's unit file (docs/deploy.md).
    raise_open_files(max_connections + 256)
    limits = ServeLimits(max_connections=max_connections, idle_timeout=idle_timeout)
    storage = open_storage(storage_url)
    office = BackOffice(storage, keys.load_publication_key(key_file))
    server = (
        serve_legacy(office, limits=limits) if kind == "legacy" else office.serve(limits=limits)
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sys.stdout.write(server.url + "\n")
    sys.stdout.flush()
    stop.wait()
    server.shutdown()
    storage.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int

    def tree(self) -> list[int]:
        pids, frontier = [self.process.pid], [self.process.pid]
        while frontier:
            pid = frontier.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                children = []
            pids += [int(c) for c in children]
            frontier += [int(c) for c in children]
        return pids

    def usage(self) -> tuple[int, int]:
        """Peak RSS (KiB) and threads now, summed over the server's processes."""
        rss = threads = 0
        for pid in self.tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"resource_tracker" in cmdline:
                continue  # multiprocessing's helper, not a server
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    rss += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
        return rss, threads

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_server(
    kind: str,
    storage: str,
    key_file: Path,
    max_connections: int,
    workers: int = 1,
    idle_timeout: float = 30,
) -> Server:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if workers > 1:
        command = [sys.executable, "-c", "from onecard.cli import main; main()", "backoffice",
                   "serve", "--storage", storage, "--publication-key", str(key_file),
                   "--port", "0", "--workers", str(workers), "--idle-timeout", str(idle_timeout),
                   "--max-connections", str(max_connections)]  # fmt: skip
    else:
        command = [sys.executable, __file__, "--serve", kind, storage, str(key_file),
                   str(max_connections), str(idle_timeout)]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, env=env, start_new_session=True, cwd=ROOT
    )
    assert process.stdout is not None
    text = ""
    while True:
        line = process.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"{kind} server did not start")
        text += line
        if line.startswith("http"):
            url = line.strip()
            break
        if line.strip() == "}":
            url = json.loads(text)["serving"]
            break
    return Server(process, int(url.rsplit(":", 1)[1]))


# --- the clients (asyncio) ---------------------------------------------------------------------


@dataclass
class Tally:
    ingested: int = 0
    polls: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class Terminal:
    terminal_id: str
    secret: bytes
    bodies: list[bytes]  # chained batches, in order
    acked: list[int]  # acked_up_to after each


def _head(terminal: Terminal, method: str, path: str, body: bytes, extra: str = "") -> bytes:
    """A signed request head; ``extra``: more header lines, each ending in CRLF."""
    when = str(int(time.time()))
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{when}\n{digest}".encode()
    signature = hmac.new(terminal.secret, message, hashlib.sha256).hexdigest()
    return (
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nX-Onecard-Terminal: {terminal.terminal_id}"
        f"\r\nX-Onecard-Time: {when}\r\nX-Onecard-Signature: {signature}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request on a kept-alive connection: status, headers (names lower-case), body."""
    writer.write(head + body)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    headers: dict[bytes, bytes] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    return status, headers, await reader.readexactly(length)


async def run_client(
    terminal: Terminal, port: int, until: float, tally: Tally, polls_per_upload: int
) -> None:
    reader = writer = None
    next_batch = 0
    polls = ["/v1/applist", "/v1/hotlist?since=0"]
    step = 0
    while time.perf_counter() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            upload = step % (polls_per_upload + 1) == 0 and next_batch < len(terminal.bodies)
            if upload or polls_per_upload == 0:
                if next_batch >= len(terminal.bodies):
                    break
                body = terminal.bodies[next_batch]
                head = _head(terminal, "POST", "/v1/ingest", body)
            else:
                body, path = b"", polls[step % 2]
                head = _head(terminal, "GET", path, body)
            start = time.perf_counter()
            status, _, _ = await asyncio.wait_for(
                exchange(reader, writer, head, body), REQUEST_TIMEOUT
            )
            tally.latencies.append(time.perf_counter() - start)
            if status != 200:
                tally.errors += 1
            elif upload or polls_per_upload == 0:
                before = terminal.acked[next_batch - 1] if next_batch else 0
                tally.ingested += terminal.acked[next_batch] - before
                next_batch += 1
            else:
                tally.polls += 1
            step += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            tally.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def load(
    server: Server, terminals: list[Terminal], seconds: float, polls: int
) -> tuple[Tally, int]:
    """Run the clients; the tally and the most threads the server had meanwhile."""
    tally = Tally()
    until = time.perf_counter() + seconds
    clients = asyncio.gather(*(run_client(t, server.port, until, tally, polls) for t in terminals))
    peak_threads = 0
    while not clients.done():
        peak_threads = max(peak_threads, server.usage()[1])
        await asyncio.wait([clients], timeout=0.5)
    await clients
    return tally, peak_threads


@dataclass
class Run:
    ingest: float
    polls: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    threads: int


def measure(server: Server, terminals: list[Terminal], seconds: float, polls: int) -> Run:
    start = time.perf_counter()
    tally, threads = asyncio.run(load(server, terminals, seconds, polls))
    elapsed = time.perf_counter() - start
    rss, _ = server.usage()
    lat = sorted(tally.latencies) or [0.0]
    return Run(
        tally.ingested / elapsed,
        tally.polls / elapsed,
        lat[len(lat) // 2] * 1000,
        lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        tally.errors,
        rss / 1024,
        threads,
    )


def median_run(runs: list[Run]) -> Run:
    return Run(*(statistics.median(getattr(r, f) for r in runs) for f in Run.__dataclass_fields__))


# --- set-up ------------------------------------------------------------------------------------


def make_terminals(count: int, batches: int, batch: int, prefix: str) -> list[Terminal]:
    terminals = []
    for i in range(count):
        terminal_id = f"{prefix}{i:05d}"
        entries = make_entries(terminal_id, batches * batch, prev_hash=ZERO_HASH)
        bodies = [
            json.dumps({"terminal_id": terminal_id, "entries": entries[j : j + batch]}).encode()
            for j in range(0, len(entries), batch)
        ]
        acked = [min(len(entries), j + batch) for j in range(0, len(entries), batch)]
        terminals.append(Terminal(terminal_id, os.urandom(32), bodies, acked))
    return terminals


def prepare(storage_url: str, key, terminals: list[Terminal]) -> None:
    storage = open_storage(storage_url)
    try:
        now = time.time()
        for terminal in terminals:
            storage.enrol(terminal.terminal_id, terminal.secret, now)
        BackOffice(storage, key).publish("applist", {"services": []})
        storage.hotlist_change("a1" * 8, True)
    finally:
        storage.close()


def table(title: str, rows: list[tuple[str, Run]], base: Run) -> None:
    print(f"\n{title}")
    print(
        f"{'server':<26}{'ingest tx/s':>12}{'polls/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'RSS MiB':>9}{'threads':>9}"
    )
    for name, r in rows:
        print(
            f"{name:<26}{r.ingest:>12,.0f}{r.polls:>10,.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
            f"{r.errors:>8}{r.rss_mib:>9.0f}{r.threads:>9}"
        )

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    for name, r in rows[1:]:
        print(
            f"{'ratio ' + name:<26}{ratio(r.ingest, base.ingest):>12}"
            f"{ratio(r.polls, base.polls):>10}{ratio(r.p50_ms, base.p50_ms):>9}"
            f"{ratio(r.p99_ms, base.p99_ms):>9}{'':>8}{ratio(r.rss_mib, base.rss_mib):>9}"
            f"{ratio(r.threads, base.threads):>9}"
        )


def sqlite_part(args: argparse.Namespace, tmp: Path, key_file: Path, key) -> None:
    terminals = make_terminals(args.clients, args.batches, SQLITE_BATCH, "S")
    template = tmp / "template.sqlite"
    prepare(str(template), key, terminals)
    results: dict[str, list[Run]] = {"legacy": [], "stack": []}
    for run in range(args.runs):
        for kind in ("legacy", "stack"):
            path = tmp / f"{kind}-{run}.sqlite"
            shutil.copy(template, path)
            server = start_server(kind, str(path), key_file, args.clients + 100)
            try:
                results[kind].append(measure(server, terminals, args.seconds, POLLS_PER_UPLOAD))
            finally:
                server.stop()
    base = median_run(results["legacy"])
    table(
        f"SQLite, {args.clients} kept-alive terminals, {args.seconds:g} s, median of "
        f"{args.runs} runs (upload {SQLITE_BATCH} entries, then {POLLS_PER_UPLOAD} polls)",
        [
            ("today (ThreadingHTTPServer)", base),
            ("Starlette/uvicorn", median_run(results["stack"])),
        ],
        base,
    )


def pg_part(args: argparse.Namespace, key_file: Path, key, pg_url: str) -> None:
    import psycopg
    from psycopg import sql

    batches = max(4, int(args.seconds * 40_000 / (PG_TERMINALS * PG_BATCH)))
    terminals = make_terminals(PG_TERMINALS, batches, PG_BATCH, "P")
    configs = [("today (1 process)", "legacy", 1), ("uvicorn, 1 worker", "stack", 1),
               ("uvicorn, 2 workers", "stack", 2)]  # fmt: skip
    results: dict[str, list[Run]] = {name: [] for name, _, _ in configs}
    schemas = []
    try:
        for _ in range(args.runs):
            for name, kind, workers in configs:
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                schemas.append(schema)
                url = f"{pg_url}&schema={schema}" if "?" in pg_url else f"{pg_url}?schema={schema}"
                prepare(url, key, terminals)
                server = start_server(kind, url, key_file, 500, workers)
                try:
                    results[name].append(measure(server, terminals, args.seconds, 0))
                finally:
                    server.stop()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    rows = [(name, median_run(results[name])) for name, _, _ in configs]
    table(
        f"PostgreSQL ingest, {PG_TERMINALS} terminals, batches of {PG_BATCH}, {args.seconds:g} s, "
        f"median of {args.runs} runs (goal: >= 10,000 tx/s with 2 workers)",
        rows,
        rows[0][1],
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40, help="batches prepared per terminal")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    raise_open_files(4 * args.clients + 256)
    key = generate_publication_key()
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "publication.key"
        keys.write_publication_key(key, key_file)
        if not args.skip_sqlite:
            sqlite_part(args, Path(tmp), key_file, key)
        pg_url = os.environ.get("ONECARD_TEST_PG_URL")
        if pg_url:
            pg_part(args, key_file, key, pg_url)
        else:
            print("\nPostgreSQL not measured (set ONECARD_TEST_PG_URL)")


if __name__ == "__main__":
    main()
