"""JSON log lines."""

from __future__ import annotations

import json
import logging

from terminal.host.logformat import JsonFormatter


def test_one_json_object_per_record_with_extra_fields():
    record = logging.LogRecord("terminal.runtime", logging.INFO, "x.py", 1, "tap %s", ("ok",), None)
    record.profile = "gate"
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "tap ok" and data["level"] == "info"
    assert data["logger"] == "terminal.runtime" and data["profile"] == "gate"
    assert data["time"].endswith("+00:00")


def test_exceptions_are_included():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, "x.py", 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]
