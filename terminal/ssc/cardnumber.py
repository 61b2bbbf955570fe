"""The social security card number (卡号, EF05 tag 07): 8-character body + check character.

The body is an upper-case letter (a district of the issuing region) and 7 digits. Letters
count A=10, B=11, ...; the weights are 3 7 9 10 5 8 4 2; the check is
``11 - (sum mod 11)``, written ``X`` for 10 and ``0`` for 11. The spec's worked example:
body ``D2143569`` has check ``X``.
"""

from __future__ import annotations

from terminal.errors import FieldError

WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _char_value(ch: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - ord("0")
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    raise FieldError(f"card number character {ch!r} is neither a digit nor A-Z")


def check_character(body: str) -> str:
    """Check character for an 8-character card number body."""
    if len(body) != 8:
        raise FieldError(f"card number body must have 8 characters, got {len(body)}")
    total = sum(_char_value(ch) * w for ch, w in zip(body, WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def is_valid(card_number: str) -> bool:
    """True when ``card_number`` (9 characters) carries the right check character."""
    if len(card_number) != 9:
        return False
    try:
        return check_character(card_number[:8]) == card_number[8]
    except FieldError:
        return False
