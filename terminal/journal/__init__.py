"""The terminal's durable, hash-chained transaction journal (docs/sync.md).

:mod:`terminal.journal.entry` is the pure part (records, entries, the hash chain) over the
wire's entry format (:mod:`terminal.wire.journal`); :mod:`terminal.journal.store` keeps
entries in SQLite.
"""

from terminal.journal.entry import (
    ChainReport,
    JournalEntry,
    TransactionRecord,
    entry_from_json,
    make_entry,
    verify_chain,
)
from terminal.journal.store import Journal, JournalStats
from terminal.wire.journal import ZERO_HASH

__all__ = [
    "ZERO_HASH",
    "ChainReport",
    "Journal",
    "JournalEntry",
    "JournalStats",
    "TransactionRecord",
    "entry_from_json",
    "make_entry",
    "verify_chain",
]
