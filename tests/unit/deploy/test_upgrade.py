"""`mortar upgrade` (mortar/deploy/upgrade.py) against in-memory engines: which paths it takes and
refuses before anything changes, what moves (OpenStack services, not the infrastructure images
both series share), and how an interrupted upgrade is finished."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mortar.deploy import identity
from mortar.deploy import orchestrator as O
from mortar.deploy.executors.local import LocalExecutor
from mortar.deploy.upgrade import upgrade
from mortar.errors import MortarError
from tests.unit.fakeengine import FakeEngine


@pytest.fixture(autouse=True)
def no_identity_service(monkeypatch) -> None:
    monkeypatch.setattr(identity, "observe", lambda ident, registrations, state=None: dict.fromkeys(registrations,
                                                                                                    []))


def at(site_dir: Path, tmp_path: Path, release: str | None = None, series_in_globals: str | None = None):
    if series_in_globals:
        globals_file = site_dir / "globals.yml"
        globals_file.write_text(globals_file.read_text() + f"openstack_release: '{series_in_globals}'\n")
    loaded = O.load_deployment(site_dir, state_dir=tmp_path / "state", release=release)
    loaded.log_dir = tmp_path / "log" / "deploy"
    return loaded


@pytest.fixture
def engine() -> FakeEngine:
    """An engine that has the images of every series (infrastructure images are one image each)."""
    return FakeEngine()


def with_images(engine: FakeEngine, deployment: O.Deployment) -> LocalExecutor:
    for host in deployment.desired.hosts.values():
        for ref in host.images():
            name = ref.rsplit(":", 1)[0]
            shared = next((image for other, image in engine.images_by_ref.items()
                           if other.rsplit(":", 1)[0] == name and not is_openstack(name)), None)
            if shared is not None:
                engine.tag(shared.id, ref)
            elif ref not in engine.images_by_ref:
                engine.add_image(ref)
    return LocalExecutor(deployment, engine=engine)


def is_openstack(name: str) -> bool:
    return any(part in name for part in ("keystone", "glance", "placement", "nova-api", "nova-conductor",
                                         "nova-scheduler", "nova-compute", "neutron", "horizon"))


def deployed_at(series: str, site_dir: Path, tmp_path: Path, engine: FakeEngine) -> O.Deployment:
    old = at(site_dir, tmp_path, series_in_globals=series)
    O.deploy(old, with_images(engine, old), lambda _: None)
    return old


def test_an_upgrade_moves_the_openstack_services_and_leaves_shared_infrastructure_running(
        site_dir: Path, tmp_path: Path, engine: FakeEngine) -> None:
    deployed_at("2026.1", site_dir, tmp_path, engine)
    before = {name: c.info.id for name, c in engine.containers_by_name.items()}
    new = at(site_dir, tmp_path, release="2026.2")

    def whole():
        loaded = at(site_dir, tmp_path, release="2026.2")
        return loaded, with_images(engine, loaded)

    said: list[str] = []
    upgrade(new, with_images(engine, new), said.append, reload=whole)
    assert "preflight passed: 2026.1 -> 2026.2 on localhost" in said
    recreated = {name for name, c in engine.containers_by_name.items() if before.get(name) != c.info.id}
    assert {"keystone", "nova_api", "nova_compute", "neutron_server", "horizon"} <= recreated
    # The database, the queue, the switch and the hypervisor (with its guests) keep running.
    assert not recreated & {"mariadb", "rabbitmq", "memcached", "openvswitch_vswitchd", "ovn_nb_db", "nova_libvirt"}
    assert new.releases.read() == {"hosts": {"localhost": "2026.2"}}
    # nova ran with 2026.1's compute RPC until its compute moved, then restarted with it lifted.
    conductor = [spec.name for spec in engine.created].count("nova_conductor")
    assert "every host runs 2026.2 now: restarting what was held back for older hosts (RPC version pins)" in said
    assert conductor == 3, "deployed, moved pinned, restarted unpinned"
    # The series is now 2026.2: a second upgrade and a deploy change nothing.
    again: list[str] = []
    assert upgrade(new, with_images(engine, new), again.append, reload=whole) is None
    assert again[-1] == "Nothing to do: localhost already run(s) 2026.2."
    fresh, executor = whole()
    assert O.make_plan(fresh, executor).empty


@pytest.mark.parametrize("running, target, message, fix", [
    ("2025.2", "2026.2", "2025.2 -> 2026.2 is not a supported upgrade",
     "go 2025.2 -> 2026.1 -> 2026.2: mortar upgrade --release 2026.1 first"),
    ("2025.1", "2026.2", "2025.1 -> 2026.2 is not a supported upgrade",
     "go 2025.1 -> 2026.1 -> 2026.2: mortar upgrade --release 2026.1 first"),
    ("2026.2", "2026.1", "2026.2 -> 2026.1 is a downgrade", "choose a later series than 2026.2"),
])
def test_an_unsupported_path_is_refused_before_anything_changes(site_dir: Path, tmp_path: Path, engine: FakeEngine,
                                                                running: str, target: str, message: str,
                                                                fix: str) -> None:
    deployed_at(running, site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release=target)
    executor = with_images(engine, new)
    before = len(engine.calls)
    with pytest.raises(MortarError, match=message) as info:
        upgrade(new, executor, lambda _: None)
    assert info.value.key == "--release" and info.value.fix == fix
    assert FakeEngine(calls=engine.calls[before:]).changes() == []
    assert new.releases.read() == {"hosts": {"localhost": running}}


def test_a_skip_level_upgrade_from_slurp_to_slurp_is_allowed(site_dir: Path, tmp_path: Path,
                                                             engine: FakeEngine) -> None:
    deployed_at("2025.1", site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release="2026.1")
    said: list[str] = []
    upgrade(new, with_images(engine, new), said.append)
    assert "preflight passed: 2025.1 -> 2026.1 on localhost" in said
    assert new.releases.read() == {"hosts": {"localhost": "2026.1"}}


def test_missing_images_of_the_new_series_fail_the_preflight(site_dir: Path, tmp_path: Path,
                                                             engine: FakeEngine) -> None:
    deployed_at("2026.1", site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release="2026.2")
    executor = LocalExecutor(new, engine=engine)  # the 2026.2 images were never built here
    before = len(engine.calls)
    with pytest.raises(MortarError, match="preflight failed") as info:
        upgrade(new, executor, lambda _: None)
    assert "images present or pullable" in str(info.value) and "nothing was changed" in str(info.value.fix)
    assert FakeEngine(calls=engine.calls[before:]).changes() == []


def test_each_services_upgrade_check_runs_from_the_new_image_before_anything_changes(
        site_dir: Path, tmp_path: Path, engine: FakeEngine) -> None:
    deployed_at("2026.1", site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release="2026.2")
    executor = with_images(engine, new)
    engine.job_results["mortar_job_nova_upgrade_check"] = (2, "Check: Older than N-1 computes\nResult: Failure\n")
    before = len(engine.calls)
    with pytest.raises(MortarError, match="a service's upgrade check refused the new series") as info:
        upgrade(new, executor, lambda _: None)
    assert "Older than N-1 computes" in str(info.value) and "nothing was changed" in str(info.value.fix)
    checked = [spec for spec in engine.created if spec.name.endswith("_upgrade_check")]
    assert {spec.name for spec in checked} == {f"mortar_job_{s}_upgrade_check" for s in
                                               ("keystone", "glance", "placement", "neutron", "nova")}
    assert all(spec.image.endswith(":2026.2") for spec in checked), "from the new series' images"
    assert [c for c in FakeEngine(calls=engine.calls[before:]).changes() if "upgrade_check" not in c[1]] == []
    assert new.releases.read() == {"hosts": {"localhost": "2026.1"}}
    # A warning (exit 1) passes.
    engine.job_results["mortar_job_nova_upgrade_check"] = (1, "Result: Warning\n")
    upgrade(new, executor, lambda _: None)
    assert new.releases.read() == {"hosts": {"localhost": "2026.2"}}


def test_a_site_mortar_never_deployed_is_not_upgraded(site_dir: Path, tmp_path: Path, engine: FakeEngine) -> None:
    new = at(site_dir, tmp_path, release="2026.2")
    with pytest.raises(MortarError, match="no record of the series localhost run"):
        upgrade(new, with_images(engine, new), lambda _: None)


def test_an_interrupted_upgrade_blocks_deploy_and_is_finished_by_upgrade(site_dir: Path, tmp_path: Path,
                                                                         engine: FakeEngine) -> None:
    deployed_at("2026.1", site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release="2026.2")
    engine.job_results["mortar_job_nova_db_sync"] = (1, "a migration failed\n")
    with pytest.raises(MortarError, match="nova.db_sync"):
        upgrade(new, with_images(engine, new), lambda _: None)
    assert new.releases.get("upgrade") == {"from": "2026.1", "to": "2026.2"}
    # Neither series' deploy may run on a half-migrated site.
    for series in ("2026.1", "2026.2"):
        with pytest.raises(MortarError, match="an upgrade from 2026.1 to 2026.2 is under way") as info:
            O.deploy(at(site_dir, tmp_path, release=series), with_images(engine, new), lambda _: None)
        assert "mortar upgrade --release 2026.2" in str(info.value.fix)
    with pytest.raises(MortarError, match="an upgrade from 2026.1 to 2026.2 is under way"):
        upgrade(at(site_dir, tmp_path, release="2026.1"), with_images(engine, new), lambda _: None)
    del engine.job_results["mortar_job_nova_db_sync"]
    keystone = engine.containers_by_name["keystone"].info.id
    said: list[str] = []
    upgrade(new, with_images(engine, new), said.append)
    assert engine.containers_by_name["keystone"].info.id == keystone, "what the first run finished is kept"
    assert not any(line.startswith("keystone") for line in said)
    assert new.releases.read() == {"hosts": {"localhost": "2026.2"}}


def running_at(series: str, site_dir: Path, tmp_path: Path, engine: FakeEngine):
    """upgrade's view of the site at the series it runs (as the CLI makes it)."""
    def running(name: str):
        assert name == series
        old = at(site_dir, tmp_path, release=name)
        return old, with_images(engine, old)
    return running


