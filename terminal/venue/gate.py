"""The venue's part of a gate's decision: a library's patron standing, a museum's real-name
reservation and capacity, a scenic area's pass (docs/venues.md).

:class:`VenueGate` is asked by the gate profile once the policy accepted a genuine card (and
anti-passback let it through): :meth:`VenueGate.check` gives a :class:`VenueVerdict` -
admit or refuse, a machine ``reason``, the holder's message in Chinese and English, and
non-personal ``extra`` facts for the journal entry. Once the journal holds the accepted
entry, :meth:`VenueGate.admitted` counts the passage (occupancy events for the back office)
and marks a reservation used. Nothing here opens a gate or writes the journal.

The rules, by ``[venue] kind`` (:class:`terminal.venue.settings.VenueSettings`):

* **library**: the ILS (:class:`terminal.venue.ils.IlsClient`, SIP2) is asked for the
  holder's standing and :class:`terminal.venue.sip2.PatronPolicy` decides. An ILS that
  cannot be asked costs at most the client's own deadline and never raises: the configured
  ``fallback`` admits or refuses, reason ``ils_unreachable``.
* **museum**: the holder's identity number (read from the card by the caller, handed in,
  never kept) becomes its keyed :func:`~terminal.venue.reservations.identity_token`; the
  reservation whose slot holds the time admits it, once per slot and day; a full venue
  (:class:`~terminal.venue.occupancy.Occupancy`) refuses ``venue_full``.
* **scenic**: the card's pass (:class:`~terminal.venue.passes.Passes`, by the card token's
  first 8 bytes) must be valid today and not used up (``entries_per_day``).
* ``role = "exit"``: every genuine card goes out and the exit is counted.

An :class:`~terminal.venue.occupancy.Occupancy`, when one is configured, refuses entries
of any kind once the venue is full. Nothing personal leaves this module: the verdict, its
``extra`` and the log carry no identity number, card number or name - only the venue id, a
slot id, a pass kind, the ILS's reason and ``venue_token`` (the keyed 8-byte token a
reservation or pass is known by, hex: what lets :meth:`VenueGate.restore` rebuild the
used reservations and the day's pass entries from the journal after a restart).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from terminal.errors import ConfigError, OneCardError
from terminal.host.clock import CST, Clock
from terminal.privacy.cardtoken import MIN_KEY_LENGTH
from terminal.venue.ils import Fallback, IlsError, IlsSettings
from terminal.venue.occupancy import EventRecorder, Occupancy
from terminal.venue.passes import Passes
from terminal.venue.reservations import Reservations, identity_token
from terminal.venue.settings import VENUE_MESSAGES, VenueSettings
from terminal.venue.sip2 import (
    LibraryDecision,
    NotAPatron,
    PatronIdKind,
    PatronStanding,
    patron_identifier,
)

__all__ = [
    "VENUE_MESSAGES",
    "IlsLike",
    "VenueGate",
    "VenueGateError",
    "VenueVerdict",
    "admissions_on",
]

log = logging.getLogger(__name__)

TOKEN_BYTES = 8
_TOKEN_HEX = re.compile(r"[0-9a-f]{16}")

# Reasons of the verdict (machine codes; the journal entry's reason where the gate uses it).
RESERVATION_OK = "reservation_ok"
PASS_OK = "pass_ok"
VENUE_EXIT = "venue_exit"
ILS_UNREACHABLE = "ils_unreachable"
NO_PATRON_ID = "no_patron_id"
NO_RESERVATIONS = "no_reservations"
IDENTITY_UNREADABLE = "identity_unreadable"
NO_RESERVATION = "no_reservation"
RESERVATION_USED = "reservation_used"
VENUE_FULL = "venue_full"
NO_PASSES = "no_passes"
NO_PASS = "no_pass"
PASS_EXPIRED = "pass_expired"
PASS_NOT_YET_VALID = "pass_not_yet_valid"
PASS_USED_TODAY = "pass_used_today"


class VenueGateError(OneCardError):
    """A :class:`VenueGate` used against its contract: a time without its UTC offset, a
    card token that is not bytes. A programming error, never a holder's doing."""

    code = "venue_gate_error"


