"""A code's nonce is recorded only when the code is admitted (issue 17): a code the
terminal refused for a transient reason of its own - service not offered here, journal
full, no application list - is accepted when shown again; an admitted code is refused as
``replayed``, also after a restart; two admissions of one code are never both journaled.

Real verifier, real replay cache (in memory, or a file for the restart), real gate profile;
the journal is a fake that can be made to refuse."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import MappingProxyType

import pytest
from helpers.event_outputs import EventOutputs

from firmware_sim.ecode_issuing import issue_code, issuer_entry, make_issuer_key, make_trust_list
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.ecode.replay import ReplayCache
from terminal.ecode.trustlist import parse_trust_list
from terminal.ecode.verify import CodeVerdict, CodeVerifier
from terminal.errors import JournalError, JournalFullError, ReplayCacheError
from terminal.host.clock import FixedClock
from terminal.policy import ApplicationList, Scope, ServiceItem
from terminal.runtime.profiles import GateProfile
from terminal.runtime.transaction import CodePresented, TerminalContext, TransactionSteps

NOW = 1_795_000_000
ALG = Algorithm.ECDSA_P256  # the fastest to sign and verify; the rules do not depend on it
TOKEN_KEY = b"k" * 32
SERVICE = "museum-entry"
APPLIST = ApplicationList(
    1,
    MappingProxyType(
        {SERVICE: ServiceItem(SERVICE, "Museum", Scope.CHONGQING, dt.date(2020, 1, 1))}
    ),
)


class World:
    def __init__(self) -> None:
        root = generate_private_key(ALG)
        self.key, self.key_id = make_issuer_key(ALG)
        when = dt.datetime.fromtimestamp(NOW, dt.UTC)
        day = dt.timedelta(days=1)
        data = make_trust_list(
            root, ALG, [issuer_entry(self.key, ALG, when - day, when + day)], 1, when
        )
        self.trust_list = parse_trust_list(data, public_key_bytes(root), ALG)
        self.count = 0

    def code(self) -> str:
        """A fresh code (its own nonce) of one card."""
        self.count += 1
        nonce = self.count.to_bytes(8, "big")
        return issue_code(self.key, self.key_id, ALG, "500101", "D2143569X", "3", NOW, nonce=nonce)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


class Journal:
    """Records appends; ``refuse`` set to an error makes the next appends raise it."""

    def __init__(self) -> None:
        self.records: list = []
        self.refuse: Exception | None = None

    def append(self, record):
        if self.refuse is not None:
            raise self.refuse
        self.records.append(record)
        return type("Entry", (), {"seq": len(self.records)})()


class Terminal:
    def __init__(self, world: World, cache: ReplayCache, clock: FixedClock) -> None:
        self.clock = clock
        self.verifier = CodeVerifier(world.trust_list, cache, clock, token_key=TOKEN_KEY)
        self.journal = Journal()
        self.events: list = []
        self.context = TerminalContext(
            service=SERVICE,
            token_key=TOKEN_KEY,
            journal=self.journal,
            clock=clock,
            applist=lambda: APPLIST,
            hotlist=lambda: type("Empty", (), {"contains": lambda self, token: False})(),
            code_verifier=self.verifier,
        )
        # passback 0: the same card may enter again at once; only the code matters here.
        self.steps = TransactionSteps(
            self.context, GateProfile(clock, 0), EventOutputs(self.events), _messages
        )

    def show(self, text: str):
        return self.steps.run(CodePresented(text))


def _messages(decision, reason, fare, balance):
    return decision, f"{decision}:{reason}"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def terminal(world: World, clock: FixedClock) -> Terminal:
    return Terminal(world, ReplayCache.in_memory(clock), clock)


def _refused_and_not_recorded(terminal: Terminal, text: str, reason: str) -> None:
    refused = terminal.show(text)
    assert refused.decision == "refuse" and refused.reason == reason
    assert not refused.gate_opened
    assert len(terminal.verifier.replay_cache) == 0  # the nonce was not recorded


def test_refused_as_service_not_offered_then_accepted(terminal: Terminal, world: World) -> None:
    text = world.code()
    terminal.context.offered = frozenset({"library-entry"})
    _refused_and_not_recorded(terminal, text, "service_not_offered")
    terminal.context.offered = frozenset({SERVICE})
    again = terminal.show(text)
    assert again.accepted and again.gate_opened


def test_refused_as_journal_full_then_accepted(terminal: Terminal, world: World) -> None:
    text = world.code()
    terminal.journal.refuse = JournalFullError("disk full")
    _refused_and_not_recorded(terminal, text, "journal_full")
    terminal.journal.refuse = None
    assert terminal.show(text).accepted


def test_journal_failure_releases_the_code(terminal: Terminal, world: World) -> None:
    text = world.code()
    terminal.journal.refuse = JournalError("journal closed")
    outcome = terminal.show(text)
    assert outcome.decision == "error" and not outcome.journaled
    assert len(terminal.verifier.replay_cache) == 0
    terminal.journal.refuse = None
    assert terminal.show(text).accepted


def test_refused_for_no_application_list_then_accepted(terminal: Terminal, world: World) -> None:
    text = world.code()
    terminal.context.applist = lambda: None
    _refused_and_not_recorded(terminal, text, "no_application_list")
    terminal.context.applist = lambda: APPLIST
    assert terminal.show(text).accepted


def test_an_admitted_code_is_refused_as_replayed(terminal: Terminal, world: World) -> None:
    text = world.code()
    assert terminal.show(text).accepted
    again = terminal.show(text)
    assert again.decision == "refuse" and again.reason == "not_authentic"
    assert terminal.events[-1] == ("show", "refuse:replayed")  # the holder is told why
    assert terminal.journal.records[-1].extra["verdict"] == "replayed"


def test_an_admitted_code_is_refused_after_a_restart(
    world: World, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "replay.db"
    text = world.code()
    with ReplayCache(path, clock) as cache:
        assert Terminal(world, cache, clock).show(text).accepted
    with ReplayCache(path, clock) as cache:
        again = Terminal(world, cache, clock).show(text)
    assert again.decision == "refuse" and again.reason == "not_authentic"


def test_admitted_elsewhere_between_check_and_commit_is_refused(
    terminal: Terminal, world: World
) -> None:
    text = world.code()
    other = terminal.verifier  # another process sharing the cache would do the same
    checked = terminal.verifier.check(text)
    real_check = terminal.verifier.check

    def check_then_admitted_elsewhere(code: str | bytes):
        result = real_check(code)
        assert other.commit(checked).verdict is CodeVerdict.VALID
        return result

    terminal.verifier.check = check_then_admitted_elsewhere  # type: ignore[method-assign]
    outcome = terminal.show(text)
    assert outcome.decision == "refuse" and outcome.reason == "not_authentic"
    assert not outcome.gate_opened
    assert terminal.journal.records[-1].extra["verdict"] == "replayed"


def test_a_cache_that_cannot_be_written_refuses_without_journaling(
    terminal: Terminal, world: World
) -> None:
    def cannot_write(key):
        raise ReplayCacheError("disk full")

    terminal.verifier.replay_cache.record = cannot_write  # type: ignore[method-assign]
    outcome = terminal.show(world.code())
    assert outcome.decision == "error" and outcome.reason == "replay_cache_error"
    assert not outcome.journaled and not outcome.gate_opened
    assert terminal.journal.records == []


def test_a_release_that_fails_leaves_the_code_used(terminal: Terminal, world: World) -> None:
    def cannot_forget(key):
        raise ReplayCacheError("disk full")

    text = world.code()
    terminal.verifier.replay_cache.forget = cannot_forget  # type: ignore[method-assign]
    terminal.journal.refuse = JournalFullError("disk full")
    assert terminal.show(text).reason == "journal_full"
    terminal.journal.refuse = None
    # Never admitted twice: a code whose release failed is refused, not accepted.
    assert terminal.show(text).reason == "not_authentic"
