"""What the back office keeps of its fleet and of its clearing, in the same database as
everything else (:mod:`backoffice.storage`): the latest heartbeat of each terminal, and the
verdict on each T-Union purchase's TAC (docs/fleet.md, docs/clearing.md).

:class:`FleetStorage` is a mixin of the storage classes, written in the shared ``?`` SQL
of :class:`backoffice.storage._SqlStorage` (its ``_tx`` and ``_q``); the tables are
:data:`FLEET_SCHEMA` (SQLite: made at open; PostgreSQL: migration 3 of
:mod:`backoffice.migrations`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from terminal.wire.canonical import parse_json_text

FLEET_SCHEMA = """
CREATE TABLE IF NOT EXISTS terminal_heartbeats (
    terminal_id TEXT PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    heartbeat TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tac_checks (
    terminal_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    day TEXT NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    amount BIGINT,
    checked_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (terminal_id, seq)
);
CREATE INDEX IF NOT EXISTS tac_checks_verdict ON tac_checks (verdict, day);
CREATE INDEX IF NOT EXISTS entries_time ON entries (time)
"""
"""Tables of the fleet and of clearing (both databases; ``entries_time`` serves the day's
purchases of clearing)."""

PURCHASE_SCAN_BATCH = 5000


@dataclass(frozen=True)
class StoredHeartbeat:
    """A terminal as the fleet view sees it: enrolment, how far its journal is stored, and
    its latest heartbeat (None: it never sent one)."""

    terminal_id: str
    revoked: bool
    enrolled_at: float
    acked_up_to: int
    received_at: float | None
    heartbeat: dict[str, Any] | None


@dataclass(frozen=True)
class TacCheck:
    """The verdict on one purchase's TAC (docs/clearing.md)."""

    terminal_id: str
    seq: int
    day: str
    verdict: str
    reason: str
    amount: int | None
    checked_at: float


class FleetStorage:
    """Heartbeats and TAC verdicts (mixed into :class:`backoffice.storage._SqlStorage`)."""

    def _tx(self, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        raise NotImplementedError

    # --- heartbeats -------------------------------------------------------------------------

    def record_heartbeat(
        self, terminal_id: str, received_at: float, sent_at: float, heartbeat_json: str
    ) -> None:
        """Keep ``heartbeat_json`` as ``terminal_id``'s latest (only the latest is kept)."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO terminal_heartbeats (terminal_id, received_at, sent_at, "
                    "heartbeat) VALUES (?, ?, ?, ?) ON CONFLICT (terminal_id) DO UPDATE SET "
                    "received_at = excluded.received_at, sent_at = excluded.sent_at, "
                    "heartbeat = excluded.heartbeat"
                ),
                (terminal_id, received_at, sent_at, heartbeat_json),
            )

    def fleet(self) -> list[StoredHeartbeat]:
        """Every enrolled terminal with its latest heartbeat, by terminal id."""
        with self._tx(write=False) as cur:
            cur.execute(
                "SELECT t.terminal_id, t.revoked, t.enrolled_at, t.acked_up_to, "
                "h.received_at, h.heartbeat FROM terminals t "
                "LEFT JOIN terminal_heartbeats h ON h.terminal_id = t.terminal_id "
                "ORDER BY t.terminal_id"
            )
            rows = cur.fetchall()
        return [
            StoredHeartbeat(
                str(tid),
                bool(revoked),
                float(enrolled),
                int(acked),
                None if received is None else float(received),
                # Stored by the back office after the strict parse: read strictly again.
                None if text is None else parse_json_text(str(text)),
            )
            for tid, revoked, enrolled, acked, received, text in rows
        ]

    def published_versions(self) -> dict[str, int]:
        """The version of each document the back office publishes now (``hotlist``,
        ``trustlist``, ``applist``; a document never published is absent)."""
        current = self.document_versions()  # type: ignore[attr-defined]
        versions = dict(current.documents)
        if current.hotlist:
            versions["hotlist"] = current.hotlist
        return versions

    # --- clearing ---------------------------------------------------------------------------

    def entries_between(self, start: float, end: float) -> Iterable[list[dict[str, Any]]]:
        """The stored bodies (JSON text, as uploaded) of journal entries with ``start <=
        time < end`` that carry an amount, in pages of :data:`PURCHASE_SCAN_BATCH`, by
        terminal and seq."""
        after: tuple[str, int] = ("", 0)
        while True:
            with self._tx(write=False) as cur:
                cur.execute(
                    self._q(
                        "SELECT terminal_id, seq, body FROM entries WHERE time >= ? AND time < ? "
                        "AND amount IS NOT NULL AND (terminal_id > ? OR "
                        "(terminal_id = ? AND seq > ?)) ORDER BY terminal_id, seq LIMIT ?"
                    ),
                    (start, end, after[0], after[0], after[1], PURCHASE_SCAN_BATCH),
                )
                rows = cur.fetchall()
            if not rows:
                return
            yield [{"terminal_id": str(t), "seq": int(s), "body": str(b)} for t, s, b in rows]
            after = (str(rows[-1][0]), int(rows[-1][1]))

    def record_tac_checks(self, checks: Sequence[TacCheck]) -> None:
        """Store the verdicts (a purchase checked again gets its new verdict)."""
        if not checks:
            return
        with self._tx() as cur:
            cur.executemany(
                self._q(
                    "INSERT INTO tac_checks (terminal_id, seq, day, verdict, reason, amount, "
                    "checked_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (terminal_id, seq) "
                    "DO UPDATE SET day = excluded.day, verdict = excluded.verdict, "
                    "reason = excluded.reason, amount = excluded.amount, "
                    "checked_at = excluded.checked_at"
                ),
                [
                    (c.terminal_id, c.seq, c.day, c.verdict, c.reason, c.amount, c.checked_at)
                    for c in checks
                ],
            )

    def tac_checks(
        self, verdict: str | None = None, day: str | None = None, limit: int = 1000
    ) -> list[TacCheck]:
        """Stored verdicts, optionally of one verdict and one day, by day, terminal, seq."""
        where, params = [], []
        if verdict is not None:
            where.append("verdict = ?")
            params.append(verdict)
        if day is not None:
            where.append("day = ?")
            params.append(day)
        sql = (
            "SELECT terminal_id, seq, day, verdict, reason, amount, checked_at FROM tac_checks"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY day, terminal_id, seq LIMIT ?"
        )
        with self._tx(write=False) as cur:
            cur.execute(self._q(sql), (*params, limit))
            rows = cur.fetchall()
        return [
            TacCheck(
                str(t), int(s), str(d), str(v), str(r), None if a is None else int(a), float(c)
            )
            for t, s, d, v, r, a, c in rows
        ]

    def tac_verdict_counts(self) -> dict[str, int]:
        """How many purchases have each verdict (``valid``, ``mismatch``...)."""
        with self._tx(write=False) as cur:
            cur.execute("SELECT verdict, count(*) FROM tac_checks GROUP BY verdict")
            return {str(v): int(n) for v, n in cur.fetchall()}
