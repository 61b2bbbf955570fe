"""Verified download and apply of the documents the back office publishes (docs/sync.md,
"Published documents"): the hotlist (versioned deltas), the e-code trust list and the
application list.

:class:`DocumentStore` keeps the documents in force in one directory::

    hotlist.bin      the hotlist, binary (terminal.hotlist file format)
    trustlist.json   the last accepted trust list, as signed by the back office
    applist.json     the last accepted application list, as signed by the back office

Signed documents are stored as received, so they are verified again at every start: a file
edited on the terminal's disk is caught like one edited in transit. Every apply is
all-or-nothing: verify the signature, check the kind, refuse a version that is not newer
(rollback), check the content, write atomically, then swap the document in force. Any
refusal raises a typed error (:class:`DocumentError`, :class:`HotlistError`) and leaves
the previous document in force, on disk and in memory.

:class:`Downloader` fetches the three documents through an injected ``fetch(path) ->
bytes`` (the terminal's :class:`terminal.sync.client.BackOfficeClient`) and applies them;
one document failing - not fetched, refused, or failing in a way nobody foresaw - never
stops the others, and never ends the round with anything but a report.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.errors import ConfigError, OneCardError, SignatureFormatError
from terminal.host.atomicfile import write_atomically
from terminal.host.clock import Clock
from terminal.hotlist import HotList, HotlistError
from terminal.policy import ApplicationList, parse_application_list
from terminal.wire.canonical import canonical_json
from terminal.wire.document import (
    HOTLIST_DELTA_FIELDS,
    HOTLIST_ENTRY_HEX,
    KIND_APPLIST,
    KIND_HOTLIST,
    KIND_TRUSTLIST,
    DocumentError,
    StaleDocumentError,
    verify_document,
)
from terminal.wire.requests import APPLIST_PATH, HOTLIST_PATH, TRUSTLIST_PATH

log = logging.getLogger(__name__)

HOTLIST_FILE = "hotlist.bin"
TRUSTLIST_FILE = "trustlist.json"
APPLIST_FILE = "applist.json"


def _hex_keys(value: object, what: str) -> np.ndarray:
    """A JSON list of 16-hex-digit hotlist keys as a uint64 array. Decoded in one
    ``bytes.fromhex`` over the joined strings: a full provincial list is 10 million entries,
    and ``int(s, 16)`` one by one takes seconds."""
    if not isinstance(value, list):
        raise DocumentError(f"hotlist delta {what} must be a list")
    if not all(type(s) is str and len(s) == HOTLIST_ENTRY_HEX for s in value):
        raise DocumentError(f"hotlist delta {what} entries must be {HOTLIST_ENTRY_HEX} hex digits")
    try:
        raw = bytes.fromhex("".join(value))
    except ValueError:
        raise DocumentError(f"hotlist delta {what} holds a non-hex entry") from None
    # fromhex skips whitespace; with every entry 16 characters long, any whitespace leaves
    # fewer than 8 bytes an entry.
    if len(raw) != 8 * len(value):
        raise DocumentError(f"hotlist delta {what} holds a non-hex entry")
    return np.frombuffer(raw, dtype=">u8").astype("<u8")


@dataclass(frozen=True)
class _Signed:
    body: Mapping[str, Any]
    raw: bytes

    @property
    def version(self) -> int:
        return int(self.body["version"])


class DocumentStore:
    """The published documents in force on this terminal, in ``directory``.

    ``public_key`` (``04 || X || Y``) and ``algorithm`` are the back office's publication
    key from the credentials file. ``trust_list_parser``, when given, must accept the body
    of a trust list (raising a :class:`OneCardError` otherwise) before it is stored - the
    e-code module knows that format, this one does not.

    A stored document that no longer verifies or loads at start-up is not used (version 0,
    so the next download asks for a full copy); the fault is kept in :attr:`problems` for
    the operator, and the file is left as it is until a good document replaces it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        public_key: bytes,
        algorithm: Algorithm | str,
        trust_list_parser: Callable[[Mapping[str, Any]], object] | None = None,
    ) -> None:
        try:
            self._algorithm = (
                algorithm if isinstance(algorithm, Algorithm) else Algorithm(algorithm)
            )
        except ValueError:
            raise ConfigError(f"unknown publication algorithm {algorithm!r}") from None
        try:
            signing.check_public_key(self._algorithm, public_key)
        except SignatureFormatError as exc:
            raise ConfigError(f"publication key: {exc.reason}") from exc
        self._public_key = bytes(public_key)
        self._dir = Path(directory)
        if not self._dir.is_dir():
            raise ConfigError(f"document directory {self._dir} does not exist")
        self._trust_list_parser = trust_list_parser
        self._lock = threading.Lock()  # one writer at a time; readers take the references
        self.problems: dict[str, str] = {}
        self._hotlist = self._load_hotlist()
        self._trustlist = self._load_signed(TRUSTLIST_FILE, KIND_TRUSTLIST)
        self._applist_doc = self._load_signed(APPLIST_FILE, KIND_APPLIST)
        self._applist: ApplicationList | None = None
        if self._applist_doc is not None:
            try:
                self._applist = parse_application_list(self._applist_doc.body)
            except DocumentError as exc:
                self._refuse_stored(APPLIST_FILE, exc)
                self._applist_doc = None
        if self._trustlist is not None and trust_list_parser is not None:
            try:
                trust_list_parser(self._trustlist.body)
            except OneCardError as exc:
                self._refuse_stored(TRUSTLIST_FILE, exc)
                self._trustlist = None

    # --- start-up -------------------------------------------------------------------------

    def _refuse_stored(self, name: str, exc: OneCardError) -> None:
        self.problems[name] = exc.reason
        log.error("stored document not used", extra={"file": name, "reason": exc.reason})

    def _load_hotlist(self) -> HotList:
        path = self._dir / HOTLIST_FILE
        if not path.exists():
            return HotList.empty()
        try:
            return HotList.load(path)
        except HotlistError as exc:
            self._refuse_stored(HOTLIST_FILE, exc)
            return HotList.empty()

    def _load_signed(self, name: str, kind: str) -> _Signed | None:
        path = self._dir / name
        if not path.exists():
            return None
        try:
            raw = path.read_bytes()
            body = verify_document(raw, self._public_key, self._algorithm, kind)
        except OSError as exc:
            self._refuse_stored(name, DocumentError(f"cannot read: {exc.strerror or exc}"))
            return None
        except DocumentError as exc:
            self._refuse_stored(name, exc)
            return None
        return _Signed(MappingProxyType(body), raw)

    # --- in force -------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def hotlist(self) -> HotList:
        """The hotlist in force (empty, version 0, before the first download)."""
        return self._hotlist

    @property
    def application_list(self) -> ApplicationList | None:
        """The application list in force, or None before the first download."""
        return self._applist

    @property
    def trust_list(self) -> Mapping[str, Any] | None:
        """The body of the trust list in force, or None before the first download."""
        return None if self._trustlist is None else self._trustlist.body

    def current_versions(self) -> dict[str, int]:
        """Version of each document in force; 0 for one not yet downloaded."""
        return {
            "hotlist": self._hotlist.version,
            "trustlist": 0 if self._trustlist is None else self._trustlist.version,
            "applist": 0 if self._applist_doc is None else self._applist_doc.version,
        }

    # --- applying downloads ---------------------------------------------------------------

    def apply_hotlist_delta(self, raw: bytes) -> int:
        """Verify and apply a ``hotlist-delta`` document; returns the new hotlist version.

        Refused, with the previous list kept: a bad or missing signature, another kind, a
        malformed body (:class:`DocumentError`); a version not newer than the list's
        (:class:`StaleDocumentError`); a base that is not the list's version, or a failed
        save (:class:`HotlistError`).
        """
        body = verify_document(raw, self._public_key, self._algorithm, KIND_HOTLIST)
        unknown = body.keys() - HOTLIST_DELTA_FIELDS
        if unknown:
            raise DocumentError(f"hotlist delta has unknown keys {sorted(unknown)!r}")
        version, base = body["version"], body.get("base")
        if type(base) is not int or base < 0:
            raise DocumentError(f"hotlist delta base must be a non-negative integer, not {base!r}")
        added = _hex_keys(body.get("added"), "added")
        removed = _hex_keys(body.get("removed"), "removed")
        with self._lock:
            current = self._hotlist
            if version <= current.version:
                identical = version == current.version and (
                    (base == version and not len(added) + len(removed))
                    or (base == 0 and np.array_equal(np.unique(added), current.keys()))
                )
                raise StaleDocumentError(
                    f"hotlist delta version {version} is not newer than {current.version}",
                    version,
                    current.version,
                    identical,
                )
            updated = current.apply_delta(version, base, added, removed)
            updated.save(self._dir / HOTLIST_FILE)
            self._hotlist = updated
        self.problems.pop(HOTLIST_FILE, None)
        log.info(
            "hotlist applied",
            extra={"version": version, "base": base, "entries": len(updated)},
        )
        return version

    def apply_trust_list(self, raw: bytes) -> dict[str, Any]:
        """Verify and store a ``trustlist`` document; returns its body. Refused, with the
        previous list kept: bad signature or kind, version not newer, or a body the
        ``trust_list_parser`` refuses."""
        return self._apply_signed(raw, KIND_TRUSTLIST, TRUSTLIST_FILE)

    def apply_application_list(self, raw: bytes) -> dict[str, Any]:
        """Verify and store an ``applist`` document; returns its body (the parsed list is
        :attr:`application_list`). Refused, with the previous list kept: bad signature or
        kind, version not newer, or an entry that breaks docs/policy.md."""
        return self._apply_signed(raw, KIND_APPLIST, APPLIST_FILE)

    def _apply_signed(self, raw: bytes, kind: str, name: str) -> dict[str, Any]:
        body = verify_document(raw, self._public_key, self._algorithm, kind)
        parsed: ApplicationList | None = None
        if kind == KIND_APPLIST:
            parsed = parse_application_list(body)
        elif self._trust_list_parser is not None:
            try:
                self._trust_list_parser(body)
            except DocumentError:
                raise
            except OneCardError as exc:
                raise DocumentError(f"trust list refused: {exc.reason}") from exc
        with self._lock:
            current = self._trustlist if kind == KIND_TRUSTLIST else self._applist_doc
            if current is not None and body["version"] <= current.version:
                identical = canonical_json(body) == canonical_json(dict(current.body))
                raise StaleDocumentError(
                    f"{kind} version {body['version']} is not newer than {current.version}",
                    body["version"],
                    current.version,
                    identical,
                )
            try:
                write_atomically(self._dir / name, bytes(raw))
            except OSError as exc:
                raise DocumentError(f"cannot store {kind}: {exc.strerror or exc}") from exc
            doc = _Signed(MappingProxyType(body), bytes(raw))
            if kind == KIND_TRUSTLIST:
                self._trustlist = doc
            else:
                self._applist_doc, self._applist = doc, parsed
        self.problems.pop(name, None)
        log.info("%s applied", kind, extra={"version": body["version"]})
        return body


