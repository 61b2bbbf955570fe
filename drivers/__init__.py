"""Device back-ends, chosen by name from the configuration (as python-can chooses interfaces).

The registry maps a name to ``module:attribute`` so a back-end's library (pyscard, pyserial,
OpenCV) is imported only when that back-end is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from terminal.errors import ConfigError

READER_BACKENDS: dict[str, str] = {
    "pcsc": "drivers.pcsc:PcscBackend",
    "inprocess": "drivers.inprocess:InProcessBackend",  # cards in this process (tests, tools)
}

SCANNER_BACKENDS: dict[str, str] = {
    "serial": "drivers.serial_scanner:SerialScanner",
    "camera": "drivers.camera:CameraScanner",
}

OUTPUT_BACKENDS: dict[str, str] = {
    "console": "terminal.outputs:ConsoleOutputs",
    "serial": "drivers.relay_board:SerialRelayBoard",
}
"""Where the gate relay, lamp and buzzer go (``[outputs] kind``)."""


def load(registry: dict[str, str], name: str) -> Any:
    """The class registered under ``name``; a clear :class:`ConfigError` for unknown names."""
    try:
        target = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ConfigError(f"unknown back-end {name!r}; known: {known}") from None
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def scanner_backend(name: str, **options: Any) -> Any:
    """An instance of the code scanner back-end ``name`` (``serial``, ``camera``)."""
    return load(SCANNER_BACKENDS, name)(**options)


def outputs_backend(name: str, *args: Any, **options: Any) -> Any:
    """An instance of the outputs back-end ``name`` (``console``, ``serial``)."""
    return load(OUTPUT_BACKENDS, name)(*args, **options)


def reader_backend(name: str = "pcsc", **options: Any) -> Any:
    """An instance of the reader back-end ``name`` (``pcsc``, ``inprocess``), configured by
    ``options``."""
    return load(READER_BACKENDS, name)(**options)
