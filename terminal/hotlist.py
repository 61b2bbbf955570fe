"""The hotlist: cards reported lost, stolen, forged or cancelled (article 21), which the
terminal must refuse even offline.

Sized for a province: 10 million entries. Each entry is the 64-bit hotlist key of a card
token (:func:`terminal.privacy.cardtoken.hotlist_key`, the first 8 bytes big-endian); the list is a
sorted, duplicate-free numpy ``uint64`` array, 8 bytes an entry (80 MB at 10 million), never
a Python set (which costs about ten times that).

Lookup (:meth:`HotList.contains`) is a binary search. ``numpy.searchsorted`` costs several
microseconds a call in argument conversion alone (and silently copies the whole array when
handed a Python int above 2**63), so lookups run :func:`bisect.bisect_left` over a
memoryview of the array, narrowed first by a bucket index on the top 16 key bits (65,537
offsets, 0.5 MB): about 8 comparisons instead of 24 at 10 million entries.

File format (little-endian), written by :meth:`HotList.save`, read by :meth:`HotList.load`::

    offset size
         0    8  magic b"OCHOTLST"
         8    4  format version (1)
        12    4  reserved, 0
        16    8  list version (the hotlist-delta version this list is at; 0 = empty)
        24    8  count of entries
        32   32  SHA-256 of bytes 0..31 followed by the entries
        64  8*n  entries, uint64, strictly increasing

The file is read into private memory with ``numpy.fromfile`` rather than memory-mapped: 80
MB fits the 200 MB target, a tap never waits for a page fault on an evicted page, and a file
replaced or damaged under a running terminal cannot fault the process (SIGBUS). The one
exception is :meth:`HotList.map`, in force only while a new list (just checked by
:func:`verify_file`) is read in, so that the old and the new list are not both in memory.

A :class:`HotList` is immutable: :meth:`HotList.apply_delta` returns a new list, so a
refused delta leaves the list in force untouched and readers never see half an update.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import struct
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from terminal.errors import OneCardError
from terminal.host.atomicfile import write_atomically
from terminal.privacy.cardtoken import hotlist_key

log = logging.getLogger(__name__)

MAGIC = b"OCHOTLST"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIQQ")  # magic, format version, reserved, list version, count
_CHECKSUM_LENGTH = 32
HEADER_LENGTH = _HEADER.size + _CHECKSUM_LENGTH  # 64: entries start 8-byte aligned
KEY_BYTES = 8
MAX_KEY = (1 << 64) - 1
MAX_VERSION = (1 << 63) - 1  # stored as uint64, kept in signed range for JSON peers

_DTYPE = np.dtype("<u8")
_BUCKET_BITS = 16
_BUCKET_SHIFT = 64 - _BUCKET_BITS
# Edge keys of the buckets: bucket b holds keys in [b << 48, (b + 1) << 48).
_BUCKET_EDGES = np.arange(1 << _BUCKET_BITS, dtype=np.uint64) << np.uint64(_BUCKET_SHIFT)


class HotlistError(OneCardError):
    """A hotlist that cannot be used or a delta that cannot be applied: a corrupt file
    (bad magic, checksum, truncated), a rollback (version not newer), a delta built on
    another base version, or keys out of range."""

    code = "hotlist_error"


def _checksum(header: bytes, keys: np.ndarray) -> bytes:
    digest = hashlib.sha256(header)
    if len(keys):
        digest.update(memoryview(keys))
    return digest.digest()


def _keys_array(keys: Iterable[int] | np.ndarray, what: str) -> np.ndarray:
    """``keys`` as a sorted duplicate-free uint64 array; out-of-range or non-integer keys
    are a :class:`HotlistError` (numpy would truncate 1.5 or wrap -1 silently)."""
    if isinstance(keys, np.ndarray):
        if keys.dtype.kind != "u" or keys.dtype.itemsize != KEY_BYTES or keys.ndim != 1:
            raise HotlistError(f"{what} keys must be a 1-d uint64 array, not {keys.dtype}")
        arr = keys.astype(_DTYPE, copy=False)
    else:
        values = list(keys)
        for value in values:
            if type(value) is not int or not 0 <= value <= MAX_KEY:
                raise HotlistError(f"{what} key {value!r} is not a 64-bit unsigned integer")
        arr = np.array(values, dtype=_DTYPE) if values else np.empty(0, dtype=_DTYPE)
    return np.unique(arr)


def _check_version(version: object, what: str) -> int:
    if type(version) is not int or not 0 <= version <= MAX_VERSION:
        raise HotlistError(f"{what} must be an integer in [0, 2**63), not {version!r}")
    return version


class HotList:
    """The hotlist at one version: membership by card token, deltas, persistence."""

    __slots__ = ("_keys", "_n", "_offsets", "_version", "_view")

    def __init__(self, version: int, keys: np.ndarray, index: bool = True) -> None:
        """Wrap an already sorted, duplicate-free uint64 array (use :meth:`from_keys`,
        :meth:`load` or :meth:`empty` rather than this). ``index`` False: no bucket index
        (see :meth:`map`)."""
        keys = keys.astype(_DTYPE, copy=False)
        keys.flags.writeable = False  # shared between list versions; never edited in place
        self._version = _check_version(version, "hotlist version")
        self._keys = keys
        self._n = len(keys)
        self._view = memoryview(keys)
        self._offsets: array[int] | None = None
        if index:
            edges = np.searchsorted(keys, _BUCKET_EDGES).astype(np.int64)
            self._offsets = array("q", np.append(edges, np.int64(self._n)).tobytes())

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def empty(cls) -> HotList:
        """No card hotlisted, version 0: what a terminal has before its first download."""
        return cls(0, np.empty(0, dtype=_DTYPE))

    @classmethod
    def from_keys(cls, version: int, keys: Iterable[int] | np.ndarray) -> HotList:
        """A list at ``version`` holding ``keys`` (any order, duplicates allowed)."""
        return cls(_check_version(version, "hotlist version"), _keys_array(keys, "hotlist"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HotList:
        """Read a list written by :meth:`save`. A file with a bad magic, format version,
        checksum or length, or entries out of order, is a :class:`HotlistError` naming the
        fault; the file is only read, never changed."""
        target = Path(path)
        try:
            with open(target, "rb") as fh:
                head, version, count = _read_header(fh, target)
                keys = np.fromfile(fh, dtype=_DTYPE, count=count)
        except OSError as exc:
            raise HotlistError(f"{target.name}: cannot read ({exc.strerror or exc})") from exc
        if len(keys) != count:
            raise HotlistError(f"{target.name}: truncated while reading")
        if _checksum(head[: _HEADER.size], keys) != head[_HEADER.size :]:
            raise HotlistError(f"{target.name}: checksum mismatch (corrupt file)")
        if not _strictly_increasing(keys):
            # A checksum only proves the bytes are the ones written: a writer bug that
            # unsorted them would make every lookup quietly wrong.
            raise HotlistError(f"{target.name}: entries are not strictly increasing")
        return cls(version, keys)

    @classmethod
    def map(cls, path: str | os.PathLike[str]) -> HotList:
        """A list over a file that :func:`verify_file` has just passed, memory-mapped and
        without the bucket index: what serves lookups for the moment a new list is read
        into memory after the old one was let go (:meth:`DocumentStore.apply_hotlist_snapshot
        <terminal.sync.downloads.DocumentStore.apply_hotlist_snapshot>`), so that a
        10-million list and its successor are never both in memory. A lookup touches the
        few pages of one binary search; the bucket index would touch them all. Only for
        that moment: a mapped file damaged under the process could fault it (the reason
        :meth:`load` reads into private memory)."""
        target = Path(path)
        try:
            with open(target, "rb") as fh:
                head = fh.read(HEADER_LENGTH)
        except OSError as exc:
            raise HotlistError(f"{target.name}: cannot read ({exc.strerror or exc})") from exc
        if len(head) < HEADER_LENGTH:
            raise HotlistError(f"{target.name}: truncated header")
        _, _, _, version, count = _HEADER.unpack_from(head)
        if not count:
            return cls(version, np.empty(0, dtype=_DTYPE))
        try:
            keys = np.memmap(target, dtype=_DTYPE, mode="r", offset=HEADER_LENGTH, shape=(count,))
        except (OSError, ValueError) as exc:
            raise HotlistError(f"{target.name}: cannot map ({exc})") from exc
        return cls(version, keys, index=False)

    # --- the list -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The hotlist-delta version this list is at (0: empty, never downloaded)."""
        return self._version

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"HotList(version={self._version}, entries={self._n})"

    def contains(self, token: bytes) -> bool:
        """True when the card whose token is ``token`` (16 bytes, or at least its first 8)
        is hotlisted."""
        if len(token) < KEY_BYTES:
            raise HotlistError(f"card token must be at least {KEY_BYTES} bytes")
        return self.contains_key(hotlist_key(token))

    def contains_key(self, key: int) -> bool:
        """True when the 64-bit hotlist ``key`` is listed."""
        if not 0 <= key <= MAX_KEY:
            return False
        offsets = self._offsets
        view = self._view
        if offsets is None:
            i = bisect.bisect_left(view, key)
        else:
            bucket = key >> _BUCKET_SHIFT
            i = bisect.bisect_left(view, key, offsets[bucket], offsets[bucket + 1])
        return i < self._n and view[i] == key

    def __contains__(self, token: object) -> bool:
        return isinstance(token, bytes | bytearray) and self.contains(bytes(token))

    def keys(self) -> np.ndarray:
        """The entries, sorted (a read-only array shared with this list)."""
        return self._keys

    def stats(self) -> dict[str, Any]:
        """What an operator's status page shows: version, entries, memory held."""
        return {
            "version": self._version,
            "entries": self._n,
            "bytes": int(self._keys.nbytes)
            + (0 if self._offsets is None else self._offsets.itemsize * len(self._offsets)),
            "format_version": FORMAT_VERSION,
        }

    # --- deltas ---------------------------------------------------------------------------

    def apply_delta(
        self,
        version: int,
        base: int,
        added: Iterable[int] | np.ndarray,
        removed: Iterable[int] | np.ndarray,
    ) -> HotList:
        """The list after a hotlist delta (docs/sync.md): ``(self - removed) | added`` at
        ``version``. ``base`` 0 means a full list: ``added`` replaces everything and
        ``removed`` must be empty. Refused with :class:`HotlistError`: ``version`` not newer
        than this list (rollback), ``base`` not this list's version, a key both added and
        removed, a key out of range. Removing an absent key or adding a present one is
        harmless (a delta may be re-applied after a crash between save and acknowledge).
        """
        _check_version(version, "delta version")
        _check_version(base, "delta base")
        if version <= self._version:
            raise HotlistError(
                f"delta version {version} is not newer than the list's {self._version} (rollback)"
            )
        add = _keys_array(added, "added")
        rem = _keys_array(removed, "removed")
        if base == 0:
            if len(rem):
                raise HotlistError("a full list (base 0) cannot remove entries")
            return HotList(version, add)
        if base != self._version:
            raise HotlistError(f"delta is built on version {base}, the list is at {self._version}")
        if len(add) and len(rem) and len(np.intersect1d(add, rem, assume_unique=True)):
            raise HotlistError("delta both adds and removes the same key")
        return HotList(version, _merge(self._keys, add, rem))

    # --- persistence ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the list atomically: a temporary file in the same directory, fsync, rename
        over ``path``, fsync the directory. A crash at any point leaves either the old file
        or the new one, whole; an error leaves the old file and raises :class:`HotlistError`.
        """
        target = Path(path)
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, self._version, self._n)
        checksum = _checksum(header, self._keys)
        chunks = [header, checksum, memoryview(self._keys)] if self._n else [header, checksum]
        try:
            write_atomically(target, chunks)
        except OSError as exc:
            raise HotlistError(f"cannot save hotlist to {target}: {exc.strerror or exc}") from exc


_ORDER_CHUNK = 1 << 20


def verify_file(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Check a hotlist file as :meth:`HotList.load` does - magic, format, length,
    checksum, order - reading it a million entries at a time, so that checking a new list
    costs no memory beside the list in force; returns ``(version, count)``."""
    target = Path(path)
    try:
        with open(target, "rb") as fh:
            head, version, count = _read_header(fh, target)
            digest = hashlib.sha256(head[: _HEADER.size])
            last: int | None = None
            left = count
            while left:
                chunk = np.fromfile(fh, dtype=_DTYPE, count=min(left, _ORDER_CHUNK))
                if not len(chunk):
                    raise HotlistError(f"{target.name}: truncated while reading")
                if (last is not None and not int(chunk[0]) > last) or not _strictly_increasing(
                    chunk
                ):
                    raise HotlistError(f"{target.name}: entries are not strictly increasing")
                digest.update(memoryview(chunk))
                last = int(chunk[-1])
                left -= len(chunk)
    except OSError as exc:
        raise HotlistError(f"{target.name}: cannot read ({exc.strerror or exc})") from exc
    if digest.digest() != head[_HEADER.size :]:
        raise HotlistError(f"{target.name}: checksum mismatch (corrupt file)")
    return version, count


