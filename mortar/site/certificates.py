"""The site's certificates: its CA and the certificate HAProxy serves the virtual address with.

They live in CONFIG_DIR/certificates (a folder only root enters; keys 0600):

- ca.crt, ca.key: the site CA, made once by mortar (`mortar certificates`, or the registry's
  first start). An operator who brings their own certificate puts the CA that signed it in
  ca.crt and keeps ca.key out.
- internal.pem: the certificate chain and the private key (HAProxy's format) of the internal
  virtual address, issued by the site CA for internal_vip_address, or the operator's own.
- external.pem: the same for the users' side (external_vip_address and external_fqdn), with
  enable_tls_external.
- hosts/HOST.crt, hosts/HOST.key: each inventory host's own certificate (its address, its
  name, the virtual address and internal_fqdn), which the services that terminate TLS themselves (the
  broker, the database) serve on that host.

With enable_tls_internal, the key file reaches the load balancer's containers only (a secret
file, like keystone's keys), and the CA every container (REQUESTS_CA_BUNDLE), clouds.yaml,
admin-openrc.sh, verify and Tempest, so every client checks the certificate against it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from typing import Any

from mortar import pki
from mortar.errors import MortarError
from mortar.files import private_directory, read_text, write_private

# What the catalogue's secret volumes may name besides a service's passwords: the virtual
# address's certificate and key, and the certificate and key of the host a container runs on
# (with enable_tls_internal), which an API behind HAProxy serves HTTPS with only with
# enable_tls_backend (BACKEND_*: the same files, given to the APIs only then).
INTERNAL = "tls_internal_certificate"
EXTERNAL = "tls_external_certificate"
HOST_CERTIFICATE = "tls_host_certificate"
HOST_KEY = "tls_host_key"
BACKEND_CERTIFICATE = "tls_backend_certificate"
BACKEND_KEY = "tls_backend_key"
SITE_CERTIFICATES = (INTERNAL, EXTERNAL, HOST_CERTIFICATE, HOST_KEY, BACKEND_CERTIFICATE, BACKEND_KEY)
# Where every container finds the site CA when the site speaks TLS.
CA_DEST = "/etc/mortar/ca.crt"
RENEW_DAYS = 30  # a certificate mortar issued that ends sooner than this is issued anew


def certificates_dir(config_dir: Path) -> Path:
    return config_dir / "certificates"


def ca_path(config_dir: Path) -> Path:
    return certificates_dir(config_dir) / "ca.crt"


def internal_path(config_dir: Path) -> Path:
    return certificates_dir(config_dir) / "internal.pem"


def external_path(config_dir: Path) -> Path:
    return certificates_dir(config_dir) / "external.pem"


def served_names(settings: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """What the internal and the external certificate must name (name -> the setting that
    gives it): each virtual address, internal_fqdn on the internal side, and external_fqdn on
    the side that serves the public endpoints (the internal one without an
    external_vip_address). The external one is empty without an external address."""
    vip = str(settings.get("internal_vip_address") or "")
    external = str(settings.get("external_vip_address") or "")
    internal = {vip: "internal_vip_address"}
    if settings.get("internal_fqdn"):
        internal[str(settings["internal_fqdn"])] = "internal_fqdn"
    fqdn = {str(settings["external_fqdn"]): "external_fqdn"} if settings.get("external_fqdn") else {}
    if external:
        return internal, {external: "external_vip_address", **fqdn}
    return {**internal, **fqdn}, {}


def host_paths(config_dir: Path, host: str) -> tuple[Path, Path]:
    directory = certificates_dir(config_dir) / "hosts"
    return directory / f"{host}.crt", directory / f"{host}.key"


def site_ca_pem(config_dir: Path) -> str:
    """The site CA's certificate ("" when there is none yet)."""
    path = ca_path(config_dir)
    return read_text(path, what="site CA certificate") if path.exists() else ""


def name(common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mortar"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def ensure_ca(config_dir: Path, site_id: str) -> tuple[str, str]:
    """(certificate, key) of the site CA, made once."""
    directory = private_directory(certificates_dir(config_dir))
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        # A CA an older mortar made has no key identifier: its certificate is made again.
        ca = pki.with_key_identifier(pki.Issued(read_text(cert_path), read_text(key_path)))
        if ca.certificate != read_text(cert_path):
            write_private(cert_path, ca.certificate, mode=0o644)
        return ca.certificate, ca.key
    if cert_path.exists():
        raise MortarError("the site CA's certificate is here but not its key, so mortar cannot issue certificates",
                          file=str(key_path), fix="put the CA's key there, or give your own certificates (see "
                                                  "`mortar certificates --help`)")
    ca = pki.make_ca(f"mortar site CA {site_id}")
    write_private(key_path, ca.key)
    write_private(cert_path, ca.certificate, mode=0o644)
    return ca.certificate, ca.key


def covers(cert_pem: str, host: str) -> bool:
    """The certificate names HOST (an address or a DNS name) among its subject alternative names."""
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


def _ends(cert: Any) -> datetime.datetime:
    return getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.UTC)


