import json

import pytest
from click.testing import CliRunner

from mortar.cli.main import cli, main  # noqa: F401


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    # These commands must fail (or list) before talking to any engine.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def run(*args):
    import mortar.cli.engine  # noqa: F401
    import mortar.cli.images  # noqa: F401 - registers the commands

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
    assert "    keystone  (build stage from python-builder)" in lines
    # nova-compute builds libvirt-python in a stage of its own on top of nova-base.
    assert "      nova-compute  (build stage from python-builder)" in lines
    # The data plane: the hypervisor, the switch with OVN's controller on it, the metadata agent.
    assert "  nova-libvirt" in lines and "      neutron-ovn-metadata-agent" in lines
    assert lines.index("    ovn-controller") == lines.index("  openvswitch") + 1
    assert "  python-builder" in lines
    assert not any("registry" in line for line in lines)


def test_every_command_has_help():
    for args in (["--help"], ["build", "--help"], ["lock", "--help"], ["engine", "setup", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.output


def test_push_to_a_url_is_refused_naming_the_option():
    result = run("build", "--push", "--registry", "http://x", "keystone")
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: --registry: 'http://x' is a URL") and "HOST:PORT" in lines[0]


def test_push_without_passwords_says_how_to_make_them(tmp_path):
    result = run("build", "--push", "--registry", "10.0.0.10:4000", "--config-dir", str(tmp_path), "keystone")
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'passwords.yml'}: passwords.yml not found")
    assert "mortar genpwd" in lines[0]


def test_push_refuses_a_passwords_file_others_can_read(tmp_path):
    passwords = tmp_path / "passwords.yml"
    passwords.write_text("docker_registry_password: s3cr3t-registry\n")
    passwords.chmod(0o644)
    result = run("build", "--push", "--registry", "10.0.0.10:4000", "--config-dir", str(tmp_path), "keystone")
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "readable by others (mode 0644)" in lines[0] and f"chmod 600 {passwords}" in lines[0]
    assert "s3cr3t" not in result.output


def test_push_needs_the_registry_password(tmp_path):
    passwords = tmp_path / "passwords.yml"
    passwords.write_text("keystone_admin_password: x\n")
    passwords.chmod(0o600)
    result = run("build", "--push", "--registry", "10.0.0.10:4000", "--config-dir", str(tmp_path), "keystone")
    assert result.exit_code == 2
    assert "docker_registry_password: no docker_registry_password to push with" in result.output


def test_an_insecure_push_asks_for_no_password(tmp_path):
    # It gets past the credentials to the engine, which unit tests never reach.
    result = run("build", "--push", "--registry", "127.0.0.1:4000", "--registry-insecure",
                 "--config-dir", str(tmp_path), "--logs-dir", str(tmp_path / "logs"), "^base$")
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and "Docker Engine does not answer" in lines[0]


def test_registry_auth_reads_the_site(site_dir):
    from mortar.cli.images import registry_auth
    from mortar.files import load_yaml

    password = load_yaml(site_dir / "passwords.yml")["docker_registry_password"]
    assert registry_auth(site_dir, "10.0.0.10:4000") == {"username": "mortar", "password": password,
                                                         "serveraddress": "10.0.0.10:4000"}
    with open(site_dir / "globals.yml", "a") as globals_file:
        globals_file.write("\ndocker_registry_username: puller\n")
    assert registry_auth(site_dir, "10.0.0.10:4000")["username"] == "puller"


@pytest.fixture
def fake_engine(monkeypatch, tmp_path):
    from mortar.cli import images
    from tests.unit.fakeengine import FakeEngine

    engine = FakeEngine()
    engine.add_image("debian:trixie")
    monkeypatch.setattr("mortar.engine.connect", lambda timeout=600: engine)
    monkeypatch.setattr(images, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setenv("MORTAR_STATE_DIR", str(tmp_path / "state"))
    return engine


def test_build_push_records_the_digest_of_every_pushed_image(site_dir, tmp_path, fake_engine):
    from mortar.files import load_yaml
    from mortar.registry.pins import pushed_digests

    summary = tmp_path / "out" / "summary.json"
    result = run("build", "^keystone$", "--push", "--registry", "10.0.0.10:4000", "--config-dir", str(site_dir),
                 "--logs-dir", str(tmp_path / "logs"), "--summary-json", str(summary))
    assert result.exit_code == 0, result.output
    ref = "10.0.0.10:4000/mortar/keystone:2026.2"
    assert fake_engine.pushed == [ref]  # the selection only, not its parents
    password = load_yaml(site_dir / "passwords.yml")["docker_registry_password"]
    assert fake_engine.push_auth[ref] == {"username": "mortar", "password": password,
                                          "serveraddress": "10.0.0.10:4000"}
    digest = pushed_digests(tmp_path / "state")[ref]
    assert f"10.0.0.10:4000/mortar/keystone@{digest}" in fake_engine.registry
    images = {i["name"]: i["status"] for i in json.loads(summary.read_text())["images"]}
    assert images == {"base": "done", "python-builder": "done", "openstack-base": "done", "keystone": "done"}
    assert (tmp_path / "out" / "manifests" / "keystone.json").is_file()
    assert password not in result.output


def test_a_failed_build_exits_1_and_pushes_nothing(site_dir, tmp_path, fake_engine):
    from mortar.errors import EngineError
    from mortar.registry.pins import pushed_digests

    def fail_openstack_base(operation, target):
        if operation == "build" and "openstack-base" in target:
            raise EngineError("pip install failed")

    fake_engine.on_call = fail_openstack_base
    result = run("build", "^keystone$", "--push", "--registry", "10.0.0.10:4000", "--config-dir", str(site_dir),
                 "--logs-dir", str(tmp_path / "logs"))
    assert result.exit_code == 1
    assert "FAILED openstack-base: pip install failed" in result.output
    assert fake_engine.pushed == [] and pushed_digests(tmp_path / "state") == {}
