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
    (mini_images / "releases.yaml").write_text(
        "default: '2026.2'\nseries:\n"
        "  '2026.1': {name: Gazpacho, slurp: true, services: {gamma: '2.5'}, requirements: {svc-base: [delta<5]},\n"
        "             build_constraints: [setuptools<82], unconstrained: [Epsilon]}\n"
        "  '2026.2': {name: Hibiscus, services: {gamma: '3.0'}}\n")
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
    # The service is pinned to the series' version; pip reads the constraints from $2, through
    # PIP_CONSTRAINT so that what it builds sdists with is constrained too.
    assert "export PIP_CONSTRAINT=/tmp/constraints.txt; " in spec.command[2]
    assert "pip install -q 'alpha' 'beta>=1' 'gamma==3.0'" in spec.command[2]
    tops = {"svc-base": ["alpha", "beta>=1"], "svc-api": ["gamma==3.0"]}
    assert spec.command[3:] == [CLOSURE_SCRIPT, json.dumps(tops),
                                ""]
    assert lock.series == "2026.2"


def test_a_series_resolves_within_its_constraints_but_pins_its_own_services(lock_images: Path, engine: FakeEngine,
                                                                              tmp_path: Path) -> None:
    engine.job_results["mortar_lock"] = (0, json.dumps(ANSWER) + "\n")
    constraints = tmp_path / "upper-constraints.txt"
    constraints.write_text("# tested together\nalpha===1.0\nGamma===2.0\nbeta===2.0;python_version=='3.13'\n"
                           "epsilon===6.0\n")
    output = tmp_path / "2026.1.lock"
    output.write_text("series: '2026.1'\nimages:\n  svc-base: [alpha==0.9, epsilon==7.0, gamma==2.4]\n")
    opts = options(lock_images, tmp_path)
    opts.release = "2026.1"
    lock = regenerate_lock(opts, output, log=lambda _: None, constraints=constraints)
    spec = engine.ran[-1]
    assert spec.command is not None
    # gamma is the series' own service (2.5) and epsilon resolves freely in this series, so
    # upstream's lines for both are dropped; of the old lock only epsilon is kept.
    assert "'gamma==2.5'" in spec.command[2] and "'delta<5'" in spec.command[2]
    assert spec.command[5].splitlines() == ["alpha===1.0", "beta===2.0;python_version=='3.13'", "epsilon==7.0",
                                            "setuptools<82"]
    assert lock.series == "2026.1" and len(lock.constraints_digest) == 16
    assert lock.build_constraints == ["setuptools<82"]


def test_an_unknown_series_and_a_broken_constraints_file_are_refused_before_the_engine(
        lock_images: Path, engine: FakeEngine, tmp_path: Path) -> None:
    opts = options(lock_images, tmp_path)
    opts.release = "2024.1"
    with pytest.raises(MortarError, match="'2024.1' is not an OpenStack series") as info:
        regenerate_lock(opts, tmp_path / "x.lock", log=lambda _: None)
    assert info.value.key == "--release"
    bad = tmp_path / "uc.txt"
    bad.write_text("alpha===1.0\nbeta\n")
    with pytest.raises(MortarError, match="line 2 pins no version") as info:
        regenerate_lock(options(lock_images, tmp_path), tmp_path / "x.lock", log=lambda _: None, constraints=bad)
    assert info.value.file == str(bad)
    assert engine.calls == []


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
