"""What the library gate does with a patron's standing (PatronPolicy), which identifier it
sends (patron_identifier), and the [venue.ils] settings."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest

from terminal.errors import ConfigError
from terminal.privacy.cardtoken import card_token
from terminal.venue.ils import Fallback, IlsRequest, IlsSettings, fallback_decision
from terminal.venue.sip2 import (
    DEFAULT_NOT_A_PATRON_MESSAGE,
    FlagDecision,
    LibraryDecision,
    NotAPatron,
    PatronFlag,
    PatronIdError,
    PatronIdKind,
    PatronPolicy,
    PatronStanding,
    Sip2FormatError,
    patron_identifier,
)

KEY = bytes(range(32))


def standing(*flags: PatronFlag, valid: bool | None = True) -> PatronStanding:
    return PatronStanding(valid_patron=valid, flags=frozenset(flags), fee_amount=Decimal(0))


# --- the decision -------------------------------------------------------------------------


def test_a_patron_in_good_standing_is_admitted() -> None:
    assert PatronPolicy().decide(standing()) == LibraryDecision(True, "patron_ok", "")
    welcome = PatronPolicy.from_dict({"welcome_message": "欢迎光临"})
    assert welcome.decide(standing()).message == "欢迎光临"


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (PatronFlag.card_reported_lost, "借书证已挂失，请到服务台"),
        (PatronFlag.too_many_items_overdue, "有逾期未还图书，请先归还"),
        (PatronFlag.excessive_outstanding_fines, "欠款超过限额，请到服务台缴费"),
    ],
)
def test_default_refusals(flag: PatronFlag, message: str) -> None:
    assert PatronPolicy().decide(standing(flag)) == LibraryDecision(
        False, f"patron_blocked:{flag.name}", message
    )


def test_borrowing_flags_do_not_keep_anyone_out() -> None:
    decision = PatronPolicy().decide(
        standing(PatronFlag.charge_privileges_denied, PatronFlag.too_many_items_charged)
    )
    assert decision == LibraryDecision(True, "patron_ok", "")


def test_a_warning_admits_with_its_message_and_a_refusal_wins() -> None:
    policy = PatronPolicy()
    warned = policy.decide(standing(PatronFlag.recall_overdue))
    assert warned.admit and warned.reason == "patron_warned:recall_overdue" and warned.message
    both = policy.decide(standing(PatronFlag.recall_overdue, PatronFlag.card_reported_lost))
    assert both.reason == "patron_blocked:card_reported_lost"


def test_the_first_refusing_flag_in_wire_order_names_the_refusal() -> None:
    decision = PatronPolicy().decide(
        standing(PatronFlag.excessive_outstanding_fines, PatronFlag.card_reported_lost)
    )
    assert decision.reason == "patron_blocked:card_reported_lost"


def test_not_a_patron() -> None:
    admitted = PatronPolicy().decide(standing(*PatronFlag, valid=False))
    assert admitted == LibraryDecision(True, "not_a_patron", DEFAULT_NOT_A_PATRON_MESSAGE)
    refusing = PatronPolicy.from_dict({"not_a_patron": "refuse"})
    assert refusing.decide(standing(valid=False)).admit is False
    assert refusing.decide(standing(valid=False)).message  # a default telling how to register
    custom = PatronPolicy.from_dict({"not_a_patron_message": "请到二楼办证处办理读者证"})
    assert custom.decide(standing(valid=False)).message == "请到二楼办证处办理读者证"


def test_without_bl_the_flags_decide() -> None:
    assert PatronPolicy().decide(standing(valid=None)).reason == "patron_ok"
    lost = PatronPolicy().decide(standing(PatronFlag.card_reported_lost, valid=None))
    assert not lost.admit


POLICY_TOML = """
not_a_patron = "admit_for_reading"
not_a_patron_message = "可入馆阅览，办证请到一楼服务台"

