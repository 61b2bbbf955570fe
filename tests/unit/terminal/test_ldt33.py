"""LD/T 33 iReadCardBas output, error codes, and the masking of identifiers."""

from __future__ import annotations

import datetime

from terminal import ldt33
from terminal.errors import (
    CardError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
    NotSocialSecurityCardError,
    PcscUnavailableError,
)
from terminal.iso7816 import atr
from terminal.privacy.masking import mask_date, mask_middle, mask_name, mask_region

REAL_ATR = bytes.fromhex("3B6D000000814A444686605199000001AC")


def test_historical_bytes_of_t0_t1_and_contactless_atrs():
    assert atr.historical_bytes(REAL_ATR).hex().upper() == "00814A444686605199000001AC"
    t1 = bytes.fromhex("3BED00008131FE4500814A44468660510120000002BB")
    assert atr.historical_bytes(t1).hex().upper() == "00814A44468660510120000002"
    cl = bytes.fromhex("3B8D800100814A4446866050011000000163")
    assert atr.historical_bytes(cl).hex().upper() == "00814A44468660500110000001"
    assert atr.historical_bytes(b"") == b""
    assert atr.historical_bytes(b"\x3b\xff") == b""  # truncated ATR: nothing, no crash


def test_ireadcardbas_field_order_and_trailing_pipe():
    line = ldt33.ireadcardbas(
        region="519900",
        ssn="510104195001010018",
        card_number="D2143569X",
        card_id="519900D15600000510000B26FFFFFFFF",
        name="测试",
        atr=REAL_ATR,
        spec_version="3.00",
        issue_date=datetime.date(2020, 1, 2),
        expiry_date=datetime.date(2030, 1, 2),
        device_number="DEV1",
    )
    assert line == (
        "519900|510104195001010018|D2143569X|519900D15600000510000B26FFFFFFFF|测试|"
        "00814A444686605199000001AC|3.00|20200102|20300102|000000000000|DEV1|"
    )


def test_error_codes():
    assert ldt33.error_code(NotSocialSecurityCardError("x", 0x6A82)) == -1
    assert ldt33.error_code(NoCardError("x")) == -2
    assert ldt33.error_code(CardRemovedError("x")) == -4
    assert ldt33.error_code(NoReaderError("x")) == -11
    assert ldt33.error_code(PcscUnavailableError("x")) == -11
    assert ldt33.error_code(CardError("x", 0x6A82)) == -27266


def test_masking():
    assert mask_middle("500103198506150014") == "5001**********0014"
    assert mask_middle("abc") == "***"
    assert mask_name("张三丰") == "张**"
    assert mask_name("张") == "*"
    assert mask_date(datetime.date(1985, 6, 15)) == "1985-**-**"
    assert mask_region("500103") == "50****"