def _read_header(fh: BinaryIO, target: Path) -> tuple[bytes, int, int]:
    """The header of an open hotlist file, checked against the file's size: ``(header
    bytes, version, count)``; a :class:`HotlistError` naming the fault otherwise."""
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(HEADER_LENGTH)
    if len(head) < HEADER_LENGTH:
        raise HotlistError(f"{target.name}: truncated header ({len(head)} bytes)")
    magic, fmt, reserved, version, count = _HEADER.unpack_from(head)
    if magic != MAGIC:
        raise HotlistError(f"{target.name}: not a hotlist file (bad magic)")
    if fmt != FORMAT_VERSION:
        raise HotlistError(f"{target.name}: unknown format version {fmt}")
    if reserved != 0:
        raise HotlistError(f"{target.name}: reserved header field is not zero")
    expected = HEADER_LENGTH + KEY_BYTES * count
    if size != expected:
        raise HotlistError(
            f"{target.name}: {size} bytes, header says {count} entries "
            f"({expected} bytes): truncated or padded"
        )
    if version > MAX_VERSION:
        raise HotlistError(f"{target.name}: list version {version} out of range")
    return head, version, count


def _strictly_increasing(keys: np.ndarray) -> bool:
    """Whether ``keys`` is strictly increasing, checked a million entries at a time: one
    comparison over the whole of a 10-million list would hold a 10 MB temporary beside the
    80 MB list, and loading a new list happens while the old one is still in force."""
    n = len(keys)
    for start in range(0, n - 1, _ORDER_CHUNK):
        stop = min(n, start + _ORDER_CHUNK + 1)
        if not bool(np.all(keys[start + 1 : stop] > keys[start : stop - 1])):
            return False
    return True


