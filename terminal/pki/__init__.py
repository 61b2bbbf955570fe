"""PKI of third-generation social security cards: compact certificates, the operator's trust
store, the chain check, and the on-card dynamic signature - no PSAM needed (docs/pki.md).

* :mod:`terminal.pki.certificate` - the fixed binary certificate layout, parse and issue.
* :mod:`terminal.pki.truststore` - the JSON trust store and :func:`check_card_certificate`.
* :mod:`terminal.pki.session` - the APDU flow: :func:`verify_card_pki`.
"""

from __future__ import annotations

from terminal.pki.certificate import (
    CARD_CERTIFICATE_LENGTH,
    Certificate,
    CertType,
    issue_certificate,
    key_id,
    parse_certificate,
    verify_certificate_signature,
)
from terminal.pki.session import (
    COMMANDS,
    PKI_DF_NAME,
    PkiCommands,
    dynamic_authenticate,
    read_card_certificates,
    verify_card_pki,
)
from terminal.pki.truststore import (
    PkiCheck,
    PkiOutcome,
    TrustStore,
    check_card_certificate,
    load_trust_store,
    parse_trust_store,
    write_trust_store,
)

__all__ = [
    "CARD_CERTIFICATE_LENGTH",
    "COMMANDS",
    "PKI_DF_NAME",
    "CertType",
    "Certificate",
    "PkiCheck",
    "PkiCommands",
    "PkiOutcome",
    "TrustStore",
    "check_card_certificate",
    "dynamic_authenticate",
    "issue_certificate",
    "key_id",
    "load_trust_store",
    "parse_certificate",
    "parse_trust_store",
    "read_card_certificates",
    "verify_card_pki",
    "verify_certificate_signature",
    "write_trust_store",
]
