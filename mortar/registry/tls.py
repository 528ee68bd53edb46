"""The registry's certificate and password file.

The registry carries root-run images, so it speaks TLS with a certificate signed by a CA
that mortar makes for the site (kept in CONFIG_DIR/certificates, keys 0600) and asks for a
password (htpasswd, bcrypt) that every host pulls with. Hosts trust the CA through
`mortar bootstrap-servers`; nothing else trusts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mortar import pki
from mortar.errors import MortarError
from mortar.files import read_text, write_private
from mortar.site.certificates import certificates_dir, covers, current, ensure_ca


@dataclass
class RegistryTLS:
    certificate: str  # PEM, the chain hosts are shown
    key: str  # PEM
    ca: str  # PEM of the CA hosts must trust ("" when the operator's certificate needs none)


def registry_tls(config_dir: Path, site_id: str, host: str, certificate: Path | None = None,
                 key: Path | None = None) -> RegistryTLS:
    """The registry's certificate for HOST: the operator's when given, else one the site CA signs."""
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
    if cert_path.exists() and key_path.exists() and current(read_text(cert_path), ca_pem, [host]):
        return RegistryTLS(read_text(cert_path), read_text(key_path), ca_pem)
    issued = pki.issue(pki.Issued(ca_pem, ca_key_pem), host, names=(host,), server=True)
    cert_pem, key_pem = issued.certificate, issued.key
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
