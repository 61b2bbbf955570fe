"""Clearing (docs/clearing.md): the TAC of every T-Union purchase checked with the issuer
master key, and a daily clearing file per operator.

A TAC is the card's proof of a purchase to the issuer: only the card and whoever holds the
issuer master can make it. The check is written here from the spec (docs/transit.md "Keys
and MACs"), over the block cipher primitives of :mod:`terminal.crypto.symmetric` - not with
the terminal's purchase code - so that a mistake shared by the terminal and the back office
does not pass unseen (the cards of the tests are ``firmware_sim``'s, made from the spec too):

* DPK = ``diversify(diversify(master, issuer id), application serial low 8 bytes)``;
* TAC key, by the issuer's scheme (:data:`TAC_SCHEMES`; which one real cards use is not
  confirmed, so the issuer key file says it per algorithm):

  - ``dpk-variant`` (no ``tac`` master in the file; the project's convention):
    ``diversify(DPK, "TAC" 00 00 00 00 00)``;
  - ``separate-master`` (a ``tac`` master MTK in the file; the PBOC / JT/T 978 shape):
    DTK = ``diversify(diversify(MTK, issuer id), application serial low 8 bytes)``;

  for 3DES either is folded left XOR right into a single-DES key;
* TAC = the 4-byte MAC under the TAC key of ``amount(4) || type(1) || terminal number(6) ||
  PSAM serial(4) || date(4) || time(3)``.

The amount checked is the journal entry's own ``amount``: a journal that says another
amount than the card signed is a mismatch.

:func:`check_purchase` is pure; :func:`run_clearing` reads a day's entries from storage,
stores a verdict per purchase, and writes the files (:func:`format_clearing_file`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backoffice.errors import BackOfficeError
from backoffice.fleet_storage import TacCheck
from backoffice.issuer_keys import IssuerKeys
from terminal.crypto.symmetric import SymmetricAlgorithm, diversify, sm_mac
from terminal.errors import OneCardError
from terminal.host.atomicfile import write_atomically
from terminal.host.clock import CST
from terminal.wire.canonical import JsonError, parse_json_text

FORMAT_NAME = "ONECARD-CLEARING"
FORMAT_VERSION = 1
DEFAULT_OPERATOR = "default"
UNASSIGNED_OPERATOR = "unassigned"

VALID = "valid"
MISMATCH = "mismatch"
NO_TAC = "no_tac"
NO_KEY = "no_key"
MALFORMED = "malformed"
VERDICTS = (VALID, MISMATCH, NO_TAC, NO_KEY, MALFORMED)
"""``valid``: the TAC verifies. ``mismatch``: it does not (a forged card, a journal whose
amount or time was changed, a terminal that lies). ``no_tac``: a charge recovered from the
card's purchase log, which holds no TAC. ``no_key``: no master for the card's algorithm.
``malformed``: the entry lacks what the check needs (a terminal older than clearing)."""

TAC_VARIANT = b"TAC\x00\x00\x00\x00\x00"
TAC_SCHEME_DPK_VARIANT = "dpk-variant"
"""The TAC key is the purchase key DPK diversified by :data:`TAC_VARIANT` (the project's
convention, docs/transit.md; unconfirmed)."""
TAC_SCHEME_SEPARATE_MASTER = "separate-master"
"""The TAC key is the card's DTK, diversified from the issuer's TAC master like the DPK from
the purchase master (PBOC / JT/T 978 as generally described; unconfirmed)."""
TAC_SCHEMES = (TAC_SCHEME_DPK_VARIANT, TAC_SCHEME_SEPARATE_MASTER)
ALGORITHM_IDS = {0x00: SymmetricAlgorithm.DES3, 0x04: SymmetricAlgorithm.SM4}
"""INITIALIZE FOR PURCHASE's algId (PBOC): 00 3DES, 04 SM4."""
PURCHASE_TYPES = frozenset({0x06, 0x09})
_HEX = {n: re.compile(f"[0-9A-Fa-f]{{{n}}}") for n in (8, 12, 16)}
_TIME = re.compile(r"[0-9]{14}")


class ClearingError(BackOfficeError):
    """A clearing run that cannot be done (a bad date, files that cannot be written)."""

    code = "clearing_error"
    http_status = 500


