"""Tests for the Ansible INI inventory parser (mortar/site/inventory.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mortar.errors import MortarError
from mortar.site.inventory import Host, Inventory, load_inventory, parse_inventory, valid_host_name

ALL_IN_ONE = """\
[control]
localhost ansible_connection=local

[network]
localhost

[compute]
localhost

[storage]
localhost

[monitoring]
localhost

[keystone:children]
control

[nova-compute:children]
compute
"""

MULTINODE = """\
# a comment
; another comment
bastion ansible_host=10.0.0.1

[control]
ctl[01:03] ansible_user=admin

[network]
net1 ansible_host=10.0.1.1 role="network node"

[compute]
cmp[a:c]
ctl01

[storage:children]
compute

[openstack:children]
control
network

[nova:children]
openstack

[all:vars]
ntp=pool.ntp.org
tier=all

[openstack:vars]
tier=openstack

[control:vars]
tier=control
greeting = "hello world"

[network:vars]
ansible_host=192.0.2.99
"""


def error_of(text: str, path: str = "inv.ini") -> MortarError:
    with pytest.raises(MortarError) as info:
        parse_inventory(text, path)
    return info.value


def test_all_in_one_sample_parses() -> None:
    inv = parse_inventory(ALL_IN_ONE, "all-in-one")
    assert inv.path == "all-in-one"
    assert list(inv.hosts) == ["localhost"]
    host = inv.hosts["localhost"]
    assert host.vars == {"ansible_connection": "local"}
    assert host.address == "localhost"
    for group in ("all", "control", "network", "compute", "storage", "monitoring", "keystone", "nova-compute"):
        assert inv.groups[group] == ["localhost"], group
        assert inv.has_group(group)
        assert inv.hosts_in(group) == [host]
    assert inv.groups["ungrouped"] == []


def test_unknown_group_is_empty() -> None:
    inv = parse_inventory(ALL_IN_ONE)
    assert inv.hosts_in("nope") == []
    assert not inv.has_group("nope")


def test_group_order_is_first_seen() -> None:
    inv = parse_inventory(ALL_IN_ONE)
    assert list(inv.groups) == ["all", "ungrouped", "control", "network", "compute", "storage", "monitoring",
                                "keystone", "nova-compute"]


def test_children_resolve_recursively_and_dedupe() -> None:
    inv = parse_inventory(MULTINODE)
    assert inv.groups["control"] == ["ctl01", "ctl02", "ctl03"]
    assert inv.groups["compute"] == ["cmpa", "cmpb", "cmpc", "ctl01"]
    assert inv.groups["storage"] == inv.groups["compute"]
    assert inv.groups["openstack"] == ["ctl01", "ctl02", "ctl03", "net1"]
    assert inv.groups["nova"] == inv.groups["openstack"]
    assert inv.groups["all"] == ["bastion", "ctl01", "ctl02", "ctl03", "net1", "cmpa", "cmpb", "cmpc"]
    assert inv.groups["ungrouped"] == ["bastion"]


def test_hosts_before_any_section_are_ungrouped_unless_grouped_later() -> None:
    inv = parse_inventory("a\nb\n[g]\nb\n")
    assert inv.groups["ungrouped"] == ["a"]
    assert inv.groups["g"] == ["b"]
    assert inv.groups["all"] == ["a", "b"]


def test_host_var_precedence() -> None:
    inv = parse_inventory(MULTINODE)
    ctl = inv.hosts["ctl02"]
    # control (child of openstack) is nearer than openstack, which is nearer than all.
    assert ctl.vars["tier"] == "control"
    assert ctl.vars["ntp"] == "pool.ntp.org"
    assert ctl.vars["ansible_user"] == "admin"
    assert ctl.vars["greeting"] == "hello world"
    net = inv.hosts["net1"]
    assert net.vars["tier"] == "openstack"
    assert net.vars["role"] == "network node"
    # The host line wins over its group's vars.
    assert net.vars["ansible_host"] == "10.0.1.1"
    assert net.address == "10.0.1.1"
    assert inv.hosts["bastion"].vars == {"ansible_host": "10.0.0.1", "ntp": "pool.ntp.org", "tier": "all"}
    assert inv.hosts["cmpa"].address == "cmpa"


def test_host_listed_twice_merges_line_vars() -> None:
    inv = parse_inventory("[a]\nh x=1 y=1\n[b]\nh y=2\n")
    assert inv.hosts["h"].vars == {"x": "1", "y": "2"}


def test_host_port_and_inline_comment() -> None:
    inv = parse_inventory("[g]\nh1:2222 a=1  # trailing comment\n")
    assert inv.hosts["h1"].vars == {"ansible_port": "2222", "a": "1"}


def test_ipv6_host_is_not_split_into_port() -> None:
    inv = parse_inventory("[g]\nfe80::1\n")
    assert list(inv.hosts) == ["fe80::1"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("node[1:3]", ["node1", "node2", "node3"]),
        ("node[01:03]", ["node01", "node02", "node03"]),
        ("node[008:011]", ["node008", "node009", "node010", "node011"]),
        ("n[1:5:2].example", ["n1.example", "n3.example", "n5.example"]),
        ("r[a:c]", ["ra", "rb", "rc"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
    ],
)
def test_host_ranges(line: str, expected: list[str]) -> None:
    inv = parse_inventory(f"[g]\n{line} k=v\n")
    assert inv.groups["g"] == expected
    assert all(inv.hosts[name].vars == {"k": "v"} for name in expected)


@settings(deadline=None)
@given(st.integers(0, 50), st.integers(0, 50), st.integers(1, 3))
def test_padded_ranges_match_python(a: int, b: int, width: int) -> None:
    low, high = min(a, b), max(a, b)
    begin, end = str(low).zfill(width), str(high).zfill(width)
    if len(begin) != len(end):
        return
    inv = parse_inventory(f"[g]\nn[{begin}:{end}]\n")
    padded = begin.startswith("0") and len(begin) > 1
    assert inv.groups["g"] == [f"n{str(i).zfill(len(begin) if padded else 0)}" for i in range(low, high + 1)]


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("[g]\nh key\n", 2, "malformed host variable"),
        ("[g]\nh x='unclosed\n", 2, "malformed line"),
        ("[g]\nk=v\n", 2, "expected a host name"),
        ("[g\nh\n", 1, "malformed section header"),
        ("[bad name]\n", 1, "malformed group name"),
        ("[g:foo]\nh\n", 1, "unknown section suffix ':foo'"),
        ("[g:]\nh\n", 1, "unknown section suffix"),
        ("[g]\nh\n\n[p:children]\ng\nmissing\n", 6, "child group 'missing' of 'p' is never defined"),
        ("[p:children]\ntwo words\n", 2, "malformed child group line"),
        ("[p:children]\nall\n", 2, "'all' cannot be a child"),
        ("[g]\nh\n[g:vars]\nnovalue\n", 4, "malformed variable line"),
        ("[nope:vars]\na=1\n", 1, "never defined"),
        ("[g]\nn[3:1]\n", 2, "malformed host range"),
        ("[g]\nn[1:3\n", 2, "malformed host range"),
        ("[g]\nn[1:2:0]\n", 2, "malformed host range"),
        ("[g]\nn[01:100]\n", 2, "mixes widths"),
        ("[g]\nn[1:99999999]\n", 2, "more than"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, needle: str) -> None:
    err = error_of(text)
    assert err.file == "inv.ini"
    assert err.key == f"line {line}"
    assert needle in err.message
    assert err.fix
    assert str(err).startswith(f"inv.ini: line {line}: ")


def test_children_cycle_names_closing_line() -> None:
    err = error_of("[a:children]\nb\n[b:children]\nc\n[c:children]\na\n")
    assert err.key in {"line 2", "line 4", "line 6"}
    assert "cycle" in err.message
    assert "a -> b -> c -> a" in err.message or "b -> c -> a -> b" in err.message or "c -> a -> b -> c" in err.message


def test_self_child_is_a_cycle() -> None:
    err = error_of("[a]\nh\n[a:children]\na\n")
    assert err.key == "line 4"
    assert "cycle" in err.message


def test_undefined_child_suggests_close_name() -> None:
    err = error_of("[compute]\nh\n[nova:children]\ncomptue\n")
    assert err.fix == "did you mean 'compute'?"


def test_load_inventory_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "all-in-one"
    path.write_text(ALL_IN_ONE)
    inv = load_inventory(path)
    assert inv.path == str(path)
    assert inv.groups["keystone"] == ["localhost"]


def test_load_inventory_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(MortarError) as info:
        load_inventory(path)
    assert info.value.file == str(path)
    assert "not found" in info.value.message
    assert info.value.fix


@pytest.mark.parametrize(("content", "needle"), [
    (None, "inventory is a directory, expected a file"),
    (b"\xff\xfe\x00[g]", "inventory is binary"),
    (b"[control]\nh\xf6st\n", "inventory is not UTF-8 text"),
])
def test_load_inventory_unreadable(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "inventory"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(MortarError) as info:
        load_inventory(path)
    assert info.value.file == str(path)
    assert needle in info.value.message
    assert info.value.fix


@pytest.mark.parametrize("name", ["a/b", "..", ".", "a b", "a;b", "$(x)", "`id`", "a|b", "-lead", "trail-", "a..b",
                                  "x" * 64, "h_1", "ünï"])
def test_bad_host_names_are_refused(name: str) -> None:
    err = error_of(f"[g]\nok\n{shlex.quote(name)} ansible_connection=local\n")
    assert err.key == "line 3"
    assert f"{name!r} is not a valid host name" in err.message
    assert err.fix is not None and "ansible_host=" in err.fix


@pytest.mark.parametrize("name", ["localhost", "ctl01", "node-1.example.com", "10.0.0.1", "fe80::1", "a" * 63])
def test_good_host_names(name: str) -> None:
    assert valid_host_name(name)
    assert list(parse_inventory(f"[g]\n{name}\n").hosts) == [name]


@pytest.mark.parametrize("line", ["h ansible_port=ssh", "h ansible_port=0", "h ansible_port=65536", "h:70000",
                                  "h ansible_port=-1", "h ansible_port=22.5"])
def test_bad_ports_are_refused(line: str) -> None:
    err = error_of(f"[g]\n{line}\n")
    assert err.key == "line 2"
    assert "ansible_port" in err.message and "not a port number" in err.message
    assert err.fix is not None and "ansible_port=22" in err.fix


def test_port_from_group_vars_is_checked_at_the_host() -> None:
    err = error_of("[g]\nh\n[g:vars]\nansible_port=99999\n")
    assert err.key == "line 2"
    assert "'99999'" in err.message


@pytest.mark.parametrize(("line", "needle"), [
    ("h api_address=300.1.2.3", "api_address '300.1.2.3' is not an IP address"),
    ("h api_address=ctl1", "api_address 'ctl1' is not an IP address"),
    ("h ansible_host=a;reboot", "ansible_host 'a;reboot' is not a host name or IP address"),
    ("h ansible_host='$(x)'", "ansible_host '$(x)'"),
])
def test_bad_addresses_are_refused(line: str, needle: str) -> None:
    err = error_of(f"[g]\n{line}\n")
    assert err.key == "line 2"
    assert needle in err.message
    assert err.fix


def test_host_twice_in_one_group_is_refused() -> None:
    err = error_of("[g]\nh a=1\nother\nh b=2\n")
    assert err.key == "line 4"
    assert "host 'h' is listed twice in [g]" in err.message
    assert err.fix
    # A range that overlaps a host line is the same mistake.
    assert "listed twice" in error_of("[g]\nn2\nn[1:3]\n").message


def test_two_hosts_with_one_api_address_are_refused() -> None:
    err = error_of("[a]\nh1 api_address=10.0.0.1\n[b]\nh2 api_address=10.0.0.1\n")
    assert err.key == "line 4"
    assert "hosts h1 and h2 both have api_address 10.0.0.1" in err.message
    assert err.fix
    # One host in two groups keeps its one address.
    inv = parse_inventory("[a]\nh1 api_address=10.0.0.1\n[b]\nh1\n")
    assert inv.hosts["h1"].vars["api_address"] == "10.0.0.1"


def multinode() -> Inventory:
    return parse_inventory(MULTINODE, "multinode")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, ["bastion", "ctl01", "ctl02", "ctl03", "net1", "cmpa", "cmpb", "cmpc"]),
        ("", ["bastion", "ctl01", "ctl02", "ctl03", "net1", "cmpa", "cmpb", "cmpc"]),
        ("all", ["bastion", "ctl01", "ctl02", "ctl03", "net1", "cmpa", "cmpb", "cmpc"]),
        ("control", ["ctl01", "ctl02", "ctl03"]),
        ("net1", ["net1"]),
        ("control,net1", ["ctl01", "ctl02", "ctl03", "net1"]),
        ("control:net1", ["ctl01", "ctl02", "ctl03", "net1"]),
        ("control:!ctl02", ["ctl01", "ctl03"]),
        ("!compute", ["bastion", "ctl02", "ctl03", "net1"]),
        ("openstack,&compute", ["ctl01"]),
        ("compute:&control", ["ctl01"]),
        ("!ctl02,control", ["ctl01", "ctl03"]),
        ("ctl*", ["ctl01", "ctl02", "ctl03"]),
        ("all:!all", []),
        (" control , net1 ", ["ctl01", "ctl02", "ctl03", "net1"]),
    ],
)
def test_limit_patterns(pattern: str | None, expected: list[str]) -> None:
    inv = multinode().limit(pattern)
    assert list(inv.hosts) == expected
    assert inv.groups["all"] == expected


def test_limit_keeps_groups_and_filters_members() -> None:
    full = multinode()
    inv = full.limit("control")
    assert list(inv.groups) == list(full.groups)
    assert inv.groups["compute"] == ["ctl01"]
    assert inv.groups["network"] == []
    assert inv.hosts_in("nova") == [full.hosts[n] for n in ("ctl01", "ctl02", "ctl03")]
    assert inv.has_group("network")
    assert full.groups["network"] == ["net1"]


def test_limit_ipv6_host_is_not_split() -> None:
    inv = parse_inventory("[g]\nfe80::1\nh2\n")
    assert list(inv.limit("fe80::1").hosts) == ["fe80::1"]


@pytest.mark.parametrize("pattern", ["contrl", "control,!nope", "&nope", "control,,net1", "!", "zz*"])
def test_limit_unknown_name_is_an_error(pattern: str) -> None:
    with pytest.raises(MortarError) as info:
        multinode().limit(pattern)
    assert info.value.key == "--limit"
    assert info.value.file == "multinode"
    assert info.value.fix


def test_limit_suggests_close_name() -> None:
    with pytest.raises(MortarError) as info:
        multinode().limit("contrl")
    assert info.value.fix == "did you mean 'control'?"


def test_address_prefers_ansible_host() -> None:
    assert Host("h", {"ansible_host": "10.1.1.1"}).address == "10.1.1.1"
    assert Host("h", {"ansible_host": ""}).address == "h"
    assert Host("h", {}).address == "h"


names = st.builds(str.__add__, st.sampled_from("abcxyz"), st.text("abc0123", max_size=5))


@settings(deadline=None)
@given(st.dictionaries(names, st.lists(names, max_size=5, unique=True), max_size=6), st.data())
def test_generated_inventories_resolve(groups: dict[str, list[str]], data: st.DataObject) -> None:
    # A random forest of child groups (edges only to earlier groups, so acyclic) resolves to the union of leaves.
    group_names = [f"g{name}" for name in groups]
    children = {g: data.draw(st.lists(st.sampled_from(group_names[:i]), max_size=3, unique=True)) if i else []
                for i, g in enumerate(group_names)}
    lines: list[str] = []
    for g, hosts in zip(group_names, groups.values(), strict=True):
        lines += [f"[{g}]", *hosts, f"[{g}:children]", *children[g], ""]
    inv = parse_inventory("\n".join(lines))

    def expected(g: str) -> set[str]:
        own = set(groups[g[1:]])
        for child in children[g]:
            own |= expected(child)
        return own

    all_hosts = {h for hosts in groups.values() for h in hosts}
    assert set(inv.hosts) == all_hosts == set(inv.groups["all"])
    for g in group_names:
        assert set(inv.groups[g]) == expected(g)
        assert len(inv.groups[g]) == len(set(inv.groups[g]))
        assert set(inv.limit(g).hosts) == expected(g)
        assert set(inv.limit(f"!{g}").hosts) == all_hosts - expected(g)
