"""The hotlist snapshot: the whole list as one signed, compressed binary stream
(docs/sync.md, "Hotlist snapshot"), for a terminal that fell behind the deltas the back
office keeps - one download of about 5.4 bytes an entry instead of a JSON full list of
about 20, applied in a stream within the terminal's memory budget.

Wire format (all integers little-endian)::

    offset   size
         0      8  magic b"OCHLSNAP"
         8      4  header length H (at most 64 KiB)
        12      H  header: a signed document (canonical JSON), kind "hotlist-snapshot"
      12+H      N  payload: one zlib (deflate) stream, N = the header's payload_bytes

The payload decodes to the entries of the terminal's own hotlist file
(:mod:`terminal.hotlist`: sorted, strictly increasing uint64) in blocks of ``block``
entries: each block holds the differences of its entries (the first one from the last
entry of the block before, or from 0), as little-endian uint64, stored byte plane by byte
plane (every entry's lowest byte, then every entry's second byte...). Sorted random keys
differ in their low bytes only, so the planes of high bytes are runs of zeros that deflate
removes; the list itself is the terminal's format, the filter is only the transport.

The header's signature covers ``payload_sha256``, so nothing of the payload is trusted
until the whole of it has been hashed; until then it only ever reaches a temporary file.
:func:`install_snapshot` writes that file in the terminal's hotlist format (header,
checksum, entries), fsyncs it, loads it back through :meth:`HotList.load` (which checks
it once more) and only then renames it over the list in force. Any fault - a bad magic or
signature, a truncated or padded stream, a checksum, an entry out of order - is a
:class:`SnapshotError` and leaves the previous list, on disk and in memory, untouched.

Memory: one block (512 KiB at the default block) and the decompressor's window, whatever
the size of the list; the list it produces is then read like any saved one.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from terminal.crypto.signing import Algorithm
from terminal.host.atomicfile import fsync_directory
from terminal.hotlist import (
    _HEADER,
    FORMAT_VERSION,
    HEADER_LENGTH,
    KEY_BYTES,
    MAGIC,
    MAX_VERSION,
    HotList,
    HotlistError,
    verify_file,
)
from terminal.wire.document import DocumentError, StaleDocumentError, verify_document

SNAPSHOT_MAGIC = b"OCHLSNAP"
SNAPSHOT_CONTENT_TYPE = "application/vnd.onecard.hotlist-snapshot"
KIND_HOTLIST_SNAPSHOT = "hotlist-snapshot"
COMPRESSION = "delta-shuffle-deflate"
SNAPSHOT_FIELDS = frozenset(
    {"kind", "version", "entries", "block", "compression", "payload_bytes", "payload_sha256"}
)
DEFAULT_BLOCK = 65536
MAX_BLOCK = 1 << 20
MAX_HEADER_BYTES = 64 * 1024
MAX_ENTRIES = 100_000_000
"""Ten times a provincial list: more is not a hotlist this terminal can hold."""
MAX_PAYLOAD_BYTES = MAX_ENTRIES * KEY_BYTES + (1 << 20)
"""Deflate never grows data by more than a few bytes per 16 KiB block."""
_PREFIX = struct.Struct("<8sI")
_READ = 64 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_U64 = np.dtype("<u8")


class SnapshotError(HotlistError):
    """A hotlist snapshot that cannot be applied: not a snapshot, a header that does not
    verify, a truncated, padded or corrupt payload, entries out of order."""

    code = "hotlist_snapshot_error"


@dataclass(frozen=True)
class SnapshotHeader:
    """The signed header of a snapshot (its fields are docs/sync.md's)."""

    version: int
    entries: int
    block: int
    payload_bytes: int
    payload_sha256: str


# --- the back office's side: encoding ---------------------------------------------------------


def encode_blocks(keys: np.ndarray, block: int = DEFAULT_BLOCK) -> Iterator[bytes]:
    """The uncompressed payload of ``keys`` (sorted, strictly increasing uint64), block by
    block (see the module doc)."""
    if not 1 <= block <= MAX_BLOCK:
        raise ValueError(f"block must be 1..{MAX_BLOCK}")
    previous = np.zeros(1, dtype=_U64)
    for start in range(0, len(keys), block):
        chunk = np.asarray(keys[start : start + block], dtype=_U64)
        deltas = np.diff(chunk, prepend=previous)
        previous = chunk[-1:]
        yield deltas.view(np.uint8).reshape(-1, KEY_BYTES).T.tobytes()


def compress_payload(keys: np.ndarray, block: int = DEFAULT_BLOCK, level: int = 6) -> bytes:
    """The compressed payload of ``keys``: made once per list version by the back office."""
    compressor = zlib.compressobj(level)
    parts = [compressor.compress(raw) for raw in encode_blocks(keys, block)]
    parts.append(compressor.flush())
    return b"".join(parts)


def snapshot_header_body(version: int, entries: int, block: int, payload: bytes) -> dict[str, Any]:
    """The unsigned header document of a snapshot of ``payload``."""
    return {
        "kind": KIND_HOTLIST_SNAPSHOT,
        "version": version,
        "entries": entries,
        "block": block,
        "compression": COMPRESSION,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }


def frame(signed_header: bytes) -> bytes:
    """The bytes that precede the payload: magic, header length, the signed header."""
    if len(signed_header) > MAX_HEADER_BYTES:
        raise ValueError("snapshot header too long")
    return _PREFIX.pack(SNAPSHOT_MAGIC, len(signed_header)) + signed_header


# --- the terminal's side: reading ---------------------------------------------------------------


def _read_exactly(stream: BinaryIO, count: int, what: str) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = stream.read(min(_READ, count - len(data)))
        if not chunk:
            raise SnapshotError(f"snapshot truncated in the {what} ({len(data)} of {count} bytes)")
        data += chunk
    return bytes(data)


def _header_fields(body: Mapping[str, Any]) -> SnapshotHeader:
    unknown = body.keys() - SNAPSHOT_FIELDS
    missing = SNAPSHOT_FIELDS - body.keys()
    if unknown or missing:
        raise SnapshotError(
            f"snapshot header fields: unknown {sorted(unknown)!r}, missing {sorted(missing)!r}"
        )

    def number(name: str, low: int, high: int) -> int:
        value = body[name]
        if type(value) is not int or not low <= value <= high:
            raise SnapshotError(f"snapshot {name} must be an integer in [{low}, {high}]")
        return value

    if body["compression"] != COMPRESSION:
        raise SnapshotError(f"unknown snapshot compression {body['compression']!r}")
    digest = body["payload_sha256"]
    if type(digest) is not str or not _HEX64.fullmatch(digest):
        raise SnapshotError("snapshot payload_sha256 must be 64 lowercase hex digits")
    return SnapshotHeader(
        version=number("version", 1, MAX_VERSION),
        entries=number("entries", 0, MAX_ENTRIES),
        block=number("block", 1, MAX_BLOCK),
        payload_bytes=number("payload_bytes", 0, MAX_PAYLOAD_BYTES),
        payload_sha256=digest,
    )


def read_header(stream: BinaryIO, public_key: bytes, algorithm: Algorithm | str) -> SnapshotHeader:
    """Read and verify the magic and the signed header at the start of ``stream``."""
    magic, length = _PREFIX.unpack(_read_exactly(stream, _PREFIX.size, "prefix"))
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotError("not a hotlist snapshot (bad magic)")
    if not 2 <= length <= MAX_HEADER_BYTES:
        raise SnapshotError(f"snapshot header length {length} out of range")
    raw = _read_exactly(stream, length, "header")
    try:
        body = verify_document(raw, public_key, algorithm, KIND_HOTLIST_SNAPSHOT)
    except DocumentError as exc:
        raise SnapshotError(f"snapshot header refused: {exc.reason}") from exc
    return _header_fields(body)


class _Decoder:
    """Turns the inflated payload back into entries, one block at a time, checking order
    across block boundaries; writes them to ``out`` and into the file checksum."""

    def __init__(self, header: SnapshotHeader, out: BinaryIO, checksum: Any) -> None:
        self._header = header
        self._out = out
        self._checksum = checksum
        self._pending = bytearray()
        self._previous: np.uint64 | None = None
        self.decoded = 0

    def feed(self, data: bytes) -> None:
        self._pending += data
        while self.decoded < self._header.entries:
            count = min(self._header.block, self._header.entries - self.decoded)
            size = count * KEY_BYTES
            if len(self._pending) < size:
                return
            self._block(bytes(self._pending[:size]), count)
            del self._pending[:size]
        if self._pending:
            raise SnapshotError("snapshot payload holds more than its entries")

    def _block(self, raw: bytes, count: int) -> None:
        planes = np.frombuffer(raw, dtype=np.uint8).reshape(KEY_BYTES, count)
        deltas = np.ascontiguousarray(planes.T).view(_U64).reshape(count)
        start = np.uint64(0) if self._previous is None else self._previous
        # uint64 arithmetic wraps: a wrapped sum shows up as an entry out of order below.
        keys = np.cumsum(deltas, dtype=_U64) + start
        if self._previous is not None and not deltas[0] > 0:
            raise SnapshotError("snapshot entries are not strictly increasing")
        if count > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise SnapshotError("snapshot entries are not strictly increasing")
        if self._previous is not None and not keys[0] > self._previous:
            raise SnapshotError("snapshot entries are not strictly increasing")
        self._previous = keys[-1]
        data = keys.tobytes()
        self._checksum.update(data)
        self._out.write(data)
        self.decoded += count


def _write_entries(stream: BinaryIO, header: SnapshotHeader, out: BinaryIO) -> bytes:
    """Inflate and decode the payload from ``stream`` into ``out`` (after its 64-byte
    header); returns the file checksum (SHA-256 of the file header and the entries)."""
    file_header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, header.version, header.entries)
    checksum = hashlib.sha256(file_header)
    decoder = _Decoder(header, out, checksum)
    inflate = zlib.decompressobj()
    payload_hash = hashlib.sha256()
    left = header.payload_bytes
    while left:
        chunk = stream.read(min(_READ, left))
        if not chunk:
            raise SnapshotError(
                f"snapshot truncated: {header.payload_bytes - left} of "
                f"{header.payload_bytes} payload bytes"
            )
        left -= len(chunk)
        payload_hash.update(chunk)
        data = chunk
        try:
            while data:
                # Bounded output per call: a small payload that inflates to gigabytes
                # (a zip bomb) is caught block by block, never held whole.
                decoder.feed(inflate.decompress(data, 4 * _READ))
                data = inflate.unconsumed_tail
        except zlib.error as exc:
            raise SnapshotError(f"snapshot payload is not a deflate stream: {exc}") from None
    if stream.read(1):
        raise SnapshotError("snapshot longer than its header says")
    if payload_hash.hexdigest() != header.payload_sha256:
        raise SnapshotError("snapshot payload does not match its signed digest")
    if not inflate.eof or inflate.unused_data:
        raise SnapshotError("snapshot payload's deflate stream is cut or followed by junk")
    if decoder.decoded != header.entries:
        raise SnapshotError(
            f"snapshot holds {decoder.decoded} entries, its header says {header.entries}"
        )
    return file_header + checksum.digest()