# --- the download round ---------------------------------------------------------------------


class Outcome(enum.Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    """The back office has nothing newer (the same document again)."""
    REFUSED = "refused"
    """The document arrived but was refused; the previous one stays in force."""
    UNAVAILABLE = "unavailable"
    """The fetch failed (network, back office); the previous document stays in force."""


@dataclass(frozen=True)
class DocumentResult:
    outcome: Outcome
    version: int
    """The version in force after the attempt."""
    reason: str = ""
    code: str = ""
    """The error's machine code when refused or unavailable."""


@dataclass(frozen=True)
class SyncReport:
    time: float
    results: Mapping[str, DocumentResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no document was refused or unavailable."""
        return all(r.outcome in (Outcome.APPLIED, Outcome.UNCHANGED) for r in self.results.values())


class Downloader:
    """One download round of the published documents, through ``fetch(path) -> bytes``
    (path with query, e.g. ``/v1/hotlist?since=12``), raising on a failed request."""

    def __init__(self, store: DocumentStore, fetch: Callable[[str], bytes], clock: Clock) -> None:
        self.store = store
        self._fetch = fetch
        self._clock = clock
        self.last_success: dict[str, float] = {}
        """Wall time each document was last confirmed current (applied or unchanged)."""

    def run_once(self) -> SyncReport:
        """Fetch and apply the hotlist delta, trust list and application list, in that
        order; each is independent of the others' outcome."""
        versions = self.store.current_versions()
        results = {
            "hotlist": self._one(
                "hotlist",
                f"{HOTLIST_PATH}?since={versions['hotlist']}",
                self.store.apply_hotlist_delta,
            ),
            "trustlist": self._one("trustlist", TRUSTLIST_PATH, self.store.apply_trust_list),
            "applist": self._one("applist", APPLIST_PATH, self.store.apply_application_list),
        }
        return SyncReport(time=self._clock.now(), results=MappingProxyType(results))

    def staleness(self, document: str) -> float | None:
        """Seconds since ``document`` was last confirmed current; None if never (article
        22: the terminal keeps working offline, and says how old its lists are)."""
        last = self.last_success.get(document)
        return None if last is None else self._clock.now() - last

    def _one(self, name: str, path: str, apply: Callable[[bytes], object]) -> DocumentResult:
        try:
            raw = self._fetch(path)
        except Exception as exc:  # the injected client raises errors of its own kinds
            # Whatever the transport raises, the round goes on and the old document stays.
            reason = exc.reason if isinstance(exc, OneCardError) else f"{type(exc).__name__}"
            code = exc.code if isinstance(exc, OneCardError) else "fetch_failed"
            log.warning("download of %s failed: %s", name, reason)
            return DocumentResult(Outcome.UNAVAILABLE, self._version(name), reason, code)
        try:
            apply(raw)
        except StaleDocumentError as exc:
            if exc.identical:
                self.last_success[name] = self._clock.now()
                return DocumentResult(Outcome.UNCHANGED, self._version(name))
            return self._refused(name, exc)
        except OneCardError as exc:  # DocumentError, HotlistError, ... : the old one stays
            return self._refused(name, exc)
        except Exception as exc:
            # A document nobody foresaw must not end the round - nor the link that runs it:
            # the apply failed before anything was swapped in, so the old one stays.
            log.exception("applying %s failed unexpectedly", name)
            return DocumentResult(
                Outcome.REFUSED, self._version(name), f"internal: {exc!r}", "internal_error"
            )
        self.last_success[name] = self._clock.now()
        return DocumentResult(Outcome.APPLIED, self._version(name))

    def _refused(self, name: str, exc: OneCardError) -> DocumentResult:
        log.warning("download refused", extra={"document": name, "reason": exc.reason})
        return DocumentResult(Outcome.REFUSED, self._version(name), exc.reason, exc.code)

    def _version(self, name: str) -> int:
        return self.store.current_versions()[name]
