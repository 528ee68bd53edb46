"""Tests for the operator's site files: globals.yml, passwords.yml, genpwd and `mortar init` samples."""

from __future__ import annotations

import base64
import os
import re
import stat
import string
from pathlib import Path
from typing import Any

import pytest
import yaml

from mortar.catalogue.loader import ServiceSpec
from mortar.errors import MortarError
from mortar.site.config import (
    CORE_OPTIONS,
    generate_secret,
    genpwd,
    host_settings,
    load_globals,
    load_site,
    required_passwords,
    schema,
    site_id,
)
from mortar.site.samples import INVENTORY_AIO, INVENTORY_MULTINODE, globals_sample, write_samples

# What the globals sample sets uncommented: the veth pair of an all-in-one provider network.
AIO_NETWORK = {"neutron_external_interface": "mortar-ext", "neutron_external_veth_address": "10.213.78.1/24"}


def set_globals(site_dir: Path, text: str) -> Path:
    path = site_dir / "globals.yml"
    path.write_text(text)
    return path


def load_error(site_dir: Path, services: dict[str, ServiceSpec]) -> MortarError:
    with pytest.raises(MortarError) as info:
        load_site(site_dir, services)
    return info.value


def passwords_of(site_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((site_dir / "passwords.yml").read_text())


def set_password_text(site_dir: Path, key: str, value: str) -> Path:
    """passwords.yml with KEY's line written as `KEY: VALUE`, VALUE as raw YAML."""
    path = site_dir / "passwords.yml"
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key}:")]
    path.write_text("\n".join([*lines, f"{key}: {value}"]) + "\n")
    return path


# ---- load_site: the happy path ---------------------------------------------------------

