"""The voice clip directory as a bounded cache (docs/screen.md, "Large print, voice,
assistance").

Two kinds of clip live in the directory. The **fixed prompts** (``onecard screen voices``
renders them at build time) are kept: their number is fixed by the software (about 75
clips, 15 MB). The clips **rendered at run time** are open-ended - a text with a fare or a
balance in it is a new clip each time, and a bus validator saying balances all day would
fill the disk, and with it the journal - so they are bounded by size and by count: before a
new one is stored, the least recently used go until it fits both bounds.

"Used" is rendered, looked up or served. The order survives a restart in the files'
modification times (a clip used is touched; where the directory is read-only the order is
this run's only). Files that are not clips (``*.tmp`` of a write in progress, anything
else) are neither counted nor removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


class ClipCache:
    """The clips in ``directory`` whose names match ``pattern``: those named by
    :meth:`keep` kept, the others at most ``max_bytes`` and ``max_clips``. Thread-safe."""

    def __init__(
        self, directory: Path, max_bytes: int, max_clips: int, pattern: re.Pattern[str]
    ) -> None:
        if max_bytes < 1 or max_clips < 1:
            raise ValueError("a voice cache holds at least one clip of at least one byte")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_clips = max_clips
        self._pattern = pattern
        self._lock = threading.Lock()
        self._kept: set[str] = set()
        self._bounded: OrderedDict[str, int] | None = None  # name -> bytes, least recent first
        self._bytes = 0

    def keep(self, names: Iterable[str]) -> None:
        """Never remove the clips ``names`` (the fixed prompts), nor count them."""
        with self._lock:
            self._kept.update(names)
            if self._bounded is not None:
                for name in self._kept & self._bounded.keys():
                    self._bytes -= self._bounded.pop(name)

    def used(self, name: str) -> None:
        """``name`` (a stored clip) was just rendered, looked up or served."""
        with self._lock:
            bounded = self._scanned()
            if name in bounded:
                bounded.move_to_end(name)
        with contextlib.suppress(OSError):
            os.utime(self.directory / name)

    def make_room(self, name: str, size: int) -> None:
        """Before ``name`` of ``size`` bytes is stored: remove the least recently used
        until it fits both bounds (nothing for a kept clip)."""
        with self._lock:
            if name in self._kept:
                return
            self._evict(size, 1, spare=name)

    def stored(self, name: str, size: int) -> None:
        """``name`` of ``size`` bytes was just stored: it is the most recently used; the
        bounds hold again (another clip may have been stored meanwhile)."""
        with self._lock:
            if name in self._kept:
                return
            bounded = self._scanned()
            self._bytes += size - bounded.pop(name, 0)
            bounded[name] = size
            self._evict(0, 0, spare=name)

    @property
    def totals(self) -> tuple[int, int]:
        """(clips, bytes) under the bounds now."""
        with self._lock:
            return len(self._scanned()), self._bytes

    def _scanned(self) -> OrderedDict[str, int]:
        """The bounded clips, read from the directory on first use (lock held)."""
        if self._bounded is None:
            found: list[tuple[float, str, int]] = []
            with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
                for entry in entries:
                    if self._pattern.fullmatch(entry.name) is None or entry.name in self._kept:
                        continue
                    with contextlib.suppress(OSError):
                        if entry.is_file(follow_symlinks=False):
                            info = entry.stat(follow_symlinks=False)
                            found.append((info.st_mtime, entry.name, info.st_size))
            found.sort()
            self._bounded = OrderedDict((name, size) for _, name, size in found)
            self._bytes = sum(size for _, _, size in found)
        return self._bounded

    def _evict(self, more_bytes: int, more_clips: int, spare: str) -> None:
        """Remove least recently used clips (never ``spare``) until ``more_bytes`` and
        ``more_clips`` would fit (lock held)."""
        bounded = self._scanned()
        removed = 0
        for name in list(bounded):
            over_bytes = self._bytes + more_bytes > self.max_bytes
            over_count = len(bounded) + more_clips > self.max_clips
            if not (over_bytes or over_count):
                break
            if name == spare:
                continue
            # Gone already (removed by hand, another process): out of the count too. Any
            # other failure is the caller's (a directory it cannot write to).
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
            self._bytes -= bounded.pop(name)
            removed += 1
        if removed:
            log.info(
                "voice cache %s: removed %d least recently used clip(s); %d clips, %.1f MB "
                "(bounds %d clips, %.1f MB)",
                self.directory,
                removed,
                len(bounded),
                self._bytes / 1e6,
                self.max_clips,
                self.max_bytes / 1e6,
            )
