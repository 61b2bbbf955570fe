"""Transit: the T-Union e-purse of the bus validator and of ``onecard purse`` (docs/transit.md).

Pure protocol code:

* :mod:`terminal.transit.commands`: the command table (every card constant with its spec
  name) and the APDU builders;
* :mod:`terminal.transit.records`: parsers of the FCI and of files 0x15, 0x18, 0x1E;
* :mod:`terminal.transit.macs`: DPK, SK, MAC1, MAC2, TAC, as the card, the PSAM and the back
  office compute them;
* :mod:`terminal.transit.secure_module`: the secure module the purchase needs
  (:class:`PsamPurchase`, MAC1 request and answer, MAC2 verdict), implemented in
  :mod:`terminal.secure`, which imports it - never the other way round;
* :mod:`terminal.transit.session`: the state-machine plumbing and the drivers over a
  :class:`terminal.devices.reader.CardChannel` and a secure module;
* :mod:`terminal.transit.purchase` (purchase and recovery), :mod:`terminal.transit.selection`
  (SELECT and balance), :mod:`terminal.transit.purse` (``onecard purse``): the sessions, and
  :mod:`terminal.transit.results` what they end with;
* :mod:`terminal.transit.identity`: the credential of a card known by its e-purse;
* :mod:`terminal.transit.pending`: the durable record of a purchase whose DEBIT left.
"""

from terminal.transit.commands import TUNION_AID
from terminal.transit.identity import UNKNOWN_REGION, purse_credential, purse_region
from terminal.transit.purchase import (
    PurchaseSession,
    RecoverySession,
    TripInfo,
    purchase,
    recover,
)
from terminal.transit.purse import OddRecord, PurseReading, PurseReadSession, read_purse
from terminal.transit.records import (
    PublicInfo,
    PurchaseLogRecord,
    PurseFci,
    TripRecord,
    decode_balance,
    decode_public_info,
    decode_purchase_log,
    decode_trip_record,
    is_empty_record,
    parse_purse_fci,
)
from terminal.transit.results import PendingPurchase, PurchaseResult, PurchaseStatus
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict, PsamPurchase
from terminal.transit.selection import BalanceSession, SelectSession, read_balance, select_purse

__all__ = [
    "TUNION_AID",
    "UNKNOWN_REGION",
    "BalanceSession",
    "Mac1Answer",
    "Mac1Request",
    "Mac2Verdict",
    "OddRecord",
    "PendingPurchase",
    "PsamPurchase",
    "PublicInfo",
    "PurchaseLogRecord",
    "PurchaseResult",
    "PurchaseSession",
    "PurchaseStatus",
    "PurseFci",
    "PurseReadSession",
    "PurseReading",
    "RecoverySession",
    "SelectSession",
    "TripInfo",
    "TripRecord",
    "decode_balance",
    "decode_public_info",
    "decode_purchase_log",
    "decode_trip_record",
    "is_empty_record",
    "parse_purse_fci",
    "purchase",
    "purse_credential",
    "purse_region",
    "read_balance",
    "read_purse",
    "recover",
    "select_purse",
]
