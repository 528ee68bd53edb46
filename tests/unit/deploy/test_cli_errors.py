"""The deploy commands (mortar/cli/deploy.py): what each says when the site, the engine or the site
lock stands in the way, and a deploy through the CLI against an in-memory engine. (Bad site files
in general are covered by the site tests; here only what is specific to these commands.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import mortar.cli.deploy  # noqa: F401 - registers the commands
import mortar.engine
from mortar.cli.main import cli
from mortar.deploy import identity
from mortar.deploy.sitelock import site_lock
from mortar.errors import EngineError
from mortar.site.config import site_id
from tests.unit.fakeengine import FakeEngine

COMMANDS = ["init", "genpwd", "certificates", "bootstrap-servers", "prechecks", "plan", "pull", "deploy",
            "reconfigure", "upgrade", "post-deploy", "verify", "stop", "mariadb-recovery", "destroy"]
SITE_COMMANDS = [["bootstrap-servers"], ["prechecks"], ["plan"], ["pull"], ["deploy"], ["reconfigure"],
                 ["upgrade", "--release", "2026.2"], ["post-deploy"], ["verify"], ["stop"], ["mariadb-recovery"],
                 ["destroy", "--yes-i-really-really-mean-it"]]


@pytest.fixture(autouse=True)
def no_engine(monkeypatch) -> None:
    """This machine's engine is never reached: connecting fails as when none runs."""
    def refuse(timeout: int = 600):
        raise EngineError("the Docker Engine does not answer", fix="run `mortar engine setup`")

    monkeypatch.setattr(mortar.engine, "connect", refuse)
    monkeypatch.setattr(identity, "observe", lambda ident, regs, state=None: dict.fromkeys(regs, []))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    return {"MORTAR_STATE_DIR": str(tmp_path / "state"), "MORTAR_LOG_DIR": str(tmp_path / "log"),
            "MORTAR_EXECUTOR": None, "DOCKER_HOST": "unix:///nonexistent.sock"}


