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
    load_globals,
    load_site,
    required_passwords,
    schema,
)
from mortar.site.samples import INVENTORY_AIO, INVENTORY_MULTINODE, globals_sample, write_samples


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


# ---- load_site: the happy path ---------------------------------------------------------

def test_fresh_site_loads_with_defaults(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    site = load_site(site_dir, services)
    assert site.enabled == {name for name, spec in services.items() if spec.enabled}
    assert site.enabled, "the shipped catalogue enables something by default"
    for key, decl in schema(services).items():
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
        assert "default" in decl and decl["type"] in ("int", "str", "bool", "list"), key
        for value in decl.get("choices", []):
            path.write_text(yaml.safe_dump({key: value}))
            assert load_globals(path, services)[key] == value
        if "choices" in decl:
            assert decl["default"] in decl["choices"], key


# ---- passwords.yml -------------------------------------------------------------------------

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


# ---- dependencies ----------------------------------------------------------------------------

def test_disabled_dependency_is_a_clear_error(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    path = set_globals(site_dir, "enable_mariadb: false\n")
    err = load_error(site_dir, services)
    assert err.file == str(path)
    assert err.key == "enable_mariadb"
    assert "needs mariadb, which is disabled" in err.message
    assert "enable_mariadb: true" in str(err)


def test_disabling_dependency_and_all_dependents_is_fine(site_dir: Path, services: dict[str, ServiceSpec]) -> None:
    # everything that (transitively) depends on keystone goes too
    off = {"keystone"}
    changed = True
    while changed:
        changed = False
        for name, spec in services.items():
            if name not in off and off & set(spec.depends):
                off.add(name)
                changed = True
    set_globals(site_dir, "".join(f"enable_{name}: false\n" for name in sorted(off)))
    site = load_site(site_dir, services)
    assert site.enabled == set(services) - off
    assert "mariadb" in site.enabled


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

def test_globals_sample_is_all_comments(services: dict[str, ServiceSpec]) -> None:
    text = globals_sample()
    assert yaml.safe_load(text) is None
    for line in text.splitlines():
        assert not line.strip() or line.lstrip().startswith("#"), line


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
    assert "(one of: fake, libvirt)" in text


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
    for host in ("cmp1", "cmp2"):
        assert [c.name for c in desired.hosts[host].containers()] == ["nova_compute"]
        assert desired.hosts[host].address == inventory.hosts[host].vars["api_address"]
    assert "keystone" in desired.hosts["ctl1"].services
