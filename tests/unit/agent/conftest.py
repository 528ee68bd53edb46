"""A small host state (one service: a volume, a container with a secret in its file, a job)
and an in-memory engine that holds its image: enough to drive the agent without Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from mortar.agent import converge
from mortar.agent import facts as F
from mortar.agent.wire import Action, Container, File, Healthcheck, HostState, Job, ServiceState
from tests.unit.fakeengine import FakeEngine

SITE = "site-a"
SECRET = "Sup3r-s3cret-pw"
IMAGE = "registry.example:4000/mortar/demo:1"


def demo_conf(password: str = SECRET, workers: int = 2) -> str:
    return f"[database]\nconnection = mysql+pymysql://demo:{password}@db/demo\nworkers = {workers}\n" \
           f"[auth]\npassword = {password}\n"


def demo_host(conf: str | None = None, secrets: list[str] | None = None) -> HostState:
    conf_file = File(dest="/etc/demo/demo.conf", content=conf if conf is not None else demo_conf())
    web = Container(name="demo_web", service="demo", image=IMAGE, command=["demo-web"], files=[conf_file],
                    volumes=["demo_data:/var/lib/demo"], healthcheck=Healthcheck(test="demo-probe"))
    sync = Container(name="demo_db_sync", service="demo", image=IMAGE, command=["demo-manage", "db", "sync"],
                     files=[conf_file], volumes=["demo_data:/var/lib/demo"])
    job = Job(name="demo.db_sync", container="demo_web", service="demo", spec=sync, timeout=60,
              data=["h1/demo_data"])
    return HostState("h1", "127.0.0.1", SITE, services={"demo": ServiceState("demo", ["demo_data"], [web], [job])},
                     order=["demo"], secrets=[SECRET] if secrets is None else secrets, health_timeout=5)


@pytest.fixture
def host() -> HostState:
    return demo_host()


@pytest.fixture
def engine(host: HostState) -> FakeEngine:
    engine = FakeEngine()
    for ref in host.images():
        engine.add_image(ref)
    return engine


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


def plan(engine: FakeEngine, host: HostState, state_dir: Path) -> list[Action]:
    return converge.plan_host(host, F.gather(engine, host, state_dir), state_dir)


def converge_all(engine: FakeEngine, host: HostState, state_dir: Path) -> list[str]:
    """Every service's volumes and containers as the containers step converges them; the progress lines."""
    said: list[str] = []
    for service in host.services.values():
        facts = F.gather(engine, host, state_dir)
        actions = converge.plan_service(host, service, facts, state_dir)
        converge.converge_service(engine, host, service, actions, facts, state_dir, said.append)
    return said


def kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.target) for a in actions]


class Clock:
    """`time` for a module under test: sleeping advances it at once, so retries cost nothing."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