def test_the_running_series_finishes_its_online_migrations_from_its_own_images_first(
        site_dir: Path, tmp_path: Path, engine: FakeEngine) -> None:
    deployed_at("2026.1", site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release="2026.2")
    executor = with_images(engine, new)
    engine.job_results["mortar_job_nova_online_data_migrations"] = (2, "Error attempting to run populate_foo\n")
    before = len(engine.created)
    with pytest.raises(MortarError, match="2026.1 did not finish its online data migrations") as info:
        upgrade(new, executor, lambda _: None, running=running_at("2026.1", site_dir, tmp_path, engine))
    assert "populate_foo" in str(info.value) and "nothing was changed" in str(info.value.fix)
    ran = [spec for spec in engine.created[before:] if spec.name.endswith("_online_data_migrations")]
    assert {spec.name for spec in ran} == {"mortar_job_nova_online_data_migrations",
                                           "mortar_job_placement_online_data_migrations"}
    assert all(spec.image.endswith(":2026.1") for spec in ran), "from the running series' images"
    assert not [spec for spec in engine.created[before:] if spec.name.endswith("_upgrade_check")], \
        "the new series' checks come after"
    assert new.releases.read() == {"hosts": {"localhost": "2026.1"}}
    del engine.job_results["mortar_job_nova_online_data_migrations"]
    upgrade(new, executor, lambda _: None, running=running_at("2026.1", site_dir, tmp_path, engine))
    assert new.releases.read() == {"hosts": {"localhost": "2026.2"}}


