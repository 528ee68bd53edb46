"""`mortar lock` (mortar/builder/lockgen.py): resolved in the python-builder image, through engine.run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mortar.builder.builder import BuildOptions
from mortar.builder.lock import load_lock
from mortar.builder.lockgen import CLOSURE_SCRIPT, regenerate_lock
from mortar.errors import MortarError
from tests.unit.fakeengine import FakeEngine

ANSWER = {"python": "3.13.5",
          "versions": {"alpha": "1.0", "beta": "2.0", "gamma": "3.0", "delta": "4.0", "pip": "25.1"},
          "closures": {"svc-base": ["alpha", "beta", "pip"], "svc-api": ["gamma", "delta", "alpha"]}}


@pytest.fixture
def lock_images(mini_images: Path) -> Path:
    (mini_images / "python-builder").mkdir()
    (mini_images / "python-builder" / "Dockerfile.j2").write_text("FROM {{ parent('base') }}\nRUN python3 -m venv\n")
    (mini_images / "python-requirements.yaml").write_text("svc-base: [alpha, beta>=1]\nsvc-api: [gamma]\n")
    return mini_images


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine()
    engine.add_image("debian:trixie")
    monkeypatch.setattr("mortar.engine.connect", lambda timeout=600: engine)
    return engine


def options(images_dir: Path, tmp_path: Path) -> BuildOptions:
    return BuildOptions(images_dir=images_dir, logs_dir=tmp_path / "logs", ca_bundle=None)


def test_the_lock_pins_each_image_on_top_of_its_ancestors(lock_images: Path, engine: FakeEngine,
                                                          tmp_path: Path) -> None:
    engine.job_results["mortar_lock"] = (0, "Collecting alpha\nSuccessfully installed\n" + json.dumps(ANSWER) + "\n")
    output = tmp_path / "python.lock"
    lock = regenerate_lock(options(lock_images, tmp_path), output, log=lambda _: None)
    # svc-api runs on svc-base, which already carries alpha; pip is never pinned.
    assert lock.images == {"svc-base": ["alpha==1.0", "beta==2.0"], "svc-api": ["delta==4.0", "gamma==3.0"]}
    assert lock.python == "3.13.5"
    assert load_lock(output) == lock
    spec = engine.ran[-1]
    assert spec.name == "mortar_lock" and spec.image == engine.images_by_ref["mortar/python-builder:2026.2"].id
    assert spec.command is not None and spec.command[:2] == ["sh", "-c"]
    assert "pip install -q 'alpha' 'beta>=1' 'gamma'" in spec.command[2]
    assert spec.command[3:] == [CLOSURE_SCRIPT, json.dumps({"svc-base": ["alpha", "beta>=1"], "svc-api": ["gamma"]})]


def test_a_failed_resolution_shows_the_end_of_its_output(lock_images: Path, engine: FakeEngine,
                                                         tmp_path: Path) -> None:
    engine.job_results["mortar_lock"] = (1, "ERROR: ResolutionImpossible: beta>=1 conflicts with gamma\n")
    output = tmp_path / "python.lock"
    with pytest.raises(MortarError, match="ResolutionImpossible") as info:
        regenerate_lock(options(lock_images, tmp_path), output, log=lambda _: None)
    assert info.value.file == str(lock_images / "python-requirements.yaml")
    assert not output.exists()


def test_an_unknown_image_is_refused_before_the_engine(lock_images: Path, engine: FakeEngine,
                                                       tmp_path: Path) -> None:
    (lock_images / "python-requirements.yaml").write_text("glance-api: [glance]\n")
    with pytest.raises(MortarError, match="no image named 'glance-api'"):
        regenerate_lock(options(lock_images, tmp_path), tmp_path / "python.lock", log=lambda _: None)
    assert engine.calls == []
