"""Certificates: a CA and the certificates it issues (server, client or both), as PEM text.

Elliptic-curve keys (P-256), SHA-256 signatures. Callers decide where the PEM goes; keys are
written with mortar.files.write_private.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class Issued:
    certificate: str  # PEM
    key: str  # PEM (PKCS#8, unencrypted)


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _name(common: str, organizations: tuple[str, ...] = ()):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _usage(ca: bool):
    from cryptography import x509

    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                         key_encipherment=not ca, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def make_ca(common_name: str) -> Issued:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(common_name)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


def with_key_identifier(ca: Issued) -> Issued:
    """CA's certificate again, with its subject key identifier (the same key, name and dates), when
    it has none: strict verifiers (Python 3.13's default TLS context) want one on every CA. What
    the CA signed stays valid under it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    cert = x509.load_pem_x509_certificate(ca.certificate.encode())
    try:
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ca
    except x509.ExtensionNotFound:
        pass
    key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(cert.public_key()), critical=False)
    renewed = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return Issued(renewed.public_bytes(serialization.Encoding.PEM).decode(), ca.key)


def issue(ca: Issued, common_name: str, *, organizations: tuple[str, ...] = (), names: tuple[str, ...] = (),
          server: bool = False, client: bool = False, days: int = CERT_DAYS) -> Issued:
    """A certificate CA signs for COMMON_NAME; NAMES (addresses or DNS names) go into its subject
    alternative names; SERVER and CLIENT set what it may be used for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert = x509.load_pem_x509_certificate(ca.certificate.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name, organizations)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_usage(ca=False), critical=True)
               # Strict verifiers (Python 3.13's default TLS context) want both identifiers.
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                              critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    usages = [u for u, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, server), (ExtendedKeyUsageOID.CLIENT_AUTH, client))
              if wanted]
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if names:
        alternatives: list[x509.GeneralName] = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


def key_pair() -> Issued:
    """A bare key pair (certificate field: the public key, PEM): what signs service account tokens."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return Issued(public, _key_pem(key))
