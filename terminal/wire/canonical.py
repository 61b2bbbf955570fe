"""Canonical JSON (docs/sync.md, "Canonical JSON"): the bytes hashes and signatures cover,
and the one strict JSON reader of the terminal, the back office and the simulator.

The canonical form is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` encoded as UTF-8, for values every JSON reader reads alike, so that two
parties hash the same bytes. Both directions refuse, each with its own typed error:

* a number that is not finite: ``NaN``, ``Infinity``, and ``1e400``, which Python reads as
  infinity (:class:`NonFiniteNumberError`);
* an integer of more than :data:`MAX_INT_DIGITS` digits (:class:`IntegerTooLongError`);
* a lone surrogate (``"\\ud800"``): not a Unicode scalar value, not encodable in UTF-8
  (:class:`LoneSurrogateError`);
* more than :data:`MAX_DEPTH` levels of arrays and objects (:class:`NestingTooDeepError`);

and the reader refuses a key twice in one object (:class:`DuplicateKeyError`: two readers
may keep different copies, so what one party signed and what another acts on could differ)
and anything that is not UTF-8 JSON (:class:`MalformedJsonError`).

Pure: bytes in, a value or a :class:`JsonError` out; a value in, bytes or a
:class:`JsonError` out. Nothing else escapes either direction.
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from terminal.errors import ParseError

MAX_DEPTH = 64
"""Levels of nested arrays and objects. The deepest document of the contract (an upload's
``extra``) has six; a bound far below the interpreter's recursion limit makes the answer the
same in every process and thread."""
MAX_INT_DIGITS = 4300
"""Digits of an integer: CPython's default ``sys.get_int_max_str_digits()``, which both
directions rely on (the interpreter refuses to convert beyond it, and a reader on another
platform may lose precision long before). Nothing in onecard changes that setting."""


class JsonError(ParseError):
    """Bytes that are not canonical-contract JSON, or a value that has no canonical form."""

    code = "bad_json"


class MalformedJsonError(JsonError):
    """Not UTF-8, not JSON, or (encoding) a value that is not a JSON value."""

    code = "json_malformed"


class DuplicateKeyError(JsonError):
    """A key appears twice in one JSON object; ``key`` names it."""

    code = "json_duplicate_key"

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key[:40]!r}")
        self.key = key


class NonFiniteNumberError(JsonError):
    """``NaN``, ``Infinity`` or a number too large for a double (``1e400``)."""

    code = "json_non_finite"


class IntegerTooLongError(JsonError):
    """An integer of more than :data:`MAX_INT_DIGITS` digits."""

    code = "json_integer_too_long"


class LoneSurrogateError(JsonError):
    """A string holding a lone UTF-16 surrogate (``\\ud800``..``\\udfff`` unpaired)."""

    code = "json_lone_surrogate"


class NestingTooDeepError(JsonError):
    """Arrays and objects nested more than :data:`MAX_DEPTH` levels."""

    code = "json_too_deep"


# --- writing ------------------------------------------------------------------------------


def _refuse_type(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _c_encoder() -> Callable[[object], str] | None:
    """The C encoder of the json module with the canonical options, made once; ``None``
    when this Python has none or it disagrees with ``json.dumps`` on a sample.

    ``json.dumps`` with options builds a new encoder on every call - half the cost of an
    entry-sized object, and the back office encodes every entry it receives. A private
    interface, hence the self-check and the fallback.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:
        return None
    try:
        # markers=None: no circularity check (a cycle ends as too deep); sort_keys=True,
        # skipkeys=False, allow_nan=False.
        encoder = make(None, _refuse_type, basestring, None, ":", ",", True, False, False)

        def encode(value: object) -> str:
            return "".join(encoder(value, 0))

        sample = {"b": [1, 2.5, None, True, '\u00e9\n"', {"z": 1, "a": -0.0}], "a": 1e300}
        expected = json.dumps(sample, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return encode if encode(sample) == expected else None
    except Exception:  # any surprise in a private interface: use the public one
        return None


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse_type
)
_encode: Callable[[object], str] = _c_encoder() or _ENCODER.encode


