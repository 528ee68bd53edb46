"""Converging one host (mortar/agent/converge.py, facts.py): facts -> actions with reasons -> apply,
against the in-memory engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from mortar.agent import converge, steps
from mortar.agent import facts as F
from mortar.agent import health as H
from mortar.agent.errors import StepError
from mortar.agent.masking import MASK
from mortar.agent.wire import HostState, StepRequest
from mortar.engine.protocol import ImageInfo, RunSpec
from mortar.errors import EngineError, MortarError
from tests.unit.agent.conftest import IMAGE, SECRET, SITE, converge_all, demo_conf, demo_host, kinds, plan
from tests.unit.fakeengine import FakeEngine, new_id

PIN = "sha256:" + "c" * 64


def test_an_empty_engine_plans_volumes_and_creates(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    actions = plan(engine, host, state_dir)
    assert kinds(actions) == [("volume", "demo_data"), ("create", "demo_web")]
    assert [a.reasons for a in actions] == [["missing"], ["not running"]]
    assert all(a.host == "h1" and a.service == "demo" for a in actions)
    assert engine.changes() == [], "planning changes nothing"


def test_after_converge_the_plan_is_empty(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    said = converge_all(engine, host, state_dir)
    assert said[0] == "create demo_web" and said[1].startswith("demo_web healthy")
    web = engine.containers_by_name["demo_web"]
    assert web.info.status == "running"
    assert web.info.labels[F.SITE] == SITE and web.info.labels[F.HASH] == host.containers()[0].config_hash
    assert engine.volumes_by_name["demo_data"].labels[F.DATA_ID]
    # the rendered files sit in a root-only directory the container mounts read-only
    files = converge.config_dir(state_dir, "demo_web")
    assert (files / "demo.conf").read_text() == demo_conf()
    assert (files / "demo.conf").stat().st_mode & 0o777 == 0o600
    assert files.stat().st_mode & 0o777 == 0o700
    assert SECRET not in json_of(web.spec), "secrets never reach the engine's view of a container"
    assert plan(engine, host, state_dir) == []


def json_of(spec: RunSpec) -> str:
    import dataclasses
    import json

    return json.dumps(dataclasses.asdict(spec))


def test_the_whole_desired_state_of_a_host_plans_every_volume_and_container(deployment, state_dir: Path) -> None:
    host = deployment.desired.hosts["localhost"]
    engine = FakeEngine()
    for ref in host.images():
        engine.add_image(ref)
    actions = plan(engine, host, state_dir)
    volumes = [v for s in host.services.values() for v in s.volumes]
    assert sorted(a.target for a in actions if a.kind == "volume") == sorted(volumes)
    assert sorted(a.target for a in actions if a.kind == "create") == sorted(c.name for c in host.containers())
    assert {a.kind for a in actions} == {"volume", "create"}
    converge_all(engine, host, state_dir)
    assert plan(engine, host, state_dir) == []


def test_a_changed_file_recreates_with_the_file_named_and_a_masked_diff(engine: FakeEngine, state_dir: Path) -> None:
    converge_all(engine, demo_host(), state_dir)
    new_secret = "N3w-s3cret-pw"
    changed = demo_host(demo_conf(password=new_secret, workers=4), secrets=[new_secret])
    (action,) = plan(engine, changed, state_dir)
    assert (action.kind, action.target) == ("recreate", "demo_web")
    assert action.reasons == ["demo.conf changed"]
    assert "-workers = 2" in action.diff and "+workers = 4" in action.diff
    # the running file's password is no longer a known secret: masked all the same
    assert SECRET not in action.diff and new_secret not in action.diff
    assert f"-password = {MASK}" in action.diff and f"+password = {MASK}" in action.diff
    assert f"-connection = mysql+pymysql://demo:{MASK}@db/demo" in action.diff
    old_id = engine.containers_by_name["demo_web"].info.id
    converge_all(engine, changed, state_dir)
    assert engine.containers_by_name["demo_web"].info.id != old_id
    assert ("stop", "demo_web") in engine.calls, "a clean stop before the removal"
    assert plan(engine, changed, state_dir) == []


def test_a_changed_definition_names_the_field(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    host.containers()[0].command = ["demo-web", "--workers", "4"]
    (action,) = plan(engine, host, state_dir)
    assert action.kind == "recreate" and action.reasons == ["command changed"] and action.diff == ""


def test_a_changed_image_recreates(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    engine.add_image(IMAGE)  # the same reference, a new image
    (action,) = plan(engine, host, state_dir)
    assert action.kind == "recreate" and action.reasons == [f"image {IMAGE} changed"]


def test_a_new_image_name_for_the_same_image_changes_nothing(engine: FakeEngine, host: HostState,
                                                             state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    (web,) = host.containers()
    same = engine.images_by_ref[web.image]
    web.image = "mortar/demo:2026.3"  # the next series' tag of the same infrastructure image
    engine.tag(same.id, web.image)
    assert plan(engine, host, state_dir) == []
    web.image = "mortar/demo:2027.1"  # not on the host yet: pulled, then run
    (pull, recreate) = plan(engine, host, state_dir)
    assert (pull.kind, recreate.kind) == ("pull", "recreate")
    assert recreate.reasons == ["image mortar/demo:2027.1 is to be pulled"]


def test_a_stopped_container_is_started(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    engine.containers_by_name["demo_web"].info.status = "exited"
    (action,) = plan(engine, host, state_dir)
    assert (action.kind, action.reasons) == ("start", ["container is exited"])
    old_id = engine.containers_by_name["demo_web"].info.id
    converge_all(engine, host, state_dir)
    assert engine.containers_by_name["demo_web"].info.id == old_id, "started, not recreated"
    assert plan(engine, host, state_dir) == []


def test_running_but_unhealthy_is_restarted_with_the_probe_output(engine: FakeEngine, host: HostState,
                                                                  state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    web = engine.containers_by_name["demo_web"].info
    web.health, web.health_output = "unhealthy", "connection refused\n"
    engine.health["demo_web"] = (1, f"probing\nHTTP 503 from http://demo:{SECRET}@127.0.0.1:80\n")
    (action,) = plan(engine, host, state_dir)
    assert action.kind == "restart"
    (reason,) = action.reasons
    assert reason.startswith("running but unhealthy (HTTP 503") and SECRET not in reason, "the probe made now"
    engine.on_call = lambda operation, target: operation == "restart" and engine.health.pop(target, None)
    converge_all(engine, host, state_dir)
    assert engine.containers_by_name["demo_web"].restarts == 1
    assert plan(engine, host, state_dir) == []


def test_a_container_still_starting_is_waited_for_not_restarted(engine: FakeEngine, host: HostState,
                                                                state_dir: Path) -> None:
    """A host that came back: the engine restarted its containers, which do not serve yet."""
    converge_all(engine, host, state_dir)
    web = engine.containers_by_name["demo_web"]
    web.info.health = "starting"
    engine.health["demo_web"] = (1, "connection refused")
    (action,) = plan(engine, host, state_dir)
    assert (action.kind, action.reasons) == ("wait", ["running, its healthcheck has not passed yet"])
    probes = []

    def serving_on_the_third_probe(operation: str, target: str) -> None:
        if operation == "exec" and target == "demo_web":
            probes.append(target)
            if len(probes) >= 3:
                engine.health.pop("demo_web", None)

    engine.on_call = serving_on_the_third_probe
    before = len(engine.calls)
    said = converge_all(engine, host, state_dir)
    assert web.restarts == 0 and not {("start", "demo_web"), ("stop", "demo_web")} & set(engine.calls[before:])
    assert any(line.startswith("wait for demo_web") for line in said), said
    assert len(probes) >= 3, "waited until the probe passed"
    web.info.health = "starting"  # and one that serves by the time it is looked at is left alone
    assert plan(engine, host, state_dir) == []


def test_unhealthy_in_the_engine_but_serving_now_is_left_running(engine: FakeEngine, host: HostState,
                                                                   state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    web = engine.containers_by_name["demo_web"]
    web.info.health, web.info.health_output = "unhealthy", "timed out (while the cache it uses was frozen)"
    assert plan(engine, host, state_dir) == [], "the engine's status is stale: the probe passes now"
    assert ("exec", "demo_web") in engine.calls
    converge_all(engine, host, state_dir)
    assert web.restarts == 0


def test_a_container_that_does_not_serve_in_time_is_a_timeout(engine: FakeEngine, host: HostState,
                                                             state_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr("mortar.agent.health.POLL", 0.01)
    host.health_timeout = 0.1
    engine.health["demo_web"] = (1, f"refused, password {SECRET}")
    with pytest.raises(StepError) as info:
        converge_all(engine, host, state_dir)
    assert info.value.kind == "timeout" and info.value.target == "demo_web"
    assert "does not serve" in info.value.message and SECRET not in info.value.message


def test_a_slow_start_is_probed_at_growing_intervals(engine: FakeEngine, host: HostState, state_dir: Path,
                                                    monkeypatch) -> None:
    """Each probe is an exec in the container: the waits between them grow by half, up to
    SLOWEST times the first, and the container is seen serving at the first probe that passes."""
    waits: list[float] = []
    monkeypatch.setattr("mortar.agent.health.time.sleep", waits.append)
    engine.health["demo_web"] = (1, "not yet")
    probes = []

    def serves_at_the_tenth(operation: str, target: str) -> None:
        if operation == "exec" and target == "demo_web":
            probes.append(target)
            if len(probes) == 10:
                engine.health["demo_web"] = (0, "healthy")

    engine.on_call = serves_at_the_tenth
    converge_all(engine, host, state_dir)
    assert len(probes) == 10 and len(waits) == 9, waits
    assert waits[:3] == [H.POLL, H.POLL * 1.5, H.POLL * 2.25]
    assert waits == sorted(waits)
    assert max(waits) == H.POLL * H.SLOWEST


def test_a_container_the_engine_keeps_restarting_is_named_a_crash_loop(engine: FakeEngine, host: HostState,
                                                                       state_dir: Path, monkeypatch) -> None:
    """Between two runs the engine shows a running container with code 0: the failure says it
    keeps exiting, not that it exited with code 0."""
    monkeypatch.setattr("mortar.agent.health.POLL", 0.01)
    engine.health["demo_web"] = (1, "not yet")

    def crash(operation: str, target: str) -> None:
        if operation == "exec" and target == "demo_web":
            engine.containers_by_name["demo_web"].info.restart_count += 1

    engine.on_call = crash
    with pytest.raises(StepError) as info:
        converge_all(engine, host, state_dir)
    assert info.value.target == "demo_web" and "keeps exiting" in info.value.message, info.value.message
    assert "code 0" not in info.value.message


def site_container(engine: FakeEngine, name: str, site: str = SITE, purpose: str = "", status: str = "") -> None:
    labels = {F.MANAGED: "1", F.SITE: site, F.SERVICE: "old"}
    if purpose:
        labels[F.PURPOSE] = purpose
    engine.create(RunSpec(name=name, image=IMAGE, labels=labels))
    if status:
        engine.containers_by_name[name].info.status = status


def test_a_container_no_longer_desired_is_removed(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    site_container(engine, "old_api")
    engine.create(RunSpec(name="not_mortars", image=IMAGE))  # no mortar labels: never touched
    (action,) = plan(engine, host, state_dir)
    assert (action.kind, action.target, action.service, action.reasons) == (
        "remove", "old_api", "old", ["no longer in the desired state"])
    report = steps.dispatch("prepare", StepRequest(), host, state_dir, state_dir / "log", lambda: engine)
    assert report.failure is None and report.lines == ["removed old_api"]
    assert "old_api" not in engine.containers_by_name and "not_mortars" in engine.containers_by_name
    assert plan(engine, host, state_dir) == []


def test_a_leftover_job_container_is_removed(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    site_container(engine, "mortar_job_demo_db_sync", purpose="job", status="exited")
    (action,) = plan(engine, host, state_dir)
    assert (action.kind, action.target) == ("remove", "mortar_job_demo_db_sync")
    assert action.reasons == ["job container left by an interrupted run (exited)"]
    report = steps.dispatch("prepare", StepRequest(), host, state_dir, state_dir / "log", lambda: engine)
    assert report.failure is None
    assert "mortar_job_demo_db_sync" not in engine.containers_by_name


def test_a_leftover_job_still_running_is_waited_for(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    site_container(engine, "mortar_job_demo_db_sync", purpose="job", status="running")
    report = steps.dispatch("prepare", StepRequest(), host, state_dir, state_dir / "log", lambda: engine)
    assert report.failure is None
    assert engine.calls.index(("wait", "mortar_job_demo_db_sync")) < \
        engine.calls.index(("remove", "mortar_job_demo_db_sync"))


def test_a_pinned_digest_the_local_image_lacks_is_pulled(engine: FakeEngine, host: HostState,
                                                        state_dir: Path) -> None:
    host.image_pins = {IMAGE: PIN}
    pulls = [a for a in plan(engine, host, state_dir) if a.kind == "pull"]
    assert [(a.target, a.reasons) for a in pulls] == [(IMAGE, [f"local image is not the one pushed ({PIN[:19]}…)"])]
    repository = IMAGE.rsplit(":", 1)[0]
    pushed = ImageInfo(new_id(), [], {}, [f"{repository}@{PIN}"])
    engine.registry[f"{repository}@{PIN}"] = pushed
    report = steps.dispatch("prepare", StepRequest(), host, state_dir, state_dir / "log", lambda: engine)
    assert report.failure is None
    assert ("pull", f"{repository}@{PIN}") in engine.calls and ("tag", IMAGE) in engine.calls
    assert engine.image(IMAGE) is pushed
    assert not [a for a in plan(engine, host, state_dir) if a.kind == "pull"]


def test_an_image_that_cannot_be_pulled_says_how_to_get_it(engine: FakeEngine, host: HostState,
                                                           state_dir: Path) -> None:
    engine.images_by_ref.clear()
    (pull,) = [a for a in plan(engine, host, state_dir) if a.kind == "pull"]
    assert pull.reasons == ["image not on the host"]
    report = steps.dispatch("prepare", StepRequest(), host, state_dir, state_dir / "log", lambda: engine)
    assert report.failure is not None and report.failure.target == IMAGE
    assert "cannot be pulled" in report.failure.message and "mortar build --push" in report.failure.fix


def test_a_removal_that_fails_is_a_failure_never_removed(engine: FakeEngine, host: HostState,
                                                         state_dir: Path) -> None:
    converge_all(engine, host, state_dir)
    site_container(engine, "old_api")
    engine.fail["remove"] = EngineError("remove container old_api: device or resource busy")
    with pytest.raises(StepError, match="could not remove container old_api"):
        converge.remove_container(engine, "old_api", "old")
    report = steps.dispatch("prepare", StepRequest(), host, state_dir, state_dir / "log", lambda: engine)
    assert report.failure is not None
    assert report.failure.target == "old_api" and "device or resource busy" in report.failure.message
    assert "docker rm -f old_api" in report.failure.fix
    assert not any("removed" in line for line in report.lines)


def test_a_removal_the_engine_ignored_is_a_failure(engine: FakeEngine, host: HostState, state_dir: Path,
                                                   monkeypatch) -> None:
    site_container(engine, "old_api")
    monkeypatch.setattr(engine, "remove", lambda name: True)  # says yes, keeps it
    with pytest.raises(StepError, match="still there after its removal"):
        converge.remove_container(engine, "old_api", "old")


def test_another_sites_container_is_refused(engine: FakeEngine, host: HostState, state_dir: Path) -> None:
    site_container(engine, "keystone", site="site-b")
    with pytest.raises(MortarError, match=r"another mortar deployment \(site site-b\)"):
        F.gather(engine, host, state_dir)
    for step in ("plan", "prepare", "containers"):
        report = steps.dispatch(step, StepRequest(services=["demo"]), host, state_dir, state_dir / "log",
                                lambda: engine)
        assert report.failure is not None and "site site-b" in report.failure.message, step
        assert report.failure.fix
    assert "keystone" in engine.containers_by_name
    assert [c for c in engine.changes() if c[0] != "create" or c[1] != "keystone"] == []


class Pauses:
    """converge's `time`: a pause is recorded among the engine's calls, and costs nothing."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def sleep(self, seconds: float) -> None:
        self.engine.calls.append(("sleep", str(seconds)))


