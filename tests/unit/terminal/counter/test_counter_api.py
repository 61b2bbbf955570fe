"""The hospital hand-off API: a real server on a free loopback port, asked with urllib with
its bearer token (and without it: refused before anything runs), and its token file."""

from __future__ import annotations

import http.client
import json
import logging
import os
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.inprocess import InProcessConnection
from firmware_sim.profile import load_sample
from firmware_sim.ssc_applet import build_card
from terminal import ldt33
from terminal.counter import CounterApi
from terminal.devices.reader import CardChannel
from terminal.errors import CardError, ConfigError, NoCardError
from terminal.host.clock import FixedClock
from terminal.ssc.reading import CardReading
from terminal.ssc.session import read_ssc

TTL = 120.0


def sample_reading(sample: str = "chongqing-2.0") -> CardReading:
    connection = InProcessConnection(build_card(load_sample(sample)))
    channel = CardChannel(connection)
    ssc = read_ssc(channel)
    return CardReading(
        reader=connection.reader,
        interface=connection.interface,
        atr=connection.atr,
        protocol=connection.protocol,
        uid=None,
        ssc=ssc,
        apdu_count=channel.apdu_count,
    )


@pytest.fixture(scope="module")
def reading() -> CardReading:
    return sample_reading()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return tmp_path / "counter-api.token"


@pytest.fixture
def api(clock: FixedClock, token_file: Path) -> Iterator[CounterApi]:
    server = CounterApi(
        port=0, token_file=token_file, device_number="DEV-0001", ttl=TTL, clock=clock
    )
    yield server
    server.shutdown()


def bearer(api: CounterApi) -> dict[str, str]:
    """What the hospital system sends: the token from the operator's file."""
    return {"Authorization": "Bearer " + Path(api.token_file).read_text().strip()}


def request(
    api: CounterApi,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    token: bool = True,
) -> tuple[int, bytes, http.client.HTTPMessage]:
    sent = {**(bearer(api) if token else {}), **(headers or {})}
    req = urllib.request.Request(api.url + path, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), error.headers


def get_json(api: CounterApi, path: str = "/v1/card") -> tuple[int, dict]:
    status, body, headers = request(api, path)
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    return status, json.loads(body)


def test_health(api):
    assert get_json(api, "/health") == (200, {"status": "ok", "record": False})


def test_empty_is_404_with_no_card_code(api):
    status, body = get_json(api)
    assert status == 404
    assert body["status"] == "empty" and body["code"] == ldt33.NO_CARD
    status, text, _ = request(api, "/v1/card/ireadcardbas")
    assert (status, text) == (404, b"-2")


def test_published_reading_is_served_in_full(api, reading, caplog):
    caplog.set_level(logging.DEBUG)
    seq = api.publish(reading, None, "ok")
    status, body = get_json(api)
    assert status == 200
    assert body["status"] == "ok" and body["verdict"] == "ok" and body["seq"] == seq
    assert body["published_at"].endswith("Z")
    assert body["card"] == json.loads(json.dumps(reading.to_json(reveal=True)))
    holder = reading.ssc.holder
    assert holder is not None and holder.name and holder.ssn
    assert body["card"]["holder"]["name"] == holder.name  # revealed, not masked

    status, text, headers = request(api, "/v1/card/ireadcardbas")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    expected = reading.to_ireadcardbas(reveal=True, device_number="DEV-0001")
    assert text.decode("utf-8") == expected
    assert expected.endswith("DEV-0001|") and holder.name in expected

    assert get_json(api, "/health") == (200, {"status": "ok", "record": True})
    # Personal data is handed over, never logged.
    assert holder.name not in caplog.text and holder.ssn not in caplog.text


def test_error_record_carries_the_ldt33_code(api):
    api.publish(None, CardError("file not found", 0x6A82), None)
    status, body = get_json(api)
    assert status == 200
    assert body["status"] == "error"
    assert body["error"] == "card_error" and body["reason"] == "file not found"
    assert body["code"] == -27266
    assert request(api, "/v1/card/ireadcardbas")[:2] == (200, b"-27266")

    api.publish(None, NoCardError("no card in any reader"), None)
    assert request(api, "/v1/card/ireadcardbas")[:2] == (200, b"-2")