def install_snapshot(
    stream: BinaryIO,
    public_key: bytes,
    algorithm: Algorithm | str,
    target: str | os.PathLike[str],
    current_version: int,
    on_verified: Callable[[HotList], None] | None = None,
) -> HotList:
    """Read a snapshot from ``stream``, write it as the hotlist file ``target``
    (atomically: a temporary file beside it, fsync, checked again as a hotlist file,
    rename, fsync the directory) and return the new list, read into memory. Raises
    :class:`SnapshotError` for a bad snapshot, :class:`StaleDocumentError` for one not
    newer than ``current_version``; either way ``target`` is untouched.

    ``on_verified``, when given, receives the new list memory-mapped (:meth:`HotList.map`)
    as soon as the file is in place and before it is read into memory: the caller swaps it
    in and lets the old list go, so that the two are never in memory together."""
    header = read_header(stream, public_key, algorithm)
    if header.version <= current_version:
        raise StaleDocumentError(
            f"hotlist snapshot version {header.version} is not newer than {current_version}",
            header.version,
            current_version,
            False,
        )
    path = Path(target)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SnapshotError(f"cannot write the new hotlist: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(bytes(HEADER_LENGTH))
            head = _write_entries(stream, header, out)
            out.seek(0)
            out.write(head)
            out.flush()
            os.fsync(out.fileno())
        try:
            # What goes into place is checked as a file, as HotList.load would, in chunks.
            if verify_file(tmp) != (header.version, header.entries):
                raise SnapshotError("the written hotlist is not the snapshot's")
        except HotlistError as exc:
            raise SnapshotError(f"the written hotlist does not check: {exc.reason}") from exc
        os.replace(tmp, path)
        fsync_directory(directory)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SnapshotError(f"cannot write the new hotlist: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if on_verified is not None:
        on_verified(HotList.map(path))
    return HotList.load(path)
