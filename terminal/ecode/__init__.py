"""The electronic social security card (电子社保卡) code: a signed, offline-verifiable QR code.

* :mod:`~terminal.ecode.base45` - RFC 9285 Base45, the text the QR code holds;
* :mod:`~terminal.ecode.payload` - the compact binary layout, signing and parsing;
* :mod:`~terminal.ecode.trustlist` - the signed list of issuer keys;
* :mod:`~terminal.ecode.replay` - the durable once-only cache of admitted codes;
* :mod:`~terminal.ecode.verify` - the verdict on a scanned code, and its admission;
* :mod:`~terminal.ecode.world` - an e-code world directory (test and demo deployments).

The format is documented byte by byte in docs/ecode.md.
"""

from terminal.ecode.payload import (
    PREFIX,
    CardReferenceKind,
    CodePayload,
    SignedCode,
    encode_payload,
    parse_code,
    sign_code,
)
from terminal.ecode.replay import ReplayCache, ReplayKey
from terminal.ecode.trustlist import (
    IssuerKey,
    IssuerStatus,
    TrustList,
    load_trust_list,
    parse_trust_list,
    sign_trust_list,
)
from terminal.ecode.verify import CodeResult, CodeVerdict, CodeVerifier
from terminal.ecode.world import EcodeWorld, load_world

__all__ = [
    "PREFIX",
    "CardReferenceKind",
    "CodePayload",
    "CodeResult",
    "CodeVerdict",
    "CodeVerifier",
    "EcodeWorld",
    "IssuerKey",
    "IssuerStatus",
    "ReplayCache",
    "ReplayKey",
    "SignedCode",
    "TrustList",
    "encode_payload",
    "load_trust_list",
    "load_world",
    "parse_code",
    "parse_trust_list",
    "sign_code",
    "sign_trust_list",
]
