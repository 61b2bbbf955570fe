"""Base45 (RFC 9285): bytes as text in the QR code alphanumeric character set.

Every 2 bytes ``[a, b]`` become the number ``n = a * 256 + b`` written as 3 characters
``c d e`` with ``n = c + d * 45 + e * 45**2``; a last odd byte becomes 2 characters. The
45 characters are exactly the QR alphanumeric set, so a Base45 text fills a QR code in
alphanumeric mode (5.5 bits a character: 8.25 bits a byte, 3 % more than byte mode) and
survives scanners that mangle binary data. The EU Digital COVID Certificate uses it the
same way.

Decoding is strict - the RFC's "MUST reject" cases raise :class:`Base45Error`: a character
outside the alphabet (lower case included), a length of 1 modulo 3, a 3-character group
above 65535, a final 2-character group above 255. Strictness makes the encoding a
bijection: one byte string has exactly one text.
"""

from __future__ import annotations

from terminal.errors import Base45Error

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def encoded_length(byte_count: int) -> int:
    """Characters of the Base45 text of ``byte_count`` bytes (3 per pair, 2 for an odd one)."""
    return 3 * (byte_count // 2) + 2 * (byte_count % 2)


def encode(data: bytes) -> str:
    """The Base45 text of ``data``."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        e, rest = divmod(n, 2025)
        d, c = divmod(rest, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def decode(text: str) -> bytes:
    """The bytes of a Base45 ``text``; :class:`Base45Error` for anything not strict Base45."""
    if not isinstance(text, str):
        raise Base45Error("Base45 text must be a str")
    if len(text) % 3 == 1:
        raise Base45Error(f"Base45 length {len(text)} is 1 modulo 3")
    try:
        values = [_VALUE[ch] for ch in text]
    except KeyError as exc:
        raise Base45Error(f"character {exc.args[0]!r} is not in the Base45 alphabet") from None
    out = bytearray()
    full = len(values) - len(values) % 3
    for i in range(0, full, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025
        if n > 0xFFFF:
            raise Base45Error(f"Base45 group at {i} is {n}, more than 65535")
        out += n.to_bytes(2, "big")
    if full < len(values):
        n = values[full] + values[full + 1] * 45
        if n > 0xFF:
            raise Base45Error(f"final Base45 group is {n}, more than 255")
        out.append(n)
    return bytes(out)
