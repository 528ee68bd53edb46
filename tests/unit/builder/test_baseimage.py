"""The base image (mortar/builder/baseimage.py): local, else pulled, else made; and the host's archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from mortar.builder import baseimage
from mortar.builder.baseimage import ensure_base_image, host_archive_uris, sources_for
from mortar.errors import MortarError
from tests.unit.fakeengine import FakeEngine


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """What make_debian_base was asked to make (debootstrap needs root and the network)."""
    calls: list[tuple[str, str, str]] = []

    def fake_make(engine: FakeEngine, repository: str, tag: str, suite: str, log=print) -> str:
        calls.append((repository, tag, suite))
        return engine.import_image("rootfs.tar", repository, tag, [])

    monkeypatch.setattr(baseimage, "make_debian_base", fake_make)
    return calls


def test_a_local_base_is_used_as_it_is(made) -> None:
    engine = FakeEngine()
    local = engine.add_image("debian:trixie")
    assert ensure_base_image(engine, "debian:trixie", "trixie", True, log=lambda _: None) == local.id
    assert engine.changes() == [] and made == []


def test_a_missing_base_is_pulled(made) -> None:
    engine = FakeEngine()
    remote = FakeEngine().add_image("debian:trixie")
    engine.registry["debian:trixie"] = remote
    assert ensure_base_image(engine, "debian:trixie", "trixie", True, log=lambda _: None) == remote.id
    assert engine.changes() == [("pull", "debian:trixie")] and made == []


def test_the_default_base_is_made_when_it_cannot_be_pulled(made) -> None:
    engine = FakeEngine()
    lines: list[str] = []
    image_id = ensure_base_image(engine, "debian:trixie", "trixie", True, log=lines.append)
    assert made == [("debian", "trixie", "trixie")]
    assert engine.image("debian:trixie") is not None and engine.image("debian:trixie").id == image_id
    assert any("debootstrap" in line for line in lines)


def test_a_registry_with_a_port_is_not_taken_for_a_tag(made) -> None:
    engine = FakeEngine()
    ensure_base_image(engine, "mirror.example:5000/debian", "bookworm", True, log=lambda _: None)
    assert made == [("mirror.example:5000/debian", "latest", "bookworm")]


def test_an_operators_base_that_cannot_be_pulled_is_an_error(made) -> None:
    with pytest.raises(MortarError) as info:
        ensure_base_image(FakeEngine(), "acme/debian:13", "trixie", False, log=lambda _: None)
    assert info.value.key == "--base-image" and "acme/debian:13" in str(info.value)
    assert made == []


def test_host_archive_from_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie trixie-updates\n\n"
                       "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: trixie-security\n")
    assert host_archive_uris(sources, tmp_path / "none") == ("http://mirror.example/debian",
                                                             "http://mirror.example/debian-security")


def test_host_archive_from_a_sources_list(tmp_path: Path) -> None:
    listing = tmp_path / "sources.list"
    listing.write_text("# comment\ndeb [arch=amd64] http://deb.example/debian trixie main\n"
                       "deb-src http://src.example/debian trixie main\n"
                       "deb http://security.example/debian-security trixie-security main\n")
    assert host_archive_uris(tmp_path / "none", listing) == ("http://deb.example/debian",
                                                             "http://security.example/debian-security")
    assert host_archive_uris(tmp_path / "none", tmp_path / "none") == (None, None)


def test_sources_for_names_the_suites() -> None:
    text = sources_for("trixie", "http://m/debian", "http://m/security")
    assert "Suites: trixie trixie-updates\n" in text and "Suites: trixie-security\n" in text
    assert "security" not in sources_for("trixie", "http://m/debian", None)
