"""verify's check helpers that need no cloud."""

from __future__ import annotations

from types import SimpleNamespace

import openstack.exceptions
import pytest

from mortar.verify.checks import wait_active


class Compute:
    def __init__(self, outcome: Exception | None, fault: dict | None = None) -> None:
        self.outcome, self.fault = outcome, fault

    def wait_for_server(self, server, status, wait, interval):
        if self.outcome is not None:
            raise self.outcome
        return SimpleNamespace(id=server.id, name=server.name, status=status)

    def get_server(self, server_id):
        return SimpleNamespace(id=server_id, fault=self.fault)


SERVER = SimpleNamespace(id="4d26", name="guest")


def test_an_active_server_is_returned() -> None:
    assert wait_active(SimpleNamespace(compute=Compute(None)), SERVER).status == "ACTIVE"


def test_a_server_in_error_is_reported_with_novas_fault() -> None:
    fault = {"code": 500, "message": "Build of instance 4d26 aborted: Failed to allocate the network(s)",
             "details": "Traceback (most recent call last):\n  ...\nnova.exception.VirtualInterfaceCreateException: "
                        "Virtual Interface creation failed\n"}
    conn = SimpleNamespace(compute=Compute(openstack.exceptions.ResourceFailure("went to ERROR"), fault))
    with pytest.raises(AssertionError) as raised:
        wait_active(conn, SERVER)
    assert str(raised.value) == ("server guest (4d26) went to ERROR: Build of instance 4d26 aborted: Failed to "
                                 "allocate the network(s) [nova.exception.VirtualInterfaceCreateException: "
                                 "Virtual Interface creation failed]")
    conn = SimpleNamespace(compute=Compute(openstack.exceptions.ResourceFailure("went to ERROR"), None))
    with pytest.raises(AssertionError, match=r"went to ERROR: no fault recorded$"):
        wait_active(conn, SERVER)


def test_a_timeout_stays_openstacksdks() -> None:
    conn = SimpleNamespace(compute=Compute(openstack.exceptions.ResourceTimeout("Timeout waiting")))
    with pytest.raises(openstack.exceptions.ResourceTimeout):
        wait_active(conn, SERVER)


class Console:
    """A compute proxy whose console output is fixed."""

    def __init__(self, output: str) -> None:
        self.output = output

    def get_server_console_output(self, server):
        return {"output": self.output}


SILENT = """[    0.0] Linux version 6.12
mortar-guest: booted, kernel 6.12
mortar-guest: no DHCP lease on eth0 yet (round 5 of 6; packets sent 100, received 3)
mortar-guest: no DHCP lease on eth0 yet (round 6 of 6; packets sent 120, received 3)
mortar-guest: no DHCP lease on eth0
mortar-guest: no metadata
mortar-guest: ssh ready for mortar@mortar-guest
"""


def test_a_silent_guest_is_named_with_its_port_and_what_its_nic_carried(monkeypatch) -> None:
    from mortar.verify import checks
    from tests.integration.conftest import SILENT_GUEST

    monkeypatch.setattr(checks.time, "sleep", lambda _: None)
    ctx = SimpleNamespace(conn=SimpleNamespace(compute=Console(SILENT)))
    server = SimpleNamespace(name="mortar-verify-guest-compute1")
    port = "3533a14b-c28a-4f82-9584-03e106c67821"
    with pytest.raises(AssertionError) as failed:
        checks._console_until(ctx, server, "mortar-guest: metadata", 0,
                              f" (port {port} fa:16:3e:6f:0e:d4 on compute1)")
    message = str(failed.value)
    # The last round's counters, then the last two lines; the rest of the console is left out.
    assert "round 6 of 6; packets sent 120, received 3" in message
    assert "round 5" not in message and "booted" not in message
    assert message.endswith("no metadata\\nmortar-guest: ssh ready for mortar@mortar-guest'")
    # The tests read the port back out of verify's message to gather OVN's view of it.
    assert SILENT_GUEST.findall(message) == [(port, "fa:16:3e:6f:0e:d4", "compute1")]