def test_error_wins_over_a_reading(api, reading):
    api.publish(reading, CardError("security status not satisfied", 0x6982), "card_error")
    status, body = get_json(api)
    assert status == 200
    assert body["status"] == "error" and "card" not in body


def test_publish_needs_something(api):
    with pytest.raises(ValueError):
        api.publish(None, None, "ok")


def test_record_expires(api, reading, clock):
    api.publish(reading, None, "ok")
    clock.advance(TTL - 1)
    assert get_json(api)[0] == 200
    clock.advance(1)
    assert get_json(api)[0] == 404
    assert request(api, "/v1/card/ireadcardbas")[:2] == (404, b"-2")


def test_expired_record_is_purged_without_a_request(api, reading, clock):
    api.publish(reading, None, "ok")
    clock.advance(TTL)
    api.purge_expired()  # what the serving loop runs every poll interval
    assert api._record is None


def test_delete_clears_the_record(api, reading):
    api.publish(reading, None, "ok")
    status, body, _ = request(api, "/v1/card", method="DELETE")
    assert (status, body) == (204, b"")
    assert get_json(api)[0] == 404
    # Taking it again is harmless.
    assert request(api, "/v1/card", method="DELETE")[0] == 204


def test_delete_of_an_older_seq_keeps_the_newer_record(api, reading):
    first = api.publish(reading, None, "ok")
    second = api.publish(reading, None, "ok")
    status, body, _ = request(api, f"/v1/card?seq={first}", method="DELETE")
    assert status == 409 and json.loads(body)["error"] == "seq_mismatch"
    assert get_json(api)[1]["seq"] == second
    assert request(api, f"/v1/card?seq={second}", method="DELETE")[0] == 204
    assert get_json(api)[0] == 404
    assert request(api, "/v1/card?seq=x", method="DELETE")[0] == 400


def test_unknown_paths_are_404(api, reading):
    api.publish(reading, None, "ok")
    for path in ("/", "/v1", "/v1/card/", "/v2/card", "/v1/card/name"):
        status, body = get_json(api, path)
        assert status == 404 and body["error"] == "not_found", path


def test_wrong_methods_are_405(api):
    status, body, headers = request(api, "/v1/card", method="POST")
    assert status == 405 and headers["Allow"] == "GET, DELETE"
    assert json.loads(body)["error"] == "method_not_allowed"
    assert request(api, "/health", method="DELETE")[0] == 405
    assert request(api, "/nowhere", method="PUT")[0] == 404


def test_non_loopback_host_header_is_refused(api, reading):
    api.publish(reading, None, "ok")
    status, body, _ = request(api, "/v1/card", headers={"Host": "evil.example:80"})
    assert status == 403 and json.loads(body)["error"] == "bad_host"
    assert request(api, "/v1/card", headers={"Host": f"localhost:{api.port}"})[0] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org", "::"])
def test_only_loopback_binding(host, token_file):
    with pytest.raises(ConfigError):
        CounterApi(host=host, token_file=token_file)


def test_localhost_binds_loopback(token_file):
    with CounterApi(host="localhost", token_file=token_file) as api:
        assert api.host == "127.0.0.1"
        assert get_json(api, "/health")[0] == 200


def test_shutdown_forgets_the_record(reading, token_file):
    api = CounterApi(token_file=token_file)
    api.publish(reading, None, "ok")
    api.shutdown()
    assert not api.has_record


# --- the credential -------------------------------------------------------------------------

