"""The horizon service of the catalogue: what its desired state renders to (no engine needed)."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path
from typing import Any

import pytest
import yaml

from mortar.catalogue.loader import load_catalogue
from mortar.deploy.desired import ContainerSpec, ServiceState, compute_desired
from mortar.deploy.runner import load_deployment
from mortar.site.config import genpwd, required_passwords
from mortar.site.samples import write_samples

SETTINGS_DEST = "/var/lib/openstack/lib/python3.13/site-packages/openstack_dashboard/local/local_settings.py"


def make_site(config_dir: Path, globals_: dict[str, Any] | None = None,
              passwords: dict[str, str] | None = None) -> Path:
    """What `mortar init` + `mortar genpwd` write, plus the given globals and passwords."""
    write_samples(config_dir)
    if globals_:
        with (config_dir / "globals.yml").open("a") as out:
            yaml.safe_dump(globals_, out)
    services = load_catalogue()
    path = config_dir / "passwords.yml"
    if passwords:
        path.write_text(yaml.safe_dump(passwords))
    genpwd(path, required_passwords(services, set(services)))
    return config_dir


def horizon_state(config_dir: Path) -> ServiceState:
    deployment = load_deployment(config_dir)
    return deployment.desired.hosts["localhost"].services["horizon"]


def files_of(container: ContainerSpec) -> dict[str, str]:
    return {f.dest: f.content for f in container.files}


def assignments(source: str) -> dict[str, ast.expr]:
    """Top-level `NAME = value` of a Python module, as AST nodes."""
    tree = ast.parse(source)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    return found


def literal(source: str, name: str) -> Any:
    return ast.literal_eval(assignments(source)[name])


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site", {"horizon_port": 8089, "horizon_workers": 3})


def test_catalogue_declares_horizon():
    spec = load_catalogue()["horizon"]
    assert spec.depends == ["keystone", "memcached"]
    assert spec.group == "control"
    assert spec.options["horizon_port"]["type"] == "int" and spec.options["horizon_port"]["default"] == 80
    assert spec.options["horizon_workers"]["type"] == "int" and spec.options["horizon_workers"]["default"] == 2
    assert spec.passwords == {"horizon_secret_key": "password"}
    assert spec.volumes == ["horizon_static"]
    assert not spec.registration and not spec.databases
    assert [(j.name, j.container, j.phase, j.run, j.user) for j in spec.jobs] == [
        ("static", "horizon", "before", "on_change", "horizon")]


def test_container(site: Path):
    state = horizon_state(site)
    assert [c.name for c in state.containers] == ["horizon"]
    container = state.containers[0]
    assert container.image == "mortar/horizon:2026.2"
    # uWSGI binds the port as root and drops to horizon itself (uid/gid in the ini).
    assert container.user == "root"
    assert container.command == ["uwsgi", "--ini", "/etc/horizon/horizon-uwsgi.ini"]
    assert container.environment == {"DJANGO_SETTINGS_MODULE": "openstack_dashboard.settings"}
    assert container.volumes == ["horizon_static:/var/lib/horizon/static"]
    assert {d["path"]: d["owner"] for d in container.directories} == {
        "/var/lib/horizon": "horizon:horizon", "/var/lib/horizon/static": "horizon:horizon"}
    assert container.healthcheck == {
        "test": "healthcheck_curl http://127.0.0.1:8089/auth/login/ --expect 200", "interval": 10}
    assert container.ports == [8089]
    settings = next(f for f in container.files if f.dest == SETTINGS_DEST)
    assert (settings.owner, settings.mode) == ("horizon", "0640")
    assert set(container.rendered_files()) == {"local_settings.py", "horizon-uwsgi.ini", "spec.json"}


def test_uwsgi_ini(site: Path):
    ini = files_of(horizon_state(site).containers[0])["/etc/horizon/horizon-uwsgi.ini"]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(ini)
    uwsgi = parser["uwsgi"]
    assert uwsgi["shared-socket"] == "127.0.0.1:8089" and uwsgi["http-socket"] == "=0"
    assert (uwsgi["uid"], uwsgi["gid"]) == ("horizon", "horizon")
    assert uwsgi["module"] == "openstack_dashboard.wsgi:application"
    assert uwsgi["virtualenv"] == "/var/lib/openstack"
    assert uwsgi["processes"] == "3"
    assert uwsgi["static-map"] == "/static=/var/lib/horizon/static"
    assert uwsgi["add-header"] == "Connection: close"
    for flag in ("master", "lazy-apps", "enable-threads", "die-on-term", "need-app"):
        assert uwsgi[flag] == "true"


def test_local_settings(site: Path):
    passwords = yaml.safe_load((site / "passwords.yml").read_text())
    text = files_of(horizon_state(site).containers[0])[SETTINGS_DEST]
    ast.parse(text)
    assert passwords["horizon_secret_key"] in text
    assert literal(text, "SECRET_KEY") == passwords["horizon_secret_key"]
    assert literal(text, "OPENSTACK_KEYSTONE_URL") == "http://127.0.0.1:5000/v3"
    assert literal(text, "OPENSTACK_KEYSTONE_DEFAULT_ROLE") == "member"
    assert literal(text, "DEBUG") is False
    assert literal(text, "ALLOWED_HOSTS") == ["*"]
    assert literal(text, "CACHES") == {"default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": "127.0.0.1:11211"}}
    assert literal(text, "SESSION_ENGINE") == "django.contrib.sessions.backends.cache"
    assert literal(text, "STATIC_ROOT") == "/var/lib/horizon/static"
    assert literal(text, "COMPRESS_OFFLINE") is True
    assert ast.unparse(assignments(text)["COMPRESS_ROOT"]) == "STATIC_ROOT"
    assert literal(text, "WEBROOT") == "/"
    assert literal(text, "TIME_ZONE") == "UTC"
    assert literal(text, "SESSION_COOKIE_SECURE") is False
    assert literal(text, "CSRF_COOKIE_SECURE") is False
    assert literal(text, "LAUNCH_INSTANCE_DEFAULTS")["create_volume"] is False
    network = literal(text, "OPENSTACK_NEUTRON_NETWORK")
    assert network["enable_router"] is True and network["enable_quotas"] is True


def test_static_job(site: Path):
    state = horizon_state(site)
    assert [j.name for j in state.jobs] == ["horizon.static"]
    job = state.jobs[0]
    assert (job.phase, job.run) == ("before", "on_change")
    container = job.container
    assert container.name == "horizon_static"
    assert container.image == "mortar/horizon:2026.2"
    assert container.user == "horizon"
    assert container.command[:2] == ["sh", "-c"]
    script = container.command[2]
    assert "django-admin collectstatic --noinput --clear" in script
    assert script.index("collectstatic") < script.index("django-admin compress --force")
    assert container.environment["DJANGO_SETTINGS_MODULE"] == "openstack_dashboard.settings"
    assert container.volumes == ["horizon_static:/var/lib/horizon/static"]
    assert "/var/lib/horizon/static" in [d["path"] for d in container.directories]
    assert container.healthcheck == {}
    # Same settings as the service, so the offline-compression manifest matches what it serves.
    assert files_of(container) == files_of(state.containers[0])


def test_defaults_port_and_workers(tmp_path: Path):
    state = horizon_state(make_site(tmp_path / "site"))
    container = state.containers[0]
    ini = files_of(container)["/etc/horizon/horizon-uwsgi.ini"]
    assert "shared-socket = 127.0.0.1:80\n" in ini
    assert "processes = 2\n" in ini
    assert container.healthcheck["test"] == "healthcheck_curl http://127.0.0.1:80/auth/login/ --expect 200"


def test_debug_and_addresses_follow_globals(tmp_path: Path):
    site = make_site(tmp_path / "site", {"openstack_debug": True, "api_address": "192.0.2.10"})
    container = horizon_state(site).containers[0]
    text = files_of(container)[SETTINGS_DEST]
    assert literal(text, "DEBUG") is True
    assert literal(text, "OPENSTACK_KEYSTONE_URL") == "http://192.0.2.10:5000/v3"
    assert literal(text, "CACHES")["default"]["LOCATION"] == "192.0.2.10:11211"
    assert "shared-socket = 192.0.2.10:80\n" in files_of(container)["/etc/horizon/horizon-uwsgi.ini"]


def test_secret_key_is_quoted_safely(tmp_path: Path):
    awkward = "it's a \"key\" with \\ and\nnewline </script>"
    site = make_site(tmp_path / "site", passwords={"horizon_secret_key": awkward})
    text = files_of(horizon_state(site).containers[0])[SETTINGS_DEST]
    assert literal(text, "SECRET_KEY") == awkward


def test_override_replaces_local_settings_and_ignores_ini_globals(tmp_path: Path):
    site = make_site(tmp_path / "site")
    (site / "config" / "global.conf").write_text("[DEFAULT]\ndebug = true\n")
    (site / "config" / "horizon").mkdir()
    (site / "config" / "horizon" / "local_settings.py").write_text("SECRET_KEY = 'mine'\n")
    text = files_of(horizon_state(site).containers[0])[SETTINGS_DEST]
    assert text == "SECRET_KEY = 'mine'\n"


def test_needs_only_its_dependencies(tmp_path: Path):
    services = load_catalogue()
    keep = {"horizon", "keystone", "memcached", "mariadb"}
    site = make_site(tmp_path / "site", {f"enable_{name}": False for name in services if name not in keep})
    deployment = load_deployment(site)
    order = deployment.desired.order
    assert set(order) == keep
    assert order.index("horizon") > max(order.index("keystone"), order.index("memcached"))
    # The desired state is pure: computing it twice gives the same container.
    again = compute_desired(deployment.site, deployment.inventory)
    assert (again.hosts["localhost"].services["horizon"].containers[0].config_hash
            == deployment.desired.hosts["localhost"].services["horizon"].containers[0].config_hash)
