"""Repeat-tap and passback windows rebuilt from the journal (terminal/runtime/recent.py),
and a pending purchase the journal already holds (profiles.charge_in_journal)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from terminal.host.clock import CST, FixedClock
from terminal.journal.entry import TransactionRecord
from terminal.journal.store import Journal
from terminal.runtime.profiles import GateProfile, ValidatorProfile, charge_in_journal
from terminal.runtime.recent import RecentTokens, accepted_since, restore_from_journal
from terminal.transit.results import PendingPurchase

TERMINAL = "GATE-0001"
A, B, C = (bytes([n]) * 16 for n in (1, 2, 3))


def record(token: bytes, decision: str = "accept", reason: str = "ok", **extra: object):
    return TransactionRecord(
        kind="card",
        service="museum-entry",
        decision=decision,
        reason=reason,
        amount=None,
        card_token=token,
        region="500000",
        category=None,
        extra=extra,
    )


def journal_at(tmp_path: Path, clock: FixedClock) -> Journal:
    return Journal.open(tmp_path / "journal.db", TERMINAL, clock, min_free_bytes=0)


def test_the_window_keeps_accepted_tokens_by_their_age_in_wall_time() -> None:
    clock = FixedClock()
    recent = RecentTokens(clock, 60)
    now = clock.now()
    assert recent.restore([(A, now - 10), (B, now - 61), (C, now + 3600)]) == 2
    assert recent.recent(A) and not recent.recent(B)
    clock.advance(49.9)
    assert recent.recent(A)
    clock.advance(0.2)
    assert not recent.recent(A)  # 60 s after the entry, not after the rebuild
    # An entry from the future (the wall clock was set back since): counts as just now.
    assert recent.recent(C)
    clock.advance(10)
    assert not recent.recent(C)


def test_a_restored_entry_never_shortens_a_newer_memory() -> None:
    clock = FixedClock()
    recent = RecentTokens(clock, 60)
    recent.remember(A)
    recent.restore([(A, clock.now() - 50)])
    clock.advance(30)
    assert recent.recent(A)


def test_any_of_several_tokens_counts_and_none_is_ignored() -> None:
    recent = RecentTokens(FixedClock(), 60)
    recent.remember(A, None)
    assert recent.recent(B, A) and not recent.recent(None, C)


def test_only_accepted_entries_within_the_window_are_taken(tmp_path: Path) -> None:
    clock = FixedClock()
    with journal_at(tmp_path, clock) as journal:
        journal.append(record(A))
        clock.advance(100)
        journal.append(record(B))
        journal.append(record(C, "refuse", "passback"))
        clock.advance(10)
        since = clock.now() - 60
        seen = accepted_since(journal.since(since), since)
    assert seen == [(B, clock.now() - 10)]


def test_journal_since_reads_newest_first_across_pages(tmp_path: Path) -> None:
    clock = FixedClock()
    with journal_at(tmp_path, clock) as journal:
        journal.append_batch(record(A) for _ in range(1500))
        clock.advance(10)
        journal.append_batch(record(B) for _ in range(2500))
        later = list(journal.since(clock.now() - 1))
        everything = list(journal.since(0))
    assert len(later) == 2500 and later[0].seq == 4000 and later[-1].seq == 1501
    assert len(everything) == 4000


def test_a_gate_restarted_refuses_a_card_that_entered_within_passback(tmp_path: Path) -> None:
    clock = FixedClock()
    with journal_at(tmp_path, clock) as journal:
        journal.append(record(A))
        clock.advance(5 * 60)
        gate = GateProfile(clock, passback_minutes=10)  # a new process: empty memory
        assert restore_from_journal(gate.recent, journal) == 1
    assert gate.recent.recent(A)
    clock.advance(5 * 60)
    assert not gate.recent.recent(A)


def test_a_validator_restarted_knows_the_card_by_its_journaled_token(tmp_path: Path) -> None:
    clock = FixedClock()
    with journal_at(tmp_path, clock) as journal:
        journal.append(record(A))
        validator = ValidatorProfile(clock, 60, psam=None)
        restore_from_journal(validator.recent, journal)
    # A tap is refused when either of its tokens (card, e-purse) is in the window.
    assert validator.recent.recent(A, B)


def pending(counter: int = 7, serial: int = 41) -> PendingPurchase:
    return PendingPurchase(
        app_serial=bytes(10),
        counter=counter,
        amount=200,
        transaction_type=9,
        terminal_number=bytes(6),
        terminal_serial=serial,
        when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=CST),
        balance_before=1000,
    )


def test_a_pending_purchase_is_found_in_the_journal_by_psam_serial_and_counter(
    tmp_path: Path,
) -> None:
    clock = FixedClock()
    with journal_at(tmp_path, clock) as journal:
        journal.append(record(A, reason="torn", decision="refuse", psam_serial=41, counter=7))
        journal.append(record(B, psam_serial=41, counter=8))
        journal.append(record(C, psam_serial=40, counter=7))
        entries = list(journal.since(0))
        assert not charge_in_journal(entries, pending())
        journal.append(record(A, psam_serial=41, counter=7))
        assert charge_in_journal(journal.since(0), pending())
        journal.append(
            record(A, reason="torn_purchase_recovered", psam_serial=42, counter=9, recovered=True)
        )
        assert charge_in_journal(journal.since(0), pending(counter=9, serial=42))


class NoRecovery:
    """The purchase module of a validator that must not recover (nor charge) here."""

    def recover(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("recovered a purchase the journal already holds")

    def purchase(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("charged")

    def ride(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("charged")


def test_a_pending_purchase_the_journal_holds_is_dropped_not_recovered() -> None:
    from terminal.credential import Credential, CredentialKind
    from terminal.policy import AuthenticityOutcome, Decision
    from terminal.runtime.transaction import Presented
    from terminal.transit.pending import PendingPurchases

    clock = FixedClock()
    store = PendingPurchases(None)
    store.put(B, pending(), clock.now())
    asked: list[PendingPurchase] = []
    validator = ValidatorProfile(
        clock,
        60,
        psam=None,
        purchases=NoRecovery(),
        pending=store,
        journaled=lambda p: asked.append(p) is None,
    )
    presented = Presented(
        kind=CredentialKind.CARD,
        credential=Credential(
            kind=CredentialKind.CARD, card_token=A, region="500000", category=None, purse_token=B
        ),
        authenticity=AuthenticityOutcome(ok=True, verdict="genuine", reason=""),
        channel=object(),  # type: ignore[arg-type]
    )
    # Refused for today (a repeat tap, say): nothing charged, and the record is gone.
    action = validator.act(presented, Decision(False, "repeat_tap", "this card has just paid"))
    assert not action.accepted and action.reason == "repeat_tap"
    assert asked == [pending()] and store.get(B) is None
