"""Planning and deploying a site (mortar/deploy/orchestrator.py) through the agent's steps, against
in-memory engines: what a plan says and why, what a deploy changes, in which order, and how a
failed or interrupted run converges on the next one."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from mortar.agent import jobs, steps
from mortar.agent.errors import StepError
from mortar.agent.wire import StepRequest
from mortar.catalogue.loader import load_catalogue
from mortar.deploy import identity
from mortar.deploy import orchestrator as O
from mortar.deploy.executors import Progress, StepResult
from mortar.deploy.executors.local import LocalExecutor
from mortar.deploy.sitelock import site_lock
from mortar.errors import EngineError, MortarError
from tests.unit.agent.conftest import Clock
from tests.unit.fakeengine import FakeEngine

DISCOVER = "mortar_job_nova_discover_hosts"


@pytest.fixture(autouse=True)
def no_identity_service(monkeypatch) -> None:
    """There is no identity service: every registration reads back as registered."""
    monkeypatch.setattr(identity, "observe", lambda ident, registrations, state=None: dict.fromkeys(registrations,
                                                                                                    []))

    def register(*args, **kwargs) -> None:
        raise AssertionError("nothing to register")

    monkeypatch.setattr(identity, "register", register)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Jobs that retry (nova.discover_hosts) give up at once instead of after minutes."""
    clock = Clock()
    monkeypatch.setattr(jobs, "time", clock)
    return clock


def engine_for(*hosts) -> FakeEngine:
    engine = FakeEngine()
    for host in hosts:
        for ref in host.images():
            engine.add_image(ref)
    return engine


@pytest.fixture
def engine(deployment: O.Deployment) -> FakeEngine:
    return engine_for(*deployment.desired.hosts.values())


@pytest.fixture
def executor(deployment: O.Deployment, engine: FakeEngine) -> LocalExecutor:
    return LocalExecutor(deployment, engine=engine)


def deploy(deployment: O.Deployment, executor) -> list[str]:
    said: list[str] = []
    O.deploy(deployment, executor, said.append)
    return said


def created(engine: FakeEngine, since: int = 0) -> list[str]:
    return [target for operation, target in engine.calls[since:] if operation == "create"]


def changes_since(engine: FakeEngine, since: int) -> list[tuple[str, str]]:
    later = FakeEngine(calls=engine.calls[since:])
    return later.changes()


def all_jobs(deployment: O.Deployment) -> list[str]:
    """Every job a deploy runs (upgrade checks run only in upgrade's preflight)."""
    return [j.name for h in deployment.desired.hosts.values() for j in h.jobs() if j.phase != "check"]


def all_containers(deployment: O.Deployment) -> list[str]:
    return [c.name for h in deployment.desired.hosts.values() for c in h.containers()]


# ---- a first deploy, and one with nothing to do -----------------------------------------------

def test_the_first_plan_creates_everything_and_every_job_never_ran(deployment, executor, engine) -> None:
    plan = O.make_plan(deployment, executor)
    host = deployment.desired.hosts["localhost"]
    assert sorted(a.target for a in plan.actions if a.kind == "create") == sorted(all_containers(deployment))
    assert sorted(a.target for a in plan.actions if a.kind == "volume") == \
        sorted(v for s in host.services.values() for v in s.volumes)
    assert {a.kind for a in plan.actions} == {"volume", "create"}
    assert sorted(j.job for j in plan.jobs) == sorted(all_jobs(deployment))
    assert {tuple(j.reasons) for j in plan.jobs} == {("never ran",)}
    assert plan.registrations == {} and not plan.empty
    assert engine.changes() == [], "a plan changes nothing"
    said: list[str] = []
    O.print_plan(plan, deployment, said.append)
    assert said[0] == f"host localhost: {len(plan.actions) + len(plan.jobs)} change(s)"
    assert "  keystone   job      keystone.db_migrate: never ran" in said


