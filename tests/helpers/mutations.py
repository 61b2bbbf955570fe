"""Hypothesis mutations of valid encodings: what a noisy card or a forger sends."""

from __future__ import annotations

from hypothesis import strategies as st


def mutate(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` with one byte flipped, truncated, or extended by 1-4 random bytes."""
    out = bytearray(raw)
    op = draw(st.sampled_from(["flip", "truncate", "extend"]))
    if op == "flip" and out:
        out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
    elif op == "truncate" and out:
        del out[draw(st.integers(0, len(out) - 1)) :]
    else:
        out += draw(st.binary(min_size=1, max_size=4))
    return bytes(out)
