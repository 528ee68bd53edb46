import pytest
from click.testing import CliRunner

from mortar.cli.main import cli, main  # noqa: F401


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    # These commands must fail (or list) before talking to any engine.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def run(*args):
    import mortar.cli.build  # noqa: F401 - registers the commands
    import mortar.cli.engine  # noqa: F401

    return CliRunner().invoke(cli, list(args))


def error_lines(result):
    return [line for line in result.output.splitlines() if line.strip()]


def test_unknown_image_regex_is_one_line_exit_2():
    result = run("build", "cinder-volume")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: command line: no image matches 'cinder-volume' "
                                   "(see `mortar build --list-images`)"]


def test_bad_override_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.j2"
    bad.write_text("{% extends parent_template %}\n{% block header %}\n")
    result = run("build", "keystone", "--template-override", str(bad))
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and str(bad) in lines[0] and "line" in lines[0]


def test_missing_override_file(tmp_path):
    result = run("build", "--template-override", str(tmp_path / "nope.j2"))
    assert result.exit_code == 2 and "nope.j2" in result.output


def test_malformed_plugin(tmp_path):
    result = run("build", "--plugin", "neutron-server", "neutron")
    assert result.exit_code == 2 and "IMAGE=PIP-REQUIREMENT" in result.output
    result = run("build", "--plugin", "no-such-image=foo==1", "neutron")
    assert result.exit_code == 2 and "no-such-image" in result.output


def test_plugins_file_names_its_line(tmp_path):
    plugins = tmp_path / "plugins.txt"
    plugins.write_text("# ML2 drivers\nneutron-server=networking-foo==1.0\nbroken-line\n")
    result = run("build", "--plugins-file", str(plugins), "neutron")
    assert result.exit_code == 2 and f"{plugins}:3" in result.output


def test_unknown_profile():
    result = run("build", "--profile", "everything")
    assert result.exit_code == 2 and "all, core, infra" in result.output


def test_push_needs_registry():
    result = run("build", "--push", "keystone")
    assert result.exit_code == 2 and "--registry" in result.output


def test_list_images_includes_parents():
    result = run("build", "--list-images", "^keystone$")
    assert result.exit_code == 0
    assert result.output.split() == ["base", "python-builder", "openstack-base", "keystone"]


def test_list_dependencies_profile_core():
    result = run("build", "--list-dependencies", "--profile", "core")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("base")
    assert "    keystone  (build stage from python-builder)" in lines and "      nova-compute" in lines
    assert "  python-builder" in lines
    assert not any("registry" in line for line in lines)


def test_every_command_has_help():
    for args in (["--help"], ["build", "--help"], ["lock", "--help"], ["engine", "setup", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.output
