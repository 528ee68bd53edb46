"""Tests for the service catalogue: the shipped services and the service.yaml loader's errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jinja2.meta
import pytest
import yaml

from mortar.catalogue.loader import (
    CATALOGUE_DIR,
    PASSWORD_KINDS,
    ServiceSpec,
    load_catalogue,
    load_service,
    service_order,
)
from mortar.deploy.desired import _env, compute_desired
from mortar.errors import MortarError
from mortar.site.config import genpwd, load_site, required_passwords, schema
from mortar.site.inventory import parse_inventory
from mortar.site.samples import INVENTORY_AIO, write_samples

SERVICES = load_catalogue()
# Names every template and service.yaml string may use besides globals and passwords (desired.Context).
CONTEXT_NAMES = {"host", "api_address", "service", "enabled", "address_of", "hosts_of", "hosts_of_container",
                 "host_address", "keystone_url"}


def closure(name: str) -> set[str]:
    """A service and everything it (transitively) depends on."""
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(SERVICES[current].depends)
    return seen


def dependents_closure(name: str) -> set[str]:
    """A service and everything that (transitively) depends on it."""
    off = {name}
    changed = True
    while changed:
        changed = False
        for other, spec in SERVICES.items():
            if other not in off and off & set(spec.depends):
                off.add(other)
                changed = True
    return off


def all_file_decls(spec: ServiceSpec):
    for container in spec.containers.values():
        yield from container.files
    for job in spec.jobs:
        yield from job.files


# ---- the shipped catalogue -----------------------------------------------------------------

def test_shipped_catalogue_loads() -> None:
    assert {"mariadb", "keystone", "nova"} <= set(SERVICES)
    for name, spec in SERVICES.items():
        assert spec.name == name
        assert spec.path == CATALOGUE_DIR / name
        assert spec.containers, f"{name} runs no container"
        assert set(spec.depends) <= set(SERVICES), name
        assert set(spec.passwords.values()) <= PASSWORD_KINDS, name


def test_service_order_puts_dependencies_first() -> None:
    order = service_order(SERVICES, set(SERVICES))
    assert sorted(order) == sorted(SERVICES)
    for name in order:
        for dep in SERVICES[name].depends:
            assert order.index(dep) < order.index(name), (dep, name)


def test_service_order_skips_disabled_and_detects_cycles(tmp_path: Path) -> None:
    assert service_order(SERVICES, {"keystone"}) == ["keystone"]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "service.yaml").write_text(
            f"depends: [{'b' if name == 'a' else 'a'}]\ncontainers: {{{name}: {{image: x}}}}\n")
    services = load_catalogue(tmp_path)
    with pytest.raises(MortarError, match="cycle"):
        service_order(services, {"a", "b"})


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_template_exists(name: str) -> None:
    spec = SERVICES[name]
    for decl in all_file_decls(spec):
        assert (spec.template_dir / decl.template).is_file(), decl.template
    # and every template in templates/ is used (a stray one is likely a typo in service.yaml)
    used = {decl.template for decl in all_file_decls(spec)}
    if spec.template_dir.is_dir():
        shipped = {p.name for p in spec.template_dir.iterdir() if p.is_file()}
        assert shipped <= used, f"unused templates in {name}: {sorted(shipped - used)}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_secret_references_are_declared(name: str) -> None:
    """Databases and keystone users name passwords their own service declares."""
    spec = SERVICES[name]
    for db in spec.databases:
        assert set(db) == {"name", "user", "password"}, db
        assert db["password"] in spec.passwords, db
    for user in spec.registration.get("users", []):
        assert user["password"] in spec.passwords, user
    if spec.databases:
        assert "mariadb" in closure(name), f"{name} has databases but does not depend on mariadb"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_templates_only_use_known_names(name: str) -> None:
    spec = SERVICES[name]
    known = set(schema(SERVICES)) | CONTEXT_NAMES
    known |= {key for s in SERVICES.values() for key in s.passwords}
    env = _env(spec)  # the environment templates are rendered in (with mortar's filters)
    sources = {str(spec.template_dir / d.template): (spec.template_dir / d.template).read_text()
               for d in all_file_decls(spec)}
    raw = yaml.safe_load((spec.path / "service.yaml").read_text())
    for key in ("containers", "jobs", "registration"):
        for index, text in enumerate(_strings(raw.get(key))):
            sources[f"service.yaml {key} #{index}"] = text
    for where, text in sources.items():
        unknown = jinja2.meta.find_undeclared_variables(env.parse(text)) - known
        assert not unknown, f"{where} uses undeclared {sorted(unknown)}"


def _subsets() -> list[tuple[str, frozenset[str]]]:
    cases = {"everything": frozenset(SERVICES)}
    for name in sorted(SERVICES):
        cases[f"only-{name}"] = frozenset(closure(name))
        cases[f"without-{name}"] = frozenset(set(SERVICES) - dependents_closure(name))
    unique: dict[frozenset[str], str] = {}
    for label, subset in cases.items():
        if subset:
            unique.setdefault(subset, label)
    return [(label, subset) for subset, label in unique.items()]


@pytest.mark.parametrize(("label", "enabled"), _subsets(), ids=[label for label, _ in _subsets()])
def test_every_referenced_password_is_declared_by_an_enabled_service(tmp_path: Path, label: str,
                                                                     enabled: frozenset[str]) -> None:
    """Render everything with exactly the passwords the enabled services declare (StrictUndefined)."""
    write_samples(tmp_path)
    (tmp_path / "globals.yml").write_text(
        "".join(f"enable_{name}: {'true' if name in enabled else 'false'}\n" for name in sorted(SERVICES)))
    needed = required_passwords(SERVICES, set(enabled))
    genpwd(tmp_path / "passwords.yml", needed)
    site = load_site(tmp_path, SERVICES)
    assert site.enabled == enabled
    assert set(site.passwords) == set(needed)
    desired = compute_desired(site, parse_inventory(INVENTORY_AIO, str(tmp_path / "inventory")))
    assert set(desired.order) == set(enabled)
    running = {c.name for c in desired.hosts["localhost"].containers()}
    assert running == {c for name in enabled for c in SERVICES[name].containers}


# ---- loader errors -----------------------------------------------------------------------------

def write_service(root: Path, text: str, templates: tuple[str, ...] = ("svc.conf.j2",)) -> Path:
    directory = root / "svc"
    (directory / "templates").mkdir(parents=True, exist_ok=True)
    for template in templates:
        (directory / "templates" / template).write_text("[DEFAULT]\n")
    path = directory / "service.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
name: svc
description: a test service
depends: []
options:
  svc_workers: {type: int, default: 1, min: 1, help: workers}
passwords:
  svc_password: password
  svc_key: fernet
databases:
  - {name: svc, user: svc, password: svc_password}
volumes: [svc_data]
containers:
  svc_api:
    image: svc-api
    command: svc-api --config-file /etc/svc/svc.conf
    files:
      - {template: svc.conf.j2, dest: /etc/svc/svc.conf, merge: ini, main: true}
    ports: [1234]
    stop_timeout: 30
jobs:
  - {name: db_sync, container: svc_api, phase: before, command: svc-manage db sync}
  - {name: late, container: svc_api, phase: after, run: always, command: svc-manage late,
     files: [{template: svc.conf.j2, dest: /etc/svc/extra.conf, merge: replace}]}
"""


