"""The published documents as the back office serves them: rendered and signed once per
version, held in memory, answered ``304 Not Modified`` when the terminal already has them
(docs/sync.md, "Published documents").

A poll costs one small version query (:meth:`Storage.document_versions`; with ``ttl`` > 0
at most one per ``ttl`` seconds per process) and, when the terminal's ``If-None-Match``
names the version in force, nothing else: no document read, no JSON, no signature. A
version is rendered the first time a terminal asks for it and kept:

* the stored documents - trust list, application list, fare table, reservations, passes:
  the stored bytes (signed at publication);
* hotlist deltas: per ``(since, version)``, signed once however many terminals ask;
* the hotlist snapshot (:mod:`terminal.hotlist_snapshot`) for a terminal that fell behind
  the kept deltas and says it takes one: built from a scan of the list, compressed and
  signed, and kept while its version is still within the kept deltas (the terminal fetches
  the rest as a delta), so a busy hotlist does not rebuild 10 million entries per change;
* the JSON full list, for a terminal that takes no snapshot (older terminals).

ETags: a stored document's is a digest of its bytes; any hotlist answer's names the list
version a terminal holds once it has applied it (``"hotlist-<key id>-<version>"``), so a
terminal at the current version is answered 304 whatever ``since`` it sends.

Rendered answers share a byte budget (least recently used dropped first); the snapshot is
held apart from it (one per process). Several worker processes each hold their own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backoffice import publish
from backoffice.answers import Response, error_response
from backoffice.errors import RangeNotSatisfiableError
from backoffice.loopsafe import check_storage
from backoffice.storage import DocumentVersions, Storage
from terminal.hotlist_snapshot import (
    DEFAULT_BLOCK,
    SNAPSHOT_CONTENT_TYPE,
    compress_payload,
    frame,
    snapshot_header_body,
)
from terminal.wire.canonical import canonical_json

log = logging.getLogger(__name__)

JSON_TYPE = "application/json; charset=utf-8"
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
"""Rendered deltas and full lists held at once (a 10-million JSON full list is ~190 MB)."""


@dataclass(frozen=True)
class Rendered:
    """A document answer ready to send: its bytes, ETag and content type."""

    body: bytes
    etag: str
    content_type: str = JSON_TYPE
    version: int = 0


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (RFC 9110: a list of entity tags,
    weak comparison, or ``*``)."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == bare:
            return True
    return False


def parse_byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range a ``Range`` header asks of a body of ``size`` bytes, as
    ``(first, last)`` inclusive and within the body; None for a header that is absent,
    malformed, of another unit or of several ranges - RFC 9110 lets a server ignore those
    and send the whole body. Raises :class:`RangeNotSatisfiableError` for a range that starts
    at or after the end."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not all(t.isascii() and t.isdigit() and len(t) <= 18 for t in
                           [t for t in (first_text, last_text) if t]):  # fmt: skip
        return None
    if not first_text:  # "-N": the last N bytes
        if not last_text or int(last_text) == 0:
            raise RangeNotSatisfiableError(f"the snapshot has {size} bytes", size)
        return max(0, size - int(last_text)), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiableError(f"the snapshot has {size} bytes", size)
    return first, min(last, size - 1)


def ranged_response(item: Rendered, range_header: str | None, if_range: str | None) -> Response:
    """The answer to a ``GET`` of ``item`` (the hotlist snapshot) with its ``Range`` and
    ``If-Range``: ``206 Partial Content`` with the range asked for, when ``If-Range`` is
    absent or is ``item``'s ETag (strong comparison, RFC 9110 13.1.5: the bytes already
    held are of this very snapshot); else ``200`` with the whole body - a terminal whose
    partial download is of a snapshot replaced since starts again. ``416`` for a range
    beyond the end."""
    headers = {"ETag": item.etag, "Content-Type": item.content_type, "Accept-Ranges": "bytes"}
    if range_header is not None and (if_range is None or if_range.strip() == item.etag):
        try:
            span = parse_byte_range(range_header, len(item.body))
        except RangeNotSatisfiableError as refused:
            answer = error_response(refused)
            extra = {"Content-Range": f"bytes */{refused.size}", "ETag": item.etag}
            return Response(answer.status, answer.body, headers=extra)
        if span is not None:
            first, last = span
            headers["Content-Range"] = f"bytes {first}-{last}/{len(item.body)}"
            # A view, not a copy: a snapshot is tens of megabytes, held once per process.
            return Response(206, {}, headers=headers, raw=memoryview(item.body)[first : last + 1])
    return Response(200, {}, headers=headers, raw=item.body)


def _digest_etag(kind: str, body: bytes) -> str:
    return f'"{kind}-{hashlib.sha256(body).hexdigest()[:32]}"'


class _Lru:
    """Rendered answers by key, within a byte budget; thread-safe."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._items: OrderedDict[tuple[Any, ...], Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Rendered | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[Any, ...], item: Rendered) -> None:
        size = len(item.body)
        if size > self._budget:
            return  # served, but not kept: it would push out everything else
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._used -= len(old.body)
            self._items[key] = item
            self._used += size
            while self._used > self._budget:
                _, dropped = self._items.popitem(last=False)
                self._used -= len(dropped.body)


