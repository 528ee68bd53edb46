"""The site registry (mortar/registry/server.py): its container, and start/stop/status on the in-memory engine."""

from __future__ import annotations

import json
import stat
import urllib.error
from pathlib import Path

import pytest

from mortar.agent.wire import CONFIG_MOUNT
from mortar.errors import EngineError, MortarError
from mortar.registry import server
from mortar.registry.tls import RegistryTLS
from tests.unit.fakeengine import FakeEngine

NAME = "mortar_registry_127.0.0.1_4000"  # the registry of the address these tests start

IMAGE = "mortar/registry:2026.2"
TLS = RegistryTLS(certificate="-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n",
                  key="-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n", ca="ca-pem")
PASSWORD = "registry-s3cr3t"


@pytest.mark.parametrize("address", ["10.0.0.1", "10.0.0.1:", ":4000", "10.0.0.1:port", "10.0.0.1:70000",
                                     "https://10.0.0.1:4000"])
def test_bad_addresses_name_the_key_and_an_example(address: str) -> None:
    with pytest.raises(MortarError) as info:
        server.split_address(address)
    assert info.value.key == "docker_registry" and "127.0.0.1:4000" in str(info.value)


def test_split_address() -> None:
    assert server.split_address("10.213.77.1:4000") == ("10.213.77.1", 4000)
    assert server.split_address("registry.example:443") == ("registry.example", 443)


def test_container_spec_serves_tls_and_asks_for_the_password() -> None:
    container = server.container_spec("10.0.0.10:4000", TLS, "mortar", PASSWORD)
    assert container.user == "docker-registry"
    assert container.environment == {
        "REGISTRY_HTTP_ADDR": "10.0.0.10:4000",
        "REGISTRY_HTTP_TLS_CERTIFICATE": "/etc/docker/registry/tls.crt",
        "REGISTRY_HTTP_TLS_KEY": "/etc/docker/registry/tls.key",
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": "mortar",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/etc/docker/registry/htpasswd",
    }
    files = {f.dest: f for f in container.files}
    assert sorted(files) == ["/etc/docker/registry/htpasswd", "/etc/docker/registry/tls.crt",
                             "/etc/docker/registry/tls.key"]
    assert all(f.owner == "docker-registry" for f in container.files)
    assert (files["/etc/docker/registry/tls.key"].mode, files["/etc/docker/registry/htpasswd"].mode) == ("0400",
                                                                                                        "0400")
    assert files["/etc/docker/registry/tls.crt"].content == TLS.certificate
    assert files["/etc/docker/registry/tls.key"].content == TLS.key
    assert files["/etc/docker/registry/htpasswd"].content.startswith("mortar:$2")
    assert container.volumes == [f"{server.name_for('10.0.0.10:4000')}:{server.DATA_DIR}"]


def test_the_spec_mortar_start_reads_holds_no_secret() -> None:
    rendered = server.container_spec("10.0.0.10:4000", TLS, "mortar", PASSWORD).rendered_files()
    spec = json.loads(rendered["spec.json"])
    assert spec["user"] == "docker-registry"
    assert {f["source"]: f["mode"] for f in spec["files"]} == {"tls.crt": "0444", "tls.key": "0400",
                                                                "htpasswd": "0400"}
    assert PASSWORD not in rendered["spec.json"] and "PRIVATE KEY" not in rendered["spec.json"]
    assert PASSWORD not in rendered["htpasswd"]


def test_a_plain_http_registry_has_no_files_and_no_password() -> None:
    container = server.container_spec("127.0.0.1:4000", None, "", "")
    assert container.environment == {"REGISTRY_HTTP_ADDR": "127.0.0.1:4000"}
    assert container.files == []


@pytest.fixture
def engine() -> FakeEngine:
    engine = FakeEngine()
    engine.add_image(IMAGE)
    return engine


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The registry's catalog as if it answered at once; records how it was asked."""
    asked: list[tuple] = []

    def catalog(address: str, auth, ca, timeout: float = 5) -> list[str]:
        asked.append((address, auth, ca))
        return ["mortar/keystone"]

    monkeypatch.setattr(server, "catalog", catalog)
    return asked


def start(engine: FakeEngine, state: Path, password: str = PASSWORD, tls: RegistryTLS | None = TLS,
          lines: list[str] | None = None) -> str:
    return server.start(engine, "127.0.0.1:4000", IMAGE, state, tls, "mortar", password,
                        log=(lines.append if lines is not None else lambda _: None), timeout=1)


def test_start_runs_the_registry_with_its_files_through_mortar_start(engine: FakeEngine, answers,
                                                                     tmp_path: Path) -> None:
    assert start(engine, tmp_path) == "127.0.0.1:4000"
    container = engine.containers_by_name[NAME]
    assert container.info.status == "running"
    spec = container.spec
    assert spec.image == IMAGE and spec.restart == "unless-stopped" and spec.network == "host"
    assert spec.labels[server.LABEL] == "127.0.0.1:4000" and server.HASH_LABEL in spec.labels
    assert spec.environment == {}  # the engine shows it to anyone: everything goes through mortar-start
    files_dir = tmp_path / "registry" / NAME
    mounts = {m.target: m for m in spec.mounts}
    assert mounts[CONFIG_MOUNT].source == str(files_dir) and mounts[CONFIG_MOUNT].read_only
    assert (mounts[server.DATA_DIR].kind, mounts[server.DATA_DIR].source) == ("volume", NAME)
    assert sorted(p.name for p in files_dir.iterdir()) == ["htpasswd", "spec.json", "tls.crt", "tls.key"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files_dir.iterdir())
    assert stat.S_IMODE(files_dir.stat().st_mode) == 0o700
    assert answers == [("127.0.0.1:4000", ("mortar", PASSWORD), "ca-pem")]


