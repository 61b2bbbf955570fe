"""The operator status page and the staff-call acknowledgement: a real StatusServer on a free
loopback port, asked with http.client."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from terminal.loopback.static import csp_hash
from terminal.runtime.recent_errors import RecentErrors
from terminal.runtime.statuspage import RuntimeStatus, StatusServer

PAGE_IDS = [
    "pcsc",
    "readers",
    "scanners",
    "backlog",
    "documents",
    "calls",
    "errors",
    "transactions",
]


class Calls:
    """A fake holder screen's staff calls: the waiting ones can be acknowledged once."""

    def __init__(self) -> None:
        self.states = {1: "waiting", 2: "acknowledged", 3: "waiting"}
        self.acknowledged: list[int] = []

    def assistance(self) -> dict[str, Any]:
        calls = [{"id": i, "at": 1700000000.0 + i, "state": s} for i, s in self.states.items()]
        return {"mode": True, "calls": calls}

    def acknowledge(self, call_id: int) -> bool:
        self.acknowledged.append(call_id)
        if self.states.get(call_id) != "waiting":
            return False
        self.states[call_id] = "acknowledged"
        return True


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def status(calls: Calls) -> RuntimeStatus:
    status = RuntimeStatus("gate", "GATE-0001")
    status.pcsc = "up"
    status.set_reader("Virtual PCD 00 00", "card")
    status.set_scanner("/dev/ttyACM0", "connected")
    status.count("accept", "ok", 1700000100.0)
    status.unacked = lambda: 4
    status.versions = lambda: {"hotlist": 7, "trustlist": 2, "applist": 1}
    status.assistance = calls.assistance
    status.acknowledge_call = calls.acknowledge
    status.events_unsent = lambda: 2
    status.screen_url = "http://127.0.0.1:9200/"
    return status


@pytest.fixture
def server(status: RuntimeStatus) -> Iterator[StatusServer]:
    server = StatusServer(status, 0)
    yield server
    server.close()


def request(
    server: StatusServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def ack(
    server: StatusServer, call_id: str, headers: dict[str, str] | None = None, body: bytes = b"{}"
) -> tuple[int, Any]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    code, _, answer = request(server, "POST", f"/calls/{call_id}/ack", body, sent)
    return code, json.loads(answer)


def health(server: StatusServer) -> dict[str, Any]:
    code, _, body = request(server, "GET", "/health")
    assert code == 200
    return json.loads(body)


def test_page_is_self_contained_html_with_the_ids(server: StatusServer) -> None:
    code, headers, body = request(server, "GET", "/")
    assert code == 200
    assert headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    for name in PAGE_IDS:
        assert f'id="{name}"' in page and f'data-testid="{name}"' in page
    assert "<main>" in page and "<h1>" in page and '<th scope="col">' in page
    # Nothing from elsewhere, and only its own inline style and script may run.
    assert "src=" not in page and "<link" not in page and "http" not in page.split("<script>")[0]
    assert "innerHTML" not in page
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
    assert "connect-src 'self'" in policy
    assert headers["Cache-Control"] == "no-store"


def test_page_is_the_package_data_inlined(server: StatusServer) -> None:
    page_files = resources.files("terminal.runtime") / "page"
    css = (page_files / "status.css").read_bytes()
    js = (page_files / "status.js").read_bytes()
    code, headers, page = request(server, "GET", "/")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<style>" + css + b"</style>" in page
    assert b"<script>" + js + b"</script>" in page
    policy = headers["Content-Security-Policy"]
    assert f"style-src {csp_hash(css)};" in policy
    assert f"script-src {csp_hash(js)};" in policy


def test_page_polls_health_and_says_when_status_is_unavailable(server: StatusServer) -> None:
    page = request(server, "GET", "/")[2].decode()
    assert 'fetch("/health"' in page and "REFRESH_MS = 1000" in page
    assert "Status unavailable" in page
    assert '"ack-" + id' in page


def test_health_carries_the_new_keys(server: StatusServer) -> None:
    data = health(server)
    assert data["status"] == "ok"
    assert data["assistance"]["mode"] is True
    assert [c["state"] for c in data["assistance"]["calls"]] == [
        "waiting",
        "acknowledged",
        "waiting",
    ]
    assert data["events_unsent"] == 2
    assert data["journal_unacked"] == 4
    assert data["screen_url"] == "http://127.0.0.1:9200/"
    assert data["recent_errors"] == []
    assert data["documents"] == {"hotlist": 7, "trustlist": 2, "applist": 1}


def test_defaults_without_any_provider() -> None:
    data = RuntimeStatus("validator", "BUS-0001").snapshot()
    assert data["assistance"] == {"mode": False, "calls": []}
    assert data["events_unsent"] is None and data["screen_url"] is None
    assert data["recent_errors"] == [] and data["status"] == "ok"
    assert RuntimeStatus("validator", "BUS-0001").acknowledge_call(1) is False


def test_health_lists_recent_errors_masked(status: RuntimeStatus, server: StatusServer) -> None:
    logger = logging.getLogger("onecard.test.status_page")
    logger.propagate = False
    recent = RecentErrors()
    recent.install(logger)
    try:
        logger.info("not kept")
        logger.error("card 50012345678901234567 refused")
        status.recent_errors = recent
        (entry,) = health(server)["recent_errors"]
    finally:
        recent.remove()
        logger.propagate = True
    assert entry["level"] == "ERROR" and entry["logger"] == "onecard.test.status_page"
    assert entry["message"] == "card 5001************4567 refused"


def test_acknowledge_a_call_then_again(calls: Calls, server: StatusServer) -> None:
    assert ack(server, "1") == (200, {"acknowledged": True})
    code, answer = ack(server, "1")
    assert code == 404 and answer["acknowledged"] is False
    assert ack(server, "99")[0] == 404
    assert calls.acknowledged == [1, 1, 99]
    assert [c["state"] for c in health(server)["assistance"]["calls"]] == [
        "acknowledged",
        "acknowledged",
        "waiting",
    ]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_own_origin_may_acknowledge(origin: str, server: StatusServer) -> None:
    assert ack(server, "3", {"Origin": origin.format(port=server.port)})[0] == 200


@pytest.mark.parametrize("call_id", ["abc", "-1", "1.5", "", "1" * 19, "%31"])
def test_bad_id_is_400(call_id: str, calls: Calls, server: StatusServer) -> None:
    assert ack(server, call_id)[0] == 400
    assert calls.acknowledged == []


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://127.0.0.1:1",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1.evil.example:{port}",
    ],
)
def test_foreign_origin_is_403(origin: str, calls: Calls, server: StatusServer) -> None:
    code, answer = ack(server, "1", {"Origin": origin.format(port=server.port)})
    assert code == 403
    assert answer == {"status": "error", "error": "foreign_origin", "reason": answer["reason"]}
    assert calls.acknowledged == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
    ],
)
def test_other_content_type_is_415(
    headers: dict[str, str], calls: Calls, server: StatusServer
) -> None:
    assert ack(server, "1", headers)[0] == 415
    assert calls.acknowledged == []


