"""The terminal's journal entry and the back office's stored row are typed records of one
schema, the wire's (docs/sync.md): each is written out field by field for its own reasons
(a frozen dataclass in the terminal; a NamedTuple row, built thousands at a time, in the
back office), so this pins both to :data:`terminal.wire.journal.ENTRY_FIELDS`."""

from __future__ import annotations

import dataclasses

from backoffice.ingest import Entry
from terminal.journal.entry import JournalEntry
from terminal.wire.journal import ENTRY_FIELDS


def test_the_terminals_entry_has_the_wire_fields_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(JournalEntry)) == ENTRY_FIELDS


def test_the_back_offices_row_is_the_wire_fields_as_stored() -> None:
    stored = tuple("extra_json" if name == "extra" else name for name in ENTRY_FIELDS)
    # Then the canonical body the hash covers, and the hash the back office computed.
    assert Entry._fields == (*stored, "body", "computed_hash")
