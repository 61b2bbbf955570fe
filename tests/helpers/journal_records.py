"""A valid transaction record for tests that need the journal to hold something."""

from __future__ import annotations

from terminal.journal.entry import TransactionRecord


def transaction_record(**changes: object) -> TransactionRecord:
    """A museum-gate card acceptance, with ``changes`` applied."""
    fields: dict[str, object] = {
        "kind": "card",
        "service": "museum-entry",
        "decision": "accept",
        "reason": "ok",
        "amount": None,
        "card_token": bytes(range(16)),
        "region": "500100",
        "category": "3",
    }
    fields.update(changes)
    return TransactionRecord(**fields)  # type: ignore[arg-type]
