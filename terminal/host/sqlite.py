"""The terminal's durable SQLite files - the journal, the event outbox, the e-code replay
cache, the pending purchases - all opened one way.

* **Created whole**: a new file is built beside its path (schema and first rows committed,
  fsynced) and linked into place, so a file at the path is always a whole database. An
  empty or foreign file there is damage, never a fresh start: a fresh journal or outbox
  would hand out sequence numbers the back office already holds, a fresh replay cache
  would accept a used code again.
* **Checked before anything writes to it**, on a read-only connection so that a damaged
  file stays byte for byte as found: the SQLite header, ``PRAGMA quick_check``, the tables
  the store expects, and whatever the store checks of its own content.
* **Opened durable**: ``journal_mode=WAL`` and ``synchronous=FULL``, both read back, so a
  ``COMMIT`` has reached the disk when it returns.
* **Private**: mode 0600, whatever the umask - the file is made by ``mkstemp``, and a file
  from before (or one an operator copied in) is narrowed to 0600 when opened. SQLite gives
  the ``-wal`` and ``-shm`` files it makes the mode of the database file, so they follow;
  ones left from before are narrowed too.
* **Failures typed**: every ``sqlite3.Error`` becomes the store's own error
  (:class:`StoreErrors`) - a full disk (``SQLITE_FULL``, ``SQLITE_IOERR``) refuses the
  write with nothing recorded; damage (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``) names the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from terminal.errors import OneCardError
from terminal.host.atomicfile import fsync_directory

log = logging.getLogger(__name__)

FILE_MODE = 0o600
"""Mode of every durable file and of the ``-wal``/``-shm`` files SQLite keeps beside it:
they hold card tokens, transactions, codes used."""
SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""
BUSY_TIMEOUT_MS = 5000
"""How long a connection waits for another one's write lock before failing."""

_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
_FULL = (_SQLITE_FULL, _SQLITE_IOERR)
_DAMAGED = (_SQLITE_CORRUPT, _SQLITE_NOTADB)
_SYNCHRONOUS_FULL = 2

T = TypeVar("T")


@dataclass(frozen=True)
class StoreErrors:
    """How one store names its failures, each an error of the onecard family.

    ``name`` is the store in messages ("the journal"); ``failed(reason)`` is any failure
    that is not the file's fault (locked, permissions, closed); ``damaged(reason, path)``
    a file that is not a sound store; ``full(reason)`` a write the disk refused, after
    which nothing of it is recorded.
    """

    name: str
    failed: Callable[[str], OneCardError]
    damaged: Callable[[str, str], OneCardError]
    full: Callable[[str], OneCardError]

    def of(self, exc: sqlite3.Error, path: str | os.PathLike[str], doing: str) -> OneCardError:
        """The typed error of ``exc``, raised while ``doing`` something with ``path``."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == _SQLITE_FULL:
            return self.full(f"{self.name} or its disk is full ({exc}); nothing was recorded")
        if code == _SQLITE_IOERR:
            return self.full(f"disk I/O error while recording ({exc}); nothing was recorded")
        if code in _DAMAGED:
            return self.damaged(f"{doing}: {exc}", str(path))
        return self.failed(f"{path}: {doing}: {exc}")


def create_whole(
    path: Path, errors: StoreErrors, build: Callable[[sqlite3.Connection], None]
) -> None:
    """Create the database at ``path``: ``build`` runs in one transaction on a new file
    beside it, which is fsynced and then linked into place - never over a file another
    process has just created there (that one is kept)."""
    if not path.parent.is_dir():
        raise errors.failed(
            f"{path}: cannot create {errors.name}: directory {path.parent} does not exist"
        )
    try:
        # mkstemp: 0600 whatever the umask, and the linked file keeps it.
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise errors.failed(f"{path}: cannot create {errors.name}: {exc.strerror or exc}") from None
    temp = Path(temp_name)
    try:
        conn = sqlite3.connect(temp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            build(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last close checkpoints the WAL into the file and removes it
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        # link, not rename: never clobbers a store another process has just created.
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
        fsync_directory(path.parent)
    except sqlite3.Error as exc:
        raise errors.of(exc, path, f"cannot create {errors.name}") from None
    except OSError as exc:
        raise errors.failed(f"{path}: cannot create {errors.name}: {exc.strerror or exc}") from None
    finally:
        for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path`` (``mode=ro``): it never creates or writes the
    file. Raises ``sqlite3.Error``."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def check_header(path: Path, errors: StoreErrors) -> None:
    """The file at ``path`` starts as an SQLite database does; ``errors.damaged`` if not."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise errors.failed(f"{path}: cannot read {errors.name}: {exc.strerror or exc}") from None
    if not header:
        # Stores are created whole (create_whole): an empty file is one that lost its
        # contents, not a new one.
        raise errors.damaged("the file is empty", str(path))
    if header != SQLITE_HEADER:
        raise errors.damaged("not an SQLite database (bad header)", str(path))


