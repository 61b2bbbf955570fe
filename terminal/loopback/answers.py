"""What an endpoint of a loopback server is given and what it gives back.

An endpoint is a function ``Request -> Answer | Stream``; it raises
:class:`~terminal.loopback.vocabulary.Refused` to refuse. :class:`Routes` finds the
endpoints of a path, by exact path or by pattern.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from terminal.loopback.streams import StreamChannel

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
NO_STORE = "no-store"
"""The default ``Cache-Control``: live values and holder data, which no cache may keep."""


@dataclass(frozen=True)
class Request:
    """A request that passed the guard: ``path`` without the query, ``query`` as parsed
    by :func:`urllib.parse.parse_qs`, ``params`` the groups of a pattern route, ``body``
    the JSON object of a JSON endpoint (None for the others)."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    params: tuple[str, ...] = ()
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Answer:
    """A whole answer: ``status``, ``body`` with its ``content_type`` (none for 204),
    ``cache`` (the ``Cache-Control`` value) and further ``headers``."""

    status: int
    body: bytes = b""
    content_type: str = ""
    cache: str = NO_STORE
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """An answer written as it happens (server-sent events): 200 with ``content_type``,
    then ``pump(channel)`` (:class:`~terminal.loopback.streams.StreamChannel`) writes
    until it returns, the peer goes or the server ends the stream; ``close()`` runs once
    in every case - at once when the peer goes or the server ends the stream (the pump
    sees :attr:`StreamChannel.open` false and its writes fail), else when the pump
    returns, also when the headers could not be sent."""

    content_type: str
    pump: Callable[[StreamChannel], None]
    close: Callable[[], None] = lambda: None


def json_answer(status: int, data: Mapping[str, Any], **headers: str) -> Answer:
    """``data`` as UTF-8 JSON (``application/json; charset=utf-8``)."""
    # default=str: an odd value from a reporting callable must not fail the answer.
    body = json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    return Answer(status, body, JSON_TYPE, headers=headers)


def text_answer(status: int, text: str) -> Answer:
    """``text`` as ``text/plain; charset=utf-8``."""
    return Answer(status, text.encode("utf-8"), TEXT_TYPE)


Handler = Callable[[Request], Answer | Stream]


@dataclass(frozen=True)
class Endpoint:
    """One method on one path: ``handle`` gets the request; ``json`` says the request
    carries a JSON object (the guard's content-type rule applies and ``body`` is it)."""

    handle: Handler
    json: bool = False


class Routes:
    """Paths to their endpoints by method, in the order added (the ``Allow`` header
    lists them so)."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Endpoint]] = {}
        self._patterns: list[tuple[re.Pattern[str], dict[str, Endpoint]]] = []

    def add(self, path: str, method: str, handle: Handler, *, json: bool = False) -> None:
        """Serve ``method`` on ``path`` with ``handle``."""
        self._exact.setdefault(path, {})[method] = Endpoint(handle, json)

    def add_pattern(
        self, pattern: str, method: str, handle: Handler, *, json: bool = False
    ) -> None:
        """Serve ``method`` on every path ``pattern`` matches in full; its groups are the
        request's ``params``."""
        compiled = re.compile(pattern)
        for known, endpoints in self._patterns:
            if known.pattern == pattern:
                endpoints[method] = Endpoint(handle, json)
                return
        self._patterns.append((compiled, {method: Endpoint(handle, json)}))

    def find(self, path: str) -> tuple[dict[str, Endpoint], tuple[str, ...]] | None:
        """The endpoints by method of ``path`` and the pattern's groups; None: not served."""
        if path in self._exact:
            return self._exact[path], ()
        for pattern, endpoints in self._patterns:
            match = pattern.fullmatch(path)
            if match is not None:
                return endpoints, match.groups()
        return None