@dataclass(frozen=True)
class Purchase:
    """A journaled T-Union purchase, with what its TAC covers (docs/clearing.md)."""

    terminal_id: str
    seq: int
    amount: int
    tac: str | None
    psam_serial: int | None
    counter: int | None
    issuer_id: str | None
    app_serial_low: str | None
    transaction_type: int | None
    terminal_number: str | None
    purchase_time: str | None
    algorithm_id: int | None
    reason: str
    tac_absent: bool = False
    """No ``tac`` in the entry at all (a recovered charge), as against an ill-formed one."""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hex(value: object, digits: int) -> str | None:
    if isinstance(value, str) and _HEX[digits].fullmatch(value):
        return value.upper()
    return None


def purchase_of_entry(body: str) -> Purchase | None:
    """The purchase an entry records (its stored JSON ``body``), or None when it records
    none: a T-Union charge is an entry with an amount and, in ``extra``, a TAC or a
    recovered charge. Fields that are missing or ill-formed come out as None (the check
    calls the purchase ``malformed``); a body that is not JSON is :class:`ClearingError`
    - storage only holds bodies it parsed."""
    try:
        entry = parse_json_text(body)
    except JsonError as exc:
        raise ClearingError(f"a stored entry is not JSON: {exc.reason}") from None
    if not isinstance(entry, dict):
        raise ClearingError("a stored entry is not a JSON object")
    extra = entry.get("extra")
    amount = _int(entry.get("amount"))
    if not isinstance(extra, dict) or amount is None or amount <= 0:
        return None
    if "tac" not in extra and extra.get("recovered") is not True:
        return None
    time = extra.get("purchase_time")
    return Purchase(
        terminal_id=str(entry.get("terminal_id")),
        seq=_int(entry.get("seq")) or 0,
        amount=amount,
        tac=_hex(extra.get("tac"), 8),
        psam_serial=_int(extra.get("psam_serial")),
        counter=_int(extra.get("counter")),
        issuer_id=_hex(extra.get("issuer_id"), 16),
        app_serial_low=_hex(extra.get("app_serial_low"), 16),
        transaction_type=_int(extra.get("transaction_type")),
        terminal_number=_hex(extra.get("terminal_number"), 12),
        purchase_time=time if isinstance(time, str) and _TIME.fullmatch(time) else None,
        algorithm_id=_int(extra.get("algorithm_id")),
        reason=str(entry.get("reason", "")),
        tac_absent="tac" not in extra,
    )


# --- the check (pure) -----------------------------------------------------------------------


def tac_key(
    master: bytes,
    issuer_id: bytes,
    serial_low: bytes,
    alg: SymmetricAlgorithm,
    scheme: str = TAC_SCHEME_DPK_VARIANT,
) -> bytes:
    """The card's TAC key from ``master`` under ``scheme``: ``dpk-variant``, the purchase key
    (two diversifications of the purchase master) once more diversified by "TAC";
    ``separate-master``, the two diversifications of the TAC master themselves (the DTK).
    3DES folds the 16 bytes into a single-DES key."""
    card_key = diversify(diversify(master, issuer_id, alg), serial_low, alg)
    if scheme == TAC_SCHEME_DPK_VARIANT:
        key = diversify(card_key, TAC_VARIANT, alg)
    elif scheme == TAC_SCHEME_SEPARATE_MASTER:
        key = card_key
    else:
        raise ValueError(f"unknown TAC key scheme {scheme!r} (expected one of {TAC_SCHEMES})")
    if alg is SymmetricAlgorithm.SM4:
        return key
    return bytes(a ^ b for a, b in zip(key[:8], key[8:], strict=True))


def tac_master(keys: IssuerKeys, alg: SymmetricAlgorithm) -> tuple[bytes, str]:
    """The master the TAC key of ``alg`` cards comes from, and the scheme: the file's ``tac``
    master when it has one, else the purchase master (``alg`` must be in ``keys.masters``)."""
    if alg in keys.tac_masters:
        return keys.tac_masters[alg], TAC_SCHEME_SEPARATE_MASTER
    return keys.masters[alg], TAC_SCHEME_DPK_VARIANT


