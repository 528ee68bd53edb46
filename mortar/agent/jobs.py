"""One-shot jobs (database creation, db sync, bootstrap): run bounded, logged masked, recorded.

A job's output never reaches the engine's logs: mortar-start writes it to a root-only file
on the host, which is masked into /var/log/mortar/deploy/<job>.log and then removed. A job
is recorded with what decided it (its inputs, its image, and the data it initialised), so
it runs again when any of them changes, a recreated database included.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mortar.agent import facts as F
from mortar.agent.converge import make_mount_sources, run_spec, write_config_dir
from mortar.agent.errors import StepError
from mortar.agent.masking import redact
from mortar.agent.wire import OUTPUT_MOUNT, HostState, Job
from mortar.engine.protocol import Engine, EngineTimeout, Mount
from mortar.files import inside, private_directory, write_private

OUTPUT_FILE = "output.log"
INPUTS_CHANGED = "its definition or files changed"
LEFTOVER_WAIT = 600.0  # seconds a job left running by an interrupted run may take to finish


def container_name(job: Job) -> str:
    return "mortar_job_" + job.name.replace(".", "_")


def job_reasons(job: Job, record: dict[str, Any] | None, image_id: str | None,
                data_ids: dict[str, str | None]) -> list[str]:
    """Why JOB must run ([] when its record proves it ran with these inputs on this data).
    `always` jobs are not decided here: they run whenever their service changes."""
    if record is None:
        return ["never ran"]
    reasons = []
    for key in job.data:
        if data_ids.get(key) is None:
            reasons.append(f"{key.split('/', 1)[-1]} is not created yet")
        elif record.get("data", {}).get(key) != data_ids[key]:
            reasons.append(f"{key.split('/', 1)[-1]} is new data")
    if job.run in ("once", "always"):
        return reasons
    if record.get("inputs") != job.inputs:
        reasons.append(INPUTS_CHANGED)
    if image_id is None:
        reasons.append("its image is not on the host yet")
    elif record.get("image") != image_id:
        reasons.append("its image changed")
    return reasons


def _read_output(directory: Path) -> str:
    path = directory / OUTPUT_FILE
    return path.read_text(errors="replace") if path.is_file() else ""


def run_job(engine: Engine, host: HostState, job: Job, state_dir: Path, log_dir: Path,
            progress: Callable[[str], None]) -> None:
    assert job.spec is not None
    base = private_directory(inside(state_dir / "jobs", job.name, "job name"))
    files_dir, output_dir = base / "files", base / "output"
    write_config_dir(files_dir, job.spec.rendered_files(output=f"{OUTPUT_MOUNT}/{OUTPUT_FILE}"))
    shutil.rmtree(output_dir, ignore_errors=True)
    private_directory(output_dir)
    labels = {F.MANAGED: "1", F.SITE: host.site, F.SERVICE: job.service, F.PURPOSE: "job", F.JOB: job.name}
    make_mount_sources(job.spec)
    spec = run_spec(job.spec, files_dir, labels)
    spec.name, spec.health, spec.restart, spec.logs = container_name(job), None, "no", False
    spec.mounts.append(Mount(OUTPUT_MOUNT, str(output_dir), "bind"))
    deadline = time.monotonic() + job.timeout
    attempt = 0
    try:
        while True:
            attempt += 1
            engine.remove(spec.name)
            engine.create(spec)
            engine.start(spec.name)
            try:
                code = engine.wait(spec.name, max(1.0, deadline - time.monotonic()))
            except EngineTimeout:
                log = _keep_log(log_dir, job, _read_output(output_dir), host.secrets)
                raise StepError(f"job {job.name} did not finish within {job.timeout} s", service=job.service,
                                target=job.name, log_tail=_tail(_read_output(output_dir), host.secrets),
                                fix=f"full log: {log}; see why it hangs, fix the cause and run the command again",
                                kind="timeout") from None
            if code in job.ok:
                break
            if job.retry_delay and time.monotonic() + job.retry_delay < deadline:
                progress(f"job {job.name}: attempt {attempt} exited {code}; again in {job.retry_delay} s")
                time.sleep(job.retry_delay)
                continue
            log = _keep_log(log_dir, job, _read_output(output_dir), host.secrets)
            raise StepError(f"job {job.name} failed (exit {code}"
                            + (f", after {attempt} attempts" if attempt > 1 else "") + ")",
                            service=job.service, target=job.name, log_tail=_tail(_read_output(output_dir),
                                                                                 host.secrets),
                            fix=f"full log: {log}; fix the cause and run the command again")
        _keep_log(log_dir, job, _read_output(output_dir), host.secrets)
    finally:
        engine.remove(spec.name)
        shutil.rmtree(output_dir, ignore_errors=True)


def _tail(output: str, secrets: list[str], lines: int = 20) -> str:
    return "\n".join(redact(output, secrets).splitlines()[-lines:])


def _keep_log(log_dir: Path, job: Job, output: str, secrets: list[str]) -> Path:
    private_directory(log_dir)
    path = inside(log_dir, f"{job.name}.log", "job name")
    write_private(path, redact(output, secrets))
    return path


def record_job(state_dir: Path, job: Job, image_id: str, data: dict[str, str]) -> None:
    F.records_store(state_dir).set("jobs", job.name, {"inputs": job.inputs, "image": image_id, "data": data})
