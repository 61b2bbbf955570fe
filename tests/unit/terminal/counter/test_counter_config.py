"""The options of terminal.toml this part reads: ``[counter] token_file`` and ``[screen]
voice_cache_mb`` / ``voice_cache_clips`` (terminal/runtime/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.paths import EXAMPLES

from terminal.errors import ConfigError
from terminal.runtime.config import load_config, parse_config

TERMINAL = {"id": "DESK-0001", "profile": "counter", "service": "hospital-registration"}


def test_the_token_file_defaults_to_beside_the_journal() -> None:
    config = parse_config(
        {"terminal": TERMINAL, "backoffice": {"journal": "/var/lib/onecard/journal.db"}}
    )
    assert config.counter.token_file == "/var/lib/onecard/counter-api.token"


def test_a_relative_token_file_is_taken_from_the_configuration_s_directory() -> None:
    table = {"terminal": TERMINAL, "counter": {"token_file": "secrets/his.token"}}
    config = parse_config(table, base=Path("/etc/onecard"))
    assert config.counter.token_file == "/etc/onecard/secrets/his.token"


def test_the_voice_cache_bounds() -> None:
    config = parse_config({"terminal": TERMINAL})
    assert (config.screen.voice_cache_mb, config.screen.voice_cache_clips) == (50, 200)
    table = {"terminal": TERMINAL, "screen": {"voice_cache_mb": 8, "voice_cache_clips": 40}}
    config = parse_config(table)
    assert (config.screen.voice_cache_mb, config.screen.voice_cache_clips) == (8, 40)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("voice_cache_mb", 0),
        ("voice_cache_mb", 1.5),
        ("voice_cache_mb", True),
        ("voice_cache_clips", 0),
        ("voice_cache_clips", "100"),
    ],
)
def test_voice_cache_bounds_out_of_range_are_refused(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_config({"terminal": TERMINAL, "screen": {key: value}})


def test_the_counter_example_names_its_token_file() -> None:
    config = load_config(EXAMPLES / "counter.toml")
    assert config.counter.token_file.endswith("counter-api.token")