def _split(pem: str, where: Path) -> tuple[list[Any], Any]:
    """The certificates (leaf first) and the private key of a HAProxy-style PEM file."""
    import re

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        certs = []
    key = None
    found = re.search(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", pem, re.S)
    if found:
        try:
            key = serialization.load_pem_private_key(found.group(0).encode(), password=None)
        except (ValueError, TypeError):
            key = None
    if not certs or key is None:
        raise MortarError("is not a certificate chain with its unencrypted private key (PEM)", file=str(where),
                          fix="concatenate the certificate, any intermediate certificates and the key into it, or "
                              "remove it and run `mortar certificates`")
    return certs, key


def _belong(cert: Any, key: Any) -> bool:
    """KEY is the private key of CERT."""
    from cryptography.hazmat.primitives import serialization

    public = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cert.public_key().public_bytes(*public) == key.public_key().public_bytes(*public))


def _check(pem: str, path: Path, names: dict[str, str], ca_file: Path, fix: str, key_file: Path | None = None) -> None:
    """PEM (a chain and its key, HAProxy-style) from PATH: the key is the certificate's, it names
    every one of NAMES (name -> what it is), it has not expired, and the CA in CA_FILE (or a
    certificate of its own chain) signed it. KEY_FILE: where the key came from, when apart."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    certs, key = _split(pem, path)
    if not _belong(certs[0], key):
        where = f"the key in {key_file.name}" if key_file else "its private key"
        raise MortarError(f"{where} is not the key of its (first) certificate", file=str(path), fix=fix)
    for wanted, what in names.items():
        if not covers(pem, wanted):
            raise MortarError(f"the certificate does not name {what} {wanted}", file=str(path),
                              fix=f"issue one whose subject alternative names hold {wanted}, or remove it and run "
                                  "`mortar certificates`")
    if _ends(certs[0]) <= datetime.datetime.now(datetime.UTC):
        raise MortarError(f"the certificate expired on {_ends(certs[0]):%Y-%m-%d}", file=str(path), fix=fix)
    issuers = [*certs[1:], *x509.load_pem_x509_certificates(read_text(ca_file, what="site CA certificate").encode())]
    for issuer in issuers:
        try:
            certs[0].verify_directly_issued_by(issuer)
            return
        except (ValueError, TypeError, InvalidSignature):
            continue
    raise MortarError("the certificate is not signed by the CA in ca.crt (nor by a certificate of its chain)",
                      file=str(path),
                      fix=f"put the CA that signed it into {ca_file}, or remove it and run `mortar certificates`")


def _private(path: Path) -> None:
    if os.stat(path).st_mode & 0o077:
        raise MortarError("holds a private key but others may read it", file=str(path), fix=f"chmod 600 {path}")


def check_served(config_dir: Path, path: Path, names: dict[str, str], switch: str) -> str:
    """The text of a virtual address's certificate file (internal.pem, external.pem), checked:
    private, a chain and its key that belong together, naming every one of NAMES (name -> its
    setting), signed by ca.crt, not expired. SWITCH: the setting that asks for it."""
    ca_file = ca_path(config_dir)
    fix = "run `mortar certificates` (it issues one with the site CA)"
    if not path.exists():
        raise MortarError(f"{switch} is on but the virtual address has no certificate", file=str(path), fix=fix)
    if not ca_file.exists():
        raise MortarError(f"{switch} is on but there is no CA for clients to check the certificate with",
                          file=str(ca_file), fix=f"{fix}, or put the CA that signed {path.name} there")
    _private(path)
    pem = read_text(path, what="the virtual address's certificate")
    _check(pem, path, names, ca_file, fix)
    return pem


def current(pem: str, ca_pem: str, names: list[str]) -> bool:
    """A certificate mortar issued still serves: the site CA signed it, it names every one of
    NAMES and it is not about to end."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        cert = x509.load_pem_x509_certificates(pem.encode())[0]
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)  # strict verifiers want it
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    left = _ends(cert) - datetime.datetime.now(datetime.UTC)
    return left > datetime.timedelta(days=RENEW_DAYS) and all(covers(pem, n) for n in names)


