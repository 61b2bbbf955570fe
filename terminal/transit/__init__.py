"""Transit: the T-Union e-purse of the bus validator and of ``onecard purse`` (docs/transit.md).

Pure protocol code: :mod:`terminal.transit.commands` (the command table: every card
constant with its spec name, and the APDU builders), :mod:`terminal.transit.purchase` (state
machines and thin drivers over a :class:`terminal.devices.reader.CardChannel` and a secure module),
:mod:`terminal.transit.purse` (the read-only session of ``onecard purse``),
:mod:`terminal.transit.records` (parsers of the FCI and of files 0x15, 0x18, 0x1E) and
:mod:`terminal.transit.identity` (the credential of a card known by its e-purse).
"""

from terminal.transit.commands import TUNION_AID
from terminal.transit.identity import UNKNOWN_REGION, purse_credential, purse_region
from terminal.transit.purchase import (
    BalanceSession,
    Mac1Answer,
    Mac1Request,
    Mac2Verdict,
    PendingPurchase,
    PsamPurchase,
    PurchaseResult,
    PurchaseSession,
    PurchaseStatus,
    RecoverySession,
    SelectSession,
    SoftwarePurchaseModule,
    TripInfo,
    purchase,
    read_balance,
    recover,
    select_purse,
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
    "SoftwarePurchaseModule",
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
