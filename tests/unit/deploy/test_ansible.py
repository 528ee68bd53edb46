"""The Ansible executor's plumbing (mortar/deploy/executors/ansible.py, the host module) and the choice
of executor (executors.executor_for), without running ansible-playbook."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import mortar
from mortar.agent import wire
from mortar.agent.wire import Action, StepReport, StepRequest, WireError
from mortar.deploy.executors import StepResult, executor_for, is_local
from mortar.deploy.executors.ansible import (
    MODULE,
    AnsibleExecutor,
    AnsibleRun,
    agent_files,
    agent_library,
    ansible_env,
    playbook,
)
from mortar.deploy.executors.local import LocalExecutor
from mortar.deploy.orchestrator import Deployment, load_deployment
from mortar.errors import MortarError
from mortar.site.inventory import parse_inventory
from tests.unit.fakeengine import FakeEngine

ROOT = Path(mortar.__file__).resolve().parent
HOST_MODULE = ROOT / "ansible" / "ansible_collections" / "mortar" / "deploy" / "plugins" / "modules" / "host.py"
# What a host may lack: the agent runs on a host's stock python3 (plus the docker SDK, imported late).
NEVER = {"openstack", "keystoneauth1", "ansible", "ansible_runner"}
NOT_AT_MODULE_LEVEL = {"click", "jinja2", "yaml", "docker", "requests"}


# ---- the agent that travels to the hosts -------------------------------------------------------

def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def top_level_imports(tree: ast.Module) -> set[str]:
    # a module's body, including imports under a top-level if/try (not those inside functions)
    body = [n for n in tree.body]
    for node in tree.body:
        if isinstance(node, ast.If | ast.Try):
            body += [*node.body, *getattr(node, "orelse", []), *[s for h in getattr(node, "handlers", [])
                                                                    for s in h.body]]
    return imported(ast.Module(body=[n for n in body if isinstance(n, ast.Import | ast.ImportFrom)],
                               type_ignores=[]))


def test_agent_files_hold_the_agent_and_the_engine_seam() -> None:
    files = agent_files()
    assert {f"agent/{p.name}" for p in (ROOT / "agent").glob("*.py")} <= set(files)
    assert {"__init__.py", "engine/__init__.py", "engine/protocol.py", "errors.py", "files.py",
            "records.py"} <= set(files)
    assert not [f for f in files if f.startswith(("deploy/", "cli/", "catalogue/", "builder/", "site/"))], files
    assert files == sorted(files)


def test_agent_files_import_nothing_a_host_lacks() -> None:
    for name in agent_files():
        tree = ast.parse((ROOT / name).read_text())
        assert not imported(tree) & NEVER, (name, imported(tree) & NEVER)
        assert not top_level_imports(tree) & NOT_AT_MODULE_LEVEL, (name, top_level_imports(tree))


def test_agent_files_follow_every_mortar_import(tmp_path: Path) -> None:
    files = set(agent_files())
    for name in files:
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mortar"):
                module = Path(*node.module.split(".")[1:])
                assert {str(module.with_suffix(".py")) if module.name else "__init__.py",
                        str(module / "__init__.py")} & files, (name, node.module)


def test_agent_library_is_named_by_its_content_and_stable(tmp_path: Path) -> None:
    first = agent_library(tmp_path / "a")
    second = agent_library(tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    assert first.name.startswith("mortar-agent-") and first.suffix == ".zip"
    assert first.stat().st_mode & 0o777 == 0o644
    mtime = first.stat().st_mtime_ns
    assert agent_library(tmp_path / "a") == first and first.stat().st_mtime_ns == mtime, "not written again"
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == [f"mortar/{f}" for f in agent_files()]
        assert archive.read("mortar/agent/wire.py") == (ROOT / "agent" / "wire.py").read_bytes()


def test_the_agent_zip_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    """A host's python3 with nothing but the zip: every module imports, a step dispatches."""
    lib = agent_library(tmp_path / "lib")
    modules = [f"mortar.{f[:-3].replace('/', '.')}".removesuffix(".__init__") for f in agent_files()]
    script = f"""
import importlib, json, sys
sys.path.insert(0, {str(lib)!r})
for name in {modules!r}:
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in ("docker", "yaml", "jinja2", "click")], sys.modules
from pathlib import Path
from mortar.agent import steps, wire
from mortar.errors import EngineError
assert steps.__file__.startswith({str(lib)!r}), steps.__file__
def connect():
    raise EngineError("no engine here", fix="run mortar engine setup")
host = wire.HostState("h1", "127.0.0.1", "site-a")
out = {{}}
for step in ("plan", "nosuch"):
    report = steps.dispatch(step, wire.StepRequest(), host, Path({str(tmp_path / 'state')!r}),
                            Path({str(tmp_path / 'log')!r}), connect)
    out[step] = wire.encode(report)
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    plan = wire.decode(StepReport, out["plan"])
    assert plan.failure is not None and plan.failure.message == "no engine here" and plan.failure.kind == "temporary"
    unknown = wire.decode(StepReport, out["nosuch"])
    assert unknown.failure is not None and "unknown step 'nosuch'" in unknown.failure.message


# ---- the play ------------------------------------------------------------------------------------

def test_the_playbook_is_one_task_per_step_and_stops_on_a_failure() -> None:
    (play,) = playbook(["before", "containers"], sync=True, stop_on_failure=True)
    assert play["any_errors_fatal"] is True and play["hosts"] == "all" and play["gather_facts"] is False
    names = [t["name"] for t in play["tasks"]]
    assert names == ["sync: mortar directories", "sync: mortar agent", "sync: desired state", "before", "containers"]
    state = play["tasks"][2]
    assert state["no_log"] is True and state["ansible.builtin.copy"]["mode"] == "0600"
    assert state["ansible.builtin.copy"]["dest"] == "/var/lib/mortar/desired.json"
    for task, step in zip(play["tasks"][3:], ["before", "containers"], strict=True):
        args = task[MODULE]
        assert MODULE == "mortar.deploy.host"
        assert args["step"] == step and args["state"] == "/var/lib/mortar/desired.json"
        assert args["request"] == "{{ mortar_requests[inventory_hostname] }}"
        assert args["lib"] == "{{ mortar_remote_lib }}"


def test_a_play_without_sync_or_stop() -> None:
    (play,) = playbook(["plan"], sync=False, stop_on_failure=False)
    assert play["any_errors_fatal"] is False
    assert [t["name"] for t in play["tasks"]] == ["plan"]


def test_a_state_directory_too_deep_for_a_socket_gets_a_short_private_control_folder(tmp_path: Path) -> None:

    import shutil
    import tempfile

    from mortar.deploy.executors.ansible import control_path_dir

    deep = tmp_path / ("d" * 60) / "sites" / "c7150ea9528a" / "ansible"
    scratch = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))  # as short as /tmp, where mortar puts it
    try:
        short = control_path_dir(deep, temporary=scratch)
        check_short_control_folder(tmp_path, deep, scratch, short)
    finally:
        shutil.rmtree(scratch)


def check_short_control_folder(tmp_path: Path, deep: Path, scratch: Path, short: Path) -> None:
    import os
    import socket

    from mortar.deploy.executors.ansible import control_path_dir

    assert short.parent == scratch and short.name.startswith("mortar-ssh-") and short.is_dir()
    assert oct(os.stat(short).st_mode & 0o777) == "0o700"
    assert control_path_dir(deep, temporary=scratch) == short  # the same site, the same folder
    assert control_path_dir(tmp_path / ("e" * 80), temporary=scratch) != short
    # What SSH binds there (DIR/<hash>.<random suffix>) fits a socket; in DEEP/cp it would not.
    for folder, fits in ((short, True), (deep / "cp", False)):
        folder.mkdir(parents=True, exist_ok=True)
        name = str(folder / "97e0d9d58c.wtmHpO1bCNsZe8Of")
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.bind(name)
                bound = True
            except OSError:
                bound = False
        assert bound == fits, name
    # A shallow state directory keeps its own.
    assert control_path_dir(tmp_path / "site", temporary=tmp_path) == tmp_path / "site" / "cp"
    # Someone else's file in the short folder's place is refused, naming the fix.
    other = tmp_path / "other"
    other.mkdir()
    taken = control_path_dir(other / ("f" * 90), temporary=other)
    taken.rmdir()
    taken.write_text("not a folder")
    with pytest.raises(MortarError) as err:
        control_path_dir(other / ("f" * 90), temporary=other)
    assert "MORTAR_STATE_DIR" in f"{err.value}"


def test_ansible_env_checks_host_keys_against_the_sites_known_hosts(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    env = ansible_env(7, tmp_path / "site", known, accept_new_keys=False)
    assert env["ANSIBLE_PIPELINING"] == "True" and env["ANSIBLE_FORKS"] == "7"
    # SSH masters and facts are the site's own
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == str(tmp_path / "site" / "cp")
    assert env["ANSIBLE_FACT_CACHING_CONNECTION"] == str(tmp_path / "site" / "facts")
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert f"UserKnownHostsFile={known}" in env["ANSIBLE_SSH_ARGS"]
    assert "StrictHostKeyChecking=yes" in env["ANSIBLE_SSH_ARGS"]
    assert "StrictHostKeyChecking=accept-new" in ansible_env(1, tmp_path, known, True)["ANSIBLE_SSH_ARGS"]
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


# ---- what Ansible tells the controller --------------------------------------------------------

def event(kind: str, host: str, task: str, res: dict) -> dict:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


KNOWN_HOSTS = Path("/tmp/site/known_hosts")


def test_a_module_report_is_decoded_and_one_line_echoed_per_changed_host() -> None:
    said: list[str] = []
    run = AnsibleRun(said.append, KNOWN_HOSTS)
    report = StepReport("whatever", "containers", True, ["nova: create nova_compute"],
                        [Action("create", "cmp1", "nova", "nova_compute", ["not running"])])
    run.handle(event("runner_on_ok", "cmp1", "containers", {"changed": True, "report": wire.encode(report)}))
    run.handle(event("runner_on_ok", "cmp2", "containers", {"report": wire.encode(StepReport("x", "containers"))}))
    run.handle(event("playbook_on_task_start", "cmp1", "containers", {}))
    result = run.result
    assert result.tasks == 2 and [r.host for r in result.reports] == ["cmp1", "cmp2"]
    assert result.reports[0].actions == report.actions
    assert said == ["[cmp1] containers nova: create nova_compute"]


def test_a_failed_module_reports_its_failure() -> None:
    run = AnsibleRun(None, KNOWN_HOSTS)
    report = StepReport("ctl1", "before", failure=wire.Failure("ctl1", "before", "job keystone.db_sync failed"))
    run.handle(event("runner_on_failed", "ctl1", "before", {"report": wire.encode(report), "msg": "x"}))
    run.handle(event("runner_on_failed", "ctl2", "sync: desired state", {"censored": "hidden"}))
    run.handle(event("runner_on_failed", "ctl3", "sync: mortar agent", {"msg": "Destination not writable"}))
    failures = {f.host: f for f in run.result.failures}
    assert failures["ctl1"].message == "job keystone.db_sync failed"
    assert "output hidden" in failures["ctl2"].message
    assert failures["ctl3"].message == "Destination not writable" and "Ansible log" in failures["ctl3"].fix


@pytest.mark.parametrize(("message", "words", "fix"), [
    ("@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@",
     "is not the one recorded in /tmp/site/known_hosts", ["ssh-keygen -R", str(KNOWN_HOSTS),
                                                           "--accept-new-host-keys"]),
    ("Host key verification failed.", "no SSH host key of cmp1 is recorded in /tmp/site/known_hosts",
     ["--accept-new-host-keys"]),
    ("ssh: connect to host 10.0.0.21 port 22: Connection refused", "unreachable: ssh: connect",
     ["bootstrap-servers"]),
])
def test_an_unreachable_host_says_why_and_what_to_do(message: str, words: str, fix: list[str]) -> None:
    said: list[str] = []
    run = AnsibleRun(said.append, KNOWN_HOSTS)
    run.handle(event("runner_on_unreachable", "cmp1", "plan", {"msg": message, "unreachable": True}))
    (failure,) = run.result.failures
    assert failure.kind == "unreachable" and failure.host == "cmp1" and failure.step == "plan"
    assert words in failure.message
    for word in fix:
        assert word in failure.fix, word
    assert said == [f"[cmp1] plan       FAILED: {failure.message}"]


def test_a_report_of_another_shape_is_a_wire_error() -> None:
    run = AnsibleRun(None, KNOWN_HOSTS)
    data = wire.encode(StepReport("cmp1", "plan"))
    data["colour"] = "red"
    with pytest.raises(WireError, match="cmp1: plan: unknown field 'colour'"):
        run.handle(event("runner_on_ok", "cmp1", "plan", {"report": data}))


def test_failures_raise_one_error_naming_every_failed_host() -> None:
    result = StepResult([StepReport("cmp2", "plan", failure=wire.Failure("cmp2", "plan", "unreachable: refused",
                                                                        fix="check SSH")),
                         StepReport("cmp1", "plan", failure=wire.Failure("cmp1", "plan", "engine down")),
                         StepReport("ctl1", "plan")])
    with pytest.raises(MortarError, match="failed on cmp1, cmp2") as info:
        result.raise_for_failures()
    assert "cmp2: plan: unreachable: refused" in str(info.value) and "check SSH" in str(info.value)
    assert "running the same command again converges" in str(info.value)
    StepResult([StepReport("ctl1", "plan")]).raise_for_failures()


# ---- the module on the host ---------------------------------------------------------------------

def load_host_module():
    spec = importlib.util.spec_from_file_location("mortar_host_module", HOST_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_host_module_runs_a_step_from_the_agent_zip(tmp_path: Path, monkeypatch) -> None:
    from tests.unit.agent.conftest import demo_host

    host_module = load_host_module()
    monkeypatch.setattr(sys, "path", list(sys.path))  # run() puts the zip first
    host = demo_host()
    engine = FakeEngine()
    for ref in host.images():
        engine.add_image(ref)
    monkeypatch.setattr("mortar.engine.connect", lambda: engine)
    state = tmp_path / "desired.json"
    state.write_text(wire.dumps(host))
    params = {"lib": str(agent_library(tmp_path / "lib")), "step": "plan", "host": "cmp1", "state": str(state),
              "request": wire.encode(StepRequest()), "state_dir": str(tmp_path / "state"),
              "log_dir": str(tmp_path / "log")}
    result = host_module.run(SimpleNamespace(params=params))
    assert sys.path[0] == params["lib"]
    assert result["failure"] == "" and result["changed"] is False
    report = wire.decode(StepReport, result["report"])
    assert report.host == "cmp1" and [(a.kind, a.target) for a in report.actions] == [
        ("volume", "demo_data"), ("create", "demo_web")]
    json.dumps(result)  # what the module answers is JSON
    missing = host_module.run(SimpleNamespace(params={**params, "step": "nosuch", "state": str(tmp_path / "no")}))
    assert "unknown step 'nosuch'" in missing["failure"]


# ---- the local executor ----------------------------------------------------------------------------

def test_the_local_executor_dispatches_each_step_on_every_host_and_stops_after_a_failure(
        deployment: Deployment, monkeypatch) -> None:
    from mortar.agent import steps
    from mortar.agent.errors import StepError

    ran: list[str] = []

    def step(name: str, fail: bool = False):
        def run(ctx: steps.StepContext) -> None:
            ran.append(name)
            ctx.progress(f"{name} on {ctx.host.host}")
            if fail:
                raise StepError("it broke", fix="fix it")

        return steps.StepDef(name, run, False, name)

    monkeypatch.setitem(steps.STEPS, "first", step("first", fail=True))
    monkeypatch.setitem(steps.STEPS, "second", step("second"))
    engine = FakeEngine()
    executor = LocalExecutor(deployment, engine=engine)
    said: list[str] = []
    result = executor.run(["first", "second"], {"localhost": StepRequest()}, said.append)
    assert ran == ["first"] and [r.step for r in result.reports] == ["first"]
    assert result.failures[0].message == "it broke" and result.failures[0].host == "localhost"
    assert said == ["[localhost] first      first on localhost"]
    ran.clear()
    result = executor.run(["first", "second"], {"localhost": StepRequest()}, stop_on_failure=False)
    assert ran == ["first", "second"] and result.of("second")[0].failure is None
    assert executor.connect() is engine and executor.tasks == 0


# ---- which executor -------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "local"), [
    ("localhost ansible_connection=local", True), ("localhost", True), ("node1 ansible_host=127.0.0.1", True),
    ("node1 ansible_connection=local api_address=127.0.0.5", True),
    ("node1 ansible_host=10.0.0.5", False), ("node1", False)])
def test_is_local(line: str, local: bool) -> None:
    inventory = parse_inventory(f"[control]\n{line}\n")
    host = next(iter(inventory.hosts.values()))
    assert is_local(host.name, host.vars) is local


def test_executor_for_picks_local_only_when_every_host_is_this_machine(deployment: Deployment) -> None:
    engine = FakeEngine()
    assert isinstance(executor_for(deployment, "auto", engine=engine), LocalExecutor)
    assert isinstance(executor_for(deployment, "ansible"), AnsibleExecutor)
    remote = parse_inventory("[control]\nlocalhost ansible_connection=local\n[compute]\ncmp1 ansible_host=10.0.0.5\n",
                             "site/inventory")
    mixed = Deployment(deployment.site, remote, deployment.desired, deployment.state_dir)
    assert isinstance(executor_for(mixed, "auto"), AnsibleExecutor)
    with pytest.raises(MortarError, match="host cmp1 is not this machine") as info:
        executor_for(mixed, "local", engine=engine)
    assert "--executor ansible" in str(info.value) and "site/inventory" in str(info.value)


@pytest.mark.parametrize("choice", ["auto", "local", "ansible"])
def test_this_machine_under_two_names_is_refused(site_dir: Path, tmp_path: Path, choice: str) -> None:
    (site_dir / "inventory").write_text(
        "[control]\nctl1 ansible_connection=local api_address=127.0.0.2\n[network]\nctl1\n"
        "[compute]\ncmp1 ansible_connection=local api_address=127.0.0.3\n[storage]\n[monitoring]\n")
    deployment = load_deployment(site_dir, state_dir=tmp_path)
    with pytest.raises(MortarError, match="hosts ctl1 and cmp1 are both this machine") as info:
        executor_for(deployment, choice, engine=FakeEngine())
    assert "name this machine once" in str(info.value) and str(site_dir / "inventory") in str(info.value)


def test_limit_narrows_targets_but_not_the_desired_state(site_dir: Path, tmp_path: Path) -> None:
    from mortar.site.samples import INVENTORY_MULTINODE

    (site_dir / "inventory").write_text(INVENTORY_MULTINODE)
    whole = load_deployment(site_dir, state_dir=tmp_path)
    assert whole.targets == ["ctl1", "cmp1", "cmp2"]
    limited = load_deployment(site_dir, limit="compute:!cmp1", state_dir=tmp_path)
    assert limited.targets == ["cmp2"]
    assert limited.desired.hosts["cmp2"].containers() == whole.desired.hosts["cmp2"].containers()
    assert list(limited.desired.hosts) == list(whole.desired.hosts)
    with pytest.raises(MortarError, match="matches no host"):
        load_deployment(site_dir, limit="storage", state_dir=tmp_path)


def test_kolla_style_child_groups_place_services_on_network_hosts(site_dir: Path, tmp_path: Path) -> None:
    (site_dir / "inventory").write_text(
        "[control]\nctl1 ansible_host=10.0.0.11 api_address=10.0.0.11\n"
        "[network]\nnet1 ansible_host=10.0.0.31 api_address=10.0.0.31\n"
        "[compute]\ncmp1 ansible_host=10.0.0.21\ncmp2 ansible_host=10.0.0.22\n"
        "[storage]\n[monitoring]\n"
        "[neutron-server:children]\nnetwork\n[ovn:children]\nnetwork\n")
    desired = load_deployment(site_dir, state_dir=tmp_path).desired
    # net1 is a network host anyway (a switch and OVN's gateway controller); the child groups bring
    # neutron-server and central OVN there too.
    assert sorted(c.name for c in desired.hosts["net1"].containers()) == [
        "neutron_server", "openvswitch_db", "openvswitch_vswitchd", "ovn_controller", "ovn_nb_db", "ovn_northd",
        "ovn_sb_db"]
    ctl1 = desired.hosts["ctl1"]
    assert not [c.name for c in ctl1.containers() if c.service in ("neutron", "ovn")]
    # the database server makes neutron's database where it runs
    assert [j.name for j in ctl1.services["neutron"].jobs] == ["neutron.database"] and "ovn" not in ctl1.services
    assert {"mariadb", "keystone", "nova"} <= set(desired.hosts["ctl1"].services)
    # Compute hosts keep their data plane: [ovn] is where central OVN goes, and each compute host
    # still needs its own controller (its chassis) for guests' ports to bind there.
    assert [c.name for c in desired.hosts["cmp2"].containers()] == [
        "openvswitch_db", "openvswitch_vswitchd", "ovn_controller", "nova_compute", "nova_libvirt",
        "neutron_ovn_metadata_agent"]
    neutron_files = "\n".join(f.content for c in desired.hosts["net1"].containers() if c.name == "neutron_server"
                              for f in c.files)
    assert "10.0.0.31:6641" in neutron_files


def test_each_executor_ships_its_own_desired_state_before_it_runs(site_dir: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """An upgrade runs the running series' before_upgrade jobs through one executor and the next
    series' checks and deploy through another, on the same hosts and the same desired.json: each
    must ship its own states again rather than run the steps against the other's."""
    from mortar.deploy.executors.ansible import AnsibleExecutor, AnsibleRun
    from mortar.site.samples import INVENTORY_MULTINODE

    (site_dir / "inventory").write_text(INVENTORY_MULTINODE)
    monkeypatch.setattr(AnsibleExecutor, "shipped", {})
    plays: list[tuple[str, bool]] = []

    def fake_run(self, play, hosts, extravars, progress, label):
        synced = any(t["name"] == "sync: desired state" for t in play[0]["tasks"])
        shipped = (self.states_dir / "cmp1.json").read_text() if synced else ""
        plays.append((self.deployment.site.release, synced, shipped))
        return AnsibleRun(None, self.known_hosts)

    monkeypatch.setattr(AnsibleExecutor, "_run", fake_run)
    new = AnsibleExecutor(load_deployment(site_dir, state_dir=tmp_path, release="2026.2"))
    old = AnsibleExecutor(load_deployment(site_dir, state_dir=tmp_path, release="2026.1"))
    request = {"cmp1": StepRequest()}
    new.run(["prechecks"], request)
    new.run(["plan"], request)
    old.run(["checks"], request)
    new.run(["checks"], request)
    old.run(["plan"], dict(request))
    assert [(release, synced) for release, synced, _ in plays] == [
        ("2026.2", True), ("2026.2", False), ("2026.1", True), ("2026.2", True), ("2026.1", True)]
    assert "nova-compute:2026.2" in plays[3][2] and "nova-compute:2026.1" in plays[2][2]