def make(config_dir: Path, site_id: str, vip: str, names: list[str] | None = None,
         hosts: dict[str, str] | None = None, external: list[str] | None = None, internal_fqdn: str = "") -> list[str]:
    """Make the site CA (once), the virtual address's certificate (VIP and NAMES), the external
    one (the names of EXTERNAL, when given) and each of HOSTS' (name -> address; naming VIP and
    INTERNAL_FQDN too); each again when it no longer names what it must or is about to end.
    What was done, one line each."""
    if not vip:
        raise MortarError("the site has no virtual address to issue a certificate for", file=str(
            config_dir / "globals.yml"), key="internal_vip_address",
            fix="set internal_vip_address (the address HAProxy serves on) first")
    had_ca = (certificates_dir(config_dir) / "ca.key").exists()
    ca_pem, ca_key = ensure_ca(config_dir, site_id)
    done = [f"{'kept' if had_ca else 'made'} the site CA: {ca_path(config_dir)}"]
    served = [(internal_path(config_dir), list(dict.fromkeys([vip, *(names or [])])))]
    if external:
        served.append((external_path(config_dir), list(dict.fromkeys(external))))
    for path, wanted in served:
        if path.exists() and current(read_text(path), ca_pem, wanted):
            done.append(f"kept the certificate of {', '.join(wanted)}: {path}")
            continue
        issued = pki.issue(pki.Issued(ca_pem, ca_key), wanted[0], organizations=("mortar",), names=tuple(wanted),
                           server=True)
        write_private(path, issued.certificate + ca_pem + issued.key)
        done.append(f"issued the certificate of {', '.join(wanted)}: {path}")
    kept = []
    for host, address in (hosts or {}).items():
        cert_path, key_path = host_paths(config_dir, host)
        host_names = [address, host, vip, *([internal_fqdn] if internal_fqdn else [])]
        if cert_path.exists() and key_path.exists() and current(read_text(cert_path), ca_pem, host_names):
            kept.append(host)
            continue
        private_directory(cert_path.parent)
        issued = pki.issue(pki.Issued(ca_pem, ca_key), host, organizations=("mortar",),
                           names=tuple(dict.fromkeys(host_names)), server=True, client=True)
        write_private(key_path, issued.key)
        write_private(cert_path, issued.certificate, mode=0o644)
        done.append(f"issued the certificate of host {host} ({address}): {cert_path}")
    if kept:
        done.append(f"kept the certificates of {len(kept)} host(s): {', '.join(kept)}")
    return done


def site_certificates(config_dir: Path, settings: dict[str, Any]) -> dict[str, str]:
    """The certificate secrets the site's containers may use (none without TLS)."""
    globals_file = str(config_dir / "globals.yml")
    internal_tls, external_tls = bool(settings.get("enable_tls_internal")), bool(settings.get("enable_tls_external"))
    vip = str(settings.get("internal_vip_address") or "")
    for key, on in (("enable_tls_internal", internal_tls), ("enable_tls_external", external_tls)):
        if on and not vip:
            raise MortarError(f"{key} needs the virtual address HAProxy terminates TLS on", file=globals_file,
                              key=key, fix=f"set internal_vip_address (and enable_haproxy: true), or {key}: false")
    if settings.get("enable_tls_backend") and not internal_tls:
        raise MortarError("enable_tls_backend needs enable_tls_internal: the APIs serve HTTPS to HAProxy with "
                          "their hosts' certificates, which come with it", file=globals_file, key="enable_tls_backend",
                          fix="set enable_tls_internal: true (and internal_vip_address), or enable_tls_backend: false")
    internal_names, external_names = served_names(settings)
    if not external_names and external_tls and not internal_tls:
        raise MortarError("without external_vip_address the public endpoints are served on internal_vip_address, "
                          "with enable_tls_internal's setting", file=globals_file, key="enable_tls_external",
                          fix="set external_vip_address (the users' own address), or enable_tls_internal: true")
    found = {}
    if internal_tls:
        found[INTERNAL] = check_served(config_dir, internal_path(config_dir), internal_names, "enable_tls_internal")
    if external_tls and external_names:
        found[EXTERNAL] = check_served(config_dir, external_path(config_dir), external_names, "enable_tls_external")
    return found


def host_certificate(config_dir: Path, host: str, address: str, vip: str, internal_fqdn: str = "") -> dict[str, str]:
    """HOST's certificate and key, checked: private key, naming ADDRESS, VIP and INTERNAL_FQDN
    (when set; clients reach the database and the broker by it), signed by the site CA (ca.crt),
    not expired."""
    cert_path, key_path = host_paths(config_dir, host)
    fix = "run `mortar certificates` (it issues one for every inventory host)"
    for path in (cert_path, key_path):
        if not path.exists():
            raise MortarError(f"enable_tls_internal is on but host {host} has no certificate", file=str(path), fix=fix)
    _private(key_path)
    pem, key = read_text(cert_path), read_text(key_path)
    names = {address: f"host {host}'s address", vip: "internal_vip_address"}
    if internal_fqdn:
        names[internal_fqdn] = "internal_fqdn"
    _check(pem + key, cert_path, names,
           ca_path(config_dir), fix, key_file=key_path)
    return {HOST_CERTIFICATE: pem, HOST_KEY: key}