def test_a_restart_behind_the_load_balancer_stays_stopped_until_it_is_taken_out(
        engine: FakeEngine, host: HostState, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    converge_all(engine, host, state_dir)
    (web,) = host.containers()
    web.drain = 6
    monkeypatch.setattr(converge, "time", Pauses(engine))
    engine.containers_by_name["demo_web"].info.health = "unhealthy"
    engine.health["demo_web"] = (1, "HTTP 503\n")
    (action,) = plan(engine, host, state_dir)
    assert action.kind == "restart"
    engine.on_call = lambda operation, target: operation == "start" and engine.health.pop(target, None)
    engine.calls.clear()
    said = converge_all(engine, host, state_dir)
    # Stopped, held 6 s (every load balancer's checks fail it), started, healthy, then 6 s more
    # (their checks pass it again) before the next host's turn.
    assert [c for c in engine.calls if c[0] in ("stop", "sleep", "start", "restart")] == [
        ("stop", "demo_web"), ("sleep", "6"), ("start", "demo_web"), ("sleep", "6")]
    assert "demo_web held stopped 6s (the load balancers take it out first)" in said
    assert plan(engine, host, state_dir) == []


def test_a_recreate_behind_the_load_balancer_is_held_stopped_and_a_first_create_is_not(
        engine: FakeEngine, host: HostState, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (web,) = host.containers()
    web.drain = 6
    monkeypatch.setattr(converge, "time", Pauses(engine))
    converge_all(engine, host, state_dir)
    assert not [c for c in engine.calls if c[0] == "sleep"], "nothing to take out on a first create"
    web.command = ["demo-web", "--workers", "4"]
    engine.calls.clear()
    converge_all(engine, host, state_dir)
    calls = [c[0] for c in engine.calls if c[0] in ("stop", "remove", "sleep", "create", "start")]
    assert calls[:1] == ["stop"] and calls[-4:] == ["sleep", "create", "start", "sleep"], calls


def test_without_a_load_balancer_a_restart_is_the_engines_restart(
        engine: FakeEngine, host: HostState, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    converge_all(engine, host, state_dir)
    monkeypatch.setattr(converge, "time", Pauses(engine))
    engine.containers_by_name["demo_web"].info.health = "unhealthy"
    engine.health["demo_web"] = (1, "HTTP 503\n")
    engine.on_call = lambda operation, target: operation == "restart" and engine.health.pop(target, None)
    engine.calls.clear()
    converge_all(engine, host, state_dir)
    assert [c for c in engine.calls if c[0] in ("stop", "sleep", "start", "restart")] == [("restart", "demo_web")]
