"""The site CA, the registry's certificate and its password file (mortar/registry/tls.py)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from mortar import pki
from mortar.errors import MortarError
from mortar.registry.tls import htpasswd_line, registry_tls
from mortar.site.certificates import ensure_ca, site_ca_pem

SITE = "site-1234"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def alt_names(pem: str) -> tuple[list, list]:
    names = load(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.IPAddress), names.get_values_for_type(x509.DNSName)


def test_the_site_ca_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    assert site_ca_pem(tmp_path) == ""
    cert_pem, key_pem = ensure_ca(tmp_path, SITE)
    certificates = tmp_path / "certificates"
    assert mode(certificates) == 0o700
    assert mode(certificates / "ca.key") == 0o600 and mode(certificates / "ca.crt") == 0o644
    ca = load(cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert SITE in ca.subject.rfc4514_string()
    assert ensure_ca(tmp_path, SITE) == (cert_pem, key_pem)
    assert site_ca_pem(tmp_path) == cert_pem


def test_the_registry_certificate_names_its_address_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    tls = registry_tls(tmp_path, SITE, "10.0.0.10")
    assert alt_names(tls.certificate) == ([ipaddress.ip_address("10.0.0.10")], [])
    cert, ca = load(tls.certificate), load(tls.ca)
    cert.verify_directly_issued_by(ca)
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tls.ca == site_ca_pem(tmp_path)
    certificates = tmp_path / "certificates"
    assert mode(certificates / "registry.key") == 0o600 and mode(certificates / "registry.crt") == 0o644
    assert (certificates / "registry.key").read_text() == tls.key


def test_a_dns_name_gets_a_dns_san(tmp_path: Path) -> None:
    tls = registry_tls(tmp_path, SITE, "registry.example")
    assert alt_names(tls.certificate) == ([], ["registry.example"])


def test_the_certificate_is_kept_while_it_covers_the_host(tmp_path: Path) -> None:
    first = registry_tls(tmp_path, SITE, "10.0.0.10")
    assert registry_tls(tmp_path, SITE, "10.0.0.10") == first
    moved = registry_tls(tmp_path, SITE, "10.0.0.20")
    assert moved.certificate != first.certificate and moved.key != first.key
    assert alt_names(moved.certificate) == ([ipaddress.ip_address("10.0.0.20")], [])
    assert moved.ca == first.ca  # hosts keep trusting the same CA
    load(moved.certificate).verify_directly_issued_by(load(first.ca))


def test_a_client_trusting_the_ca_accepts_the_registry(tmp_path: Path) -> None:
    tls = registry_tls(tmp_path, SITE, "127.0.0.1")
    (tmp_path / "chain.pem").write_text(tls.certificate)
    (tmp_path / "key.pem").write_text(tls.key)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ssl.create_default_context(cadata=tls.ca)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            assert conn.recv(2) == b"ok"
        thread.join(timeout=5)


def operator_certificate(tmp_path: Path, names: list[x509.GeneralName] | None) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "operator")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(days=1)))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert_path, key_path = tmp_path / "operator.crt", tmp_path / "operator.key"
    cert_path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_an_operators_certificate_for_the_host_is_served_as_it_is(tmp_path: Path) -> None:
    cert, key = operator_certificate(tmp_path, [x509.DNSName("registry.example"),
                                                x509.IPAddress(ipaddress.ip_address("10.0.0.10"))])
    for host in ("registry.example", "10.0.0.10"):
        tls = registry_tls(tmp_path / "site", SITE, host, cert, key)
        assert (tls.certificate, tls.key, tls.ca) == (cert.read_text(), key.read_text(), "")
    assert not (tmp_path / "site" / "certificates").exists()  # no CA made for it


@pytest.mark.parametrize("names", [[x509.DNSName("other.example")],
                                   [x509.IPAddress(ipaddress.ip_address("10.0.0.11"))],
                                   None])
def test_an_operators_certificate_without_the_host_is_refused(tmp_path: Path, names) -> None:
    cert, key = operator_certificate(tmp_path, names)
    with pytest.raises(MortarError, match="does not name 10.0.0.10 in its subject alternative names") as info:
        registry_tls(tmp_path / "site", SITE, "10.0.0.10", cert, key)
    assert info.value.file == str(cert)


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    cert, _ = operator_certificate(tmp_path, [x509.DNSName("registry.example")])
    with pytest.raises(MortarError, match="give both --certificate and --key"):
        registry_tls(tmp_path / "site", SITE, "registry.example", cert, None)


def test_htpasswd_line_is_a_bcrypt_hash_of_the_password(fast_bcrypt: list[int]) -> None:
    line = htpasswd_line("mortar", "registry-secret")
    assert fast_bcrypt == [10]
    user, _, digest = line.rstrip("\n").partition(":")
    assert line.endswith("\n") and user == "mortar" and digest.startswith("$2")
    assert bcrypt.checkpw(b"registry-secret", digest.encode())
    assert "registry-secret" not in line


def test_htpasswd_line_keeps_a_line_that_still_matches() -> None:
    line = htpasswd_line("mortar", "registry-secret")
    # bcrypt salts every hash: keeping the line keeps the registry's files, and so its container, as they are.
    assert htpasswd_line("mortar", "registry-secret") != line
    assert htpasswd_line("mortar", "registry-secret", line) == line
    assert htpasswd_line("mortar", "registry-secret", line.strip() + "\n\n") == line


@pytest.mark.parametrize("username, password", [("mortar", "changed-secret"), ("puller", "registry-secret")])
def test_htpasswd_line_is_replaced_when_it_no_longer_matches(username: str, password: str) -> None:
    old = htpasswd_line("mortar", "registry-secret")
    new = htpasswd_line(username, password, old)
    assert new != old and new.startswith(f"{username}:")
    assert bcrypt.checkpw(password.encode(), new.strip().partition(":")[2].encode())


@pytest.mark.parametrize("existing", ["mortar:not-a-bcrypt-hash\n", "mortar:\n", "garbage", ""])
def test_htpasswd_line_replaces_a_broken_line(existing: str) -> None:
    new = htpasswd_line("mortar", "registry-secret", existing)
    assert bcrypt.checkpw(b"registry-secret", new.strip().partition(":")[2].encode())


def sign_registry_certificate(config_dir: Path, host: str, days: int) -> None:
    """Put a registry certificate for HOST, signed by the site CA, valid for DAYS more, in place."""
    certificates = config_dir / "certificates"
    ca = pki.Issued((certificates / "ca.crt").read_text(), (certificates / "ca.key").read_text())
    issued = pki.issue(ca, host, names=(host,), server=True, days=days)
    (certificates / "registry.crt").write_text(issued.certificate)
    (certificates / "registry.key").write_text(issued.key)


def test_a_certificate_near_its_end_is_made_anew(tmp_path: Path) -> None:
    registry_tls(tmp_path, SITE, "10.0.0.10")
    sign_registry_certificate(tmp_path, "10.0.0.10", days=400)
    kept = (tmp_path / "certificates" / "registry.crt").read_text()
    assert registry_tls(tmp_path, SITE, "10.0.0.10").certificate == kept
    sign_registry_certificate(tmp_path, "10.0.0.10", days=5)
    ending = (tmp_path / "certificates" / "registry.crt").read_text()
    renewed = registry_tls(tmp_path, SITE, "10.0.0.10")
    assert renewed.certificate != ending
    remaining = load(renewed.certificate).not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert remaining > datetime.timedelta(days=800)


def test_a_certificate_of_a_former_ca_is_made_anew(tmp_path: Path) -> None:
    first = registry_tls(tmp_path, SITE, "10.0.0.10")
    for name in ("ca.crt", "ca.key"):
        (tmp_path / "certificates" / name).unlink()
    again = registry_tls(tmp_path, SITE, "10.0.0.10")
    assert again.ca != first.ca and again.certificate != first.certificate
    load(again.certificate).verify_directly_issued_by(load(again.ca))