def test_a_resumed_upgrade_runs_no_old_code_on_the_migrated_databases(site_dir: Path, tmp_path: Path,
                                                                       engine: FakeEngine) -> None:
    deployed_at("2026.1", site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release="2026.2")
    engine.job_results["mortar_job_nova_db_sync"] = (1, "a migration failed\n")
    with pytest.raises(MortarError, match="nova.db_sync"):
        upgrade(new, with_images(engine, new), lambda _: None, running=running_at("2026.1", site_dir, tmp_path,
                                                                                  engine))
    del engine.job_results["mortar_job_nova_db_sync"]
    before = len(engine.created)
    upgrade(new, with_images(engine, new), lambda _: None, running=running_at("2026.1", site_dir, tmp_path, engine))
    assert not [spec for spec in engine.created[before:] if spec.image.endswith(":2026.1")
                and spec.name.startswith("mortar_job_")]


def test_preflight_reports_overrides_naming_options_the_new_series_removed(site_dir: Path, tmp_path: Path,
                                                                          engine: FakeEngine) -> None:
    (site_dir / "config" / "nova").mkdir(parents=True, exist_ok=True)
    (site_dir / "config" / "nova" / "nova.conf").write_text("[libvirt]\nnum_memory_encrypted_guests = 4\n")
    deployed_at("2026.1", site_dir, tmp_path, engine)
    new = at(site_dir, tmp_path, release="2026.2")
    said: list[str] = []
    upgrade(new, with_images(engine, new), said.append, plan_only=True)
    override = site_dir / "config" / "nova" / "nova.conf"
    assert f"note: {override}: [libvirt] num_memory_encrypted_guests was removed in 2026.2; the new code ignores " \
           "it" in said, said
    assert sum("num_memory_encrypted_guests" in line for line in said) == 1, "once, not once per nova container"


