"""APNs certificate authentication: the client certificate an ``ios`` entry gives instead of a ``.p8`` token.

As node-apn (@parse/push-adapter) takes it: ``pfx`` (a PKCS#12 ``.p12`` file, as Keychain exports the "Apple
Push Services" certificate and hosted Parse asked for), or ``cert`` and ``key`` (PEM, each a path or the PEM
text), with ``passphrase`` for an encrypted ``.p12`` or key. The certificate is checked when the server
starts (readable, the passphrase right, the key its own) and presented on the provider's TLS connection.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


class ClientCertificateError(ValueError):
    """A certificate option that cannot be used; ``key`` names it (``pfx``, ``cert``, ``key``, ``passphrase``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate (with the chain that came with it) and its private key, in PEM."""

    chain_pem: bytes
    key_pem: bytes
    subject: str
    not_after: datetime.datetime

    @property
    def expired(self) -> bool:
        return self.not_after < datetime.datetime.now(datetime.UTC)

    def load_into(self, context: ssl.SSLContext) -> None:
        """Present this certificate on ``context``'s connections (the ssl module loads them from files only:
        a private temporary file, deleted at once)."""
        fd, path = tempfile.mkstemp(prefix="parsectl-apns-", suffix=".pem")  # created 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self.chain_pem + self.key_pem)
            context.load_cert_chain(path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


def client_certificate(entry: dict[str, Any]) -> ClientCertificate:
    """The client certificate of an ``ios`` entry with ``pfx``, or ``cert`` and ``key``."""
    passphrase = entry.get("passphrase")
    if passphrase is not None and not isinstance(passphrase, str):
        raise ClientCertificateError("passphrase", "must be a string")
    password = passphrase.encode() if passphrase else None
    if "pfx" in entry:
        data = _read("pfx", entry["pfx"])
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError:
            raise ClientCertificateError("pfx", "cannot be opened: a wrong (or missing) passphrase, or not a "
                                                "PKCS#12 (.p12) file") from None
        if key is None or cert is None:
            raise ClientCertificateError("pfx", "holds no certificate with its private key (export the "
                                                "certificate and its key together from Keychain)")
        return _certificate(cert, list(extra or []), key)
    for name in ("cert", "key"):
        if name not in entry:
            raise ClientCertificateError(name, f"is required with {'key' if name == 'cert' else 'cert'} "
                                               "(PEM: a path or the text), or give pfx instead")
    certs_pem = _read("cert", entry["cert"])
    try:
        certs = x509.load_pem_x509_certificates(certs_pem)
    except ValueError:
        raise ClientCertificateError("cert", "is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(_read("key", entry["key"]), password)
    except TypeError:
        raise ClientCertificateError("passphrase", "is needed: the key is encrypted") from None
    except ValueError:
        raise ClientCertificateError("key", "cannot be loaded: not a PEM private key, or a wrong passphrase") from None
    return _certificate(certs[0], certs[1:], key)


def _read(name: str, value: Any) -> bytes:
    """A PEM/PKCS#12 option's bytes: the PEM text itself, or the file it names."""
    if not isinstance(value, str) or not value:
        raise ClientCertificateError(name, "must be a file path (or PEM text)")
    if "-----BEGIN" in value:
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ClientCertificateError(name, f"cannot read {value!r} ({exc.strerror})") from None


def _certificate(cert: x509.Certificate, extra: list[x509.Certificate], key: Any) -> ClientCertificate:
    ours = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != theirs:
        raise ClientCertificateError("key", "is not the certificate's private key")
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *extra])
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ClientCertificate(chain, key_pem, cert.subject.rfc4514_string(), cert.not_valid_after_utc)