def _merge(old: np.ndarray, add: np.ndarray, rem: np.ndarray) -> np.ndarray:
    """``(old - rem) | add`` for sorted unique arrays, with one output allocation: at 10
    million entries an intermediate copy (``np.delete`` then ``np.insert``) would hold a
    third 80 MB array at the peak."""
    n = len(old)
    if len(rem):
        pos = np.searchsorted(old, rem)
        inside = pos < n
        found = np.zeros(len(rem), dtype=bool)
        found[inside] = old[pos[inside]] == rem[inside]
        drop = pos[found]
    else:
        drop = np.empty(0, dtype=np.int64)
    if len(add):
        pos = np.searchsorted(old, add)
        inside = pos < n
        present = np.zeros(len(add), dtype=bool)
        present[inside] = old[pos[inside]] == add[inside]
        new_values = add[~present]
        insert_at = pos[~present]
    else:
        new_values = np.empty(0, dtype=_DTYPE)
        insert_at = np.empty(0, dtype=np.int64)
    if not len(drop) and not len(new_values):
        return old
    out = np.empty(n - len(drop) + len(new_values), dtype=_DTYPE)
    # Walk the edits in position order, copying the untouched runs of ``old`` between them;
    # an insertion at position p goes before old[p], which may itself be dropped.
    drops = drop.tolist()
    inserts = insert_at.tolist()
    values = new_values.tolist()
    read = write = 0
    i = j = 0
    while i < len(drops) or j < len(inserts):
        if j < len(inserts) and (i >= len(drops) or inserts[j] <= drops[i]):
            stop = inserts[j]
            run = stop - read
            out[write : write + run] = old[read:stop]
            write += run
            read = stop
            out[write] = values[j]
            write += 1
            j += 1
        else:
            stop = drops[i]
            run = stop - read
            out[write : write + run] = old[read:stop]
            write += run
            read = stop + 1
            i += 1
    out[write:] = old[read:]
    return out
