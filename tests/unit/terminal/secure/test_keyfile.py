"""The operator key file: format, errors that name the place but never the key, 0600 files."""

from __future__ import annotations

import contextlib
import logging
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.errors import ConfigError
from terminal.secure import (
    KeySet,
    SoftwareSecureModule,
    format_key_file,
    generate_key_set,
    load_key_file,
    parse_key_file,
    write_key_file,
)
from terminal.ssc.auth import KeyName

K1 = "00112233445566778899AABBCCDDEEFF"
K2 = "0123456789abcdef0123456789abcdef"

CONTRACT_EXAMPLE = f"""\
# onecard key file: operator secret, never committed
terminal_number = "000000000001"   # 12 digits
[des3]
irk = "{K1}"
rkssse = "{K1}"
ukssse = "{K1}"
[sm4]
irk = "{K2}"
rkssse = "{K2}"
ukssse = "{K2}"
"""


def test_parses_the_contract_example() -> None:
    keyset = parse_key_file(CONTRACT_EXAMPLE)
    assert keyset.terminal_number == "000000000001"
    assert keyset.algorithms() == {Alg.DES3, Alg.SM4}
    assert keyset.key(Alg.DES3, KeyName.RKSSSE) == bytes.fromhex(K1)
    assert keyset.key(Alg.SM4, KeyName.IRK) == bytes.fromhex(K2)  # lower-case hex too
    assert len(keyset.keys) == 6


def test_tables_and_keys_may_be_absent() -> None:
    keyset = parse_key_file(f'terminal_number = "510100000001"\n[des3]\nirk = "{K1}"\n')
    assert keyset.algorithms() == {Alg.DES3}
    assert keyset.key(Alg.DES3, KeyName.RKSSSE) is None
    assert keyset.key(Alg.SM4, KeyName.IRK) is None
    assert keyset.names(Alg.DES3) == [KeyName.IRK]


BAD_FILES = [
    ("terminal_number = ", "not a TOML key file"),
    (f'[des3]\nirk = "{K1}"\n', "terminal_number is missing"),
    (f'terminal_number = 1\n[des3]\nirk = "{K1}"\n', "terminal_number must be 12 digits"),
    (f'terminal_number = "00000000001"\n[des3]\nirk = "{K1}"\n', "12 digits"),
    (f'terminal_number = "00000000000A"\n[des3]\nirk = "{K1}"\n', "12 digits"),
    (f'terminal_number = "０００００００００００１"\n[des3]\nirk = "{K1}"\n', "12 digits"),
    (f'terminal_number = "000000000001"\n[aes]\nirk = "{K1}"\n', "unknown entry 'aes'"),
    (f'terminal_number = "000000000001"\n[ssf33]\nirk = "{K1}"\n', "unknown entry 'ssf33'"),
    (f'terminal_number = "000000000001"\noperator = "x"\n[sm4]\nirk = "{K1}"\n', "'operator'"),
    (f'terminal_number = "000000000001"\n[sm4]\nmac1 = "{K1}"\n', "unknown key 'mac1' in [sm4]"),
    ('terminal_number = "000000000001"\n[sm4]\nirk = "00112233"\n', "[sm4] irk"),
    (f'terminal_number = "000000000001"\n[sm4]\nirk = "{K1}00"\n', "got 34"),
    (f'terminal_number = "000000000001"\n[sm4]\nirk = "{K1[:-1]}G"\n', "hex digits only"),
    (f'terminal_number = "000000000001"\n[sm4]\nirk = "0x{K1[2:]}"\n', "hex digits only"),
    ('terminal_number = "000000000001"\n[sm4]\nirk = 1234\n', "must be a string"),
    ('terminal_number = "000000000001"\ndes3 = "x"\n', "must be a table"),
    ('terminal_number = "000000000001"\n[des3]\n', "table [des3] holds no keys"),
    ('terminal_number = "000000000001"\n', "holds no keys"),
    (f'terminal_number = "000000000001"\n[sm4]\nirk = "{K1}"\nirk = "{K2}"\n', "not a TOML"),
]


@pytest.mark.parametrize("text, reason", BAD_FILES)
def test_bad_files_are_config_errors_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_key_file(text, "keys.toml")
    assert info.value.code == "config_error"
    assert info.value.reason.startswith("keys.toml: ")
    assert reason in info.value.reason


@pytest.mark.parametrize("bad", [K1[:-2], K1 + "0", K1[:-1] + "Z", "  " + K1[2:]])
def test_errors_never_show_the_key(bad: str) -> None:
    text = f'terminal_number = "000000000001"\n[sm4]\nirk = "{bad}"\n'
    with pytest.raises(ConfigError) as info:
        parse_key_file(text, "keys.toml")
    assert bad.strip() not in info.value.reason
    assert bad.strip()[:16] not in info.value.reason


def test_round_trip(tmp_path) -> None:
    keyset = generate_key_set("510100000042")
    path = tmp_path / "keys.toml"
    write_key_file(keyset, path)
    loaded = load_key_file(path)
    assert loaded == keyset
    assert loaded.keys == keyset.keys
    assert parse_key_file(format_key_file(keyset)) == keyset
    des3_only = generate_key_set("000000000001", [Alg.DES3])
    write_key_file(des3_only, tmp_path / "des3.toml")
    assert load_key_file(tmp_path / "des3.toml").algorithms() == {Alg.DES3}


