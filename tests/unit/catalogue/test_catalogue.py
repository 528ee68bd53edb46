"""The service catalogue: the shipped services, and what the service.yaml schema refuses."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml

from mortar.agent.wire import Container, Job
from mortar.catalogue.loader import (
    CATALOGUE_DIR,
    PASSWORD_KINDS,
    ServiceSpec,
    image_names,
    load_catalogue,
    load_service,
)
from mortar.deploy.filters import FILTERS
from mortar.errors import MortarError
from mortar.site.config import schema
from mortar.verify.checks import KINDS

SERVICES = load_catalogue()
IMAGES = {"svc-image", "db-image"}
# What every template sees besides globals, its own passwords and its consumed capabilities
# (desired.Planner.base_variables).
CONTEXT = {"host", "api_address", "api_scheme", "site_ca_file", "public_address", "public_scheme", "bind_address",
           "service", "host_groups", "hosts_of_container", "oldest_release_of", "host_address", "addresses_of",
           "loadbalanced"}


def files_of(spec: ServiceSpec):
    """Every file declaration of a service: its containers', its jobs' and its provision jobs'."""
    for container in spec.containers.values():
        yield from container.files
    for job in spec.jobs:
        yield from job.files
    for provides in spec.provides.values():
        if provides.provision:
            yield from provides.provision.job.files


# ---- the shipped catalogue -------------------------------------------------------------------

def test_shipped_catalogue_loads() -> None:
    assert set(SERVICES) == {p.parent.name for p in CATALOGUE_DIR.glob("*/service.yaml")}
    assert {"mariadb", "keystone", "nova", "prometheus"} <= set(SERVICES)
    for name, spec in SERVICES.items():
        assert spec.name == name and spec.path == CATALOGUE_DIR / name
        assert spec.containers, f"{name} runs no container"
        assert set(spec.passwords.values()) <= PASSWORD_KINDS, name
        for container in spec.containers.values():
            assert container.name in spec.containers and container.service == name
            assert container.image in image_names(), (name, container.image)
            assert container.command or container.script, (name, container.name)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_declared_file_exists_and_every_template_is_used(name: str) -> None:
    spec = SERVICES[name]
    used = set()
    for decl in files_of(spec):
        assert (spec.template_dir / decl.template).is_file(), decl.template
        used.add(decl.template)
    shipped = {p.name for p in spec.template_dir.iterdir()} if spec.template_dir.is_dir() else set()
    # A template only other templates extend still counts (nova's compute config extends nova.conf.j2).
    extended = {ref for t in shipped for ref in jinja2.meta.find_referenced_templates(
        jinja2.Environment().parse((spec.template_dir / t).read_text())) if ref}
    assert shipped <= used | extended, f"unused templates in {name}: {sorted(shipped - used - extended)}"


def test_every_capability_consumed_is_provided_and_every_provider_container_exists() -> None:
    provided = {cap for spec in SERVICES.values() for cap in spec.provides}
    for spec in SERVICES.values():
        assert set(spec.consumes) <= provided, spec.name
        for provides in spec.provides.values():
            assert provides.container in spec.containers, (spec.name, provides.capability)
        if spec.registration:
            assert spec.registration.container in spec.containers, spec.name
    # The shipped services each capability of the architecture names.
    providers = {cap: sorted(s.name for s in SERVICES.values() if cap in s.provides) for cap in provided}
    assert providers["database"] == ["mariadb"] and providers["identity"] == ["keystone"]
    assert providers["messaging"] == ["rabbitmq"] and providers["cache"] == ["memcached"]
    assert providers["ovn_northbound"] == providers["ovn_southbound"] == ["ovn"]
    assert providers["compute"] == providers["metadata"] == ["nova"]
    assert providers["switch"] == ["openvswitch"]
    assert providers["metrics"] == ["mysqld_exporter", "node_exporter", "prometheus"]
    assert SERVICES["prometheus"].consumes["metrics"].multiple


