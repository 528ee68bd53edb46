"""Who provides what: binding each enabled service's consumed capabilities to providers.

A service says `consumes: [database, identity]`; whichever enabled service `provides` that
capability serves it. The bindings decide the deploy order (a required capability's
provider comes first), and what a consumer's templates see under the capability's name.
"""

from __future__ import annotations

from typing import Any

from mortar.catalogue.loader import ServiceSpec
from mortar.errors import MortarError

Bindings = dict[str, dict[str, list[str]]]  # consumer -> capability -> providers


def bind(services: dict[str, ServiceSpec], enabled: set[str], globals_file: str) -> Bindings:
    providers: dict[str, list[str]] = {}
    for name in sorted(enabled):
        for capability in services[name].provides:
            providers.setdefault(capability, []).append(name)
    bindings: Bindings = {}
    for capability in sorted({c for n in enabled for c, need in services[n].consumes.items() if not need.optional}):
        if providers.get(capability):
            continue
        needing = sorted(n for n in enabled if capability in services[n].consumes
                         and not services[n].consumes[capability].optional)
        could = sorted(s.name for s in services.values() if capability in s.provides)
        fix = (f"set enable_{could[0]}: true" if len(could) == 1 else f"enable one of {', '.join(could)}") \
            + ", or disable " + ", ".join(f"enable_{n}" for n in needing)
        raise MortarError(f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} a {capability} provider and "
                          "no enabled service provides one", file=globals_file,
                          key=f"enable_{could[0] if could else needing[0]}", fix=fix)
    for name in sorted(enabled):
        spec = services[name]
        bindings[name] = {}
        for capability, need in spec.consumes.items():
            found = providers.get(capability, [])
            if len(found) > 1 and not need.multiple:
                raise MortarError(f"{' and '.join(found)} all provide {capability}, which {name} needs exactly one of",
                                  file=globals_file, key=f"enable_{found[-1]}",
                                  fix=f"disable all but one of {', '.join(found)}")
            bindings[name][capability] = found
    return bindings


def dependencies(services: dict[str, ServiceSpec], bindings: Bindings) -> dict[str, list[str]]:
    """Each service after the providers of what it requires (optional needs imply no order)."""
    depends: dict[str, list[str]] = {}
    for name, caps in bindings.items():
        needs: list[str] = []
        for capability, providers in caps.items():
            if services[name].consumes[capability].optional:
                continue
            needs += [p for p in providers if p != name and p not in needs]
        depends[name] = needs
    return depends


def service_order(depends: dict[str, list[str]]) -> list[str]:
    """Enabled services, providers first, otherwise alphabetical; a cycle is an error."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise MortarError(f"services need each other in a cycle: {' -> '.join(stack + (name,))}",
                              fix="make one of the needs `optional: true` in its service.yaml")
        if name in seen:
            return
        for dep in depends.get(name, []):
            visit(dep, stack + (name,))
        seen.add(name)
        order.append(name)

    for name in sorted(depends):
        visit(name, ())
    return order


def levels(order: list[str], depends: dict[str, list[str]]) -> list[list[str]]:
    """Services grouped so that each one comes after everything it depends on."""
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth[d] for d in depends.get(name, []) if d in depth), default=-1)
    return [[n for n in order if depth[n] == level] for level in range(max(depth.values(), default=-1) + 1)]


class CapabilityView:
    """A capability as a consumer's templates see it: `database.host` is the first
    instance's value, `metrics.instances` every instance (with its host and address)."""

    def __init__(self, name: str, instances: list[dict[str, Any]]) -> None:
        self._name = name
        self._instances = instances

    @property
    def instances(self) -> list[dict[str, Any]]:
        return self._instances

    def all(self, key: str) -> list[Any]:
        return [i[key] for i in self._instances if key in i]

    def __getitem__(self, key: str) -> Any:
        if not self._instances or key not in self._instances[0]:
            raise KeyError(f"the {self._name} capability exports no value '{key}'")
        return self._instances[0][key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __repr__(self) -> str:
        return f"<capability {self._name}: {len(self._instances)} instance(s)>"
