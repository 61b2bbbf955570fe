"""The loopback servers' request guard as pure functions (terminal/loopback/guard.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import ConfigError
from terminal.loopback.guard import (
    LOOPBACK_NAMES,
    body_length,
    host_allowed,
    json_content_type,
    json_object,
    loopback_host,
    origin_allowed,
)
from terminal.loopback.vocabulary import Refused

PORT = 9180
NAMES = sorted(LOOPBACK_NAMES)

ports = st.integers(min_value=1, max_value=65535)
other_ports = ports.filter(lambda p: p != PORT)
names = st.sampled_from(NAMES)
# Host names a DNS rebinding attack could use: anything that resolves, loopback or not.
dns_names = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9-]{1,12}){0,3}", fullmatch=True
)


@st.composite
def any_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


# --- Host ---------------------------------------------------------------------------------


@given(names.flatmap(any_case), st.sampled_from(["", f":{PORT}"]))
def test_a_loopback_name_with_or_without_the_port_is_served(name: str, port: str) -> None:
    assert host_allowed(name + port, PORT)
    assert host_allowed(f" {name}{port} ", PORT)


def test_no_host_header_is_served() -> None:
    # HTTP/1.0 clients on this machine; every browser sends a Host.
    assert host_allowed(None, PORT)


@given(names, other_ports)
def test_a_loopback_name_with_another_port_is_refused(name: str, port: int) -> None:
    assert not host_allowed(f"{name}:{port}", PORT)


@given(dns_names.filter(lambda n: n not in LOOPBACK_NAMES), st.sampled_from(["", f":{PORT}"]))
def test_any_other_name_is_refused(name: str, port: str) -> None:
    assert not host_allowed(name + port, PORT)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        f"evil.example:{PORT}",
        f"127.0.0.1.evil.example:{PORT}",
        f"localhost.evil.example:{PORT}",
        f"localhost.:{PORT}",
        "127.0.0.2",
        "::1",
        f"[::1]x:{PORT}",
        f"[::1:{PORT}",
        "127.0.0.1:",
        f"127.0.0.1:0{PORT}",
        f"127.0.0.1:{PORT}:{PORT}",
        f"user@127.0.0.1:{PORT}",
        "",
    ],
)
def test_lookalikes_are_refused(host: str) -> None:
    assert not host_allowed(host, PORT)


def test_the_bound_address_is_a_loopback_name_too() -> None:
    assert host_allowed(f"127.0.0.5:{PORT}", PORT, bound="127.0.0.5")
    assert not host_allowed(f"127.0.0.5:{PORT}", PORT)
    assert host_allowed(f"[::1]:{PORT}", PORT, bound="::1")


@given(st.text(max_size=40), ports)
def test_only_the_listed_hosts_are_served(host: str, port: int) -> None:
    allowed = {n for n in NAMES} | {f"{n}:{port}" for n in NAMES}
    if host_allowed(host, port):
        assert host.strip().lower() in allowed


# --- Origin -------------------------------------------------------------------------------


@given(names.flatmap(lambda n: any_case(f"http://{n}:{PORT}")))
def test_own_origins_any_case(origin: str) -> None:
    assert origin_allowed(origin, PORT)


def test_no_origin_is_not_a_cross_site_request() -> None:
    assert origin_allowed(None, PORT)


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        "http://evil.example",
        f"http://evil.example:{PORT}",
        f"https://127.0.0.1:{PORT}",
        f"http://127.0.0.1.evil.example:{PORT}",
        "http://127.0.0.1:1",
        "http://127.0.0.1",
        f"file://127.0.0.1:{PORT}",
        f"http://127.0.0.1:{PORT}/",
        f"http//127.0.0.1:{PORT}",
    ],
)
def test_foreign_origins_are_refused(origin: str) -> None:
    assert not origin_allowed(origin, PORT)


def test_an_origin_without_a_port_is_port_80() -> None:
    assert origin_allowed("http://localhost", 80)
    assert origin_allowed("http://localhost:80", 80)


@given(names, other_ports)
def test_another_port_is_another_origin(name: str, port: int) -> None:
    assert not origin_allowed(f"http://{name}:{port}", PORT)


@given(st.text(max_size=40), ports)
def test_only_the_listed_origins_are_allowed(origin: str, port: int) -> None:
    allowed = {f"http://{n}:{port}" for n in NAMES}
    if port == 80:
        allowed |= {f"http://{n}" for n in NAMES}
    if origin_allowed(origin, port):
        assert origin.strip().lower() in allowed


# --- JSON bodies and sizes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        " application/json ;x=y",
    ],
)
def test_json_content_types(value: str) -> None:
    assert json_content_type(value)


@given(st.from_regex(r"[a-z]{1,12}/[a-z0-9.+-]{1,20}", fullmatch=True))
def test_other_media_types_are_not_json(media_type: str) -> None:
    if media_type != "application/json":
        assert not json_content_type(media_type)
        assert not json_content_type(media_type + "; charset=utf-8")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
    ],
)
def test_form_types_are_not_json(value: str | None) -> None:
    assert not json_content_type(value)


@given(st.integers(min_value=0, max_value=4096))
def test_a_length_up_to_the_limit(length: int) -> None:
    assert body_length(str(length), 4096) == length
    assert body_length(f" {length} ", 4096) == length


@given(st.integers(min_value=4097, max_value=10**30))
def test_a_length_over_the_limit_is_body_too_large(length: int) -> None:
    with pytest.raises(Refused) as refused:
        body_length(str(length), 4096)
    assert refused.value.kind.name == "body_too_large" and refused.value.kind.status == 413


@pytest.mark.parametrize("text", ["-1", "-4096", "ten", "+1", "1_0", "1.0", "٣", "0x10", "1 2"])
def test_a_length_that_is_not_a_whole_number_is_bad_length(text: str) -> None:
    with pytest.raises(Refused) as refused:
        body_length(text, 4096)
    assert refused.value.kind.name == "bad_length" and refused.value.kind.status == 400


@pytest.mark.parametrize("text", [None, "", "  "])
def test_no_length_is_an_empty_body(text: str | None) -> None:
    assert body_length(text, 4096) == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), json_values, max_size=4))
def test_a_json_object_is_read_back(value: dict) -> None:
    assert json_object(json.dumps(value).encode()) == value
    assert json_object(json.dumps(value, ensure_ascii=False).encode()) == value


def test_an_empty_body_is_an_empty_object() -> None:
    assert json_object(b"") == {}


@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_other_json_is_not_an_object(value: object) -> None:
    with pytest.raises(Refused) as refused:
        json_object(json.dumps(value).encode())
    assert refused.value.kind.name == "not_an_object"


@given(st.binary(max_size=64))
def test_any_bytes_are_an_object_or_a_refusal(body: bytes) -> None:
    try:
        assert isinstance(json_object(body), dict)
    except Refused as refused:
        assert refused.kind.name in ("not_json", "not_an_object")


@pytest.mark.parametrize("body", [b"[" * 4096, b'{"a":' * 2000, b"{lang: en}", b'{"lang": "\xff"}'])
def test_bad_bodies_are_not_json(body: bytes) -> None:
    with pytest.raises(Refused) as refused:
        json_object(body)
    assert refused.value.kind.name == "not_json"


# --- binding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "bound"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("127.0.0.5", "127.0.0.5"),
        ("::1", "::1"),
        ("[::1]", "::1"),
    ],
)
def test_loopback_addresses_are_bound(host: str, bound: str) -> None:
    assert loopback_host(host) == bound


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org", "", "LOCALHOST."])
def test_other_addresses_are_not_bound(host: str) -> None:
    with pytest.raises(ConfigError, match="screen host must be a loopback address"):
        loopback_host(host, "screen")