[flags]
too_many_items_overdue = "warn"
charge_privileges_denied = { decision = "refuse", message = "借阅权限已暂停" }
too_many_renewals = "refuse"
card_reported_lost = { decision = "refuse" }
"""


def test_policy_from_toml() -> None:
    policy = PatronPolicy.from_dict(tomllib.loads(POLICY_TOML))
    assert policy.not_a_patron is NotAPatron.admit_for_reading
    overdue = policy.decide(standing(PatronFlag.too_many_items_overdue))
    assert overdue == LibraryDecision(
        True, "patron_warned:too_many_items_overdue", "有逾期未还图书，请先归还"
    )
    assert policy.decide(standing(PatronFlag.charge_privileges_denied)).message == (
        "借阅权限已暂停"
    )
    renewals = policy.decide(standing(PatronFlag.too_many_renewals))
    assert not renewals.admit and renewals.message  # a general text, never empty
    assert policy.rules[PatronFlag.card_reported_lost].decision is FlagDecision.refuse
    assert policy.rules[PatronFlag.excessive_outstanding_fines].decision is FlagDecision.refuse


@pytest.mark.parametrize(
    "config",
    [
        {"flagz": {}},
        {"flags": {"card_lost": "refuse"}},
        {"flags": {"card_reported_lost": "block"}},
        {"flags": {"card_reported_lost": {"message": "x"}}},
        {"flags": {"card_reported_lost": {"decision": "refuse", "colour": "red"}}},
        {"flags": {"card_reported_lost": {"decision": "refuse", "message": 3}}},
        {"flags": {"card_reported_lost": 1}},
        {"flags": ["card_reported_lost"]},
        {"not_a_patron": "admit"},
        {"not_a_patron_message": 5},
    ],
)
def test_policy_refuses_what_it_cannot_read(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PatronPolicy.from_dict(config)


# --- the identifier -----------------------------------------------------------------------


def test_patron_identifier_choices() -> None:
    have = {"card_number": "A12345678", "social_security_number": "110101199003071234"}
    assert patron_identifier("card_number", **have) == "A12345678"
    assert patron_identifier(PatronIdKind.social_security_number, **have) == ("110101199003071234")
    token = patron_identifier("token", **have, token_key=KEY)
    assert token == card_token(KEY, "A12345678")[:8].hex()
    assert len(token) == 16 and token == token.lower()


def test_patron_identifier_refusals() -> None:
    with pytest.raises(PatronIdError):
        patron_identifier("social_security_number", card_number="A12345678")
    with pytest.raises(PatronIdError):
        patron_identifier("card_number", social_security_number="110101199003071234")
    with pytest.raises(PatronIdError):
        patron_identifier("token", card_number="  ", token_key=KEY)
    with pytest.raises(ConfigError):
        patron_identifier("token", card_number="A12345678")
    with pytest.raises(ConfigError):
        patron_identifier("name", card_number="A12345678")
    with pytest.raises(Sip2FormatError):
        patron_identifier("card_number", card_number="A1|AEx")


# --- [venue.ils] --------------------------------------------------------------------------

SETTINGS_TOML = """
[venue]
kind = "library"

[venue.ils]
host = "10.0.0.5"
port = 6001
user = "gate01"
password = "secret"
location = "一楼大厅"
institution = "CNLIB"
charset = "gbk"
timeout_seconds = 1
patron_id = "token"
request = "patron_information"
fallback = "refuse"
fallback_message = "系统维护中，请到服务台"
not_a_patron = "refuse"

[venue.ils.flags]
too_many_items_overdue = "warn"
"""


def test_settings_from_toml() -> None:
    settings = IlsSettings.from_dict(tomllib.loads(SETTINGS_TOML)["venue"]["ils"])
    assert (settings.host, settings.port, settings.charset) == ("10.0.0.5", 6001, "gbk")
    assert settings.timeout_seconds == 1.0 and isinstance(settings.timeout_seconds, float)
    assert settings.patron_id is PatronIdKind.token
    assert settings.request is IlsRequest.patron_information
    assert settings.fallback is Fallback.refuse
    assert settings.policy.not_a_patron is NotAPatron.refuse
    assert settings.policy.rules[PatronFlag.too_many_items_overdue].decision is FlagDecision.warn
    assert fallback_decision(settings) == LibraryDecision(
        False, "ils_unavailable", "系统维护中，请到服务台"
    )


def test_settings_defaults() -> None:
    settings = IlsSettings.from_dict({"host": "ils", "port": 6001, "user": "u", "password": ""})
    assert settings.timeout_seconds == 1.5
    assert settings.request is IlsRequest.patron_status
    assert settings.patron_id is PatronIdKind.card_number
    assert settings.charset == "utf-8"
    assert fallback_decision(settings).admit


@pytest.mark.parametrize(
    "change",
    [
        {"hots": "x"},
        {"port": "6001"},
        {"port": 70000},
        {"charset": "big5"},
        {"timeout_seconds": 0},
        {"timeout_seconds": True},
        {"patron_id": "name"},
        {"request": "checkout"},
        {"fallback": "maybe"},
        {"sc_status": "yes"},
        {"host": ""},
        {"flags": {"nope": "refuse"}},
        {"backoff_initial_seconds": 20.0},
    ],
)
def test_settings_refusals(change: dict[str, object]) -> None:
    config = {"host": "ils", "port": 6001, "user": "u", "password": "p", **change}
    with pytest.raises(ConfigError):
        IlsSettings.from_dict(config)
    with pytest.raises(ConfigError):
        IlsSettings.from_dict({"host": "ils", "port": 6001, "user": "u"})
