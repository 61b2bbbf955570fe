"""onecard cryptography: SM2 / ECDSA P-256 signatures, SM3, SM4, DES/3DES, card MACs and keys.

* :mod:`terminal.crypto.signing` - the interface callers use: sign/verify with SM2 or ECDSA
  P-256, key generation and loading, SM2 back-end choice.
* :mod:`terminal.crypto.sm2` - pure-Python SM2 (GB/T 32918.2) and the SM2 encodings.
* :mod:`terminal.crypto.sm2_native` - SM2 through Tongsuo (optional ``tongsuopy``).
* :mod:`terminal.crypto.symmetric` - SM4, DES/3DES, ISO/IEC 9797-1 MACs, secure-messaging
  MACs, key diversification and session keys of the social security card.

See docs/crypto.md. Every failure raised is a :class:`terminal.errors.OneCardError`.
"""

from terminal.crypto.signing import (
    Algorithm,
    generate_private_key,
    load_private_key,
    public_key_bytes,
    sign,
    sm2_backend,
    verify,
)
from terminal.crypto.sm2 import sm3
from terminal.crypto.symmetric import SymmetricAlgorithm

__all__ = [
    "Algorithm",
    "SymmetricAlgorithm",
    "generate_private_key",
    "load_private_key",
    "public_key_bytes",
    "sign",
    "sm2_backend",
    "sm3",
    "verify",
]