def test_good_service_loads(tmp_path: Path) -> None:
    spec = load_service(write_service(tmp_path, GOOD))
    assert spec.name == "svc"
    assert spec.group == "control"
    assert spec.options["svc_workers"]["default"] == 1
    assert spec.passwords == {"svc_password": "password", "svc_key": "fernet"}
    api = spec.containers["svc_api"]
    assert api.group == "control" and api.stop_timeout == 30
    assert [str(port) for port in api.ports] == ["1234"]
    assert api.files[0].main is True and api.files[0].owner == "root" and api.files[0].mode == "0640"
    assert [(j.name, j.phase, j.run) for j in spec.jobs] == [("db_sync", "before", "on_change"),
                                                               ("late", "after", "always")]
    assert spec.jobs[1].files[0].merge == "replace"


def test_name_defaults_to_directory(tmp_path: Path) -> None:
    spec = load_service(write_service(tmp_path, "containers:\n  c: {image: x, group: compute}\n"))
    assert spec.name == "svc"
    assert spec.containers["c"].group == "compute"


@pytest.mark.parametrize(("text", "key", "words"), [
    ("dependz: []\n", "service", ["unknown key 'dependz'", "did you mean 'depends'?"]),
    ("containers:\n  c: {imgae: x}\n", "containers.c", ["unknown key 'imgae'", "did you mean 'image'?"]),
    ("containers:\n  c: {image: x, files: [{template: svc.conf.j2, dest: /x, mrege: ini}]}\n",
     "containers.c.files", ["unknown key 'mrege'", "did you mean 'merge'?"]),
    ("containers:\n  c: {image: x}\njobs:\n  - {name: j, container: c, phase: before, command: x, rnu: once}\n",
     "jobs[0]", ["unknown key 'rnu'", "did you mean 'run'?"]),
    ("containers:\n  c: {image: x}\njobs:\n  - {name: j, container: d, phase: before, command: x}\n",
     "jobs[0]", ["job container 'd'"]),
    ("containers:\n  c: {image: x}\njobs:\n  - {name: a, container: c, phase: before, command: x}\n"
     "  - {name: j, container: c, phase: during, command: x}\n",
     "jobs[1]", ["phase must be 'before' or 'after'"]),
    ("containers:\n  c: {image: x}\njobs:\n  - {name: j, container: c, command: x}\n",
     "jobs[0]", ["phase must be"]),
    ("containers:\n  c: {image: x}\njobs:\n  - {name: j, container: c, phase: after, command: x, run: sometimes}\n",
     "jobs[0]", ["run must be on_change, once or always"]),
    ("containers:\n  c: {image: x, files: [{template: nope.j2, dest: /x}]}\n",
     "containers.c.files", ["template 'nope.j2' not found"]),
    ("containers:\n  c: {image: x}\njobs:\n  - {name: j, container: c, phase: before, command: x,\n"
     "     files: [{template: gone.j2, dest: /x}]}\n",
     "jobs[0].files", ["template 'gone.j2' not found"]),
    ("containers:\n  c: {image: x, files: [{template: svc.conf.j2}]}\n",
     "containers.c.files", ["needs 'template' and 'dest'"]),
    ("containers:\n  c: {image: x, files: [{template: svc.conf.j2, dest: /x, merge: toml}]}\n",
     "containers.c.files", ["merge must be ini, yaml or replace", "toml"]),
    ("containers:\n  c: {command: x}\n", "containers.c", ["needs an image"]),
    ("options:\n  svc_x: {type: int}\n", "options.svc_x", ["needs a type", "default"]),
    ("options:\n  svc_x: {type: float, default: 1.5}\n", "options.svc_x", ["needs a type"]),
    ("options:\n  svc_x: 3\n", "options.svc_x", ["needs a type"]),
    ("passwords:\n  svc_pin: pin\n", "passwords.svc_pin", ["password kind must be one of"]),
])
def test_loader_errors_name_file_and_key(tmp_path: Path, text: str, key: str, words: list[str]) -> None:
    path = write_service(tmp_path, text)
    with pytest.raises(MortarError) as info:
        load_service(path)
    err = info.value
    assert err.file == str(path)
    assert err.key == key
    for word in words:
        assert word in err.message
    assert str(err).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_service_yaml_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = write_service(tmp_path, text)
    with pytest.raises(MortarError, match="must be a mapping") as info:
        load_service(path)
    assert info.value.file == str(path)


