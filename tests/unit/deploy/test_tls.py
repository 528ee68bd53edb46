"""TLS on the virtual address: the site's certificates (mortar/site/certificates.py), HAProxy
terminating TLS, every client trusting the site CA (mortar/deploy/desired.py, credentials)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import yaml

from mortar import pki
from mortar.catalogue.loader import ServiceSpec
from mortar.deploy.credentials import write_credentials
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.errors import MortarError
from mortar.site.certificates import CA_DEST, ca_path, host_paths, internal_path, make
from mortar.site.config import load_site
from mortar.site.inventory import Inventory, parse_inventory
from tests.unit.deploy.test_ha import VIP, container, content, ha_site, listen_sections
from tests.unit.inventories import THREE_CONTROL_HOSTS


@pytest.fixture
def inventory() -> Inventory:
    return parse_inventory(THREE_CONTROL_HOSTS, "inventory")


ADDRESSES = {"control1": "10.0.0.11", "control2": "10.0.0.12", "control3": "10.0.0.13", "compute1": "10.0.0.21"}


def handshake(certificate: Path, key: Path | None, cafile: Path | None, name: str) -> str:
    """A TLS handshake over a socket pair: the server with CERTIFICATE (and KEY), a strict client
    trusting CAFILE (the system's when None) and asking for NAME. "" or the client's error."""
    import socket
    import threading

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificate, key)
    client = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    near, far = socket.socketpair()

    def serve() -> None:
        try:
            with server.wrap_socket(far, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client.wrap_socket(near, server_hostname=name) as tls:
            tls.sendall(b"x")
        return ""
    except ssl.SSLError as exc:
        return str(exc)
    finally:
        near.close()
        thread.join(timeout=10)
        far.close()


@pytest.fixture
def tls_desired(site_dir: Path, services: dict[str, ServiceSpec], inventory: Inventory) -> DesiredState:
    make(site_dir, "site1", VIP, hosts=ADDRESSES)
    return compute_desired(ha_site(site_dir, services, enable_tls_internal=True), inventory)


def test_certificates_makes_a_ca_and_a_private_certificate_of_the_virtual_address(tmp_path: Path) -> None:
    done = make(tmp_path, "site1", VIP, ["api.example.org"])
    assert [line.split(":")[0] for line in done] == ["made the site CA", f"issued the certificate of {VIP}, "
                                                                         "api.example.org"]
    pem = internal_path(tmp_path).read_text()
    assert oct(os.stat(internal_path(tmp_path)).st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "certificates").st_mode & 0o777) == "0o700"
    assert "PRIVATE KEY" in pem and "PRIVATE KEY" not in ca_path(tmp_path).read_text()
    # A strict TLS client (as Python 3.13's default) that trusts the site CA accepts it for the
    # address and for the other name, in a real handshake; one that does not trust it refuses.
    assert handshake(internal_path(tmp_path), None, ca_path(tmp_path), VIP) == ""
    assert handshake(internal_path(tmp_path), None, ca_path(tmp_path), "api.example.org") == ""
    assert "CERTIFICATE_VERIFY_FAILED" in handshake(internal_path(tmp_path), None, None, VIP)
    assert "mismatch" in handshake(internal_path(tmp_path), None, ca_path(tmp_path), "10.0.0.99")
    # Kept while it still names what is asked; issued again for another address, same CA.
    assert make(tmp_path, "site1", VIP, ["api.example.org"])[1].startswith("kept")
    ca = ca_path(tmp_path).read_text()
    assert make(tmp_path, "site1", "10.0.0.99")[1].startswith("issued the certificate of 10.0.0.99")
    assert ca_path(tmp_path).read_text() == ca


def test_certificates_without_a_virtual_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MortarError) as err:
        make(tmp_path, "site1", "")
    assert err.value.key == "internal_vip_address"
    assert not (tmp_path / "certificates").exists()


def test_haproxy_terminates_tls_and_only_haproxy_holds_the_key(tls_desired: DesiredState, site_dir: Path) -> None:
    haproxy = container(tls_desired, "control2", "haproxy")
    sections = listen_sections(content(haproxy, "haproxy.cfg"))
    pem = "/etc/haproxy/certificates/internal.pem"
    assert f"bind {VIP}:5000 transparent ssl crt {pem}" in sections["keystone"]
    assert "http-request set-header X-Forwarded-Proto https if { ssl_fc }" in sections["keystone"]
    assert f"bind {VIP}:443 transparent ssl crt {pem}" in sections["horizon"]  # the dashboard on HTTPS's port
    assert f"bind {VIP}:3306 transparent" in sections["mariadb"]  # TCP passes through
    key_file = next(f for f in haproxy.files if f.dest == pem)
    assert (key_file.mode, key_file.owner) == ("0600", "root:root")
    assert key_file.content == internal_path(site_dir).read_text()
    # No other container of any host has the key; the hosts' secrets list it for masking.
    for host, state in tls_desired.hosts.items():
        for c in state.containers():
            assert (key_file.content in [f.content for f in c.files]) == (c.name == "haproxy"), (host, c.name)
    assert key_file.content in tls_desired.hosts["control2"].secrets
    assert key_file.content not in tls_desired.hosts["compute1"].secrets


def test_every_client_reaches_the_apis_over_https_and_trusts_the_site_ca(tls_desired: DesiredState,
                                                                        site_dir: Path) -> None:
    ca = ca_path(site_dir).read_text()
    assert tls_desired.identity["auth_url"] == f"https://{VIP}:5000/v3"
    assert tls_desired.identity["cacert"] == str(ca_path(site_dir))
    for registration in tls_desired.registrations.values():
        assert all(url.startswith(f"https://{VIP}:") for url in registration.endpoints.values()), registration
    for host, state in tls_desired.hosts.items():
        for c in state.containers():
            assert c.environment["REQUESTS_CA_BUNDLE"] == CA_DEST, (host, c.name)
            assert next(f.content for f in c.files if f.dest == CA_DEST) == ca
    keystone = content(container(tls_desired, "control1", "keystone"), "keystone.conf")
    assert "[oslo_middleware]\nenable_proxy_headers_parsing = true" in keystone
    nova = content(container(tls_desired, "control1", "nova_api"), "nova.conf")
    assert f"www_authenticate_uri = https://{VIP}:5000" in nova
    agent = content(container(tls_desired, "compute1", "neutron_ovn_metadata_agent"),
                    "neutron_ovn_metadata_agent.ini")
    assert "nova_metadata_protocol = https" in agent and f"nova_metadata_host = {VIP}" in agent
    settings = content(container(tls_desired, "control3", "horizon"), "local_settings.py")
    assert "SECURE_PROXY_SSL_HEADER" in settings and "CSRF_COOKIE_SECURE = True" in settings
    login = next(c for c in tls_desired.checks if c.check == "form_login")
    # On HTTPS's own port, named by no port: the Referer the form sends is then the host Django sees.
    assert login.params["url"] == f"https://{VIP}/auth/login/"


def test_the_operator_gets_the_ca_in_clouds_yaml_and_openrc(tls_desired: DesiredState, tmp_path: Path) -> None:
    class Deployment:
        desired = tls_desired

    clouds, openrc = write_credentials(Deployment(), tmp_path)
    cloud = yaml.safe_load(clouds.read_text())["clouds"]["mortar"]
    assert cloud["cacert"] == tls_desired.identity["cacert"]
    assert f"export OS_CACERT={tls_desired.identity['cacert']}" in openrc.read_text()


def test_without_tls_nothing_speaks_https_and_no_container_gets_the_ca(site_dir: Path,
                                                                      services: dict[str, ServiceSpec],
                                                                      inventory: Inventory) -> None:
    make(site_dir, "site1", VIP)  # certificates made but not switched on
    desired = compute_desired(ha_site(site_dir, services), inventory)
    assert desired.identity["auth_url"].startswith("http://") and "cacert" not in desired.identity
    haproxy = container(desired, "control1", "haproxy")
    assert "ssl crt" not in content(haproxy, "haproxy.cfg")
    assert not any(f.dest.startswith("/etc/haproxy/certificates/") for f in haproxy.files)
    assert not any("REQUESTS_CA_BUNDLE" in c.environment for s in desired.hosts.values() for c in s.containers())


@pytest.mark.parametrize("problem, key, words", [
    ("no certificate", None, "mortar certificates"),
    ("no address", "enable_tls_internal", "internal_vip_address"),
    ("another address", None, "does not name internal_vip_address"),
    ("readable", None, "chmod 600"),
    ("another CA", None, "not signed by the CA"),
    ("no key", None, "private key"),
])
def test_a_tls_site_without_a_usable_certificate_is_refused(site_dir: Path, services: dict[str, ServiceSpec],
                                                            problem: str, key: str | None, words: str) -> None:
    if problem != "no certificate":
        make(site_dir, "site1", "10.0.0.99" if problem == "another address" else VIP)
    path = internal_path(site_dir)
    if problem == "readable":
        path.chmod(0o644)
    if problem == "another CA":
        other = pki.make_ca("someone else")
        issued = pki.issue(other, VIP, names=(VIP,), server=True)
        path.write_text(issued.certificate + issued.key)
    if problem == "no key":
        path.write_text(path.read_text().split("-----BEGIN PRIVATE KEY-----")[0])
    with pytest.raises(MortarError) as err:
        ha_site(site_dir, services, enable_tls_internal=True,
                internal_vip_address=None if problem == "no address" else VIP,
                enable_haproxy=problem != "no address")
    assert words in f"{err.value}", f"{err.value}"
    if key:
        assert err.value.key == key
    else:
        assert str(path) in f"{err.value}" or str(ca_path(site_dir)) in f"{err.value}"


def test_kubernetes_refuses_tls(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    from mortar.k8s.topology import ClusterTopology

    make(site_dir, "site1", VIP)
    site = ha_site(site_dir, services, enable_tls_internal=True)
    with pytest.raises(MortarError) as err:
        ClusterTopology(site, parse_inventory(THREE_CONTROL_HOSTS, "inventory"))
    assert err.value.key == "enable_tls_internal"


def test_load_site_without_tls_reads_no_certificate(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    (site_dir / "certificates").mkdir()
    internal_path(site_dir).write_text("not a certificate")
    assert load_site(site_dir, services).certificates == {}


def test_the_broker_and_the_database_serve_tls_with_their_hosts_own_certificate(tls_desired: DesiredState,
                                                                               site_dir: Path) -> None:
    for host in ("control1", "control2", "control3"):
        crt, key = host_paths(site_dir, host)
        for name, folder in (("rabbitmq", "/etc/rabbitmq/certificates"), ("mariadb", "/etc/mysql/certificates")):
            files = {f.dest: f for f in container(tls_desired, host, name).files}
            assert files[f"{folder}/host.crt"].content == crt.read_text()
            assert files[f"{folder}/host.key"].content == key.read_text()
            assert files[f"{folder}/host.key"].mode == "0600"
        assert key.read_text() in tls_desired.hosts[host].secrets
        others = [c for h, state in tls_desired.hosts.items() if h != host for c in state.containers()]
        assert not any(key.read_text() == f.content for c in others for f in c.files)
        assert handshake(crt, key, ca_path(site_dir), ADDRESSES[host]) == ""
        assert handshake(crt, key, ca_path(site_dir), VIP) == ""
    rabbit = container(tls_desired, "control1", "rabbitmq")
    conf = content(rabbit, "rabbitmq.conf")
    assert "listeners.tcp = none" in conf and "listeners.ssl.default = 10.0.0.11:5671" in conf
    assert rabbit.ports[0] == 5671 and "healthcheck_port 5671" in rabbit.healthcheck.test
    assert "ssl_cert = /etc/mysql/certificates/host.crt" in content(container(tls_desired, "control2", "mariadb"),
                                                                   "99-mortar.cnf")
    nova = content(container(tls_desired, "compute1", "nova_compute"), "nova.conf")
    assert all(f"{a}:5671" in nova for a in ("10.0.0.11", "10.0.0.12", "10.0.0.13"))
    assert "ssl = true\nssl_ca_file = /etc/mortar/ca.crt" in nova
    # What watches its connection to the broker watches the TLS port.
    for host, name in (("control2", "nova_conductor"), ("control3", "nova_scheduler"), ("compute1", "nova_compute")):
        assert container(tls_desired, host, name).healthcheck.test.endswith(" 5671"), name
    keystone = content(container(tls_desired, "control1", "keystone"), "keystone.conf")
    assert f"@{VIP}:3306/keystone?ssl_ca=/etc/mortar/ca.crt" in keystone


# Each API behind HAProxy: (container, the folder of its certificate, its port).
BACKENDS = [("keystone", "/etc/keystone/certificates", "5000"),
            ("glance_api", "/etc/glance/certificates", "9292"),
            ("placement_api", "/etc/placement/certificates", "8778"),
            ("nova_api", "/etc/nova/certificates", "8774"),
            ("nova_metadata", "/etc/nova/certificates", "8775"),
            ("neutron_server", "/etc/neutron/certificates", "9696"),
            ("horizon", "/etc/horizon/certificates", "80")]


def test_with_backend_tls_haproxy_speaks_https_to_each_api_and_checks_it(site_dir: Path,
                                                                        services: dict[str, ServiceSpec],
                                                                        inventory: Inventory) -> None:
    make(site_dir, "site1", VIP, hosts=ADDRESSES)
    desired = compute_desired(ha_site(site_dir, services, enable_tls_internal=True, enable_tls_backend=True),
                              inventory)
    sections = listen_sections(content(container(desired, "control1", "haproxy"), "haproxy.cfg"))
    for name, _, port in BACKENDS:
        servers = [line for line in sections[name] if line.startswith("server ")]
        assert len(servers) == 3 and all(line.endswith(f" ssl verify required ca-file {CA_DEST}") for line in servers)
        assert all(f":{port} check" in line for line in servers), servers
    # The database passes through as TCP: no TLS to its backends from HAProxy.
    assert not any(" ssl " in line for line in sections["mariadb"])
    for host in ("control1", "control2", "control3"):
        crt, key = host_paths(site_dir, host)
        for name, folder, _ in BACKENDS:
            api = container(desired, host, name)
            files = {f.dest: f for f in api.files}
            assert files[f"{folder}/host.crt"].content == crt.read_text(), (host, name)
            assert files[f"{folder}/host.key"].content == key.read_text()
            assert files[f"{folder}/host.key"].mode == "0600"
            assert files[f"{folder}/host.key"].owner.split(":")[0] == ("horizon" if name == "horizon" else api.user)
            ini = next(f.content for f in api.files if f.dest.endswith("-uwsgi.ini"))
            assert f",{folder}/host.crt,{folder}/host.key" in ini, ini
            sockets = [line.split(" =")[0] for line in ini.splitlines() if "-socket =" in line]
            assert sockets == (["shared-socket", "https-socket"] if name == "horizon" else ["https-socket"]), ini
            assert api.healthcheck.test.endswith(f" --tls-ca {CA_DEST}"), api.healthcheck.test
        # Each host's key is on that host only.
        others = [c for h, state in desired.hosts.items() if h != host for c in state.containers()]
        assert not any(key.read_text() == f.content for c in others for f in c.files)


def test_without_backend_tls_the_apis_get_no_certificate(tls_desired: DesiredState) -> None:
    for name, folder, _ in BACKENDS:
        api = container(tls_desired, "control2", name)
        assert not any(f.dest.startswith(folder) for f in api.files), name
        ini = next(f.content for f in api.files if f.dest.endswith("-uwsgi.ini"))
        assert "https-socket" not in ini and "\nhttp-socket = " in ini
        # Stopped (a rolling restart), it answers the requests in progress before it exits.
        assert "\nhook-master-start = unix_signal:15 gracefully_kill_them_all\n" in ini, ini
        assert "--tls-ca" not in api.healthcheck.test
    assert " ssl verify" not in content(container(tls_desired, "control2", "haproxy"), "haproxy.cfg")


def test_backend_tls_without_internal_tls_is_refused(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    make(site_dir, "site1", VIP, hosts=ADDRESSES)
    with pytest.raises(MortarError) as err:
        ha_site(site_dir, services, enable_tls_backend=True)
    assert err.value.key == "enable_tls_backend" and "enable_tls_internal: true" in f"{err.value}"


def test_a_host_without_its_certificate_is_refused(site_dir: Path, services: dict[str, ServiceSpec],
                                                   inventory: Inventory) -> None:
    make(site_dir, "site1", VIP, hosts={h: a for h, a in ADDRESSES.items() if h != "control3"})
    with pytest.raises(MortarError) as err:
        compute_desired(ha_site(site_dir, services, enable_tls_internal=True), inventory)
    assert str(host_paths(site_dir, "control3")[0]) in f"{err.value}" and "mortar certificates" in f"{err.value}"


def test_a_ca_an_older_mortar_made_gets_its_key_identifier_and_keeps_its_key(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    make(tmp_path, "site1", VIP)
    ca, key = ca_path(tmp_path), tmp_path / "certificates" / "ca.key"
    # What an older mortar wrote: the same CA without a subject key identifier.
    cert = x509.load_pem_x509_certificate(ca.read_text().encode())
    private = serialization.load_pem_private_key(key.read_text().encode(), password=None)
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key()).serial_number(cert.serial_number)
               .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for extension in cert.extensions:
        if not isinstance(extension.value, x509.SubjectKeyIdentifier):
            builder = builder.add_extension(extension.value, critical=extension.critical)
    old = builder.sign(private, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]
    ca.write_text(old)
    internal_path(tmp_path).unlink()
    assert "CERTIFICATE_VERIFY_FAILED" in handshake(_issued(tmp_path), None, ca, VIP)
    make(tmp_path, "site1", VIP)
    assert ca.read_text() != old and key.read_text() == private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    assert handshake(internal_path(tmp_path), None, ca, VIP) == ""


def _issued(tmp_path: Path) -> Path:
    """A certificate the site CA signs for VIP, written beside it."""
    ca = pki.Issued(ca_path(tmp_path).read_text(), (tmp_path / "certificates" / "ca.key").read_text())
    issued = pki.issue(ca, VIP, names=(VIP,), server=True)
    path = tmp_path / "issued.pem"
    path.write_text(issued.certificate + issued.key)
    return path


EXTERNAL_VIP = "10.0.0.20"
FQDN = "cloud.example.org"


def test_the_users_side_has_its_own_address_name_and_certificate(site_dir: Path, services: dict[str, ServiceSpec],
                                                                 inventory: Inventory) -> None:
    done = make(site_dir, "site1", VIP, hosts=ADDRESSES, external=[EXTERNAL_VIP, FQDN])
    assert any(line.startswith(f"issued the certificate of {EXTERNAL_VIP}, {FQDN}") for line in done), done
    external_pem = site_dir / "certificates" / "external.pem"
    assert oct(os.stat(external_pem).st_mode & 0o777) == "0o600"
    assert handshake(external_pem, None, ca_path(site_dir), FQDN) == ""
    assert "mismatch" in handshake(external_pem, None, ca_path(site_dir), VIP)
    desired = compute_desired(ha_site(site_dir, services, enable_tls_internal=True, enable_tls_external=True,
                                      external_vip_address=EXTERNAL_VIP, external_fqdn=FQDN), inventory)
    # Users get the name over HTTPS; the services speak to each other on the internal address.
    for registration in desired.registrations.values():
        assert registration.endpoints["public"].startswith(f"https://{FQDN}:"), registration
        assert registration.endpoints["internal"].startswith(f"https://{VIP}:"), registration
    bootstrap = next(j for j in desired.hosts["control1"].jobs() if j.name == "keystone.bootstrap")
    assert f"--bootstrap-public-url https://{FQDN}:5000" in " ".join(bootstrap.spec.command)
    haproxy = container(desired, "control1", "haproxy")
    sections = listen_sections(content(haproxy, "haproxy.cfg"))
    for name, port in (("keystone", 5000), ("horizon", 443)):
        assert f"bind {VIP}:{port} transparent ssl crt /etc/haproxy/certificates/internal.pem" in sections[name]
        assert f"bind {EXTERNAL_VIP}:{port} transparent ssl crt /etc/haproxy/certificates/external.pem" \
            in sections[name]
    assert not any(EXTERNAL_VIP in line for line in sections["mariadb"])  # the database stays inside
    key_file = next(f for f in haproxy.files if f.dest == "/etc/haproxy/certificates/external.pem")
    assert (key_file.mode, key_file.content) == ("0600", external_pem.read_text())
    for host, state in desired.hosts.items():
        for c in state.containers():
            assert (key_file.content in [f.content for f in c.files]) == (c.name == "haproxy"), (host, c.name)
    # prechecks ask the load balancer's hosts whether both addresses fit their networks.
    assert {h: s.virtual_addresses for h, s in desired.hosts.items()} == {
        "control1": [VIP, EXTERNAL_VIP], "control2": [VIP, EXTERNAL_VIP], "control3": [VIP, EXTERNAL_VIP],
        "compute1": []}
    keepalived = content(container(desired, "control2", "keepalived"), "keepalived.conf.in")
    assert f"{VIP}/32 dev @INTERFACE@" in keepalived and f"{EXTERNAL_VIP}/32 dev @INTERFACE@" in keepalived


def test_the_users_side_over_plain_http_beside_an_internal_https(site_dir: Path, services: dict[str, ServiceSpec],
                                                                 inventory: Inventory) -> None:
    make(site_dir, "site1", VIP, hosts=ADDRESSES)
    desired = compute_desired(ha_site(site_dir, services, enable_tls_internal=True,
                                      external_vip_address=EXTERNAL_VIP), inventory)
    keystone = desired.registrations["keystone"] if "keystone" in desired.registrations else None
    for registration in desired.registrations.values():
        assert registration.endpoints["public"].startswith(f"http://{EXTERNAL_VIP}:"), registration
    assert keystone is None or keystone.endpoints["internal"].startswith("https://")
    sections = listen_sections(content(container(desired, "control1", "haproxy"), "haproxy.cfg"))
    assert f"bind {EXTERNAL_VIP}:5000 transparent" in sections["keystone"]
    assert "http-request set-header X-Forwarded-Proto http if !{ ssl_fc }" in sections["keystone"]


def test_a_name_for_the_shared_address_goes_into_the_internal_certificate(site_dir: Path,
                                                                           services: dict[str, ServiceSpec],
                                                                           inventory: Inventory) -> None:
    make(site_dir, "site1", VIP, hosts=ADDRESSES)  # issued before the name was set: it lacks it
    with pytest.raises(MortarError) as err:
        ha_site(site_dir, services, enable_tls_internal=True, external_fqdn=FQDN)
    assert f"does not name external_fqdn {FQDN}" in str(err.value) and str(internal_path(site_dir)) in str(err.value)
    make(site_dir, "site1", VIP, [FQDN], hosts=ADDRESSES)
    desired = compute_desired(ha_site(site_dir, services, enable_tls_internal=True, external_fqdn=FQDN), inventory)
    for registration in desired.registrations.values():
        assert registration.endpoints["public"].startswith(f"https://{FQDN}:"), registration
        assert registration.endpoints["internal"].startswith(f"https://{VIP}:"), registration
    assert handshake(internal_path(site_dir), None, ca_path(site_dir), FQDN) == ""


INTERNAL_FQDN = "internal.cloud.example.net"


def test_the_internal_name_is_what_every_client_reaches_the_virtual_address_by(site_dir: Path,
                                                                              services: dict[str, ServiceSpec],
                                                                              inventory: Inventory) -> None:
    make(site_dir, "site1", VIP, hosts=ADDRESSES)  # issued before the name was set: they lack it
    with pytest.raises(MortarError) as err:
        ha_site(site_dir, services, enable_tls_internal=True, internal_fqdn=INTERNAL_FQDN)
    assert f"does not name internal_fqdn {INTERNAL_FQDN}" in str(err.value), str(err.value)
    make(site_dir, "site1", VIP, [INTERNAL_FQDN], hosts=ADDRESSES, internal_fqdn=INTERNAL_FQDN)
    desired = compute_desired(ha_site(site_dir, services, enable_tls_internal=True, internal_fqdn=INTERNAL_FQDN),
                              inventory)
    # The endpoints (public ones too, without a users' side), clouds.yaml's and every service's URLs.
    for registration in desired.registrations.values():
        for interface in ("public", "internal", "admin"):
            assert registration.endpoints[interface].startswith(f"https://{INTERNAL_FQDN}:"), registration
    assert desired.identity["auth_url"].startswith(f"https://{INTERNAL_FQDN}:5000")
    nova = content(container(desired, "compute1", "nova_compute"), "nova.conf")
    assert f"https://{INTERNAL_FQDN}:5000" in nova and f"https://{VIP}:" not in nova
    keystone = content(container(desired, "control1", "keystone"), "keystone.conf")
    assert f"@{INTERNAL_FQDN}:3306/keystone?ssl_ca=/etc/mortar/ca.crt" in keystone
    # HAProxy and keepalived still serve the address; every host must resolve the name to it.
    sections = listen_sections(content(container(desired, "control1", "haproxy"), "haproxy.cfg"))
    assert f"bind {VIP}:5000 transparent ssl crt /etc/haproxy/certificates/internal.pem" in sections["keystone"]
    assert {h: state.names for h, state in desired.hosts.items()} == {h: {INTERNAL_FQDN: VIP} for h in ADDRESSES}
    # The certificates name it: HAProxy's, and each host's (the broker and the database serve those).
    assert handshake(internal_path(site_dir), None, ca_path(site_dir), INTERNAL_FQDN) == ""
    crt, key = host_paths(site_dir, "control2")
    assert handshake(crt, key, ca_path(site_dir), INTERNAL_FQDN) == ""


def test_without_users_side_settings_the_public_endpoints_stay_where_they_were(desired_plain: DesiredState) -> None:
    for registration in desired_plain.registrations.values():
        assert registration.endpoints["public"] == registration.endpoints["internal"], registration
    sections = listen_sections(content(container(desired_plain, "control1", "haproxy"), "haproxy.cfg"))
    assert not any("X-Forwarded-Proto" in line for section in sections.values() for line in section)


@pytest.fixture
def desired_plain(site_dir: Path, services: dict[str, ServiceSpec], inventory: Inventory) -> DesiredState:
    return compute_desired(ha_site(site_dir, services), inventory)


@pytest.mark.parametrize("settings, key, words", [
    ({"external_vip_address": VIP}, "external_vip_address", "is internal_vip_address too"),
    ({"external_vip_address": "10.0.0.11"}, "external_vip_address", "is the address of control1"),
    ({"external_vip_address": EXTERNAL_VIP, "internal_vip_address": None, "enable_haproxy": False},
     "external_vip_address", "no internal_vip_address"),
    ({"enable_tls_external": True}, "enable_tls_external", "enable_tls_internal: true"),
    ({"enable_tls_external": True, "external_vip_address": EXTERNAL_VIP}, None, "mortar certificates"),
    ({"external_fqdn": "10.0.0.30"}, "external_fqdn", "not a DNS name"),
    ({"external_fqdn": "bad_name!"}, "external_fqdn", "not a DNS name"),
    ({"internal_fqdn": "10.0.0.30"}, "internal_fqdn", "not a DNS name"),
    ({"internal_fqdn": INTERNAL_FQDN, "internal_vip_address": None, "enable_haproxy": False}, "internal_fqdn",
     "no internal_vip_address"),
])
def test_bad_users_side_settings_are_refused(site_dir: Path, services: dict[str, ServiceSpec], inventory: Inventory,
                                             settings: dict, key: str | None, words: str) -> None:
    with pytest.raises(MortarError) as err:
        compute_desired(ha_site(site_dir, services, **settings), inventory)
    assert words in str(err.value), str(err.value)
    if key:
        assert err.value.key == key, str(err.value)
    else:
        assert "external.pem" in str(err.value)


@pytest.mark.parametrize("key, value", [("enable_tls_external", True), ("external_vip_address", EXTERNAL_VIP),
                                        ("internal_fqdn", INTERNAL_FQDN)])
def test_kubernetes_refuses_the_users_side(site_dir: Path, services: dict[str, ServiceSpec], key: str,
                                           value: object) -> None:
    from mortar.k8s.topology import ClusterTopology

    make(site_dir, "site1", VIP, external=[EXTERNAL_VIP])
    site = ha_site(site_dir, services, **{"external_vip_address": EXTERNAL_VIP, key: value})
    with pytest.raises(MortarError) as err:
        ClusterTopology(site, parse_inventory(THREE_CONTROL_HOSTS, "inventory"))
    assert err.value.key == key
