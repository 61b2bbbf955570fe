"""The purchase MAC engine: what a PSAM computes for a T-Union purchase (docs/transit.md
"PSAM commands"), from purchase master keys.

MAC1 (``80 70``) derives the card's purchase key DPK and the session key SK
(:mod:`terminal.transit.macs`); the MAC2 check (``80 72``) verifies the card's MAC2 against
the kept session. :class:`terminal.secure.software.SoftwarePurchaseModule` runs it behind
:class:`terminal.transit.secure_module.PsamPurchase`.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from dataclasses import dataclass

from terminal.crypto.symmetric import SymmetricAlgorithm
from terminal.errors import AlgorithmMissingError, KeyMissingError, TransitError
from terminal.transit.commands import ALGORITHM_IDS
from terminal.transit.macs import (
    card_purchase_key,
    mac1_input,
    purchase_mac1,
    purchase_mac2,
    purchase_session_key,
)
from terminal.transit.records import TERMINAL_NUMBER_LENGTH
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict


@dataclass
class _MacSession:
    algorithm: SymmetricAlgorithm
    key: bytes
    amount: int


MAX_KEPT_SESSIONS = 16


class PurchaseMacEngine:
    """What a PSAM does for a purchase, from master keys (``{algorithm: master}``).

    MAC1 derives DPK and SK, increments the transaction serial (non-volatile, 4 bytes) and
    keeps the session; MAC2 is checked against the newest session, or against the session of
    ``terminal_serial`` among the last :data:`MAX_KEPT_SESSIONS` (recovery of a torn
    purchase). Sessions live in RAM: :meth:`drop_sessions` at power-on.
    :class:`terminal.secure.software.SoftwarePurchaseModule` runs this; the simulated PSAM
    applet (:mod:`firmware_sim.psam_applet`) computes the same from its own tables.
    """

    def __init__(
        self, masters: dict[SymmetricAlgorithm, bytes], terminal_number: bytes, serial: int = 0
    ) -> None:
        if len(terminal_number) != TERMINAL_NUMBER_LENGTH:
            raise TransitError("a terminal number is 6 bytes")
        self._masters = dict(masters)
        self.terminal_number = bytes(terminal_number)
        self.serial = serial
        self._sessions: OrderedDict[int, _MacSession] = OrderedDict()
        self._current: int | None = None

    def __repr__(self) -> str:
        algs = ", ".join(a.name for a in sorted(self._masters))
        return f"PurchaseMacEngine(algorithms=<{algs}>, serial={self.serial})"

    def drop_sessions(self) -> None:
        self._sessions.clear()
        self._current = None

    def mac1(self, request: Mac1Request) -> Mac1Answer:
        """Raises :class:`AlgorithmMissingError` (unknown algorithm id) or
        :class:`KeyMissingError` (no purchase master for it)."""
        # A failed MAC1 must not leave the previous card's session checkable as current.
        self._current = None
        alg = ALGORITHM_IDS.get(request.algorithm_id)
        if alg is None:
            raise AlgorithmMissingError(f"unknown algorithm id {request.algorithm_id:02X}")
        master = self._masters.get(alg)
        if master is None:
            raise KeyMissingError(f"no {alg.name} purchase master key")
        card_key = card_purchase_key(master, request.issuer_id, request.app_serial, alg)
        self.serial = (self.serial + 1) & 0xFFFFFFFF
        sk = purchase_session_key(card_key, request.random, request.counter, self.serial, alg)
        mac = purchase_mac1(
            alg,
            sk,
            mac1_input(
                request.amount,
                request.transaction_type,
                self.terminal_number,
                request.date,
                request.time,
            ),
        )
        self._sessions[self.serial] = _MacSession(alg, sk, request.amount)
        while len(self._sessions) > MAX_KEPT_SESSIONS:
            self._sessions.popitem(last=False)
        self._current = self.serial
        return Mac1Answer(self.serial, mac)

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict:
        serial = self._current if terminal_serial is None else terminal_serial
        session = None if serial is None else self._sessions.get(serial)
        if session is None:
            return Mac2Verdict.UNKNOWN
        expected = purchase_mac2(session.algorithm, session.key, session.amount)
        if not hmac.compare_digest(expected, bytes(mac2)):
            return Mac2Verdict.INVALID
        # A checked session is done with: a replayed MAC2 is not accepted twice as current.
        if terminal_serial is None:
            self._current = None
        return Mac2Verdict.VALID
