"""What the terminal assumes of a social security card, in one table (domain.md 2 and 5b).

Every card-dependent command header, key identifier and default the terminal sends or
applies lives in :data:`CARD_SPEC`, each with the specification's name beside it, so that a
fact found wrong in the field is corrected in one place. The values are those of the SSC
specification part 5 (command tables), the Sichuan reader specification (LD/T 33 based) and
real card logs. The data layout of EF05/EF06 is the other table, :mod:`terminal.ssc.layout`,
with the rules about the data itself: an empty spec version is a 1.0 card
(``Generation.from_spec_version``), the card number is the first 9 characters of tag 07
(its item truncates).

The simulator (``firmware_sim``) does not import this module: it has its own tables written
from the specification, so a misreading on one side shows up as a failing test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import CryptoError

Header = tuple[int, int, int, int]
"""CLA INS P1 P2 of a command."""


@dataclass(frozen=True)
class CardSpec:
    """The card-facing constants of the SSSE; spec names in the comments."""

    # SELECT (spec part 5): P2 = 00 returns the FCI. These cards define P2 00 and 02 only;
    # P2 0C ("no response data") is not theirs.
    select_by_name: Header = (0x00, 0xA4, 0x04, 0x00)  # SELECT DF by name (SSSE)
    select_ef: Header = (0x00, 0xA4, 0x02, 0x00)  # SELECT EF under the current DF (EF05)

    # READ RECORD (spec part 5; real logs read `00 A4 02 00 02 EF05` then `00 B2 07 00 0B`).
    read_record_ins: int = 0xB2
    read_by_identifier_p2: int = 0x00  # current EF, record identifier (= tag) in P1
    read_to_last_mode: int = 0b101  # P2 = SFI<<3 | 101: records P1..last (ISO 7816-4)

    # Security commands (spec part 5 table 22; Sichuan spec table B.1).
    internal_authenticate: Header = (0x00, 0x88, 0x00, 0x00)  # INTERNAL AUTHENTICATE, P1=P2=00
    get_challenge: Header = (0x00, 0x84, 0x00, 0x00)  # GET CHALLENGE
    external_authenticate: tuple[int, int, int] = (0x00, 0x82, 0x00)  # EXTERNAL AUTH., P2 = key
    rkssse_key_id: int = 0x0A  # RKSSSE, the read key of the SSSE (Sichuan spec table B.1)
    challenge_length: int = 8

    # PIN (spec part 5).
    verify_pin: Header = (0x00, 0x20, 0x00, 0x00)  # VERIFY
    change_pin: Header = (0x80, 0x5E, 0x01, 0x00)  # CHANGE PIN (old || FF || new)

    # Defaults where the card says nothing.
    default_algorithm: SymmetricAlgorithm = SymmetricAlgorithm.DES3
    """No algorithm template (9F0C/86) in the FCI: a DES/3DES card (Sichuan spec 10.1)."""

    # Key diversification, level 1 (Sichuan spec 10.3): ASCII(region6) || "sx", except where
    # the card identification code opens with one of these prefixes: keep that many region
    # digits, fill with "0" to 6 digits. Zhejiang (33): 330381 -> "330300" "sx".
    region_factor_suffix: bytes = b"sx"
    region_factor_kept_digits: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"33": 4})
    )


CARD_SPEC = CardSpec()

REGION_DIGITS = 6
HISTORICAL_BYTES_NEEDED = 13
"""Diversification level 2 uses ATR historical bytes T6..TD, ``historical[5:13]``."""


def region_factor(region6: str, spec: CardSpec = CARD_SPEC) -> bytes:
    """The 8-byte level-1 diversification data of a card of region ``region6``.

    ``"510104"`` -> ``b"510104sx"``; ``"330381"`` -> ``b"330300sx"`` (Zhejiang keeps only the
    first four region digits). Raises :class:`CryptoError` unless ``region6`` is 6 ASCII digits.
    """
    if not (
        isinstance(region6, str)
        and len(region6) == REGION_DIGITS
        and region6.isascii()
        and region6.isdigit()
    ):
        raise CryptoError("region must be 6 ASCII digits")
    kept = next(
        (n for prefix, n in spec.region_factor_kept_digits.items() if region6.startswith(prefix)),
        REGION_DIGITS,
    )
    return region6[:kept].ljust(REGION_DIGITS, "0").encode("ascii") + spec.region_factor_suffix


def diversification_data(
    region6: str, historical13: bytes, spec: CardSpec = CARD_SPEC
) -> tuple[bytes, bytes]:
    """D1 and D2, the two 8-byte diversification inputs of a card key: the region factor
    (:func:`region_factor`) and ATR historical bytes T6..TD. A PSAM receives them in DELIVERY
    SESSION KEY; the software module derives the same two levels."""
    d1 = region_factor(region6, spec)
    if not isinstance(historical13, bytes | bytearray | memoryview):
        raise CryptoError("historical bytes must be bytes")
    hist = bytes(historical13)
    if len(hist) < HISTORICAL_BYTES_NEEDED:
        raise CryptoError(f"need at least 13 ATR historical bytes, got {len(hist)}")
    return d1, hist[5:13]
