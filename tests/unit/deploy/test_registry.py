"""Tests for the site registry helpers (mortar/registry/server.py) and push routing (builder.daemon_trusts)."""

from __future__ import annotations

import pytest

from mortar.builder.builder import daemon_trusts
from mortar.errors import MortarError
from mortar.registry import server


@pytest.mark.parametrize("address", ["10.0.0.1", "10.0.0.1:", ":4000", "10.0.0.1:port", "10.0.0.1:70000"])
def test_bad_addresses_name_the_key_and_an_example(address: str) -> None:
    with pytest.raises(MortarError) as info:
        server.split_address(address)
    assert info.value.key == "docker_registry" and "127.0.0.1:4000" in str(info.value)


def test_split_address() -> None:
    assert server.split_address("10.213.77.1:4000") == ("10.213.77.1", 4000)


class NoEngine:
    """start() must refuse before it touches the engine."""

    def __getattr__(self, name: str):
        raise AssertionError(f"engine used: {name}")


def test_start_refuses_an_address_this_machine_does_not_have() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine, and nothing is sent to it.
    with pytest.raises(MortarError, match="not an address of this machine") as info:
        server.start(NoEngine(), "192.0.2.10:4000", "mortar/registry:x", log=lambda _: None)
    assert "mortar testbed up" in str(info.value)


class Info:
    def __init__(self, config: dict) -> None:
        self.config = config

    def info(self) -> dict:
        return {"RegistryConfig": self.config}


def test_daemon_trusts_loopback_listed_and_cidr_registries() -> None:
    engine = Info({"InsecureRegistryCIDRs": ["127.0.0.0/8"],
                   "IndexConfigs": {"reg.example:4000": {"Secure": False}, "docker.io": {"Secure": True}}})
    assert daemon_trusts(engine, "127.0.0.1:4000")
    assert daemon_trusts(engine, "reg.example:4000")
    assert not daemon_trusts(engine, "10.213.77.1:4000")
    assert not daemon_trusts(engine, "other.example:4000")
    wide = Info({"InsecureRegistryCIDRs": ["10.213.77.0/24"]})
    assert daemon_trusts(wide, "10.213.77.1:4000")
