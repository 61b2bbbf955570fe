"""Replacing a file so that a crash leaves the old one or the new one, whole.

The data goes to a temporary file in the target's directory, is fsynced, renamed over the
target, and the directory is fsynced (the rename is durable only once the directory entry
is on disk). On any failure the temporary file is removed and the old file stays.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes | Iterable[bytes | memoryview],
    *,
    mode: int | None = None,
) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks written in turn); ``mode`` is set on
    the file before it takes the name, and without it the file is 0600 whatever the umask
    (the downloaded documents and the hotlist stay private). Raises :class:`OSError`;
    callers type it."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    # mkstemp makes the file 0600 whatever the umask: a secret is never readable by others.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in [data] if isinstance(data, bytes) else data:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
