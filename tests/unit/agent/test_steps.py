"""The one step registry (mortar/agent/steps.py): every step dispatches through it, and every expected
failure inside a step comes back as report.failure with a fix, never as an exception."""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from mortar.agent import steps
from mortar.agent.errors import StepError
from mortar.agent.steps import STEPS, StepContext, StepDef
from mortar.agent.wire import WIRE_VERSION, HostState, StepReport, StepRequest
from mortar.engine.protocol import EngineTimeout
from mortar.errors import EngineError, MortarError
from tests.unit.agent.conftest import IMAGE, converge_all
from tests.unit.fakeengine import FakeEngine

KNOWN = {"plan", "prepare", "provision", "before", "containers", "after", "pull", "stop", "destroy", "prechecks",
         "engine", "checks"}


def dispatch(name: str, host: HostState, engine: FakeEngine, state_dir: Path, request: StepRequest | None = None,
             said: list[str] | None = None) -> StepReport:
    return steps.dispatch(name, request or StepRequest(services=list(host.services), jobs=["demo.db_sync"]), host,
                          state_dir, state_dir.parent / "log", lambda: engine,
                          said.append if said is not None else None)


def test_the_registry_holds_every_step_both_executors_use() -> None:
    assert set(STEPS) == KNOWN
    assert set(steps.APPLY_PHASES) <= set(STEPS)
    assert {n for n, d in STEPS.items() if not d.mutating} == {"plan", "prechecks"}
    assert all(d.help for d in STEPS.values())


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_every_step_name_dispatches_through_the_registry(name: str, host: HostState, engine: FakeEngine,
                                                        state_dir: Path, monkeypatch) -> None:
    seen: list[StepContext] = []

    def run(ctx: StepContext) -> None:
        seen.append(ctx)
        ctx.progress("ran")

    monkeypatch.setitem(STEPS, name, StepDef(name, run, STEPS[name].mutating, STEPS[name].help))
    said: list[str] = []
    report = dispatch(name, host, engine, state_dir, said=said)
    assert len(seen) == 1 and seen[0].host is host and seen[0].engine is engine
    assert (report.host, report.step, report.failure, report.changed) == ("h1", name, None, True)
    assert report.lines == said == ["ran"]
    assert (state_dir / "agent.lock").exists() == STEPS[name].mutating


def test_the_real_steps_run_against_the_engine(host: HostState, engine: FakeEngine, state_dir: Path) -> None:
    engine.registry[IMAGE] = engine.images_by_ref[IMAGE]
    reports = {name: dispatch(name, host, engine, state_dir)
               for name in ("plan", "prepare", "provision", "before", "containers", "after")}
    assert {n: r.failure for n, r in reports.items()} == dict.fromkeys(reports)
    assert [(a.kind, a.target) for a in reports["plan"].actions] == [("volume", "demo_data"), ("create", "demo_web")]
    assert reports["before"].lines[0] == "demo: job db_sync" and reports["before"].volumes["demo_data"]
    assert "demo_web" in engine.containers_by_name and not reports["after"].changed
    again = dispatch("plan", host, engine, state_dir)
    assert again.actions == [] and set(again.job_records) == {"demo.db_sync"}
    assert again.image_ids == {IMAGE: engine.images_by_ref[IMAGE].id}
    assert again.volumes["demo_data"] == reports["before"].volumes["demo_data"]
    pull = dispatch("pull", host, engine, state_dir)
    assert pull.failure is None and pull.lines[0].startswith("1 image(s) checked, 0 new or updated")
    stop = dispatch("stop", host, engine, state_dir)
    assert stop.lines == ["stopped demo_web"] and engine.containers_by_name["demo_web"].info.status == "exited"
    destroy = dispatch("destroy", host, engine, state_dir)
    assert destroy.failure is None
    assert not engine.containers_by_name and not engine.volumes_by_name
    assert not (state_dir / "config").exists() and not (state_dir / "records.json").exists()


def test_prechecks_report_checks_not_failures(host: HostState, engine: FakeEngine, state_dir: Path) -> None:
    report = dispatch("prechecks", host, engine, state_dir)
    assert report.failure is None
    assert report.checks[0].ok and "container engine reachable" in report.checks[0].what
    engine.fail["ping"] = EngineError("no engine")
    down = dispatch("prechecks", host, engine, state_dir)
    assert [c.ok for c in down.checks] == [False] and "bootstrap-servers" in down.checks[0].fix