class DocumentCache:
    """The documents of one back office process (module doc). ``ttl``: seconds a version
    check is reused (0: checked at every poll); ``monotonic`` is injected for tests."""

    def __init__(
        self,
        storage: Storage,
        key: publish.PublicationKey,
        *,
        ttl: float = 0.0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        snapshot_block: int = DEFAULT_BLOCK,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0:
            raise ValueError("ttl must not be negative")
        self._storage = storage
        self._key = key
        self._key_id = key.key_id  # an SM3 digest each time it is asked: asked once here
        self._ttl = ttl
        self._monotonic = monotonic
        self._block = snapshot_block
        self._versions: DocumentVersions | None = None
        self._checked = 0.0
        self._versions_lock = threading.Lock()
        self._rendered = _Lru(cache_bytes)
        self._snapshot: Rendered | None = None
        # One build at a time: terminals that fell behind together wait for the one build
        # rather than each scanning the list.
        self._snapshot_lock = threading.Lock()
        self.snapshot_builds = 0

    # --- versions ---------------------------------------------------------------------------

    def versions(self) -> DocumentVersions:
        """The versions in force (reused for ``ttl`` seconds)."""
        now = self._monotonic()
        with self._versions_lock:
            if self._versions is not None and now - self._checked < self._ttl:
                return self._versions
        check_storage("document versions")
        versions = self._storage.document_versions()
        with self._versions_lock:
            self._versions, self._checked = versions, now
        return versions

    def invalidate(self) -> None:
        """Forget the version check (this process just published)."""
        with self._versions_lock:
            self._versions = None

    # --- trust list, application list -------------------------------------------------------

    def stored_etag(self, kind: str) -> tuple[int, str | None] | None:
        """``(version, ETag if rendered already)`` of the stored document of ``kind``, or
        None when none is published."""
        version = self.versions().documents.get(kind)
        if version is None:
            return None
        item = self._rendered.get(("stored", kind, version))
        return version, None if item is None else item.etag

    def stored(self, kind: str, version: int) -> Rendered | None:
        """The stored document of ``kind`` at ``version`` as served (read once)."""
        item = self._rendered.get(("stored", kind, version))
        if item is not None:
            return item
        check_storage("stored document")
        text = self._storage.document_text(kind)
        if text is None:
            return None
        body = text.encode("utf-8", "surrogatepass")
        item = Rendered(body, _digest_etag(kind, body), version=version)
        # Kept under the version checked: a newer publication read here is replaced at the
        # next check, which reports its version.
        self._rendered.put(("stored", kind, version), item)
        return item

    # --- hotlist ----------------------------------------------------------------------------

    def hotlist_etag(self, version: int) -> str:
        return f'"hotlist-{self._key_id}-{version}"'

    def hotlist(self, since: int, snapshot_ok: bool) -> Rendered:
        """The answer to ``GET /v1/hotlist?since=V``: a delta when the kept changes reach
        back to ``since``, else a snapshot (``snapshot_ok``) or the JSON full list."""
        versions = self.versions()
        version, floor = versions.hotlist, versions.hotlist_floor
        if publish.can_delta(since, version, floor):
            item = self._rendered.get(("delta", since, version))
            if item is not None:
                return item
        elif snapshot_ok and version > 0:
            # (At version 0 the list was never written: the JSON answer says so.)
            return self.snapshot(floor)
        else:
            item = self._rendered.get(("full", version))
            if item is not None:
                return item
        check_storage("hotlist delta")
        state = self._storage.hotlist_snapshot(since)
        document = publish.hotlist_document(since, state)
        signed = canonical_json(publish.sign_document(document, self._key))
        item = Rendered(signed, self.hotlist_etag(state.version), version=state.version)
        if document["base"]:
            self._rendered.put(("delta", since, state.version), item)
        else:
            self._rendered.put(("full", state.version), item)
        return item

    def snapshot(self, floor: int) -> Rendered:
        """The signed snapshot: the one held while its version is at least ``floor`` (a
        terminal gets the rest as a delta), else a new one."""
        held = self._snapshot  # read without the lock: a build holds it for seconds
        if held is not None and held.version >= max(floor, 1):
            return held
        check_storage("hotlist snapshot")
        with self._snapshot_lock:
            held = self._snapshot
            if held is not None and held.version >= max(floor, 1):
                return held
            started = time.perf_counter()
            built = self._build_snapshot()
            self._snapshot = built
            self.snapshot_builds += 1
        log.info(
            "hotlist snapshot built",
            extra={
                "version": built.version,
                "bytes": len(built.body),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return built

    def _build_snapshot(self) -> Rendered:
        parts: list[np.ndarray] = []

        def consume(entries: list[str]) -> None:
            raw = bytes.fromhex("".join(entries))
            parts.append(np.frombuffer(raw, dtype=">u8").astype("<u8"))

        version = self._storage.hotlist_scan(consume)
        keys = np.concatenate(parts) if parts else np.empty(0, dtype="<u8")
        parts.clear()  # the chunks go before the payload is made
        if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            # Entries are fixed-width lowercase hex, so text order is numeric order - unless
            # the database collates text otherwise (a PostgreSQL locale): sort to be sure.
            keys.sort()
        payload = compress_payload(keys, self._block)
        header = snapshot_header_body(version, len(keys), self._block, payload)
        signed = canonical_json(publish.sign_document(header, self._key))
        body = frame(signed) + payload
        return Rendered(body, self.hotlist_etag(version), SNAPSHOT_CONTENT_TYPE, version)
