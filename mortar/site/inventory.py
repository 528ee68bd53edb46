"""Ansible INI inventories: which hosts exist, their variables, and the groups they are in.

Parsed the way `ansible-inventory` reads an INI file, so an operator's kolla-ansible
inventory works unchanged; everything the parser cannot make sense of is a MortarError
naming the file and line.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import shlex
import string
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from mortar.errors import MortarError

IMPLICIT_GROUPS = ("all", "ungrouped")
_GROUP_NAME = re.compile(r"[\w.-]+")
_RANGE = re.compile(r"\[([^\[\]]*)\]")
_PORT = re.compile(r"(?P<name>.+?):(?P<port>\d+)")
_SUFFIXES = ("children", "vars")
_MAX_RANGE = 10000


@dataclass
class Host:
    name: str
    vars: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.vars.get("ansible_host") or self.name

    def api_address(self, site_default: str) -> str:
        """The address this host's services bind: its own api_address, else the site's (globals.yml)."""
        return self.vars.get("api_address") or site_default


@dataclass
class Inventory:
    path: str
    hosts: dict[str, Host]
    groups: dict[str, list[str]]

    def hosts_in(self, group: str) -> list[Host]:
        return [self.hosts[name] for name in self.groups.get(group, []) if name in self.hosts]

    def has_group(self, group: str) -> bool:
        return group in self.groups

    def limit(self, pattern: str | None) -> Inventory:
        if pattern is None or not pattern.strip():
            return self
        regular: list[str] = []
        intersect: list[str] = []
        exclude: list[str] = []
        for term in _split_pattern(pattern, set(self.hosts) | set(self.groups)):
            if term.startswith("!"):
                exclude.append(term[1:])
            elif term.startswith("&"):
                intersect.append(term[1:])
            else:
                regular.append(term)
        # Like Ansible: unions first, then intersections, then exclusions; only '!x' means 'all:!x'.
        selected: set[str] = set()
        for term in regular or ["all"]:
            selected |= self._match(term, pattern)
        for term in intersect:
            selected &= self._match(term, pattern)
        for term in exclude:
            selected -= self._match(term, pattern)
        hosts = {name: host for name, host in self.hosts.items() if name in selected}
        groups = {group: [name for name in members if name in selected] for group, members in self.groups.items()}
        return Inventory(path=self.path, hosts=hosts, groups=groups)

    def _match(self, term: str, pattern: str) -> set[str]:
        if not term:
            raise MortarError(f"empty name in pattern {pattern!r}", file=self.path, key="--limit",
                              fix="write names separated by ',' e.g. 'control,!compute'")
        if term in ("all", "*"):
            return set(self.hosts)
        if term in self.groups:
            return set(self.groups[term])
        if term in self.hosts:
            return {term}
        if any(c in term for c in "*?"):
            found = {h for h in self.hosts if fnmatchcase(h, term)}
            for group in self.groups:
                if fnmatchcase(group, term):
                    found |= set(self.groups[group])
            if found:
                return found
        close = difflib.get_close_matches(term, [*self.groups, *self.hosts], n=1)
        raise MortarError(f"unknown host or group {term!r} in --limit {pattern!r}", file=self.path, key="--limit",
                          fix=f"did you mean {close[0]!r}?" if close else
                          "name a host or group from the inventory, or 'all'")


def _split_pattern(pattern: str, known: set[str]) -> list[str]:
    terms: list[str] = []
    for part in pattern.split(","):
        part = part.strip()
        # A whole known name (e.g. an IPv6 address) is kept; otherwise ':' separates like ','.
        if part.lstrip("!&") in known:
            terms.append(part)
        elif part:
            terms.extend(p.strip() for p in part.split(":"))
        else:
            terms.append(part)
    return terms


def load_inventory(path: Path) -> Inventory:
    from mortar.files import read_text

    return parse_inventory(read_text(path, what="inventory", how_to_make="mortar init"), str(path))


@dataclass
class _Parsed:
    host_vars: dict[str, dict[str, str]] = field(default_factory=dict)
    direct: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, str]] = field(default_factory=dict)
    defined: dict[str, int] = field(default_factory=dict)
    vars_headers: dict[str, int] = field(default_factory=dict)
    host_lines: dict[str, str] = field(default_factory=dict)


def parse_inventory(text: str, path: str = "<inventory>") -> Inventory:
    parsed = _Parsed(defined={name: 0 for name in IMPLICIT_GROUPS})
    group, kind = "ungrouped", ""
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f"line {lineno}"
        if line.startswith("["):
            group, kind = _parse_header(line, path, where)
            if kind == "vars":
                parsed.vars_headers.setdefault(group, lineno)
            else:
                parsed.defined.setdefault(group, lineno)
                parsed.direct.setdefault(group, [])
            continue
        if kind == "":
            _parse_host_line(line, group, parsed, path, where)
        elif kind == "children":
            _parse_child_line(line, group, parsed, path, where, lineno)
        else:
            key, value = _parse_var_line(line, path, where)
            parsed.group_vars.setdefault(group, {})[key] = value
    return _build(parsed, path)


def _parse_header(line: str, path: str, where: str) -> tuple[str, str]:
    if not line.endswith("]"):
        raise MortarError(f"malformed section header {line!r}", file=path, key=where,
                          fix="write [group], [group:children] or [group:vars]")
    name, colon, suffix = line[1:-1].strip().partition(":")
    if not _GROUP_NAME.fullmatch(name):
        raise MortarError(f"malformed group name {name!r} in {line!r}", file=path, key=where,
                          fix="group names use letters, digits, '_', '-' and '.'")
    if colon and suffix not in _SUFFIXES:
        raise MortarError(f"unknown section suffix ':{suffix}' in {line!r}", file=path, key=where,
                          fix="the only suffixes are ':children' and ':vars'")
    return name, suffix


def _tokens(line: str, path: str, where: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError as exc:
        raise MortarError(f"malformed line {line!r}: {exc}", file=path, key=where,
                          fix="close the quote or escape it with a backslash") from None


def _parse_host_line(line: str, group: str, parsed: _Parsed, path: str, where: str) -> None:
    tokens = _tokens(line, path, where)
    if not tokens:
        return
    pattern, assignments = tokens[0], tokens[1:]
    if "=" in pattern:
        raise MortarError(f"malformed host line {line!r}: expected a host name first", file=path, key=where,
                          fix="write 'HOST key=value ...'")
    line_vars: dict[str, str] = {}
    port = _PORT.fullmatch(pattern)
    # host:22 sets the port; the ':' inside a range like node[1:3] or an IPv6 address does not.
    if port and ":" not in _RANGE.sub("", port["name"]):
        pattern = port["name"]
        line_vars["ansible_port"] = port["port"]
    for token in assignments:
        key, eq, value = token.partition("=")
        if not eq or not key:
            raise MortarError(f"malformed host variable {token!r}", file=path, key=where,
                              fix="host variables are written key=value (quote values with spaces)")
        line_vars[key] = value
    members = parsed.direct.setdefault(group, [])
    for name in _expand_range(pattern, path, where):
        if name in members:
            raise MortarError(f"host {name!r} is listed twice in [{group}]", file=path, key=where,
                              fix="keep one line per host in a group, with all its variables on it")
        parsed.host_vars.setdefault(name, {}).update(line_vars)
        parsed.host_lines.setdefault(name, where)
        members.append(name)


def _parse_child_line(line: str, group: str, parsed: _Parsed, path: str, where: str, lineno: int) -> None:
    tokens = _tokens(line, path, where)
    if not tokens:
        return
    if len(tokens) != 1 or not _GROUP_NAME.fullmatch(tokens[0]):
        raise MortarError(f"malformed child group line {line!r}", file=path, key=where,
                          fix=f"list one group name per line under [{group}:children]")
    if tokens[0] == "all":
        raise MortarError(f"'all' cannot be a child of group {group!r}", file=path, key=where,
                          fix="'all' already contains every group; remove this line")
    parsed.children.setdefault(group, []).append((tokens[0], lineno))


def _parse_var_line(line: str, path: str, where: str) -> tuple[str, str]:
    key, eq, value = line.partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not key or any(c.isspace() for c in key):
        raise MortarError(f"malformed variable line {line!r}", file=path, key=where,
                          fix="group variables are written key=value")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return key, value


def _expand_range(pattern: str, path: str, where: str) -> list[str]:
    match = _RANGE.search(pattern)
    if not match:
        if "[" in pattern or "]" in pattern:
            raise MortarError(f"malformed host range {pattern!r}", file=path, key=where,
                              fix="write ranges as name[1:3], name[01:10] or name[a:f]")
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [head + value + rest for value in _range_values(match[1], pattern, path, where)
            for rest in _expand_range(tail, path, where)]


def _range_values(spec: str, pattern: str, path: str, where: str) -> list[str]:
    bad = MortarError(f"malformed host range {pattern!r}", file=path, key=where,
                      fix="write ranges as [START:END] or [START:END:STEP], START <= END, e.g. node[01:10]")
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise bad
    begin, end = parts[0] or "0", parts[1]
    step_text = parts[2] if len(parts) == 3 else "1"
    if not step_text.isdigit() or int(step_text) == 0:
        raise bad
    step = int(step_text)
    if begin.isdigit() and end.isdigit():
        if int(begin) > int(end):
            raise bad
        # A typo like node[1:100000000] would otherwise exhaust memory.
        if (int(end) - int(begin)) // step >= _MAX_RANGE:
            raise MortarError(f"host range {pattern!r} expands to more than {_MAX_RANGE} hosts", file=path,
                              key=where, fix="check the range bounds")
        # A leading zero asks for fixed-width numbers, as in Ansible.
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if width and len(end) != width:
            raise MortarError(f"host range {pattern!r} mixes widths", file=path, key=where,
                              fix="zero-padded ranges need equal-length ends, e.g. [01:10]")
        return [str(n).zfill(width) for n in range(int(begin), int(end) + 1, step)]
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise bad
        return list(letters[first: last + 1: step])
    raise bad


def _build(parsed: _Parsed, path: str) -> Inventory:
    for group, lineno in parsed.vars_headers.items():
        if group not in parsed.defined:
            raise MortarError(f"[{group}:vars] is for a group that is never defined", file=path,
                              key=f"line {lineno}", fix=f"add a [{group}] section or fix the group name")
    for group, entries in parsed.children.items():
        for child, lineno in entries:
            if child not in parsed.defined:
                close = difflib.get_close_matches(child, list(parsed.defined), n=1)
                raise MortarError(f"child group {child!r} of {group!r} is never defined", file=path,
                                  key=f"line {lineno}",
                                  fix=f"did you mean {close[0]!r}?" if close else f"add a [{child}] section")
    grouped = {name for group, members in parsed.direct.items() if group not in IMPLICIT_GROUPS
               for name in members}
    # Ansible puts in 'ungrouped' only hosts that no named group lists.
    parsed.direct["ungrouped"] = [name for name in parsed.host_vars if name not in grouped]
    resolved: dict[str, list[str]] = {"all": list(parsed.host_vars)}
    for group in parsed.defined:
        if group != "all":
            _resolve(group, parsed, resolved, [], path)
    resolved = {group: resolved[group] for group in parsed.defined}
    depth = _depths(parsed)
    hosts: dict[str, Host] = {}
    for name, own_vars in parsed.host_vars.items():
        merged: dict[str, str] = {}
        member_of = sorted((g for g, members in resolved.items() if name in members), key=lambda g: (depth[g], g))
        for group in member_of:
            merged.update(parsed.group_vars.get(group, {}))
        merged.update(own_vars)
        hosts[name] = Host(name=name, vars=merged)
    _check_hosts(hosts, parsed.host_lines, path)
    return Inventory(path=path, hosts=hosts, groups=resolved)


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def valid_host_name(name: str) -> bool:
    """A DNS host name (RFC 1123) or an IP address: what may name a host, a file and a shell word."""
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _check_hosts(hosts: dict[str, Host], lines: dict[str, str], path: str) -> None:
    owners: dict[str, str] = {}
    for name, host in hosts.items():
        where = lines.get(name)
        if not valid_host_name(name):
            raise MortarError(f"{name!r} is not a valid host name", file=path, key=where,
                              fix="name hosts with letters, digits, '-' and '.', or by IP address; "
                                  "put the address in ansible_host=")
        port = host.vars.get("ansible_port")
        if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
            raise MortarError(f"host {name}: ansible_port {port!r} is not a port number (1-65535)", file=path,
                              key=where, fix="write ansible_port=22, or leave it out")
        target = host.vars.get("ansible_host")
        if target is not None and not valid_host_name(target):
            raise MortarError(f"host {name}: ansible_host {target!r} is not a host name or IP address", file=path,
                              key=where, fix="write ansible_host=ADDRESS")
        address = host.vars.get("api_address")
        if address is not None:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise MortarError(f"host {name}: api_address {address!r} is not an IP address", file=path,
                                  key=where, fix="write api_address=10.0.0.11, the address its services bind") from None
            if address in owners:
                raise MortarError(f"hosts {owners[address]} and {name} both have api_address {address}", file=path,
                                  key=where, fix="give every host its own address; a host listed under two "
                                                 "names is one host: use one name")
            owners[address] = name


def _resolve(group: str, parsed: _Parsed, resolved: dict[str, list[str]], stack: list[str], path: str) -> list[str]:
    if group in resolved:
        return resolved[group]
    members = list(parsed.direct.get(group, []))
    stack.append(group)
    for child, lineno in parsed.children.get(group, []):
        if child in stack:
            cycle = " -> ".join([*stack[stack.index(child):], child])
            raise MortarError(f"group children form a cycle: {cycle}", file=path, key=f"line {lineno}",
                              fix=f"remove {child!r} from [{group}:children]")
        members.extend(name for name in _resolve(child, parsed, resolved, stack, path) if name not in members)
    stack.pop()
    resolved[group] = members
    return members


def _depths(parsed: _Parsed) -> dict[str, int]:
    """Distance from 'all' along the longest path: deeper (more specific) groups' vars win."""
    parents: dict[str, list[str]] = {}
    for group, entries in parsed.children.items():
        for child, _ in entries:
            parents.setdefault(child, []).append(group)
    depth: dict[str, int] = {"all": 0}

    def of(group: str) -> int:
        if group not in depth:
            depth[group] = 1 + max((of(p) for p in parents.get(group, [])), default=0)
        return depth[group]

    for group in parsed.defined:
        of(group)
    return depth
