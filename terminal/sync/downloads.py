"""Verified download and apply of the documents the back office publishes (docs/sync.md,
"Published documents"): the hotlist (versioned deltas), the e-code trust list and the
application list - and, for the terminals that use them, the rail fare table, a venue's
reservations and a scenic area's passes.

:class:`DocumentStore` keeps the documents in force in one directory::

    hotlist.bin      the hotlist, binary (terminal.hotlist file format); a snapshot from the
                     back office is streamed into it (terminal.hotlist_snapshot)
    trustlist.json   the last accepted trust list, as signed by the back office
    applist.json     the last accepted application list, as signed by the back office
    fares.json, reservations.json, passes.json
                     likewise, once one was applied (terminals that use them)
    etags.json       the Downloader's ETags of the documents in force, and of a snapshot
                     being downloaded (so the first round after a restart is 304s)
    hotlist.snapshot.part
                     the bytes of a snapshot received so far, resumed with a Range

Signed documents are stored as received, so they are verified again at every start: a file
edited on the terminal's disk is caught like one edited in transit. Every apply is
all-or-nothing: verify the signature, check the kind, refuse a version that is not newer
(rollback), check the content, write atomically, then swap the document in force. Any
refusal raises a typed error (:class:`DocumentError`, :class:`HotlistError`) and leaves
the previous document in force, on disk and in memory.

:class:`Downloader` fetches the documents (:data:`DEFAULT_DOCUMENTS`, and those of
:data:`OPTIONAL_DOCUMENTS` it is told to) through an injected ``fetch(path) ->
bytes`` (the terminal's :class:`terminal.sync.client.BackOfficeClient`) and applies them;
one document failing - not fetched, refused, or failing in a way nobody foresaw - never
stops the others, and never ends the round with anything but a report. On the back office
client it asks with the ETag of the document in force (a 304 is "unchanged") and takes a
hotlist snapshot when it fell behind; a 429 ends the round and holds the next one back.
"""

from __future__ import annotations

import enum
import io
import logging
import os
import random
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Protocol

import numpy as np

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.errors import (
    ConfigError,
    OneCardError,
    SignatureFormatError,
    SyncAnswerError,
    SyncError,
    SyncRejectedError,
    SyncThrottledError,
)
from terminal.host.atomicfile import write_atomically
from terminal.host.clock import Clock
from terminal.hotlist import HotList, HotlistError
from terminal.hotlist_snapshot import SNAPSHOT_CONTENT_TYPE, install_snapshot
from terminal.policy import ApplicationList, parse_application_list
from terminal.sync.client import DocumentAnswer
from terminal.transit.fares import FareTable, parse_fare_table
from terminal.venue.passes import Passes, parse_passes
from terminal.venue.reservations import Reservations, parse_reservations
from terminal.wire.canonical import JsonError, canonical_json, parse_json
from terminal.wire.document import (
    HOTLIST_DELTA_FIELDS,
    HOTLIST_ENTRY_HEX,
    KIND_APPLIST,
    KIND_FARES,
    KIND_HOTLIST,
    KIND_PASSES,
    KIND_RESERVATIONS,
    KIND_TRUSTLIST,
    DocumentError,
    StaleDocumentError,
    verify_document,
    verify_document_digest,
)
from terminal.wire.requests import APPLIST_PATH, HOTLIST_PATH, TRUSTLIST_PATH

log = logging.getLogger(__name__)

HOTLIST_FILE = "hotlist.bin"
TRUSTLIST_FILE = "trustlist.json"
APPLIST_FILE = "applist.json"
FARES_FILE = "fares.json"
RESERVATIONS_FILE = "reservations.json"
PASSES_FILE = "passes.json"
FARES_PATH = "/v1/fares"
RESERVATIONS_PATH = "/v1/reservations"
PASSES_PATH = "/v1/passes"
ETAGS_FILE = "etags.json"
PARTIAL_SNAPSHOT_FILE = "hotlist.snapshot.part"
_MAX_ETAGS_FILE = 64 * 1024
_MAX_ETAG = 256
_CONTENT_RANGE = re.compile(r"bytes (\d{1,15})-(\d{1,15})/(\d{1,15})")


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
class SignedKind:
    """A signed document the store keeps as one file, as received: ``name`` (the
    downloader's and :meth:`DocumentStore.current_versions`'), the document's ``kind``, its
    ``file`` in the store's directory, the back office ``path`` it is fetched from, and
    ``parse``, which turns its verified body into the value in force (or refuses it with a
    :class:`DocumentError`). ``keep_body``: the verified body stays in memory too (the trust
    list is used as a body); the larger documents keep only their parsed value."""

    name: str
    kind: str
    file: str
    path: str
    parse: Callable[[Mapping[str, Any]], object] | None
    keep_body: bool = False


