"""Tests for mortar-start, the in-image entrypoint (mortar/runtime/mortar_start.py)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mortar.runtime import mortar_start as ms

SCRIPT = Path(ms.__file__)
SECRET = "password = s3cr3t-do-not-log-4242"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="chown and user switching need root")


def write_spec(directory: Path, spec: dict[str, Any], name: str = "spec.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(spec))
    return path


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = ms.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config directory like /var/lib/mortar/config, holding one secret-bearing file."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "keystone.conf").write_text(f"[database]\n{SECRET}\n")
    return cfg


def test_load_spec_json_and_yaml_agree(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    spec = {
        "command": "keystone-manage db_sync",
        "files": [{"source": "a", "dest": "/etc/a", "mode": "0640"}],
    }
    json_path = write_spec(tmp_path, spec)
    yaml_path = tmp_path / "spec.yaml"
    yaml_path.write_text(
        "command: keystone-manage db_sync\nfiles:\n  - source: a\n    dest: /etc/a\n    mode: '0640'\n"
    )
    assert ms.load_spec(str(json_path)) == ms.load_spec(str(yaml_path)) == spec


def test_validate_splits_command_and_resolves_sources(tmp_path: Path) -> None:
    spec = ms.validate(
        {"command": "sh -c 'echo hi there'", "files": [{"source": "a.conf", "dest": "/etc/a.conf"}]},
        str(tmp_path),
    )
    assert spec.command == ["sh", "-c", "echo hi there"]
    assert spec.files[0]["source"] == str(tmp_path / "a.conf")
    assert spec.files[0]["mode"] is None and spec.files[0]["optional"] is False


def test_yaml_without_pyyaml_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spec.yml"
    path.write_text("command: true\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    with pytest.raises(ms.SpecError, match="python3-yaml"):
        ms.load_spec(str(path))


def test_malformed_spec_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"command": ["true"],,}')
    rc, _, err = run_main(["--spec", str(path), "--copy-only"], capsys)
    assert rc == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert str(path) in err


def test_missing_spec_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_main(["--spec", str(tmp_path / "nope.json"), "--check"], capsys)
    assert rc == 2 and "nope.json" in err


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"command": "true", "colour": "blue"}, "'colour'"),
        ({"files": [{"source": "keystone.conf", "dest": "/etc/x", "mod": "0640"}]}, "'mod'"),
        ({"directories": [{"path": "/var/log/x", "owner": "root", "recursive": True}]}, "'recursive'"),
        ({"files": [{"source": "keystone.conf", "dest": "/etc/x", "mode": 640}]}, "mode 640"),
        ({"files": [{"source": "keystone.conf", "dest": "/etc/x", "mode": "0998"}]}, "mode '0998'"),
        ({"files": [{"source": "keystone.conf", "dest": "relative/x"}]}, "'dest' must be an absolute path"),
        (
            {"files": [{"source": "keystone.conf", "dest": "/etc/x", "owner": "no-such-user-x"}]},
            "no-such-user-x",
        ),
        ({"directories": [{"path": "/x", "recurse": "yes"}]}, "'recurse' must be true or false"),
        ({"user": "no-such-user-y", "command": "true"}, "no-such-user-y"),
    ],
)
def test_invalid_spec_exits_2_naming_the_problem(
    config: Path, capsys: pytest.CaptureFixture[str], spec: dict[str, Any], needle: str
) -> None:
    rc, _, err = run_main(["--spec", str(write_spec(config, spec)), "--copy-only"], capsys)
    assert rc == 2
    assert needle in err
    assert "Traceback" not in err


def test_missing_source_exits_2_and_changes_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "etc" / "present.conf"
    spec = {
        "files": [
            {"source": "keystone.conf", "dest": str(dest)},
            {"source": "absent.conf", "dest": str(tmp_path / "etc" / "absent.conf")},
        ]
    }
    rc, _, err = run_main(["--spec", str(write_spec(config, spec)), "--copy-only"], capsys)
    assert rc == 2
    assert str(config / "absent.conf") in err
    assert not dest.exists()  # validation happens before any file is placed


def test_optional_missing_source_is_skipped(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "etc" / "absent.conf"
    spec = {"files": [{"source": "absent.conf", "dest": str(dest), "optional": True}]}
    rc, _, err = run_main(["--spec", str(write_spec(config, spec)), "--copy-only"], capsys)
    assert rc == 0
    assert not dest.exists()
    assert "skip" in err


@needs_root
def test_copy_places_file_with_content_owner_mode(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "etc" / "keystone" / "keystone.conf"
    spec = {"files": [{"source": "keystone.conf", "dest": str(dest), "owner": "1234:2345", "mode": "0640"}]}
    rc, _, err = run_main(["--spec", str(write_spec(config, spec)), "--copy-only"], capsys)
    assert rc == 0, err
    assert dest.read_text() == (config / "keystone.conf").read_text()
    st = dest.stat()
    assert (st.st_uid, st.st_gid) == (1234, 2345)
    assert mode_of(dest) == 0o640
    assert os.listdir(dest.parent) == ["keystone.conf"]  # no temp file left behind
    assert "s3cr3t" not in err
    assert str(dest) in err


@needs_root
def test_copy_replaces_existing_file_and_defaults_group(config: Path, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    dest = tmp_path / "keystone.conf"
    dest.write_text("old contents\n")
    dest.chmod(0o666)
    spec = ms.validate(
        {"files": [{"source": "keystone.conf", "dest": str(dest), "owner": "nobody", "mode": "0600"}]},
        str(config),
    )
    ms.apply(ms.plan(spec))
    assert SECRET in dest.read_text()
    assert (dest.stat().st_uid, dest.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert mode_of(dest) == 0o600


def test_copy_without_mode_keeps_source_mode(config: Path, tmp_path: Path) -> None:
    (config / "run.sh").write_text("#!/bin/sh\n")
    (config / "run.sh").chmod(0o751)
    dest = tmp_path / "bin" / "run.sh"
    ms.apply(ms.plan(ms.validate({"files": [{"source": "run.sh", "dest": str(dest)}]}, str(config))))
    assert mode_of(dest) == 0o751


@needs_root
def test_directories_created_with_owner_and_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logdir = tmp_path / "var" / "log" / "keystone"
    spec = {"directories": [{"path": str(logdir), "owner": "1234:1234", "mode": "0750"}]}
    rc, _, _ = run_main(["--spec", str(write_spec(tmp_path, spec)), "--copy-only"], capsys)
    assert rc == 0
    assert logdir.is_dir()
    assert (logdir.stat().st_uid, logdir.stat().st_gid) == (1234, 1234)
    assert mode_of(logdir) == 0o750


@needs_root
def test_directory_recurse_chowns_the_tree(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "file").write_text("x")
    for recurse, expect_uid in ((False, 0), (True, 1234)):
        spec = ms.validate(
            {"directories": [{"path": str(data), "owner": "1234:1234", "recurse": recurse}]}, "/"
        )
        ms.apply(ms.plan(spec))
        assert data.stat().st_uid == 1234
        assert (data / "sub" / "file").stat().st_uid == expect_uid
        assert (data / "sub").stat().st_uid == expect_uid


@needs_root
def test_directory_source_is_copied_recursively(config: Path, tmp_path: Path) -> None:
    src = config / "conf.d"
    (src / "sub").mkdir(parents=True)
    (src / "a.conf").write_text("a\n")
    (src / "sub" / "b.conf").write_text("b\n")
    dest = tmp_path / "etc" / "conf.d"
    spec = {"files": [{"source": "conf.d", "dest": str(dest), "owner": "1234:1234", "mode": "0640"}]}
    ms.apply(ms.plan(ms.validate(spec, str(config))))
    assert (dest / "a.conf").read_text() == "a\n"
    assert (dest / "sub" / "b.conf").read_text() == "b\n"
    for f in (dest / "a.conf", dest / "sub" / "b.conf"):
        assert mode_of(f) == 0o640 and f.stat().st_uid == 1234
    for d in (dest, dest / "sub"):
        assert mode_of(d) == 0o750 and d.stat().st_uid == 1234


def test_dir_mode_adds_x_where_r() -> None:
    assert ms.dir_mode(0o640) == 0o750
    assert ms.dir_mode(0o600) == 0o700
    assert ms.dir_mode(0o644) == 0o755
    assert ms.dir_mode(0o200) == 0o200


@needs_root
def test_check_reports_content_mode_owner_and_missing_drift(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "etc" / "keystone.conf"
    logdir = tmp_path / "log"
    spec_path = write_spec(
        config,
        {
            "directories": [{"path": str(logdir), "owner": "1234:1234", "mode": "0750"}],
            "files": [{"source": "keystone.conf", "dest": str(dest), "owner": "1234:1234", "mode": "0640"}],
        },
    )
    args = ["--spec", str(spec_path)]
    rc, out, err = run_main([*args, "--check"], capsys)
    assert rc == 1 and f"missing: {dest}" in out and f"missing: {logdir}" in out

    assert run_main([*args, "--copy-only"], capsys)[0] == 0
    rc, out, _ = run_main([*args, "--check"], capsys)
    assert (rc, out) == (0, "")

    dest.write_text("[database]\npassword = changed-by-hand\n")
    rc, out, _ = run_main([*args, "--check"], capsys)
    assert rc == 1
    assert f"--- {dest}" in out and f"+++ {dest}" in out
    assert "-password = changed-by-hand" in out and f"+{SECRET}" in out
    assert dest.read_text() == "[database]\npassword = changed-by-hand\n"  # --check changed nothing

    ms.apply(ms.plan(ms.validate(json.loads(spec_path.read_text()), str(config))))
    dest.chmod(0o644)
    rc, out, _ = run_main([*args, "--check"], capsys)
    assert rc == 1 and f"mode: {dest} is 0644, want 0640" in out

    dest.chmod(0o640)
    os.chown(dest, 0, 0)
    os.chmod(logdir, 0o700)
    rc, out, _ = run_main([*args, "--check"], capsys)
    assert rc == 1
    assert f"owner: {dest} is 0:0, want 1234:1234" in out
    assert f"mode: {logdir} is 0700, want 0750" in out
    assert len(out.splitlines()) == 2


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory outside pytest's 0700 tmp tree, so an unprivileged user can reach files in it."""
    path = Path(tempfile.mkdtemp(prefix="mortar-start-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@needs_root
def test_exec_drops_privileges_and_never_logs_contents(config: Path, world_dir: Path) -> None:
    dest = world_dir / "secret.conf"
    spec = {
        "command": ["sh", "-c", f'id -u; id -g; echo "$HOME $USER $MORTAR_TEST"; pwd; cat {dest}'],
        "user": "nobody",
        "environment": {"MORTAR_TEST": "hello"},
        "workdir": str(world_dir),
        "files": [{"source": "keystone.conf", "dest": str(dest), "owner": "nobody", "mode": "0600"}],
    }
    nobody = pwd.getpwnam("nobody")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--spec", str(write_spec(config, spec))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(nobody.pw_uid) == "65534"
    assert lines[1] == str(nobody.pw_gid)
    assert lines[2] == f"{nobody.pw_dir} nobody hello"
    assert lines[3] == str(world_dir)
    assert SECRET in result.stdout
    assert "s3cr3t" not in result.stderr
    assert all(line.startswith("mortar-start: ") for line in result.stderr.splitlines())


def test_spec_from_env_and_command_not_found(config: Path, tmp_path: Path) -> None:
    spec_path = write_spec(config, {"command": "/nonexistent/mortar-cmd --flag"})
    env = dict(os.environ, MORTAR_SPEC=str(spec_path))
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 127
    assert "/nonexistent/mortar-cmd" in result.stderr


def test_no_command_without_copy_only_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_main(["--spec", str(write_spec(tmp_path, {"directories": []}))], capsys)
    assert rc == 2 and "command" in err


def test_help_describes_the_spec() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for word in ("--check", "--copy-only", "MORTAR_SPEC", '"directories"', '"optional"'):
        assert word in result.stdout


def run_script(spec_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--spec", str(spec_path), *args], capture_output=True,
                          text=True, timeout=30, env=env)


def test_output_gets_everything_and_the_container_log_nothing(config: Path, tmp_path: Path) -> None:
    output = tmp_path / "output" / "job" / "output.log"  # its directory does not exist yet
    spec = {"command": ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"], "output": str(output)}
    spec_path = write_spec(config, spec)
    first = run_script(spec_path)
    assert first.returncode == 3  # the command's own status
    assert (first.stdout, first.stderr) == ("", "")
    text = output.read_text()
    assert "to-stdout\n" in text and "to-stderr\n" in text
    assert "mortar-start: exec as " in text
    assert mode_of(output) == 0o600
    run_script(spec_path)
    assert output.read_text().startswith(text) and output.read_text().count("to-stdout") == 2  # appended


def test_output_holds_mortar_starts_own_errors(config: Path, tmp_path: Path) -> None:
    output = tmp_path / "output.log"
    spec = {"command": "true", "output": str(output),
            "files": [{"source": "absent.conf", "dest": str(tmp_path / "x.conf")}]}
    result = run_script(write_spec(config, spec))
    assert result.returncode == 2 and result.stderr == ""
    assert "absent.conf" in output.read_text()


@needs_root
def test_output_is_opened_before_privileges_drop(config: Path, tmp_path: Path) -> None:
    # tmp_path is root's alone (0700): nobody could not open the file, only inherit it.
    output = tmp_path / "root-only" / "output.log"
    spec = {"command": ["sh", "-c", "id -u; echo err >&2"], "user": "nobody", "workdir": "/",
            "output": str(output)}
    result = run_script(write_spec(config, spec))
    assert result.returncode == 0, output.read_text()
    assert output.read_text().splitlines()[-2:] == [str(pwd.getpwnam("nobody").pw_uid), "err"]
    assert output.stat().st_uid == 0 and mode_of(output) == 0o600


def test_check_does_not_redirect(config: Path, tmp_path: Path) -> None:
    output = tmp_path / "output.log"
    dest = tmp_path / "etc" / "keystone.conf"
    spec = {"command": "true", "output": str(output), "files": [{"source": "keystone.conf", "dest": str(dest)}]}
    result = run_script(write_spec(config, spec), "--check")
    assert result.returncode == 1 and f"missing: {dest}" in result.stdout
    assert not output.exists()


def test_the_exec_line_names_the_program_and_counts_the_arguments(config: Path, tmp_path: Path) -> None:
    secret = "hunter2-do-not-log-9191"
    spec = {"command": ["sh", "-c", 'test "$1" = --password', "sh", "--password", secret],
            "environment": {"OS_PASSWORD": secret}}
    result = run_script(write_spec(config, spec))
    assert result.returncode == 0, result.stderr
    assert f"mortar-start: exec as {os.geteuid()}: sh (5 argument(s))" in result.stderr.splitlines()
    assert secret not in result.stderr and "--password" not in result.stderr and "test " not in result.stderr
    output = tmp_path / "output.log"
    run_script(write_spec(config, {**spec, "output": str(output)}))
    assert "sh (5 argument(s))" in output.read_text() and secret not in output.read_text()


def test_a_command_not_found_names_only_the_program(config: Path) -> None:
    result = run_script(write_spec(config, {"command": ["/nonexistent/tool", "--token", "s3cr3t-arg"]}))
    assert result.returncode == 127
    assert "/nonexistent/tool" in result.stderr and "s3cr3t-arg" not in result.stderr


@pytest.mark.parametrize("output", ["relative/output.log", "", 5, ["/x"]])
def test_an_unusable_output_is_a_bad_spec(config: Path, tmp_path: Path, output: Any,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write_spec(config, {"command": "true", "output": output})
    rc, out, err = run_main(["--spec", str(spec_path)], capsys)
    assert rc == 2 and out == ""
    assert "'output' must be an absolute path" in err and len(err.splitlines()) == 1
    assert not (config / "relative").exists()


def test_an_output_that_cannot_be_opened_exits_1(config: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_script(write_spec(config, {"command": "true", "output": str(blocker / "output.log")}))
    assert result.returncode == 1
    assert result.stderr.startswith("mortar-start: error: ") and str(blocker) in result.stderr
