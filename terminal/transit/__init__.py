"""Transit: the T-Union e-purse purchase of the bus validator (docs/transit.md).

Pure protocol code: :mod:`terminal.transit.purchase` (state machines and thin drivers over a
:class:`terminal.reader.CardChannel` and a secure module) and :mod:`terminal.transit.records`
(parsers of files 0x15, 0x18, 0x1E).
"""

from terminal.transit.purchase import (
    TUNION_AID,
    Mac1Answer,
    Mac1Request,
    Mac2Verdict,
    PendingPurchase,
    PsamPurchase,
    PurchaseResult,
    PurchaseSession,
    PurchaseStatus,
    RecoverySession,
    SoftwarePurchaseModule,
    TripInfo,
    purchase,
    read_balance,
    recover,
)
from terminal.transit.records import (
    PublicInfo,
    PurchaseLogRecord,
    TripRecord,
    decode_public_info,
    decode_purchase_log,
    decode_trip_record,
)

__all__ = [
    "TUNION_AID",
    "Mac1Answer",
    "Mac1Request",
    "Mac2Verdict",
    "PendingPurchase",
    "PsamPurchase",
    "PublicInfo",
    "PurchaseLogRecord",
    "PurchaseResult",
    "PurchaseSession",
    "PurchaseStatus",
    "RecoverySession",
    "SoftwarePurchaseModule",
    "TripInfo",
    "TripRecord",
    "decode_public_info",
    "decode_purchase_log",
    "decode_trip_record",
    "purchase",
    "read_balance",
    "recover",
]