class IlsLike(Protocol):
    """What the library rule needs of the ILS link: :class:`terminal.venue.ils.IlsClient`
    (or a test's fake). Its settings are the venue's ``[venue.ils]``."""

    @property
    def up(self) -> bool: ...

    def patron_standing(self, patron_id: str) -> PatronStanding: ...

    def status(self) -> Any: ...


@dataclass(frozen=True)
class VenueVerdict:
    """The venue's answer for one holder.

    ``reason`` is a machine code (``reservation_ok``, ``venue_full``, ``patron_ok``,
    ``patron_blocked:<flag>``...); ``message_zh`` / ``message_en`` are for the holder's
    display; ``extra`` holds small non-personal facts to put in the journal entry's
    ``extra`` as they are (``venue``, ``slot``, ``pass``, ``ils``, ``venue_token``) -
    :meth:`VenueGate.admitted` and :meth:`VenueGate.restore` read them back. Treat ``extra``
    as read-only."""

    admit: bool
    reason: str
    message_zh: str
    message_en: str
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def slot(self) -> str | None:
        """The reservation's slot id (museum), or None."""
        slot = self.extra.get("slot")
        return slot if isinstance(slot, str) else None


def admissions_on(entries: Iterable[Any], venue: str, token8: bytes, day: dt.date) -> int:
    """How many of ``entries`` (journal entries) admitted the pass of the card of ``token8``
    at ``venue`` on ``day`` (China Standard Time). A ``journal_today`` for
    :class:`VenueGate` is ``lambda t, d: admissions_on(journal.since(midnight), venue, t, d)``.
    Pure."""
    wanted = bytes(token8[:TOKEN_BYTES]).hex()
    count = 0
    for entry in entries:
        fact = _journaled(entry)
        if fact is not None and fact.passed and fact.venue == venue and fact.day == day:
            count += fact.token == wanted
    return count


@dataclass(frozen=True)
class _Admission:
    """What an accepted journal entry of a venue gate says: its venue, the ``venue_token``
    (hex), the day, and the slot of a reservation or whether a pass let it in."""

    venue: str
    token: str
    day: dt.date
    slot: str | None
    passed: bool


def _journaled(entry: Any) -> _Admission | None:
    """The :class:`_Admission` of a journal entry, or None for any other entry (refused,
    another profile's, an exit, unreadable). Only ``extra`` tells: the entry's own reason
    is the gate profile's business."""
    extra = getattr(entry, "extra", None)
    if getattr(entry, "decision", None) != "accept" or not isinstance(extra, Mapping):
        return None
    venue, token, slot = extra.get("venue"), extra.get("venue_token"), extra.get("slot")
    when = getattr(entry, "time", None)
    if not isinstance(venue, str) or not isinstance(token, str) or not _TOKEN_HEX.fullmatch(token):
        return None
    if isinstance(when, bool) or not isinstance(when, int | float):
        return None
    day = dt.datetime.fromtimestamp(when, CST).date()
    return _Admission(
        venue,
        token,
        day,
        slot if isinstance(slot, str) else None,
        isinstance(extra.get("pass"), str),
    )


