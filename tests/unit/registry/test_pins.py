"""Pushed digests (mortar/registry/pins.py) and the engine's trust in the site CA (mortar/engine/setup.py)."""

from __future__ import annotations

import stat
from pathlib import Path

from mortar.engine.setup import trust_registry_ca
from mortar.registry.pins import pushed_digests, record_pushed

KEYSTONE = "10.0.0.10:4000/mortar/keystone:2026.2"
NOVA = "10.0.0.10:4000/mortar/nova-api:2026.2"
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def test_pushed_digests_round_trip(tmp_path: Path) -> None:
    assert pushed_digests(tmp_path) == {}
    record_pushed(tmp_path, {KEYSTONE: D1})
    record_pushed(tmp_path, {NOVA: D2})
    assert pushed_digests(tmp_path) == {KEYSTONE: D1, NOVA: D2}
    record_pushed(tmp_path, {KEYSTONE: D3})  # pushed again: the new digest wins, the others stay
    assert pushed_digests(tmp_path) == {KEYSTONE: D3, NOVA: D2}
    path = tmp_path / "images" / "pushed.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_nothing_pushed_writes_nothing(tmp_path: Path) -> None:
    record_pushed(tmp_path, {})
    assert not (tmp_path / "images").exists()


def test_trust_registry_ca_writes_the_ca_where_the_engine_reads_it(tmp_path: Path) -> None:
    certs = tmp_path / "certs.d"
    assert trust_registry_ca("10.0.0.10:4000", "CA-1\n", certs_dir=certs) is True
    path = certs / "10.0.0.10:4000" / "ca.crt"
    assert path.read_text() == "CA-1\n" and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert trust_registry_ca("10.0.0.10:4000", "CA-1\n", certs_dir=certs) is False
    before = path.stat().st_mtime_ns
    assert trust_registry_ca("10.0.0.10:4000", "CA-1\n", certs_dir=certs) is False
    assert path.stat().st_mtime_ns == before
    assert trust_registry_ca("10.0.0.10:4000", "CA-2\n", certs_dir=certs) is True
    assert path.read_text() == "CA-2\n"
    assert trust_registry_ca("registry.example:4000", "CA-2\n", certs_dir=certs) is True
    assert sorted(p.name for p in certs.iterdir()) == ["10.0.0.10:4000", "registry.example:4000"]
