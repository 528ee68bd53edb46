"""The ovn service of the catalogue on one control host (standalone databases, rendered as they
always were) and on several (RAFT clusters of the northbound and southbound databases, northd
on every host, every client given every member): what the planner renders, no engine needed."""

from __future__ import annotations

import configparser
import subprocess
from collections.abc import Callable

import pytest

from mortar.agent.wire import Container
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.k8s.topology import ClusterTopology
from mortar.site.config import Site
from mortar.site.inventory import parse_inventory
from mortar.site.samples import INVENTORY_AIO

# The OVN databases and northd on three hosts of their own group; everything else on one control host.
OVN_ON_THREE = """\
[control]
control1 api_address=10.0.0.11
[ovn]
ovn1 api_address=10.0.0.31
ovn2 api_address=10.0.0.32
ovn3 api_address=10.0.0.33
[compute]
compute1 api_address=10.0.0.21
"""
# The same site with one control host running all of OVN's central part.
OVN_ON_ONE = """\
[control]
control1 api_address=10.0.0.11
[compute]
compute1 api_address=10.0.0.21
"""
MEMBERS = ["10.0.0.31", "10.0.0.32", "10.0.0.33"]
NB = "tcp:10.0.0.31:6641,tcp:10.0.0.32:6641,tcp:10.0.0.33:6641"
SB = "tcp:10.0.0.31:6642,tcp:10.0.0.32:6642,tcp:10.0.0.33:6642"


def standalone_script(nb_or_sb: str, port: int, address: str) -> str:
    """The script of a standalone database server, as mortar rendered it before clusters."""
    return f"""\
db=/var/lib/ovn-{nb_or_sb}/ovn{nb_or_sb}_db.db
schema=/usr/share/ovn/ovn-{nb_or_sb}.ovsschema
if [ ! -e "$db" ]; then
  ovsdb-tool create "$db" "$schema"
elif ovsdb-tool needs-conversion "$db" "$schema" | grep -q yes; then
  ovsdb-tool convert "$db" "$schema"
fi
exec ovsdb-server "$db" --remote=ptcp:{port}:{address} --remote=punix:/run/ovn/ovn{nb_or_sb}_db.sock \\
  --pidfile=/run/ovn/ovn{nb_or_sb}_db.pid --unixctl=/run/ovn/ovn{nb_or_sb}_db.ctl --log-file=/dev/null -vconsole:info
"""


def standalone_health(port: int, address: str, name: str) -> str:
    return (f"healthcheck_port {port} --host {address} --owner ovsdb-server "
            f"--send '{{\"method\":\"list_dbs\",\"params\":[],\"id\":0}}' --expect {name}")


def container(desired: DesiredState, host: str, name: str) -> Container:
    return next(c for c in desired.hosts[host].containers() if c.name == name)


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    return parser


def file_content(c: Container, name: str) -> str:
    return next(f.content for f in c.files if f.name == name)


def assert_valid_shell(script: str) -> None:
    result = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def site(configure: Callable[..., Site]) -> Site:
    return configure()


@pytest.fixture
def three(site: Site) -> DesiredState:
    return compute_desired(site, parse_inventory(OVN_ON_THREE, "inv"))


# ---- one member: exactly what it was ----------------------------------------------------------

@pytest.mark.parametrize(("inventory", "host", "address"), [(INVENTORY_AIO, "localhost", "127.0.0.1"),
                                                            (OVN_ON_ONE, "control1", "10.0.0.11")],
                         ids=["all-in-one", "one-control-host"])
def test_one_host_runs_standalone_databases_as_before(site: Site, inventory: str, host: str, address: str) -> None:
    desired = compute_desired(site, parse_inventory(inventory, "inv"))
    for name, nb_or_sb, port, schema in (("ovn_nb_db", "nb", 6641, "OVN_Northbound"),
                                         ("ovn_sb_db", "sb", 6642, "OVN_Southbound")):
        c = container(desired, host, name)
        assert c.script == standalone_script(nb_or_sb, port, address), name
        assert c.healthcheck is not None and c.healthcheck.test == standalone_health(port, address, schema)
        assert c.ports == [port]
    northd = container(desired, host, "ovn_northd")
    assert f"--ovnnb-db=tcp:{address}:6641" in northd.command and f"--ovnsb-db=tcp:{address}:6642" in northd.command
    ml2 = ini(file_content(container(desired, host, "neutron_server"), "ml2_conf.ini"))
    assert (ml2["ovn"]["ovn_nb_connection"], ml2["ovn"]["ovn_sb_connection"]) == (f"tcp:{address}:6641",
                                                                                 f"tcp:{address}:6642")


def test_kubernetes_keeps_one_standalone_database_behind_its_service(site: Site) -> None:
    """On a cluster the database is reached at one Service address, however many nodes the
    group holds: no RAFT cluster is rendered there."""
    inventory = parse_inventory(OVN_ON_THREE, "inv")
    desired = compute_desired(site, inventory, topology=ClusterTopology(site, inventory))
    scripts = {c.script for state in desired.hosts.values() for c in state.containers() if c.name == "ovn_nb_db"}
    assert scripts and all("cluster" not in s and "ovsdb-tool create " in s for s in scripts)
    (northd,) = {" ".join(c.command) for state in desired.hosts.values() for c in state.containers()
                 if c.name == "ovn_northd"}
    assert northd.count("tcp:") == 2


