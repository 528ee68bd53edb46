"""The one registry of what a host agent can do; both executors dispatch through it.

A step takes a StepRequest and the host's desired state and returns a StepReport. The local
executor calls `dispatch` in a thread; the Ansible module calls the very same `dispatch` on
the remote host. Adding a step is one decorated function here, nothing else.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mortar.agent import converge, jobs
from mortar.agent import facts as F
from mortar.agent.errors import StepError, failure_of
from mortar.agent.wire import WIRE_VERSION, HostState, StepReport, StepRequest
from mortar.engine.protocol import Engine, EngineTimeout
from mortar.files import private_directory

# Phases of applying one dependency level; each ends on every host before the next starts.
APPLY_PHASES = ("provision", "before", "containers", "after")
JOB_PHASES = ("provision", "before", "after")
LOCK_WAIT = 120.0
PULL_THREADS = 3

Progress = Callable[[str], None]


class StepContext:
    """What a step works with; the engine is connected on first use (the engine step installs it)."""

    def __init__(self, host: HostState, request: StepRequest, report: StepReport, state_dir: Path, log_dir: Path,
                 connect: Callable[[], Engine], progress: Progress) -> None:
        self.host, self.request, self.report = host, request, report
        self.state_dir, self.log_dir, self.progress = state_dir, log_dir, progress
        self._connect = connect
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._connect()
        return self._engine


@dataclass
class StepDef:
    name: str
    run: Callable[[StepContext], None]
    mutating: bool
    help: str
    says_changed: bool = False  # the step sets report.changed itself (else: any line it printed)


STEPS: dict[str, StepDef] = {}


def step(name: str, *, mutating: bool, help: str,
         says_changed: bool = False) -> Callable[[Callable[[StepContext], None]], Callable]:
    def register(func: Callable[[StepContext], None]) -> Callable[[StepContext], None]:
        STEPS[name] = StepDef(name, func, mutating, help, says_changed)
        return func

    return register


@contextmanager
def host_lock(state_dir: Path, wait: float = LOCK_WAIT) -> Iterator[None]:
    """One mutating step at a time on a host, whichever controller or process sent it."""
    private_directory(state_dir)
    fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StepError(f"another mortar step has held this host for {wait:.0f} s",
                                    fix="wait for the other mortar command to finish, then run this one again",
                                    kind="temporary") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def dispatch(name: str, request: StepRequest, host: HostState, state_dir: Path, log_dir: Path,
             connect: Callable[[], Engine], progress: Progress | None = None) -> StepReport:
    """Run one registered step on this host; every expected failure comes back as report.failure."""
    report = StepReport(host.host, name)
    lock = threading.Lock()

    def note(line: str) -> None:
        with lock:
            report.lines.append(line)
        if progress is not None:
            progress(line)

    definition = STEPS.get(name)
    try:
        if request.version != WIRE_VERSION or host.version != WIRE_VERSION:
            raise StepError(f"the controller speaks wire version {request.version}, this agent {WIRE_VERSION}",
                            fix="use the same mortar version on the controller and the hosts")
        if definition is None:
            raise StepError(f"unknown step {name!r} (this agent knows: {', '.join(sorted(STEPS))})",
                            fix="use the same mortar version on the controller and the hosts")
        context = StepContext(host, request, report, state_dir, log_dir, connect, note)
        if definition.mutating:
            with host_lock(state_dir):
                definition.run(context)
        else:
            definition.run(context)
    except Exception as exc:
        failure = failure_of(exc, host.host, name)
        if failure is None:
            raise
        report.failure = failure
    if definition is None or not definition.says_changed:
        report.changed = report.changed or bool(report.lines)
    return report


def _in_parallel(items: list[str], work: Callable[[str], None]) -> None:
    if not items:
        return
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


# ---- the steps -----------------------------------------------------------------------------

@step("plan", mutating=False, help="observe the host and say what its desired state needs (changes nothing)")
def plan(ctx: StepContext) -> None:
    host = ctx.host
    facts = F.gather(ctx.engine, host, ctx.state_dir)
    ctx.report.actions = converge.plan_host(host, facts, ctx.state_dir)
    wanted = {v for s in host.services.values() for v in s.volumes}
    ctx.report.volumes = {name: F.data_id(v) for name, v in facts.volumes.items() if name in wanted}
    ctx.report.job_records = {j.name: facts.records[j.name] for j in host.jobs() if j.name in facts.records}
    ctx.report.container_data = {name: data for name, info in facts.containers.items()
                                 if (data := F.started_on(info)) is not None}
    ctx.report.image_ids = {ref: image.id for ref, image in facts.images.items() if image is not None}


@step("prepare", mutating=True, help="pull the images the host lacks, remove what is no longer desired")
def prepare(ctx: StepContext) -> None:
    host, engine = ctx.host, ctx.engine
    facts = F.gather(engine, host, ctx.state_dir)
    actions = converge.plan_host(host, facts, ctx.state_dir)
    refs = sorted({a.target for a in actions if a.kind == "pull"})
    if refs:
        started = time.monotonic()
        ctx.progress(f"pulling {len(refs)} image(s)")
        with ThreadPoolExecutor(max_workers=PULL_THREADS) as pool:
            for future in [pool.submit(converge.pull, engine, host, ref) for ref in refs]:
                future.result()
        ctx.progress(f"pulled {len(refs)} image(s) in {time.monotonic() - started:.1f}s")
    for action in (a for a in actions if a.kind == "remove"):
        left = facts.jobs.get(action.target)
        if left is not None and left.status == "running":
            # A job an interrupted run left running (a db sync, say) finishes rather than being cut;
            # it runs again anyway, as nothing recorded it.
            ctx.progress(f"waiting for {action.target}, left running by an interrupted run")
            try:
                engine.wait(action.target, jobs.LEFTOVER_WAIT)
            except EngineTimeout:
                ctx.progress(f"{action.target} still runs after {jobs.LEFTOVER_WAIT:.0f} s; stopping it")
        converge.remove_container(engine, action.target, action.service)
        ctx.progress(f"removed {action.target}")


def _run_phase(ctx: StepContext, phase: str) -> None:
    host, engine = ctx.host, ctx.engine
    facts = F.gather(engine, host, ctx.state_dir)
    wanted = set(ctx.request.jobs)

    def one(name: str) -> None:
        service = host.services[name]

        def progress(line: str) -> None:
            ctx.progress(f"{name}: {line}")

        if phase == "containers":
            actions = converge.plan_service(host, service, facts, ctx.state_dir)
            ctx.report.volumes.update(converge.converge_service(
                engine, host, service, actions, facts, ctx.state_dir, progress, ctx.request.recreate,
                ctx.request.data_ids))
            return
        todo = [j for j in service.jobs if j.phase == phase and j.name in wanted]
        if not todo:
            return
        # Volumes the jobs use exist before the first job runs.
        mounted = {entry.split(":", 1)[0] for j in todo if j.spec for entry in j.spec.volumes}
        for volume in service.volumes:
            if volume in mounted and volume not in facts.volumes:
                ctx.report.volumes[volume] = converge.ensure_volume(engine, host, volume, name)
        for job in todo:
            assert job.spec is not None
            started = time.monotonic()
            progress(f"job {job.name.split('.', 1)[1]}")
            jobs.run_job(engine, host, job, ctx.state_dir, ctx.log_dir, progress)
            image = engine.image(job.spec.image)
            data = F.current_data(engine, host.host, job.data, ctx.request.data_ids)
            jobs.record_job(ctx.state_dir, job, image.id if image else "", data)
            progress(f"job {job.name.split('.', 1)[1]} done ({time.monotonic() - started:.1f}s)")

    # Containers converge for the services asked for; jobs run for those and for any job asked for.
    names = [n for n in ctx.request.services if n in host.services]
    if phase != "containers":
        names += [n for n in dict.fromkeys(j.service for j in host.jobs() if j.name in wanted) if n not in names]
    _in_parallel(names, one)


@step("checks", mutating=True,
      help="run the jobs asked for as checks (upgrade's preflight: check jobs, and before_upgrade jobs from "
           "the running series): their images pulled when missing, nothing recorded")
def checks(ctx: StepContext) -> None:
    wanted = [j for j in ctx.host.jobs() if j.name in ctx.request.jobs and (j.phase == "check" or j.before_upgrade)]
    for ref in dict.fromkeys(j.spec.image for j in wanted if j.spec):
        if ctx.engine.image(ref) is None:
            converge.pull(ctx.engine, ctx.host, ref)

    def one(name: str) -> None:
        job = next(j for j in wanted if j.name == name)
        started = time.monotonic()
        ctx.progress(f"{job.service}: check {job.name.split('.', 1)[1]}")
        jobs.run_job(ctx.engine, ctx.host, job, ctx.state_dir, ctx.log_dir, ctx.progress)
        ctx.progress(f"{job.service}: check {job.name.split('.', 1)[1]} passed ({time.monotonic() - started:.1f}s)")

    _in_parallel([j.name for j in wanted], one)


PHASE_HELP = {
    "provision": "jobs that providers run for their consumers (databases, users)",
    "before": "jobs that run before a service's containers (db sync, bootstrap)",
    "containers": "create, recreate, start or restart containers and wait until they serve",
    "after": "jobs that run after a service's containers serve (host discovery)",
}


def _phase_step(phase: str) -> Callable[[StepContext], None]:
    def run(ctx: StepContext) -> None:
        _run_phase(ctx, phase)

    return run


for _phase in APPLY_PHASES:
    step(_phase, mutating=True, help=PHASE_HELP[_phase])(_phase_step(_phase))


@step("pull", mutating=True, says_changed=True,
      help="pull every image the host needs (present ones are checked against the registry)")
def pull(ctx: StepContext) -> None:
    refs = ctx.host.images()
    before_ids = {ref: (i.id if (i := ctx.engine.image(ref)) else None) for ref in refs}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=PULL_THREADS) as pool:
        for future in [pool.submit(converge.pull, ctx.engine, ctx.host, ref) for ref in refs]:
            future.result()
    changed = [ref for ref in refs if (i := ctx.engine.image(ref)) is None or i.id != before_ids[ref]]
    ctx.report.changed = bool(changed)
    ctx.report.lines.append(f"{len(refs)} image(s) checked, {len(changed)} new or updated, "
                            f"{time.monotonic() - started:.1f}s")


@step("stop", mutating=True, help="stop the host's containers (or the asked services' only), dependents first; "
                                  "volumes and data stay")
def stop(ctx: StepContext) -> None:
    host = ctx.host
    only = set(ctx.request.services)
    for name in reversed(host.order):
        if only and name not in only:
            continue
        for container in host.services[name].containers if name in host.services else []:
            info = ctx.engine.container(container.name)
            if info is not None and info.status in ("running", "restarting"):
                ctx.engine.stop(container.name, timeout=container.stop_timeout)
                ctx.progress(f"stopped {container.name}")


@step("destroy", mutating=True, help="remove this site's containers, volumes (all data) and state on the host")
def destroy(ctx: StepContext) -> None:
    engine, site, host = ctx.engine, ctx.host.site, ctx.host
    # Dependents first, each container's teardown (what it made on the host itself: bridges,
    # links) while it still runs, then the container, so that nothing still running makes the
    # torn-down things again. A teardown that fails is reported and the destroy goes on.
    for name in reversed(host.order):
        for declared in reversed(host.services[name].containers) if name in host.services else []:
            info = engine.container(declared.name)
            if info is None:
                continue
            if declared.teardown and info.status == "running":
                code, output = engine.exec(declared.name, ["/bin/sh", "-ec", declared.teardown])
                last = output.strip().splitlines()[-1] if output.strip() else ""
                ctx.progress(f"teardown {declared.name}" + ("" if code == 0 else f" failed (exit {code}): {last}"))
            converge.remove_container(engine, declared.name, info.labels.get(F.SERVICE, ""))
            ctx.progress(f"removed container {declared.name}")
    for container in engine.containers({F.SITE: site}):
        converge.remove_container(engine, container.name, container.labels.get(F.SERVICE, ""))
        ctx.progress(f"removed container {container.name}")
    for volume in engine.volumes({F.SITE: site}):
        if not engine.remove_volume(volume.name) and engine.volume(volume.name) is not None:
            raise StepError(f"could not remove volume {volume.name}", target=volume.name,
                            fix=f"see `docker volume inspect {volume.name}`")
        ctx.progress(f"removed volume {volume.name}")
    # The desired state a remote executor copied here holds rendered secrets: it goes too.
    for path in (ctx.state_dir / "config", ctx.state_dir / "jobs", ctx.state_dir / "records.json",
                 ctx.state_dir / "desired.json"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


@step("prechecks", mutating=False, help="engine, images, address, ports, disk and memory of the host")
def prechecks(ctx: StepContext) -> None:
    from mortar.agent.hostchecks import host_checks

    ctx.report.checks = host_checks(ctx.host, ctx.engine)


@step("engine", mutating=True, help="install, configure and start the container engine; trust the site registry")
def engine(ctx: StepContext) -> None:
    from mortar.engine.setup import setup_engine, trust_registry_ca

    request = ctx.request
    trusted = False
    if request.registry_ca and request.registry:
        trusted = trust_registry_ca(request.registry, request.registry_ca)
    report = setup_engine(request.insecure_registries, restart=True)
    if report.installed:
        ctx.progress("installed the engine")
    if report.config_changed:
        ctx.progress("engine settings changed")
    if report.started != "already running":
        ctx.progress(f"engine {report.started}")
    if trusted:
        ctx.progress(f"trusts the registry {request.registry} (site CA)")