UNAUTHORIZED = [
    ("GET", "/v1/card", None),
    ("GET", "/v1/card/ireadcardbas", None),
    ("DELETE", "/v1/card", None),
    ("DELETE", "/v1/card?seq=1", None),
    ("GET", "/health", None),
    ("GET", "/nothing", None),
    ("GET", "/v1/card", "Bearer not-the-token-but-long-enough-to-be-one-0123"),
    ("DELETE", "/v1/card", "Bearer not-the-token-but-long-enough-to-be-one-0123"),
    ("GET", "/v1/card", "Basic dXNlcjpwYXNz"),
    ("GET", "/v1/card", "Bearer"),
]


@pytest.mark.parametrize(("method", "path", "authorization"), UNAUTHORIZED)
def test_without_the_token_nothing_is_read_or_cleared(api, reading, method, path, authorization):
    seq = api.publish(reading, None, "ok")
    headers = {} if authorization is None else {"Authorization": authorization}
    status, body, answer_headers = request(api, path, method, headers, token=False)
    assert status == 401
    assert answer_headers["WWW-Authenticate"].startswith('Bearer realm="onecard"')
    refusal = json.loads(body)
    assert refusal == {"status": "error", "error": "unauthorized", "reason": refusal["reason"]}
    holder = reading.ssc.holder
    assert holder.name.encode() not in body and holder.ssn.encode() not in body
    # Nothing was cleared: the hospital system still gets its card.
    assert get_json(api)[1]["seq"] == seq


def test_the_token_file_is_made_for_the_operator_only(api, token_file):
    mode = stat.S_IMODE(token_file.stat().st_mode)
    assert mode == 0o600
    token = token_file.read_text()
    assert token.endswith("\n") and len(token.strip()) >= 43
    assert api.token_file == str(token_file)


def test_the_token_survives_a_restart(token_file):
    with CounterApi(token_file=token_file) as first:
        headers = bearer(first)
    with CounterApi(token_file=token_file) as second:
        assert bearer(second) == headers
        assert request(second, "/health", token=False, headers=headers)[0] == 200


def test_an_operator_token_is_used(token_file):
    token = "hospital-system-token-0123456789abcdef"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    with CounterApi(token_file=token_file) as api:
        status = request(api, "/health", token=False, headers={"Authorization": f"Bearer {token}"})
        assert status[0] == 200


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o602, 0o644])
def test_a_token_file_others_may_read_or_write_is_refused(token_file, mode):
    token = "hospital-system-token-0123456789abcdef"
    token_file.write_text(token)
    token_file.chmod(mode)
    with pytest.raises(ConfigError) as err:
        CounterApi(token_file=token_file)
    assert "chmod 600" in str(err.value) and token not in str(err.value)


@pytest.mark.parametrize("content", ["", "short\n", "two words and more than 32 characters\n"])
def test_a_token_file_without_a_token_is_refused(token_file, content):
    token_file.write_text(content)
    token_file.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        CounterApi(token_file=token_file)
    assert "holds no token" in str(err.value)
    if content.strip():
        assert content.strip() not in str(err.value)


def test_a_token_file_that_is_not_a_file_is_refused(token_file):
    token_file.mkdir(mode=0o700)
    with pytest.raises(ConfigError):
        CounterApi(token_file=token_file)


def test_a_token_file_that_cannot_be_made_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the token's directory should be")
    with pytest.raises(ConfigError):
        CounterApi(token_file=blocker / "dir" / "counter-api.token")


def test_the_token_is_never_logged(token_file, reading, caplog):
    caplog.set_level(logging.DEBUG)
    with CounterApi(token_file=token_file) as api:
        token = Path(api.token_file).read_text().strip()
        api.publish(reading, None, "ok")
        request(api, "/v1/card")
        request(api, "/v1/card", token=False, headers={"Authorization": f"Bearer {token}x"})
        request(api, "/v1/card", "DELETE")
    assert str(token_file) in caplog.text  # the file is named when it is made
    assert token not in caplog.text


def test_the_token_file_is_made_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with CounterApi(token_file=tmp_path / "t" / "counter-api.token") as api:
            assert stat.S_IMODE(os.stat(api.token_file).st_mode) == 0o600
    finally:
        os.umask(old)
