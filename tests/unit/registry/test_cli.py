"""`mortar registry ...` (mortar/cli/registry.py): help texts and one-line errors, without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mortar.cli.main import cli


def run(*args: str) -> Result:
    import mortar.cli.registry  # noqa: F401 - registers the commands

    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("command", [[], ["start"], ["stop"], ["status"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = run("registry", *command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("command", [["start"], ["status"]])
def test_no_engine_is_one_error_line(site_dir: Path, command: list[str]) -> None:
    result = run("registry", *command, "--config-dir", str(site_dir))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the Docker Engine does not answer"), lines


def test_a_bad_address_is_refused_before_the_engine(site_dir: Path) -> None:
    result = run("registry", "start", "--config-dir", str(site_dir), "--address", "10.0.0.10")
    assert result.exit_code == 2
    assert "docker_registry: '10.0.0.10' is not HOST:PORT" in result.output
