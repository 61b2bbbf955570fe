"""Masking of personal identifiers for logs and default console output.

Holder data is personal data: anything printed or logged shows only enough to tell two
cards apart at a glance (``5001**********1234``), never enough to identify a person.
"""

from __future__ import annotations

import datetime


def mask_middle(value: str, head: int = 4, tail: int = 4) -> str:
    """Keep ``head`` and ``tail`` characters, star the rest (everything if too short)."""
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def mask_name(name: str) -> str:
    """Keep the first character (the family name, usually): ``张**``."""
    return name[:1] + "*" * (len(name) - 1) if len(name) > 1 else "*" * len(name)


def mask_date(value: datetime.date) -> str:
    """Keep the year only: ``1985-**-**``."""
    return f"{value.year:04d}-**-**"


def mask_region(code: str) -> str:
    """Keep the province (first 2 digits of a GB/T 2260 code): ``50****``."""
    return code[:2] + "*" * (len(code) - 2)