def test_deploy_converges_level_by_level_and_a_second_deploy_changes_nothing(deployment, executor,
                                                                            engine) -> None:
    said = deploy(deployment, executor)
    # Level after level; the metadata agent needs nova's metadata API, so it is the last one, after nova's.
    assert said[-1].startswith("neutron_metadata: done on 1 host(s)")
    assert [line.split(": done on ")[0] for line in said if ": done on 1 host(s)" in line] == [
        "mariadb, memcached, rabbitmq, openvswitch", "keystone, ovn", "glance, horizon, neutron, placement", "nova",
        "neutron_metadata"]
    for name in all_containers(deployment):
        assert engine.containers_by_name[name].info.status == "running", name
    assert not [n for n in engine.containers_by_name if n.startswith("mortar_job_")], "job containers are removed"
    order = created(engine)
    # provision (databases), then jobs before, then containers, then jobs after; level after level
    for first, then in [("mariadb", "mortar_job_keystone_database"),
                        ("mortar_job_keystone_database", "mortar_job_keystone_db_migrate"),
                        ("mortar_job_keystone_db_migrate", "keystone"), ("keystone", "mortar_job_glance_database"),
                        ("glance_api", "mortar_job_nova_database"), ("nova_compute", DISCOVER),
                        # the switch before its controller, nova's metadata API before its proxy
                        ("openvswitch_vswitchd", "ovn_controller"), ("nova_metadata", "neutron_ovn_metadata_agent"),
                        (DISCOVER, "neutron_ovn_metadata_agent")]:
        assert order.index(first) < order.index(then), (first, then)
    assert deployment.pending.get("jobs") == {}
    assert O.make_plan(deployment, executor).empty
    before = len(engine.calls)
    again = deploy(deployment, executor)
    assert again == ["Nothing to do: the deployment is as desired on 1 host(s)."]
    assert changes_since(engine, before) == []


def test_deploy_keeps_a_host_on_the_series_it_runs(deployment, executor, engine, site_dir: Path,
                                                  tmp_path: Path) -> None:
    deploy(deployment, executor)
    assert deployment.releases.get("hosts") == {"localhost": "2026.2"}
    (site_dir / "globals.yml").write_text((site_dir / "globals.yml").read_text() + "openstack_release: '2026.1'\n")
    older = O.load_deployment(site_dir, state_dir=tmp_path / "state")
    before = len(engine.calls)
    with pytest.raises(MortarError, match="the site runs 2026.2 on localhost, not 2026.1") as info:
        deploy(older, LocalExecutor(older, engine=engine))
    assert info.value.key == "openstack_release" and "mortar upgrade" in str(info.value.fix)
    assert changes_since(engine, before) == []
    with pytest.raises(MortarError, match="never change the series"):
        older.check_release()


def test_a_failed_job_stops_later_phases_and_levels_and_a_rerun_converges(deployment, executor, engine) -> None:
    secret = next(s for s in deployment.desired.hosts["localhost"].secrets)
    engine.job_results["mortar_job_keystone_db_migrate"] = (1, f"connecting as keystone:{secret}\nAccess denied\n")
    with pytest.raises(StepError) as info:
        deploy(deployment, executor)
    text = str(info.value)
    assert "localhost: before: keystone: keystone.db_migrate: job keystone.db_migrate failed (exit 1)" in text
    assert "    | Access denied" in text and secret not in text
    assert "running the same command again converges" in text
    made = created(engine)
    assert "mariadb" in made and "mortar_job_keystone_database" in made
    for name in ("mortar_job_keystone_bootstrap", "keystone", "mortar_job_glance_database", "glance_api",
                 "nova_api"):
        assert name not in made, name
    del engine.job_results["mortar_job_keystone_db_migrate"]
    plan = O.make_plan(deployment, executor)
    assert {j.job: j.reasons for j in plan.jobs if j.service == "keystone"} == {
        "keystone.db_migrate": ["never ran"], "keystone.bootstrap": ["never ran"],
        "keystone.db_contract": ["never ran"]}
    assert not [a for a in plan.actions if a.service == "mariadb"]
    deploy(deployment, executor)
    assert O.make_plan(deployment, executor).empty


