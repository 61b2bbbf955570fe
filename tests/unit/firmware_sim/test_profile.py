"""Card profiles: the shipped samples load, and every kind of bad file gets a clear ConfigError."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import textwrap
import tomllib
from pathlib import Path

import pytest

import firmware_sim.profile as profile_module
from firmware_sim.cardos import LeMode
from firmware_sim.profile import (
    DEFAULT_SAMPLE,
    citizen_id_check_digit,
    load_profile,
    load_sample,
    parse_profile,
    sample_names,
    sample_profile_path,
    split_name,
)
from firmware_sim.spec.ssc import Generation
from terminal.errors import ConfigError
from terminal.ssc import cardnumber

BASE = sample_profile_path("chongqing-2.0").read_text(encoding="utf-8")


def with_value(key: str, value: str, document: str = BASE) -> str:
    """``document`` with the line ``key = ...`` set to ``key = value``."""
    changed, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", document)
    assert count == 1, key
    return changed


def without(key: str, document: str = BASE) -> str:
    changed, count = re.subn(rf"(?m)^{key} = .*\n", "", document)
    assert count == 1, key
    return changed


def config_error(document: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_profile(document, "test.toml")
    return info.value.reason


# --- the samples ----------------------------------------------------------------------------


def test_three_samples_ship() -> None:
    assert set(sample_names()) >= {"chongqing-1.0", "chongqing-2.0", "sichuan-3.0"}
    assert DEFAULT_SAMPLE == "chongqing-2.0"
    assert sample_profile_path() == sample_profile_path("chongqing-2.0")
    assert load_sample().name == "chongqing-2.0"


def test_unknown_sample_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"chongqing-2\.0"):
        sample_profile_path("atlantis-9.0")


@pytest.mark.parametrize(
    ("name", "generation", "protocol", "algorithm", "multi_record", "category", "region"),
    [
        ("chongqing-2.0", Generation.V2, "T=0", 1, True, "3", "500103"),
        ("sichuan-3.0", Generation.V3, "T=1", 3, True, "4", "510104"),
        ("chongqing-1.0", Generation.V1, "T=0", 1, False, "2", "500106"),
    ],
)
def test_samples_load_as_specified(
    name: str,
    generation: Generation,
    protocol: str,
    algorithm: int,
    multi_record: bool,
    category: str,
    region: str,
) -> None:
    profile = load_sample(name)
    assert profile.name == name
    assert profile.generation is generation
    assert profile.card.protocol == protocol
    assert profile.card.algorithm == algorithm
    assert profile.card.multi_record is multi_record
    assert profile.card.le_mode is LeMode.EXACT
    assert profile.issuer.category == category
    assert profile.issuer.region == region
    assert len(profile.card.historical) == 13


SSC_SAMPLES = [
    "chongqing-1.0",
    "chongqing-2.0",
    "sichuan-3.0",
    "chongqing-2.0-t0",
    "zhejiang-2.0",
    "sichuan-3.0-transit",
]


@pytest.mark.parametrize("name", SSC_SAMPLES)
def test_samples_carry_valid_check_characters(name: str) -> None:
    # the terminal's check-character code cross-checks the simulator's
    profile = load_sample(name)
    assert cardnumber.is_valid(profile.issuer.card_number)
    ssn = profile.holder.ssn
    assert citizen_id_check_digit(ssn[:17]) == ssn[17]
    assert ssn[6:14] == f"{profile.holder.birth_date:%Y%m%d}"
    assert ssn[:6] == profile.holder.birthplace
    assert int(ssn[16]) % 2 == (1 if profile.holder.sex == "1" else 0)
    assert "测试" in profile.holder.name  # obviously test data


def test_only_the_sichuan_sample_needs_the_name_extension() -> None:
    for name in sample_names():
        profile = load_sample(name)
        if profile.holder is None:  # a plain T-Union card
            continue
        _, ext = split_name(profile.holder.name, profile.generation)
        assert bool(ext) == (name == "sichuan-3.0")


def test_load_profile_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "my-card.toml"
    path.write_text(BASE, encoding="utf-8")
    profile = load_profile(path)
    assert profile.name == "my-card"
    assert profile == load_profile(str(path))


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read profile"):
        load_profile(tmp_path / "missing.toml")


# --- derived values -------------------------------------------------------------------------


def test_historical_bytes_from_pieces() -> None:
    profile = parse_profile(
        with_value("manufacturer", '"1234"', with_value("chip_vendor", '"00AA"'))
    )
    assert profile.card.historical == bytes.fromhex("00AA4A4446123450011000000" + "1")


def test_historical_given_whole() -> None:
    document = BASE
    for key in ("chip_vendor", "os_vendor", "manufacturer"):
        document = without(key, document)
    document = document.replace("[card]\n", '[card]\nhistorical = "00814A444686605199000001AC"\n')
    assert parse_profile(document).card.historical == bytes.fromhex("00814A444686605199000001AC")


def test_defaults_for_atr_pieces_and_uid() -> None:
    document = BASE
    for key in ("chip_vendor", "os_vendor", "manufacturer", "uid"):
        document = without(key, document)
    profile = parse_profile(document)
    assert profile.card.historical == load_sample("chongqing-2.0").card.historical
    assert profile.card.uid == profile.issuer.serial == bytes.fromhex("10000001")


def test_lenient_le_mode() -> None:
    assert parse_profile(with_value("le_mode", '"lenient"')).card.le_mode is LeMode.LENIENT


# --- name split -----------------------------------------------------------------------------


def test_name_split_falls_between_characters() -> None:
    name = "测" * 14 + "a" + "试" * 3  # 29 bytes + a 2-byte character that must not be cut
    head, tail = split_name(name, Generation.V2)
    assert head == ("测" * 14 + "a").encode("gbk")
    assert tail == ("试" * 3).encode("gbk")


def test_name_of_exactly_30_bytes_needs_no_extension() -> None:
    assert split_name("测" * 15, Generation.V1) == (("测" * 15).encode("gbk"), b"")


# --- bad files ------------------------------------------------------------------------------


def test_bad_card_number_check_character() -> None:
    reason = config_error(with_value("card_number", '"A01000012"'))
    assert "card_number" in reason and "'3'" in reason


@pytest.mark.parametrize("key", ["ssn", "card_id", "spec_version", "name", "birth_date"])
def test_missing_field(key: str) -> None:
    reason = config_error(without(key))
    assert key in reason and "missing" in reason


def test_missing_table() -> None:
    document = BASE.split("[holder]")[0]
    assert "[holder]" in config_error(document)


def test_overlong_name_on_2_0_card() -> None:
    reason = config_error(with_value("name", '"' + "测" * 26 + '"'))  # 52 GBK bytes
    assert "name" in reason and "52" in reason


def test_name_over_30_bytes_on_1_0_card() -> None:
    document = with_value("spec_version", '"1.00"', with_value("name", '"' + "测" * 16 + '"'))
    assert "1.0" in config_error(document)


def test_long_name_fits_with_4e_on_2_0_card() -> None:
    profile = parse_profile(with_value("name", '"' + "测" * 25 + '"'))  # 50 bytes: 30 + 20
    assert profile.holder.name == "测" * 25


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("name", '"测试😀"', "GBK"),
        ("name", '"  "', "empty"),
        ("ssn", '"500103198506150015"', "check digit"),
        ("ssn", '"5001031985061500"', "17 digits"),
        ("card_number", '"a01000013"', "letter"),
        ("card_id", '"500103A15600000510000001FFFFFFFF"', "D156000005"),
        ("card_id", '"5001"', "region"),
        ("institution", '"9156"', "9156000002"),
        ("institution", '"915700000250010050010001"', "9156000002"),  # not the prefix
        ("institution", '"9156000002500100500100AB"', "24 digits"),  # cn: digits only
        ("spec_version", '"4.00"', "version"),
        ("protocol", '"T=2"', "T=0"),
        ("le_mode", '"strict"', "exact"),
        ("multi_record", '"yes"', "bool"),
        ("algorithm", "4", "SM4"),
        ("algorithm", "true", "int"),
        ("category", '"5"', "elderly"),
        ("category", "3", "str"),
        ("sex", '"M"', "female"),
        ("ethnicity", '"1"', "GB 3304"),
        ("birthplace", '"5001"', "GB/T 2260"),
        ("birth_date", '"1985-06-15"', "TOML date"),
        ("issue_date", "2019-06-01T10:00:00", "TOML date"),
        ("expiry_date", "2018-01-01", "not after"),
        ("chip_vendor", '"0081FF"', "2 bytes"),
        ("uid", '"0102"', "4 or 7 bytes"),
    ],
)
def test_invalid_field(key: str, value: str, words: str) -> None:
    reason = config_error(with_value(key, value))
    assert key in reason and words in reason
    assert reason.startswith("test.toml: [")


def test_unknown_key_and_unknown_table() -> None:
    assert "multi_recod" in config_error(BASE.replace("[card]\n", "[card]\nmulti_recod = 1\n"))
    assert "extra" in config_error(BASE + "\n[extra]\nx = 1\n")


def test_historical_and_pieces_together_are_ambiguous() -> None:
    document = BASE.replace("[card]\n", '[card]\nhistorical = "00814A444686605199000001AC"\n')
    assert "chip_vendor" in config_error(document)


def test_invalid_toml() -> None:
    assert "not valid TOML" in config_error("[card\n")


def test_profile_is_frozen() -> None:
    profile = load_sample()
    with pytest.raises(AttributeError):
        profile.holder.name = "x"  # type: ignore[misc]
    assert isinstance(profile.issuer.issue_date, dt.date)


def test_the_documented_schema_example_is_a_valid_profile() -> None:
    doc = profile_module.__doc__ or ""
    example = doc.split("::\n", 1)[1].split("\nOptional tables")[0]
    profile = parse_profile(textwrap.dedent(example), "docstring.toml")
    assert profile.issuer.card_number == "A01000013"


# --- field shapes (domain.md 5b) ------------------------------------------------------------


def test_the_field_samples_load_as_specified() -> None:
    t0 = load_sample("chongqing-2.0-t0")
    assert (t0.card.protocol, t0.card.algorithm, t0.card.fci_template) == ("T=0", 1, False)
    assert not t0.card.name_extension and not t0.card.multi_record and not t0.card.sfi_record_id
    zhejiang = load_sample("zhejiang-2.0")
    assert zhejiang.issuer is not None and zhejiang.issuer.region == "330381"
    assert zhejiang.card.historical[7:9] == bytes.fromhex("3303")
    transit = load_sample("sichuan-3.0-transit")
    assert transit.generation is Generation.V3 and transit.card.algorithm == 3
    assert transit.tunion is not None and transit.tunion.algorithm == 3
    assert not transit.card.multi_record
    for name in ("tunion-plain", "tunion-bit31"):
        plain = load_sample(name)
        assert not plain.has_ssse and plain.issuer is None and plain.holder is None
        assert plain.tunion is not None and plain.keys is None
    bit31 = load_sample("tunion-bit31").tunion
    assert bit31 is not None and bit31.balance_bit31 and not bit31.fci_public_info
    assert bit31.empty_log_records == 8 and len(bit31.purchase_log) == 2


@pytest.mark.parametrize("name", sample_names())
def test_every_sample_round_trips_through_format_profile(name: str) -> None:
    profile = load_sample(name)
    again = parse_profile(profile_module.format_profile(profile), f"{name}.toml")
    assert again == profile


def test_no_algorithm_template_means_a_des_card() -> None:
    document = with_value("algorithm", "3", BASE).replace(
        "[card]\n", "[card]\nfci_template = false\n"
    )
    assert "DES" in config_error(document)
    document = BASE.replace("[card]\n", "[card]\nfci_template = false\n")
    assert parse_profile(document).card.fci_template is False


def test_no_tag_4e_holds_only_30_name_bytes() -> None:
    document = BASE.replace("[card]\n", "[card]\nname_extension = false\n")
    assert parse_profile(document).card.name_extension is False
    reason = config_error(with_value("name", '"' + "测" * 20 + '"', document))
    assert "4E" in reason


def test_card_number_value_longer_than_9() -> None:
    profile = parse_profile(with_value("card_number", '"A010000130"'))
    assert profile.issuer is not None and profile.issuer.card_number == "A010000130"
    assert "check" in config_error(with_value("card_number", '"A010000120"'))


def test_empty_spec_version_is_a_1_0_card() -> None:
    document = with_value("spec_version", '""', with_value("name", '"测试"'))
    assert parse_profile(document).generation is Generation.V1


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("select_p2_0c", "1", "bool"),
        ("fci_template", '"false"', "bool"),
        ("partial_df_name", '"yes"', "bool"),
        ("extended_length", "1", "bool"),
        ("challenge_lengths", "8", "list"),
        ("challenge_lengths", "[5]", "4, 8, 16"),
        ("challenge_lengths", "[]", "4, 8, 16"),
        ("challenge_lengths", "[true]", "4, 8, 16"),
    ],
)
def test_invalid_card_option(key: str, value: str, words: str) -> None:
    reason = config_error(BASE.replace("[card]\n", f"[card]\n{key} = {value}\n"))
    assert key in reason and words in reason


def test_invalid_sfi_record_id() -> None:
    reason = config_error(with_value("sfi_record_id", '"no"'))
    assert "sfi_record_id" in reason and "bool" in reason


def test_lenient_capabilities_are_off_unless_named() -> None:
    document = without("sfi_record_id")
    card = parse_profile(document).card
    assert not card.sfi_record_id and not card.select_p2_0c
    assert not card.partial_df_name and not card.extended_length
    assert card.challenge_lengths == (8,)
    options = "partial_df_name = true\nextended_length = true\nchallenge_lengths = [16, 4, 8]\n"
    profile = parse_profile(document.replace("[card]\n", "[card]\n" + options))
    assert profile.card.partial_df_name and profile.card.extended_length
    assert profile.card.challenge_lengths == (4, 8, 16)
    assert parse_profile(profile_module.format_profile(profile)) == profile


def test_a_control_character_in_a_text_field_is_refused() -> None:
    document = BASE.replace('name = "张测试"', 'name = "测试\\n甲"')  # TOML "\n": a line break
    reason = config_error(document)
    assert "name" in reason and "control character U+000A" in reason


@pytest.mark.parametrize("text", ["测试\n甲", 'a"b\\c', "tab\there", "bell\x07", "del\x7f"])
def test_written_text_is_valid_toml_whatever_it_holds(text: str) -> None:
    """A profile made in code (not parsed) may hold anything: the file written is still
    TOML that reads back the same text, and the parser then says what is wrong with it."""
    profile = load_sample()
    assert profile.holder is not None
    odd = dataclasses.replace(profile, holder=dataclasses.replace(profile.holder, name=text))
    document = profile_module.format_profile(odd, comment=f"made with {text}")
    assert tomllib.loads(document)["holder"]["name"] == text
    if any(c < " " or c == "\x7f" for c in text):
        assert "control character" in config_error(document)
    else:
        assert parse_profile(document).holder.name == text


TUNION = """
[tunion]
algorithm = 3
balance = 500
app_serial = "50000000000000000042"
issuer_code = "5000"
city_code = "5000"
"""


def test_tunion_table_with_defaults() -> None:
    profile = parse_profile(BASE + TUNION)
    settings = profile.tunion
    assert settings is not None and settings.balance == 500 and settings.counter == 0
    assert settings.fci_public_info and not settings.fci_label and not settings.balance_bit31
    assert settings.public_info.to_bytes()[10:20] == bytes.fromhex("50000000000000000042")
    assert settings.purchase_key is None and "<hidden>" not in repr(settings)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("algorithm = 2", "SM4"),
        ("balance = 2147483648", "outside"),
        ("counter = 65536", "outside"),
        ('purchase_log = ["00"]', "23 bytes"),
        ('app_serial = "5000"', "10 bytes"),
        ("empty_log_records = -1", "outside"),
        ('purchase_key = "00"', "16 bytes"),
        ("colour = 1", "unknown"),
    ],
)
def test_invalid_tunion_table(line: str, words: str) -> None:
    key = line.split(" = ")[0]
    table = re.sub(rf"(?m)^{key} = .*\n", "", TUNION) + line + "\n"
    reason = config_error(BASE + table)
    assert "[tunion]" in reason and words in reason


PLAIN = (
    """
[card]
protocol = "T=1"
historical = "0086A1B2C3"
"""
    + TUNION
)


def test_plain_tunion_card() -> None:
    profile = parse_profile(PLAIN)
    assert not profile.has_ssse and profile.card.historical == bytes.fromhex("0086A1B2C3")
    assert profile.card.uid == bytes.fromhex("00000042")  # low 4 bytes of the app serial


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.replace("[card]\n", '[card]\nspec_version = "2.00"\n'), "plain T-Union"),
        (lambda d: d.replace('historical = "0086A1B2C3"\n', ""), "historical"),
        (
            lambda d: d + '\n[keys]\nirk = "' + "00" * 16 + '"\nrkssse = "' + "00" * 16 + '"\n',
            "SSSE",
        ),
    ],
)
def test_invalid_plain_tunion_card(change, words: str) -> None:
    assert words in config_error(change(PLAIN))


def test_issuer_without_holder_is_refused() -> None:
    assert "[holder]" in config_error(BASE.split("[holder]")[0] + TUNION)
