"""The request guard of the loopback servers, as pure functions over header values.

One rule each, the same on every loopback server:

* **Host** - absent (an HTTP/1.0 client on this machine), or a loopback name
  (``127.0.0.1``, ``localhost``, ``[::1]``, or the address the server is bound to), with
  the server's own port or none. Anything else is refused, so a web page whose DNS name
  was re-pointed at 127.0.0.1 (DNS rebinding) gets no answer from these servers.
* **Origin** - for state-changing requests: absent (not a browser's cross-site request),
  or ``http://`` a loopback name and the server's port, compared case-insensitively.
  ``null``, another scheme, another port or another name is refused.
* **JSON bodies** - ``Content-Type: application/json`` (parameters such as ``charset``
  allowed), which a cross-site form cannot send and a cross-site script cannot send
  without a CORS preflight these servers never grant; the body is one JSON object.
* **Size** - ``Content-Length`` is a whole number of at most the server's limit; no
  ``Content-Length`` is an empty body.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from terminal.errors import ConfigError
from terminal.loopback.vocabulary import (
    BAD_LENGTH,
    BODY_TOO_LARGE,
    NOT_AN_OBJECT,
    NOT_JSON,
    Refused,
)
from terminal.wire.canonical import JsonError, parse_json

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
"""The names a browser on this machine uses for a loopback server (in ``Host`` and
``Origin``, lower case, an IPv6 address in brackets)."""


def loopback_host(host: str, what: str = "server") -> str:
    """The address to bind for ``host``: itself if it is a loopback address
    (``localhost`` becomes ``127.0.0.1``); else :class:`ConfigError` naming ``what`` -
    these servers hand out holder data and buttons, which must not leave the machine."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ConfigError(f"{what} host must be a loopback address, not {host!r}")
    return str(address)


def authority_name(address: str) -> str:
    """How ``address`` (as bound) is written in a ``Host`` or an URL: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def _split_authority(value: str) -> tuple[str, str | None] | None:
    """``name[:port]`` -> (name, port text or None); None when it is not that shape."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if not rest:
            return name, None
        if not rest.startswith(":"):
            return None
        return name, rest[1:]
    name, colon, port = value.partition(":")
    return name, (port if colon else None)


def _own_names(bound: str) -> frozenset[str]:
    return LOOPBACK_NAMES | {authority_name(bound).lower()}


def host_allowed(host: str | None, port: int, bound: str = "127.0.0.1") -> bool:
    """True when a request with this ``Host`` header may be served by the server on
    ``bound:port`` (see the module's rule)."""
    if host is None:
        return True
    parts = _split_authority(host.strip())
    if parts is None:
        return False
    name, given = parts
    if given is not None and given != str(port):
        return False
    return name.lower() in _own_names(bound)


def origin_allowed(origin: str | None, port: int, bound: str = "127.0.0.1") -> bool:
    """True when a state-changing request with this ``Origin`` header comes from the
    server on ``bound:port`` itself (or from no browser page at all: no header)."""
    if origin is None:
        return True
    scheme, sep, authority = origin.strip().lower().partition("://")
    if scheme != "http" or not sep:
        return False
    parts = _split_authority(authority)
    if parts is None:
        return False
    name, given = parts
    # An origin names its port unless it is the scheme's default (80 for http).
    if (given if given is not None else "80") != str(port):
        return False
    return name in _own_names(bound)


def json_content_type(content_type: str | None) -> bool:
    """True when ``Content-Type`` says JSON (``application/json``, any parameters)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def body_length(content_length: str | None, limit: int) -> int:
    """The announced body size: 0 without ``Content-Length``; :class:`Refused`
    ``bad_length`` when it is not a whole number, ``body_too_large`` above ``limit``."""
    text = (content_length or "").strip() or "0"
    # Only digits: int() would take "-1" (a read that waits for the peer to hang up),
    # "+1", "1_0" and non-ASCII digits.
    if not (text.isascii() and text.isdigit()):
        raise Refused(BAD_LENGTH, "Content-Length must be a whole number")
    length = int(text)
    if length > limit:
        raise Refused(BODY_TOO_LARGE, f"the body is larger than {limit} bytes")
    return length


def json_object(body: bytes) -> dict[str, Any]:
    """The body of a JSON request as an object (an empty body is ``{}``); :class:`Refused`
    ``not_json`` or ``not_an_object``."""
    try:
        # The one strict loader: a body of 4 KiB of "[" or a lone surrogate is a refusal
        # like any other bad body, never a failed server.
        value = parse_json(body or b"{}")
    except JsonError as exc:
        raise Refused(NOT_JSON, f"the body is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Refused(NOT_AN_OBJECT, "the body must be a JSON object")
    return value