def test_start_again_keeps_the_running_registry(engine: FakeEngine, answers, tmp_path: Path) -> None:
    start(engine, tmp_path)
    htpasswd = (tmp_path / "registry" / NAME / "htpasswd").read_text()
    engine.calls.clear()
    lines: list[str] = []
    start(engine, tmp_path, lines=lines)
    assert lines == ["registry already running on 127.0.0.1:4000"]
    assert engine.changes() == []
    assert (tmp_path / "registry" / NAME / "htpasswd").read_text() == htpasswd


def test_a_new_password_replaces_the_container(engine: FakeEngine, answers, tmp_path: Path) -> None:
    start(engine, tmp_path)
    first = engine.containers_by_name[NAME].info.id
    start(engine, tmp_path, password="rotated-password")
    assert engine.containers_by_name[NAME].info.id != first
    assert answers[-1][1] == ("mortar", "rotated-password")


def test_a_stopped_registry_is_recreated(engine: FakeEngine, answers, tmp_path: Path) -> None:
    start(engine, tmp_path)
    engine.stop(NAME)
    engine.calls.clear()
    start(engine, tmp_path)
    assert engine.containers_by_name[NAME].info.status == "running"
    assert engine.changes() == [("remove", NAME), ("create", NAME),
                                ("start", NAME)]


def test_plain_http_start_asks_without_a_password(engine: FakeEngine, answers, tmp_path: Path) -> None:
    start(engine, tmp_path, tls=None, password="")
    assert answers == [("127.0.0.1:4000", None, None)]
    assert sorted(p.name for p in (tmp_path / "registry" / NAME).iterdir()) == ["spec.json"]


def test_a_registry_refusing_its_own_password_is_an_error(engine: FakeEngine, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(address: str, auth, ca, timeout: float = 5) -> list[str]:
        raise urllib.error.HTTPError(f"https://{address}/v2/_catalog", 401, "Unauthorized", None, None)  # type: ignore[arg-type]

    monkeypatch.setattr(server, "catalog", refuse)
    with pytest.raises(EngineError, match="answered 401 to its own password"):
        start(engine, tmp_path)


def test_a_registry_that_never_answers_is_an_error(engine: FakeEngine, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def down(address: str, auth, ca, timeout: float = 5) -> list[str]:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(server, "catalog", down)
    monkeypatch.setattr(server.time, "sleep", lambda _: None)
    with pytest.raises(EngineError, match=r"does not answer after 0s \(\[Errno 111\] Connection refused\)"):
        server.start(engine, "127.0.0.1:4000", IMAGE, tmp_path, TLS, "mortar", PASSWORD, log=lambda _: None,
                     timeout=0)
    assert ("logs", NAME) in engine.calls


class NoEngine:
    """start() must refuse before it touches the engine."""

    def __getattr__(self, name: str):
        raise AssertionError(f"engine used: {name}")


def test_start_refuses_an_address_this_machine_does_not_have(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine, and nothing is sent to it.
    with pytest.raises(MortarError, match="not an address of this machine") as info:
        server.start(NoEngine(), "192.0.2.10:4000", IMAGE, tmp_path, TLS, "mortar", PASSWORD,  # type: ignore[arg-type]
                     log=lambda _: None)
    assert "mortar testbed up" in str(info.value)
    assert not (tmp_path / "registry").exists()


def test_stop_removes_the_container_and_the_data_only_when_asked(engine: FakeEngine, answers,
                                                                 tmp_path: Path) -> None:
    start(engine, tmp_path)
    lines: list[str] = []
    server.stop(engine, "127.0.0.1:4000", remove_data=False, log=lines.append)
    assert NAME not in engine.containers_by_name and NAME in engine.volumes_by_name
    server.stop(engine, "127.0.0.1:4000", remove_data=True, log=lines.append)
    assert NAME not in engine.volumes_by_name
    assert lines == [f"removed container {NAME}", "no registry container for 127.0.0.1:4000",
                     f"removed volume {NAME} (every pushed image)"]


def test_status(engine: FakeEngine, answers, tmp_path: Path) -> None:
    assert server.status(engine, "127.0.0.1:4000", None, None) == server.RegistryStatus(False)
    start(engine, tmp_path)
    state = server.status(engine, "127.0.0.1:4000", ("mortar", PASSWORD), "ca-pem")
    assert (state.running, state.address, state.repositories) == (True, "127.0.0.1:4000", ["mortar/keystone"])
    assert state.image == engine.images_by_ref[IMAGE].id[:19]
    engine.stop(NAME)
    assert server.status(engine, "127.0.0.1:4000", None, None).running is False


def test_ensure_image_uses_the_image_it_has(engine: FakeEngine) -> None:
    assert server.ensure_image(engine, "mortar", "2026.2", "2026.2", log=lambda _: None) == IMAGE
    assert engine.changes() == []