def test_fresh_site_loads_with_defaults(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    site = load_site(site_dir, services)
    assert site.enabled == {name for name, spec in services.items() if spec.enabled}
    assert site.enabled, "the shipped catalogue enables something by default"
    # The sample sets the all-in-one provider network; every other key takes its default.
    assert {k: site.globals[k] for k in AIO_NETWORK} == AIO_NETWORK
    for key, decl in schema(services).items():
        if key not in AIO_NETWORK:
            assert site.globals[key] == decl["default"], key
    needed = required_passwords(services, site.enabled)
    assert set(needed) <= set(site.passwords)
    assert all(site.passwords[key] for key in needed)
    assert site.config_dir == site_dir


def test_image_ref_uses_registry_namespace_and_tag(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    set_globals(site_dir, "docker_registry: reg.example:5000\nimage_namespace: ns\nimage_tag: t1\n")
    site = load_site(site_dir, services)
    assert site.image_ref("keystone") == "reg.example:5000/ns/keystone:t1"
    set_globals(site_dir, "image_namespace: ns\nimage_tag: t1\n")
    assert load_site(site_dir, services).image_ref("keystone") == "ns/keystone:t1"


def test_images_carry_the_release_unless_a_tag_is_set(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    assert load_site(site_dir, services).image_ref("keystone") == "mortar/keystone:2026.2"
    # Unquoted, YAML reads the series as a number; the series it names is meant.
    set_globals(site_dir, "openstack_release: 2026.1\n")
    site = load_site(site_dir, services)
    assert site.release == "2026.1" and site.image_ref("keystone") == "mortar/keystone:2026.1"
    set_globals(site_dir, "openstack_release: '2025.1'\nimage_tag: lab-7\n")
    site = load_site(site_dir, services)
    assert site.release == "2025.1" and site.image_ref("keystone") == "mortar/keystone:lab-7"


def test_set_values_override_defaults(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    set_globals(site_dir, "keystone_workers: 5\nopenstack_debug: true\nnova_compute_driver: libvirt\n")
    site = load_site(site_dir, services)
    assert site.globals["keystone_workers"] == 5
    assert site.globals["openstack_debug"] is True
    assert site.globals["nova_compute_driver"] == "libvirt"


def test_disabling_a_leaf_service_removes_it_and_its_passwords(site_dir: Path,
                                                              services: dict[str, ServiceSpec]) -> None:
    set_globals(site_dir, "enable_horizon: false\n")
    pw = passwords_of(site_dir)
    del pw["horizon_secret_key"]
    (site_dir / "passwords.yml").write_text(yaml.safe_dump(pw))
    site = load_site(site_dir, services)
    assert "horizon" not in site.enabled
    assert "keystone" in site.enabled


# ---- globals.yml errors ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "line"), [
    ("enable_nova: true\nkeystone_workers: [1\n", 3),
    ("enable_nova: true\nfoo: bar: baz\n", 2),
    ("api_address: 10.0.0.1\nregion_name: \"unterminated\n", 3),
])
def test_malformed_globals_names_file_and_line(site_dir: Path, services: dict[str, ServiceSpec], text: str,
                                               line: int) -> None:
    path = set_globals(site_dir, text)
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == f"line {line}"
    assert "malformed YAML" in err.message
    assert str(path) in str(err) and f"line {line}" in str(err)


@pytest.mark.parametrize(("text", "line", "first"), [
    ("enable_nova: true\nkeystone_workers: 2\nenable_nova: false\n", 3, 1),
    ("{openstack_debug: true, openstack_debug: false}\n", 1, 1),
])
def test_key_set_twice_is_refused(site_dir: Path, services: dict[str, ServiceSpec], text: str, line: int,
                                  first: int) -> None:
    path = set_globals(site_dir, text)
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == f"line {line}"
    assert f"is set twice (first on line {first})" in err.message
    assert err.fix


def test_globals_must_be_a_mapping(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    path = set_globals(site_dir, "- enable_nova: true\n")
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert "mapping" in err.message


def test_missing_globals_says_run_init(tmp_path: Path, services: dict[str, ServiceSpec]) -> None:
    err = load_error(tmp_path, services)
    assert err.file == str(tmp_path / "globals.yml")
    assert "mortar init" in str(err)


def test_empty_globals_is_all_defaults(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    set_globals(site_dir, "# nothing\n")
    assert load_site(site_dir, services).globals["keystone_workers"] == schema(services)["keystone_workers"]["default"]


@pytest.mark.parametrize(("key", "suggestion"), [
    ("enable_keystnoe", "enable_keystone"),
    ("keystone_worker", "keystone_workers"),
    ("api_adress", "api_address"),
])
def test_unknown_key_is_named_with_suggestion(site_dir: Path, services: dict[str, ServiceSpec], key: str,
                                              suggestion: str) -> None:
    path = set_globals(site_dir, f"{key}: true\n")
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == key
    assert "unknown key" in err.message
    assert f"did you mean '{suggestion}'?" in str(err)


def test_unknown_key_without_close_match_points_at_init(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    set_globals(site_dir, "zzzzzzzzzzzzzzzz: 1\n")
    err = load_error(site_dir, services)
    assert err.key == "zzzzzzzzzzzzzzzz"
    assert "did you mean" not in str(err)
    assert "mortar init" in str(err)


@pytest.mark.parametrize(("line", "key", "kind", "got"), [
    ('keystone_workers: "two"', "keystone_workers", "int", "str"),
    ("keystone_workers: true", "keystone_workers", "int", "bool"),
    ("keystone_workers: 2.5", "keystone_workers", "int", "float"),
    ("enable_nova: 1", "enable_nova", "bool", "int"),
    ('enable_nova: "yes"', "enable_nova", "bool", "str"),
    ("openstack_debug: null", "openstack_debug", "bool", "NoneType"),
    ("api_address: 10", "api_address", "str", "int"),
])
def test_wrong_type_names_key_and_type(site_dir: Path, services: dict[str, ServiceSpec], line: str, key: str,
                                       kind: str, got: str) -> None:
    path = set_globals(site_dir, line + "\n")
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == key
    assert f"must be of type {kind}" in err.message
    assert got in err.message


def test_choices_are_enforced(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    path = set_globals(site_dir, "nova_compute_driver: xen\n")
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == "nova_compute_driver"
    assert "'xen' is not allowed" in err.message
    assert err.fix is not None and "fake" in err.fix and "libvirt" in err.fix


def test_int_minimum_is_enforced(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    set_globals(site_dir, "keystone_workers: 0\n")
    err = load_error(site_dir, services)
    assert err.key == "keystone_workers"
    assert "at least 1" in err.message
    set_globals(site_dir, "keystone_workers: 1\n")
    assert load_site(site_dir, services).globals["keystone_workers"] == 1


def test_every_choice_option_accepts_its_choices_and_default(services: dict[str, ServiceSpec],
                                                            tmp_path: Path) -> None:
    keys = schema(services)
    path = tmp_path / "globals.yml"
    for key, decl in keys.items():
        assert "default" in decl and decl["type"] in ("int", "str", "bool", "list", "dict"), key
        for value in decl.get("choices", []):
            path.write_text(yaml.safe_dump({key: value}))
            assert load_globals(path, services)[key] == value
        if "choices" in decl:
            assert decl["default"] in decl["choices"], key


@pytest.mark.parametrize(("line", "key", "needle", "fix"), [
    ("api_address: 300.1.2.3", "api_address", "'300.1.2.3' is not an IP address", "10.0.0.11"),
    ("api_address: ctl1.example", "api_address", "is not an IP address", "10.0.0.11"),
    ("docker_registry: http://10.0.0.1:4000", "docker_registry", "is a URL", "without the scheme, e.g. 10.0.0.1:4000"),
    ("docker_registry: https://reg", "docker_registry", "is a URL", "e.g. 10.0.0.10:4000"),
    ("docker_registry: 10.0.0.1", "docker_registry", "is not HOST:PORT", "HOST:PORT"),
    ("docker_registry: 10.0.0.1:70000", "docker_registry", "is not HOST:PORT", "1-65535"),
    ("docker_registry: 10.0.0.1:4000/path", "docker_registry", "is not HOST:PORT", "HOST:PORT"),
    ("image_tag: my tag", "image_tag", "'my tag' is not an image tag", "no spaces"),
    ("image_tag: -lead", "image_tag", "is not an image tag", "2026.2"),
    ("image_namespace: My Images", "image_namespace", "is not an image namespace", "lowercase"),
    ("healthcheck_timeout: 1", "healthcheck_timeout", "must be at least 10, not 1", "healthcheck_timeout: 180"),
    # Service options with a `format:` in their service.yaml.
    ("neutron_external_veth_address: 10.213.78.1", "neutron_external_veth_address", "has no prefix length",
     "10.213.78.1/24"),
    ("neutron_external_veth_address: 10.213.78.300/24", "neutron_external_veth_address",
     "is not an address with its prefix length", "ADDRESS/PREFIX"),
    ("neutron_external_interface: 'eth1; reboot'", "neutron_external_interface", "is not an interface name", "eth1"),
    ("neutron_external_interface: a-very-long-name", "neutron_external_interface", "is not an interface name",
     "at most 10"),
    ("external_network_cidr: 10.213.78.1/24", "external_network_cidr", "is not a subnet in CIDR form",
     "no host bits"),
    ("external_network_gateway: gw.example", "external_network_gateway", "is not an IP address", "10.0.0.11"),
    ("external_allocation_pool: 10.213.78.200-10.213.78.100", "external_allocation_pool", "starts after it ends",
     "START-END"),
    ("external_allocation_pool: 10.213.78.100", "external_allocation_pool", "is not an address range",
     "START-END"),
    ("external_allocation_pool: 10.213.78.100-fd00::1", "external_allocation_pool", "mixes IPv4 and IPv6",
     "one family"),
])
def test_values_are_checked(site_dir: Path, services: dict[str, ServiceSpec], line: str, key: str, needle: str,
                            fix: str) -> None:
    path = set_globals(site_dir, line + "\n")
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == key
    assert needle in err.message
    assert err.fix is not None and fix in err.fix


@pytest.mark.parametrize("line", ["api_address: 10.0.0.11", "api_address: '::1'", "docker_registry: 10.0.0.1:4000",
                                  "docker_registry: reg.example:5000", "docker_registry: '[fd00::1]:4000'",
                                  "docker_registry: ''", "image_tag: 2026.2-rc1", "image_namespace: team/mortar",
                                  "neutron_external_veth_address: 10.213.78.1/24", "neutron_external_interface: eth1",
                                  "external_network_cidr: 10.213.78.0/24", "external_network_gateway: ''",
                                  "external_allocation_pool: 10.213.78.100-10.213.78.200"])
def test_good_values_pass(site_dir: Path, services: dict[str, ServiceSpec], line: str) -> None:
    set_globals(site_dir, line + "\n")
    key, value = next(iter(yaml.safe_load(line).items()))
    assert load_site(site_dir, services).globals[key] == value


@pytest.mark.parametrize("name", ["globals.yml", "passwords.yml"])
@pytest.mark.parametrize(("content", "needle"), [
    (b"\x7fELF\x02\x00", "is binary, expected text"),
    (b"region_name: R\xe9gion\n", "is not UTF-8 text"),
    (None, "is a directory, expected a file"),
])
def test_unreadable_site_files(site_dir: Path, services: dict[str, ServiceSpec], name: str, content: bytes | None,
                               needle: str) -> None:
    path = site_dir / name
    path.unlink()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
        path.chmod(0o600)
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert f"{name} {needle}" in err.message
    assert err.fix


def test_broken_symlink_globals(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    path = site_dir / "globals.yml"
    path.unlink()
    path.symlink_to(site_dir / "moved.yml")
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert "broken symlink" in err.message and "moved.yml" in err.message


def test_site_dir_that_is_a_file(tmp_path: Path, services: dict[str, ServiceSpec]) -> None:
    path = tmp_path / "site"
    path.write_text("")
    err = load_error(path, services)
    assert err.file == str(path)
    assert err.fix is not None and "--config-dir" in err.fix


# ---- passwords.yml -------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_passwords_readable_by_others_is_refused(site_dir: Path, services: dict[str, ServiceSpec],
                                                 bits: int) -> None:
    path = site_dir / "passwords.yml"
    path.chmod(bits)
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert f"mode {bits:04o}" in err.message
    assert err.fix == f"chmod 600 {path}"
    path.chmod(0o600)
    load_site(site_dir, services)
    path.chmod(0o400)
    load_site(site_dir, services)


@pytest.mark.parametrize(("value", "kind"), [("{a: 1}", "dict"), ("[a, b]", "list"), ("true", "bool"),
                                             ("0123", "int"), ("3.10", "float"), ("2026-01-01", "date")])
def test_password_values_must_be_strings(site_dir: Path, services: dict[str, ServiceSpec], value: str,
                                         kind: str) -> None:
    set_password_text(site_dir, "keystone_admin_password", value)
    err = load_error(site_dir, services)
    assert err.file == str(site_dir / "passwords.yml")
    assert err.key == "keystone_admin_password"
    assert f"must be a string, not {kind}" in err.message
    assert err.fix is not None and "quoted" in err.fix


def test_quoted_password_that_looks_like_a_number_is_kept(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    set_password_text(site_dir, "keystone_admin_password", "'0123'")
    assert load_site(site_dir, services).passwords["keystone_admin_password"] == "0123"


def test_missing_password_names_file_key_and_genpwd(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    pw = passwords_of(site_dir)
    del pw["keystone_database_password"]
    (site_dir / "passwords.yml").write_text(yaml.safe_dump(pw))
    err = load_error(site_dir, services)
    assert err.file == str(site_dir / "passwords.yml")
    assert err.key == "keystone_database_password"
    assert "keystone_database_password" in err.message
    assert "mortar genpwd" in str(err)


def test_empty_password_counts_as_missing(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    pw = passwords_of(site_dir)
    pw["database_password"] = ""
    pw["rabbitmq_password"] = None
    (site_dir / "passwords.yml").write_text(yaml.safe_dump(pw))
    err = load_error(site_dir, services)
    assert "missing passwords" in err.message
    assert "database_password" in err.message and "rabbitmq_password" in err.message


def test_missing_passwords_file_points_at_genpwd(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    (site_dir / "passwords.yml").unlink()
    err = load_error(site_dir, services)
    assert err.file == str(site_dir / "passwords.yml")
    assert "mortar genpwd" in str(err)


def test_init_does_not_write_passwords(tmp_path: Path) -> None:
    written = write_samples(tmp_path)
    assert {p.name for p, _ in written} == {"globals.yml", "inventory", "inventory.multinode"}
    assert not (tmp_path / "passwords.yml").exists()
    assert (tmp_path / "config").is_dir()


# ---- capabilities: a disabled provider is named where it was disabled ------------------------

def desired_error(site_dir: Path, services: dict[str, ServiceSpec]) -> MortarError:
    from mortar.deploy.desired import compute_desired
    from mortar.site.inventory import parse_inventory

    site = load_site(site_dir, services)
    with pytest.raises(MortarError) as info:
        compute_desired(site, parse_inventory(INVENTORY_AIO, "inventory"))
    return info.value


def test_disabled_provider_is_a_clear_error(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    path = set_globals(site_dir, "enable_mariadb: false\n")
    err = desired_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == "enable_mariadb"
    assert "need a database provider and no enabled service provides one" in err.message
    assert "keystone" in err.message and "enable_keystone" in str(err)
    assert err.fix is not None and "enable_mariadb: true" in err.fix


def test_disabling_a_provider_and_all_its_consumers_is_fine(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    from mortar.deploy.desired import compute_desired
    from mortar.site.inventory import parse_inventory

    # Everything that needs (transitively, not optionally) a capability only keystone provides goes too.
    off = {"keystone"}
    changed = True
    while changed:
        changed = False
        for name, spec in services.items():
            lost = [cap for cap, need in spec.consumes.items() if not need.optional
                    and all(p in off for p, other in services.items() if cap in other.provides)]
            if name not in off and lost:
                off.add(name)
                changed = True
    assert len(off) > 1, "something consumes identity"
    set_globals(site_dir, "".join(f"enable_{name}: false\n" for name in sorted(off)))
    site = load_site(site_dir, services)
    assert site.enabled == {name for name, spec in services.items() if spec.enabled} - off
    assert "mariadb" in site.enabled
    desired = compute_desired(site, parse_inventory(INVENTORY_AIO, "inventory"))
    assert "keystone" not in desired.order and "mariadb" in desired.order


# ---- site id ------------------------------------------------------------------------------------

def test_site_id_is_made_once(tmp_path: Path) -> None:
    with pytest.raises(MortarError, match="mortar genpwd"):
        site_id(tmp_path, create=False)  # loading a site never makes one: init and genpwd do
    made = site_id(tmp_path)
    assert re.fullmatch(r"[a-f0-9]{12}", made)
    assert site_id(tmp_path) == made == (tmp_path / "site-id").read_text().strip()


@pytest.mark.parametrize(("content", "needle"), [
    ("my-cloud\n", "is not a mortar site id"),
    ("0123456789ABCDEF\n", "is not a mortar site id"),
    ("", "is not a mortar site id"),
    (b"\x00\xff", "site id is binary"),
    (None, "site id is a directory"),
])
def test_malformed_site_id(site_dir: Path, services: dict[str, ServiceSpec], content: str | bytes | None,
                           needle: str) -> None:
    path = site_dir / "site-id"
    path.unlink()
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert needle in err.message
    assert err.fix


# ---- genpwd ------------------------------------------------------------------------------------

def test_genpwd_creates_file_0600_with_every_secret(tmp_path: Path, services: dict[str, ServiceSpec]) -> None:
    path = tmp_path / "new" / "passwords.yml"
    needed = required_passwords(services, set(services))
    old_umask = os.umask(0)
    try:
        added = genpwd(path, needed)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(added) == sorted(needed)
    data = yaml.safe_load(path.read_text())
    assert set(data) == set(needed)
    assert all(isinstance(v, str) and v for v in data.values())
    assert len(set(data.values())) == len(data), "every secret is distinct"
    assert not list(path.parent.glob("*.tmp")), "no temporary file left behind"


def test_genpwd_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "passwords.yml"
    path.write_text("a: keep-me\nunrelated: also-kept\n")
    path.chmod(0o644)
    added = genpwd(path, {"a": "password", "b": "hex"})
    assert added == ["b"]
    data = yaml.safe_load(path.read_text())
    assert data["a"] == "keep-me"
    assert data["unrelated"] == "also-kept"
    assert re.fullmatch(r"[0-9a-f]{64}", data["b"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A second run adds nothing and changes no value.
    assert genpwd(path, {"a": "password", "b": "hex"}) == []
    assert yaml.safe_load(path.read_text()) == data


def test_genpwd_fills_empty_values(tmp_path: Path) -> None:
    path = tmp_path / "passwords.yml"
    path.write_text("a: ''\nb:\n")
    assert sorted(genpwd(path, {"a": "password", "b": "password"})) == ["a", "b"]
    data = yaml.safe_load(path.read_text())
    assert data["a"] and data["b"]


def test_genpwd_kinds(tmp_path: Path) -> None:
    path = tmp_path / "passwords.yml"
    genpwd(path, {"f": "fernet", "h": "hex", "p": "password"})
    data = yaml.safe_load(path.read_text())
    raw = base64.urlsafe_b64decode(data["f"].encode())
    assert len(raw) == 32
    assert base64.urlsafe_b64encode(raw).decode() == data["f"]
    assert re.fullmatch(r"[0-9a-f]{64}", data["h"])
    assert len(data["p"]) == 32 and set(data["p"]) <= set(string.ascii_letters + string.digits)


def test_generated_values_survive_yaml_round_trip(tmp_path: Path) -> None:
    # Values that look like numbers or booleans must stay strings in passwords.yml.
    for _ in range(20):
        for kind in ("fernet", "hex", "password"):
            value = generate_secret(kind)
            assert yaml.safe_load(yaml.safe_dump({"k": value}))["k"] == value


def test_genpwd_output_then_load_site(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    text = (site_dir / "passwords.yml").read_text()
    assert text.startswith("# Generated by `mortar genpwd`")
    site = load_site(site_dir, services)
    assert site.passwords == {k: str(v) for k, v in yaml.safe_load(text).items()}


# ---- mortar init samples -----------------------------------------------------------------------

def test_globals_sample_is_all_comments_but_the_aio_provider_network(services: dict[str, ServiceSpec]) -> None:
    text = globals_sample()
    assert yaml.safe_load(text) == AIO_NETWORK
    settings = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert settings == [f"{key}: {value}" for key, value in AIO_NETWORK.items()]
    # Both are options of the catalogue (a sample setting an unknown key would not load).
    assert set(AIO_NETWORK) <= set(schema(services))


def test_globals_sample_lists_every_key_commented(services: dict[str, ServiceSpec]) -> None:
    text = globals_sample()
    keys = schema(services)
    assert set(CORE_OPTIONS) <= set(keys)
    commented = {m.group(1) for m in re.finditer(r"^#([a-z_][a-z0-9_]*):", text, re.MULTILINE)}
    assert commented == set(keys)


def test_uncommented_sample_gives_the_defaults(tmp_path: Path, services: dict[str, ServiceSpec]) -> None:
    keys = schema(services)
    lines = [line[1:] for line in globals_sample().splitlines()
             if re.match(r"^#[a-z_][a-z0-9_]*:", line)]
    path = tmp_path / "globals.yml"
    path.write_text("\n".join(lines) + "\n")
    data = yaml.safe_load(path.read_text())
    assert data == {key: decl["default"] for key, decl in keys.items()}
    assert load_globals(path, services) == data


def test_globals_sample_shows_help_and_choices(services: dict[str, ServiceSpec]) -> None:
    text = globals_sample()
    assert "# uWSGI processes of the keystone API\n#keystone_workers: 2\n" in text
    assert "(one of: libvirt, fake)\n#nova_compute_driver: libvirt\n" in text


def test_write_samples_keeps_existing_files(tmp_path: Path) -> None:
    (tmp_path / "globals.yml").write_text("keystone_workers: 4\n")
    done = dict(write_samples(tmp_path))
    assert done == {tmp_path / "globals.yml": False, tmp_path / "inventory": True,
                    tmp_path / "inventory.multinode": True}
    assert (tmp_path / "globals.yml").read_text() == "keystone_workers: 4\n"
    assert (tmp_path / "inventory").read_text() == INVENTORY_AIO
    assert set(dict(write_samples(tmp_path)).values()) == {False}


def test_multinode_sample_places_every_service(tmp_path: Path, services: dict[str, ServiceSpec]) -> None:
    from mortar.deploy.desired import compute_desired
    from mortar.site.inventory import parse_inventory

    inventory = parse_inventory(INVENTORY_MULTINODE, "inventory.multinode")
    assert set(inventory.hosts) == {"ctl1", "cmp1", "cmp2"}
    write_samples(tmp_path)
    genpwd(tmp_path / "passwords.yml", required_passwords(services, set(services)))
    desired = compute_desired(load_site(tmp_path, services), inventory)
    # Compute hosts run the data plane only: the switch, OVN's controller, the hypervisor, the metadata agent.
    data_plane = ["openvswitch_db", "openvswitch_vswitchd", "ovn_controller", "nova_compute", "nova_libvirt",
                  "neutron_ovn_metadata_agent"]
    for host in ("cmp1", "cmp2"):
        assert [c.name for c in desired.hosts[host].containers()] == data_plane
        assert desired.hosts[host].address == inventory.hosts[host].vars["api_address"]
    assert "keystone" in desired.hosts["ctl1"].services
    # ctl1 is the network host too: a switch and a controller (its gateway), no hypervisor.
    control = [c.name for c in desired.hosts["ctl1"].containers()]
    assert {"openvswitch_db", "openvswitch_vswitchd", "ovn_controller", "nova_metadata"} <= set(control)
    assert not {"nova_compute", "nova_libvirt", "neutron_ovn_metadata_agent"} & set(control)


def test_a_per_host_option_is_read_from_the_inventory(services: dict[str, ServiceSpec]) -> None:
    hosts = {"compute1": {"api_address": "10.0.0.21", "neutron_tunnel_address": "10.0.0.149/26"},
             "compute2": {"api_address": "10.0.0.22", "ovs_datapath": "netdev"}}
    # Only options declared per_host come from host variables; others stay globals.yml's.
    assert host_settings(services, hosts, "inventory") == {"compute1": {"neutron_tunnel_address": "10.0.0.149/26"}}


@pytest.mark.parametrize(("value", "needle", "fix"), [
    ("10.0.0.149", "has no prefix length", "10.0.0.149/24"),
    ("10.0.0.300/26", "is not an address with its prefix length", "ADDRESS/PREFIX"),
])
def test_a_bad_per_host_value_names_the_inventory_host_and_key(services: dict[str, ServiceSpec], value: str,
                                                               needle: str, fix: str) -> None:
    with pytest.raises(MortarError) as info:
        host_settings(services, {"compute1": {"neutron_tunnel_address": value}}, "/etc/mortar/inventory")
    err = info.value
    assert err.file == "/etc/mortar/inventory" and err.key == "compute1 neutron_tunnel_address"
    assert needle in err.message and err.fix is not None and fix in err.fix


def test_fernet_rotation_moves_every_key_along_and_makes_a_new_staged_one(site_dir: Path) -> None:
    """The staged key (0) becomes the primary (2), the primary a secondary (1), the oldest goes."""
    from mortar.catalogue.loader import load_catalogue
    from mortar.files import load_yaml
    from mortar.site.config import rotate

    path = site_dir / "passwords.yml"
    before = load_yaml(path, what="passwords.yml")
    changed = rotate(path, load_catalogue(), "fernet")
    after = load_yaml(path, what="passwords.yml")
    assert changed == ["keystone_fernet_key_0", "keystone_fernet_key_1", "keystone_fernet_key_2"]
    assert after["keystone_fernet_key_2"] == before["keystone_fernet_key_0"]
    assert after["keystone_fernet_key_1"] == before["keystone_fernet_key_2"]
    assert after["keystone_fernet_key_0"] not in before.values() and len(after["keystone_fernet_key_0"]) == 44
    assert {k: v for k, v in after.items() if "fernet_key" not in k} == \
        {k: v for k, v in before.items() if "fernet_key" not in k}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_rotation_refuses_a_missing_key_and_changes_nothing(site_dir: Path) -> None:
    from mortar.catalogue.loader import load_catalogue
    from mortar.site.config import rotate

    path = site_dir / "passwords.yml"
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if not line.startswith("keystone_fernet_key_2")) + "\n")
    text = path.read_text()
    with pytest.raises(MortarError) as info:
        rotate(path, load_catalogue(), "fernet")
    assert info.value.key == "keystone_fernet_key_2" and "mortar genpwd" in str(info.value)
    assert path.read_text() == text
    with pytest.raises(MortarError):
        rotate(path, load_catalogue(), "nothing-by-that-name")
