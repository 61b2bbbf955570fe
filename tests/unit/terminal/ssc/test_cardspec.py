"""The card-facing constants and the key diversification data, against the field's facts."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import CryptoError
from terminal.ssc import auth
from terminal.ssc.cardspec import CARD_SPEC, diversification_data, region_factor

# ATR of a real 3.0 card (domain.md 2): historical bytes 00 81 4A4446 8660 5199 000001AC.
REAL_ATR_HISTORICAL = bytes.fromhex("00814A444686605199000001AC")


def test_commands_as_real_card_logs_send_them() -> None:
    """gdgly/SI_3rdCard logs: `0088000010..`, `0082000A10..`, `00A4020002EF05`, `00B207000B`."""
    internal = auth.internal_authenticate(bytes(8), bytes(8)).to_bytes()
    assert internal[:5] == bytes.fromhex("0088000010") and len(internal) == 21  # no Le
    assert auth.external_authenticate(bytes(8), bytes(8)).to_bytes()[:5] == bytes.fromhex(
        "0082000A10"
    )
    assert auth.get_challenge().to_bytes() == bytes.fromhex("0084000008")
    assert CARD_SPEC.select_ef == (0x00, 0xA4, 0x02, 0x00)
    assert CARD_SPEC.select_by_name[3] == 0x00  # P2 00: never 0C on these cards
    assert CARD_SPEC.read_by_identifier_p2 == 0x00
    assert CARD_SPEC.default_algorithm is SymmetricAlgorithm.DES3


@pytest.mark.parametrize(
    ("region", "factor"),
    [
        ("519900", b"519900sx"),
        ("500103", b"500103sx"),
        ("330381", b"330300sx"),  # Zhejiang: first four region digits, then "00"
        ("330100", b"330100sx"),
        ("331002", b"331000sx"),
    ],
)
def test_region_factor(region: str, factor: bytes) -> None:
    assert region_factor(region) == factor


@pytest.mark.parametrize("region", ["51990", "5199000", "51990X", "５１９９００", 519900])
def test_region_factor_refuses_what_is_not_six_digits(region: object) -> None:
    with pytest.raises(CryptoError):
        region_factor(region)  # type: ignore[arg-type]


def test_diversification_data_uses_t6_to_td() -> None:
    d1, d2 = diversification_data("519900", REAL_ATR_HISTORICAL)
    assert d1 == b"519900sx"
    assert d2 == bytes.fromhex("86605199000001AC")  # T6..TD of the real card
    with pytest.raises(CryptoError):
        diversification_data("519900", REAL_ATR_HISTORICAL[:12])


def test_region_rules_are_one_table() -> None:
    spec = dataclasses.replace(CARD_SPEC, region_factor_kept_digits={"33": 4, "44": 2})
    assert region_factor("440305", spec) == b"440000sx"
    assert region_factor("330381", spec) == b"330300sx"


@given(st.text(min_size=6, max_size=6, alphabet="0123456789"))
def test_region_factor_is_eight_ascii_bytes(region: str) -> None:
    factor = region_factor(region)
    assert len(factor) == 8 and factor.endswith(b"sx") and factor[:4] == region[:4].encode()
