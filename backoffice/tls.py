"""A self-signed TLS certificate for tests and demos (``cryptography.x509``).

Production deployments use a certificate from their own CA; a terminal trusts it through
``ca_file`` in its credentials. The certificate made here is its own CA: clients use the
certificate file itself as ``cafile``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backoffice.keys import write_secret_file

CERT_NAME = "backoffice-cert.pem"
KEY_NAME = "backoffice-key.pem"


def make_self_signed(
    directory: str | os.PathLike[str],
    hostnames: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 825,
    now: datetime.datetime | None = None,
) -> tuple[Path, Path]:
    """Write a self-signed P-256 certificate for ``hostnames`` (IP addresses become IP
    subject alternative names) and its key (mode 0600) into ``directory``; returns
    ``(cert_path, key_path)``. Existing files are replaced."""
    if not hostnames:
        raise ValueError("at least one hostname")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"onecard back office {hostnames[0]}")]
    )
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # A CA certificate too, so that clients can name the file itself as their CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / CERT_NAME
    key_path = directory / KEY_NAME
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    write_secret_file(key_path, key_pem, overwrite=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
