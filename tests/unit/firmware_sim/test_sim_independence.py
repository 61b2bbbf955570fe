"""The simulated card shares no card constant with the terminal.

Every card-side module of firmware_sim (the card OS, its applets, the profile, the spec
tables, the crypto) is written from the specification; if it imported the terminal's
tables, a shared misreading of the spec would pass every test. This walks the AST of each
module and fails naming the module and the import. Allowed: ``terminal.errors`` (the one
error family) and the asymmetric primitives ``terminal.crypto.signing`` / ``.sm2``, which
have their own known-answer tests.

The issuing tools and the device simulators (serial scanner, relay board, QR frames, the
vpcd bridge) write or read the terminal's own formats and are not card-side; the issuing
tools still must not derive card keys with the terminal's symmetric crypto.

The trace card (``firmware_sim.trace_card``) is checked like every card-side module, with two
more modules allowed, named in :data:`ALSO_ALLOWED`: it answers from a trace file, so it reads
the trace format, and it is a reader back-end, so it builds the reader interface's values.
It runs no terminal code (the flow runner lives in the tests).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import firmware_sim

PACKAGE = Path(firmware_sim.__file__).parent
ALLOWED = frozenset({"terminal.errors", "terminal.crypto.signing", "terminal.crypto.sm2"})
NOT_CARD_SIDE = frozenset(
    {
        "firmware_sim.issuing",
        "firmware_sim.pki_issuing",
        "firmware_sim.ecode_issuing",
        "firmware_sim.cli",
        "firmware_sim.ecode_cli",
        "firmware_sim.scanner",
        "firmware_sim.qr_frames",
        "firmware_sim.relay_board",
        "firmware_sim.ptydevice",
        "firmware_sim.vpcd",
    }
)
"""Issuing tools and device simulators: they speak the terminal's file and frame formats."""
ALSO_ALLOWED: dict[str, frozenset[str]] = {
    "firmware_sim.trace_card": frozenset(
        {
            "terminal.trace.format",  # the trace file format it replays (shared by definition)
            "terminal.devices.reader",  # the interface it implements: ReaderInfo, Interface
        }
    ),
}
"""Card-side modules allowed a terminal module beyond :data:`ALLOWED`, and why."""
ISSUING = frozenset({"firmware_sim.issuing", "firmware_sim.pki_issuing", "firmware_sim.cli"})
CARD_KEY_CRYPTO = frozenset(
    {
        "terminal.crypto.symmetric",
        "terminal.ssc.auth",
        "terminal.transit.macs",
        "terminal.transit.purchase",
        "terminal.secure.purchase",
    }
)
"""Where the terminal derives card keys: issuing must use firmware_sim.crypto instead."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def card_side_modules() -> dict[str, Path]:
    return {name: path for name, path in all_modules().items() if name not in NOT_CARD_SIDE}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted module) for every import, ``from terminal import x`` as terminal.x, and
    every importlib.import_module / __import__ with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from terminal import errors` names terminal.errors, not all of terminal
            if not any(a.startswith(node.module + ".") for a in ALLOWED):
                found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                found.append((node.lineno, str(first.value)))
    return found


def forbidden_imports(path: Path, forbidden) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [f"line {line}: {name}" for line, name in imported_modules(tree) if forbidden(name)]


def reaches_terminal(name: str, allowed: frozenset[str] = ALLOWED) -> bool:
    """A name in the terminal package outside the ``allowed`` modules."""
    if name != "terminal" and not name.startswith("terminal."):
        return False
    return not any(name == a or name.startswith(a + ".") for a in allowed)


def test_the_walk_sees_the_card_os() -> None:
    names = set(card_side_modules())
    expected = {
        "firmware_sim.cardos",
        "firmware_sim.filesystem",
        "firmware_sim.ssc_applet",
        "firmware_sim.tunion_applet",
        "firmware_sim.psam_applet",
        "firmware_sim.pki_applet",
        "firmware_sim.pin",
        "firmware_sim.profile",
        "firmware_sim.apdu",
        "firmware_sim.crypto",
        "firmware_sim.keys",
        "firmware_sim.spec.ssc",
        "firmware_sim.spec.tunion",
        "firmware_sim.spec.status",
        "firmware_sim.tlv",
        "firmware_sim.trace_card",
    }
    assert expected <= names
    assert not names & NOT_CARD_SIDE


@pytest.mark.parametrize("name", sorted(card_side_modules()))
def test_card_side_module_imports_no_terminal_table(name: str) -> None:
    allowed = ALLOWED | ALSO_ALLOWED.get(name, frozenset())
    bad = forbidden_imports(card_side_modules()[name], lambda m: reaches_terminal(m, allowed))
    assert not bad, f"{name} imports from the terminal: {'; '.join(bad)}"


@pytest.mark.parametrize("name", sorted(ISSUING))
def test_issuing_derives_card_keys_with_the_simulators_crypto(name: str) -> None:
    bad = forbidden_imports(
        all_modules()[name],
        lambda m: m in CARD_KEY_CRYPTO or any(m.startswith(c + ".") for c in CARD_KEY_CRYPTO),
    )
    assert not bad, f"{name} uses the terminal's card-key crypto: {'; '.join(bad)}"


def test_the_checker_catches_what_it_should() -> None:
    source = (
        "from terminal.iso7816.apdu import CommandAPDU\n"
        "import terminal.iso7816.status_words\n"
        "from terminal import ssc\n"
        "from terminal.errors import FieldError\n"
        "from terminal import errors\n"
        "import importlib\n"
        "importlib.import_module('terminal.transit.purchase')\n"
        "import terminal\n"
        "from terminal.crypto.signing import sign\n"
    )
    names = [name for _, name in imported_modules(ast.parse(source)) if reaches_terminal(name)]
    assert sorted(names) == sorted(
        [
            "terminal.iso7816.apdu",
            "terminal.iso7816.apdu.CommandAPDU",
            "terminal.iso7816.status_words",
            "terminal.ssc",
            "terminal.transit.purchase",
            "terminal",
        ]
    )
