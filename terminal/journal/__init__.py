"""The terminal's durable, hash-chained transaction journal (docs/sync.md).

:mod:`terminal.journal.entry` is the pure part (records, entries, canonical JSON, the hash
chain); :mod:`terminal.journal.store` keeps entries in SQLite.
"""

from terminal.journal.entry import (
    ZERO_HASH,
    ChainReport,
    JournalEntry,
    TransactionRecord,
    canonical_json,
    entry_from_json,
    entry_hash,
    make_entry,
    verify_chain,
)
from terminal.journal.store import Journal, JournalStats

__all__ = [
    "ZERO_HASH",
    "ChainReport",
    "Journal",
    "JournalEntry",
    "JournalStats",
    "TransactionRecord",
    "canonical_json",
    "entry_from_json",
    "entry_hash",
    "make_entry",
    "verify_chain",
]
