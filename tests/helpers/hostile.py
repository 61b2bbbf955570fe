"""Hostile outside data for the property tests of the parsers (issue 17, "never go quiet").

A parser of outside data - a document, a back office answer, an event, a stored row, an
operator file - returns a value or raises its family's error: never another exception,
never a hang, never a memory blow-up. The strategies here stress exactly what once leaked:
numbers beyond a double (``1e400``), integers of 4,301 digits, lone surrogates, nesting far
beyond the strict reader's 64 levels, a key given twice - alone, mixed with ordinary JSON,
and planted into a good document of the parser's own format.

:func:`total` runs a parser and checks the family; :func:`bounded` measures the time and
the peak memory (tracemalloc) of one call, for the large inputs where that matters and is
cheap enough. Hypothesis tests use :data:`DEADLINE` per example.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

DEADLINE = dt.timedelta(milliseconds=400)
"""Per-example time bound: far above what a parser takes on the largest inputs here (a few
milliseconds), far below a hang."""
EXAMPLES = 60
"""Examples per property: enough to meet every kind of hostile piece several times, cheap
enough that the suite gains a few seconds in all."""
MAX_PEAK_BYTES = 16 << 20
"""Peak memory of one parse of a hostile input of up to a megabyte."""

EDGE_NUMBERS = (
    "1e400",
    "-1e400",
    "1E+309",
    "2e308",
    "NaN",
    "Infinity",
    "-Infinity",
    "1" * 4301,
    "-" + "9" * 4301,
    "1" * 4300,
    "1e-400",
    "-0",
    "0.0",
    "9223372036854775808",
    "-9223372036854775809",
    "1e15",
    "true",
    "false",
    "null",
)
"""Numbers (and constants) at and beyond what every reader reads alike."""
EDGE_STRINGS = (
    '"\\ud800"',
    '"\\udfff"',
    '"a\\udc00b"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '""',
    '"' + "x" * 5000 + '"',
    '"2026-01-01T00:00:00+08:00"',
    '"00112233445566778899aabbccddeeff"',
)
"""Strings: lone surrogates (as escapes: UTF-8 cannot hold one), a pair, NUL, long ones,
and shapes parsers look for (times, hex)."""
DEPTHS = (63, 64, 65, 200, 1500, 100_000)
"""Nesting around the strict reader's limit (64), beyond the interpreter's recursion limit,
and at the scale of a megabyte-sized document."""


def nested(depth: int, inner: str = "1", kind: str = "[") -> str:
    """``inner`` inside ``depth`` arrays (``kind`` ``[``) or objects (``{``)."""
    if kind == "[":
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


_pieces = st.sampled_from(EDGE_NUMBERS + EDGE_STRINGS)
_deep = st.builds(nested, st.sampled_from(DEPTHS), st.just("1"), st.sampled_from("[{"))


def _plain_json() -> st.SearchStrategy[str]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )
    return values.map(json.dumps)


def json_fragments() -> st.SearchStrategy[str]:
    """JSON text - or almost: ordinary values, the hostile pieces, deep nesting, and
    containers of them, sometimes with a key given twice."""
    leaf = _pieces | _deep | _plain_json()

    def containers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arrays = st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
        members = st.lists(st.tuples(st.sampled_from(["a", "b", "version"]), inner), max_size=3)
        objects = members.map(
            lambda pairs: "{" + ",".join(f'"{k}":{v}' for k, v in pairs) + "}"
        )  # the sampled keys repeat: duplicate keys come for free
        return arrays | objects

    return st.recursive(leaf, containers, max_leaves=6)


def planted(good: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """``good`` (a document of the parser's own format) as JSON with one member's value
    replaced by a hostile fragment, or one member given twice."""
    keys = sorted(good)

    def plant(key: str, fragment: str, twice: bool) -> bytes:
        members = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in good.items() if k != key]
        members.append(f"{json.dumps(key)}:{fragment}")
        if twice:
            members.append(f"{json.dumps(key)}:{json.dumps(good[key])}")
        return ("{" + ",".join(members) + "}").encode("utf-8", "surrogatepass")

    return st.builds(plant, st.sampled_from(keys), json_fragments(), st.booleans())


def hostile_json(good: dict[str, Any] | None = None) -> st.SearchStrategy[bytes]:
    """Bytes a parser of JSON outside data may meet: random bytes, JSON fragments near the
    limits, and - given ``good`` - that document with something hostile planted in it."""
    found = st.binary(max_size=64) | json_fragments().map(
        lambda text: text.encode("utf-8", "surrogatepass")
    )
    return found | planted(good) if good is not None else found


def total(parse: Callable[[T], object], raw: T, family: type[BaseException]) -> object:
    """``parse(raw)``: its value, or None when it raised ``family``; anything else raised
    fails the test (the exception propagates with its traceback)."""
    try:
        return parse(raw)
    except family:
        return None


def bounded(
    call: Callable[[], object], *, seconds: float = 1.0, peak_bytes: int = MAX_PEAK_BYTES
) -> None:
    """Run ``call`` and check it took less than ``seconds`` and allocated at most
    ``peak_bytes`` at its peak (measured with tracemalloc, which slows allocation: for a
    few large inputs, not for every example)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        call()
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak <= peak_bytes, f"peak memory {peak} bytes"


LARGE_INPUTS = {
    "1 MB of brackets": b"[" * (1 << 20),
    "deep objects": nested(200_000, kind="{").encode(),
    "4,301 digits": b'{"version":' + b"1" * 4301 + b"}",
    "1e400": b'{"version":1e400}',
    "many lone surrogates": b'["' + b"\\ud800" * 100_000 + b'"]',
    "many keys twice": b"{" + b'"a":1,' * 100_000 + b'"a":1}',
    "a long string": b'{"version":"' + b"x" * (1 << 20) + b'"}',
}
"""Inputs of up to a megabyte at each limit, for :func:`bounded` checks."""