SIGNED_KINDS: Mapping[str, SignedKind] = MappingProxyType(
    {
        # The trust list's parser is the store's trust_list_parser (the e-code module's).
        "trustlist": SignedKind(
            "trustlist", KIND_TRUSTLIST, TRUSTLIST_FILE, TRUSTLIST_PATH, None, True
        ),
        "applist": SignedKind(
            "applist", KIND_APPLIST, APPLIST_FILE, APPLIST_PATH, parse_application_list, True
        ),
        "fares": SignedKind("fares", KIND_FARES, FARES_FILE, FARES_PATH, parse_fare_table),
        "reservations": SignedKind(
            "reservations",
            KIND_RESERVATIONS,
            RESERVATIONS_FILE,
            RESERVATIONS_PATH,
            parse_reservations,
        ),
        "passes": SignedKind("passes", KIND_PASSES, PASSES_FILE, PASSES_PATH, parse_passes),
    }
)
"""The signed documents a :class:`DocumentStore` keeps, by name (the hotlist is apart: a
binary file, changed by deltas and snapshots)."""
DEFAULT_DOCUMENTS = ("hotlist", "trustlist", "applist")
"""What a :class:`Downloader` fetches unless told otherwise: every terminal uses them."""
OPTIONAL_DOCUMENTS = ("fares", "reservations", "passes")
"""Fetched only by a terminal that uses them (a rail gate, a venue's gate)."""
DOCUMENT_NAMES = DEFAULT_DOCUMENTS + OPTIONAL_DOCUMENTS


@dataclass(frozen=True)
class _Signed:
    """A signed document in force: its version, the SHA-256 of its canonical body (to tell
    the very same document delivered again from a rollback), the body when its kind keeps
    it, and the parsed value."""

    version: int
    digest: bytes
    body: Mapping[str, Any] | None
    value: object


def _refuse_stale(spec: SignedKind, version: int, digest: bytes, current: _Signed | None) -> None:
    """Raise :class:`StaleDocumentError` for a version not newer than ``current``'s."""
    if current is not None and version <= current.version:
        raise StaleDocumentError(
            f"{spec.kind} version {version} is not newer than {current.version}",
            version,
            current.version,
            digest == current.digest,
        )


