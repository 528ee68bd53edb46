"""The wire format between controller and agent (mortar/agent/wire.py): round trips, and every
malformed message a WireError (a MortarError with one clear message), never a KeyError or TypeError."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mortar.agent import wire
from mortar.agent.wire import (
    WIRE_VERSION,
    Action,
    Check,
    Failure,
    HostState,
    StepReport,
    StepRequest,
    WireError,
)
from mortar.errors import MortarError
from tests.unit.agent.conftest import demo_host


def a_report() -> StepReport:
    return StepReport(
        "h1", "containers", True, ["demo: create demo_web"],
        [Action("recreate", "h1", "demo", "demo_web", ["demo.conf changed"], "-a\n+b\n")],
        volumes={"demo_data": "0123abcd"}, job_records={"demo.db_sync": {"inputs": "x", "image": "sha256:1",
                                                                         "data": {"h1/demo_data": "0123abcd"}}},
        image_ids={"mortar/demo:1": "sha256:1"}, checks=[Check(False, "h1: ports free", "stop it")],
        failure=Failure("h1", "containers", "it broke", "demo", "demo_web", "last\nlines", "fix it", "timeout"))


def a_request() -> StepRequest:
    return StepRequest(services=["demo"], jobs=["demo.db_sync"], recreate=["demo"], data_ids={"h2/db": "ab12"},
                       registry="10.0.0.1:4000", insecure_registries=["10.0.0.1:4000"], registry_ca="PEM")


def a_host() -> HostState:
    host = demo_host()
    host.image_pins = {"mortar/demo:1": "sha256:" + "a" * 64}
    host.registry_auth = {"registry": "10.0.0.1:4000", "username": "mortar", "password": "pw"}
    return host


@pytest.mark.parametrize("make", [a_host, a_report, a_request, lambda: StepReport("h1", "plan")],
                         ids=["HostState", "StepReport", "StepRequest", "empty-report"])
def test_round_trip(make) -> None:
    value = make()
    again = wire.loads(type(value), wire.dumps(value))
    assert again == value
    assert type(again) is type(value)


def test_host_state_keeps_nested_types_and_derived_values() -> None:
    host = wire.loads(HostState, wire.dumps(a_host()))
    job = host.jobs()[0]
    assert job.spec is not None and job.spec.healthcheck is None
    assert host.containers()[0].healthcheck is not None and host.containers()[0].healthcheck.test == "demo-probe"
    assert job.inputs == a_host().jobs()[0].inputs
    assert host.containers()[0].config_hash == a_host().containers()[0].config_hash
    assert host.health_timeout == 5.0 and isinstance(host.health_timeout, float)


def test_an_integer_is_accepted_where_a_number_is_declared() -> None:
    data = wire.encode(a_host())
    data["health_timeout"] = 30
    assert wire.decode(HostState, data).health_timeout == 30.0


def envelope(value: Any, **change: Any) -> str:
    message = json.loads(wire.dumps(value))
    message.update(change)
    return json.dumps(message)


def with_data(value: Any, change) -> str:
    message = json.loads(wire.dumps(value))
    change(message["data"])
    return json.dumps(message)


BAD: dict[str, tuple[type, str, str]] = {
    "other version": (StepReport, envelope(a_report(), wire=WIRE_VERSION + 1), "wire version"),
    "other kind": (StepReport, wire.dumps(a_request()), "holds a StepRequest"),
    "not json": (StepReport, "{not json", "not JSON"),
    "not a message": (StepReport, json.dumps({"data": {}}), "not a mortar message"),
    "a list": (StepReport, "[1, 2]", "not a mortar message"),
    "no data": (StepReport, json.dumps({"wire": WIRE_VERSION, "kind": "StepReport"}), "not a mortar message"),
    "unknown field": (StepReport, with_data(a_report(), lambda d: d.update(colour="red")), "unknown field 'colour'"),
    "unknown nested field": (StepReport, with_data(a_report(), lambda d: d["actions"][0].update(why="x")),
                             "StepReport.actions[0]: unknown field 'why'"),
    "missing field": (StepReport, with_data(a_report(), lambda d: d.pop("host")), "missing field 'host'"),
    "str for bool": (StepReport, with_data(a_report(), lambda d: d.update(changed="yes")),
                     "StepReport.changed: expected bool, got str"),
    "bool for int": (StepReport, with_data(a_report(), lambda d: d.update(version=True)),
                     "expected an integer"),
    "int for str": (StepRequest, with_data(a_request(), lambda d: d["services"].__setitem__(0, 7)),
                    "StepRequest.services[0]: expected str, got int"),
    "str for list": (StepRequest, with_data(a_request(), lambda d: d.update(jobs="demo.db_sync")),
                     "expected a list, got str"),
    "list for mapping": (StepRequest, with_data(a_request(), lambda d: d.update(data_ids=[])),
                         "expected a mapping, got list"),
    "null for dataclass": (HostState, with_data(a_host(), lambda d: d["services"].__setitem__("demo", None)),
                           "expected a mapping for ServiceState"),
    "str for number": (HostState, with_data(a_host(), lambda d: d.update(health_timeout="fast")),
                       "expected a number"),
    "bad nested file": (HostState, with_data(a_host(), lambda d: d["services"]["demo"]["containers"][0]["files"][0]
                                             .update(mode=640)), "files[0].mode: expected str, got int"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_message_is_a_wire_error(case: str) -> None:
    cls, text, words = BAD[case]
    with pytest.raises(WireError) as info:
        wire.loads(cls, text, "h1's answer")
    assert isinstance(info.value, MortarError)
    assert words in str(info.value)


def test_a_version_mismatch_says_how_to_fix_it() -> None:
    newer = WIRE_VERSION + 1
    with pytest.raises(WireError, match=f"speaks wire version {newer}, this mortar speaks {WIRE_VERSION}") as info:
        wire.loads(StepReport, envelope(a_report(), wire=newer), "h1's answer")
    assert "same mortar version" in str(info.value)
    assert str(info.value).startswith("h1's answer")
