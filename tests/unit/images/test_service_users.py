"""Service users have fixed ids across every image: files in named volumes keep their owner
whichever image (or rebuild) touches them."""

from __future__ import annotations

import re

from mortar.catalogue.loader import IMAGES_DIR, ServiceSpec

CALL = re.compile(r"macros\.service_user\(\s*(['\"])(?P<name>[^'\"]+)\1\s*,\s*(?P<uid>\d+)\s*\)")


def service_users(text: str) -> list[tuple[str, int]]:
    return [(m["name"], int(m["uid"])) for m in CALL.finditer(text)]


def declared() -> list[tuple[str, str, int]]:
    """(image, user, uid) of every service_user call of the image tree."""
    found = []
    for path in sorted(IMAGES_DIR.glob("*/Dockerfile.j2")):
        text = path.read_text()
        users = service_users(text)
        # Every call is understood: one this pattern misses would escape the checks below.
        assert len(users) == text.count("service_user("), f"{path}: a service_user call this test cannot read"
        found += [(path.parent.name, name, uid) for name, uid in users]
    return found


def test_the_pattern_reads_every_form_of_call() -> None:
    assert service_users("{{ macros.service_user('nova', 804) }}\n{{ macros.service_user( \"glance\" ,802 ) }}") == [
        ("nova", 804), ("glance", 802)]
    assert service_users("{{ macros.service_user(name, 804) }}") == []


def clashes(users: list[tuple[str, str, int]]) -> list[str]:
    """Every user declared with two uids, and every uid given to two users."""
    uids: dict[str, set[int]] = {}
    names: dict[int, set[str]] = {}
    for _, name, uid in users:
        uids.setdefault(name, set()).add(uid)
        names.setdefault(uid, set()).add(name)
    return ([f"{name} has uids {sorted(u)}" for name, u in sorted(uids.items()) if len(u) > 1]
            + [f"uid {uid} is {', '.join(sorted(n))}" for uid, n in sorted(names.items()) if len(n) > 1])


def test_one_name_one_uid_and_one_uid_one_name() -> None:
    users = declared()
    assert {"nova", "keystone", "mysql", "horizon", "prometheus"} <= {name for _, name, _ in users}
    assert clashes(users) == []


def test_a_clash_is_reported() -> None:
    assert clashes([("a", "nova", 804), ("b", "nova", 805), ("c", "glance", 804)]) == [
        "nova has uids [804, 805]", "uid 804 is glance, nova"]
    assert clashes([("a", "nova", 804), ("b", "nova", 804)]) == []


def test_uids_are_in_the_system_range() -> None:
    assert [(image, name, uid) for image, name, uid in declared() if not 100 <= uid <= 999] == []


def test_the_base_image_declares_no_service_user() -> None:
    base = IMAGES_DIR / "base" / "Dockerfile.j2"
    assert base.is_file()
    assert "service_user" not in base.read_text()


def runtime_parent(image: str) -> str | None:
    """The image the final stage of IMAGE is built FROM (build stages aside)."""
    parents = re.findall(r"^FROM \{\{ parent\('([^']+)'\) \}\}", (IMAGES_DIR / image / "Dockerfile.j2").read_text(),
                         re.M)
    return parents[-1] if parents else None


def users_of(image: str) -> set[str]:
    """The service users an image has: its own and its ancestors'."""
    users: set[str] = set()
    current: str | None = image
    while current:
        users |= {name for name, _ in service_users((IMAGES_DIR / current / "Dockerfile.j2").read_text())}
        current = runtime_parent(current)
    return users


def test_every_container_runs_as_root_or_a_service_user_of_its_image(services: dict[str, ServiceSpec]) -> None:
    assert runtime_parent("nova-compute") == "nova-base" and runtime_parent("nova-base") == "openstack-base"
    # nova-compute also has the switch's group (os-vif reaches its socket), with the switch image's uid.
    assert users_of("nova-compute") == {"nova", "openvswitch"}
    assert users_of("ovn-controller") == users_of("openvswitch") == {"openvswitch"}
    wrong = [(spec.name, c.name, c.image, user)
             for spec in services.values() for c in spec.containers.values()
             for user in {c.user, *(j.user for j in spec.jobs if j.container == c.name)}
             if user != "root" and user not in users_of(c.image)]
    assert wrong == []
