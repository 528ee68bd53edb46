"""The operator's site: globals.yml (schema-checked), passwords.yml, the site id.

All of it is read and validated before any host is touched; every error names the file,
the key and the fix.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
import secrets
import stat
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mortar.agent.wire import HEALTH_INTERVAL
from mortar.catalogue.loader import OPTION_TYPES, ServiceSpec
from mortar.errors import MortarError
from mortar.files import load_yaml, read_text, write_private
from mortar.paths import config_root
from mortar.releases import releases
from mortar.site.certificates import ca_path, site_certificates

DEFAULT_CONFIG_DIR = config_root()
SITE_ID_FILE = "site-id"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NAMESPACE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_REGISTRY = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d+)")
_SITE_ID = re.compile(r"[a-f0-9]{12}")
# Linux allows 15 characters; mortar may add "-host" for the peer of a veth it makes.
_INTERFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,9}")


# A check answers None for a good value, or (what is wrong, how to fix it).
Problem = tuple[str, str] | None


def check_address(value: Any) -> Problem:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return "is not an IP address", "give an IP address, e.g. 10.0.0.11, or 127.0.0.1 on one host"
    return None


VOLUME_OPTION_KEYS = ("type", "o", "device")


def check_volume_options(value: Any) -> Problem:
    example = "e.g. glance_images: {type: none, o: bind, device: /srv/shared/glance}"
    for volume, options in value.items():
        if not isinstance(options, dict) or not options:
            return f"gives {volume} no mapping of the local driver's options", example
        unknown = sorted(set(map(str, options)) - set(VOLUME_OPTION_KEYS))
        if unknown:
            return (f"gives {volume} the option '{unknown[0]}'",
                    f"the local driver takes {', '.join(VOLUME_OPTION_KEYS)}")
        if not all(isinstance(v, str) and v for v in options.values()):
            return f"gives {volume} an empty or non-text option", example
    return None


def check_optional_address(value: Any) -> Problem:
    return None if value == "" else check_address(value)


_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*")


def check_optional_hostname(value: Any) -> Problem:
    """A DNS name ('' leaves it unset); not an address."""
    if value == "":
        return None
    text = str(value)
    try:
        ipaddress.ip_address(text)
        return "is an address, not a DNS name", "give the name (the address goes in the *_vip_address setting)"
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(text):
        return "is not a DNS name", "give a name such as cloud.example.net (letters, digits, '-' and '.')"
    return None


def check_interface_address(value: Any) -> Problem:
    """ADDRESS/PREFIX, e.g. 10.213.78.1/24 ('' leaves it unset)."""
    if value == "":
        return None
    try:
        ipaddress.ip_interface(str(value))
    except ValueError:
        return "is not an address with its prefix length", "give ADDRESS/PREFIX, e.g. 10.213.78.1/24"
    return None if "/" in str(value) else ("has no prefix length", f"give ADDRESS/PREFIX, e.g. {value}/24")


def check_network(value: Any) -> Problem:
    """A subnet in CIDR form, e.g. 10.213.78.0/24 ('' leaves it unset)."""
    if value == "":
        return None
    try:
        ipaddress.ip_network(str(value))
    except ValueError:
        return "is not a subnet in CIDR form", "give NETWORK/PREFIX with no host bits set, e.g. 10.213.78.0/24"
    return None


def check_address_range(value: Any) -> Problem:
    """START-END, two addresses ('' leaves it unset)."""
    if value == "":
        return None
    start, _, end = str(value).partition("-")
    try:
        first, last = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
    except ValueError:
        return "is not an address range", "give START-END, e.g. 10.213.78.100-10.213.78.200"
    if first.version != last.version:
        return "mixes IPv4 and IPv6", "give START-END of one family, e.g. 10.213.78.100-10.213.78.200"
    if int(first) > int(last):
        return "starts after it ends", "give START-END with START the lower address"
    return None


def check_interface_name(value: Any) -> Problem:
    """A Linux interface name ('' leaves it unset); NAME-host must fit too (veth peers)."""
    if value == "" or _INTERFACE.fullmatch(str(value)):
        return None
    return "is not an interface name", "use at most 10 letters, digits, '-', '_' or '.', e.g. eth1 or mortar-ext"


# `format:` of a service option (service.yaml) -> its check.
OPTION_FORMATS = {"address": check_optional_address, "interface_address": check_interface_address,
                  "network": check_network, "address_range": check_address_range,
                  "interface": check_interface_name}


def check_registry(value: Any) -> Problem:
    if value == "":
        return None
    text = str(value)
    if "://" in text:
        bare = text.split("://", 1)[1].rstrip("/")
        example = bare if _REGISTRY.fullmatch(bare) else "10.0.0.10:4000"
        return "is a URL", f"give HOST:PORT only, without the scheme, e.g. {example}"
    match = _REGISTRY.fullmatch(text)
    if not match or not 0 < int(match["port"]) < 65536:
        return "is not HOST:PORT", "give the registry as HOST:PORT with a port of 1-65535, e.g. 10.0.0.10:4000"
    return None


def check_tag(value: Any) -> Problem:
    if _TAG.fullmatch(str(value)):
        return None
    return "is not an image tag", "use letters, digits, '_', '.' and '-' only, no spaces, e.g. 2026.2"


def check_optional_tag(value: Any) -> Problem:
    return None if value == "" else check_tag(value)


def check_namespace(value: Any) -> Problem:
    if _NAMESPACE.fullmatch(str(value)):
        return None
    return "is not an image namespace", "use lowercase letters, digits, '.', '_', '-' and '/', e.g. mortar"


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def check_dns_label(value: Any) -> Problem:
    if _DNS_LABEL.fullmatch(str(value)):
        return None
    return "is not a Kubernetes name", "use at most 63 lowercase letters, digits and '-', e.g. openstack"


def check_quantity(value: Any) -> Problem:
    if _QUANTITY.fullmatch(str(value)):
        return None
    return "is not a Kubernetes quantity", "give a size such as 10Gi or 500Mi"


def check_group_labels(value: Any) -> Problem:
    for entry in value:
        group, _, label = str(entry).partition("=")
        key, sep, label_value = label.partition("=")
        if not (group and sep and _LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(label_value)):
            return (f"has {entry!r}, which is not GROUP=LABEL=VALUE",
                    "give the node label that marks each inventory group, e.g. control=node-role.example/control=yes")
    return None


# Keys every site has; services add their own (`options:` in service.yaml) and an
# `enable_<service>` flag each.
CORE_OPTIONS: dict[str, dict[str, Any]] = {
    "api_address": {"type": "str", "default": "127.0.0.1", "check": check_address,
                    "help": "address every API and infra service binds and is reached at"},
    "api_interface": {"type": "str", "default": "lo", "help": "interface that carries api_address"},
    "internal_vip_address": {"type": "str", "default": "", "check": check_optional_address,
                             "help": "the site's virtual address (VIP): HAProxy (enable_haproxy) "
                                     "serves every API, the database and the dashboard there, and keepalived moves it "
                                     "to another control host when its holder dies. An unused address in the control "
                                     "hosts' subnet; needed when [control] has more than one host"},
    "internal_fqdn": {"type": "str", "default": "", "check": check_optional_hostname,
                      "help": "the DNS name the internal and admin endpoints, every service's URLs of the others "
                              "and clouds.yaml carry instead of internal_vip_address (your DNS or each host's "
                              "/etc/hosts resolves it to internal_vip_address on every host and where you run "
                              "the clients: prechecks check it); empty: the address"},
    "enable_tls_internal": {"type": "bool", "default": False,
                            "help": "HAProxy serves every API and the dashboard on internal_vip_address over HTTPS, "
                                    "with the certificate of certificates/internal.pem (`mortar certificates` "
                                    "issues it with the site CA); every container, clouds.yaml, admin-openrc.sh, "
                                    "verify and Tempest check it against certificates/ca.crt"},
    "enable_tls_backend": {"type": "bool", "default": False,
                           "help": "HAProxy speaks HTTPS to every API and the dashboard behind it too, checking each "
                                   "one's certificate against the site CA: each serves with its host's certificate "
                                   "(certificates/hosts/HOST.crt, `mortar certificates`). Needs enable_tls_internal"},
    "external_vip_address": {"type": "str", "default": "", "check": check_optional_address,
                             "help": "a second virtual address, for the users' side: the public endpoints are "
                                     "registered on it and HAProxy serves every API and the dashboard there too "
                                     "(not the database). keepalived moves it with internal_vip_address. Empty: "
                                     "the public endpoints are on internal_vip_address"},
    "external_fqdn": {"type": "str", "default": "", "check": check_optional_hostname,
                      "help": "the DNS name the public endpoints are registered with (your DNS resolves it to "
                              "external_vip_address, or to internal_vip_address without one); empty: the address"},
    "enable_tls_external": {"type": "bool", "default": False,
                            "help": "HAProxy serves every API and the dashboard on external_vip_address over HTTPS, "
                                    "with the certificate of certificates/external.pem (`mortar certificates` "
                                    "issues it with the site CA for the address and external_fqdn); the public "
                                    "endpoints say https. Without external_vip_address the public endpoints share "
                                    "internal_vip_address's listeners: set it as enable_tls_internal"},
    "volume_options": {"type": "dict", "default": {}, "check": check_volume_options,
                       "help": "volume name -> the options the engine's local volume driver makes it with (type, o, "
                               "device), on every host: e.g. a bind of a folder of a shared filesystem "
                               "(glance_images: {type: none, o: bind, device: /srv/shared/glance}), or an NFS "
                               "export (type: nfs). Only a new volume gets them; a volume that exists is kept"},
    "region_name": {"type": "str", "default": "RegionOne", "help": "keystone region of every endpoint"},
    "docker_registry": {"type": "str", "default": "", "check": check_registry,
                        "help": "registry HOST:PORT every host pulls images from (`mortar registry start` runs one); "
                                "empty: images are local to each host"},
    "docker_registry_insecure": {"type": "bool", "default": False,
                                 "help": "the registry speaks plain HTTP (an operator's own; mortar's registry "
                                         "speaks TLS with the site CA)"},
    "docker_registry_username": {"type": "str", "default": "mortar",
                                 "help": "user every host pulls as (its password: docker_registry_password)"},
    "image_namespace": {"type": "str", "default": "mortar", "check": check_namespace,
                        "help": "image namespace (as given to mortar build)"},
    "openstack_release": {"type": "str", "default": releases().default, "choices": releases().names(),
                          "help": "OpenStack series the site runs (images built with mortar build --release); "
                                  "change it with mortar upgrade"},
    "image_tag": {"type": "str", "default": "", "check": check_optional_tag,
                  "help": "image tag (as given to mortar build --tag); empty: the openstack_release"},
    "openstack_debug": {"type": "bool", "default": False, "help": "debug logging in every OpenStack service"},
    "healthcheck_timeout": {"type": "int", "default": 180, "min": 10,
                            "help": "seconds to wait for a container to serve"},
    "healthcheck_interval": {"type": "int", "default": HEALTH_INTERVAL, "min": 5,
                             "help": "seconds between the engine's probes of a running container (each an exec "
                                     "in it, about 0.1 s of CPU); one that stops serving is called unhealthy "
                                     "after about 4 of them, and the next deploy fixes it"},
    # mortar k8s: the same catalogue on a Kubernetes cluster.
    "k8s_namespace": {"type": "str", "default": "openstack", "check": check_dns_label,
                      "help": "Kubernetes namespace every object of the site goes into"},
    "k8s_service_cidr": {"type": "str", "default": "10.96.0.0/12", "check": check_network,
                         "help": "the cluster's Service range (kube-apiserver --service-cluster-ip-range): mortar "
                                 "gives each Service a fixed address in it, which the rendered configuration names"},
    "k8s_storage_class": {"type": "str", "default": "",
                          "help": "StorageClass of the claims of stateful services; empty: mortar makes a local "
                                  "PersistentVolume for each claim under k8s_volume_dir on the node that runs it"},
    "k8s_volume_dir": {"type": "str", "default": "/var/lib/mortar-volumes",
                       "help": "folder on each node holding local volumes (claims without a StorageClass, and the "
                               "named volumes of per-node agents)"},
    "k8s_volume_size": {"type": "str", "default": "10Gi", "check": check_quantity,
                        "help": "size each claim asks for"},
    "k8s_group_labels": {"type": "list", "default": [], "check": check_group_labels,
                         "help": "the operator's own node labels for inventory groups, GROUP=LABEL=VALUE each; "
                                 "other groups are mortar.openstack.org/group-GROUP=true (mortar k8s label-nodes)"},
    "k8s_image_pull_policy": {"type": "str", "default": "IfNotPresent", "choices": ["IfNotPresent", "Always", "Never"],
                              "help": "imagePullPolicy of every container"},
}
# Secrets mortar itself uses (the catalogue's services add theirs).
CORE_PASSWORDS = {"docker_registry_password": "password"}


@dataclass
class Site:
    config_dir: Path
    globals: dict[str, Any]
    passwords: dict[str, str]
    services: dict[str, ServiceSpec]
    enabled: set[str] = field(default_factory=set)
    site_id: str = ""
    # Secrets of CONFIG_DIR/certificates the containers may use (mortar.site.certificates).
    certificates: dict[str, str] = field(default_factory=dict)

    @property
    def secrets(self) -> dict[str, str]:
        """Every secret a container's secret files may hold: passwords.yml's and the certificates'."""
        return {**self.passwords, **self.certificates}

    @property
    def ca_file(self) -> Path | None:
        """The CA that clients check the site's endpoints with (None: the site speaks plain HTTP)."""
        return ca_path(self.config_dir) if self.certificates else None

    @functools.cached_property
    def ca_pem(self) -> str:
        """The text of ca_file, read once ("" without TLS): every container of the site holds it."""
        return read_text(self.ca_file, what="site CA certificate") if self.ca_file is not None else ""

    @property
    def release(self) -> str:
        return str(self.globals["openstack_release"])

    @property
    def image_tag(self) -> str:
        return str(self.globals["image_tag"] or self.globals["openstack_release"])

    def image_ref(self, image: str) -> str:
        prefix = f"{self.globals['docker_registry']}/" if self.globals["docker_registry"] else ""
        return f"{prefix}{self.globals['image_namespace']}/{image}:{self.image_tag}"

    def registry_auth(self) -> dict[str, str]:
        registry = str(self.globals["docker_registry"])
        password = self.passwords.get("docker_registry_password", "")
        if not registry or not password or self.globals["docker_registry_insecure"]:
            return {}
        return {"registry": registry, "username": str(self.globals["docker_registry_username"]),
                "password": password}


