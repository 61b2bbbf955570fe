"""The hospital hand-off API: a real server on a free loopback port, asked with urllib."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator

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
def api(clock: FixedClock) -> Iterator[CounterApi]:
    server = CounterApi(port=0, device_number="DEV-0001", ttl=TTL, clock=clock)
    yield server
    server.shutdown()


def request(
    api: CounterApi, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, bytes, http.client.HTTPMessage]:
    req = urllib.request.Request(api.url + path, method=method, headers=headers or {})
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
def test_only_loopback_binding(host):
    with pytest.raises(ConfigError):
        CounterApi(host=host)


def test_localhost_binds_loopback():
    with CounterApi(host="localhost") as api:
        assert api.host == "127.0.0.1"
        assert get_json(api, "/health")[0] == 200


def test_shutdown_forgets_the_record(reading):
    api = CounterApi()
    api.publish(reading, None, "ok")
    api.shutdown()
    assert not api.has_record
