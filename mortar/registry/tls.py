"""The site CA and the registry's certificate and password file.

The registry carries root-run images, so it speaks TLS with a certificate signed by a CA
that mortar makes for the site (kept in CONFIG_DIR/certificates, keys 0600) and asks for a
password (htpasswd, bcrypt) that every host pulls with. Hosts trust the CA through
`mortar bootstrap-servers`; nothing else trusts it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from mortar.errors import MortarError
from mortar.files import private_directory, read_text, write_private

CA_DAYS = 3650
CERT_DAYS = 825
RENEW_DAYS = 30  # a registry certificate closer than this to its end is made anew


@dataclass
class RegistryTLS:
    certificate: str  # PEM, the chain hosts are shown
    key: str  # PEM
    ca: str  # PEM of the CA hosts must trust ("" when the operator's certificate needs none)


def certificates_dir(config_dir: Path) -> Path:
    return config_dir / "certificates"


def site_ca_pem(config_dir: Path) -> str:
    """The site CA's certificate ("" when mortar has made none: an operator's certificate)."""
    path = certificates_dir(config_dir) / "ca.crt"
    return read_text(path, what="site CA certificate") if path.exists() else ""


def _name(common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mortar"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def ensure_ca(config_dir: Path, site_id: str) -> tuple[str, str]:
    """(certificate, key) of the site CA, made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = private_directory(certificates_dir(config_dir))
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        return read_text(cert_path), read_text(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(f"mortar site CA {site_id}")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    write_private(key_path, key_pem)
    write_private(cert_path, cert_pem, mode=0o644)
    return cert_pem, key_pem


def _covers(cert_pem: str, host: str) -> bool:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        return ipaddress.ip_address(host) in names.get_values_for_type(x509.IPAddress)
    except ValueError:
        return host in names.get_values_for_type(x509.DNSName)


def _reusable(cert_pem: str, ca_pem: str, host: str) -> bool:
    """The registry certificate still serves HOST: it names it, the site CA signed it, and it is not
    about to expire (hosts trust the CA, not the certificate)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    except (ValueError, TypeError, InvalidSignature):
        return False
    ends = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.UTC)
    left = ends - datetime.datetime.now(datetime.UTC)
    return left > datetime.timedelta(days=RENEW_DAYS) and _covers(cert_pem, host)


def registry_tls(config_dir: Path, site_id: str, host: str, certificate: Path | None = None,
                 key: Path | None = None) -> RegistryTLS:
    """The registry's certificate for HOST: the operator's when given, else one the site CA signs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if certificate is not None or key is not None:
        if certificate is None or key is None:
            raise MortarError("give both --certificate and --key", key="--certificate")
        cert_pem, key_pem = read_text(certificate, what="certificate"), read_text(key, what="key")
        if not _covers(cert_pem, host):
            raise MortarError(f"the certificate does not name {host} in its subject alternative names",
                              file=str(certificate), fix=f"issue one for {host}, or let mortar make one")
        return RegistryTLS(cert_pem, key_pem, "")
    ca_pem, ca_key_pem = ensure_ca(config_dir, site_id)
    directory = certificates_dir(config_dir)
    cert_path, key_path = directory / "registry.crt", directory / "registry.key"
    if cert_path.exists() and key_path.exists() and _reusable(read_text(cert_path), ca_pem, host):
        return RegistryTLS(read_text(cert_path), read_text(key_path), ca_pem)
    ca_cert = x509.load_pem_x509_certificate(ca_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key_obj = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca_cert.subject)
            .public_key(key_obj.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    key_pem = key_obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    write_private(key_path, key_pem)
    write_private(cert_path, cert_pem, mode=0o644)
    return RegistryTLS(cert_pem, key_pem, ca_pem)


def htpasswd_line(username: str, password: str, existing: str = "") -> str:
    """USERNAME:bcrypt-hash; the existing line is kept when it still matches the password."""
    import bcrypt

    user, _, digest = existing.strip().partition(":")
    try:
        if user == username and digest and bcrypt.checkpw(password.encode(), digest.encode()):
            return existing.strip() + "\n"
    except ValueError:  # not a bcrypt hash (edited by hand, or cut short): make a new one
        pass
    return f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()}\n"
