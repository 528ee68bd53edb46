"""The registry's certificate and password file.

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
from mortar.files import read_text, write_private
from mortar.site.certificates import certificates_dir, covers, ensure_ca
from mortar.site.certificates import name as _name

CERT_DAYS = 825
RENEW_DAYS = 30  # a registry certificate closer than this to its end is made anew


@dataclass
class RegistryTLS:
    certificate: str  # PEM, the chain hosts are shown
    key: str  # PEM
    ca: str  # PEM of the CA hosts must trust ("" when the operator's certificate needs none)


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
    return left > datetime.timedelta(days=RENEW_DAYS) and covers(cert_pem, host)


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
        if not covers(cert_pem, host):
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