def test_service_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    path = write_service(tmp_path, "name: [svc\n")
    with pytest.raises(MortarError, match="not valid YAML") as info:
        load_service(path)
    assert info.value.file == str(path)


def test_catalogue_rejects_unknown_dependency(tmp_path: Path) -> None:
    path = write_service(tmp_path, "depends: [keystnoe]\ncontainers:\n  c: {image: x}\n")
    with pytest.raises(MortarError, match="unknown service 'keystnoe'") as info:
        load_catalogue(tmp_path)
    assert info.value.file == str(path)
    assert info.value.key == "depends"


@pytest.mark.parametrize("text", [
    "containers:\n  c: {image: x}\njobs:\n  - {container: c, phase: before, command: x}\n",  # job without name
    "containers:\n  c: {image: x}\njobs:\n  - {name: j, container: c, phase: before}\n",  # job without command
    "containers:\n  c:\n",  # container declared as null
    "depends: keystone\ncontainers:\n  c: {image: x}\n",  # a string, read as a list of letters
], ids=["job-without-name", "job-without-command", "null-container", "depends-as-string"])
def test_malformed_shapes_are_mortar_errors(tmp_path: Path, text: str) -> None:
    path = write_service(tmp_path, text)
    try:
        spec = load_service(path)
    except MortarError as err:
        assert err.file == str(path)
        return
    raise AssertionError(f"accepted: depends={spec.depends}, jobs={spec.jobs}")
