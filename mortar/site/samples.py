"""`mortar init`: commented samples an operator edits."""

from __future__ import annotations

from pathlib import Path

import yaml

from mortar.catalogue.loader import load_catalogue
from mortar.site.config import schema

INVENTORY_AIO = """\
# All-in-one: this host is every group. For more hosts, list them under each group
# (name ansible_host=ADDRESS api_address=ADDRESS), see the README.
[control]
localhost ansible_connection=local

[network]
localhost ansible_connection=local

[compute]
localhost ansible_connection=local

[storage]
localhost ansible_connection=local

[monitoring]
localhost ansible_connection=local
"""

INVENTORY_MULTINODE = """\
# Multi-host: copy to `inventory` and edit. mortar reaches these hosts over SSH (Ansible);
# api_address is what each host's services bind and are reached at. Then, in order:
#   mortar registry start; mortar build --profile core --push --registry <docker_registry>
#   mortar bootstrap-servers; mortar prechecks; mortar pull; mortar deploy
# Hosts without the openvswitch kernel module (userspace datapath) need a tunnel address each,
# in a slice of their subnet that nothing else uses, e.g. neutron_tunnel_address=10.0.0.139/26.
[control]
ctl1 ansible_host=10.0.0.11 api_address=10.0.0.11

[network]
ctl1

[compute]
cmp1 ansible_host=10.0.0.21 api_address=10.0.0.21
cmp2 ansible_host=10.0.0.22 api_address=10.0.0.22

[storage]

[monitoring]

[all:vars]
ansible_user=root
# ansible_ssh_private_key_file=/root/.ssh/id_ed25519
# ansible_become=true   (for a non-root ansible_user with sudo)
"""

OVERRIDES_HELP = """\
# Overrides: files under config/ are merged into the rendered files, in this order (later wins):
#   template, config/global.conf, config/<service>.conf, config/<service>/<file>,
#   config/<service>/<host>/<file>. INI and YAML merge key by key; other files (e.g. policy)
#   replace the whole file. Example: config/keystone/keystone.conf with "[token]" "expiration = 3600".
"""


def globals_sample() -> str:
    lines = ["# mortar site settings. Every key is optional; defaults are shown commented out.",
             "# Unknown keys are rejected.", OVERRIDES_HELP]
    for key, decl in sorted(schema(load_catalogue()).items()):
        if decl.get("help"):
            lines.append(f"# {decl['help']}" + (f" (one of: {', '.join(map(str, decl['choices']))})"
                                                 if "choices" in decl else ""))
        lines.append("#" + yaml.safe_dump({key: decl["default"]}, default_flow_style=True).strip()[1:-1])
    return "\n".join(lines) + "\n" + AIO_PROVIDER_NETWORK


AIO_PROVIDER_NETWORK = """
# All-in-one provider network: mortar creates a veth pair on this host; br-ex gets mortar-ext and
# the host keeps mortar-ext-host at the address below, so floating IPs of 10.213.78.0/24 answer
# from here (`mortar init-runonce` makes that network). On real hosts name the NIC that carries
# the provider network instead, and drop the veth address.
neutron_external_interface: mortar-ext
neutron_external_veth_address: 10.213.78.1/24
"""


def write_samples(config_dir: Path) -> list[tuple[Path, bool]]:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config").mkdir(exist_ok=True)
    files = {config_dir / "globals.yml": globals_sample(), config_dir / "inventory": INVENTORY_AIO,
             config_dir / "inventory.multinode": INVENTORY_MULTINODE}
    done = []
    for path, text in files.items():
        if path.exists():
            done.append((path, False))
            continue
        path.write_text(text)
        done.append((path, True))
    return done
