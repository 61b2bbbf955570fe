"""Journal entries made to the contract, for tests, benchmarks and demos of the back office.

This builds entries the way docs/sync.md says a terminal does (hash chain from 64 zeros),
with the wire's entry hash but without the terminal's journal (no record rules, no SQLite),
so any field can be set to anything. What pins the contract itself down is the shared test
vectors (tests/unit/terminal/wire/vectors), run against both ends.
"""

from __future__ import annotations

import hashlib
from typing import Any

from terminal.wire.journal import ZERO_HASH, entry_hash


def chain_hash(prev_hash: str, entry_without_hash: dict[str, Any]) -> str:
    """``hash`` of an entry (docs/sync.md)."""
    return entry_hash(prev_hash, entry_without_hash)


def make_entries(
    terminal_id: str,
    count: int,
    start: int = 1,
    prev_hash: str = ZERO_HASH,
    time: float = 1_795_000_000.0,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """``count`` chained entries ``start..start+count-1`` following ``prev_hash`` (the hash
    of entry ``start - 1``). ``overrides`` replace field values (before hashing)."""
    entries = []
    for seq in range(start, start + count):
        entry: dict[str, Any] = {
            "terminal_id": terminal_id,
            "seq": seq,
            "time": time + seq * 0.25,
            "kind": "card" if seq % 3 else "code",
            "service": "museum-entry" if seq % 2 else "bus-fare",
            "decision": "accept" if seq % 7 else "refuse",
            "reason": "ok" if seq % 7 else "hotlisted",
            "amount": None if seq % 2 else 200,
            "card_token": hashlib.sha256(seq.to_bytes(8, "big")).hexdigest()[:32],
            "region": "500000",
            "category": "1" if seq % 5 else None,
            "extra": {"tac": f"{seq:08X}"} if seq % 2 == 0 else {},
            "prev_hash": prev_hash,
        }
        entry.update(overrides)
        entry["hash"] = chain_hash(prev_hash, entry)
        prev_hash = entry["hash"]
        entries.append(entry)
    return entries
