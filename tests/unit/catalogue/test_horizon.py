"""The horizon service of the catalogue: what its desired state renders to (no engine needed)."""

from __future__ import annotations

import ast
import configparser
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mortar.agent.wire import Container, Healthcheck, ServiceState
from mortar.catalogue.loader import IMAGES_DIR, ServiceSpec
from mortar.deploy.desired import SCRIPT_DEST, compute_desired
from mortar.site.config import Site
from mortar.site.inventory import parse_inventory
from mortar.site.samples import INVENTORY_AIO

SETTINGS_DEST = "/etc/openstack-dashboard/local_settings.py"
UWSGI_DEST = "/etc/horizon/horizon-uwsgi.ini"


def horizon_state(site: Site) -> ServiceState:
    return compute_desired(site, parse_inventory(INVENTORY_AIO, "aio")).hosts["localhost"].services["horizon"]


def files_of(container: Container) -> dict[str, str]:
    return {f.dest: f.content for f in container.files}


def assignments(source: str) -> dict[str, ast.expr]:
    """Top-level `NAME = value` of a Python module, as AST nodes."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    return found


def literal(source: str, name: str) -> Any:
    return ast.literal_eval(assignments(source)[name])


@pytest.fixture
def site(configure: Callable[..., Site]) -> Site:
    return configure({"horizon_port": 8089, "horizon_workers": 3})


def test_catalogue_declares_horizon(services: dict[str, ServiceSpec]) -> None:
    spec = services["horizon"]
    assert set(spec.consumes) == {"identity", "cache"} and not spec.provides and spec.registration is None
    assert spec.group == "control"
    assert (spec.options["horizon_port"]["type"], spec.options["horizon_port"]["default"]) == ("int", 80)
    assert (spec.options["horizon_workers"]["type"], spec.options["horizon_workers"]["default"]) == ("int", 2)
    assert spec.passwords == {"horizon_secret_key": "password"}
    assert spec.volumes == ["horizon_static", "horizon_certificates"]
    # The certificate's "volume" is files placed at each start, with enable_tls_backend only.
    assert spec.secret_volumes == {"horizon_certificates": {"host.crt": "tls_backend_certificate",
                                                            "host.key": "tls_backend_key"}}
    assert [(j.name, j.container, j.phase, j.run, j.user) for j in spec.jobs] == [
        ("static", "horizon", "before", "on_change", "horizon"),
        ("prune_static", "horizon", "after", "on_change", "horizon")]
    assert [(c.check, c.params["url"]) for c in spec.verify] == [
        ("form_login",
         "{{ api_scheme }}://{{ api_address }}{{ '' if api_scheme == 'https' else ':' ~ horizon_port }}/auth/login/")]


def test_the_image_links_horizons_settings_to_where_the_catalogue_puts_them(services: dict[str, ServiceSpec]) -> None:
    dockerfile = (IMAGES_DIR / "horizon" / "Dockerfile.j2").read_text()
    link = re.search(r"ln -sf (\S+)\s*\\?\s*(.+?local_settings\.py)", dockerfile)
    assert link, "the horizon image does not link its settings"
    (settings,) = [f for f in services["horizon"].containers["horizon"].files if f.name == "local_settings.py"]
    assert link[1] == settings.dest == SETTINGS_DEST
    assert link[2].endswith("/site-packages/openstack_dashboard/local/local_settings.py")


def test_container(site: Site) -> None:
    state = horizon_state(site)
    assert [c.name for c in state.containers] == ["horizon"]
    container = state.containers[0]
    assert container.image == "mortar/horizon:2026.2" == site.image_ref("horizon")
    # uWSGI binds the port as root and drops to horizon itself (uid/gid in the ini).
    assert container.user == "root" and container.cap_add == ["SYS_PTRACE"]
    assert container.command == ["uwsgi", "--ini", UWSGI_DEST]
    assert container.environment == {"DJANGO_SETTINGS_MODULE": "openstack_dashboard.settings"}
    assert container.volumes == ["horizon_static:/var/lib/horizon/static"]
    assert {d.path: d.owner for d in container.directories} == {
        "/var/lib/horizon": "horizon:horizon", "/var/lib/horizon/static": "horizon:horizon",
        "/etc/horizon/certificates": "horizon:horizon"}
    assert container.healthcheck == Healthcheck(
        test="healthcheck_port 8089 --host 127.0.0.1 --owner uwsgi --http /auth/login/ --status 200",
        interval=30)  # the site's healthcheck_interval, by default
    assert container.ports == [8089]
    settings = next(f for f in container.files if f.dest == SETTINGS_DEST)
    assert (settings.owner, settings.mode, settings.merge) == ("horizon", "0640", "replace")
    assert set(container.rendered_files()) == {"local_settings.py", "horizon-uwsgi.ini", "spec.json"}


def test_uwsgi_ini(site: Site) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(files_of(horizon_state(site).containers[0])[UWSGI_DEST])
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


def test_local_settings(site: Site) -> None:
    text = files_of(horizon_state(site).containers[0])[SETTINGS_DEST]
    assert literal(text, "SECRET_KEY") == site.passwords["horizon_secret_key"]
    # From the identity and cache capabilities horizon consumes.
    assert literal(text, "OPENSTACK_KEYSTONE_URL") == "http://127.0.0.1:5000/v3"
    assert literal(text, "CACHES") == {"default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": "127.0.0.1:11211"}}
    # Each release keys its cache entries apart (an upgrade's new pages never meet the old ones).
    assert "CACHES['default']['KEY_PREFIX'] = 'horizon-' + importlib.metadata.version('horizon')" in text
    assert literal(text, "OPENSTACK_KEYSTONE_DEFAULT_ROLE") == "member"
    assert literal(text, "DEBUG") is False
    assert literal(text, "ALLOWED_HOSTS") == ["*"]
    assert literal(text, "SESSION_ENGINE") == "django.contrib.sessions.backends.cache"
    # A folder per series, also in the URL: an upgrade collects the next series' assets beside
    # the ones the running dashboard's pages name.
    assert literal(text, "STATIC_ROOT") == f"/var/lib/horizon/static/{site.release}"
    assert literal(text, "STATIC_URL") == f"/static/{site.release}/"
    assert literal(text, "LOCAL_PATH") == "/var/lib/horizon"
    assert literal(text, "COMPRESS_OFFLINE") is True
    assert ast.unparse(assignments(text)["COMPRESS_ROOT"]) == "STATIC_ROOT"
    assert literal(text, "WEBROOT") == "/"
    assert literal(text, "SESSION_COOKIE_SECURE") is False and literal(text, "CSRF_COOKIE_SECURE") is False
    assert literal(text, "LAUNCH_INSTANCE_DEFAULTS")["create_volume"] is False
    network = literal(text, "OPENSTACK_NEUTRON_NETWORK")
    assert network["enable_router"] is True and network["enable_quotas"] is True


def test_static_job(site: Site) -> None:
    state = horizon_state(site)
    assert [j.name for j in state.jobs] == ["horizon.static", "horizon.prune_static"]
    job = state.jobs[0]
    assert (job.phase, job.run, job.service) == ("before", "on_change", "horizon")
    container = job.spec
    assert container is not None
    assert container.name == "horizon_static"
    assert container.image == state.containers[0].image
    assert container.user == "horizon"
    # A script runs from a file mortar-start places, never from argv.
    assert container.command == ["/bin/sh", "-e", SCRIPT_DEST]
    script = files_of(container)[SCRIPT_DEST]
    assert "django-admin collectstatic --noinput --clear" in script
    assert script.index("collectstatic") < script.index("django-admin compress --force")
    assert container.environment["DJANGO_SETTINGS_MODULE"] == "openstack_dashboard.settings"
    assert container.volumes == ["horizon_static:/var/lib/horizon/static"]
    assert job.data == ["localhost/horizon_static"]
    assert container.healthcheck is None
    # The same settings as the service, so the offline-compression manifest matches what it serves.
    assert {d: c for d, c in files_of(container).items() if d != SCRIPT_DEST} == files_of(state.containers[0])


def test_other_series_static_files_go_once_this_series_serves(site: Site) -> None:
    job = horizon_state(site).jobs[1]
    assert (job.phase, job.run) == ("after", "on_change") and job.spec is not None
    assert job.spec.volumes == ["horizon_static:/var/lib/horizon/static"]
    script = files_of(job.spec)[SCRIPT_DEST]
    assert f"find /var/lib/horizon/static -mindepth 1 -maxdepth 1 ! -name {site.release} -exec rm -rf" in script


def test_defaults_port_and_workers(configure: Callable[..., Site]) -> None:
    container = horizon_state(configure()).containers[0]
    ini = files_of(container)[UWSGI_DEST]
    assert "shared-socket = 127.0.0.1:80\n" in ini and "processes = 2\n" in ini
    assert container.ports == [80]
    assert container.healthcheck is not None and container.healthcheck.test.startswith("healthcheck_port 80 ")


def test_debug_and_addresses_follow_globals(configure: Callable[..., Site]) -> None:
    site = configure({"openstack_debug": True, "api_address": "192.0.2.10"})
    container = horizon_state(site).containers[0]
    text = files_of(container)[SETTINGS_DEST]
    assert literal(text, "DEBUG") is True
    assert literal(text, "OPENSTACK_KEYSTONE_URL") == "http://192.0.2.10:5000/v3"
    assert literal(text, "CACHES")["default"]["LOCATION"] == "192.0.2.10:11211"
    assert "shared-socket = 192.0.2.10:80\n" in files_of(container)[UWSGI_DEST]


def test_secret_key_is_quoted_safely(configure: Callable[..., Site]) -> None:
    awkward = "it's a \"key\" with \\ and\nnewline </script>"
    site = configure(passwords={"horizon_secret_key": awkward})
    text = files_of(horizon_state(site).containers[0])[SETTINGS_DEST]
    assert literal(text, "SECRET_KEY") == awkward


def test_override_replaces_local_settings_and_ignores_ini_globals(site_dir: Path,
                                                                  configure: Callable[..., Site]) -> None:
    (site_dir / "config" / "global.conf").write_text("[DEFAULT]\ndebug = true\n")
    (site_dir / "config" / "horizon").mkdir()
    (site_dir / "config" / "horizon" / "local_settings.py").write_text("SECRET_KEY = 'mine'\n")
    files = files_of(horizon_state(configure()).containers[0])
    assert files[SETTINGS_DEST] == "SECRET_KEY = 'mine'\n"
    assert "debug" not in files[UWSGI_DEST]


def test_needs_only_what_it_consumes(configure: Callable[..., Site], services: dict[str, ServiceSpec]) -> None:
    keep = {"horizon", "keystone", "memcached", "mariadb"}
    site = configure({f"enable_{name}": False for name in services if name not in keep})
    desired = compute_desired(site, parse_inventory(INVENTORY_AIO, "aio"))
    assert set(desired.order) == keep
    assert desired.order.index("horizon") > max(desired.order.index("keystone"), desired.order.index("memcached"))
    # The desired state is pure: computing it twice gives the same container.
    again = compute_desired(site, parse_inventory(INVENTORY_AIO, "aio"))
    assert (again.hosts["localhost"].services["horizon"].containers[0].config_hash
            == desired.hosts["localhost"].services["horizon"].containers[0].config_hash)
