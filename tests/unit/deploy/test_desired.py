"""Tests for the desired state computed from the site and the catalogue (mortar/deploy/desired.py)."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest

from mortar.deploy.desired import (
    ContainerSpec,
    DesiredState,
    FileSpec,
    compute_desired,
    host_state_from_dict,
    redact,
)
from mortar.deploy.runner import load_deployment
from mortar.errors import MortarError
from mortar.site.config import Site
from mortar.site.inventory import Inventory, parse_inventory


def containers_by_name(desired: DesiredState) -> dict[str, ContainerSpec]:
    return {c.name: c for state in desired.hosts.values() for c in state.containers()}


def jobs_by_name(desired: DesiredState):
    return {j.name: j for state in desired.hosts.values() for s in state.services.values() for j in s.jobs}


def file_of(container: ContainerSpec, name: str) -> FileSpec:
    return next(f for f in container.files if f.name == name)


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00none")
    parser.read_string(text)
    return parser


def override(site_dir: Path, relative: str, text: str) -> None:
    path = site_dir / "config" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---- placement -------------------------------------------------------------------------------

def test_everything_lands_on_localhost(desired: DesiredState, site: Site) -> None:
    assert list(desired.hosts) == ["localhost"]
    state = desired.hosts["localhost"]
    assert state.address == "127.0.0.1"
    assert set(state.services) == site.enabled
    expected = {c for name in site.enabled for c in site.services[name].containers}
    assert {c.name for c in state.containers()} == expected
    assert desired.hosts_running("keystone") == ["localhost"]


def test_nova_compute_is_deployed(desired: DesiredState) -> None:
    nova = desired.hosts["localhost"].services["nova"]
    names = [c.name for c in nova.containers]
    assert "nova_compute" in names
    compute = containers_by_name(desired)["nova_compute"]
    assert compute.service == "nova"
    assert compute.image == "mortar/nova-compute:2026.2"
    assert "nova.conf" in {f.name for f in compute.files}


def test_order_follows_dependencies(desired: DesiredState, site: Site) -> None:
    for name in desired.order:
        for dep in site.services[name].depends:
            assert desired.order.index(dep) < desired.order.index(name)


def test_containers_are_unique_and_images_qualified(desired: DesiredState) -> None:
    names = [c.name for c in desired.hosts["localhost"].containers()]
    assert len(names) == len(set(names))
    for container in desired.hosts["localhost"].containers():
        assert container.image.startswith("mortar/") and container.image.endswith(":2026.2"), container.image
        assert container.command, f"{container.name} has no command"


# ---- database jobs -----------------------------------------------------------------------------

def test_database_job_per_service_with_databases(desired: DesiredState, site: Site) -> None:
    jobs = jobs_by_name(desired)
    with_db = {name for name in site.enabled if site.services[name].databases}
    assert with_db >= {"keystone", "nova"}
    assert {name.split(".")[0] for name in jobs if name.endswith(".database")} == with_db
    for name in with_db:
        job = jobs[f"{name}.database"]
        assert (job.phase, job.run, job.service) == ("before", "on_change", name)
        # it is the first job of its service: the database exists before db_sync
        assert desired.hosts["localhost"].services[name].jobs[0] is job
        assert job.container.image == site.image_ref("mariadb-server")
        sql = file_of(job.container, "db.sql").content
        client = file_of(job.container, "client.cnf").content
        assert f"password={site.passwords['database_password']}" in client
        assert "host=127.0.0.1" in client
        for db in site.services[name].databases:
            assert f"CREATE DATABASE IF NOT EXISTS `{db['name']}`" in sql
            assert f"GRANT ALL PRIVILEGES ON `{db['name']}`.* TO '{db['user']}'@'%'" in sql
            assert f"IDENTIFIED BY '{site.passwords[db['password']]}'" in sql
        assert sql.count("CREATE DATABASE") == len(site.services[name].databases)


def test_nova_creates_its_three_databases(desired: DesiredState) -> None:
    sql = file_of(jobs_by_name(desired)["nova.database"].container, "db.sql").content
    for db in ("nova_api", "nova", "nova_cell0"):
        assert f"CREATE DATABASE IF NOT EXISTS `{db}`" in sql


def test_jobs_run_on_their_service_container(desired: DesiredState) -> None:
    containers = containers_by_name(desired)
    keystone = containers["keystone"]
    sync = jobs_by_name(desired)["keystone.db_sync"]
    assert sync.container.name == "keystone_db_sync"
    assert sync.container.image == keystone.image
    assert sync.container.command == ["keystone-manage", "db_sync"]
    assert sync.container.user == "keystone"
    assert sync.container.healthcheck == {}
    assert [f.name for f in sync.container.files] == [f.name for f in keystone.files]
    assert sync.container.volumes == keystone.volumes


# ---- secrets -------------------------------------------------------------------------------------

def test_rendered_conf_has_password_but_definition_does_not(desired: DesiredState, site: Site) -> None:
    keystone = containers_by_name(desired)["keystone"]
    conf = file_of(keystone, "keystone.conf").content
    assert site.passwords["keystone_database_password"] in conf
    connection = ini(conf)["database"]["connection"]
    assert connection == (f"mysql+pymysql://keystone:{site.passwords['keystone_database_password']}"
                          "@127.0.0.1/keystone")
    assert ini(conf)["token"]["expiration"] == "86400"
    secrets = [v for v in site.passwords.values()]
    for container in desired.hosts["localhost"].containers():
        definition = json.dumps(container.definition())
        for secret in secrets:
            assert secret not in definition, f"{container.name} definition holds a secret"
        # the digests in the definition are those of the rendered files
        assert container.definition()["files"] == {
            f.name: {"dest": f.dest, "owner": f.owner, "mode": f.mode, "sha256": f.digest} for f in container.files}


def test_secrets_list_holds_every_password_longest_first(desired: DesiredState, site: Site) -> None:
    assert set(desired.secrets) == {v for v in site.passwords.values() if len(v) >= 6}
    lengths = [len(s) for s in desired.secrets]
    assert lengths == sorted(lengths, reverse=True)
    assert desired.admin["password"] == site.passwords["keystone_admin_password"]
    assert desired.admin["auth_url"] == "http://127.0.0.1:5000/v3"


def test_redact_masks_every_secret() -> None:
    secrets = sorted(["abcdef123456", "abcdef", "s3cr3t!"], key=len, reverse=True)
    text = "url=mysql://u:abcdef123456@h/db other=abcdef x=s3cr3t! plain=abcde"
    masked = redact(text, secrets)
    assert masked == "url=mysql://u:********@h/db other=******** x=******** plain=abcde"
    assert redact("nothing here", secrets) == "nothing here"
    assert redact("abc", []) == "abc"


def test_registrations_carry_passwords_and_endpoints(desired: DesiredState, site: Site) -> None:
    nova = desired.registrations["nova"]
    assert nova.type == "compute"
    assert nova.endpoints["public"] == "http://127.0.0.1:8774/v2.1"
    assert nova.users == [{"name": "nova", "password": site.passwords["nova_keystone_password"]}]
    assert "keystone" not in desired.registrations


# ---- config hashes and overrides -----------------------------------------------------------

def test_config_hash_is_stable(site: Site, aio: Inventory) -> None:
    first, second = compute_desired(site, aio), compute_desired(site, aio)
    assert {n: c.config_hash for n, c in containers_by_name(first).items()} == \
        {n: c.config_hash for n, c in containers_by_name(second).items()}
    assert {n: j.job_hash for n, j in jobs_by_name(first).items()} == \
        {n: j.job_hash for n, j in jobs_by_name(second).items()}
    hashes = [c.config_hash for c in containers_by_name(first).values()]
    assert len(set(hashes)) == len(hashes)


def test_override_changes_only_keystone(site_dir: Path, site: Site, aio: Inventory) -> None:
    before = compute_desired(site, aio)
    override(site_dir, "keystone/keystone.conf", "[token]\nexpiration = 7200\n")
    after = compute_desired(site, aio)

    old_c, new_c = containers_by_name(before), containers_by_name(after)
    changed = {n for n in new_c if new_c[n].config_hash != old_c[n].config_hash}
    assert changed == {"keystone"}
    old_j, new_j = jobs_by_name(before), jobs_by_name(after)
    changed_jobs = {n for n in new_j if new_j[n].job_hash != old_j[n].job_hash}
    keystone_jobs = {j.name for j in after.hosts["localhost"].services["keystone"].jobs}
    # every keystone job that mounts keystone.conf; the generic database job does not
    assert changed_jobs == keystone_jobs - {"keystone.database"}
    assert changed_jobs

    conf = ini(file_of(new_c["keystone"], "keystone.conf").content)
    assert conf["token"]["expiration"] == "7200"
    assert conf["token"]["provider"] == "fernet"  # merged key by key, not replaced
    assert conf["database"]["connection"] == ini(file_of(old_c["keystone"], "keystone.conf").content)[
        "database"]["connection"]
    # the other keystone file is untouched
    assert file_of(new_c["keystone"], "keystone-uwsgi.ini").digest == \
        file_of(old_c["keystone"], "keystone-uwsgi.ini").digest


def test_per_host_override_wins(site_dir: Path, site: Site, aio: Inventory) -> None:
    override(site_dir, "keystone/keystone.conf", "[token]\nexpiration = 7200\n[cache]\nenabled = false\n")
    override(site_dir, "keystone/localhost/keystone.conf", "[token]\nexpiration = 3600\n")
    conf = ini(file_of(containers_by_name(compute_desired(site, aio))["keystone"], "keystone.conf").content)
    assert conf["token"]["expiration"] == "3600"
    assert conf["cache"]["enabled"] == "false"


def test_per_host_override_for_other_host_is_ignored(site_dir: Path, site: Site) -> None:
    inventory = parse_inventory("[control]\nctl1\n[compute]\ncmp1\n", "two-hosts")
    override(site_dir, "nova/cmp1/nova.conf", "[DEFAULT]\nmarker = compute-only\n")
    desired = compute_desired(site, inventory)
    assert set(desired.hosts) == {"ctl1", "cmp1"}
    assert [c.name for c in desired.hosts["cmp1"].containers()] == ["nova_compute"]
    compute = file_of(desired.hosts["cmp1"].services["nova"].containers[0], "nova.conf").content
    assert ini(compute)["DEFAULT"]["marker"] == "compute-only"
    for container in desired.hosts["ctl1"].containers():
        for f in container.files:
            assert "compute-only" not in f.content, (container.name, f.name)
    # one-shot jobs run on the first host of the service, a control host for nova
    assert desired.hosts["ctl1"].services["nova"].jobs
    assert desired.hosts["cmp1"].services["nova"].jobs == []


def test_global_conf_reaches_every_main_file(site_dir: Path, site: Site, aio: Inventory) -> None:
    override(site_dir, "global.conf", "[DEFAULT]\nmortar_marker = from-global\n")
    override(site_dir, "keystone.conf", "[DEFAULT]\nmortar_marker = from-keystone\n")
    desired = compute_desired(site, aio)
    main_files = 0
    for container in desired.hosts["localhost"].containers():
        decls = {d.dest: d for d in site.services[container.service].containers[container.name].files}
        for f in container.files:
            decl = decls[f.dest]
            if decl.main and decl.merge == "ini":
                main_files += 1
                expected = "from-keystone" if container.service == "keystone" else "from-global"
                assert ini(f.content)["DEFAULT"]["mortar_marker"] == expected, (container.name, f.name)
            else:
                assert "mortar_marker" not in f.content, (container.name, f.name)
    assert main_files >= 6


def test_unknown_service_override_dir_is_rejected(site_dir: Path) -> None:
    (site_dir / "config" / "keystnoe").mkdir()
    (site_dir / "config" / "keystnoe" / "keystone.conf").write_text("[token]\nexpiration = 1\n")
    with pytest.raises(MortarError) as info:
        load_deployment(site_dir, state_dir=site_dir / "state")
    assert info.value.file == str(site_dir / "config" / "keystnoe")
    assert "did you mean 'keystone'?" in str(info.value)


def test_unknown_host_override_dir_is_rejected(site_dir: Path) -> None:
    override(site_dir, "keystone/ctl9/keystone.conf", "[token]\nexpiration = 1\n")
    with pytest.raises(MortarError) as info:
        load_deployment(site_dir, state_dir=site_dir / "state")
    assert info.value.file == str(site_dir / "config" / "keystone" / "ctl9")
    assert "unknown host" in info.value.message


def test_malformed_override_names_file(site_dir: Path) -> None:
    override(site_dir, "keystone/keystone.conf", "expiration = 7200\n")
    with pytest.raises(MortarError) as info:
        load_deployment(site_dir, state_dir=site_dir / "state")
    assert info.value.file == str(site_dir / "config" / "keystone" / "keystone.conf")
    assert info.value.key == "line 1"


def test_load_deployment_happy_path(site_dir: Path) -> None:
    deployment = load_deployment(site_dir, state_dir=site_dir / "state")
    assert deployment.state_dir == site_dir / "state"
    assert deployment.timeout == 180.0
    assert deployment.inventory.path == str(site_dir / "inventory")
    assert "nova_compute" in containers_by_name(deployment.desired)
    assert not (site_dir / "state").exists(), "loading changes nothing"


# ---- inventory problems ------------------------------------------------------------------------

def test_empty_compute_group_names_inventory_and_group(site_dir: Path) -> None:
    inventory = site_dir / "inventory"
    inventory.write_text("[control]\nlocalhost ansible_connection=local\n\n[compute]\n\n[network]\nlocalhost\n")
    with pytest.raises(MortarError) as info:
        load_deployment(site_dir, state_dir=site_dir / "state")
    err = info.value
    assert err.file == str(inventory)
    assert err.key == "[compute]"
    assert "nova_compute" in err.message
    assert str(inventory) in str(err) and "[compute]" in str(err)


def test_missing_compute_group_is_the_same_error(site: Site) -> None:
    with pytest.raises(MortarError) as info:
        compute_desired(site, parse_inventory("[control]\nlocalhost\n", "inv.ini"))
    assert info.value.file == "inv.ini"
    assert info.value.key == "[compute]"


def test_group_named_after_container_wins(site: Site) -> None:
    inventory = parse_inventory("[control]\nctl1\n[compute]\ncmp1\n[nova-compute]\ncmp2\n", "inv")
    desired = compute_desired(site, inventory)
    assert [c.name for c in desired.hosts["cmp2"].containers()] == ["nova_compute"]
    assert "cmp1" not in desired.hosts


def test_api_address_host_var_is_used(site: Site) -> None:
    inventory = parse_inventory("[control]\nctl1 api_address=10.0.0.5\n[compute]\nctl1\n", "inv")
    desired = compute_desired(site, inventory)
    assert desired.hosts["ctl1"].address == "10.0.0.5"
    conf = ini(file_of(containers_by_name(desired)["keystone"], "keystone.conf").content)
    assert conf["database"]["connection"].endswith("@10.0.0.5/keystone")
    assert desired.admin["auth_url"] == "http://10.0.0.5:5000/v3"


# ---- serialisation -----------------------------------------------------------------------------

def test_host_state_round_trips_through_dict(desired: DesiredState) -> None:
    from dataclasses import asdict

    state = desired.hosts["localhost"]
    again = host_state_from_dict(json.loads(json.dumps(asdict(state))))
    assert again == state
    assert [c.config_hash for c in again.containers()] == [c.config_hash for c in state.containers()]


def test_rendered_files_include_start_spec(desired: DesiredState) -> None:
    keystone = containers_by_name(desired)["keystone"]
    files = keystone.rendered_files()
    assert set(files) == {f.name for f in keystone.files} | {"spec.json"}
    spec = json.loads(files["spec.json"])
    assert spec["command"] == keystone.command
    assert spec["user"] == "keystone"
    assert {f["source"] for f in spec["files"]} == {f.name for f in keystone.files}


def test_definition_change_follows_every_field(desired: DesiredState) -> None:
    from dataclasses import replace

    keystone = containers_by_name(desired)["keystone"]
    base = keystone.config_hash
    assert replace(keystone, image="mortar/keystone:other").config_hash != base
    assert replace(keystone, command=["true"]).config_hash != base
    assert replace(keystone, environment={"A": "1"}).config_hash != base
    changed_file = [FileSpec(f.name, f.dest, f.content + "\n# x\n", f.owner, f.mode) for f in keystone.files]
    assert replace(keystone, files=changed_file).config_hash != base
    assert replace(keystone).config_hash == base