def test_database_provider_takes_requests_through_a_provision_job() -> None:
    database = SERVICES["mariadb"].provides["database"]
    assert database.provision is not None and database.data == "mariadb"
    assert database.provision.request_keys["name"] == "required"
    job = database.provision.job
    assert (job.name, job.container, job.phase) == ("database", "mariadb", "provision")
    assert "url" in database.per_request
    for spec in SERVICES.values():
        if "database" in spec.consumes:
            for entry in spec.consumes["database"].request:
                assert set(entry) <= set(database.provision.request_keys), (spec.name, entry)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_verify_checks_are_known_kinds(name: str) -> None:
    for check in SERVICES[name].verify:
        assert check.check in KINDS
        assert set(check.params) <= set(KINDS[check.check].params)


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_templates_see_only_settings_their_own_secrets_and_consumed_capabilities(name: str) -> None:
    """Another service's secret reaches a template only through a capability it consumes."""
    spec = SERVICES[name]
    settings = set(schema(SERVICES)) | set(spec.passwords) | CONTEXT
    seen = settings | set(spec.consumes)
    env = jinja2.Environment()
    env.filters.update(FILTERS)  # finding the names compiles the template: an unknown filter fails too
    raw = yaml.safe_load(spec.file.read_text())
    sources: list[tuple[str, str, set[str]]] = []
    provision = {d.template for p in spec.provides.values() if p.provision for d in p.provision.job.files}
    # A container's own files and fields also see which container they are rendered for.
    in_container = {d.template for c in spec.containers.values() for d in c.files}
    for decl in files_of(spec):
        extra = ({"requests", "consumer"} if decl.template in provision else set()) | (
            {"container"} if decl.template in in_container else set())
        sources.append((decl.template, (spec.template_dir / decl.template).read_text(), seen | extra))
    sources += [("service.yaml containers", text, seen | {"container"}) for text in _strings(raw.get("containers"))]
    for key in ("jobs", "registration", "verify"):
        sources += [(f"service.yaml {key}", text, seen) for text in _strings(raw.get(key))]
    for capability, entry in (raw.get("provides") or {}).items():
        # What a provider exports is rendered with its own settings only; per-request values see the entry.
        sources += [(f"provides.{capability}.values", t, settings) for t in _strings(entry.get("values"))]
        sources += [(f"provides.{capability}.per_request", t, settings | {"entry"})
                    for t in _strings(entry.get("per_request"))]
        sources += [(f"provides.{capability}.provision", t, seen | {"requests", "consumer"})
                    for t in _strings(entry.get("provision"))]
    for where, text, known in sources:
        unknown = jinja2.meta.find_undeclared_variables(env.parse(text)) - known
        assert not unknown, f"{name}: {where} uses {sorted(unknown)}"


# ---- loading a service ------------------------------------------------------------------------

def write_service(root: Path, name: str, data: dict[str, Any] | str,
                  templates: tuple[str, ...] = ("svc.conf.j2",)) -> Path:
    folder = root / name
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    for template in templates:
        (folder / "templates" / template).write_text("[DEFAULT]\n")
    path = folder / "service.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def good() -> dict[str, Any]:
    """A service using every part of the schema, valid: each error case below breaks one thing."""
    return {
        "description": "a test service",
        "passwords": {"svc_password": "password"},
        "volumes": ["data"],
        "provides": {"database": {
            "container": "api",
            "values": {"port": "3306"},
            "per_request": {"url": "db://{{ entry.name }}@{{ api_address }}"},
            "data": "data",
            "request_keys": {"name": "required"},
            "provision": {"command": "make-db {{ consumer }}", "files": [
                {"template": "svc.conf.j2", "dest": "/etc/job/job.conf", "mode": "0600", "merge": "replace"}]}}},
        "consumes": {"identity": {}, "metrics": {"optional": True, "multiple": True}},
        "containers": {"api": {
            "image": "svc-image",
            "command": "svc-api --name {{ service }} --flag",
            "files": [{"template": "svc.conf.j2", "dest": "/etc/svc/svc.conf", "mode": "0640", "main": True}],
            "volumes": ["data:/var/lib/svc"],
            "healthcheck": {"test": "healthcheck_port 1234", "interval": 5},
            "ports": [1234, "{{ svc_port }}"]}},
        "jobs": [{"name": "db_sync", "container": "api", "command": ["svc-manage", "db", "sync"]}],
        "registration": {"container": "api", "type": "thing", "endpoints": {"public": "http://{{ api_address }}"},
                         "users": [{"name": "svc", "password": "{{ svc_password }}"}]},
        "verify": [{"name": "boots", "check": "server_boot", "nic": "none"}],
    }