class VenueGate:
    """A gate's venue rules (module doc). Thread-safe.

    * ``settings``: the ``[venue]`` table read
      (:func:`terminal.venue.settings.parse_venue_settings`).
    * ``clock``: the terminal's clock (the default ``now`` of :meth:`check`).
    * ``ils``: the library's ILS link (:class:`~terminal.venue.ils.IlsClient`); None at a
      library means the ILS is never reachable (the fallback applies to every tap).
    * ``reservations`` / ``passes``: callables giving the document in force, or None when
      there is none yet (the document store's ``.reservations`` / ``.passes``).
    * ``occupancy``: this gate's :class:`~terminal.venue.occupancy.Occupancy` of the venue
      (its venue and role must be the settings'), or None (no count, no capacity).
    * ``token_key``: the deployment's card token key (identity tokens, ILS ``token`` ids).
    * ``outbox``: where passage events go (:class:`terminal.sync.events.EventOutbox`: its
      ``add(kind, detail)``); None: the passages are counted here only.
    * ``journal_today``: ``(token8, day) -> int``, the card's admissions at this venue that
      day from the journal (:func:`admissions_on`), for a pass's ``entries_per_day``; None:
      counted in memory, rebuilt at start by :meth:`restore`.
    * ``ils_link``: ``(up, reason)`` callback for the status page's link table
      (``Links.reporter("ils")``), told after every ILS request.
    """

    def __init__(
        self,
        settings: VenueSettings,
        *,
        clock: Clock,
        ils: IlsLike | None = None,
        reservations: Callable[[], Reservations | None] = lambda: None,
        passes: Callable[[], Passes | None] = lambda: None,
        occupancy: Occupancy | None = None,
        token_key: bytes,
        outbox: EventRecorder | None = None,
        journal_today: Callable[[bytes, dt.date], int] | None = None,
        ils_link: Callable[[bool, str], None] | None = None,
    ) -> None:
        if not isinstance(token_key, bytes) or len(token_key) < MIN_KEY_LENGTH:
            raise ConfigError(f"the venue gate needs the card token key ({MIN_KEY_LENGTH}+ bytes)")
        if occupancy is not None and (
            occupancy.venue != settings.id or occupancy.role != settings.role
        ):
            raise ConfigError(
                f"occupancy of {occupancy.venue!r} ({occupancy.role}) given to the gate of "
                f"venue {settings.id!r} ({settings.role})"
            )
        if settings.kind == "library" and settings.ils is None:
            raise ConfigError("a library venue needs its [venue.ils] settings")
        if settings.kind == "library" and ils is None and settings.role != "exit":
            log.warning("library %s has no ILS link: every tap gets the fallback", settings.id)
        self.settings = settings
        self._clock = clock
        self._ils = ils
        self._reservations = reservations
        self._passes = passes
        self.occupancy = occupancy
        self._key = token_key
        self._outbox = outbox
        self._journal_today = journal_today
        self._ils_link = ils_link
        self._lock = threading.Lock()
        # Reservations used: (identity token, slot id, day). A slot is a day's: older days
        # are dropped as days pass, so the set holds about one day of visitors.
        self._used: set[tuple[bytes, str, dt.date]] = set()
        # A pass's admissions per (card token8, day), when the journal is not asked.
        self._entries: dict[tuple[bytes, dt.date], int] = {}
        self._day: dt.date | None = None
        # Documents for another venue are refused; each version is logged once.
        self._warned: set[tuple[str, str, int]] = set()

    # --- what the caller needs to know ----------------------------------------------------

    @property
    def needs_identity_number(self) -> bool:
        """Whether :meth:`check` needs the holder's identity number read from the card: a
        museum's real-name reservations, or a library whose ILS knows patrons by it. The
        caller reads it, hands it in and keeps nothing."""
        if self.settings.role == "exit":
            return False
        if self.settings.kind == "museum":
            return True
        ils = self.settings.ils
        return ils is not None and ils.patron_id is PatronIdKind.social_security_number

    @property
    def is_exit(self) -> bool:
        """An exit gate: :meth:`check` admits every card and :meth:`admitted` counts an exit."""
        return self.settings.role == "exit"

    # --- the decision ---------------------------------------------------------------------

    def check(
        self,
        card_token: bytes,
        card_number: str | None,
        identity_number: str | None,
        now: dt.datetime | None = None,
    ) -> VenueVerdict:
        """The venue's verdict on the holder of the card whose keyed token is ``card_token``
        (16 bytes; the first 8 name it in passes), at ``now`` (with its UTC offset; default:
        the clock's time in China Standard Time). ``card_number`` is used only to ask the
        ILS by card number or token; ``identity_number`` only for a museum's reservation or
        an ILS that knows patrons by it - neither is kept, logged or put in the verdict.
        Never raises for anything a holder or the ILS does; raises :class:`VenueGateError`
        for a ``now`` without offset or a ``card_token`` that is not bytes."""
        if not isinstance(card_token, bytes | bytearray) or len(card_token) < TOKEN_BYTES:
            raise VenueGateError("card_token must be the card's token (bytes)")
        if now is None:
            now = dt.datetime.fromtimestamp(self._clock.now(), CST)
        elif not isinstance(now, dt.datetime) or now.utcoffset() is None:
            raise VenueGateError("now must be a datetime with its UTC offset")
        if self.settings.role == "exit":
            return self._verdict(True, VENUE_EXIT)
        kind = self.settings.kind
        if kind == "library":
            verdict = self._library(card_number, identity_number)
        elif kind == "museum":
            verdict = self._museum(identity_number, now)
        else:
            verdict = self._scenic(bytes(card_token[:TOKEN_BYTES]), now)
        if verdict.admit and self.occupancy is not None and not self.occupancy.can_enter():
            # Last, so that a holder who may not come in at all is told why, not "wait".
            return self._verdict(False, VENUE_FULL, **_facts(verdict.extra, "slot", "pass"))
        return verdict

    def _verdict(
        self,
        admit: bool,
        reason: str,
        *,
        message_key: str | None = None,
        message_zh: str = "",
        **facts: object,
    ) -> VenueVerdict:
        """A verdict with the configured texts of ``message_key`` (default: ``reason``);
        ``message_zh`` (a patron policy's text), when given, replaces the Chinese one."""
        zh, en = self.settings.messages[message_key or reason]
        extra: dict[str, object] = {"venue": self.settings.id}
        extra.update((k, v) for k, v in facts.items() if v is not None)
        return VenueVerdict(admit, reason, message_zh or zh, en, extra)

    # -- library --

    def _library(self, card_number: str | None, identity_number: str | None) -> VenueVerdict:
        ils = self.settings.ils
        assert ils is not None  # checked in __init__
        try:
            patron = patron_identifier(
                ils.patron_id,
                card_number=card_number,
                social_security_number=identity_number,
                token_key=self._key,
            )
        except OneCardError as exc:
            # The card lacks what the ILS knows patrons by (an e-code without the number, a
            # number the ILS could not be sent): the ILS cannot know this holder.
            log.info("no ILS patron identifier for this card (%s)", exc.code)
            return self._not_a_patron(NO_PATRON_ID)
        if self._ils is None:
            return self._fallback(ils, "no ILS link")
        try:
            standing = self._ils.patron_standing(patron)
        except IlsError as exc:
            self._report(False, exc.code)
            return self._fallback(ils, exc.code)
        except Exception as exc:  # a bug in a link must not stop the gate: fall back
            # The type alone: an unexpected error's text may quote the patron identifier.
            log.error("ILS lookup failed unexpectedly: %s", type(exc).__name__)
            self._report(False, type(exc).__name__)
            return self._fallback(ils, type(exc).__name__)
        self._report(True, "")
        return self._decided(ils.policy.decide(standing))

    def _decided(self, decision: LibraryDecision) -> VenueVerdict:
        reason = decision.reason
        if reason == "not_a_patron":
            key = "not_a_patron" if decision.admit else "not_a_patron_refused"
        else:
            key = reason.split(":", 1)[0]  # patron_ok, patron_warned, patron_blocked
            if key not in self.settings.messages:
                key = "patron_ok" if decision.admit else "patron_blocked"
        return self._verdict(
            decision.admit, reason, message_key=key, message_zh=decision.message, ils=reason
        )

    def _not_a_patron(self, fact: str) -> VenueVerdict:
        ils = self.settings.ils
        assert ils is not None
        policy = ils.policy
        admit = policy.not_a_patron is NotAPatron.admit_for_reading
        return self._verdict(
            admit,
            "not_a_patron",
            message_key="not_a_patron" if admit else "not_a_patron_refused",
            message_zh=policy.not_a_patron_message,
            ils=fact,
        )

    def _fallback(self, ils: IlsSettings, why: str) -> VenueVerdict:
        admit = ils.fallback is Fallback.admit
        log.warning(
            "library %s: ILS not asked (%s): %s by fallback",
            self.settings.id,
            why,
            "admitted" if admit else "refused",
        )
        return self._verdict(
            admit,
            ILS_UNREACHABLE,
            message_key=ILS_UNREACHABLE if admit else f"{ILS_UNREACHABLE}_refused",
            message_zh=ils.fallback_message,
            ils=ILS_UNREACHABLE,
        )

    def _report(self, up: bool, reason: str) -> None:
        if self._ils_link is None:
            return
        try:
            self._ils_link(up, reason)
        except Exception:  # the status page must never cost a tap
            log.exception("ILS link report failed")

    # -- museum --

    def _museum(self, identity_number: str | None, now: dt.datetime) -> VenueVerdict:
        reservations = self._document(self._reservations, "reservations", "venue")
        if reservations is None:
            return self._verdict(False, NO_RESERVATIONS)
        number = (identity_number or "").strip() if isinstance(identity_number, str) else ""
        if not number:
            return self._verdict(False, IDENTITY_UNREADABLE)
        token = identity_token(self._key, number)
        slot = reservations.slot_now(token, now, self.settings.grace_minutes)
        if slot is None:
            return self._verdict(False, NO_RESERVATION)
        day = _day(now)
        with self._lock:
            used = (token, slot.id, day) in self._used
        if used:
            return self._verdict(False, RESERVATION_USED, slot=slot.id)
        return self._verdict(True, RESERVATION_OK, slot=slot.id, venue_token=token.hex())

    # -- scenic --

    def _scenic(self, token8: bytes, now: dt.datetime) -> VenueVerdict:
        passes = self._document(self._passes, "passes", "area")
        if passes is None:
            return self._verdict(False, NO_PASSES)
        found = passes.pass_for(token8)
        if found is None:
            return self._verdict(False, NO_PASS)
        day = _day(now)
        if day < found.valid_from:
            return self._verdict(False, PASS_NOT_YET_VALID, **{"pass": found.kind})
        if day > found.valid_to:
            return self._verdict(False, PASS_EXPIRED, **{"pass": found.kind})
        used = self._admissions(token8, day)
        if used >= found.entries_per_day:
            return self._verdict(False, PASS_USED_TODAY, **{"pass": found.kind})
        return self._verdict(True, PASS_OK, venue_token=token8.hex(), **{"pass": found.kind})

    def _admissions(self, token8: bytes, day: dt.date) -> int:
        if self._journal_today is not None:
            try:
                return int(self._journal_today(token8, day))
            except Exception:
                # The journal could not be read: this process's own count is what is left.
                log.exception("journal_today failed; counting this process's entries")
        with self._lock:
            return self._entries.get((token8, day), 0)

    def _document(self, get: Callable[[], object], what: str, owner_field: str) -> Any:
        """The document in force, or None when there is none or it is another venue's
        (``owner_field`` names the venue in it: a reservations' ``venue``, passes' ``area``):
        another venue's holders must not come in here."""
        try:
            document = get()
        except Exception:
            log.exception("the %s document could not be had", what)
            return None
        if document is None:
            return None
        owner = getattr(document, owner_field, None)
        version = getattr(document, "version", 0)
        if owner != self.settings.id:
            key = (what, owner, version)
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "%s document v%d is for %r, not venue %r: not used",
                    what,
                    version,
                    owner,
                    self.settings.id,
                )
            return None
        return document

    # --- after the journal ----------------------------------------------------------------

    def admitted(self, verdict: VenueVerdict, now: dt.datetime | None = None) -> None:
        """The journal holds the accepted entry of ``verdict``: count the passage (a
        ``venue_entry`` / ``venue_exit`` event in the outbox, and the gate's occupancy),
        mark the reservation used, count the pass's entry. Never raises: a failure is
        logged (the holder is already through)."""
        if not verdict.admit:
            return
        if now is None:
            now = dt.datetime.fromtimestamp(self._clock.now(), CST)
        try:
            self._remember(verdict.extra, _day(now))
        except Exception:
            log.exception("venue admission not remembered")
        if self.occupancy is None:
            return
        exit_ = self.settings.role == "exit"
        try:
            if self._outbox is None:
                if exit_:
                    self.occupancy.exited()
                else:
                    self.occupancy.entered(verdict.slot)
            elif exit_:
                self.occupancy.record_exit(self._outbox)
            else:
                self.occupancy.record_entry(self._outbox, verdict.slot)
        except Exception:
            log.exception("venue passage not counted")

    def _remember(self, extra: Mapping[str, object], day: dt.date) -> None:
        """Take an admission's ``extra``: a reservation (``slot``) is used, a pass
        (``pass``) entered once more; others (library, exit) leave nothing to remember."""
        token_hex = extra.get("venue_token")
        if not isinstance(token_hex, str) or not _TOKEN_HEX.fullmatch(token_hex):
            return
        token = bytes.fromhex(token_hex)
        slot = extra.get("slot")
        with self._lock:
            self._new_day(day)
            if isinstance(slot, str):
                self._used.add((token, slot, day))
            elif isinstance(extra.get("pass"), str):
                self._entries[(token, day)] = self._entries.get((token, day), 0) + 1

    def _new_day(self, day: dt.date) -> None:
        """Forget the days before ``day`` (under the lock): a slot or a day's entries of
        yesterday can never match again."""
        if self._day is not None and day <= self._day:
            return
        self._day = day
        self._used = {key for key in self._used if key[2] >= day}
        self._entries = {key: n for key, n in self._entries.items() if key[1] >= day}

    def restore(self, entries: Iterable[Any], now: dt.datetime | None = None) -> int:
        """Rebuild today's used reservations and pass entries from journal entries (the
        terminal's journal since the start of the day, at start-up): accepted entries of
        this venue whose ``extra`` holds a ``venue_token``. Returns how many were taken."""
        if now is None:
            now = dt.datetime.fromtimestamp(self._clock.now(), CST)
        today = _day(now)
        taken = 0
        for entry in entries:
            fact = _journaled(entry)
            if fact is None or fact.venue != self.settings.id or fact.day != today:
                continue
            extra: dict[str, object] = {"venue_token": fact.token}
            if fact.slot is not None:
                extra["slot"] = fact.slot
            elif fact.passed:
                extra["pass"] = "restored"
            else:
                continue
            self._remember(extra, today)
            taken += 1
        if taken:
            log.info("venue %s: %d admissions of today restored", self.settings.id, taken)
        return taken

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """For the status page: ``{"venue", "kind", "role", "ils", "occupancy"}`` - the ILS
        link's counters (:class:`~terminal.venue.ils.IlsStatus` as a dict) and the
        occupancy snapshot, None where there is none."""
        ils: dict[str, object] | None = None
        if self._ils is not None:
            try:
                raw = self._ils.status()
                if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
                    ils = dataclasses.asdict(raw)
                elif isinstance(raw, Mapping):
                    ils = dict(raw)
                else:
                    ils = {"up": bool(self._ils.up)}
            except Exception:
                log.exception("ILS status unavailable")
                ils = {"up": False}
        return {
            "venue": self.settings.id,
            "kind": self.settings.kind,
            "role": self.settings.role,
            "ils": ils,
            "occupancy": None if self.occupancy is None else self.occupancy.snapshot().to_json(),
        }


def _day(now: dt.datetime) -> dt.date:
    """The calendar day of ``now`` in China Standard Time: a reservation's or pass's day,
    whatever offset the caller's time carries."""
    return now.astimezone(CST).date()


def _facts(extra: Mapping[str, object], *keys: str) -> dict[str, object]:
    return {key: extra[key] for key in keys if key in extra}
