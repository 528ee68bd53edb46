"""`mortar testbed ...` (mortar/cli/testbed.py): help texts and one-line errors, without an engine."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from mortar.cli import testbed as testbed_cli
from mortar.engine.dockerengine import DockerEngine
from mortar.errors import EngineError

# No engine anywhere: nothing here may reach a live test bed on this machine (conftest refuses
# connecting, and DOCKER_HOST names no engine).
ENV = {"DOCKER_HOST": "unix:///nonexistent.sock", "DOCKER_TLS_VERIFY": None, "DOCKER_CERT_PATH": None}
# Taken at import, before conftest replaces it for every test.
REAL_CONNECT = DockerEngine.__dict__["connect"]


def run(*args: str) -> Result:
    return CliRunner().invoke(testbed_cli.testbed, list(args), env=ENV, catch_exceptions=False)


@pytest.mark.parametrize("command", [[], ["up"], ["down"], ["status"], ["ssh"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 4


def test_up_help_names_its_options() -> None:
    output = run("up", "--help").output
    for option in ("--name", "--control", "--compute", "--network-nodes"):
        assert option in output


@pytest.mark.parametrize("args", [["status"], ["down"], ["up", "--compute", "0"], ["ssh", "control1", "true"]])
def test_no_engine_is_one_error_line(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Docker Engine" in lines[0]


def test_a_bad_bed_name_is_one_error_line() -> None:
    result = run("status", "--name", "../etc")
    assert result.exit_code == 2
    assert result.output.startswith("error: --name: test bed name '../etc' is not usable")


def test_out_of_range_counts_are_usage_errors() -> None:
    assert run("up", "--control", "0").exit_code == 2
    assert run("up", "--compute", "-1").exit_code == 2


def test_the_engine_is_found_through_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    asked: list[str] = []

    class NoAPI:
        def __init__(self, base_url: str, timeout: int, version: str) -> None:
            asked.append(base_url)

        def ping(self) -> None:
            raise docker.errors.DockerException("nothing answers")

    monkeypatch.setattr(docker, "APIClient", NoAPI)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(EngineError, match="nothing answers"):
        REAL_CONNECT.__func__(DockerEngine)
    monkeypatch.delenv("DOCKER_HOST")
    with pytest.raises(EngineError):
        REAL_CONNECT.__func__(DockerEngine)
    assert asked == ["unix:///nonexistent.sock", docker.constants.DEFAULT_UNIX_SOCKET]