def test_a_failed_run_always_job_stays_pending_and_runs_on_the_next_deploy(deployment, executor, engine,
                                                                           clock) -> None:
    deploy(deployment, executor)
    engine.remove("nova_compute")  # a compute service to map again
    plan = O.make_plan(deployment, executor)
    assert [(a.kind, a.target) for a in plan.actions] == [("create", "nova_compute")]
    assert [(j.job, j.reasons) for j in plan.jobs] == [("nova.discover_hosts", ["the service changed"])]
    engine.job_results[DISCOVER] = (1, "no compute host found yet\n")
    with pytest.raises(StepError, match="job nova.discover_hosts failed"):
        deploy(deployment, executor)
    assert clock.sleeps, "it retried before giving up"
    assert deployment.pending.get("jobs", "nova.discover_hosts", "host") == "localhost"
    # nothing else changed, the job's inputs did not: only the pending record brings it back
    plan = O.make_plan(deployment, executor)
    assert plan.actions == []
    assert [(j.job, j.reasons) for j in plan.jobs] == [
        ("nova.discover_hosts", ["was due and did not run (the run that triggered it stopped before it)"])]
    del engine.job_results[DISCOVER]
    before = len(engine.calls)
    deploy(deployment, executor)
    assert created(engine, before) == [DISCOVER]
    assert deployment.pending.get("jobs") == {}
    assert O.make_plan(deployment, executor).empty


def test_an_interrupted_run_leaves_its_triggers_due(deployment, executor, engine, monkeypatch) -> None:
    deploy(deployment, executor)
    engine.remove("nova_compute")

    def interrupted(operation: str, target: str) -> None:
        if (operation, target) == ("create", "nova_compute"):
            raise KeyboardInterrupt

    engine.on_call = interrupted
    with pytest.raises(KeyboardInterrupt):
        deploy(deployment, executor)
    engine.on_call = None
    assert "nova.discover_hosts" in deployment.pending.get("jobs")
    deploy(deployment, executor)
    assert deployment.pending.get("jobs") == {}


# ---- data, registrations, the site lock ----------------------------------------------------------

def test_a_recreated_database_volume_reruns_the_jobs_on_its_data(deployment, executor, engine) -> None:
    deploy(deployment, executor)
    host = deployment.desired.hosts["localhost"]
    on_mariadb = sorted(j.name for j in host.jobs() if "localhost/mariadb" in j.data and j.phase != "check")
    assert {"keystone.database", "keystone.db_migrate", "nova.db_sync", "glance.database"} <= set(on_mariadb)
    # ... and so do the containers of every service that needs the database (nova-compute keeps
    # its service record there, for one).
    relying = sorted(c.name for c in host.containers() if "localhost/mariadb" in c.data)
    assert {"keystone", "glance_api", "nova_api", "nova_compute"} <= set(relying) and "memcached" not in relying
    engine.remove("mariadb")
    engine.remove_volume("mariadb")
    plan = O.make_plan(deployment, executor)
    assert [(a.kind, a.target) for a in plan.actions][:2] == [("volume", "mariadb"), ("create", "mariadb")]
    recreated = [a for a in plan.actions if a.kind == "recreate"]
    assert sorted(a.target for a in recreated) == relying
    assert all(a.reasons == ["mariadb is new data"] for a in recreated), recreated
    assert sorted(j.job for j in plan.jobs) == on_mariadb
    assert all("mariadb is not created yet" in j.reasons for j in plan.jobs)
    # the volume is made again; the first consumer's provision job fails
    engine.job_results["mortar_job_keystone_database"] = (1, "ERROR 2002: cannot connect\n")
    with pytest.raises(StepError, match="keystone.database"):
        deploy(deployment, executor)
    del engine.job_results["mortar_job_keystone_database"]
    plan = O.make_plan(deployment, executor)
    assert sorted(a.target for a in plan.actions if a.kind == "recreate") == relying
    assert sorted(j.job for j in plan.jobs) == on_mariadb
    assert all(j.reasons[0] == "mariadb is new data" for j in plan.jobs), plan.jobs
    before = len(engine.calls)
    deploy(deployment, executor)
    assert sorted(created(engine, before)) == sorted(
        [f"mortar_job_{j.replace('.', '_')}" for j in on_mariadb] + relying)
    assert O.make_plan(deployment, executor).empty


