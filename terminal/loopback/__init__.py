"""One loopback HTTP kit for the terminal's three local servers: the operator status page
(:mod:`terminal.runtime.statuspage`), the holder screen (:mod:`terminal.screen.server`) and
the counter API for hospital systems (:mod:`terminal.counter.api`).

* :mod:`~terminal.loopback.server` - :class:`LoopbackServer`: loopback binding, threads,
  TCP_NODELAY, time-outs, bounded bodies, security headers, the order of the checks;
* :mod:`~terminal.loopback.guard` - the request guard as pure functions (Host, Origin,
  JSON content type, body size);
* :mod:`~terminal.loopback.vocabulary` - the error names and the one JSON error shape;
* :mod:`~terminal.loopback.answers` - requests, answers, streams and routes;
* :mod:`~terminal.loopback.streams` - open streams and how each ends (peer gone, stalled,
  ended by the server);
* :mod:`~terminal.loopback.credential` - the bearer token a server may require;
* :mod:`~terminal.loopback.static` - pages from package data.
"""

from terminal.loopback.answers import (
    Answer,
    Endpoint,
    Request,
    Routes,
    Stream,
    json_answer,
    text_answer,
)
from terminal.loopback.credential import BearerToken
from terminal.loopback.server import LoopbackServer
from terminal.loopback.streams import StreamChannel, StreamEnded
from terminal.loopback.vocabulary import ErrorKind, Refused

__all__ = [
    "Answer",
    "BearerToken",
    "Endpoint",
    "ErrorKind",
    "LoopbackServer",
    "Refused",
    "Request",
    "Routes",
    "Stream",
    "StreamChannel",
    "StreamEnded",
    "json_answer",
    "text_answer",
]
