"""The card's file system (ISO/IEC 7816-4 section 7): a tree of DFs and EFs, and where we are.

A card file system is a tree rooted at the master file (MF, ``3F00``). Dedicated files (DFs)
hold other files and may carry a DF name (an AID, up to 16 bytes) and the FCI bytes the card
answers when the DF is selected. Elementary files (EFs) hold data: a transparent EF is one
byte string, a record EF is a list of records. An EF may have a short file identifier (SFI,
1..30) so that READ commands can name it without a SELECT, and a read access condition: the
name of a right (e.g. ``"RKSSSE"``) that must have been granted before the EF may be read.
A DF may be blocked (an application blocked for good): nothing in it may be selected.

:class:`FileSystem` keeps the volatile navigation state - the current DF and the current EF -
and implements the ISO SELECT search rules on the tree: the ``find_*`` methods look a file up
as SELECT names it, :meth:`FileSystem.make_current` selects it. It knows nothing about APDUs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import TypeAlias, TypeVar

MF_FID = 0x3F00
MAX_DF_NAME = 16  # ISO 7816-4: a DF name is 1 to 16 bytes
_RESERVED_FIDS = frozenset({MF_FID, 0x3FFF, 0xFFFF})  # MF, current-DF alias, RFU
_F = TypeVar("_F", "DedicatedFile", "TransparentEF", "RecordEF")


def _check_fid(fid: int) -> None:
    if not 0 <= fid <= 0xFFFF:
        raise ValueError(f"file identifier {fid!r} does not fit two bytes")


@dataclass(eq=False)
class ElementaryFile:
    """Common part of the EFs: FID, optional SFI and the right needed to read the file."""

    fid: int
    _: KW_ONLY
    sfi: int | None = None
    read_access: str | None = None
    """Name of the right a READ needs (see :meth:`CardOS.grant`), or None for free read."""
    parent: DedicatedFile | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_fid(self.fid)
        if self.fid in _RESERVED_FIDS:
            raise ValueError(f"file identifier {self.fid:04X} is reserved")
        if self.sfi is not None and not 1 <= self.sfi <= 30:
            raise ValueError(f"SFI {self.sfi} outside 1..30")


@dataclass(eq=False)
class TransparentEF(ElementaryFile):
    """An EF read as one byte string (READ BINARY)."""

    data: bytes = b""


@dataclass(eq=False)
class RecordEF(ElementaryFile):
    """An EF read record by record (READ RECORD), records numbered from 1.

    The first byte of a record is its record identifier: on SIMPLE-TLV records, the tag.
    """

    records: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        for number, record in enumerate(self.records, start=1):
            if not 1 <= len(record) <= 255:
                raise ValueError(f"record {number} of EF {self.fid:04X} has {len(record)} bytes")


@dataclass(eq=False)
class DedicatedFile:
    """A DF: FID, optional DF name (AID), the FCI answered on SELECT, and its children.

    ``blocked``: the application of this DF is blocked for good; the card OS refuses to
    select it or anything in it (``9303``), however the file is named.
    ``invalidated``: the application is blocked but still selectable (an e-purse after
    APPLICATION BLOCK): SELECT answers its FCI with ``6283`` (selected file invalidated).
    """

    fid: int
    name: bytes | None = None
    fci: bytes = b""
    children: list[File] = field(default_factory=list, repr=False)
    parent: DedicatedFile | None = field(default=None, repr=False)
    blocked: bool = False
    invalidated: bool = False

    def __post_init__(self) -> None:
        _check_fid(self.fid)
        if self.name is not None and not 1 <= len(self.name) <= MAX_DF_NAME:
            raise ValueError(f"DF name of {len(self.name)} bytes outside 1..{MAX_DF_NAME}")

    def add(self, child: _F) -> _F:
        """Attach ``child`` under this DF and return it (so trees can be built inline).

        Refuses a FID or SFI that is already used by a sibling: SELECT and the SFI forms of
        READ would otherwise be ambiguous.
        """
        if child.parent is not None:
            raise ValueError(f"file {child.fid:04X} already has a parent")
        if child.fid == MF_FID:
            raise ValueError("only the root may have the MF identifier 3F00")
        if self.child(child.fid) is not None:
            raise ValueError(f"DF {self.fid:04X} already has a child {child.fid:04X}")
        sfi = getattr(child, "sfi", None)
        if sfi is not None and self.child_by_sfi(sfi) is not None:
            raise ValueError(f"DF {self.fid:04X} already has an EF with SFI {sfi}")
        child.parent = self
        self.children.append(child)
        return child

    def child(self, fid: int) -> File | None:
        """The immediate child with identifier ``fid``."""
        return next((c for c in self.children if c.fid == fid), None)

    def child_by_sfi(self, sfi: int) -> ElementaryFile | None:
        """The immediate child EF with short file identifier ``sfi``."""
        return next(
            (c for c in self.children if isinstance(c, ElementaryFile) and c.sfi == sfi), None
        )

    def walk(self) -> Iterator[File]:
        """This DF and every file below it, depth first, in insertion order."""
        yield self
        for c in self.children:
            if isinstance(c, DedicatedFile):
                yield from c.walk()
            else:
                yield c

    def contains(self, file: File) -> bool:
        """True when ``file`` is this DF or lies anywhere below it."""
        return any(node is self for node in _self_and_ancestors(file))


def _self_and_ancestors(file: File) -> Iterator[File]:
    node: File | None = file
    while node is not None:
        yield node
        node = node.parent


def is_blocked(file: File) -> bool:
    """True when ``file`` is a blocked DF or lies in one."""
    return any(
        isinstance(node, DedicatedFile) and node.blocked for node in _self_and_ancestors(file)
    )


File: TypeAlias = DedicatedFile | TransparentEF | RecordEF
"""Any node of the file tree."""


class FileSystem:
    """The file tree of one card and its volatile selection state.

    The ``find_*`` methods implement the SELECT search rules of ISO 7816-4 section 7.1.1:
    each returns the file SELECT names, or None, and changes nothing; the caller makes the
    file current (:meth:`make_current`) once it may be selected, so a refused SELECT keeps
    the current file, as on a real card.
    """

    def __init__(self) -> None:
        self.mf = DedicatedFile(MF_FID)
        self.current_df: DedicatedFile = self.mf
        self.current_ef: ElementaryFile | None = None

    def reset(self) -> None:
        """Back to the state after power-on: the MF is current, no current EF."""
        self.current_df = self.mf
        self.current_ef = None

    def make_current(self, file: File) -> File:
        """Make ``file`` current: a DF becomes the current DF, an EF the current EF (and its
        parent the current DF)."""
        if isinstance(file, DedicatedFile):
            self.current_df = file
            self.current_ef = None
        else:
            assert file.parent is not None, "an EF outside the tree cannot be selected"
            self.current_df = file.parent
            self.current_ef = file
        return file

    def find_fid(self, fid: int) -> File | None:
        """SELECT P1=00: the MF (``3F00``), or a file reachable from the current DF.

        The search order is the one ISO gives for file identifiers: the immediate children of
        the current DF, the current DF itself, its parent, and the parent's other children.
        """
        if fid == MF_FID:
            return self.mf
        df = self.current_df
        candidates: list[File | None] = [df.child(fid), df if df.fid == fid else None]
        if df.parent is not None:
            up = df.parent
            candidates += [up if up.fid == fid else None, up.child(fid)]
        return next((c for c in candidates if c is not None), None)

    def find_child_df(self, fid: int) -> DedicatedFile | None:
        """SELECT P1=01: a DF directly under the current DF."""
        found = self.current_df.child(fid)
        return found if isinstance(found, DedicatedFile) else None

    def find_child_ef(self, fid: int) -> ElementaryFile | None:
        """SELECT P1=02: an EF directly under the current DF."""
        found = self.current_df.child(fid)
        return found if isinstance(found, ElementaryFile) else None

    def find_parent(self) -> DedicatedFile | None:
        """SELECT P1=03: the parent of the current DF (none above the MF)."""
        return self.current_df.parent

    def find_name(
        self, name: bytes, *, next_occurrence: bool = False, partial: bool = False
    ) -> DedicatedFile | None:
        """SELECT P1=04: the DF named ``name`` anywhere in the tree, in tree order.

        ``partial`` (a card that takes right-truncated DF names, ISO 7816-4 allows it): an
        exact name wins, else the first DF whose name starts with ``name``. Without it only
        the exact name matches. ``next_occurrence`` (P2 02) looks only at the DFs after the
        current DF in tree order, for the next one that matches.
        """

        def matches(df: DedicatedFile) -> bool:
            if df.name is None:
                return False
            return df.name == name or (partial and df.name.startswith(name))

        dfs = [f for f in self.mf.walk() if isinstance(f, DedicatedFile)]
        if next_occurrence:
            start = dfs.index(self.current_df) + 1 if self.current_df in dfs else 0
            return next((df for df in dfs[start:] if matches(df)), None)
        exact = next((df for df in dfs if df.name == name), None)
        return exact or next((df for df in dfs if matches(df)), None)

    def ef_by_sfi(self, sfi: int) -> ElementaryFile | None:
        """The EF with short file identifier ``sfi`` in the current DF (not selected)."""
        return self.current_df.child_by_sfi(sfi)