def test_missing_registrations_are_made_before_that_levels_containers(deployment, executor, engine,
                                                                      monkeypatch) -> None:
    timeline: list[tuple[str, str]] = []
    registered: set[str] = set()

    def observe(ident, registrations, state=None):
        assert ident == deployment.desired.identity and state == deployment.controller_dir
        return {n: [] if n != "glance" or "image" in registered else ["service glance (image) not registered"]
                for n in registrations}

    def register(ident, reg, state=None) -> None:
        timeline.append(("register", reg.service))
        registered.add(reg.type)

    monkeypatch.setattr(identity, "observe", observe)
    monkeypatch.setattr(identity, "register", register)
    engine.on_call = lambda operation, target: timeline.append((operation, target))
    plan = O.make_plan(deployment, executor)
    assert plan.registrations == {"glance": ["service glance (image) not registered"]}
    said: list[str] = []
    O.print_plan(plan, deployment, said.append)
    assert "registration glance: service glance (image) not registered" in said
    said = deploy(deployment, executor)
    assert "glance: registered" in said
    assert timeline.count(("register", "glance")) == 1
    at = timeline.index(("register", "glance"))
    assert timeline.index(("create", "keystone")) < at < timeline.index(("create", "mortar_job_glance_database"))
    assert at < timeline.index(("create", "glance_api"))
    assert O.make_plan(deployment, executor).empty


def test_a_failed_registration_stops_before_the_services_containers(deployment, executor, engine,
                                                                    monkeypatch) -> None:
    monkeypatch.setattr(identity, "observe", lambda ident, regs, state=None: {n: ["service missing"] for n in regs})

    def register(ident, reg, state=None) -> None:
        raise RuntimeError("the identity service refused the request")

    monkeypatch.setattr(identity, "register", register)
    with pytest.raises(StepError) as info:
        deploy(deployment, executor)
    message = str(info.value)
    assert "registration with the identity service failed: RuntimeError: the identity service refused" in message
    assert "registrations are idempotent" in message and "localhost" in message
    assert "keystone" in created(engine)
    assert "glance_api" not in created(engine) and "mortar_job_glance_database" not in created(engine)


def test_a_second_deploy_while_the_site_is_locked_is_refused(deployment, executor, engine) -> None:
    with site_lock(deployment.controller_dir, "reconfigure"):
        for run in (lambda: deploy(deployment, executor), lambda: O.stop(deployment, executor, print),
                    lambda: O.destroy(deployment, executor, print)):
            with pytest.raises(MortarError, match=r"another mortar command is changing this site "
                                                  r"\(mortar reconfigure, pid \d+, since ") as info:
                run()
            assert "wait for it to finish" in str(info.value)
    assert engine.changes() == []
    deploy(deployment, executor)  # the lock went with its holder


def test_a_target_that_cannot_be_observed_fails_the_plan(deployment, executor, engine) -> None:
    engine.fail["containers"] = EngineError("the Docker Engine does not answer")
    with pytest.raises(StepError, match="failed on localhost") as info:
        O.make_plan(deployment, executor)
    assert "the Docker Engine does not answer" in str(info.value)


# ---- several hosts, --limit --------------------------------------------------------------------

INVENTORY = """\
[control]
ctl1 ansible_connection=local api_address=127.0.0.2
[network]
ctl1
[compute]
cmp1 ansible_connection=local api_address=127.0.0.3
[storage]
[monitoring]
"""