# ---- several members: a RAFT cluster ----------------------------------------------------------

def test_the_databases_and_northd_run_on_every_host_of_the_group(three: DesiredState) -> None:
    for name in ("ovn_nb_db", "ovn_sb_db", "ovn_northd"):
        assert three.hosts_of_container(name) == ["ovn1", "ovn2", "ovn3"], name


@pytest.mark.parametrize(("name", "name_in_db", "port", "raft"), [("ovn_nb_db", "OVN_Northbound", 6641, 6643),
                                                                 ("ovn_sb_db", "OVN_Southbound", 6642, 6644)])
def test_the_first_host_creates_the_cluster_and_the_others_join_it(three: DesiredState, name: str,
                                                                    name_in_db: str, port: int, raft: int) -> None:
    for host, address in zip(["ovn1", "ovn2", "ovn3"], MEMBERS, strict=True):
        script = container(three, host, name).script
        assert_valid_shell(script)
        others = [a for a in MEMBERS if a != address]
        assert f"local=tcp:{address}:{raft}\n" in script
        assert f'others=" tcp:{others[0]}:{raft} tcp:{others[1]}:{raft}"\n' in script
        join = f'ovsdb-tool join-cluster "$db" {name_in_db} "$local" $others\n'
        first = host == "ovn1"
        assert ('ovsdb-tool create-cluster "$db" "$schema" "$local"' in script) is first, host
        # The first host converts a standalone database (a site grown from one host), keeping its rows;
        # another host refuses one rather than throw its rows away.
        assert ('ovsdb-tool create-cluster "$db.cluster" "$db" "$local"' in script) is first, host
        assert ("exit 1" in script) is not first, host
        # The first host joins instead of creating when the others already hold the cluster.
        assert (f'"${{remote%:*}}:{port}"' in script) is first, host
        assert (f'ovsdb-tool join-cluster --cid="$cid" "$db" {name_in_db} "$local" $others' in script) is first
        assert (join in script) is not first, host
        # Started as before, and its schema upgraded online once it is in the cluster.
        assert script.endswith(f'exec ovsdb-server "$db" --remote=ptcp:{port}:{address} --remote=punix:'
                               f"/run/ovn/ovn{name[4:6]}_db.sock \\\n  --pidfile=/run/ovn/ovn{name[4:6]}_db.pid "
                               f"--unixctl=/run/ovn/ovn{name[4:6]}_db.ctl --log-file=/dev/null -vconsole:info\n")
        assert f"ovsdb-client --timeout=300 convert unix:/run/ovn/ovn{name[4:6]}_db.sock" in script
        assert 'compare-versions "$have" "<" "$want"' in script  # never a downgrade
        assert f"cluster/kick {name_in_db}" in script


@pytest.mark.parametrize(("name", "name_in_db", "port"), [("ovn_nb_db", "OVN_Northbound", 6641),
                                                         ("ovn_sb_db", "OVN_Southbound", 6642)])
def test_a_member_is_healthy_while_it_serves_inside_the_cluster(three: DesiredState, name: str,
                                                                name_in_db: str, port: int) -> None:
    for host, address in zip(["ovn1", "ovn2", "ovn3"], MEMBERS, strict=True):
        check = container(three, host, name).healthcheck
        assert check is not None
        assert check.test.startswith(standalone_health(port, address, name_in_db) + " && ")
        assert f"ovs-appctl -t /run/ovn/ovn{name[4:6]}_db.ctl cluster/status {name_in_db} | awk" in check.test
        assert '"Status: cluster member"' in check.test


def test_every_client_is_given_every_member(three: DesiredState) -> None:
    for host in ("ovn1", "ovn2", "ovn3"):
        command = container(three, host, "ovn_northd").command
        assert f"--ovnnb-db={NB}" in command and f"--ovnsb-db={SB}" in command
    ml2 = ini(file_content(container(three, "control1", "neutron_server"), "ml2_conf.ini"))
    assert (ml2["ovn"]["ovn_nb_connection"], ml2["ovn"]["ovn_sb_connection"]) == (NB, SB)
    agent = container(three, "compute1", "neutron_ovn_metadata_agent")
    assert ini(file_content(agent, "neutron_ovn_metadata_agent.ini"))["ovn"]["ovn_sb_connection"] == SB
    assert f"external_ids:ovn-remote={SB} " in container(three, "compute1", "ovn_controller").script
    (mtu_job,) = [j for j in three.hosts["control1"].jobs() if j.name == "neutron.metadata_port_mtu"]
    assert mtu_job.spec is not None and f'OvsdbIdl.from_server("{NB}", "OVN_Northbound")' in mtu_job.spec.script


def test_the_cluster_scripts_are_valid_shell_and_so_is_the_standalone_one(site: Site, three: DesiredState) -> None:
    one = compute_desired(site, parse_inventory(OVN_ON_ONE, "inv"))
    for desired, host in ((three, "ovn1"), (three, "ovn3"), (one, "control1")):
        for name in ("ovn_nb_db", "ovn_sb_db"):
            assert_valid_shell(container(desired, host, name).script)
