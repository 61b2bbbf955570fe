"""The simulator's one BER-TLV encoder (firmware_sim.tlv) and the FCIs built with it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.psam_applet import psam_fci
from firmware_sim.spec.pki import PKI_DF_NAME
from firmware_sim.ssc_applet import ssse_fci
from firmware_sim.tlv import fci, tlv
from terminal.iso7816.tlv import parse_ber_tlv

AID = bytes.fromhex("D15600000590")


@pytest.mark.parametrize(
    ("tag", "value", "encoded"),
    [
        (0x84, AID, "8406D15600000590"),
        (0x9F0C, b"\x86\x01\x03", "9F0C03860103"),
        (0x50, b"", "5000"),
        (0x53, bytes(0x7F), "537F" + "00" * 0x7F),
        (0x53, bytes(0x80), "538180" + "00" * 0x80),
        (0x53, bytes(0x100), "53820100" + "00" * 0x100),
    ],
)
def test_tlv_length_forms(tag: int, value: bytes, encoded: str) -> None:
    assert tlv(tag, value).hex().upper() == encoded


def test_tlv_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        tlv(0, b"")
    with pytest.raises(ValueError):
        tlv(0x53, bytes(0x10000))


def test_fci_template() -> None:
    assert fci(AID) == bytes.fromhex("6F088406D15600000590")
    assert fci(AID, b"\x88\x01\x1e") == bytes.fromhex("6F0D8406D15600000590A50388011E")


def test_the_fcis_of_the_applets() -> None:
    assert psam_fci() == bytes.fromhex("6F088406D15600000590")
    assert ssse_fci(3) == bytes.fromhex(
        "6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103"
    )
    assert fci(PKI_DF_NAME) == bytes.fromhex("6F0E840C") + PKI_DF_NAME


@given(st.sampled_from([0x50, 0x84, 0x9F0C, 0x9F12]), st.binary(max_size=600))
def test_the_terminals_parser_reads_what_the_card_writes(tag: int, value: bytes) -> None:
    objects = parse_ber_tlv(tlv(tag, value))
    assert [(o.tag, o.value) for o in objects] == [(tag, value)]
