import threading
import time

import pytest

from mortar.deploy.runner import run_services
from mortar.errors import MortarError

DEPENDS = {"mariadb": [], "memcached": [], "rabbitmq": [], "keystone": ["mariadb", "memcached"],
           "glance": ["keystone"], "nova": ["keystone", "glance", "rabbitmq"]}
ORDER = ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "nova"]


def test_dependencies_finish_first_and_independent_services_overlap():
    events: list[tuple[str, str]] = []
    active, peak = set(), [0]
    lock = threading.Lock()

    def work(name):
        with lock:
            events.append(("start", name))
            active.add(name)
            peak[0] = max(peak[0], len(active))
        time.sleep(0.05)
        with lock:
            active.discard(name)
            events.append(("end", name))

    run_services(ORDER, work, DEPENDS, lambda _: None)
    position = {event: i for i, event in enumerate(events)}
    for name, needs in DEPENDS.items():
        for dep in needs:
            assert position[("end", dep)] < position[("start", name)], (dep, name)
    assert peak[0] >= 3  # mariadb, memcached and rabbitmq ran at once


def test_failure_skips_only_dependents_and_is_raised():
    ran = []
    said = []

    def work(name):
        ran.append(name)
        if name == "glance":
            raise MortarError("glance broke")

    with pytest.raises(MortarError, match="glance broke"):
        run_services(ORDER, work, DEPENDS, said.append)
    assert "nova" not in ran
    assert {"mariadb", "memcached", "rabbitmq", "keystone", "glance"} <= set(ran)
    assert any("nova: skipped" in line for line in said)


def test_disabled_dependencies_are_ignored():
    ran = []
    run_services(["keystone"], ran.append, {"keystone": ["mariadb", "memcached"]}, lambda _: None)
    assert ran == ["keystone"]