def test_missing_content_type_is_415(calls: Calls, server: StatusServer) -> None:
    code, _, _ = request(server, "POST", "/calls/1/ack", b"{}")
    assert code == 415 and calls.acknowledged == []


def test_json_with_charset_is_accepted(server: StatusServer) -> None:
    assert ack(server, "1", {"Content-Type": "application/json; charset=utf-8"})[0] == 200


def test_body_that_is_not_json_is_400(calls: Calls, server: StatusServer) -> None:
    assert ack(server, "1", body=b"{not json")[0] == 400
    assert calls.acknowledged == []


def test_body_over_4_kib_is_413(calls: Calls, server: StatusServer) -> None:
    body = json.dumps({"pad": "x" * 4096}).encode()
    assert ack(server, "1", body=body)[0] == 413
    assert calls.acknowledged == []
    assert ack(server, "1", body=json.dumps({"pad": "x" * 4000}).encode())[0] == 200


@pytest.mark.parametrize("path", ["/calls/1", "/calls/1/ack/x", "/calls"])
def test_other_post_paths_are_404(path: str, calls: Calls, server: StatusServer) -> None:
    headers = {"Content-Type": "application/json"}
    code, _, body = request(server, "POST", path, b"{}", headers)
    assert code == 404 and json.loads(body)["error"] == "not_found"
    assert calls.acknowledged == []


@pytest.mark.parametrize("path", ["/", "/health", "/metrics"])
def test_posts_to_pages_are_405(path: str, calls: Calls, server: StatusServer) -> None:
    headers = {"Content-Type": "application/json"}
    code, answer_headers, body = request(server, "POST", path, b"{}", headers)
    assert code == 405 and answer_headers["Allow"] == "GET"
    assert json.loads(body)["error"] == "method_not_allowed"
    assert calls.acknowledged == []


def test_failing_acknowledge_is_500_not_a_dead_server(
    status: RuntimeStatus, server: StatusServer
) -> None:
    def broken(call_id: int) -> bool:
        raise RuntimeError("screen gone")

    status.acknowledge_call = broken
    assert ack(server, "1")[0] == 500
    assert health(server)["status"] == "ok"


def test_failing_providers_do_not_break_health(status: RuntimeStatus, server: StatusServer) -> None:
    def broken() -> Any:
        raise RuntimeError("holder screen 110101199003071234 stopped")

    status.assistance = broken
    status.events_unsent = broken
    data = health(server)
    assert data["assistance"] == {"mode": False, "calls": []}
    assert data["events_unsent"] is None
    assert data["journal_unacked"] == 4
    # Named in the status, with the identifier masked.
    assert data["status"].startswith("events: holder screen 1101**********1234 stopped")
    assert "assistance: holder screen" in data["status"]
    assert "110101199003071234" not in data["status"]
    code, _, body = request(server, "GET", "/metrics")
    assert code == 200 and "onecard_staff_calls_waiting 0" in body.decode()


def test_assistance_that_is_not_a_dict_does_not_break_health(
    status: RuntimeStatus, server: StatusServer
) -> None:
    status.assistance = lambda: None  # type: ignore[assignment,return-value]
    data = health(server)
    assert data["assistance"] == {"mode": False, "calls": []}
    assert data["status"].startswith("assistance: ")


def test_journal_failure_status_is_unchanged(status: RuntimeStatus) -> None:
    def broken() -> int:
        raise OSError("disk gone")

    status.unacked = broken
    data = status.snapshot()
    assert data["status"] == "journal: disk gone" and data["journal_unacked"] is None


def test_metrics_has_staff_calls_and_events(server: StatusServer) -> None:
    code, headers, body = request(server, "GET", "/metrics")
    text = body.decode()
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    lines = text.splitlines()
    assert "# TYPE onecard_staff_calls_waiting gauge" in lines
    assert "onecard_staff_calls_waiting 2" in lines
    assert "# TYPE onecard_events_unsent gauge" in lines
    assert "onecard_events_unsent 2" in lines
    assert "onecard_journal_unacked 4" in lines
    assert 'onecard_document_version{document="hotlist"} 7' in lines


def test_unknown_get_path_is_404(server: StatusServer) -> None:
    assert request(server, "GET", "/calls")[0] == 404