class DocumentStore:
    """The published documents in force on this terminal, in ``directory``.

    ``public_key`` (``04 || X || Y``) and ``algorithm`` are the back office's publication
    key from the credentials file. ``trust_list_parser``, when given, must accept the body
    of a trust list (raising a :class:`OneCardError` otherwise) before it is stored - the
    e-code module knows that format, this one does not.

    Besides the hotlist, the trust list and the application list, the store keeps the
    documents some terminals use (:data:`OPTIONAL_DOCUMENTS`): the rail fare table, a
    venue's reservations, a scenic area's passes - each None until one is applied.

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
        self._signed: dict[str, _Signed | None] = {
            name: self._load_signed(spec) for name, spec in SIGNED_KINDS.items()
        }

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

    def _load_signed(self, spec: SignedKind) -> _Signed | None:
        path = self._dir / spec.file
        if not path.exists():
            return None
        try:
            raw = path.read_bytes()
            return self._check(spec, raw)[0]
        except OSError as exc:
            self._refuse_stored(spec.file, DocumentError(f"cannot read: {exc.strerror or exc}"))
        except OneCardError as exc:  # DocumentError, or the trust list parser's own
            self._refuse_stored(spec.file, exc)
        return None

    def _check(
        self, spec: SignedKind, raw: bytes, current: _Signed | None = None
    ) -> tuple[_Signed, dict[str, Any]]:
        """Verify ``raw`` as a document of ``spec``, refuse it when it is not newer than
        ``current`` (before the parse: a big document delivered again costs a signature
        check, not a parse), then parse its body: what is put in force, and the body.
        Raises :class:`DocumentError` (:class:`StaleDocumentError`)."""
        body, digest = verify_document_digest(raw, self._public_key, self._algorithm, spec.kind)
        _refuse_stale(spec, body["version"], digest, current)
        parse = spec.parse if spec.parse is not None else self._trust_list_parser
        value: object = None
        if parse is not None:
            try:
                value = parse(body)
            except DocumentError:
                raise
            except OneCardError as exc:
                raise DocumentError(f"{spec.kind} refused: {exc.reason}") from exc
        kept = MappingProxyType(body) if spec.keep_body else None
        return _Signed(body["version"], digest, kept, value), body

    # --- in force -------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def hotlist(self) -> HotList:
        """The hotlist in force (empty, version 0, before the first download)."""
        return self._hotlist

    def _value(self, name: str) -> Any:
        doc = self._signed[name]
        return None if doc is None else doc.value

    @property
    def application_list(self) -> ApplicationList | None:
        """The application list in force, or None before the first download."""
        return self._value("applist")  # type: ignore[no-any-return]

    @property
    def trust_list(self) -> Mapping[str, Any] | None:
        """The body of the trust list in force, or None before the first download."""
        doc = self._signed["trustlist"]
        return None if doc is None else doc.body

    @property
    def fare_table(self) -> FareTable | None:
        """The rail fare table in force, or None (none applied: a terminal that takes no
        rail fares has none)."""
        return self._value("fares")  # type: ignore[no-any-return]

    @property
    def reservations(self) -> Reservations | None:
        """The venue reservations in force, or None (none applied)."""
        return self._value("reservations")  # type: ignore[no-any-return]

    @property
    def passes(self) -> Passes | None:
        """The scenic-area passes in force, or None (none applied)."""
        return self._value("passes")  # type: ignore[no-any-return]

    def current_versions(self) -> dict[str, int]:
        """Version of each document in force: the hotlist, trust list and application list
        always (0 for one not yet downloaded), the optional documents when one is."""
        versions = {"hotlist": self._hotlist.version}
        for name in SIGNED_KINDS:
            doc = self._signed[name]
            if doc is not None or name in DEFAULT_DOCUMENTS:
                versions[name] = 0 if doc is None else doc.version
        return versions

    def version(self, name: str) -> int:
        """The version of document ``name`` in force; 0 for none."""
        if name == "hotlist":
            return self._hotlist.version
        doc = self._signed.get(name)
        return 0 if doc is None else doc.version

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

    def apply_hotlist_snapshot(self, stream: BinaryIO) -> int:
        """Apply a hotlist snapshot read from ``stream`` (:mod:`terminal.hotlist_snapshot`:
        streamed to a temporary file, checked, renamed over ``hotlist.bin``); returns the
        new version. Refused, with the previous list kept on disk and in memory: a bad
        snapshot (:class:`SnapshotError`), one not newer (:class:`StaleDocumentError`), or
        the connection failing under it (the transport's error)."""

        def swap_in(mapped: HotList) -> None:
            # The new list is in place and checked: it serves lookups mapped while it is
            # read, and the old one goes now - both at once would be 160 MB at 10 million.
            self._hotlist = mapped

        with self._lock:
            version = self._hotlist.version
            try:
                updated = install_snapshot(
                    stream,
                    self._public_key,
                    self._algorithm,
                    self._dir / HOTLIST_FILE,
                    version,
                    on_verified=swap_in,
                )
            except HotlistError as exc:
                if self._hotlist.version != version:
                    # In place and checked, but not read into memory: the mapped list
                    # stays in force (it is the right one) and the operator is told.
                    self.problems[HOTLIST_FILE] = exc.reason
                    log.error("hotlist in force mapped, not loaded: %s", exc.reason)
                    return self._hotlist.version
                raise
            self._hotlist = updated
        self.problems.pop(HOTLIST_FILE, None)
        log.info(
            "hotlist snapshot applied",
            extra={"version": updated.version, "entries": len(updated)},
        )
        return updated.version

    def apply_trust_list(self, raw: bytes) -> dict[str, Any]:
        """Verify and store a ``trustlist`` document; returns its body. Refused, with the
        previous list kept: bad signature or kind, version not newer, or a body the
        ``trust_list_parser`` refuses."""
        return self.apply_signed("trustlist", raw)

    def apply_application_list(self, raw: bytes) -> dict[str, Any]:
        """Verify and store an ``applist`` document; returns its body (the parsed list is
        :attr:`application_list`). Refused, with the previous list kept: bad signature or
        kind, version not newer, or an entry that breaks docs/policy.md."""
        return self.apply_signed("applist", raw)

    def apply_fares(self, raw: bytes) -> dict[str, Any]:
        """Verify and store a ``fares`` document; returns its body (the table is
        :attr:`fare_table`). Refused, with the previous table kept: bad signature or kind,
        version not newer (:class:`StaleDocumentError`), or a table
        :func:`~terminal.transit.fares.parse_fare_table` refuses (``FaresError``)."""
        return self.apply_signed("fares", raw)

    def apply_reservations(self, raw: bytes) -> dict[str, Any]:
        """Verify and store a ``reservations`` document (:attr:`reservations`); refused as
        :meth:`apply_fares` is, a bad body with ``ReservationsError``."""
        return self.apply_signed("reservations", raw)

    def apply_passes(self, raw: bytes) -> dict[str, Any]:
        """Verify and store a ``passes`` document (:attr:`passes`); refused as
        :meth:`apply_fares` is, a bad body with ``PassesError``."""
        return self.apply_signed("passes", raw)

    def apply_signed(self, name: str, raw: bytes) -> dict[str, Any]:
        """Verify, parse and store the signed document ``name`` (:data:`SIGNED_KINDS`), then
        put it in force; returns its body. All or nothing: the signature, the kind, a
        version newer than the one in force (else :class:`StaleDocumentError`, ``identical``
        when it is the very document in force), the content (the kind's parser), the
        atomic write - any refusal leaves the previous document in force, on disk and in
        memory."""
        spec = SIGNED_KINDS.get(name)
        if spec is None:
            raise ConfigError(f"unknown document {name!r}")
        checked, body = self._check(spec, raw, self._signed[name])
        with self._lock:
            # Again under the lock: another apply may have put a newer one in force since.
            _refuse_stale(spec, checked.version, checked.digest, self._signed[name])
            try:
                write_atomically(self._dir / spec.file, bytes(raw))
            except OSError as exc:
                raise DocumentError(f"cannot store {spec.kind}: {exc.strerror or exc}") from exc
            self._signed[name] = checked
        self.problems.pop(spec.file, None)
        log.info("%s applied", spec.kind, extra={"version": checked.version})
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


class _FetchFailed(Exception):
    """A plain ``fetch`` failed (not a :class:`SyncError`): unavailable, never refused."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class DocumentClient(Protocol):
    """What the downloader needs of the back office client
    (:class:`terminal.sync.client.BackOfficeClient`): conditional, streamable ``GET``."""

    def get_document(
        self,
        path: str,
        etag: str | None = None,
        streams: Mapping[str, Callable[[BinaryIO], Any]] | None = None,
        *,
        range_from: int | None = None,
        if_range: str | None = None,
    ) -> DocumentAnswer[Any]: ...


class _Resumed(io.RawIOBase):
    """A snapshot as one stream: the bytes already on disk from earlier tries (``held``),
    then the answer's, each of which is appended to the partial file (``keep``) as it is
    read - so a connection cut anywhere leaves every byte received for the next try."""

    def __init__(self, held: BinaryIO | None, answer: BinaryIO, keep: BinaryIO) -> None:
        super().__init__()
        self._held = held
        self._answer = answer
        self._keep = keep

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._held is not None:
            data = self._held.read(size)
            if data:
                return data
            self._held = None
        data = self._answer.read(size)
        if data:
            self._keep.write(data)
            self._keep.flush()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


_SKIPPED = "skipped: the back office asked to come back later"


class Downloader:
    """One download round of the published documents.

    ``fetch`` is the terminal's :class:`~terminal.sync.client.BackOfficeClient` (or any
    :class:`DocumentClient`): each document is asked for with the ``ETag`` of the one in
    force (``304`` is "unchanged", nothing read or verified), and a hotlist that fell behind
    the kept deltas comes as a snapshot, applied in a stream. A plain ``fetch(path) ->
    bytes`` (path with query, raising on a failed request) also works: no ETags, no
    snapshots - what an older back office gives anyway, since it sends no ``ETag`` and
    ignores the ``Accept`` that asks for a snapshot.

    A back office that says "not now" (``429``/``503`` with ``Retry-After``) ends the round
    (asking for the next document would only be refused too) and :meth:`next_delay` holds
    the next round back that long, plus a jitter of up to one interval.

    ``documents``: the names of the documents to fetch (:data:`DOCUMENT_NAMES`), fetched in
    that table's order; by default :data:`DEFAULT_DOCUMENTS` - a rail gate adds ``fares``,
    a venue's gate ``reservations`` or ``passes``. An unknown name is a
    :class:`ConfigError`.
    """

    def __init__(
        self,
        store: DocumentStore,
        fetch: Callable[[str], bytes] | DocumentClient,
        clock: Clock,
        rng: random.Random | None = None,
        documents: Iterable[str] = DEFAULT_DOCUMENTS,
    ) -> None:
        wanted = set(documents)
        unknown = wanted - set(DOCUMENT_NAMES)
        if unknown:
            raise ConfigError(f"unknown documents to download: {sorted(unknown)!r}")
        self.documents = tuple(name for name in DOCUMENT_NAMES if name in wanted)
        """The documents this downloader fetches, in the order it fetches them."""
        self.store = store
        self._client: DocumentClient | None = fetch if hasattr(fetch, "get_document") else None
        self._fetch = None if self._client is not None else fetch
        self._clock = clock
        self._rng = rng or random.Random()
        self._etags: dict[str, tuple[str, int]] = {}
        """Per document: the ETag of the answer that gave the version in force, and it."""
        self._partial_etag: str | None = None
        """The ETag of the snapshot whose first bytes are in the partial file."""
        self._load_etags()
        self._round_throttled = False
        self._not_before = 0.0
        self.last_success: dict[str, float] = {}
        """Wall time each document was last confirmed current (applied or unchanged)."""

    def run_once(self) -> SyncReport:
        """Fetch and apply the hotlist, trust list and application list, in that order,
        then the optional documents asked for (:attr:`documents`); each is independent of
        the others' outcome, except that a back office asking to be left alone for a while
        is left alone for the rest of the round."""
        self._round_throttled = False
        results: dict[str, DocumentResult] = {}
        steps: list[tuple[str, Callable[[], bool]]] = [
            (name, self._hotlist if name == "hotlist" else partial(self._signed, name))
            for name in self.documents
        ]
        throttled = self._clock.now() < self._not_before
        for name, step in steps:
            if throttled:
                version = self._version(name)
                results[name] = DocumentResult(
                    Outcome.UNAVAILABLE, version, _SKIPPED, SyncThrottledError.code
                )
                continue
            results[name] = self._one(name, step)
            throttled = self._round_throttled or results[name].code == SyncThrottledError.code
        return SyncReport(time=self._clock.now(), results=MappingProxyType(results))

    def next_delay(self, interval: float) -> float:
        """Seconds until the next round: ``interval``, or longer after a ``Retry-After``
        (that long plus a jitter of up to as long again, at least a second)."""
        wait = self._not_before - self._clock.now()
        return max(interval, wait)

    def staleness(self, document: str) -> float | None:
        """Seconds since ``document`` was last confirmed current; None if never (article
        22: the terminal keeps working offline, and says how old its lists are)."""
        last = self.last_success.get(document)
        return None if last is None else self._clock.now() - last

    # --- one document ---------------------------------------------------------------------

    def _etag(self, name: str) -> str | None:
        held = self._etags.get(name)
        # Only an ETag for the version still in force: a list refused at start-up, or
        # replaced since, must be fetched whole again.
        if held is None or held[1] != self._version(name):
            return None
        return held[0]

    def _remember(self, name: str, answer: DocumentAnswer[Any]) -> None:
        before = self._etags.get(name)
        if answer.etag:
            self._etags[name] = (answer.etag, self._version(name))
        else:
            self._etags.pop(name, None)
        if self._etags.get(name) != before:
            self._save_etags()

    # --- ETags on disk (the first round after a restart is 304s) ----------------------------

    def _load_etags(self) -> None:
        """Read ``etags.json``; one that does not read is ignored (its only cost: the
        documents are downloaded once more), and so is any ETag of a version not in force -
        :meth:`_etag` sends one only for the version it was given with."""
        path = self.store.directory / ETAGS_FILE
        try:
            with open(path, "rb") as file:
                raw = file.read(_MAX_ETAGS_FILE + 1)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("ETags not read: %s", exc.strerror or exc)
            return
        try:
            if len(raw) > _MAX_ETAGS_FILE:
                raise JsonError("too long")
            body = parse_json(raw)
        except JsonError as exc:
            log.warning("ETags file ignored: %s", exc.reason)
            return
        if not isinstance(body, dict):
            return
        etags = body.get("etags")
        for name, held in etags.items() if isinstance(etags, dict) else ():
            if name in DOCUMENT_NAMES and _is_held_etag(held):
                self._etags[name] = (held[0], held[1])
        partial = body.get("partial")
        if _is_etag(partial) and (self.store.directory / PARTIAL_SNAPSHOT_FILE).exists():
            self._partial_etag = partial

    def _save_etags(self) -> None:
        body = {
            "etags": {name: [etag, version] for name, (etag, version) in self._etags.items()},
            "partial": self._partial_etag,
        }
        try:
            write_atomically(self.store.directory / ETAGS_FILE, canonical_json(body))
        except OSError as exc:  # an ETag not kept costs one download after a restart
            log.warning("ETags not saved: %s", exc.strerror or exc)

    def _get(
        self,
        name: str,
        path: str,
        streams: Mapping[str, Any] | None,
        resume: tuple[int, str] | None = None,
    ) -> DocumentAnswer[Any]:
        if self._client is not None:
            if resume is None:
                return self._client.get_document(path, self._etag(name), streams)
            offset, etag = resume
            return self._client.get_document(
                path, self._etag(name), streams, range_from=offset, if_range=etag
            )
        assert self._fetch is not None
        try:
            return DocumentAnswer(200, self._fetch(path))
        except SyncError:
            raise
        except Exception as exc:  # an injected fetch raises errors of its own kinds
            raise _FetchFailed(exc) from exc

    # --- the hotlist snapshot, resumed across rounds and restarts ------------------------------

    @property
    def _partial_path(self) -> Path:
        return self.store.directory / PARTIAL_SNAPSHOT_FILE

    def _resume_point(self) -> tuple[int, str] | None:
        """``(bytes held, ETag)`` of a snapshot download cut earlier, if any."""
        if self._partial_etag is None:
            return None
        try:
            size = self._partial_path.stat().st_size
        except OSError:
            return None
        return (size, self._partial_etag) if size else None

    def _drop_partial(self) -> None:
        self._partial_path.unlink(missing_ok=True)
        if self._partial_etag is not None:
            self._partial_etag = None
            self._save_etags()

    def _receive_snapshot(self, stream: BinaryIO) -> int:
        """Apply a snapshot answer: a ``206`` continues the partial file, a ``200`` starts
        it afresh. Every byte received is kept in the partial file, so a connection cut is
        resumed from there; the whole is checked as any snapshot (the signed header, the
        signed SHA-256 of the payload), and anything refused drops the partial file too."""
        status = getattr(stream, "status", 200)
        held: BinaryIO | None = None
        try:
            if status == 206:
                offset = self._partial_path.stat().st_size
                match = _CONTENT_RANGE.fullmatch(getattr(stream, "content_range", None) or "")
                if match is None or int(match.group(1)) != offset:
                    raise SyncAnswerError(
                        f"a snapshot range {getattr(stream, 'content_range', None)!r} that "
                        f"does not continue the {offset} bytes held"
                    )
                held = open(self._partial_path, "rb")  # noqa: SIM115 - closed below
            else:
                self._partial_path.unlink(missing_ok=True)
                etag = getattr(stream, "etag", None)
                self._partial_etag = etag if _is_etag(etag) else None
                self._save_etags()  # before any byte: the partial file is this snapshot's
            fd = os.open(self._partial_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)  # private whatever the umask, like every document file
        except OSError as exc:
            if held is not None:
                held.close()
            self._drop_partial()
            reason = f"cannot keep the snapshot download: {exc.strerror or exc}"
            raise HotlistError(reason) from exc
        except SyncAnswerError:
            self._drop_partial()
            raise
        try:
            with os.fdopen(fd, "ab") as keep:
                version = self.store.apply_hotlist_snapshot(_Resumed(held, stream, keep))
        except SyncError:
            raise  # cut mid-answer: what came is kept, the next round resumes from it
        except BaseException:
            self._drop_partial()  # refused: the next download starts from the first byte
            raise
        finally:
            if held is not None:
                held.close()
        self._drop_partial()
        return version

    def _hotlist(self) -> bool:
        """Returns whether anything was applied (False: 304, unchanged)."""
        streams = {SNAPSHOT_CONTENT_TYPE: self._receive_snapshot}
        applied = False
        # At most twice: a snapshot (version S, within the kept deltas), then the delta
        # from S to the latest in the same round.
        for _ in range(2):
            since = self.store.version("hotlist")
            path = f"{HOTLIST_PATH}?since={since}"
            try:
                answer = self._get("hotlist", path, streams, self._resume_point())
            except SyncRejectedError as exc:
                if exc.status != 416:
                    raise
                # The bytes held are not a beginning of the snapshot served now.
                self._drop_partial()
                answer = self._get("hotlist", path, streams)
            except SyncThrottledError as exc:
                if not applied:
                    raise
                # The snapshot is in force; the delta after it waits for the next round,
                # and so does everything else.
                self._throttled("hotlist", exc)
                self._round_throttled = True
                return applied
            if answer.status == 304:
                return applied
            if answer.content_type != SNAPSHOT_CONTENT_TYPE:
                self._drop_partial()  # the back office no longer sends a snapshot
                self.store.apply_hotlist_delta(answer.body)
                self._remember("hotlist", answer)
                return True
            self._remember("hotlist", answer)
            applied = True
        return applied

    def _signed(self, name: str) -> bool:
        answer = self._get(name, SIGNED_KINDS[name].path, None)
        if answer.status == 304:
            return False
        try:
            self._apply(name, answer.body)
        except StaleDocumentError as exc:
            if exc.identical:
                self._remember(name, answer)
            raise
        self._remember(name, answer)
        return True

    def _apply(self, name: str, raw: bytes) -> None:
        # Through the store's named methods: a store that watches one kind (a test's, an
        # operator's) overrides that method.
        store = self.store
        {
            "trustlist": store.apply_trust_list,
            "applist": store.apply_application_list,
            "fares": store.apply_fares,
            "reservations": store.apply_reservations,
            "passes": store.apply_passes,
        }[name](raw)

    def _one(self, name: str, step: Callable[[], bool]) -> DocumentResult:
        try:
            applied = step()
        except SyncThrottledError as exc:
            self._throttled(name, exc)
            return DocumentResult(Outcome.UNAVAILABLE, self._version(name), exc.reason, exc.code)
        except SyncError as exc:
            log.warning("download of %s failed: %s", name, exc.reason)
            return DocumentResult(Outcome.UNAVAILABLE, self._version(name), exc.reason, exc.code)
        except StaleDocumentError as exc:
            if exc.identical:
                self.last_success[name] = self._clock.now()
                return DocumentResult(Outcome.UNCHANGED, self._version(name))
            return self._refused(name, exc)
        except OneCardError as exc:  # DocumentError, HotlistError, ... : the old one stays
            return self._refused(name, exc)
        except _FetchFailed as failed:
            # Whatever the transport raises, the round goes on and the old document stays.
            error = failed.error
            reason = error.reason if isinstance(error, OneCardError) else type(error).__name__
            code = error.code if isinstance(error, OneCardError) else "fetch_failed"
            log.warning("download of %s failed: %s", name, reason)
            return DocumentResult(Outcome.UNAVAILABLE, self._version(name), reason, code)
        except Exception as exc:
            # A document nobody foresaw must not end the round - nor the link that runs it:
            # the apply failed before anything was swapped in, so the old one stays.
            log.exception("applying %s failed unexpectedly", name)
            return DocumentResult(
                Outcome.REFUSED, self._version(name), f"internal: {exc!r}", "internal_error"
            )
        self.last_success[name] = self._clock.now()
        outcome = Outcome.APPLIED if applied else Outcome.UNCHANGED
        return DocumentResult(outcome, self._version(name))

    def _throttled(self, name: str, exc: SyncThrottledError) -> None:
        log.warning("download of %s: back office busy: %s", name, exc.reason)
        if exc.retry_after is not None:
            # Honour it whole, plus a jitter so that a fleet refused together spreads out.
            jitter = self._rng.uniform(0.0, max(1.0, exc.retry_after))
            self._not_before = self._clock.now() + exc.retry_after + jitter

    def _refused(self, name: str, exc: OneCardError) -> DocumentResult:
        self._etags.pop(name, None)
        log.warning("download refused", extra={"document": name, "reason": exc.reason})
        return DocumentResult(Outcome.REFUSED, self._version(name), exc.reason, exc.code)

    def _version(self, name: str) -> int:
        return self.store.version(name)


def _is_etag(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_ETAG and value.isprintable()


def _is_held_etag(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and _is_etag(value[0])
        and type(value[1]) is int
        and value[1] >= 0
    )
