"""The shared wire vectors (tests/unit/terminal/wire/vectors): bytes in, and the bytes or the
typed error expected out. The terminal's tests and the back office's run the same files, so
both ends are held to one contract rather than each to its own reading of docs/sync.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from helpers.paths import TESTS

VECTORS = TESTS / "unit" / "terminal" / "wire" / "vectors"


@dataclass(frozen=True)
class Vector:
    """One case: ``raw`` (the bytes in), and either ``out`` (expected text) or ``error``
    (the expected error's ``code``); ``fields`` holds the rest of the case as written."""

    name: str
    raw: bytes
    out: str | None
    error: str | None
    fields: dict[str, Any]

    def __str__(self) -> str:  # the pytest id
        return self.name


def load(name: str) -> dict[str, Any]:
    """A vector file as written: ``{"about", ..., "cases": [...]}``."""
    loaded: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return loaded


def cases(name: str, *, ok: bool | None = None) -> list[Vector]:
    """The cases of vector file ``name``: all, or only those expecting bytes (``ok=True``)
    or an error (``ok=False``)."""
    out = []
    for case in load(name)["cases"]:
        if "in" in case:
            raw = case["in"].encode("utf-8", "surrogatepass")
        else:  # bytes that are not UTF-8 text, or a request body
            raw = bytes.fromhex(case.get("in_hex", case.get("body_hex", "")))
        vector = Vector(case["name"], raw, case.get("out"), case.get("error"), case)
        if ok is None or ok == (vector.error is None):
            out.append(vector)
    return out
