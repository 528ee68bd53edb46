"""One-shot jobs (mortar/agent/jobs.py): when a job must run, and running it bounded, masked and
logged, against the in-memory engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mortar.agent import jobs
from mortar.agent.errors import StepError
from mortar.agent.masking import MASK
from mortar.agent.wire import OUTPUT_MOUNT, HostState, Job
from mortar.engine.protocol import Mount
from tests.unit.agent.conftest import SECRET, Clock
from tests.unit.fakeengine import FakeEngine

NAME = "mortar_job_demo_db_sync"
DATA = "h1/demo_data"


@pytest.fixture
def job(host: HostState) -> Job:
    return host.jobs()[0]


def record(job: Job, image: str = "sha256:1", data: str = "d1") -> dict:
    return {"inputs": job.inputs, "image": image, "data": {DATA: data}}


# ---- job_reasons -----------------------------------------------------------------------------

def test_a_job_that_never_ran_must_run(job: Job) -> None:
    assert jobs.job_reasons(job, None, "sha256:1", {DATA: "d1"}) == ["never ran"]
    assert jobs.job_reasons(dataclasses.replace(job, run="once"), None, None, {}) == ["never ran"]


def test_a_job_recorded_with_these_inputs_image_and_data_need_not_run(job: Job) -> None:
    assert jobs.job_reasons(job, record(job), "sha256:1", {DATA: "d1"}) == []


def test_changed_inputs_rerun_the_job(job: Job) -> None:
    assert job.spec is not None
    changed = dataclasses.replace(job, spec=dataclasses.replace(job.spec, command=["demo-manage", "upgrade"]))
    assert jobs.job_reasons(changed, record(job), "sha256:1", {DATA: "d1"}) == ["its definition or files changed"]
    longer = dataclasses.replace(job, timeout=job.timeout + 1)
    assert jobs.job_reasons(longer, record(job), "sha256:1", {DATA: "d1"}) == ["its definition or files changed"]


def test_a_changed_image_reruns_the_job(job: Job) -> None:
    assert jobs.job_reasons(job, record(job), "sha256:2", {DATA: "d1"}) == ["its image changed"]
    assert jobs.job_reasons(job, record(job), None, {DATA: "d1"}) == ["its image is not on the host yet"]


def test_new_data_reruns_even_a_run_once_job(job: Job) -> None:
    assert jobs.job_reasons(job, record(job), "sha256:1", {DATA: "d2"}) == ["demo_data is new data"]
    once = dataclasses.replace(job, run="once")
    assert jobs.job_reasons(once, record(once), "sha256:1", {DATA: "d2"}) == ["demo_data is new data"]
    assert jobs.job_reasons(once, record(once), "sha256:1", {DATA: None}) == ["demo_data is not created yet"]


def test_run_once_ignores_inputs_and_image(job: Job) -> None:
    once = dataclasses.replace(job, run="once")
    assert jobs.job_reasons(once, {"inputs": "old", "image": "sha256:0", "data": {DATA: "d1"}}, "sha256:9",
                            {DATA: "d1"}) == []


def test_run_always_is_decided_elsewhere(job: Job) -> None:
    always = dataclasses.replace(job, run="always")
    assert jobs.job_reasons(always, {"inputs": "old", "image": "sha256:0", "data": {DATA: "d1"}}, "sha256:9",
                            {DATA: "d1"}) == []
    assert jobs.job_reasons(always, None, "sha256:9", {DATA: "d1"}) == ["never ran"]


# ---- run_job ---------------------------------------------------------------------------------

def run(engine: FakeEngine, host: HostState, job: Job, state_dir: Path, log_dir: Path) -> list[str]:
    said: list[str] = []
    jobs.run_job(engine, host, job, state_dir, log_dir, said.append)
    return said


def test_a_job_that_succeeds_leaves_a_masked_root_only_log(engine: FakeEngine, host: HostState, job: Job,
                                                           state_dir: Path, log_dir: Path) -> None:
    engine.job_results[NAME] = (0, f"migrating\nconnecting with password {SECRET}\ndone\n")
    run(engine, host, job, state_dir, log_dir)
    log = log_dir / "demo.db_sync.log"
    assert log.stat().st_mode & 0o777 == 0o600
    text = log.read_text()
    assert "migrating" in text and "done" in text
    assert SECRET not in text and f"password {MASK}" in text
    assert NAME not in engine.containers_by_name, "the job container goes once it is done"
    assert not (state_dir / "jobs" / "demo.db_sync" / "output").exists(), "the raw output goes too"


def test_a_job_container_keeps_no_engine_log_and_writes_to_the_output_mount(
        engine: FakeEngine, host: HostState, job: Job, state_dir: Path, log_dir: Path) -> None:
    run(engine, host, job, state_dir, log_dir)
    (spec,) = [s for s in engine.created if s.name == NAME]
    assert spec.logs is False and spec.restart == "no" and spec.health is None
    output = state_dir / "jobs" / "demo.db_sync" / "output"
    assert Mount(OUTPUT_MOUNT, str(output), "bind") in spec.mounts
    assert spec.labels["org.mortar.purpose"] == "job" and spec.labels["org.mortar.job"] == "demo.db_sync"
    assert any(m.target == "/var/lib/demo" and m.source == "demo_data" for m in spec.mounts)
    files = state_dir / "jobs" / "demo.db_sync" / "files"
    assert f'"output": "{OUTPUT_MOUNT}/output.log"' in (files / "spec.json").read_text()
    assert (files / "demo.conf").stat().st_mode & 0o777 == 0o600
    assert SECRET not in repr(spec), "the engine never sees a secret"


def test_a_failed_job_is_a_step_error_with_its_exit_code_and_last_lines(
        engine: FakeEngine, host: HostState, job: Job, state_dir: Path, log_dir: Path) -> None:
    lines = [f"line {i}" for i in range(40)] + [f"ERROR: access denied for demo using password {SECRET}"]
    engine.job_results[NAME] = (3, "\n".join(lines) + "\n")
    with pytest.raises(StepError) as info:
        run(engine, host, job, state_dir, log_dir)
    error = info.value
    assert "job demo.db_sync failed (exit 3)" == error.message
    assert (error.service, error.target, error.kind) == ("demo", "demo.db_sync", "permanent")
    tail = error.log_tail.splitlines()
    assert len(tail) == 20 and tail[-1] == f"ERROR: access denied for demo using password {MASK}"
    assert "line 0" not in error.log_tail
    log = log_dir / "demo.db_sync.log"
    assert str(log) in (error.fix or "")
    assert "line 0" in log.read_text() and SECRET not in log.read_text()
    assert NAME not in engine.containers_by_name


def test_a_hung_job_is_a_timeout_naming_the_job(engine: FakeEngine, host: HostState, job: Job,
                                                state_dir: Path, log_dir: Path) -> None:
    engine.hang.add(NAME)
    engine.job_results[NAME] = (0, f"waiting for the database ({SECRET})\n")
    with pytest.raises(StepError) as info:
        run(engine, host, job, state_dir, log_dir)
    error = info.value
    assert error.kind == "timeout" and error.target == "demo.db_sync"
    assert f"job demo.db_sync did not finish within {job.timeout} s" == error.message
    assert error.log_tail == f"waiting for the database ({MASK})"
    assert NAME not in engine.containers_by_name, "a hung job container is removed, not left running"


def fail_first(engine: FakeEngine, times: int) -> list[int]:
    starts: list[int] = []

    def on_call(operation: str, target: str) -> None:
        if operation == "start" and target == NAME:
            starts.append(1)
            engine.job_results[NAME] = (1, "not yet\n") if len(starts) <= times else (0, "ok\n")

    engine.on_call = on_call
    return starts


def test_retry_delay_reruns_until_success(engine: FakeEngine, host: HostState, job: Job, state_dir: Path,
                                          log_dir: Path, monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(jobs, "time", clock)
    job = dataclasses.replace(job, retry_delay=5)
    starts = fail_first(engine, 2)
    said = run(engine, host, job, state_dir, log_dir)
    assert len(starts) == 3 and clock.sleeps == [5, 5]
    assert said == ["job demo.db_sync: attempt 1 exited 1; again in 5 s",
                    "job demo.db_sync: attempt 2 exited 1; again in 5 s"]
    assert (log_dir / "demo.db_sync.log").read_text() == "not yet\nnot yet\nok\n"


def test_retry_delay_gives_up_at_the_timeout(engine: FakeEngine, host: HostState, job: Job, state_dir: Path,
                                             log_dir: Path, monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(jobs, "time", clock)
    job = dataclasses.replace(job, retry_delay=10, timeout=35)
    starts = fail_first(engine, 100)
    with pytest.raises(StepError, match=r"failed \(exit 1, after 4 attempts\)"):
        run(engine, host, job, state_dir, log_dir)
    assert len(starts) == 4 and sum(clock.sleeps) < job.timeout


def test_without_retry_delay_a_failure_is_final(engine: FakeEngine, host: HostState, job: Job, state_dir: Path,
                                               log_dir: Path) -> None:
    starts = fail_first(engine, 1)
    with pytest.raises(StepError) as info:
        run(engine, host, job, state_dir, log_dir)
    assert info.value.message == "job demo.db_sync failed (exit 1)"
    assert len(starts) == 1


def test_record_job_keeps_what_decided_it(job: Job, state_dir: Path) -> None:
    jobs.record_job(state_dir, job, "sha256:1", {DATA: "d1"})
    from mortar.agent import facts as F

    stored = F.records_store(state_dir).get("jobs", job.name)
    assert stored == record(job)
    assert jobs.job_reasons(job, stored, "sha256:1", {DATA: "d1"}) == []
    assert (state_dir / "records.json").stat().st_mode & 0o777 == 0o600