def test_prechecks_refuse_a_virtual_address_outside_the_hosts_networks(host: HostState, engine: FakeEngine,
                                                                        state_dir: Path, monkeypatch) -> None:
    import ipaddress

    monkeypatch.setattr("mortar.agent.hostchecks.interface_networks",
                        lambda: [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/24")])
    host.virtual_addresses = ["10.0.0.10", "192.0.2.9"]
    check = next(c for c in dispatch("prechecks", host, engine, state_dir).checks if "virtual address" in c.what)
    assert not check.ok and "not so: 192.0.2.9" in check.what and "internal_vip_address" in check.fix
    host.virtual_addresses = ["10.0.0.10"]
    check = next(c for c in dispatch("prechecks", host, engine, state_dir).checks if "virtual address" in c.what)
    assert check.ok, check.what


def test_prechecks_ask_whether_each_name_of_the_site_resolves_to_its_address_only(
        host: HostState, engine: FakeEngine, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"one.example.net": ["10.0.0.10"], "two.example.net": ["10.0.0.10", "10.0.0.99"]}

    def getaddrinfo(name, *args, **kwargs):
        if name not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in answers[name]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    host.names = {"one.example.net": "10.0.0.10", "two.example.net": "10.0.0.10", "none.example.net": "10.0.0.10"}
    checks = {c.what.split(":")[1].split()[0]: c for c in dispatch("prechecks", host, engine, state_dir).checks
              if "resolves" in c.what}
    assert checks["one.example.net"].ok
    assert not checks["two.example.net"].ok and "it resolves to 10.0.0.10, 10.0.0.99" in checks["two.example.net"].what
    assert not checks["none.example.net"].ok and "does not resolve" in checks["none.example.net"].what
    assert "`10.0.0.10 none.example.net` to /etc/hosts" in checks["none.example.net"].fix


def test_an_unknown_step_is_a_failure_naming_the_known_ones(host: HostState, engine: FakeEngine,
                                                            state_dir: Path) -> None:
    report = dispatch("upgrade", host, engine, state_dir)
    assert report.failure is not None
    assert report.failure.message.startswith("unknown step 'upgrade' (this agent knows: after, before,")
    assert "same mortar version" in report.failure.fix
    assert engine.calls == []


def test_another_wire_version_is_a_failure(host: HostState, engine: FakeEngine, state_dir: Path) -> None:
    request = StepRequest(version=WIRE_VERSION + 1)
    report = dispatch("plan", host, engine, state_dir, request)
    assert report.failure is not None and "wire version" in report.failure.message
    assert engine.calls == []


def raising(exc: BaseException):
    def run(ctx: StepContext) -> None:
        ctx.progress("started")
        raise exc

    return run


def json_error() -> json.JSONDecodeError:
    try:
        json.loads("{")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError


@pytest.mark.parametrize(("exc", "kind", "message", "fix"), [
    (PermissionError(13, "Permission denied", "/var/lib/mortar/config"), "permanent",
     "permission denied: /var/lib/mortar/config", "run mortar as root"),
    (json_error(), "permanent", "a state file is not valid JSON", "move the file aside"),
    (EngineTimeout("wait for container demo_web: the engine did not answer in time"), "timeout",
     "the engine did not answer in time", "check the engine"),
    (EngineError("create container demo_web: conflict"), "temporary", "conflict", "docker info"),
    (MortarError("records.json is corrupt", fix="move it aside"), "permanent", "corrupt", "move it aside"),
    (StepError("job demo.db_sync failed (exit 1)", service="demo", target="demo.db_sync", fix="see the log"),
     "permanent", "exit 1", "see the log"),
    (OSError(28, "No space left on device", "/var/lib/mortar/jobs"), "temporary", "No space left", "disk"),
], ids=["permission", "json", "engine-timeout", "engine", "mortar", "step", "oserror"])
def test_expected_errors_inside_a_step_become_a_failure_with_a_fix(exc, kind, message, fix, host, engine, state_dir,
                                                                   monkeypatch) -> None:
    monkeypatch.setitem(STEPS, "boom", StepDef("boom", raising(exc), True, "raises"))
    report = dispatch("boom", host, engine, state_dir)
    failure = report.failure
    assert failure is not None
    assert (failure.host, failure.step, failure.kind) == ("h1", "boom", kind)
    assert message in failure.message and fix in failure.fix
    assert report.lines == ["started"]
    assert report.summary().startswith("FAILED: ")


def test_a_bug_in_a_step_keeps_its_traceback(host: HostState, engine: FakeEngine, state_dir: Path,
                                             monkeypatch) -> None:
    monkeypatch.setitem(STEPS, "boom", StepDef("boom", raising(KeyError("services")), True, "raises"))
    with pytest.raises(KeyError):
        dispatch("boom", host, engine, state_dir)


def test_a_corrupt_record_file_is_a_failure(host: HostState, engine: FakeEngine, state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "records.json").write_text("{\"jobs\": ")
    report = dispatch("plan", host, engine, state_dir)
    assert report.failure is not None
    assert "record file is corrupt" in report.failure.message and str(state_dir / "records.json") in \
        report.failure.message
    assert "move it aside" in report.failure.fix


def test_a_second_mutating_step_waits_for_the_host_lock(host: HostState, engine: FakeEngine, state_dir: Path,
                                                        monkeypatch) -> None:
    monkeypatch.setattr(steps, "host_lock", functools.partial(steps.host_lock, wait=0.3))
    with steps.host_lock(state_dir):
        started = time.monotonic()
        report = dispatch("containers", host, engine, state_dir)
        assert time.monotonic() - started >= 0.3
        assert report.failure is not None and report.failure.kind == "temporary"
        assert report.failure.message.startswith("another mortar step has held this host")
        assert "wait for the other mortar command" in report.failure.fix
        assert engine.changes() == []
        # observing needs no lock
        assert dispatch("plan", host, engine, state_dir).failure is None


def test_the_host_lock_is_taken_once_the_other_step_ends(host: HostState, engine: FakeEngine, state_dir: Path,
                                                         monkeypatch) -> None:
    monkeypatch.setattr(steps, "host_lock", functools.partial(steps.host_lock, wait=5))
    held, release = threading.Event(), threading.Event()

    def other() -> None:
        with steps.host_lock(state_dir):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    report = dispatch("containers", host, engine, state_dir)
    thread.join()
    assert report.failure is None and time.monotonic() - started >= 0.3
    assert "demo_web" in engine.containers_by_name


def test_the_host_lock_is_released_after_a_failure(host: HostState, engine: FakeEngine, state_dir: Path,
                                                   monkeypatch) -> None:
    monkeypatch.setitem(STEPS, "boom", StepDef("boom", raising(EngineError("down")), True, "raises"))
    assert dispatch("boom", host, engine, state_dir).failure is not None
    with steps.host_lock(state_dir, wait=0):
        pass
    converge_all(engine, host, state_dir)


def test_destroy_runs_each_teardown_in_its_running_container_first(host: HostState, engine: FakeEngine,
                                                                   state_dir: Path) -> None:
    import dataclasses

    engine.registry[IMAGE] = engine.images_by_ref[IMAGE]
    for name in ("plan", "prepare", "provision", "before", "containers", "after"):
        assert dispatch(name, host, engine, state_dir).failure is None
    service = host.services["demo"]
    web = next(c for c in service.containers if c.name == "demo_web")
    before = web.config_hash
    torn = dataclasses.replace(web, teardown="ip link del demo-ext")
    # A teardown only runs at destroy: adding one recreates nothing.
    assert torn.config_hash == before
    service.containers[service.containers.index(web)] = torn
    engine.health["demo_web"] = (1, "Cannot find device \"demo-ext\"\n")
    engine.calls.clear()
    report = dispatch("destroy", host, engine, state_dir)
    assert report.failure is None  # a failed teardown is said, and the destroy goes on
    assert report.lines[0] == 'teardown demo_web failed (exit 1): Cannot find device "demo-ext"'
    assert engine.calls.index(("exec", "demo_web")) < engine.calls.index(("remove", "demo_web"))
    assert not engine.containers_by_name