def expected_tac(
    p: Purchase, master: bytes, alg: SymmetricAlgorithm, scheme: str = TAC_SCHEME_DPK_VARIANT
) -> bytes:
    """The TAC the card makes for ``p`` if its TAC key comes from ``master`` by ``scheme``."""
    assert p.issuer_id and p.app_serial_low and p.terminal_number and p.purchase_time
    assert p.transaction_type is not None and p.psam_serial is not None
    data = (
        p.amount.to_bytes(4, "big")
        + bytes((p.transaction_type,))
        + bytes.fromhex(p.terminal_number)
        + p.psam_serial.to_bytes(4, "big")
        + bytes.fromhex(p.purchase_time)  # YYYYMMDD hhmmss: the 7 BCD bytes DEBIT carried
    )
    issuer_id, serial_low = bytes.fromhex(p.issuer_id), bytes.fromhex(p.app_serial_low)
    return sm_mac(alg, tac_key(master, issuer_id, serial_low, alg, scheme), data)


def _malformed(p: Purchase) -> str | None:
    if not 0 < p.amount <= 0xFFFFFFFF:
        return "amount out of range"
    if p.psam_serial is None or not 0 <= p.psam_serial <= 0xFFFFFFFF:
        return "psam_serial missing or out of range"
    if p.transaction_type not in PURCHASE_TYPES:
        return "transaction_type missing or not a purchase"
    for name in ("issuer_id", "app_serial_low", "terminal_number", "purchase_time"):
        if getattr(p, name) is None:
            return f"{name} missing or ill-formed"
    return None


def check_purchase(p: Purchase, keys: IssuerKeys) -> tuple[str, str]:
    """``(verdict, reason)`` of ``p``'s TAC under ``keys`` (:data:`VERDICTS`). With the
    card's algorithm journaled, its master is used; without (a purchase recovered by GET
    TRANSACTION PROVE), each master held is tried."""
    if p.tac is None:
        if p.tac_absent:
            return NO_TAC, "charge recovered from the card's log: no TAC to check"
        return MALFORMED, "tac is not 8 hex digits"
    problem = _malformed(p)
    if problem is not None:
        return MALFORMED, problem
    if p.algorithm_id is not None:
        alg = ALGORITHM_IDS.get(p.algorithm_id)
        if alg is None:
            return MALFORMED, f"unknown algorithm id {p.algorithm_id}"
        if alg not in keys.masters:
            return NO_KEY, f"no {alg.name} purchase master"
        candidates = [alg]
    else:
        candidates = sorted(keys.masters)
    schemes = []
    try:
        for alg in candidates:
            master, scheme = tac_master(keys, alg)
            schemes.append(f"{alg.name} {scheme}")
            if hmac.compare_digest(expected_tac(p, master, alg, scheme), bytes.fromhex(p.tac)):
                return VALID, f"verifies under the {alg.name} master ({scheme})"
    except OneCardError as exc:  # a purchase time that is no BCD still makes bytes; belt
        return MALFORMED, exc.reason
    # The scheme is named: a whole day of mismatches under one scheme points at the key
    # file's scheme (a missing or extra tac master), not at the cards.
    return MISMATCH, f"the TAC does not verify under the issuer master ({', '.join(schemes)})"


# --- the day's run --------------------------------------------------------------------------


def day_bounds(day: dt.date) -> tuple[float, float]:
    """The Unix times of the start of ``day`` and of the next, China Standard Time."""
    start = dt.datetime.combine(day, dt.time(), CST)
    return start.timestamp(), (start + dt.timedelta(days=1)).timestamp()


@dataclass
class OperatorDay:
    """One operator's lines of a day, as they are gathered."""

    operator: str
    lines: list[tuple[Purchase, str]] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        valid = [p.amount for p, verdict in self.lines if verdict == VALID]
        flagged = [p.amount for p, verdict in self.lines if verdict != VALID]
        return {
            "count": len(self.lines),
            "amount": sum(valid) + sum(flagged),
            "valid_count": len(valid),
            "valid_amount": sum(valid),
            "flagged_count": len(flagged),
            "flagged_amount": sum(flagged),
        }


TOTALS = ("count", "amount", "valid_count", "valid_amount", "flagged_count", "flagged_amount")
"""The fields of the totals line, in order."""


def _field(value: object) -> str:
    return "" if value is None else str(value)


