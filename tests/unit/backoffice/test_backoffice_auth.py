"""Terminal request signatures (docs/sync.md, "Authentication of terminals")."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backoffice.auth import TerminalKey, authenticate, check_body, check_headers, new_secret
from backoffice.errors import AuthenticationError, ClockSkewError, TerminalRevokedError
from terminal.wire.requests import request_headers, sign_request, string_to_sign

NOW = 1_795_000_000.0
SECRET = bytes(range(32))


def lookup_of(*keys: TerminalKey):
    table = {k.terminal_id: k for k in keys}
    return table.get


def test_signature_is_the_documented_hmac():
    body = b'{"x":1}'
    expected_message = b"POST\n/v1/ingest\n1795000000\n" + hashlib.sha256(body).hexdigest().encode()
    assert string_to_sign("POST", "/v1/ingest", "1795000000", body) == expected_message
    assert (
        sign_request(SECRET, "POST", "/v1/ingest", "1795000000", body)
        == hmac.new(SECRET, expected_message, hashlib.sha256).hexdigest()
    )


def test_good_request_authenticates():
    headers = request_headers("T0001", SECRET, "GET", "/v1/hotlist?since=3", b"", NOW)
    lookup = lookup_of(TerminalKey("T0001", SECRET))
    assert authenticate("GET", "/v1/hotlist?since=3", headers, b"", lookup, NOW) == "T0001"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/v1/hotlist?since=3", b""),  # method changed
        ("GET", "/v1/hotlist?since=4", b""),  # query changed
        ("GET", "/v1/hotlist?since=3", b"x"),  # body changed
    ],
)
def test_anything_changed_is_a_bad_signature(method, path, body):
    headers = request_headers("T0001", SECRET, "GET", "/v1/hotlist?since=3", b"", NOW)
    lookup = lookup_of(TerminalKey("T0001", SECRET))
    with pytest.raises(AuthenticationError, match="bad signature"):
        authenticate(method, path, headers, body, lookup, NOW)


def test_unknown_terminal_and_other_secret():
    headers = request_headers("T0001", SECRET, "GET", "/v1/applist", b"", NOW)
    with pytest.raises(AuthenticationError, match="unknown"):
        authenticate("GET", "/v1/applist", headers, b"", lookup_of(), NOW)
    other = lookup_of(TerminalKey("T0001", new_secret()))
    with pytest.raises(AuthenticationError, match="bad signature"):
        authenticate("GET", "/v1/applist", headers, b"", other, NOW)


def test_revoked_is_403_from_the_headers_alone():
    # Revocation is decided before the body is read, so before the signature is checked:
    # a terminal's state is no secret, and its body is not worth reading.
    headers = request_headers("T0001", SECRET, "GET", "/v1/applist", b"", NOW)
    revoked = lookup_of(TerminalKey("T0001", SECRET, True))
    with pytest.raises(TerminalRevokedError):
        check_headers(headers, revoked, NOW)
    forged = dict(headers, **{"X-Onecard-Signature": "00" * 32})
    with pytest.raises(TerminalRevokedError):
        authenticate("GET", "/v1/applist", forged, b"", revoked, NOW)


def test_headers_are_checked_without_the_body():
    headers = request_headers("T0001", SECRET, "POST", "/v1/ingest", b"body", NOW)
    lookup = lookup_of(TerminalKey("T0001", SECRET))
    claim = check_headers(headers, lookup, NOW)
    assert claim.terminal_id == "T0001" and SECRET.hex() not in repr(claim)
    assert check_body(claim, "POST", "/v1/ingest", b"body") == "T0001"
    with pytest.raises(AuthenticationError, match="bad signature"):
        check_body(claim, "POST", "/v1/ingest", b"other body")


@pytest.mark.parametrize(
    "change, error",
    [
        ({"X-Onecard-Terminal": "T0009"}, "unknown terminal"),
        ({"X-Onecard-Terminal": "T 1"}, "malformed terminal id"),
        ({"X-Onecard-Signature": "00"}, "64 hex digits"),
        ({"X-Onecard-Signature": "zz" * 32}, "64 hex digits"),
        ({"X-Onecard-Time": "soon"}, "not a number"),
        ({"X-Onecard-Time": str(int(NOW) - 301)}, "off the server's clock"),
    ],
)
def test_header_refusals_need_no_body(change, error):
    headers = dict(request_headers("T0001", SECRET, "POST", "/v1/ingest", b"", NOW), **change)
    with pytest.raises(AuthenticationError, match=error):
        check_headers(headers, lookup_of(TerminalKey("T0001", SECRET)), NOW)


@pytest.mark.parametrize("offset, ok", [(0, True), (300, True), (-300, True), (301, False)])
def test_clock_skew_window(offset, ok):
    headers = request_headers("T0001", SECRET, "GET", "/v1/applist", b"", NOW + offset)
    lookup = lookup_of(TerminalKey("T0001", SECRET))
    if ok:
        authenticate("GET", "/v1/applist", headers, b"", lookup, NOW)
    else:
        with pytest.raises(ClockSkewError):
            authenticate("GET", "/v1/applist", headers, b"", lookup, NOW)


def test_secret_not_in_repr():
    key = TerminalKey("T0001", SECRET)
    assert SECRET.hex() not in repr(key)


@given(
    st.dictionaries(
        st.sampled_from(["X-Onecard-Terminal", "X-Onecard-Time", "X-Onecard-Signature"]),
        st.text(max_size=80),
    )
)
def test_garbage_headers_are_authentication_errors(headers):
    lookup = lookup_of(TerminalKey("T0001", SECRET))
    with pytest.raises(AuthenticationError):
        authenticate("GET", "/v1/applist", headers, b"", lookup, NOW)
