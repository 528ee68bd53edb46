"""The deploy CLI turns every bad input into one `error: ...` line and exit code 2, without an engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import mortar.cli.build  # noqa: F401 - registers the commands
import mortar.cli.deploy  # noqa: F401
import mortar.cli.engine  # noqa: F401
from mortar.cli.main import cli

# No engine anywhere: nothing here may reach the live deployment on this machine.
ENV = {"DOCKER_HOST": "unix:///nonexistent.sock", "DOCKER_TLS_VERIFY": None, "DOCKER_CERT_PATH": None}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV, catch_exceptions=False)


def output_lines(result: Result) -> list[str]:
    # click >= 8.2: `output` holds stdout and stderr as the terminal would show them.
    return [line for line in result.output.splitlines() if line.strip()]


def assert_one_error(result: Result, *words: str) -> str:
    lines = output_lines(result)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("error: "), line
    assert result.stdout == "", "errors go to stderr"
    for word in words:
        assert word in line, (word, line)
    return line


def set_passwords(site_dir: Path, change: Callable[[dict], None]) -> None:
    path = site_dir / "passwords.yml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def _globals(text: str) -> Callable[[Path], object]:
    return lambda site: (site / "globals.yml").write_text(text)


def _unknown_override(site: Path) -> None:
    (site / "config" / "keystnoe").mkdir()
    (site / "config" / "keystnoe" / "keystone.conf").write_text("[token]\nexpiration = 1\n")


BAD_INPUTS: dict[str, tuple[Callable[[Path], object], str, list[str]]] = {
    # name: (how to break the site, the file the error names, other words it must contain)
    "malformed-yaml": (_globals("enable_nova: true\nkeystone_workers: [1\n"), "globals.yml", ["line 3"]),
    "unknown-key": (_globals("enable_keystnoe: true\n"), "globals.yml", ["enable_keystnoe", "enable_keystone"]),
    "wrong-type-str": (_globals('keystone_workers: "two"\n'), "globals.yml", ["keystone_workers", "int"]),
    "wrong-type-bool": (_globals("enable_nova: 1\n"), "globals.yml", ["enable_nova", "bool"]),
    "bad-choice": (_globals("nova_compute_driver: xen\n"), "globals.yml", ["nova_compute_driver", "xen"]),
    "disabled-dependency": (_globals("enable_mariadb: false\n"), "globals.yml", ["enable_mariadb", "keystone"]),
    "missing-password": (lambda site: set_passwords(site, lambda d: d.pop("keystone_admin_password")),
                         "passwords.yml", ["keystone_admin_password", "mortar genpwd"]),
    "missing-passwords-file": (lambda site: (site / "passwords.yml").unlink(), "passwords.yml", ["not found"]),
    "unknown-override-dir": (_unknown_override, "keystnoe", ["keystone"]),
    "empty-compute-group": (lambda site: (site / "inventory").write_text(
        "[control]\nlocalhost\n[compute]\n"), "inventory", ["[compute]"]),
    "missing-inventory": (lambda site: (site / "inventory").unlink(), "inventory", ["not found"]),
    "malformed-inventory": (lambda site: (site / "inventory").write_text("[control\nlocalhost\n"),
                            "inventory", ["line 1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_plan_bad_input_is_one_error_line(site_dir: Path, case: str) -> None:
    breaker, filename, words = BAD_INPUTS[case]
    breaker(site_dir)
    line = assert_one_error(run("plan", "--config-dir", str(site_dir)), filename, *words)
    assert str(site_dir) in line


@pytest.mark.parametrize("command", ["prechecks", "deploy", "reconfigure", "stop", "post-deploy", "verify"])
def test_other_commands_validate_the_site_first(site_dir: Path, command: str) -> None:
    (site_dir / "globals.yml").write_text("enable_keystnoe: true\n")
    assert_one_error(run(command, "--config-dir", str(site_dir)), "globals.yml", "enable_keystone")


def test_missing_config_dir(tmp_path: Path) -> None:
    assert_one_error(run("plan", "--config-dir", str(tmp_path / "nowhere")), "globals.yml", "mortar init")


def test_plan_without_engine_says_so(site_dir: Path) -> None:
    line = assert_one_error(run("plan", "--config-dir", str(site_dir)))
    assert "Docker Engine does not answer" in line
    assert "mortar engine setup" in line


def test_destroy_needs_confirmation(tmp_path: Path) -> None:
    # refused before anything is loaded: the (missing) site is never read
    result = run("destroy", "--config-dir", str(tmp_path / "nowhere"))
    line = assert_one_error(result, "--yes-i-really-really-mean-it")
    assert "refusing" in line
    assert "globals.yml" not in line


def test_init_then_genpwd(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = run("init", "--config-dir", str(site))
    assert result.exit_code == 0, result.output
    assert f"wrote {site / 'globals.yml'}" in result.output
    assert (site / "inventory").is_file()
    again = run("init", "--config-dir", str(site))
    assert f"kept  {site / 'globals.yml'}" in again.output
    first = run("genpwd", "--config-dir", str(site))
    assert first.exit_code == 0, first.output
    assert "new secret(s)" in first.output and "keystone_admin_password" in first.output
    values = (site / "passwords.yml").read_text()
    second = run("genpwd", "--config-dir", str(site))
    assert f"{site / 'passwords.yml'}: 0 new secret(s)" in second.output
    assert (site / "passwords.yml").read_text() == values


HELP_COMMANDS = ["init", "genpwd", "prechecks", "plan", "deploy", "post-deploy", "verify", "reconfigure", "stop",
                 "destroy"]


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {command} [OPTIONS]")
    assert "--config-dir" in result.output


def test_top_level_help_lists_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in HELP_COMMANDS:
        assert f"  {command} " in result.output, command
    assert "--yes-i-really-really-mean-it" in run("destroy", "--help").output


def test_local_executor_refuses_remote_hosts(site_dir):
    (site_dir / "inventory").write_text("[control]\nnode1 ansible_host=10.213.77.11\n[compute]\nlocalhost\n")
    result = run("plan", "--config-dir", str(site_dir), "--executor", "local")
    assert result.exit_code == 2
    assert "node1" in result.output and "--executor ansible" in result.output
    assert str(site_dir / "inventory") in result.output


def test_unreachable_host_fails_prechecks_by_name(site_dir):
    # A real SSH attempt through Ansible to a loopback port nothing listens on.
    (site_dir / "inventory").write_text(
        "[control]\nnode1 ansible_host=127.0.0.2 ansible_port=1 ansible_user=root api_address=127.0.0.2\n"
        "[compute]\nnode1\n")
    result = run("prechecks", "--config-dir", str(site_dir))
    assert result.exit_code == 2, result.output
    assert "FAIL node1: unreachable" in result.output
    assert "bootstrap-servers" in result.output