def canonical_json(value: object) -> bytes:
    """The canonical JSON of ``value`` as UTF-8: the one serialisation hashed and signed.

    Raises a :class:`JsonError` for a value with no canonical form (see the module).
    Integer keys are written as strings, as ``json.dumps`` writes them.
    """
    try:
        text = _encode(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise _unencodable(value, exc) from None
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise LoneSurrogateError("a string holds a lone surrogate") from None
    # A document has at most as many levels as opening brackets: only a value with more
    # than MAX_DEPTH of them (a large batch, say) needs its depth measured.
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value)
    return raw


def _unencodable(value: object, exc: BaseException) -> JsonError:
    """The typed error of a value the encoder refused: found by walking it (rare: only on
    failure), so the error names the real cause rather than the encoder's wording."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return NonFiniteNumberError(f"{node!r} is not a JSON number")
        if isinstance(node, int) and not isinstance(node, bool):
            try:
                int.__repr__(node)  # what the encoder does, and what failed
            except ValueError:
                return IntegerTooLongError(f"an integer of more than {MAX_INT_DIGITS} digits")
        if isinstance(node, Mapping | list | tuple):
            if depth > MAX_DEPTH:
                return NestingTooDeepError(f"nested more than {MAX_DEPTH} levels")
            items = node.values() if isinstance(node, Mapping) else node
            stack.extend((item, depth + 1) for item in items)
    if isinstance(exc, RecursionError):
        return NestingTooDeepError(f"nested more than {MAX_DEPTH} levels (or circular)")
    return MalformedJsonError(f"no canonical JSON: {exc}")


_CONTAINERS = (dict, list, tuple)


def _depth(value: object) -> int:
    """Levels of arrays and objects in ``value`` (0 for a scalar), counted up to the first
    level beyond :data:`MAX_DEPTH`."""
    if not isinstance(value, _CONTAINERS):
        return 0
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > depth:
            depth = level
            if depth > MAX_DEPTH:
                return depth  # enough to refuse; no need to walk the rest
        # A plain loop: this runs over every member of a large batch.
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, _CONTAINERS):
                stack.append((item, level + 1))
    return depth


def _check_depth(value: object) -> None:
    if _depth(value) > MAX_DEPTH:
        raise NestingTooDeepError(f"nested more than {MAX_DEPTH} levels")


# --- reading ------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise NonFiniteNumberError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # "1e400" reaches here, not parse_constant, and would read as inf: written again it
    # would be "Infinity", which is not JSON.
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumberError(f"{text[:40]} is out of the range of a double")
    return value


# Only an escape can put a surrogate into a string (UTF-8 cannot encode one), so text
# without such an escape needs no search. False alarms ("\\ud800") only cost the search.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: object) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def parse_json(raw: bytes | bytearray | memoryview) -> Any:
    """Read ``raw`` (UTF-8 bytes) as one JSON value under the contract's rules (see the
    module); raises only :class:`JsonError`."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MalformedJsonError("JSON must be bytes")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJsonError(f"not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        # The message names the position, never the content.
        raise MalformedJsonError(f"not JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise NestingTooDeepError(f"nested more than {MAX_DEPTH} levels") from None
    except ValueError:
        # The interpreter's conversion limit (MAX_INT_DIGITS unless someone changed it);
        # checked by the interpreter rather than by a hook on every integer read.
        raise IntegerTooLongError(f"an integer of more than {MAX_INT_DIGITS} digits") from None
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise LoneSurrogateError("a string holds a lone surrogate")
    return value


def parse_json_text(text: str | bytes | bytearray | memoryview) -> Any:
    """:func:`parse_json` of JSON held as text - an SQLite ``TEXT`` column, a file read as
    ``str`` - or as bytes. A ``str`` holding a lone surrogate is not UTF-8 and refused as
    such; anything but text or bytes (an SQLite row may hold an integer or ``NULL``) is a
    :class:`MalformedJsonError`. Raises only :class:`JsonError`."""
    if isinstance(text, str):
        # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, refused there.
        return parse_json(text.encode("utf-8", "surrogatepass"))
    if not isinstance(text, bytes | bytearray | memoryview):
        raise MalformedJsonError(f"JSON must be text, not {type(text).__name__}")
    return parse_json(text)
