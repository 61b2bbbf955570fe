"""Running the terminal flow a trace names against the strict trace card (tests only).

:func:`run_trace_flow` runs the real terminal code path for a trace's ``# flow:`` over a
reader back-end holding the trace card - :class:`firmware_sim.trace_card.TraceBackend` in
process, or the PC/SC driver with :class:`firmware_sim.trace_card.TraceCard` in vpcd - and
returns the outcome by key, as text; :func:`expectation_failures` compares it with the
trace's ``# expect:`` lines (docs/traces.md). The simulator package holds only the card side;
driving the terminal is the tests' business, so this lives here, shared by
tests/unit/test_traces.py and tests/integration/test_traces_vpcd.py.
"""

from __future__ import annotations

import datetime as dt

from firmware_sim.trace_card import CARD_READER, PSAM_READER, TraceMismatch, TraceRandom
from terminal.devices.reader import CardChannel, ReaderBackend
from terminal.secure.psam import PsamSecureModule
from terminal.ssc.reading import CardReading, read_card, verify_card_in_reader
from terminal.trace.format import Flow, Trace
from terminal.transit.purchase import purchase

DEFAULT_TODAY = dt.date(2026, 1, 1)
"""``today`` of a verify trace without ``# today:`` (only PKI checks use the date)."""

PURCHASE_OUTCOMES = (
    "status",
    "balance_before",
    "balance_after",
    "counter",
    "tac",
    "apdu_count",
    "app_serial",
    "terminal_serial",
    "reason",
    "mac2_verified",
)


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex().upper()
    return str(value)


def _reading_outcome(reading: CardReading) -> dict[str, str]:
    # Every scalar of the ``onecard read --json`` output, so a new field is an outcome too.
    data = reading.to_json(reveal=True)
    out = {
        key: _text(value)
        for key, value in data.items()
        if value is None or isinstance(value, str | int | bool)
    }
    out["holder"] = "present" if reading.ssc.holder is not None else "none"
    unreadable = [
        f"{u.file}{'' if u.tag is None else f'/{u.tag:02X}'}:{u.sw:04X}"
        for u in reading.ssc.unreadable
    ]
    out["unreadable"] = ",".join(unreadable) if unreadable else "none"
    return out


def run_trace_flow(
    trace: Trace,
    backend: ReaderBackend,
    card_reader: str = CARD_READER,
    psam_reader: str | None = PSAM_READER,
) -> dict[str, str]:
    """Run the terminal flow ``trace`` names over ``backend`` - the real code path:
    :func:`terminal.ssc.reading.read_card`, :func:`terminal.ssc.reading.verify_card_in_reader`
    with a :class:`terminal.secure.psam.PsamSecureModule` in ``psam_reader`` and the recorded
    randoms, :func:`terminal.transit.purchase.purchase` - and return its outcome as text by
    key (the keys ``# expect:`` lines name, docs/traces.md)."""
    if trace.flow is None:
        raise TraceMismatch("the trace names no flow (# flow: read|verify|purchase)")
    if trace.header("secure-module") == "software":
        raise TraceMismatch(
            "recorded with a key-file secure module: its cryptograms left no PSAM exchange to "
            "replay (record verify traces with --psam)"
        )
    random = TraceRandom(trace.randoms)
    module = None
    if trace.has_psam and trace.flow is not Flow.READ:
        if psam_reader is None:
            raise TraceMismatch("the trace has PSAM exchanges but no PSAM reader was given")
        module = PsamSecureModule.open(backend, psam_reader)
    try:
        out = _run(trace, backend, card_reader, module, random)
    finally:
        if module is not None:
            module.close()
    random.assert_complete()
    return out


def _run(
    trace: Trace,
    backend: ReaderBackend,
    card_reader: str,
    module: PsamSecureModule | None,
    random: TraceRandom,
) -> dict[str, str]:
    if trace.flow is Flow.READ:
        return _reading_outcome(read_card(backend, card_reader))
    if trace.flow is Flow.VERIFY:
        reading, verification = verify_card_in_reader(
            backend,
            card_reader,
            module,
            None,
            trace.today or DEFAULT_TODAY,
            random=random,
        )
        out = _reading_outcome(reading) if reading is not None else {}
        out["verdict"] = verification.verdict.value
        for name, check in verification.checks.items():
            out[name] = check.check.value
        return out
    if module is None or trace.amount is None or trace.when is None:
        raise TraceMismatch("a purchase trace needs PSAM exchanges, # amount: and # when:")
    connection = backend.connect(card_reader)
    try:
        result = purchase(CardChannel(connection), module, trace.amount, trace.when)
    finally:
        connection.close()
    return {key: _text(getattr(result, key, None)) for key in PURCHASE_OUTCOMES}


def expectation_failures(trace: Trace, outcome: dict[str, str]) -> list[str]:
    """What of the trace's ``# expect:`` lines the outcome does not meet (empty: all met)."""
    failures = []
    for item in trace.expect:
        if item.key not in outcome:
            known = ", ".join(sorted(outcome))
            failures.append(f"{item.key}: no such outcome of this flow (known: {known})")
        elif outcome[item.key] != item.value:
            failures.append(f"{item.key}: expected {item.value}, got {outcome[item.key]}")
    return failures