def schema(services: dict[str, ServiceSpec]) -> dict[str, dict[str, Any]]:
    keys = dict(CORE_OPTIONS)
    for spec in services.values():
        keys[f"enable_{spec.name}"] = {"type": "bool", "default": spec.enabled,
                                       "help": f"deploy {spec.name} ({spec.description})"
                                       + (f"; default: as enable_{spec.enabled_with}" if spec.enabled_with else "")}
        keys.update({name: {**decl, "check": OPTION_FORMATS[decl["format"]]} if "format" in decl else decl
                     for name, decl in spec.options.items()})
    return keys


def _type_ok(value: Any, kind: str) -> bool:
    if kind in ("int", "str"):
        return isinstance(value, OPTION_TYPES[kind]) and not isinstance(value, bool)
    return isinstance(value, OPTION_TYPES[kind])


def load_globals(path: Path, services: dict[str, ServiceSpec]) -> dict[str, Any]:
    keys = schema(services)
    data = load_yaml(path, what="globals.yml", how_to_make="mortar init")
    values = {key: decl["default"] for key, decl in keys.items()}
    for key, value in data.items():
        if not isinstance(key, str) or key not in keys:
            close = difflib.get_close_matches(str(key), sorted(keys), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `mortar init` for the known keys"
            raise MortarError("unknown key", file=str(path), key=str(key), fix=hint)
        decl = keys[key]
        # `openstack_release: 2026.1` unquoted is a YAML float; the choice it names is meant.
        if isinstance(value, float) and decl["type"] == "str" and "choices" in decl:
            value = str(value)
        if not _type_ok(value, decl["type"]):
            raise MortarError(f"must be of type {decl['type']}, not {type(value).__name__} ({value!r})",
                              file=str(path), key=key, fix=f"e.g. {key}: {yaml.safe_dump(decl['default']).strip()}"
                              .replace("\n...", ""))
        if "choices" in decl and value not in decl["choices"]:
            raise MortarError(f"'{value}' is not allowed", file=str(path), key=key,
                              fix=f"choose one of {', '.join(map(str, decl['choices']))}")
        if decl["type"] == "int" and value < decl.get("min", -(2**63)):
            raise MortarError(f"must be at least {decl['min']}, not {value}", file=str(path), key=key,
                              fix=f"e.g. {key}: {max(decl['default'], decl['min'])}")
        problem = decl["check"](value) if "check" in decl else None
        if problem:
            raise MortarError(f"{value!r} {problem[0]}", file=str(path), key=key, fix=problem[1])
        values[key] = value
    # An unset enable_<x> of a service that follows another takes that one's value.
    for spec in services.values():
        if spec.enabled_with and f"enable_{spec.name}" not in data:
            values[f"enable_{spec.name}"] = values[f"enable_{spec.enabled_with}"]
    return values


def host_settings(services: dict[str, ServiceSpec], host_vars: dict[str, dict[str, str]],
                  inventory_file: str) -> dict[str, dict[str, str]]:
    """Per-host values of the options declared `per_host: true`, from the inventory's host
    variables (`compute1 neutron_tunnel_address=10.0.1.11/24`), each checked like globals.yml's."""
    keys = {name: decl for name, decl in schema(services).items() if decl.get("per_host")}
    settings: dict[str, dict[str, str]] = {}
    for host, variables in host_vars.items():
        for key, value in variables.items():
            if key not in keys:
                continue
            decl = keys[key]
            if "choices" in decl and value not in decl["choices"]:
                raise MortarError(f"'{value}' is not allowed", file=inventory_file, key=f"{host} {key}",
                                  fix=f"choose one of {', '.join(map(str, decl['choices']))}")
            problem = decl["check"](value) if "check" in decl else None
            if problem:
                raise MortarError(f"{value!r} {problem[0]}", file=inventory_file, key=f"{host} {key}",
                                  fix=problem[1])
            settings.setdefault(host, {})[key] = value
    return settings


def required_passwords(services: dict[str, ServiceSpec], enabled: set[str]) -> dict[str, str]:
    needed: dict[str, str] = dict(CORE_PASSWORDS)
    for name in sorted(enabled):
        needed.update(services[name].passwords)
    return needed


def check_private(path: Path) -> None:
    """passwords.yml must be the operator's and root's only."""
    try:
        info = path.stat()
    except OSError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
        raise MortarError(f"is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): it holds every secret "
                          "of the cloud", file=str(path), fix=f"chmod 600 {path}")


def load_passwords(path: Path, needed: dict[str, str]) -> dict[str, str]:
    data = load_yaml(path, what="passwords.yml", how_to_make="mortar genpwd")
    check_private(path)
    for key, value in data.items():
        # YAML reads 0123 as 83 and 3.10 as 3.1: a secret that is not text may not be what was typed.
        if not isinstance(key, str) or not isinstance(value, str | None):
            raise MortarError(f"must be a string, not {type(value).__name__}", file=str(path), key=str(key),
                              fix=f"write every secret as quoted text, e.g. {key}: '...'")
    missing = [key for key in needed if data.get(key) in (None, "")]
    if missing:
        raise MortarError(f"missing password{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                          file=str(path), key=missing[0], fix="run `mortar genpwd` to fill them")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def generate_secret(kind: str) -> str:
    if kind == "fernet":
        import base64

        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    if kind == "hex":
        return secrets.token_hex(32)
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def genpwd(path: Path, needed: dict[str, str]) -> list[str]:
    """Fill every missing secret; never overwrite a value that is there. Returns new keys.
    The site id is made here too when the site has none."""
    existing = load_yaml(path, what="passwords.yml", required=False)
    added = []
    for key, kind in sorted(needed.items()):
        if existing.get(key) in (None, ""):
            existing[key] = generate_secret(kind)
            added.append(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# Generated by `mortar genpwd`: every secret the enabled services need. Keep it safe.\n"
            + yaml.safe_dump(existing, default_flow_style=False, sort_keys=True))
    write_private(path, text)
    site_id(path.parent)
    return added


def rotate(path: Path, services: dict[str, ServiceSpec], name: str) -> list[str]:
    """Apply every rotation called NAME of the catalogue to passwords.yml (whole or not at all).
    Returns the secrets that changed."""
    rotations = [(spec, spec.rotations[name]) for spec in services.values() if name in spec.rotations]
    if not rotations:
        raise MortarError(f"no service of the catalogue declares a rotation named {name!r}")
    check_private(path)
    existing = load_yaml(path, what="passwords.yml", how_to_make="mortar genpwd")
    updated = dict(existing)
    changed: list[str] = []
    for spec, rotation in rotations:
        for password in [rotation.new, *rotation.moves.values()]:
            if existing.get(password) in (None, ""):
                raise MortarError(f"{password} is missing", file=str(path), key=password, fix="run `mortar genpwd`")
        for destination, source in rotation.moves.items():
            updated[destination] = existing[source]
        updated[rotation.new] = generate_secret(spec.passwords[rotation.new])
        changed += [rotation.new, *rotation.moves]
    text = ("# Generated by `mortar genpwd`: every secret the enabled services need. Keep it safe.\n"
            + yaml.safe_dump(updated, default_flow_style=False, sort_keys=True))
    write_private(path, text)
    return sorted(changed)


def set_global(path: Path, key: str, value: str) -> bool:
    """Set one top-level key of globals.yml, keeping every other line and comment as it is
    (the line that sets it is rewritten, or one is added). True when the file changed."""
    text = read_text(path, what="globals.yml")
    line = f"{key}: '{value}'"
    pattern = re.compile(rf"^{re.escape(key)}:.*$", re.M)
    if pattern.search(text):
        new = pattern.sub(line, text, count=1)
    else:
        new = text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    if new == text:
        return False
    write_private(path, new, mode=path.stat().st_mode & 0o777)
    return True


def site_id(config_dir: Path, create: bool = True) -> str:
    """The deployment's id: made once (a random hex string), kept in CONFIG_DIR/site-id."""
    path = config_dir / SITE_ID_FILE
    if path.exists() or path.is_symlink():
        text = read_text(path, what="site id").strip()
        if not _SITE_ID.fullmatch(text):
            raise MortarError("is not a mortar site id (12 hex digits)", file=str(path),
                              fix="restore it from a backup of the site; a new id would orphan the deployment")
        return text
    if not create:
        raise MortarError("no site id: the deployment's id is made by `mortar init` or `mortar genpwd`",
                          file=str(path), fix="run `mortar genpwd`: it keeps every existing secret")
    value = uuid.uuid4().hex[:12]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, value + "\n", mode=0o644)
    return value


def load_site(config_dir: Path, services: dict[str, ServiceSpec], release: str | None = None) -> Site:
    """The site of CONFIG_DIR; RELEASE, when given, stands for globals.yml's openstack_release
    (the series an upgrade moves it to)."""
    if config_dir.exists() and not config_dir.is_dir():
        raise MortarError("the site directory is not a directory", file=str(config_dir),
                          fix="pass --config-dir DIR holding globals.yml, passwords.yml and inventory")
    values = load_globals(config_dir / "globals.yml", services)
    if release is not None:
        values["openstack_release"] = releases().get(release, key="--release").name
    enabled = {name for name in services if values[f"enable_{name}"]}
    passwords = load_passwords(config_dir / "passwords.yml", required_passwords(services, enabled))
    return Site(config_dir=config_dir, globals=values, passwords=passwords, services=services, enabled=enabled,
                site_id=site_id(config_dir, create=False), certificates=site_certificates(config_dir, values))