def format_clearing_file(day: dt.date, operator: OperatorDay, generated_at: float) -> bytes:
    """The clearing file of ``operator`` for ``day`` (docs/clearing.md): header, one line per
    purchase (by terminal and seq), totals, and the SHA-256 of everything before it."""
    when = dt.datetime.fromtimestamp(generated_at, CST).isoformat(timespec="seconds")
    lines = [
        "|".join(("H", FORMAT_NAME, str(FORMAT_VERSION), operator.operator, day.isoformat(), when))
    ]
    for p, verdict in sorted(operator.lines, key=lambda line: (line[0].terminal_id, line[0].seq)):
        lines.append(
            "|".join(
                (
                    "D",
                    p.terminal_id,
                    str(p.seq),
                    _field(p.purchase_time),
                    _field(p.terminal_number),
                    _field(p.psam_serial),
                    _field(p.issuer_id),
                    _field(p.app_serial_low),
                    _field(p.counter),
                    "" if p.transaction_type is None else f"{p.transaction_type:02X}",
                    str(p.amount),
                    _field(p.tac),
                    verdict,
                )
            )
        )
    t = operator.totals()
    lines.append("|".join(("T", *(str(t[name]) for name in TOTALS))))
    body = ("\n".join(lines) + "\n").encode("utf-8")
    return body + f"C|{hashlib.sha256(body).hexdigest()}\n".encode()


def check_clearing_file(data: bytes) -> bool:
    """Whether ``data`` ends with the checksum line of what precedes it."""
    head, sep, last = data.rstrip(b"\n").rpartition(b"\n")
    if not sep or not last.startswith(b"C|"):
        return False
    return hmac.compare_digest(
        last[2:].decode("ascii", "replace"), hashlib.sha256(head + b"\n").hexdigest()
    )


def clearing_file_name(operator: str, day: dt.date) -> str:
    return f"clearing-{operator}-{day:%Y%m%d}.txt"


@dataclass(frozen=True)
class ClearingReport:
    """What a run did: the files written, totals per operator, the flagged purchases."""

    day: dt.date
    files: Mapping[str, str]
    totals: Mapping[str, Mapping[str, int]]
    flagged: tuple[TacCheck, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "files": dict(self.files),
            "totals": {k: dict(v) for k, v in self.totals.items()},
            "flagged": [
                {
                    "terminal_id": c.terminal_id,
                    "seq": c.seq,
                    "verdict": c.verdict,
                    "reason": c.reason,
                    "amount": c.amount,
                }
                for c in self.flagged
            ],
        }


def run_clearing(
    storage: Any,
    keys: IssuerKeys,
    day: dt.date,
    out_dir: str | Path,
    now: float,
    operators: Mapping[str, str] | None = None,
) -> ClearingReport:
    """Check every purchase journaled on ``day`` (China Standard Time, by the entry's
    time), store each verdict, and write one clearing file per operator into ``out_dir``.
    ``operators``: terminal id -> operator (None: every terminal is operator
    ``default``; a terminal not listed goes to ``unassigned``). An operator with no
    purchase that day still gets its file (the operator learns there was nothing to
    clear, not that the file went missing)."""
    start, end = day_bounds(day)
    days: dict[str, OperatorDay] = {}
    for operator in set((operators or {}).values()) or {DEFAULT_OPERATOR}:
        days[operator] = OperatorDay(operator)
    flagged: list[TacCheck] = []
    for page in storage.entries_between(start, end):
        checks = []
        for row in page:
            purchase = purchase_of_entry(row["body"])
            if purchase is None:
                continue
            verdict, reason = check_purchase(purchase, keys)
            check = TacCheck(
                row["terminal_id"],
                row["seq"],
                day.isoformat(),
                verdict,
                reason,
                purchase.amount,
                now,
            )
            checks.append(check)
            if verdict != VALID:
                flagged.append(check)
            if operators is None:
                operator = DEFAULT_OPERATOR
            else:
                operator = operators.get(purchase.terminal_id, UNASSIGNED_OPERATOR)
            days.setdefault(operator, OperatorDay(operator)).lines.append((purchase, verdict))
        storage.record_tac_checks(checks)
    directory = Path(out_dir)
    files: dict[str, str] = {}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for operator, operator_day in sorted(days.items()):
            path = directory / clearing_file_name(operator, day)
            # 0644: a clearing file holds no secret, and it goes to the operator.
            write_atomically(path, format_clearing_file(day, operator_day, now), mode=0o644)
            files[operator] = str(path)
    except OSError as exc:
        raise ClearingError(
            f"{directory}: cannot write the clearing files: {exc.strerror or exc}"
        ) from None
    totals = {operator: d.totals() for operator, d in sorted(days.items())}
    return ClearingReport(day, files, totals, tuple(flagged))