def run(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def assert_one_error(result: Result, *words: str, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert len(lines(result)) == 1, lines(result)
    line = lines(result)[0]
    assert line.startswith("error: "), line
    assert result.stdout == "", "errors go to stderr"
    for word in words:
        assert word in line, (word, line)
    return line


@pytest.mark.parametrize("command", SITE_COMMANDS, ids=lambda c: c[0])
def test_every_site_command_checks_the_site_first(site_dir: Path, env, command: list[str]) -> None:
    (site_dir / "globals.yml").write_text("enable_keystnoe: true\n")
    line = assert_one_error(run(env, *command, "--config-dir", str(site_dir)), "globals.yml", "enable_keystone")
    assert str(site_dir) in line


def test_a_missing_config_dir_says_to_run_init(tmp_path: Path, env) -> None:
    for command in ("plan", "upgrade"):
        assert_one_error(run(env, command, "--config-dir", str(tmp_path / "nowhere")), "globals.yml", "mortar init")
    assert not (tmp_path / "nowhere").exists(), "nothing written for a site that is not one"


def test_an_unknown_release_is_refused_with_the_known_ones(site_dir: Path, env) -> None:
    before = (site_dir / "passwords.yml").read_text()
    assert_one_error(run(env, "upgrade", "--release", "2027.1", "--config-dir", str(site_dir)), "--release",
                     "'2027.1' is not an OpenStack series", "2025.1, 2025.2, 2026.1, 2026.2")
    assert (site_dir / "passwords.yml").read_text() == before


def test_a_limit_that_matches_no_host(site_dir: Path, env) -> None:
    (site_dir / "inventory").write_text("[control]\nlocalhost\n[compute]\nlocalhost\n[storage]\n[monitoring]\n"
                                        "[network]\nlocalhost\n[spare]\nnode9 ansible_connection=local\n")
    assert_one_error(run(env, "plan", "--config-dir", str(site_dir), "--limit", "spare"), "--limit 'spare'",
                     "matches no host that runs a service", str(site_dir / "inventory"))
    assert_one_error(run(env, "plan", "--config-dir", str(site_dir), "--limit", "storag"), "'storag'",
                     "did you mean 'storage'?")


def test_destroy_needs_confirmation_before_anything_is_read(tmp_path: Path, env) -> None:
    line = assert_one_error(run(env, "destroy", "--config-dir", str(tmp_path / "nowhere")),
                            "--yes-i-really-really-mean-it", "refusing")
    assert "globals.yml" not in line


@pytest.mark.parametrize(("command", "step"), [(["plan"], "plan"), (["deploy"], "plan"), (["pull"], "pull"),
                                             (["stop"], "stop"), (["destroy", "--yes-i-really-really-mean-it"],
                                                                  "destroy")],
                         ids=["plan", "deploy", "pull", "stop", "destroy"])
def test_no_engine_is_a_failure_naming_the_host_and_the_fix(site_dir: Path, env, command: list[str],
                                                             step: str) -> None:
    result = run(env, *command, "--config-dir", str(site_dir))
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and result.output.startswith("error: failed on localhost:\n")
    assert f"localhost: {step}: the Docker Engine does not answer" in result.output
    assert "mortar engine setup" in result.output
    assert "Traceback" not in result.output


def test_prechecks_without_an_engine_fail_by_host(site_dir: Path, env) -> None:
    result = run(env, "prechecks", "--config-dir", str(site_dir))
    assert result.exit_code == 2, result.output
    assert lines(result)[0].startswith(f"ok   site {site_dir}: ")
    assert "FAIL localhost: the Docker Engine does not answer  -> run `mortar engine setup`" in result.output
    assert lines(result)[-1] == "1 precheck(s) failed"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_local_executor_refuses_remote_hosts(site_dir: Path, env, how: str) -> None:
    (site_dir / "inventory").write_text("[control]\nnode1 ansible_host=10.213.77.11\n[compute]\nlocalhost\n")
    args = ["plan", "--config-dir", str(site_dir)]
    if how == "option":
        args += ["--executor", "local"]
    else:
        env["MORTAR_EXECUTOR"] = "local"
    assert_one_error(run(env, *args), "node1 is not this machine", "--executor ansible",
                     str(site_dir / "inventory"))


def test_deploy_plan_stop_and_destroy_through_the_cli(site_dir: Path, env, tmp_path: Path, monkeypatch) -> None:
    from mortar.deploy.orchestrator import load_deployment

    desired = load_deployment(site_dir, state_dir=tmp_path / "state").desired
    engine = FakeEngine()
    for ref in desired.hosts["localhost"].images():
        engine.add_image(ref)
    monkeypatch.setattr(mortar.engine, "connect", lambda timeout=600: engine)
    config = ["--config-dir", str(site_dir)]
    done = run(env, "deploy", *config)
    assert done.exit_code == 0, done.output
    assert lines(done)[-1].startswith("deploy finished in ") and "Ansible" not in done.output
    assert "[localhost] containers keystone: create keystone" in done.output
    replan = run(env, "plan", *config)
    assert replan.output.splitlines()[-1] == "No changes: every container, job and registration is as desired.", \
        replan.output
    # One service only: the database stops, keystone runs on; mariadb-recovery starts it again.
    only = run(env, "stop", "--service", "mariadb", *config)
    assert only.exit_code == 0 and "[localhost] stopped mariadb" in only.output, only.output
    assert "stopped keystone" not in only.output
    assert engine.containers_by_name["keystone"].info.status == "running"
    assert_one_error(run(env, "stop", "--service", "mariadbb", *config), "no enabled service is called mariadbb",
                     "--service")
    recovered = run(env, "mariadb-recovery", *config)
    assert recovered.exit_code == 0, recovered.output
    assert "[localhost] stopped mariadb" not in recovered.output  # already stopped
    assert engine.containers_by_name["mariadb"].info.status == "running"
    assert lines(recovered)[-1].startswith("mariadb-recovery finished in ")
    stopped = run(env, "stop", *config)
    assert stopped.exit_code == 0 and "[localhost] stopped keystone" in stopped.output
    assert engine.containers_by_name["keystone"].info.status == "exited"
    gone = run(env, "destroy", "--yes-i-really-really-mean-it", *config)
    assert gone.exit_code == 0, gone.output
    assert not engine.containers_by_name and not engine.volumes_by_name
    assert not (tmp_path / "state" / "sites").exists()


def test_a_deploy_while_another_command_changes_the_site_is_refused(site_dir: Path, env, tmp_path: Path) -> None:
    with site_lock(tmp_path / "state" / "sites" / site_id(site_dir), "destroy"):
        assert_one_error(run(env, "deploy", "--config-dir", str(site_dir)),
                         "another mortar command is changing this site (mortar destroy, pid")


def test_init_then_genpwd(tmp_path: Path, env) -> None:
    site = tmp_path / "site"
    result = run(env, "init", "--config-dir", str(site))
    assert result.exit_code == 0, result.output
    assert f"wrote {site / 'globals.yml'}" in result.output
    assert lines(result)[-1] == f"site id {site_id(site)} ({site / 'site-id'})"
    assert f"kept  {site / 'globals.yml'}" in run(env, "init", "--config-dir", str(site)).output
    first = run(env, "genpwd", "--config-dir", str(site))
    assert first.exit_code == 0 and "keystone_admin_password" in first.output
    values = (site / "passwords.yml").read_text()
    assert (site / "passwords.yml").stat().st_mode & 0o777 == 0o600
    second = run(env, "genpwd", "--config-dir", str(site))
    assert f"{site / 'passwords.yml'}: 0 new secret(s)" in second.output
    assert (site / "passwords.yml").read_text() == values


@pytest.mark.parametrize("command", COMMANDS)
def test_help(env, command: str) -> None:
    result = run(env, command, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {command} [OPTIONS]")
    assert "--config-dir" in result.output


def test_top_level_help_lists_the_deploy_commands(env) -> None:
    result = run(env, "--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.output, command
    assert "--yes-i-really-really-mean-it" in run(env, "destroy", "--help").output
    assert "--accept-new-host-keys" in run(env, "bootstrap-servers", "--help").output


def test_certificates_through_the_cli(site_dir: Path, env) -> None:
    config = ["--config-dir", str(site_dir)]
    assert_one_error(run(env, "certificates", *config), "internal_vip_address", str(site_dir / "globals.yml"))
    assert not (site_dir / "certificates" / "internal.pem").exists()
    globals_file = site_dir / "globals.yml"
    globals_file.write_text(globals_file.read_text() + "\ninternal_vip_address: 10.0.0.10\n")
    made = run(env, "certificates", "--name", "cloud.example.org", *config)
    assert made.exit_code == 0, made.output
    assert lines(made) == [f"made the site CA: {site_dir / 'certificates' / 'ca.crt'}",
                           "issued the certificate of 10.0.0.10, cloud.example.org: "
                           f"{site_dir / 'certificates' / 'internal.pem'}",
                           "issued the certificate of host localhost (127.0.0.1): "
                           f"{site_dir / 'certificates' / 'hosts' / 'localhost.crt'}"]
    again = run(env, "certificates", "--name", "cloud.example.org", *config)
    assert lines(again)[1:] == [f"kept the certificate of 10.0.0.10, cloud.example.org: "
                                f"{site_dir / 'certificates' / 'internal.pem'}",
                                "kept the certificates of 1 host(s): localhost"]
    assert "PRIVATE" not in made.output