def test_good_service_loads(tmp_path: Path) -> None:
    spec = load_service(write_service(tmp_path, "svc", good()), IMAGES)
    assert spec.name == "svc" and spec.group == "control"
    api = spec.containers["api"]
    assert isinstance(api, Container) and (api.name, api.service, api.group) == ("api", "svc", "control")
    # A string command is split into words before rendering: the template stays one word.
    assert api.command == ["svc-api", "--name", "{{ service }}", "--flag"]
    assert api.ports == [1234, "{{ svc_port }}"]
    assert (api.files[0].owner, api.files[0].mode, api.files[0].merge, api.files[0].main) == ("root", "0640", "ini",
                                                                                               True)
    assert api.healthcheck is not None and (api.healthcheck.interval, api.healthcheck.retries) == (5, 3)
    (job,) = spec.jobs
    assert isinstance(job, Job) and (job.service, job.phase, job.run, job.timeout) == ("svc", "before", "on_change",
                                                                                       600)
    provision = spec.provides["database"].provision
    assert provision is not None
    assert (provision.job.name, provision.job.container, provision.job.phase) == ("database", "api", "provision")
    assert provision.job.command == ["make-db", "{{ consumer }}"]
    assert spec.consumes["metrics"].optional and spec.consumes["metrics"].multiple
    assert not spec.consumes["identity"].optional
    assert spec.registration is not None and spec.registration.container == "api"
    assert spec.verify[0].params == {"nic": "none"} and spec.verify[0].container == "api"


def test_a_lone_container_is_the_default_everywhere_and_the_folder_names_the_service(tmp_path: Path) -> None:
    data = good()
    del data["provides"]["database"]["container"], data["registration"]["container"]
    spec = load_service(write_service(tmp_path, "other", data), IMAGES)
    assert spec.name == "other"
    assert spec.provides["database"].container == spec.registration.container == "api"


