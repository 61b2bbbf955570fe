"""Canonical JSON and the strict reader (terminal/wire/canonical.py): the documented form,
a round trip for every value, and a typed error - never another exception - for any bytes.
The pinned cases are the shared vectors (test_vectors.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.errors import ParseError
from terminal.wire.canonical import (
    MAX_DEPTH,
    IntegerTooLongError,
    JsonError,
    LoneSurrogateError,
    MalformedJsonError,
    NestingTooDeepError,
    NonFiniteNumberError,
    canonical_json,
    parse_json,
)

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300)
@given(_json)
def test_canonical_json_is_the_documented_dumps(value):
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected.encode("utf-8")


@settings(max_examples=300)
@given(_json)
def test_what_is_written_reads_back_the_same(value):
    raw = canonical_json(value)
    assert canonical_json(parse_json(raw)) == raw
    pretty = json.dumps(value, indent=2, ensure_ascii=True).encode()
    assert canonical_json(parse_json(pretty)) == raw  # layout and escapes do not matter


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_value_or_a_typed_error(raw):
    try:
        value = parse_json(raw)
    except JsonError as exc:
        assert isinstance(exc, ParseError) and exc.reason
        return
    assert parse_json(canonical_json(value)) == value


_json_text_pieces = st.lists(
    st.sampled_from(
        ['{"a":', "[", "]", "{", "}", ",", '"\\ud800"', '"\\udc00"', "NaN", "1e400", "-1e999",
         "Infinity", "1" * 4301, '"k"', ":", "1", "null", '"\\ud83d\\ude00"']
    ),
    max_size=30,
)  # fmt: skip


@settings(max_examples=500)
@given(_json_text_pieces)
def test_text_near_the_edges_is_a_value_or_a_typed_error(pieces):
    try:
        value = parse_json("".join(pieces).encode())
    except JsonError:
        return
    canonical_json(value)  # what reads has a canonical form


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), NonFiniteNumberError),
        ({"a": [float("-inf")]}, NonFiniteNumberError),
        (10**4301, IntegerTooLongError),
        (["\udfff"], LoneSurrogateError),
        ({"\ud800": 1}, LoneSurrogateError),
        ({1, 2}, MalformedJsonError),
        (b"bytes", MalformedJsonError),
        ({1: "a", "b": 2}, MalformedJsonError),  # keys of mixed types: no sorted order
    ],
    ids=["nan", "-inf", "4,302 digits", "surrogate", "surrogate key", "set", "bytes", "mixed"],
)
def test_values_without_canonical_json_are_typed_errors(value, error):
    with pytest.raises(error):
        canonical_json(value)


def test_nesting_is_bounded_both_ways():
    deep: list[object] = []
    node = deep
    for _ in range(MAX_DEPTH):
        node.append([])
        node = node[0]  # type: ignore[assignment]
    with pytest.raises(NestingTooDeepError):
        canonical_json(deep)  # MAX_DEPTH + 1 levels
    assert canonical_json(deep[0]) == b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(NestingTooDeepError):
        canonical_json(circular)


def test_integer_keys_are_written_as_json_dumps_writes_them():
    assert canonical_json({1: "a"}) == b'{"1":"a"}'


def test_only_bytes_are_read():
    with pytest.raises(MalformedJsonError, match="bytes"):
        parse_json("{}")  # type: ignore[arg-type]
