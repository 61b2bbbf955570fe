"""Canonical JSON (docs/sync.md): the bytes that hashes and signatures cover.

Also the strict JSON reader of the back office: Python's :func:`json.loads` accepts
``NaN``/``Infinity``, silently keeps the last of duplicate keys and can exhaust the stack on
deep nesting; each of those would make the canonical form of what we store differ from what
the sender hashed, so here each is a :class:`BadRequestError`.
"""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Callable
from typing import Any

from backoffice.errors import BadRequestError

# One encoder, built once: json.dumps with options builds a new JSONEncoder on every call,
# which is a third of the cost for an entry-sized object.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _c_encoder() -> Callable[[object], str] | None:
    """The C encoder of the json module with the canonical options, made once; ``None``
    when this Python has none or it disagrees with ``json.dumps`` on a sample.

    Ingest serialises every entry to check its hash, and JSONEncoder.encode rebuilds this
    C object on each call - half the cost of a small object. A private interface, hence
    the self-check and the fallback.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:
        return None
    try:
        # markers=None: no circularity check (decoded JSON cannot be circular);
        # allow_nan=True as json.dumps, so both encoders agree on every input.
        encoder = make(None, _ENCODER.default, basestring, None, ":", ",", True, False, True)

        def encode(obj: object) -> str:
            return "".join(encoder(obj, 0))

        sample = {"b": [1, 2.5, None, True, '\u00e9\n"', {"z": 1, "a": -0.0}], "a": 1e300}
        if encode(sample) != _ENCODER.encode(sample):
            return None
        return encode
    except Exception:  # any surprise in a private interface: use the public one
        return None


_encode = _c_encoder() or _ENCODER.encode


def canonical_text(obj: object) -> str:
    """:func:`canonical_json` before UTF-8 encoding."""
    return _encode(obj)


def canonical_json(obj: object) -> bytes:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` as
    UTF-8: the one serialisation hashed and signed."""
    return _encode(obj).encode("utf-8")


def _no_constants(name: str) -> Any:
    raise BadRequestError(f"JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    # "1e400" parses to inf without passing through parse_constant; it would re-serialise as
    # "Infinity", which is not JSON.
    value = float(text)
    if not math.isfinite(value):
        raise BadRequestError("JSON number out of range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequestError(f"duplicate JSON key {key[:40]!r}")
        out[key] = value
    return out


def loads_strict(body: bytes | str) -> Any:
    """Parse JSON strictly: UTF-8 only, no NaN/Infinity, no duplicate keys, bounded depth.

    Raises :class:`BadRequestError` for anything else; never another exception.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestError(f"body is not UTF-8 (byte {exc.start})") from None
    elif isinstance(body, str):
        text = body
    else:
        raise BadRequestError("body must be bytes or text")
    try:
        return json.loads(
            text,
            parse_constant=_no_constants,
            parse_float=_finite_float,
            object_pairs_hook=_no_duplicates,
        )
    except BadRequestError:
        raise
    except RecursionError:
        raise BadRequestError("JSON nested too deeply") from None
    except (ValueError, TypeError) as exc:
        # JSONDecodeError is a ValueError; its message names the position, not the content.
        raise BadRequestError(f"malformed JSON: {exc}") from None
