"""Back office ingest throughput: transactions/s uploaded to a loopback server.

Run: .venv/bin/python bench/backoffice_ingest.py [rounds] [batches_per_round]
(PostgreSQL rows need ONECARD_TEST_PG_URL; a fresh schema is made and dropped.)

Each round enrols a fresh terminal and uploads ``batches_per_round`` batches of 1,000
chained entries over one keep-alive HTTP connection (signed as docs/sync.md says); the
figure is the median over rounds. Baseline in the same run: the same server and client, but
storage doing what a naive server does - one transaction (and one commit) per row.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from backoffice.auth import new_secret
from backoffice.ingest import ENTRY_COLUMNS, ZERO_HASH, Entry, StoredLink, plan_ingest
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from backoffice.storage import IngestResult, PostgresStorage, SqliteStorage
from backoffice.testing import make_entries
from terminal.host.clock import SystemClock

BATCH = 1000
_INSERT_ONE = (
    f"INSERT INTO entries ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})"
)


class _RowByRow:
    """Mix-in: ingest as a naive server does - each entry its own SELECT, INSERT, COMMIT."""

    def ingest(self, terminal_id: str, entries: Sequence[Entry]) -> IngestResult:
        stored = 0
        for entry in entries:
            with self._tx() as cur:  # type: ignore[attr-defined]
                q = self._q  # type: ignore[attr-defined]
                cur.execute(
                    q("SELECT seq, hash, prev_hash FROM entries WHERE terminal_id = ? AND seq = ?"),
                    (terminal_id, entry.seq - 1),
                )
                links = {r[0]: StoredLink(r[0], r[1], r[2]) for r in cur.fetchall()}
                plan_ingest([entry], links)
                cur.execute(q(_INSERT_ONE), entry.row())
                cur.execute(
                    q("UPDATE terminals SET acked_up_to = ?, max_seq = ? WHERE terminal_id = ?"),
                    (entry.seq, entry.seq, terminal_id),
                )
                stored += 1
        return IngestResult(entries[-1].seq if entries else 0, stored, 0)


class NaiveSqlite(_RowByRow, SqliteStorage):
    pass


class NaivePostgres(_RowByRow, PostgresStorage):
    pass


def _upload(server_url: str, terminal_id: str, secret: bytes, bodies: list[bytes]) -> float:
    """Seconds to upload ``bodies`` (each answered 200) over one connection."""
    host, port = server_url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    start = time.perf_counter()
    for body in bodies:
        when = str(int(time.time()))
        message = f"POST\n/v1/ingest\n{when}\n{hashlib.sha256(body).hexdigest()}".encode()
        conn.request(
            "POST",
            "/v1/ingest",
            body=body,
            headers={
                "X-Onecard-Terminal": terminal_id,
                "X-Onecard-Time": when,
                "X-Onecard-Signature": hmac.new(secret, message, hashlib.sha256).hexdigest(),
            },
        )
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"upload failed: {response.status} {answer[:200]!r}")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def _bodies(terminal_id: str, batches: int) -> list[bytes]:
    entries = make_entries(terminal_id, batches * BATCH, prev_hash=ZERO_HASH)
    return [
        json.dumps({"terminal_id": terminal_id, "entries": entries[i : i + BATCH]}).encode()
        for i in range(0, len(entries), BATCH)
    ]


def measure(storage, rounds: int, batches: int) -> float:
    """Median transactions/s over ``rounds`` rounds of ``batches`` batches."""
    backoffice = BackOffice(storage, generate_publication_key(), SystemClock())
    rates = []
    with backoffice.serve("127.0.0.1", 0) as server:
        for _ in range(rounds):
            terminal_id = f"B{uuid.uuid4().hex[:12]}"
            secret = new_secret()
            storage.enrol(terminal_id, secret, time.time())
            bodies = _bodies(terminal_id, batches)
            elapsed = _upload(server.url, terminal_id, secret, bodies)
            rates.append(batches * BATCH / elapsed)
    return statistics.median(rates)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    naive_batches = 1
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        fast = SqliteStorage(Path(tmp) / "bulk.sqlite")
        naive = NaiveSqlite(Path(tmp) / "naive.sqlite")
        rows.append(
            ("sqlite", measure(fast, rounds, batches), measure(naive, rounds, naive_batches))
        )
        fast.close()
        naive.close()
    pg_url = os.environ.get("ONECARD_TEST_PG_URL")
    if pg_url:
        import psycopg
        from psycopg import sql

        schemas = [f"bench_{uuid.uuid4().hex[:10]}", f"bench_{uuid.uuid4().hex[:10]}"]
        fast = PostgresStorage(pg_url, schema=schemas[0])
        naive = NaivePostgres(pg_url, schema=schemas[1])
        try:
            rows.append(
                (
                    "postgresql",
                    measure(fast, rounds, batches),
                    measure(naive, rounds, naive_batches),
                )
            )
        finally:
            fast.close()
            naive.close()
            with psycopg.connect(pg_url, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                    )

    print(
        f"back office ingest over loopback HTTP, batches of {BATCH}, median of {rounds} rounds "
        f"({batches} batches/round; baseline {naive_batches})"
    )
    print(f"{'storage':<12}{'batched tx/s':>14}{'row-by-row tx/s':>18}{'ratio':>8}")
    for name, bulk, row in rows:
        print(f"{name:<12}{bulk:>14,.0f}{row:>18,.0f}{bulk / row:>8.1f}")
    if not pg_url:
        print("postgresql  not measured (set ONECARD_TEST_PG_URL)")


if __name__ == "__main__":
    main()