def inspect(
    path: Path,
    errors: StoreErrors,
    *,
    tables: Mapping[str, Sequence[str]] | None = None,
    check: Callable[[sqlite3.Connection], T],
) -> T:
    """Check the store at ``path`` without writing to it and return what ``check`` (the
    store's own check of its content, run on the read-only connection) returns: header,
    ``PRAGMA quick_check``, then each of ``tables`` with exactly its columns."""
    check_header(path, errors)
    where = str(path)
    try:
        conn = open_read_only(path)
    except sqlite3.Error as exc:
        raise errors.of(exc, path, f"cannot open {errors.name} read-only") from None
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
        if problems != ["ok"]:
            raise errors.damaged(f"quick_check: {'; '.join(problems)}", where)
        for table, expected in (tables or {}).items():
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            if columns != list(expected):
                raise errors.damaged(f"table {table} missing or not as written", where)
        return check(conn)
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", _SQLITE_CORRUPT) & 0xFF
        if code in (*_DAMAGED, _SQLITE_IOERR):
            raise errors.damaged(f"damaged database: {exc}", where) from None
        # Locked, cannot open (permissions), out of memory: a problem, but not the file's.
        raise errors.failed(f"{where}: cannot check {errors.name}: {exc}") from None
    finally:
        conn.close()


def keep_private(path: Path, errors: StoreErrors) -> None:
    """Narrow the store at ``path`` and the ``-wal`` and ``-shm`` files beside it to
    :data:`FILE_MODE` when others may read them (a file from before stores were created
    whole was made 0644 under the usual umask). A mode that cannot be changed (a file of
    another user) is logged, as a readable key file is: refusing would take the terminal
    out of service over a chmod."""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(os.stat(file).st_mode)
            if mode & 0o077:
                os.chmod(file, FILE_MODE)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning(
                "%s of %s is readable by others and cannot be made 0600: %s",
                file,
                errors.name,
                exc.strerror or exc,
            )


def open_durable(
    path: Path, errors: StoreErrors, *, max_bytes: int | None = None
) -> sqlite3.Connection:
    """A read-write connection to the (checked) store at ``path`` in WAL mode with
    ``synchronous=FULL``, shareable between threads (callers serialise), autocommit unless
    a transaction is begun; the files private first (:func:`keep_private`). ``max_bytes``
    caps the file (``PRAGMA max_page_count``): reaching it refuses a write as a full disk
    does."""
    keep_private(path, errors)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise errors.of(exc, path, f"cannot open {errors.name}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        if max_bytes is not None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // page_size)}")
    except sqlite3.Error as exc:
        conn.close()
        raise errors.of(exc, path, f"cannot open {errors.name}") from None
    if str(mode).lower() != "wal" or synchronous != _SYNCHRONOUS_FULL:
        conn.close()
        # Without WAL and FULL a commit that returned could be lost on power loss.
        raise errors.failed(
            f"{path}: durable mode refused (journal_mode={mode}, synchronous={synchronous})"
        )
    return conn


def open_store(
    path: Path,
    errors: StoreErrors,
    *,
    build: Callable[[sqlite3.Connection], None],
    check: Callable[[sqlite3.Connection], T],
    tables: Mapping[str, Sequence[str]] | None = None,
    ensure: Callable[[sqlite3.Connection], None] | None = None,
    max_bytes: int | None = None,
) -> tuple[sqlite3.Connection, T]:
    """Create the store at ``path`` if there is none (:func:`create_whole` with ``build``),
    check it (:func:`inspect` with ``tables`` and ``check``) and open it durable
    (:func:`open_durable`). ``ensure``, if given, then runs in one write transaction - an
    idempotent ``CREATE ... IF NOT EXISTS`` for a store whose older files may lack a table.
    Returns the connection and what ``check`` returned."""
    if not path.exists():
        create_whole(path, errors, build)
    checked = inspect(path, errors, tables=tables, check=check)
    conn = open_durable(path, errors, max_bytes=max_bytes)
    if ensure is not None:
        try:
            with write_transaction(conn, errors, path, f"cannot open {errors.name}"):
                ensure(conn)
        except BaseException:
            conn.close()
            raise
    return conn, checked


def open_in_memory(
    errors: StoreErrors, build: Callable[[sqlite3.Connection], None]
) -> sqlite3.Connection:
    """A store that lives as long as its connection (unit tests, benchmarks): same schema,
    no file, nothing durable."""
    try:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN")
        build(conn)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise errors.of(exc, ":memory:", f"cannot create {errors.name}") from None
    return conn


@contextlib.contextmanager
def write_transaction(
    conn: sqlite3.Connection, errors: StoreErrors, path: str | os.PathLike[str], doing: str
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``conn``, rolled back on any failure, an
    SQLite failure raised as the store's typed error saying ``doing``. IMMEDIATE takes the
    write lock before anything is read, so two processes sharing a file never decide on
    the same state; with ``synchronous=FULL`` the WAL is fsynced before ``COMMIT`` returns."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        rollback(conn)
        raise errors.of(exc, path, doing) from None
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction, if SQLite has not already (``SQLITE_FULL`` does)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
