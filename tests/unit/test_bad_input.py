"""Every bad input answered: one `error: FILE: KEY: what (fix)` line, exit 2, no traceback, no host touched.

Each case starts from a fresh `mortar init` + `mortar genpwd` site, breaks one thing and runs
the real CLI in-process. The engine and Ansible are replaced by recorders: a bad input must
be refused before mortar asks any host anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from mortar.cli.main import cli
from mortar.site.samples import INVENTORY_AIO
from tests.unit.fakeengine import FakeEngine

PLAN = ("plan", "--executor", "local")
Setup = Callable[[Path], object]


@dataclass
class Bad:
    id: str
    setup: Setup
    file: str | None  # relative to the site, or absolute ("{site}" is replaced); None: no file is at fault
    key: str | None  # the key, line or option the error must name
    words: tuple[str, ...] = ()
    args: tuple[str, ...] = PLAN  # with --config-dir SITE appended unless the args hold "{site}"


# ---- ways to break a site -----------------------------------------------------------------

def write(relative: str, content: str | bytes) -> Setup:
    def change(site: Path) -> None:
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return change


def directory(relative: str) -> Setup:
    def change(site: Path) -> None:
        path = site / relative
        if path.is_file():
            path.unlink()
        path.mkdir(parents=True)
    return change


def remove(relative: str) -> Setup:
    return lambda site: (site / relative).unlink()


def dangling(relative: str) -> Setup:
    def change(site: Path) -> None:
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.symlink_to(site / "nowhere")
    return change


def mode(relative: str, bits: int) -> Setup:
    return lambda site: (site / relative).chmod(bits)


def globals_(text: str) -> Setup:
    return write("globals.yml", text)


def append(relative: str, text: str) -> Setup:
    return lambda site: (site / relative).write_text((site / relative).read_text() + text)


def passwords(change: Callable[[dict], object], then: str = "") -> Setup:
    """passwords.yml as CHANGE leaves its data, then the raw YAML THEN (still mode 0600)."""
    def apply(site: Path) -> None:
        path = site / "passwords.yml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data) + then)
        path.chmod(0o600)
    return apply


def host_line(line: str) -> Setup:
    """The all-in-one inventory with its first host line (in [control]) replaced by LINE."""
    return write("inventory", INVENTORY_AIO.replace("localhost ansible_connection=local", line, 1))


def both(*setups: Setup) -> Setup:
    def apply(site: Path) -> None:
        for setup in setups:
            setup(site)
    return apply


def replace_site_with_file(site: Path) -> None:
    import shutil

    shutil.rmtree(site)
    site.write_text("not a directory\n")


PROMETHEUS = globals_("enable_prometheus: true\n")

CASES: list[Bad] = [
    # globals.yml: unreadable
    Bad("globals-binary", write("globals.yml", b"\x7fELF\x02\x01\x00\x00"), "globals.yml", None, ("binary",)),
    Bad("globals-not-utf8", write("globals.yml", b"region_name: R\xe9gion\n"), "globals.yml", None, ("UTF-8",)),
    Bad("globals-is-a-directory", directory("globals.yml"), "globals.yml", None, ("directory",)),
    Bad("globals-missing", remove("globals.yml"), "globals.yml", None, ("not found", "mortar init")),
    Bad("globals-broken-symlink", dangling("globals.yml"), "globals.yml", None, ("broken symlink",)),
    Bad("globals-malformed-yaml", globals_("enable_nova: true\nkeystone_workers: [1\n"), "globals.yml", "line 3",
        ("malformed YAML",)),
    Bad("globals-key-set-twice", globals_("enable_nova: true\nregion_name: R1\nenable_nova: false\n"),
        "globals.yml", "line 3", ("'enable_nova' is set twice",)),
    Bad("globals-not-a-mapping", globals_("- enable_nova: true\n"), "globals.yml", None, ("mapping",)),
    # globals.yml: keys and values
    Bad("globals-unknown-key-did-you-mean", globals_("enable_keystnoe: true\n"), "globals.yml", "enable_keystnoe",
        ("unknown key", "did you mean 'enable_keystone'?")),
    Bad("globals-key-not-a-string", globals_("1: x\n"), "globals.yml", "1", ("unknown key",)),
    Bad("globals-api-address-300.1.2.3", globals_("api_address: 300.1.2.3\n"), "globals.yml", "api_address",
        ("300.1.2.3", "not an IP address")),
    Bad("globals-docker-registry-with-scheme", globals_("docker_registry: http://10.0.0.1:4000\n"), "globals.yml",
        "docker_registry", ("is a URL", "10.0.0.1:4000")),
    Bad("globals-docker-registry-without-port", globals_("docker_registry: 10.0.0.1\n"), "globals.yml",
        "docker_registry", ("HOST:PORT",)),
    Bad("globals-image-tag-with-spaces", globals_("image_tag: my tag\n"), "globals.yml", "image_tag",
        ("not an image tag", "no spaces")),
    Bad("globals-openstack-release-unknown", globals_("openstack_release: 2024.1\n"), "globals.yml",
        "openstack_release", ("'2024.1' is not allowed", "2025.1, 2025.2, 2026.1, 2026.2")),
    Bad("globals-image-namespace-uppercase", globals_("image_namespace: My Images\n"), "globals.yml",
        "image_namespace", ("not an image namespace",)),
    Bad("globals-int-given-a-string", globals_('keystone_workers: "two"\n'), "globals.yml", "keystone_workers",
        ("must be of type int, not str",)),
    Bad("globals-bool-given-a-list", globals_("openstack_debug: [true]\n"), "globals.yml", "openstack_debug",
        ("must be of type bool, not list",)),
    Bad("globals-bool-given-a-string", globals_("enable_nova: 'yes'\n"), "globals.yml", "enable_nova",
        ("must be of type bool, not str",)),
    Bad("globals-int-below-minimum", globals_("healthcheck_timeout: 1\n"), "globals.yml", "healthcheck_timeout",
        ("at least 10",)),
    Bad("globals-choice-not-allowed", globals_("nova_compute_driver: xen\n"), "globals.yml", "nova_compute_driver",
        ("'xen' is not allowed", "libvirt")),
    Bad("globals-mariadb-disabled-keystone-enabled", globals_("enable_mariadb: false\n"), "globals.yml",
        "enable_mariadb", ("database provider", "enable_mariadb: true")),
    # passwords.yml
    Bad("passwords-binary", write("passwords.yml", b"\x00\x00\x00\x01"), "passwords.yml", None, ("binary",)),
    Bad("passwords-not-utf8", write("passwords.yml", b"keystone_admin_password: \xff\xfe\n"), "passwords.yml", None,
        ("UTF-8",)),
    Bad("passwords-is-a-directory", directory("passwords.yml"), "passwords.yml", None, ("directory",)),
    Bad("passwords-missing", remove("passwords.yml"), "passwords.yml", None, ("not found", "mortar genpwd")),
    Bad("passwords-world-readable", mode("passwords.yml", 0o644), "passwords.yml", None,
        ("readable by others", "chmod 600")),
    Bad("passwords-group-readable", mode("passwords.yml", 0o640), "passwords.yml", None, ("chmod 600",)),
    Bad("passwords-missing-key", passwords(lambda d: d.pop("keystone_database_password")), "passwords.yml",
        "keystone_database_password", ("missing password", "mortar genpwd")),
    Bad("passwords-empty-value", passwords(lambda d: d.update(rabbitmq_password="")), "passwords.yml",
        "rabbitmq_password", ("missing password",)),
    Bad("passwords-value-is-a-mapping", passwords(lambda d: d.update(keystone_admin_password={"a": 1})),
        "passwords.yml", "keystone_admin_password", ("must be a string, not dict",)),
    Bad("passwords-value-is-a-list", passwords(lambda d: d.update(database_password=["a", "b"])), "passwords.yml",
        "database_password", ("must be a string, not list",)),
    Bad("passwords-malformed-yaml", both(write("passwords.yml", "a: 'unterminated\n"), mode("passwords.yml", 0o600)),
        "passwords.yml", "line 2", ("malformed YAML",)),
    Bad("passwords-key-set-twice", append("passwords.yml", "keystone_admin_password: typed-by-hand\n"),
        "passwords.yml", None, ("'keystone_admin_password' is set twice",)),
    Bad("passwords-value-looks-like-a-number", passwords(lambda d: d.pop("keystone_admin_password"),
                                                         then="keystone_admin_password: 0123\n"),
        "passwords.yml", "keystone_admin_password", ("must be a string, not int",)),
    Bad("passwords-not-a-mapping", both(write("passwords.yml", "- secret\n"), mode("passwords.yml", 0o600)),
        "passwords.yml", None, ("mapping",)),
    # inventory: unreadable
    Bad("inventory-binary", write("inventory", b"\x7fELF\x02\x01\x00"), "inventory", None, ("binary",)),
    Bad("inventory-not-utf8", write("inventory", b"[control]\nh\xf6st\n"), "inventory", None, ("UTF-8",)),
    Bad("inventory-is-a-directory", directory("inventory"), "inventory", None, ("directory",)),
    Bad("inventory-missing", remove("inventory"), "inventory", None, ("not found",)),
    Bad("inventory-option-names-a-directory", lambda site: None, "{site}", None, ("inventory is a directory",),
        args=(*PLAN, "-i", "{site}")),
    Bad("inventory-malformed-section", write("inventory", "[control\nlocalhost\n"), "inventory", "line 1",
        ("malformed section header",)),
    # inventory: hosts
    Bad("inventory-host-api-address-300.1.2.3", host_line("localhost ansible_connection=local api_address=300.1.2.3"),
        "inventory", "line 4", ("api_address '300.1.2.3' is not an IP address",)),
    Bad("inventory-ansible-port-not-a-number", host_line("localhost ansible_connection=local ansible_port=ssh"),
        "inventory", "line 4", ("ansible_port 'ssh'",)),
    Bad("inventory-ansible-port-above-65535", host_line("localhost ansible_connection=local ansible_port=65536"),
        "inventory", "line 4", ("ansible_port '65536'",)),
    Bad("inventory-host-port-suffix-above-65535", host_line("localhost:70000 ansible_connection=local"),
        "inventory", "line 4", ("ansible_port '70000'",)),
    Bad("inventory-host-name-with-slash", host_line("a/b ansible_connection=local"), "inventory", "line 4",
        ("'a/b' is not a valid host name",)),
    Bad("inventory-host-name-with-space", host_line("'a b' ansible_connection=local"), "inventory", "line 4",
        ("'a b' is not a valid host name",)),
    Bad("inventory-host-name-dotdot", host_line(".. ansible_connection=local"), "inventory", "line 4",
        ("'..' is not a valid host name",)),
    Bad("inventory-host-name-semicolon", host_line("a;b ansible_connection=local"), "inventory", "line 4",
        ("'a;b' is not a valid host name",)),
    Bad("inventory-host-name-subshell", host_line("$(x) ansible_connection=local"), "inventory", "line 4",
        ("'$(x)' is not a valid host name",)),
    Bad("inventory-ansible-host-shell", host_line("localhost ansible_connection=local ansible_host=a;reboot"),
        "inventory", "line 4", ("ansible_host 'a;reboot'",)),
    Bad("inventory-host-twice-in-one-group", host_line("localhost ansible_connection=local\nlocalhost"),
        "inventory", "line 5", ("listed twice in [control]",)),
    Bad("inventory-two-hosts-one-api-address",
        host_line("localhost ansible_connection=local api_address=127.0.0.1\n"
                  "other ansible_connection=local api_address=127.0.0.1"),
        "inventory", "line 5", ("both have api_address 127.0.0.1",)),
    Bad("inventory-empty-group-an-enabled-service-needs",
        write("inventory", INVENTORY_AIO.replace("[control]\nlocalhost ansible_connection=local\n", "[control]\n")),
        "inventory", "[control]", ("empty or missing",)),
    Bad("inventory-local-executor-remote-host", host_line("node1 ansible_host=10.213.77.11"), "inventory", "node1",
        ("not this machine", "--executor ansible")),
    # config/ overrides
    Bad("override-unknown-service", directory("config/nvoa"), "config/nvoa", None,
        ("unknown service 'nvoa'", "did you mean 'nova'?")),
    Bad("override-unknown-service-conf", write("config/keystnoe.conf", "[token]\nexpiration = 1\n"),
        "config/keystnoe.conf", None, ("unknown service 'keystnoe'", "did you mean 'keystone'?")),
    Bad("override-unknown-host", write("config/nova/nod1/nova.conf", "[DEFAULT]\ndebug = true\n"), "config/nova/nod1",
        None, ("unknown host 'nod1'", "localhost")),
    Bad("override-unknown-file-of-known-service", write("config/nova/nova-compute.conf", "[DEFAULT]\n"),
        "config/nova/nova-compute.conf", None, ("unknown nova file", "nova.conf")),
    # nova renders no policy.yaml: the replace-a-.yaml-file path is tested through mortar.site.overrides directly.
    Bad("override-nova-policy-yaml-that-nova-does-not-render", write("config/nova/policy.yaml", "a: [1\n"),
        "config/nova/policy.yaml", None, ("unknown nova file 'policy.yaml'",)),
    Bad("override-unknown-file-in-host-dir", write("config/nova/localhost/policy.json", "{}"),
        "config/nova/localhost/policy.json", None, ("unknown nova file",)),
    Bad("override-file-is-a-directory", directory("config/nova/nova.conf"), "config/nova/nova.conf", None,
        ("is a directory, expected a file",)),
    Bad("override-ini-line-without-key", write("config/nova/nova.conf", "[DEFAULT]\njust words\n"),
        "config/nova/nova.conf", "line 2", ("expected 'key = value'",)),
    Bad("override-global-conf-outside-section", write("config/global.conf", "debug = true\n"), "config/global.conf",
        "line 1", ("outside any section",)),
    Bad("override-binary", write("config/keystone.conf", b"\x00\x01\x02"), "config/keystone.conf", None,
        ("binary",)),
    Bad("override-not-utf8", write("config/nova/nova.conf", b"[DEFAULT]\nmy_ip = \xe9\n"), "config/nova/nova.conf",
        None, ("UTF-8",)),
    Bad("override-broken-symlink", dangling("config/nova/nova.conf"), "config/nova/nova.conf", None,
        ("broken symlink",)),
    Bad("override-json-replace-not-json", write("config/rabbitmq/definitions.json", "{users: [}\n"),
        "config/rabbitmq/definitions.json", "line 1", ("invalid JSON",)),
    Bad("override-yaml-merge-not-yaml", both(PROMETHEUS, write("config/prometheus/prometheus.yml", "a: [1\n")),
        "config/prometheus/prometheus.yml", "line 2", ("malformed YAML",)),
    Bad("override-yaml-merge-not-a-mapping",
        both(PROMETHEUS, write("config/prometheus/prometheus.yml", "scrape_interval 30s\n")),
        "config/prometheus/prometheus.yml", None, ("override is a str", "mapping")),
    Bad("override-config-is-a-file", both(lambda site: (site / "config").rmdir(), write("config", "")), "config",
        None, ("not a directory",)),
    Bad("override-stray-top-level-file", write("config/notes.txt", "todo\n"), "config/notes.txt", None,
        ("unexpected file",)),
    # site id
    Bad("site-id-malformed", write("site-id", "my-cloud\n"), "site-id", None, ("not a mortar site id",)),
    Bad("site-id-binary", write("site-id", b"\x00\xff"), "site-id", None, ("binary",)),
    Bad("site-id-is-a-directory", directory("site-id"), "site-id", None, ("directory",)),
    # command-line arguments
    Bad("config-dir-is-a-file", replace_site_with_file, "{site}", None, ("not a directory",)),
    Bad("plan-limit-unknown-host", lambda site: None, "inventory", "--limit", ("unknown host or group 'nosuch'",),
        args=(*PLAN, "--limit", "nosuch")),
    Bad("deploy-limit-unknown-host", lambda site: None, "inventory", "--limit", ("'contrl'", "did you mean"),
        args=("deploy", "--executor", "local", "--limit", "contrl")),
    Bad("limit-empty-name", lambda site: None, "inventory", "--limit", ("empty name",),
        args=(*PLAN, "--limit", "control,,compute")),
    Bad("destroy-without-confirmation", lambda site: None, None, "--yes-i-really-really-mean-it", ("refusing",),
        args=("destroy", "--executor", "local")),
    Bad("build-push-registry-with-scheme", lambda site: None, None, "--registry", ("is a URL", "10.0.0.1:4000"),
        args=("build", "--push", "--registry", "http://10.0.0.1:4000", "keystone")),
    Bad("build-registry-port-out-of-range", lambda site: None, None, "--registry", ("HOST:PORT",),
        args=("build", "--push", "--registry", "10.0.0.1:99999", "keystone")),
    Bad("build-push-without-registry", lambda site: None, None, "--push", ("--registry",),
        args=("build", "--push", "keystone")),
    Bad("build-tag-with-spaces", lambda site: None, None, "--tag", ("'my tag' is not an image tag",),
        args=("build", "--tag", "my tag", "keystone")),
    Bad("build-namespace-invalid", lambda site: None, None, "--namespace", ("not an image namespace",),
        args=("build", "--namespace", "My NS", "keystone")),
    Bad("build-push-passwords-world-readable", mode("passwords.yml", 0o644), "passwords.yml", None, ("chmod 600",),
        args=("build", "--push", "--registry", "10.0.0.1:4000", "keystone")),
    Bad("build-plugin-not-image-equals-requirement", lambda site: None, None, "--plugin",
        ("not IMAGE=PIP-REQUIREMENT",), args=("build", "--plugin", "networking-foo", "neutron")),
    Bad("build-plugins-file-is-a-directory", lambda site: None, "{site}", "--plugins-file", ("directory",),
        args=("build", "--plugins-file", "{site}", "neutron")),
    Bad("build-unknown-profile", lambda site: None, None, "--profile", ("unknown profile 'nope'",),
        args=("build", "--profile", "nope")),
]


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 45
    assert len({case.id for case in CASES}) == len(CASES), "every case has its own id"


# ---- running the CLI with no host in reach ------------------------------------------------

@pytest.fixture(scope="module")
def commands() -> None:
    """What main() does before it runs: every sub-command registered on the group."""
    from mortar.cli import deploy, engine, images, registry  # noqa: F401 - registers the commands
    from mortar.cli.testbed import testbed

    cli.add_command(testbed)


@pytest.fixture
def touched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """Every reach for a host (the engine, Ansible) is recorded; the engine is an in-memory one."""
    import mortar.engine
    from mortar.deploy.executors.ansible import AnsibleExecutor
    from mortar.engine.dockerengine import DockerEngine

    seen: list[str] = []
    engines: list[FakeEngine] = []

    def connect(*args: object, **kwargs: object) -> FakeEngine:
        seen.append("engine")
        engines.append(FakeEngine())
        return engines[-1]

    def ansible(name: str) -> Callable[..., object]:
        def reach(*args: object, **kwargs: object) -> object:
            seen.append(f"ansible {name}")
            raise AssertionError(f"Ansible {name} reached for a host")
        return reach

    monkeypatch.setattr(mortar.engine, "connect", connect)
    monkeypatch.setattr(DockerEngine, "connect", classmethod(lambda cls, *a, **k: connect()))
    monkeypatch.setattr(AnsibleExecutor, "run", ansible("run"))
    monkeypatch.setattr(AnsibleExecutor, "bootstrap", ansible("bootstrap"))
    monkeypatch.setenv("MORTAR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MORTAR_LOG_DIR", str(tmp_path / "log"))
    yield seen
    for engine in engines:
        assert engine.changes() == [], "a bad input changed something on the engine"


def invoke(site: Path, args: tuple[str, ...]) -> Result:
    argv = [arg.replace("{site}", str(site)) for arg in args]
    if "--config-dir" not in argv:
        argv += ["--config-dir", str(site)]
    return CliRunner().invoke(cli, argv)


def trailing_fix(line: str) -> str:
    """The text of the balanced '(...)' that ends LINE: where MortarError puts the fix."""
    assert line.endswith(")"), f"no fix in parentheses at the end: {line}"
    depth = 0
    for index in range(len(line) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(line[index], 0)
        if depth == 0:
            assert line[index - 1] == " ", line
            return line[index + 1:-1]
    raise AssertionError(f"unbalanced parentheses: {line}")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_error_line(case: Bad, site_dir: Path, commands: None, touched: list[str],
                                     tmp_path: Path) -> None:
    case.setup(site_dir)
    result = invoke(site_dir, case.args)
    output = result.output + (result.stderr or "")
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, errors
    line = errors[0]
    assert line.startswith("error: "), line
    assert [x for x in result.output.splitlines() if x.startswith("error: ")] == [line]
    if case.file is not None:
        where = case.file.replace("{site}", str(site_dir))
        path = where if where.startswith("/") else str(site_dir / where)
        assert f"error: {path}: " in line, (path, line)
    if case.key is not None:
        assert f"{case.key}: " in line, (case.key, line)
    for word in case.words:
        assert word in line, (word, line)
    fix = trailing_fix(line)
    assert len(fix) > 8 and not re.fullmatch(r"mode \d+", fix), fix
    assert touched == [], f"a host was reached before the input was refused: {touched}"
    assert not (tmp_path / "state" / "sites").exists(), "no site state is written for a refused input"


def test_a_good_site_does_reach_the_engine(site_dir: Path, commands: None, touched: list[str]) -> None:
    # The control: the same command on the unbroken site gets past validation to the (fake) engine,
    # so every refusal above is the input's doing.
    result = invoke(site_dir, PLAN)
    assert touched and touched[0] == "engine", result.output
    assert result.exit_code == 0 and "host localhost:" in result.output, result.output
    assert "Traceback" not in result.output


def test_every_case_breaks_a_site_that_was_good(site_dir: Path) -> None:
    # The fixture site loads as it is: what a case breaks is the only thing wrong.
    from mortar.deploy.orchestrator import load_deployment

    deployment = load_deployment(site_dir)
    assert deployment.site.enabled and deployment.desired.hosts