def test_with_limit_the_control_plane_moves_first_and_compute_hosts_later(site_dir: Path, tmp_path: Path) -> None:
    from tests.unit.deploy.test_plan import INVENTORY, HostsExecutor

    (site_dir / "inventory").write_text(INVENTORY)
    old = at(site_dir, tmp_path, series_in_globals="2026.1")
    engines = {h: FakeEngine() for h in old.desired.hosts}

    def executor(deployment: O.Deployment) -> HostsExecutor:
        for host, state in deployment.desired.hosts.items():
            for ref in state.images():
                if ref not in engines[host].images_by_ref:
                    engines[host].add_image(ref)
        return HostsExecutor(deployment, engines, tmp_path / "hosts")

    def whole():
        every_host = O.load_deployment(site_dir, state_dir=tmp_path / "state", release="2026.2")
        return every_host, executor(every_host)

    def compute_rpc(host: str, container: str) -> str:
        conf = (tmp_path / "hosts" / host / "state" / "config" / container / "nova.conf").read_text()
        return re.search(r"^\[upgrade_levels\]\n(?:#.*\n)*compute = (\S+)", conf, re.M).group(1)

    O.deploy(old, executor(old), lambda _: None)
    assert compute_rpc("ctl1", "nova_conductor") == "auto"
    control = O.load_deployment(site_dir, limit="control", state_dir=tmp_path / "state", release="2026.2")
    said: list[str] = []
    upgrade(control, executor(control), said.append, reload=whole)
    assert "preflight passed: 2026.1 -> 2026.2 on ctl1" in said
    # The new control plane speaks 2026.1's compute RPC to the compute host that runs it.
    assert compute_rpc("ctl1", "nova_conductor") == "gazpacho"
    assert not any("held back" in line for line in said), said
    pinned = {name: engines["ctl1"].containers_by_name[name].info.id
              for name in ("nova_api", "nova_conductor", "nova_scheduler")}
    assert ("note: cmp1 still run(s) 2026.1: upgrade them with --limit; until then what talks to them speaks "
            "2026.1's RPC versions") in said
    assert control.releases.get("hosts") == {"ctl1": "2026.2", "cmp1": "2026.1"}
    assert engines["ctl1"].containers_by_name["nova_api"].spec.image.endswith(":2026.2")
    assert engines["cmp1"].containers_by_name["nova_compute"].spec.image.endswith(":2026.1"), "one series behind"
    # The compute host lags; nothing but the upgrade moves it (a deploy of either series is refused).
    with pytest.raises(MortarError, match="cmp1"):
        O.deploy(at(site_dir, tmp_path, release="2026.2"), executor(control), lambda _: None)
    compute = O.load_deployment(site_dir, limit="compute", state_dir=tmp_path / "state", release="2026.2")
    said = []
    upgrade(compute, executor(compute), said.append, reload=whole)
    assert "preflight passed: 2026.1 -> 2026.2 on cmp1" in said
    assert compute.releases.get("hosts") == {"ctl1": "2026.2", "cmp1": "2026.2"}
    assert engines["cmp1"].containers_by_name["nova_compute"].spec.image.endswith(":2026.2")
    # The last compute host moved: the pin is lifted on the control host too (outside --limit),
    # and the services that read it were restarted.
    assert "every host runs 2026.2 now: restarting what was held back for older hosts (RPC version pins)" in said
    assert compute_rpc("ctl1", "nova_conductor") == compute_rpc("cmp1", "nova_compute") == "auto"
    assert all(engines["ctl1"].containers_by_name[name].info.id != before for name, before in pinned.items())
    # Nothing is left to do: a second upgrade changes nothing.
    again: list[str] = []
    upgrade(O.load_deployment(site_dir, state_dir=tmp_path / "state", release="2026.2"), executor(compute),
            again.append, reload=whole)
    assert again == ["Nothing to do: ctl1, cmp1 already run(s) 2026.2."], again
