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
