"""Tests for the Ansible executor's plumbing (mortar/deploy/ansible.py, executors.executor_for)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from mortar.deploy.ansible import HOST_MODULES, AnsibleExecutor, AnsibleRun, ansible_env, host_library
from mortar.deploy.converge import Action, StepReport
from mortar.deploy.executors import LocalExecutor, StepResult, executor_for, is_local
from mortar.deploy.runner import Deployment
from mortar.errors import MortarError
from mortar.site.inventory import parse_inventory


def test_host_library_is_deterministic_and_holds_only_host_modules(tmp_path: Path) -> None:
    first = host_library(tmp_path / "a")
    second = host_library(tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert names == [f"mortar/{m}" for m in HOST_MODULES]
    # the host side needs only the standard library and the docker SDK
    for name in names:
        source = zipfile.ZipFile(first).read(name).decode()
        for banned in ("import yaml", "import jinja2", "import click", "import openstack"):
            assert banned not in source, (name, banned)


def test_ansible_env_turns_on_pipelining_and_fact_cache(tmp_path: Path) -> None:
    env = ansible_env(7, tmp_path / "facts")
    assert env["ANSIBLE_PIPELINING"] == "True" and env["ANSIBLE_FORKS"] == "7"
    assert env["ANSIBLE_FACT_CACHING"] == "jsonfile" and env["ANSIBLE_GATHERING"] == "smart"
    assert "ControlPersist" in env["ANSIBLE_SSH_ARGS"]
    assert env["PATH"].split(":")[0].endswith("bin")


def event(kind: str, host: str, task: str, res: dict) -> dict:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


def test_ansible_run_collects_reports_failures_and_echoes_one_line_per_host() -> None:
    said: list[str] = []
    run = AnsibleRun(["containers"], said.append)
    report = StepReport("ignored", "containers", True, ["nova: create nova_compute"],
                        [Action("create", "cmp1", "nova", "nova_compute", ["not running"])])
    run.handle(event("runner_on_ok", "cmp1", "containers", {"changed": True, "report": report.to_dict()}))
    run.handle(event("runner_on_ok", "cmp2", "containers", {"changed": False,
                                                           "report": StepReport("x", "containers").to_dict()}))
    run.handle(event("runner_on_unreachable", "cmp3", "containers", {"msg": "ssh: connect refused"}))
    run.handle(event("runner_on_failed", "ctl1", "desired state", {"censored": "hidden"}))
    run.handle(event("playbook_on_task_start", "ctl1", "containers", {}))
    result = run.result
    assert result.tasks == 4
    assert [r.host for r in result.reports] == ["cmp1", "cmp2"]
    assert result.reports[0].actions[0].target == "nova_compute"
    assert {f.host for f in result.failures} == {"cmp3", "ctl1"}
    secret_failure = next(f for f in result.failures if f.host == "ctl1")
    assert "output hidden" in secret_failure.message
    assert said[0] == "[cmp1] containers nova: create nova_compute"
    assert any(line.startswith("[cmp3] containers FAILED: unreachable") for line in said)
    assert not any("cmp2" in line for line in said)  # unchanged hosts stay quiet


def test_failures_raise_one_error_naming_every_failed_host() -> None:
    from mortar.deploy.executors import HostFailure

    result = StepResult(failures=[HostFailure("cmp2", "plan", "unreachable: refused"),
                                  HostFailure("cmp1", "plan", "engine down")])
    with pytest.raises(MortarError, match="failed on cmp1, cmp2") as info:
        result.raise_for_failures()
    assert "run the same command again" in str(info.value)


@pytest.mark.parametrize(("line", "local"), [
    ("localhost ansible_connection=local", True), ("localhost", True), ("node1 ansible_host=127.0.0.1", True),
    ("node1 ansible_host=10.0.0.5", False), ("node1", False)])
def test_is_local(line: str, local: bool) -> None:
    inventory = parse_inventory(f"[control]\n{line}\n")
    host = next(iter(inventory.hosts.values()))
    assert is_local(host.name, host.vars) is local


def test_executor_for_picks_local_only_when_every_host_is_this_machine(site, desired, aio, tmp_path: Path) -> None:
    deployment = Deployment(site, aio, desired, tmp_path)
    assert isinstance(executor_for(deployment, "auto", engine=object()), LocalExecutor)
    assert isinstance(executor_for(deployment, "ansible"), AnsibleExecutor)
    remote = parse_inventory("[control]\nlocalhost ansible_connection=local\n[compute]\ncmp1 ansible_host=10.0.0.5\n")
    mixed = Deployment(site, remote, desired, tmp_path)
    assert isinstance(executor_for(mixed, "auto"), AnsibleExecutor)
    with pytest.raises(MortarError, match="cmp1 is not this machine"):
        executor_for(mixed, "local", engine=object())


def test_limit_narrows_targets_but_not_the_desired_state(site_dir: Path, tmp_path: Path) -> None:
    from mortar.deploy.runner import load_deployment
    from mortar.site.samples import INVENTORY_MULTINODE

    (site_dir / "inventory").write_text(INVENTORY_MULTINODE)
    whole = load_deployment(site_dir, state_dir=tmp_path)
    assert whole.targets == ["ctl1", "cmp1", "cmp2"]
    limited = load_deployment(site_dir, limit="compute:!cmp1", state_dir=tmp_path)
    assert limited.targets == ["cmp2"]
    # addresses of services on hosts outside the limit still come from the whole inventory
    assert limited.desired.hosts["cmp2"].services["nova"].containers[0].files == \
        whole.desired.hosts["cmp2"].services["nova"].containers[0].files
    with pytest.raises(MortarError, match="matches no host"):
        load_deployment(site_dir, limit="storage", state_dir=tmp_path)


def test_kolla_style_child_groups_place_services_on_network_hosts(site_dir: Path, tmp_path: Path) -> None:
    from mortar.deploy.runner import load_deployment

    (site_dir / "inventory").write_text(
        "[control]\nctl1 ansible_host=10.0.0.11 api_address=10.0.0.11\n"
        "[network]\nnet1 ansible_host=10.0.0.31 api_address=10.0.0.31\n"
        "[compute]\ncmp1 ansible_host=10.0.0.21\ncmp2 ansible_host=10.0.0.22\n"
        "[storage]\n[monitoring]\n"
        "[neutron-server:children]\nnetwork\n[ovn:children]\nnetwork\n")
    desired = load_deployment(site_dir, state_dir=tmp_path).desired
    assert sorted(c.name for c in desired.hosts["net1"].containers()) == [
        "neutron_server", "ovn_nb_db", "ovn_northd", "ovn_sb_db"]
    assert "neutron" not in desired.hosts["ctl1"].services and "ovn" not in desired.hosts["ctl1"].services
    # every other service stays on control, nova-compute on each compute host
    assert {"mariadb", "keystone", "nova"} <= set(desired.hosts["ctl1"].services)
    assert [c.name for c in desired.hosts["cmp2"].containers()] == ["nova_compute"]
    # neutron's config on the network host points at the OVN databases there
    neutron_files = "\n".join(f.content for c in desired.hosts["net1"].containers() if c.name == "neutron_server"
                              for f in c.files)
    assert "10.0.0.31:6641" in neutron_files