class HostsExecutor:
    """Each host with its own engine and state directory, as the Ansible executor gives them; every
    step dispatched through the agent's registry the same way."""

    name = "hosts"

    def __init__(self, deployment: O.Deployment, engines: dict[str, FakeEngine], root: Path) -> None:
        self.deployment, self.engines, self.root = deployment, engines, root
        self.tasks = 0

    def run(self, names: list[str], requests: dict[str, StepRequest], progress: Progress | None = None,
            *, stop_on_failure: bool = True) -> StepResult:
        result = StepResult()
        for name in names:
            reports = [steps.dispatch(name, request, self.deployment.host_state(host), self.root / host / "state",
                                      self.root / host / "log", lambda host=host: self.engines[host], progress)
                       for host, request in requests.items()]
            result.reports += reports
            if stop_on_failure and any(r.failure for r in reports):
                break
        return result


@pytest.fixture
def two_hosts(site_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, FakeEngine]]:
    """ctl1 and cmp1 deployed, each host its own engine."""
    return deploy_two_hosts(site_dir, tmp_path)


@pytest.fixture
def host_list_job(monkeypatch) -> None:
    """The catalogue with one more job on a control host whose inputs list the compute hosts (as
    OVN's stand-in chassis job did before each compute host ran its own controller): nova.list_hosts,
    beside nova_api, run when its inputs change."""

    def catalogue(*args, **kwargs):
        services = load_catalogue(*args, **kwargs)
        nova = services["nova"]
        discover = next(j for j in nova.jobs if j.name == "discover_hosts")
        nova.jobs.append(dataclasses.replace(
            discover, name="list_hosts", run="on_change", retry_delay=0,
            script='echo {% for h in hosts_of_container("nova_compute") %}{{ h }} {% endfor %}\n'))
        return services

    monkeypatch.setattr(O, "load_catalogue", catalogue)


@pytest.fixture
def two_hosts_listed(host_list_job, site_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, FakeEngine]]:
    """two_hosts, deployed with nova.list_hosts."""
    return deploy_two_hosts(site_dir, tmp_path)


def deploy_two_hosts(site_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, FakeEngine]]:
    (site_dir / "inventory").write_text(INVENTORY)
    whole = O.load_deployment(site_dir, state_dir=tmp_path / "controller")
    engines = {h: engine_for(state) for h, state in whole.desired.hosts.items()}
    deploy(whole, HostsExecutor(whole, engines, tmp_path / "hosts"))
    assert O.make_plan(whole, HostsExecutor(whole, engines, tmp_path / "hosts")).empty
    return site_dir, engines


def test_a_limited_deploy_runs_the_job_it_triggers_outside_the_limit_only(two_hosts, tmp_path: Path) -> None:
    site_dir, engines = two_hosts
    # cmp1 is reinstalled; on ctl1 (outside the limit) a container stopped
    engines["cmp1"] = engine_for(O.load_deployment(site_dir, state_dir=tmp_path / "controller").desired.hosts["cmp1"])
    shutil.rmtree(tmp_path / "hosts" / "cmp1")
    engines["ctl1"].containers_by_name["nova_api"].info.status = "exited"
    limited = O.load_deployment(site_dir, limit="cmp1", state_dir=tmp_path / "controller")
    assert limited.targets == ["cmp1"]
    executor = HostsExecutor(limited, engines, tmp_path / "hosts")
    plan = O.make_plan(limited, executor)
    assert {a.host for a in plan.actions} == {"cmp1"}
    # The reinstalled compute host gets its whole data plane again, level by level.
    assert [(a.kind, a.target) for a in plan.actions] == [
        ("volume", "openvswitch_db"), ("create", "openvswitch_db"), ("create", "openvswitch_vswitchd"),
        ("create", "ovn_controller"), ("volume", "nova_compute"), ("volume", "nova_libvirt"),
        ("create", "nova_compute"), ("create", "nova_libvirt"), ("create", "neutron_ovn_metadata_agent")]
    assert [(j.host, j.job, j.reasons) for j in plan.jobs] == [("ctl1", "nova.discover_hosts",
                                                               ["the service changed"])]
    said: list[str] = []
    O.print_plan(plan, limited, said.append)
    assert "host ctl1 (outside --limit): job nova.discover_hosts: the service changed" in said
    before = len(engines["ctl1"].calls)
    deploy(limited, executor)
    touched = {target for _, target in changes_since(engines["ctl1"], before)}
    assert touched == {DISCOVER}, "outside the limit only the triggered job runs"
    assert engines["ctl1"].containers_by_name["nova_api"].info.status == "exited"
    assert engines["cmp1"].containers_by_name["nova_compute"].info.status == "running"
    assert limited.pending.get("jobs") == {}