def _set(*path: str | int, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _append(*path: str | int, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target = data
        for key in path:
            target = target[key]
        target.append(value)
    return change


API = ("containers", "api")
FILE = (*API, "files", 0)
CASES: list[tuple[str, Callable[[dict], None], str, list[str]]] = [
    ("unknown-service-key", _set("volumez", value=[]), "volumez", ["unknown key 'volumez'", "did you mean 'volumes'"]),
    ("unknown-container-key", _set(*API, "imgae", value="x"), "containers.api.imgae",
     ["unknown key 'imgae'", "did you mean 'image'?"]),
    ("unknown-image", _set(*API, "image", value="svc-imgae"), "containers.api.image",
     ["no image named 'svc-imgae'", "did you mean 'svc-image'?"]),
    ("image-on-a-job", _set("jobs", 0, "image", value="svc-image"), "jobs[0].image", ["unknown key 'image'"]),
    ("volumes-on-a-job", _set("jobs", 0, "volumes", value=["data:/x"]), "jobs[0].volumes",
     ["unknown key 'volumes'"]),
    ("image-on-a-provision-job", _set("provides", "database", "provision", "image", value="db-image"),
     "provides.database.provision.image", ["unknown key 'image'"]),
    ("empty-health-test", _set(*API, "healthcheck", value={"test": "  "}), "containers.api.healthcheck.test",
     ["the health test is empty"]),
    ("health-interval-0", _set(*API, "healthcheck", "interval", value=0), "containers.api.healthcheck.interval",
     ["more than 0"]),
    ("health-retries-0", _set(*API, "healthcheck", "retries", value=0), "containers.api.healthcheck.retries",
     ["at least 1"]),
    ("port-0", _set(*API, "ports", value=[0]), "containers.api.ports[0]", ["between 1 and 65535"]),
    ("port-70000", _set(*API, "ports", value=[80, 70000]), "containers.api.ports[1]", ["between 1 and 65535"]),
    ("port-not-a-number", _set(*API, "ports", value=["http"]), "containers.api.ports[0]", ["whole number"]),
    ("port-true", _set(*API, "ports", value=[True]), "containers.api.ports[0]", ["whole number"]),
    ("volume-not-the-services", _set(*API, "volumes", value=["logs:/var/log/svc"]), "containers.api.volumes[0]",
     ["volume 'logs' is not one of the service's volumes (data)", "list it under the service's `volumes:`"]),
    ("secret-volume-not-a-volume", _set("secret_volumes", value={"keys": {"0": "svc_password"}}),
     "secret_volumes.keys", ["'keys' is not one of the service's volumes (data)", "`volumes:`"]),
    ("secret-volume-unknown-password", _set("secret_volumes", value={"data": {"0": "svc_key"}}),
     "secret_volumes.data.0", ["'svc_key' is not one of the service's passwords", "`passwords:`"]),
    ("secret-volume-file-a-path", _set("secret_volumes", value={"data": {"../0": "svc_password"}}),
     "secret_volumes.data.../0", ["is not a file name"]),
    ("secret-volume-empty", _set("secret_volumes", value={"data": {}}), "secret_volumes.data",
     ["at least one file"]),
    ("shared-volume-not-a-volume", _set("shared_volumes", value=["images"]), "shared_volumes[0]",
     ["'images' is not one of the service's volumes", "`volumes:`"]),
    ("rotation-unknown-password", _set("rotations", value={"keys": {"new": "svc_key", "moves": {}}}),
     "rotations.keys.new", ["'svc_key' is not one of the service's passwords", "`passwords:`"]),
    ("rotation-moves-unknown", _set("rotations", value={"keys": {"new": "svc_password",
                                                                 "moves": {"svc_old": "svc_password"}}}),
     "rotations.keys.moves.svc_old", ["'svc_old' is not one of the service's passwords"]),
    ("frontend-port-not-bound", _set(*API, "loadbalancer", value={"port": 81}), "containers.api.loadbalancer.port",
     ["port 81 is not one of the container's ports", "`ports:`"]),
    ("frontend-mode-unknown", _set(*API, "loadbalancer", value={"mode": "udp"}), "containers.api.loadbalancer.mode",
     ["mode must be http or tcp"]),
    ("volume-without-path", _set(*API, "volumes", value=["data"]), "containers.api.volumes[0]",
     ["is not VOLUME:/path"]),
    ("volume-relative-path", _set(*API, "volumes", value=["data:var/lib/svc"]), "containers.api.volumes[0]",
     ["is not VOLUME:/path"]),
    ("relative-dest", _set(*FILE, "dest", value="etc/svc/svc.conf"), "containers.api.files[0].dest",
     ["must be an absolute path"]),
    ("mode-not-octal", _set(*FILE, "mode", value="rw-r-----"), "containers.api.files[0].mode",
     ["quoted octal"]),
    ("mode-a-number", _set(*FILE, "mode", value=640), "containers.api.files[0].mode", ["quoted string"]),
    ("unknown-merge", _set(*FILE, "merge", value="toml"), "containers.api.files[0].merge", ["toml"]),
    ("missing-template", _set(*FILE, "template", value="nope.j2"), "containers.api.files[0].template",
     ["template 'nope.j2' not found"]),
    ("two-files-one-name", _append(*API, "files", value={"template": "svc.conf.j2", "dest": "/etc/other/svc.conf"}),
     "containers.api.files[1]", ["two files named 'svc.conf'"]),
    ("two-job-files-one-name", _set("jobs", 0, "files", value=[
        {"template": "svc.conf.j2", "dest": "/a/x.conf"}, {"template": "svc.conf.j2", "dest": "/b/x.conf"}]),
     "jobs[0].files[1]", ["two files named 'x.conf'"]),
    ("command-and-script", _set(*API, "script", value="exec svc-api\n"), "containers.api",
     ["either 'command' or 'script'"]),
    ("job-command-and-script", _set("jobs", 0, "script", value="true\n"), "jobs[0]", ["either 'command' or 'script'"]),
    ("command-with-a-statement", _set(*API, "command", value="svc-api {% if x %}-v{% endif %}"),
     "containers.api.command", ["cannot hold template statements"]),
    ("job-unknown-container", _set("jobs", 0, "container", value="apu"), "jobs[0].container",
     ["'apu' is not a container of this service"]),
    ("job-in-provision-phase", _set("jobs", 0, "phase", value="provision"), "jobs[0].phase",
     ["'before', 'after' or 'check'"]),
    ("job-without-command", _set("jobs", 0, "command", value=[]), "jobs[0]", ["needs a 'command' or a 'script'"]),
    ("unknown-provides-key", _set("provides", "database", "valuse", value={}), "provides.database.valuse",
     ["unknown key 'valuse'", "did you mean 'values'?"]),
    ("unknown-consumes-key", _set("consumes", "identity", value={"optinal": True}), "consumes.identity.optinal",
     ["unknown key 'optinal'", "did you mean 'optional'?"]),
    ("consumes-optional-not-bool", _set("consumes", "identity", value={"optional": "yes"}),
     "consumes.identity.optional", ["true or false"]),
    ("provides-unknown-container", _set("provides", "database", "container", value="apu"),
     "provides.database.container", ["'apu' is not a container of svc"]),
    ("provides-unknown-data-volume", _set("provides", "database", "data", value="logs"), "provides.database.data",
     ["'logs' is not one of the service's volumes"]),
    ("request-keys-without-name", _set("provides", "database", "request_keys", value={"user": "required"}),
     "provides.database.request_keys", ["keyed by it"]),
    ("bad-capability-name", _set("provides", "Data-Base", value={"container": "api"}), "provides.Data-Base",
     ["lowercase"]),
    ("registration-unknown-interface", _set("registration", "endpoints", value={"private": "http://x"}),
     "registration.endpoints.private", ["interface must be one of"]),
    ("registration-unknown-container", _set("registration", "container", value="apu"), "registration.container",
     ["name the container"]),
    ("unknown-verify-kind", _set("verify", 0, "check", value="server_bot"), "verify[0].check",
     ["unknown check kind 'server_bot'", "server_boot"]),
    ("unknown-verify-parameter", _set("verify", 0, "nick", value="none"), "verify[0].nick",
     ["unknown key 'nick'", "did you mean 'nic'?"]),
    ("verify-missing-parameter", _set("verify", 0, value={"name": "login", "check": "form_login"}), "verify[0]",
     ["needs url"]),
]


@pytest.mark.parametrize(("change", "key", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_schema_errors_name_the_file_and_the_key(tmp_path: Path, change: Callable[[dict], None], key: str,
                                                 words: list[str]) -> None:
    data = copy.deepcopy(good())
    change(data)
    path = write_service(tmp_path, "svc", data)
    with pytest.raises(MortarError) as info:
        load_service(path, IMAGES)
    err = info.value
    assert (err.file, err.key) == (str(path), key)
    assert str(err).startswith(f"{path}: {key}: ")
    for word in words:
        assert word in str(err)


def test_an_unquoted_mode_is_refused_not_read_as_a_number(tmp_path: Path) -> None:
    """YAML reads `mode: 0640` as the number 416, which would pass as the octal mode 0416."""
    path = write_service(tmp_path, "svc", "containers:\n  api:\n    image: svc-image\n    command: run\n    files:\n"
                                          "      - {template: svc.conf.j2, dest: /etc/a.conf, mode: 0640}\n")
    with pytest.raises(MortarError, match="quoted string") as info:
        load_service(path, IMAGES)
    assert (info.value.file, info.value.key) == (str(path), "containers.api.files[0].mode")
    assert '"0640"' in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "name: [svc\n"])
def test_service_yaml_must_be_a_yaml_mapping(tmp_path: Path, text: str) -> None:
    path = write_service(tmp_path, "svc", text)
    with pytest.raises(MortarError) as info:
        load_service(path, IMAGES)
    assert info.value.file == str(path)


@pytest.mark.parametrize("text", [
    "containers:\n  api:\n",  # a container declared as null
    "containers: [api]\n",
    "containers:\n  api: {image: svc-image, command: run, files: {template: svc.conf.j2}}\n",
    "containers:\n  api: {image: svc-image, command: run}\njobs:\n  - {container: api, command: x}\n",  # no name
    "containers:\n  api: {image: svc-image, command: run}\nconsumes: database\n",
    "containers:\n  api: {image: svc-image, command: run, environment: [A=1]}\n",
], ids=["null-container", "containers-as-list", "files-as-mapping", "job-without-name", "consumes-as-string",
        "environment-as-list"])
def test_malformed_shapes_are_mortar_errors(tmp_path: Path, text: str) -> None:
    path = write_service(tmp_path, "svc", text)
    with pytest.raises(MortarError) as info:
        load_service(path, IMAGES)
    assert info.value.file == str(path) and info.value.key


# ---- loading a catalogue ----------------------------------------------------------------------

def provider_and_consumer(root: Path, consumer: dict[str, Any] | None = None) -> tuple[Path, Path]:
    provider = {"provides": {"database": {"container": "db", "values": {"port": "3306"}}},
                "containers": {"db": {"image": "db-image", "command": "db-server"}}}
    consumer = consumer or {"consumes": {"database": {}}, "containers": {"api": {"image": "svc-image",
                                                                                   "command": "svc-api"}}}
    return write_service(root, "db", provider), write_service(root, "svc", consumer)


def test_a_small_catalogue_loads(tmp_path: Path) -> None:
    provider_and_consumer(tmp_path)
    services = load_catalogue(tmp_path, images=IMAGES)
    assert sorted(services) == ["db", "svc"]
    assert services["svc"].consumes["database"].capability == "database"


def test_a_consumed_capability_nobody_provides_is_refused(tmp_path: Path) -> None:
    _, consumer = provider_and_consumer(tmp_path, {"consumes": {"database": {}, "messaging": {"optional": True}},
                                                   "containers": {"api": {"image": "svc-image", "command": "x"}}})
    with pytest.raises(MortarError, match="consumes 'messaging', which no service of the catalogue provides") as info:
        load_catalogue(tmp_path, images=IMAGES)
    assert (info.value.file, info.value.key) == (str(consumer), "consumes.messaging")


def test_enabled_with_an_unknown_service_is_refused(tmp_path: Path) -> None:
    _, consumer = provider_and_consumer(tmp_path, {"enabled_with": "dbb", "containers": {"api": {
        "image": "svc-image", "command": "x"}}})
    with pytest.raises(MortarError, match="unknown service 'dbb'") as info:
        load_catalogue(tmp_path, images=IMAGES)
    assert (info.value.file, info.value.key) == (str(consumer), "enabled_with")


def test_two_services_of_one_name_are_refused(tmp_path: Path) -> None:
    provider_and_consumer(tmp_path)
    clash = write_service(tmp_path, "svc2", {"name": "svc", "containers": {"api": {"image": "svc-image",
                                                                                     "command": "x"}}})
    with pytest.raises(MortarError, match="two services are named 'svc'") as info:
        load_catalogue(tmp_path, images=IMAGES)
    assert info.value.file == str(clash)


def test_an_image_missing_from_the_image_tree_is_refused(tmp_path: Path) -> None:
    _, consumer = provider_and_consumer(tmp_path)
    with pytest.raises(MortarError, match="no image named 'svc-image'") as info:
        load_catalogue(tmp_path, images={"db-image"})
    assert (info.value.file, info.value.key) == (str(consumer), "containers.api.image")



@pytest.mark.parametrize("key", ["host", "address", "service"])
def test_a_provided_value_named_like_an_instance_key_is_refused(tmp_path: Path, key: str) -> None:
    # mortar sets host, address and service on every instance: a declared one would be replaced.
    data = good()
    data["provides"]["database"]["values"] = {key: "{{ api_address }}"}
    path = write_service(tmp_path, "svc", data)
    with pytest.raises(MortarError) as info:
        load_service(path, IMAGES)
    assert info.value.file == str(path) and info.value.key == f"provides.database.values.{key}"
    assert "another name" in str(info.value)


def test_an_option_of_an_unknown_format_is_refused(tmp_path: Path) -> None:
    data = good()
    data["options"] = {"svc_net": {"type": "str", "default": "", "format": "cidr"}}
    path = write_service(tmp_path, "svc", data)
    with pytest.raises(MortarError) as info:
        load_service(path, IMAGES)
    assert info.value.file == str(path) and info.value.key == "options.svc_net.format"
    assert "interface_address" in str(info.value.fix)


def test_only_a_str_option_may_be_set_per_host(tmp_path: Path) -> None:
    data = good()
    data["options"] = {"svc_count": {"type": "int", "default": 1, "per_host": True}}
    path = write_service(tmp_path, "svc", data)
    with pytest.raises(MortarError) as info:
        load_service(path, IMAGES)
    assert info.value.file == str(path) and info.value.key == "options.svc_count.per_host"
    assert "type: str" in str(info.value.fix)
