"""The test bed node image (mortar/testbed/image.py): its tag follows its content, its files are sound."""

from __future__ import annotations

import io
import re
import tarfile

import pytest

from mortar.builder.builder import context_tar
from mortar.testbed import image


def test_content_hash_is_stable() -> None:
    assert image.content_hash() == image.content_hash()
    assert image.content_hash() == image.content_hash(image.DOCKERFILE, image.context_files())
    assert re.fullmatch(r"[0-9a-f]{16}", image.content_hash())
    assert image.image_ref() == f"{image.REPOSITORY}:{image.content_hash()}"


@pytest.mark.parametrize("name", sorted(image.context_files()))
def test_content_hash_changes_with_any_file(name: str) -> None:
    files = image.context_files()
    files[name] += b"\n# changed\n"
    assert image.content_hash(files=files) != image.content_hash()


def test_content_hash_changes_with_the_dockerfile_and_file_names() -> None:
    assert image.content_hash(image.DOCKERFILE + "RUN true\n") != image.content_hash()
    files = image.context_files()
    files["entrypoint2"] = files.pop("entrypoint")
    assert image.content_hash(files=files) != image.content_hash()


def test_entrypoint_program_is_installed() -> None:
    # ENTRYPOINT names /usr/bin/tini; without the package every node exits at once.
    assert '"/usr/bin/tini"' in image.DOCKERFILE
    assert "tini" in image.PACKAGES


def test_every_copied_file_is_in_the_context_and_programs_are_executable() -> None:
    files = image.context_files()
    copied = re.findall(r"^COPY (\S+) (\S+)$", image.DOCKERFILE, flags=re.MULTILINE)
    assert {source for source, _ in copied} == set(files)
    with tarfile.open(fileobj=context_tar(image.DOCKERFILE, files)) as tar:
        modes = {member.name: member.mode for member in tar.getmembers()}
    # context_tar marks a file executable only when it starts with '#!'.
    assert modes["entrypoint"] & 0o111
    assert modes["runc"] & 0o111


def _runc_wrapper_functions() -> dict:
    source = image.RUNC_WRAPPER.split("\ncommand, args = ")[0]
    namespace: dict = {}
    exec(compile(source, "runc-wrapper", "exec"), namespace)  # noqa: S102 - the shipped wrapper's own code
    return namespace


def test_runc_wrapper_finds_the_command_after_global_options() -> None:
    wrapper = _runc_wrapper_functions()
    argv = ["runc", "--root", "/run/x", "--log", "/l", "--systemd-cgroup", "create", "--bundle", "/b", "id"]
    command, args = wrapper["command_and_options"](argv)
    assert command == "create"
    assert wrapper["option"](args, "--bundle", "-b") == "/b"
    assert wrapper["option"](["-b=/c"], "--bundle", "-b") == "/c"


def test_runc_wrapper_drops_sys_resource_and_clamps_rlimits() -> None:
    import resource

    wrapper = _runc_wrapper_functions()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    process = {"capabilities": {"bounding": ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"], "effective": ["CAP_SYS_RESOURCE"]},
               "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 2**40, "soft": 2**40}]}
    wrapper["fix_process"](process)
    assert process["capabilities"] == {"bounding": ["CAP_SYS_ADMIN"], "effective": []}
    if hard != resource.RLIM_INFINITY:
        assert process["rlimits"][0] == {"type": "RLIMIT_NOFILE", "hard": hard, "soft": hard}


def test_entrypoint_is_posix_sh() -> None:
    import shutil
    import subprocess

    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    proc = subprocess.run([sh, "-n"], input=image.ENTRYPOINT, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_context_tar_holds_the_dockerfile() -> None:
    with tarfile.open(fileobj=context_tar(image.DOCKERFILE, image.context_files())) as tar:
        dockerfile = tar.extractfile("Dockerfile")
        assert dockerfile is not None
        assert io.TextIOWrapper(dockerfile).read() == image.DOCKERFILE
