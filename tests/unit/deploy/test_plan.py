"""Tests for planning a converge from fake engine facts (mortar/deploy/converge.py, runner.make_plan)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mortar.deploy import converge
from mortar.deploy.converge import Action, Facts, container_reasons, job_needed, plan_removals, plan_service
from mortar.deploy.desired import ContainerSpec, DesiredState, HostState, JobSpec, compute_desired
from mortar.deploy.executors import LocalExecutor
from mortar.deploy.runner import Deployment, make_plan, record_registration
from mortar.site.config import Site, load_site
from mortar.site.inventory import Inventory

IMAGE_ID = "sha256:current"
# Newer converge versions label every container with the deployment (site) that owns it.
SITE_LABEL: str | None = getattr(converge, "SITE", None)


class FakeImage:
    def __init__(self, image_id: str) -> None:
        self.id = image_id


class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str], image_id: str = IMAGE_ID, status: str = "running") -> None:
        self.name = name
        self.labels = labels
        self.status = status
        self.image = FakeImage(image_id)


def managed_labels(host: HostState, **labels: str) -> dict[str, str]:
    result = {converge.MANAGED: "1", **labels}
    if SITE_LABEL:
        result[SITE_LABEL] = getattr(host, "site", "")
    return result


def running(host: HostState, spec: ContainerSpec, **kwargs: Any) -> FakeContainer:
    """A container mortar started from exactly this spec."""
    labels = managed_labels(host, **{converge.SERVICE: spec.service, converge.CONTAINER: spec.name,
                                     converge.HASH: spec.config_hash})
    return FakeContainer(spec.name, labels, **kwargs)


def all_jobs(host: HostState) -> list[JobSpec]:
    return [j for s in host.services.values() for j in s.jobs]


def image_ids(host: HostState, image_id: str = IMAGE_ID) -> dict[str, str | None]:
    refs = {c.image for c in host.containers()} | {j.container.image for j in all_jobs(host)}
    return {ref: image_id for ref in refs}


def converged_facts(host: HostState, image_id: str = IMAGE_ID) -> Facts:
    """Facts of a host where everything desired runs and every job ran with the current files and image."""
    containers = {c.name: running(host, c, image_id=image_id) for c in host.containers()}
    volumes = {v for s in host.services.values() for v in s.volumes}
    records = {"jobs": {j.name: f"{j.job_hash}:{image_id}" for j in all_jobs(host)}, "registrations": {}}
    return Facts(containers=containers, volumes=volumes, image_ids=image_ids(host, image_id), records=records)


def empty_facts(host: HostState) -> Facts:
    return Facts(containers={}, volumes=set(), image_ids=image_ids(host), records={"jobs": {}, "registrations": {}})


def kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.target) for a in actions]


def record_running(state_dir: Path, spec: ContainerSpec) -> None:
    """What start_container leaves in the state dir for a container it started."""
    config = state_dir / "config" / spec.name
    config.mkdir(parents=True, exist_ok=True)
    for name, content in spec.rendered_files().items():
        (config / name).write_text(content)
    (state_dir / "config" / f"{spec.name}.definition.json").write_text(
        json.dumps(spec.definition(), sort_keys=True, indent=1))


@pytest.fixture
def host(desired: DesiredState) -> HostState:
    return desired.hosts["localhost"]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


# ---- plan_service ------------------------------------------------------------------------------

def test_nothing_running_plans_volumes_jobs_then_containers(host: HostState, state_dir: Path,
                                                           desired: DesiredState) -> None:
    facts = empty_facts(host)
    keystone = host.services["keystone"]
    actions = plan_service(host, keystone, facts, state_dir, desired.secrets)
    expected = ([("volume", v) for v in keystone.volumes]
                + [("job", j.name) for j in keystone.jobs if j.phase == "before"]
                + [("create", c.name) for c in keystone.containers])
    assert kinds(actions) == expected
    assert ("job", "keystone.database") == kinds(actions)[len(keystone.volumes)]
    assert all(a.host == "localhost" and a.service == "keystone" for a in actions)
    assert [a.reasons for a in actions if a.kind == "volume"] == [["missing"]] * len(keystone.volumes)
    assert {tuple(a.reasons) for a in actions if a.kind == "job"} == {("never ran",)}
    assert [a.reasons for a in actions if a.kind == "create"] == [["not running"]]


def test_after_jobs_come_last(host: HostState, state_dir: Path, desired: DesiredState) -> None:
    keystone = host.services["keystone"]
    late = replace(keystone.jobs[-1], name="keystone.late", phase="after")
    service = replace(keystone, jobs=[late, *keystone.jobs])  # listed first, still planned last
    actions = plan_service(host, service, empty_facts(host), state_dir, desired.secrets)
    assert kinds(actions)[-1] == ("job", "keystone.late")
    creates = [i for i, a in enumerate(actions) if a.kind == "create"]
    befores = [i for i, a in enumerate(actions) if a.kind == "job" and a.target != "keystone.late"]
    assert max(befores) < min(creates)


def test_always_jobs_run_first_time_then_are_left_to_the_caller(host: HostState, state_dir: Path,
                                                                 desired: DesiredState) -> None:
    nova = host.services["nova"]
    always = [j.name for j in nova.jobs if j.run == "always"]
    assert always, "nova has a run: always job (discover_hosts)"
    actions = plan_service(host, nova, empty_facts(host), state_dir, desired.secrets)
    assert set(always) <= {a.target for a in actions}
    converged = plan_service(host, nova, converged_facts(host), state_dir, desired.secrets)
    assert not {a.target for a in converged} & set(always)


def test_missing_image_is_pulled_before_create(host: HostState, state_dir: Path, desired: DesiredState) -> None:
    facts = empty_facts(host)
    memcached = host.services["memcached"]
    facts.image_ids[memcached.containers[0].image] = None
    actions = plan_service(host, memcached, facts, state_dir, desired.secrets)
    assert kinds(actions) == [("pull", memcached.containers[0].image), ("create", "memcached")]


def test_converged_host_plans_nothing(host: HostState, state_dir: Path, desired: DesiredState) -> None:
    facts = converged_facts(host)
    for name in desired.order:
        assert plan_service(host, host.services[name], facts, state_dir, desired.secrets) == [], name
    assert plan_removals(host, facts) == []


def test_changed_image_recreates_and_reruns_jobs(host: HostState, state_dir: Path, desired: DesiredState) -> None:
    facts = converged_facts(host, image_id="sha256:old")
    facts.image_ids = image_ids(host, "sha256:new")
    keystone = host.services["keystone"]
    actions = plan_service(host, keystone, facts, state_dir, desired.secrets)
    recreate = [a for a in actions if a.kind == "recreate"]
    assert [a.target for a in recreate] == ["keystone"]
    assert recreate[0].reasons == [f"image {keystone.containers[0].image} changed"]
    assert {a.target for a in actions if a.kind == "job"} == {j.name for j in keystone.jobs}
    assert {tuple(a.reasons) for a in actions if a.kind == "job"} == {("its image or files changed",)}
    assert not [a for a in actions if a.kind in ("create", "start", "volume")]


def test_stopped_container_is_started(host: HostState, state_dir: Path, desired: DesiredState) -> None:
    facts = converged_facts(host)
    facts.containers["memcached"].status = "exited"
    actions = plan_service(host, host.services["memcached"], facts, state_dir, desired.secrets)
    assert kinds(actions) == [("start", "memcached")]
    assert actions[0].reasons == ["container is exited"]


def test_stopped_and_changed_container_is_recreated_not_started(host: HostState, state_dir: Path,
                                                                desired: DesiredState) -> None:
    facts = converged_facts(host, image_id="sha256:old")
    facts.image_ids = image_ids(host, "sha256:new")
    facts.containers["memcached"].status = "exited"
    actions = plan_service(host, host.services["memcached"], facts, state_dir, desired.secrets)
    assert kinds(actions) == [("recreate", "memcached")]


def test_missing_volume_is_planned_even_when_converged(host: HostState, state_dir: Path,
                                                       desired: DesiredState) -> None:
    facts = converged_facts(host)
    facts.volumes.discard("mariadb")
    actions = plan_service(host, host.services["mariadb"], facts, state_dir, desired.secrets)
    assert kinds(actions) == [("volume", "mariadb")]


def override_keystone(site_dir: Path, text: str, site: Site, aio: Inventory) -> DesiredState:
    path = site_dir / "config" / "keystone" / "keystone.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return compute_desired(site, aio)


def test_changed_file_recreates_with_masked_diff(site_dir: Path, site: Site, aio: Inventory, host: HostState,
                                                state_dir: Path) -> None:
    old = next(c for c in host.containers() if c.name == "keystone")
    record_running(state_dir, old)
    facts = converged_facts(host)
    # connection_recycle_time sits next to the connection line, which holds the DB password
    new_desired = override_keystone(site_dir, "[database]\nconnection_recycle_time = 300\n", site, aio)
    new_host = new_desired.hosts["localhost"]
    actions = plan_service(new_host, new_host.services["keystone"], facts, state_dir, new_desired.secrets)
    recreate = [a for a in actions if a.kind == "recreate"]
    assert len(recreate) == 1 and recreate[0].target == "keystone"
    assert recreate[0].reasons == ["keystone.conf changed"]
    diff = recreate[0].diff
    assert "-connection_recycle_time = 600" in diff
    assert "+connection_recycle_time = 300" in diff
    assert " connection = mysql+pymysql://keystone:********@127.0.0.1/keystone" in diff
    for secret in new_desired.secrets:
        assert secret not in diff
    assert "keystone-uwsgi.ini" not in diff
    # the jobs that mount keystone.conf run again, the database job does not
    jobs = {a.target for a in actions if a.kind == "job"}
    assert jobs == {j.name for j in new_host.services["keystone"].jobs} - {"keystone.database"}
    assert "recreate keystone: keystone.conf changed" in " ".join(recreate[0].line().split())


def test_changed_field_is_named(host: HostState, state_dir: Path, desired: DesiredState) -> None:
    old = next(c for c in host.containers() if c.name == "memcached")
    record_running(state_dir, old)
    facts = converged_facts(host)
    new = replace(old, command=[*old.command, "-v"], stop_timeout=old.stop_timeout + 5)
    reasons, diff = container_reasons(new, facts.containers["memcached"], facts, state_dir, desired.secrets)
    assert reasons == ["command changed", "stop_timeout changed"]
    assert diff == ""


def test_removed_file_and_unknown_definition(host: HostState, state_dir: Path, desired: DesiredState) -> None:
    old = next(c for c in host.containers() if c.name == "keystone")
    record_running(state_dir, old)
    facts = converged_facts(host)
    new = replace(old, files=[f for f in old.files if f.name != "keystone-uwsgi.ini"])
    reasons, _ = container_reasons(new, facts.containers["keystone"], facts, state_dir, desired.secrets)
    assert reasons == ["keystone-uwsgi.ini removed"]
    # A differing hash label but an identical recorded definition still recreates, with a reason.
    facts.containers["keystone"].labels[converge.HASH] = "stale"
    reasons, _ = container_reasons(old, facts.containers["keystone"], facts, state_dir, desired.secrets)
    assert reasons == ["definition changed"]


def test_diff_masks_urlencoded_password(site_dir: Path, services, aio: Inventory, state_dir: Path) -> None:
    pw = yaml.safe_load((site_dir / "passwords.yml").read_text())
    pw["keystone_database_password"] = "p@ss/w0rd!#x"
    (site_dir / "passwords.yml").write_text(yaml.safe_dump(pw))
    site = load_site(site_dir, services)
    before = compute_desired(site, aio)
    old = next(c for c in before.hosts["localhost"].containers() if c.name == "keystone")
    record_running(state_dir, old)
    facts = converged_facts(before.hosts["localhost"])
    after = override_keystone(site_dir, "[database]\nconnection_recycle_time = 300\n", site, aio)
    host = after.hosts["localhost"]
    actions = plan_service(host, host.services["keystone"], facts, state_dir, after.secrets)
    diff = next(a for a in actions if a.kind == "recreate").diff
    assert "connection_recycle_time = 300" in diff
    assert "p%40ss" not in diff


def test_diff_masks_the_old_password_too(site_dir: Path, services, aio: Inventory, host: HostState,
                                         state_dir: Path, site: Site) -> None:
    old_password = site.passwords["keystone_database_password"]
    old = next(c for c in host.containers() if c.name == "keystone")
    record_running(state_dir, old)
    facts = converged_facts(host)
    pw = yaml.safe_load((site_dir / "passwords.yml").read_text())
    pw["keystone_database_password"] = "rotatedRotated123"
    (site_dir / "passwords.yml").write_text(yaml.safe_dump(pw))
    after = compute_desired(load_site(site_dir, services), aio)
    new_host = after.hosts["localhost"]
    actions = plan_service(new_host, new_host.services["keystone"], facts, state_dir, after.secrets)
    diff = next(a for a in actions if a.kind == "recreate").diff
    assert "rotatedRotated123" not in diff
    assert old_password not in diff


# ---- job_needed ---------------------------------------------------------------------------------

@pytest.fixture
def job(host: HostState) -> JobSpec:
    return next(j for j in all_jobs(host) if j.name == "keystone.db_sync")


def test_job_needed_on_change(job: JobSpec) -> None:
    assert job.run == "on_change"
    assert job_needed(job, {"jobs": {}}, IMAGE_ID) == "never ran"
    assert job_needed(job, {}, IMAGE_ID) == "never ran"
    assert job_needed(job, {"jobs": {job.name: f"{job.job_hash}:{IMAGE_ID}"}}, IMAGE_ID) is None
    assert job_needed(job, {"jobs": {job.name: f"{job.job_hash}:{IMAGE_ID}"}}, "sha256:other") == \
        "its image or files changed"
    assert job_needed(job, {"jobs": {job.name: f"oldhash:{IMAGE_ID}"}}, IMAGE_ID) == "its image or files changed"


def test_job_needed_once(job: JobSpec) -> None:
    once = replace(job, run="once")
    assert job_needed(once, {"jobs": {}}, IMAGE_ID) == "never ran"
    assert job_needed(once, {"jobs": {job.name: "anything:at-all"}}, "sha256:other") is None


def test_job_needed_always(job: JobSpec) -> None:
    # Unchanged: left to the caller (run when the service changes); new or changed: run.
    always = replace(job, run="always")
    assert job_needed(always, {"jobs": {}}, IMAGE_ID) == "never ran"
    assert job_needed(always, {"jobs": {job.name: f"{job.job_hash}:{IMAGE_ID}"}}, IMAGE_ID) is None
    assert job_needed(always, {"jobs": {job.name: "x:y"}}, IMAGE_ID) == "its image or files changed"


# ---- plan_removals ------------------------------------------------------------------------------

def test_plan_removals(host: HostState) -> None:
    facts = converged_facts(host)
    facts.containers["cinder_api"] = FakeContainer(
        "cinder_api", managed_labels(host, **{converge.SERVICE: "cinder", converge.CONTAINER: "cinder_api"}))
    facts.containers["mortar_job_keystone_db_sync"] = FakeContainer(
        "mortar_job_keystone_db_sync",
        managed_labels(host, **{converge.SERVICE: "keystone", converge.LABEL_PREFIX + "purpose": "job"}))
    actions = plan_removals(host, facts)
    assert kinds(actions) == [("remove", "cinder_api")]
    assert actions[0].service == "cinder"
    assert actions[0].reasons == ["no longer in the desired state"]


def test_plan_removals_unlabelled_service(host: HostState) -> None:
    facts = Facts(containers={"stray": FakeContainer("stray", managed_labels(host))}, volumes=set(),
                  image_ids={}, records={})
    assert [(a.kind, a.target, a.service) for a in plan_removals(host, facts)] == [("remove", "stray", "?")]


# ---- make_plan over a fake engine -------------------------------------------------------------

class _Collection:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def list(self, **_: Any) -> list[Any]:
        return list(self.items)


class _Images:
    def __init__(self, ids: dict[str, str | None]) -> None:
        self.ids = ids

    def get(self, ref: str) -> FakeImage:
        import docker.errors

        image_id = self.ids.get(ref)
        if image_id is None:
            raise docker.errors.ImageNotFound(ref)
        return FakeImage(image_id)


class _Volume:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeEngine:
    def __init__(self, facts: Facts) -> None:
        self.containers = _Collection(list(facts.containers.values()))
        self.volumes = _Collection([_Volume(v) for v in sorted(facts.volumes)])
        self.images = _Images(facts.image_ids)


def deployment_for(site: Site, aio: Inventory, desired: DesiredState, state_dir: Path) -> Deployment:
    return Deployment(site, aio, desired, state_dir)


def plan_with(site: Site, aio: Inventory, desired: DesiredState, state_dir: Path, facts: Facts):
    deployment = deployment_for(site, aio, desired, state_dir)
    return make_plan(deployment, LocalExecutor(deployment, FakeEngine(facts)))


def test_make_plan_fresh_host(site: Site, aio: Inventory, desired: DesiredState, host: HostState,
                              state_dir: Path) -> None:
    plan = plan_with(site, aio, desired, state_dir, empty_facts(host))
    creates = [a.target for a in plan.actions if a.kind == "create"]
    assert sorted(creates) == sorted(c.name for c in host.containers())
    # the always-run job follows because its service changed
    discover = [a for a in plan.actions if a.target == "nova.discover_hosts"]
    assert len(discover) == 1 and discover[0].reasons == ["never ran"]
    assert sorted(plan.registrations) == sorted(desired.registrations)
    assert not plan.empty
    # services come in dependency order
    services = [a.service for a in plan.actions if a.kind == "create"]
    assert services.index("mariadb") < services.index("keystone") < services.index("nova")


def test_make_plan_converged_is_empty(site: Site, aio: Inventory, desired: DesiredState, host: HostState,
                                      state_dir: Path) -> None:
    converge.save_records(state_dir, {"jobs": {j.name: f"{j.job_hash}:{IMAGE_ID}" for j in all_jobs(host)}})
    deployment = deployment_for(site, aio, desired, state_dir)
    for name, reg in desired.registrations.items():
        record_registration(deployment, name, reg.digest)
    plan = plan_with(site, aio, desired, state_dir, converged_facts(host))
    assert plan.actions == []
    assert plan.registrations == []
    assert plan.empty


def test_make_plan_missing_image_is_pulled(site: Site, aio: Inventory, desired: DesiredState, host: HostState,
                                           state_dir: Path) -> None:
    facts = converged_facts(host)
    ref = next(c.image for c in host.containers() if c.name == "memcached")
    facts.image_ids[ref] = None
    plan = plan_with(site, aio, desired, state_dir, facts)
    assert ("pull", ref) in kinds(plan.actions)


@pytest.mark.skipif(SITE_LABEL is None, reason="this converge does not label containers with their site")
def test_make_plan_refuses_another_sites_containers(site: Site, aio: Inventory, desired: DesiredState,
                                                    host: HostState, state_dir: Path) -> None:
    from mortar.errors import MortarError

    facts = converged_facts(host)
    assert SITE_LABEL is not None
    facts.containers["keystone"].labels[SITE_LABEL] = "/etc/other-site"
    with pytest.raises(MortarError, match="another mortar deployment") as info:
        plan_with(site, aio, desired, state_dir, facts)
    assert "/etc/other-site" in str(info.value)