def test_a_compute_host_added_with_limit_brings_the_control_jobs_that_describe_it(two_hosts_listed,
                                                                                  tmp_path: Path) -> None:
    site_dir, engines = two_hosts_listed
    (site_dir / "inventory").write_text(INVENTORY.replace(
        "cmp1 ansible_connection=local api_address=127.0.0.3",
        "cmp1 ansible_connection=local api_address=127.0.0.3\ncmp2 ansible_connection=local api_address=127.0.0.4"))
    limited = O.load_deployment(site_dir, limit="cmp2", state_dir=tmp_path / "controller")
    engines["cmp2"] = engine_for(limited.desired.hosts["cmp2"])
    executor = HostsExecutor(limited, engines, tmp_path / "hosts")
    plan = O.make_plan(limited, executor)
    assert {a.host for a in plan.actions} == {"cmp2"}
    # The new host registers its own OVN chassis: its controller is made there, within the limit.
    assert ("create", "ovn_controller") in [(a.kind, a.target) for a in plan.actions]
    outside = {(j.host, j.job): j.reasons for j in plan.jobs}
    # Both control-host jobs whose inputs name the compute hosts run: the cell mapping (it runs
    # whenever nova changes) and the host list (its inputs changed with the new host); no other
    # control job does.
    assert outside == {("ctl1", "nova.discover_hosts"): ["the service changed"],
                       ("ctl1", "nova.list_hosts"): ["its definition or files changed"]}, outside
    listing = next(j for j in limited.desired.hosts["ctl1"].jobs() if j.name == "nova.list_hosts")
    assert listing.spec is not None and listing.spec.script.split() == ["echo", "cmp1", "cmp2"]
    assert "cmp2" in listing.hosts
    deploy(limited, executor)
    whole = O.load_deployment(site_dir, state_dir=tmp_path / "controller")
    assert O.make_plan(whole, HostsExecutor(whole, engines, tmp_path / "hosts")).empty


def test_a_host_outside_the_limit_that_does_not_answer_is_noted(two_hosts, tmp_path: Path) -> None:
    site_dir, engines = two_hosts
    engines["ctl1"].fail["containers"] = EngineError("the Docker Engine does not answer")
    limited = O.load_deployment(site_dir, limit="compute", state_dir=tmp_path / "controller")
    plan = O.make_plan(limited, HostsExecutor(limited, engines, tmp_path / "hosts"))
    assert [f.host for f in plan.unobserved] == ["ctl1"] and plan.empty
    said: list[str] = []
    O.print_plan(plan, limited, said.append)
    assert "note: ctl1 (outside --limit) did not answer: the Docker Engine does not answer" in said


def test_hosts_pull_the_digests_a_push_recorded(site_dir: Path, tmp_path: Path) -> None:
    """Every image ref of a host that `mortar build --push` recorded is pinned to its digest,
    registry address (with its port) and all."""
    from mortar.registry.pins import record_pushed

    globals_path = site_dir / "globals.yml"
    globals_path.write_text(globals_path.read_text() + "\ndocker_registry: 10.0.0.10:4000\n")
    state = tmp_path / "controller"
    deployment = O.load_deployment(site_dir, state_dir=state)
    refs = deployment.desired.hosts["localhost"].images()
    assert refs and all(ref.startswith("10.0.0.10:4000/") for ref in refs)
    record_pushed(state, {ref: "sha256:" + f"{i:064x}" for i, ref in enumerate(refs)})
    pinned = O.load_deployment(site_dir, state_dir=state).desired.hosts["localhost"].image_pins
    assert sorted(pinned) == refs and len(set(pinned.values())) == len(refs)