def test_written_file_is_0600_whatever_the_umask(tmp_path) -> None:
    path = tmp_path / "keys.toml"
    old = os.umask(0)
    try:
        write_key_file(generate_key_set("000000000001"), path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["keys.toml"]  # no temporary left behind


def test_existing_file_is_replaced_or_kept(tmp_path) -> None:
    path = tmp_path / "keys.toml"
    first, second = generate_key_set("000000000001"), generate_key_set("000000000002")
    write_key_file(first, path)
    with pytest.raises(ConfigError, match="already there"):
        write_key_file(second, path, overwrite=False)
    assert load_key_file(path) == first
    path.chmod(0o644)
    write_key_file(second, path)
    assert load_key_file(path) == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unwritable_directory_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot write"):
        write_key_file(generate_key_set("000000000001"), tmp_path / "missing" / "keys.toml")


def test_load_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_key_file(tmp_path / "absent.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe terminal_number")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_key_file(binary)
    with pytest.raises(ConfigError, match="cannot read"):
        load_key_file(tmp_path)  # a directory


def test_readable_key_file_loads_with_a_warning(tmp_path, caplog) -> None:
    path = tmp_path / "keys.toml"
    keyset = generate_key_set("000000000001")
    write_key_file(keyset, path)
    path.chmod(0o644)
    with caplog.at_level(logging.DEBUG):
        assert load_key_file(path) == keyset
    assert "readable by others" in caplog.text
    for value in keyset.keys.values():
        assert value.hex() not in caplog.text.lower()


def test_repr_and_str_hide_keys() -> None:
    keyset = generate_key_set("510100000042")
    shown = [repr(keyset), str(keyset), f"{keyset}", repr(SoftwareSecureModule(keyset))]
    for text in shown:
        assert "510100000042" in text
        for value in keyset.keys.values():
            assert value.hex() not in text.lower()
            assert str(value) not in text
    assert repr(keyset) == (
        "KeySet(terminal_number='510100000042', keys=<des3: irk rkssse ukssse; "
        "sm4: irk rkssse ukssse>)"
    )


def test_generate_key_set() -> None:
    a, b = generate_key_set("000000000001"), generate_key_set("000000000001")
    assert len(a.keys) == 6 and all(len(v) == 16 for v in a.keys.values())
    assert len(set(a.keys.values())) == 6  # every key its own
    assert a != b  # fresh randomness every time
    assert generate_key_set("000000000001", [Alg.SM4]).algorithms() == {Alg.SM4}
    with pytest.raises(ConfigError):
        generate_key_set("1")
    with pytest.raises(ConfigError):
        generate_key_set("000000000001", [Alg.SSF33])


def test_key_set_is_validated_and_frozen() -> None:
    with pytest.raises(ConfigError, match="16 bytes"):
        KeySet("000000000001", {(Alg.SM4, KeyName.IRK): bytes(8)})
    with pytest.raises(ConfigError):
        KeySet("000000000001", {(Alg.SSF33, KeyName.IRK): bytes(16)})
    with pytest.raises(ConfigError):
        KeySet("000000000001", {(Alg.SM4, "irk"): bytes(16)})
    with pytest.raises(ConfigError):
        KeySet("00000000000x", {})
    keys = {(Alg.SM4, KeyName.IRK): bytearray(16)}
    keyset = KeySet("000000000001", keys)
    keys[(Alg.SM4, KeyName.IRK)][0] = 1  # the caller's buffer is copied, not shared
    assert keyset.key(Alg.SM4, KeyName.IRK) == bytes(16)
    with pytest.raises(TypeError):
        keyset.keys[(Alg.SM4, KeyName.RKSSSE)] = bytes(16)  # type: ignore[index]
    assert hash(keyset) == hash(KeySet("000000000001", {(Alg.SM4, KeyName.IRK): bytes(16)}))


def test_software_module_from_file(tmp_path) -> None:
    path = tmp_path / "keys.toml"
    keyset = generate_key_set("510100000042", [Alg.SM4])
    write_key_file(keyset, path)
    module = SoftwareSecureModule.from_file(path)
    assert module.terminal_number == "510100000042"
    assert module.algorithms() == {Alg.SM4}
    with pytest.raises(ConfigError):
        SoftwareSecureModule.from_file(tmp_path / "absent.toml")


# --- nothing but ConfigError ----------------------------------------------------------------

FRAGMENTS = [
    'terminal_number = "000000000001"',
    'terminal_number = "12345"',
    "terminal_number = 12",
    "terminal_number = []",
    "[des3]",
    "[sm4]",
    "[ssf33]",
    "[[des3]]",
    "[des3.irk]",
    f'irk = "{K1}"',
    f'rkssse = "{K2}"',
    'ukssse = "zz"',
    "irk = 1.5",
    "irk = {a = 1}",
    "irk = [1, 2]",
    "des3 = 1",
    "sm4 = {irk = 2}",
    f'sm4 = {{irk = "{K1}"}}',
    "irk = 1979-05-27",
    '"" = ""',
    "= =",
    "#",
]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_key_file(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=8))
def test_near_valid_files_raise_only_config_error(lines: list[str]) -> None:
    try:
        keyset = parse_key_file("\n".join(lines))
    except ConfigError:
        return
    assert keyset.keys and len(keyset.terminal_number) == 12
