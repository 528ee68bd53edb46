"""Building, reusing, pushing and listing images (mortar/builder/builder.py) on the in-memory engine."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from mortar.builder import builder as builder_module
from mortar.builder.builder import MANIFEST_SCRIPT, Builder, ImageTree, daemon_trusts
from mortar.builder.identity import IDENTITY_LABEL, IMAGE_LABEL
from mortar.builder.lock import Lock
from mortar.builder.status import StatusBoard
from mortar.errors import EngineError
from tests.unit.fakeengine import FakeEngine

BASE_ID = "sha256:" + "0" * 64
ALL = ["base", "builder", "other", "svc-api", "svc-base"]
AUTH = {"username": "mortar", "password": "registry-secret", "serveraddress": "10.0.0.10:4000"}


def make_builder(make_tree, engine: FakeEngine, **options) -> Builder:
    tree: ImageTree = make_tree(**options)
    tree.compute_identities(BASE_ID)
    return Builder(engine, tree, board_stream=io.StringIO())


def builds(engine: FakeEngine) -> list[str]:
    return [target for operation, target in engine.calls if operation == "build"]


def statuses(results) -> dict[str, str]:
    return {name: result.status for name, result in results.items()}


def quiet_board(names: list[str]) -> StatusBoard:
    return StatusBoard(names, stream=io.StringIO())


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def test_every_image_is_built_after_its_parents_and_labelled_with_its_identity(make_tree, engine) -> None:
    builder = make_builder(make_tree, engine, threads=3)
    results = builder.run(["svc-api", "other"])
    assert statuses(results) == dict.fromkeys(ALL, "done")
    order = builds(engine)
    assert sorted(order) == [f"mortar/{name}:2026.2" for name in ALL]
    position = {ref.split("/")[1].split(":")[0]: i for i, ref in enumerate(order)}
    for name, spec in builder.tree.specs.items():
        assert all(position[parent] < position[name] for parent in spec.parents), (name, order)
    for name in ALL:
        image = engine.images_by_ref[f"mortar/{name}:2026.2"]
        assert image.labels[IDENTITY_LABEL] == builder.tree.identities[name]
        assert image.labels[IMAGE_LABEL] == name
        assert results[name].image_id == image.id and results[name].size == image.size
        log = results[name].log
        assert log is not None and log.read_text().startswith(f"# mortar build {name} identity ")


def test_only_the_selection_and_its_ancestors_are_built(make_tree, engine) -> None:
    results = make_builder(make_tree, engine).run(["svc-base"])
    assert sorted(results) == ["base", "builder", "svc-base"]
    assert "mortar/other:2026.2" not in engine.images_by_ref


def test_a_second_run_builds_and_tags_nothing(make_tree, engine) -> None:
    make_builder(make_tree, engine).run(ALL)
    engine.calls.clear()
    results = make_builder(make_tree, engine).run(ALL)
    assert statuses(results) == dict.fromkeys(ALL, "cached")
    assert [c for c in engine.changes() if c[0] in ("build", "tag")] == []


def test_retagging_reuses_every_image_under_the_new_tag(make_tree, engine) -> None:
    first = make_builder(make_tree, engine)
    first.run(ALL)
    engine.calls.clear()
    second = make_builder(make_tree, engine, tag="2026.3", namespace="acme")
    assert second.tree.identities == first.tree.identities
    results = second.run(ALL)
    assert statuses(results) == dict.fromkeys(ALL, "cached")
    assert builds(engine) == []
    assert sorted(target for operation, target in engine.calls if operation == "tag") == [
        f"acme/{name}:2026.3" for name in ALL]
    for name in ALL:
        old, new = engine.images_by_ref[f"mortar/{name}:2026.2"], engine.images_by_ref[f"acme/{name}:2026.3"]
        assert old is new and results[name].image_id == old.id


def test_a_second_series_rebuilds_only_what_installs_its_lock(make_tree, engine) -> None:
    make_builder(make_tree, engine).run(ALL)
    engine.calls.clear()
    older = Lock("3.13", "x", {"svc-base": ["alpha==0.9", "beta==2.0"]}, series="2026.1")
    results = make_builder(make_tree, engine, release="2026.1", lock=older).run(ALL)
    # Only svc-base installs locked packages: it and what runs on it are the series' own; the
    # rest is the same image, tagged for the series too.
    assert statuses(results) == {"base": "cached", "builder": "cached", "other": "cached",
                                 "svc-base": "done", "svc-api": "done"}
    assert builds(engine) == ["mortar/svc-base:2026.1", "mortar/svc-api:2026.1"]
    assert engine.images_by_ref["mortar/other:2026.1"] is engine.images_by_ref["mortar/other:2026.2"]
    assert engine.images_by_ref["mortar/svc-api:2026.1"] is not engine.images_by_ref["mortar/svc-api:2026.2"]
    engine.calls.clear()
    assert statuses(make_builder(make_tree, engine).run(ALL)) == dict.fromkeys(ALL, "cached")
    assert builds(engine) == []


def test_a_changed_image_rebuilds_itself_and_its_descendants_only(make_tree, engine, tmp_path: Path) -> None:
    make_builder(make_tree, engine).run(ALL)
    engine.calls.clear()
    override = tmp_path / "site.j2"
    override.write_text("{% extends parent_template %}{% block svc_base_header %}RUN true{% endblock %}")
    results = make_builder(make_tree, engine, template_override=override).run(ALL)
    assert statuses(results) == {"base": "cached", "builder": "cached", "other": "cached",
                                 "svc-base": "done", "svc-api": "done"}
    assert builds(engine) == ["mortar/svc-base:2026.2", "mortar/svc-api:2026.2"]


def test_no_cache_rebuilds_what_exists(make_tree, engine) -> None:
    make_builder(make_tree, engine).run(ALL)
    engine.calls.clear()
    results = make_builder(make_tree, engine, no_cache=True).run(["other"])
    assert statuses(results) == {"base": "done", "other": "done"}
    assert builds(engine) == ["mortar/base:2026.2", "mortar/other:2026.2"]


def test_a_failed_build_stops_only_its_descendants(make_tree, engine) -> None:
    def fail_svc_base(operation: str, target: str) -> None:
        if operation == "build" and target == "mortar/svc-base:2026.2":
            raise EngineError("The command '/bin/sh -c pip install' returned a non-zero code: 1")

    engine.on_call = fail_svc_base
    results = make_builder(make_tree, engine).run(ALL)
    assert statuses(results) == {"base": "done", "builder": "done", "other": "done",
                                 "svc-base": "failed", "svc-api": "skipped"}
    assert "returned a non-zero code" in results["svc-base"].error
    log = results["svc-base"].log
    assert log is not None and "returned a non-zero code" in log.read_text()
    assert "mortar/svc-api:2026.2" not in builds(engine)
    assert "mortar/svc-base:2026.2" not in engine.images_by_ref


def test_manifests_list_the_packages_through_the_engine(make_tree, engine, tmp_path: Path) -> None:
    builder = make_builder(make_tree, engine)
    results = builder.run(["other"])
    engine.job_results["mortar_manifest_other"] = (0, "deb\ttini\t0.19.0-3\ndeb\tpython3\t3.13.5-1\n"
                                                      "py\tpbr\t6.1.1\npy\tAlpha\t1.0\nnot a package line\n")
    written = builder.write_manifests(tmp_path / "manifests", tmp_path / "cache")
    assert sorted(p.name for p in written) == ["base.json", "other.json"]
    manifest = json.loads((tmp_path / "manifests" / "other.json").read_text())
    assert manifest == {"image": "other", "tag": "2026.2", "identity": builder.tree.identities["other"],
                        "image_id": results["other"].image_id,
                        "debian_packages": {"python3": "3.13.5-1", "tini": "0.19.0-3"},
                        "python_packages": {"Alpha": "1.0", "pbr": "6.1.1"}}
    spec = next(s for s in engine.ran if s.name == "mortar_manifest_other")
    assert spec.image == results["other"].image_id
    assert spec.command == ["sh", "-c", MANIFEST_SCRIPT] and spec.entrypoint == []
    assert spec.network == "none" and spec.labels == {"org.mortar.purpose": "manifest"}


def test_a_manifest_is_listed_once_per_identity(make_tree, engine, tmp_path: Path) -> None:
    first = make_builder(make_tree, engine)
    first.run(["base"])
    first.write_manifests(tmp_path / "m1", tmp_path / "cache")
    assert [s.name for s in engine.ran] == ["mortar_manifest_base"]
    cached = make_builder(make_tree, engine, tag="other-tag")
    cached.run(["base"])
    engine.ran.clear()
    cached.write_manifests(tmp_path / "m2", tmp_path / "cache")
    assert engine.ran == []
    assert (tmp_path / "m2" / "base.json").read_bytes() == (tmp_path / "m1" / "base.json").read_bytes()


def test_failed_images_get_no_manifest_and_a_failed_listing_is_an_error(make_tree, engine, tmp_path: Path) -> None:
    engine.fail["build"] = EngineError("no space left on device")
    builder = make_builder(make_tree, engine)
    builder.run(["base"])
    assert builder.write_manifests(tmp_path / "m", tmp_path / "cache") == []
    del engine.fail["build"]
    builder = make_builder(make_tree, engine)
    builder.run(["base"])
    engine.job_results["mortar_manifest_base"] = (127, "sh: dpkg-query: not found\n")
    with pytest.raises(EngineError, match=r"listing the packages of base failed \(exit 127\).*dpkg-query"):
        builder.write_manifests(tmp_path / "m", tmp_path / "cache")


def test_push_returns_the_digest_of_every_pushed_reference(make_tree, engine) -> None:
    builder = make_builder(make_tree, engine, registry="10.0.0.10:4000", registry_auth=AUTH)
    results = builder.run(["svc-api"])
    digests = builder.push(["svc-api", "svc-base"], quiet_board(["svc-api", "svc-base"]))
    refs = ["10.0.0.10:4000/mortar/svc-api:2026.2", "10.0.0.10:4000/mortar/svc-base:2026.2"]
    assert sorted(digests) == refs == sorted(engine.pushed)
    for ref in refs:
        name = ref.split("/")[2].split(":")[0]
        assert engine.images_by_ref[ref].id == results[name].image_id  # tagged for the registry first
        assert engine.push_auth[ref] == AUTH
        assert digests[ref].startswith("sha256:") and f"{ref.rsplit(':', 1)[0]}@{digests[ref]}" in engine.registry
    assert digests[refs[0]] != digests[refs[1]]


def test_a_failed_push_fails_that_image_only(make_tree, engine) -> None:
    builder = make_builder(make_tree, engine, registry="10.0.0.10:4000", registry_auth=AUTH)
    builder.run(ALL)

    def refuse_other(operation: str, target: str) -> None:
        if operation == "push" and "/other:" in target:
            raise EngineError("push 10.0.0.10:4000/mortar/other:2026.2: unauthorized: authentication required")

    engine.on_call = refuse_other
    digests = builder.push(["base", "other"], quiet_board(["base", "other"]))
    assert list(digests) == ["10.0.0.10:4000/mortar/base:2026.2"]
    assert builder.results["other"].status == "failed" and "unauthorized" in builder.results["other"].error


def test_push_skips_images_that_did_not_build(make_tree, engine) -> None:
    engine.fail["build"] = EngineError("broken")
    builder = make_builder(make_tree, engine, registry="10.0.0.10:4000", registry_auth=AUTH)
    builder.run(["base"])
    assert builder.push(["base"], quiet_board(["base"])) == {}
    assert engine.pushed == []


def test_an_insecure_registry_the_engine_trusts_is_pushed_through_the_engine(make_tree, engine) -> None:
    # The fake engine, as dockerd does by default, trusts 127.0.0.0/8 over plain HTTP.
    builder = make_builder(make_tree, engine, registry="127.0.0.1:4000", registry_insecure=True)
    builder.run(["base"])
    assert list(builder.push(["base"], quiet_board(["base"]))) == ["127.0.0.1:4000/mortar/base:2026.2"]
    assert engine.push_auth == {"127.0.0.1:4000/mortar/base:2026.2": None}


def test_an_untrusted_insecure_registry_goes_through_skopeo(make_tree, engine,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    builder = make_builder(make_tree, engine, registry="10.0.0.10:4000", registry_insecure=True)
    builder.run(["base"])
    ran: list[list[str]] = []

    def fake_run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        # skopeo writes the digest the registry gave the manifest where --digestfile says.
        Path(command[command.index("--digestfile") + 1]).write_text("sha256:" + "5" * 64 + "\n")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(builder_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(builder_module.subprocess, "run", fake_run)
    # Pushed through skopeo, the digest is still recorded: hosts pull exactly that.
    assert builder.push(["base"], quiet_board(["base"])) == {"10.0.0.10:4000/mortar/base:2026.2": "sha256:" + "5" * 64}
    command = ran[0]
    assert command[:4] == ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    assert command[-2:] == ["docker-daemon:mortar/base:2026.2", "docker://10.0.0.10:4000/mortar/base:2026.2"]
    assert engine.pushed == []
    monkeypatch.setattr(builder_module.shutil, "which", lambda name: None)
    with pytest.raises(EngineError, match="skopeo is missing"):
        builder.push(["base"], quiet_board(["base"]))


class Info:
    def __init__(self, config: dict) -> None:
        self.config = config

    def info(self) -> dict:
        return {"RegistryConfig": self.config}


def test_daemon_trusts_loopback_listed_and_cidr_registries() -> None:
    engine = Info({"InsecureRegistryCIDRs": ["127.0.0.0/8"],
                   "IndexConfigs": {"reg.example:4000": {"Secure": False}, "docker.io": {"Secure": True}}})
    assert daemon_trusts(engine, "127.0.0.1:4000")  # type: ignore[arg-type]
    assert daemon_trusts(engine, "reg.example:4000")  # type: ignore[arg-type]
    assert not daemon_trusts(engine, "10.213.77.1:4000")  # type: ignore[arg-type]
    assert not daemon_trusts(engine, "other.example:4000")  # type: ignore[arg-type]
    assert not daemon_trusts(engine, "docker.io")  # type: ignore[arg-type]
    wide = Info({"InsecureRegistryCIDRs": ["10.213.77.0/24"]})
    assert daemon_trusts(wide, "10.213.77.1:4000")  # type: ignore[arg-type]
    assert not daemon_trusts(Info({}), "127.0.0.1:4000")  # type: ignore[arg-type]


@pytest.mark.parametrize("ref, parts", [
    ("10.0.0.10:4000/mortar/keystone:2026.2", ("10.0.0.10:4000/mortar/keystone", "2026.2")),
    ("10.0.0.10:4000/mortar/keystone", ("10.0.0.10:4000/mortar/keystone", "latest")),
    ("debian:trixie", ("debian", "trixie")),
    ("debian", ("debian", "latest")),
    ("reg:4000/mortar/keystone@sha256:" + "a" * 64, ("reg:4000/mortar/keystone", "sha256:" + "a" * 64)),
])
def test_split_ref_keeps_the_registry_port_and_digests(ref: str, parts: tuple[str, str]) -> None:
    from mortar.engine.dockerengine import split_ref

    assert split_ref(ref) == parts
