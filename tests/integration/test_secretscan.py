"""The secret scans catch a planted leak in each place they look (so their silence means something)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.conftest import NAMESPACE, TAG, TEST_LABEL
from tests.integration.secretscan import ProcessSampler, Scanner

pytestmark = pytest.mark.integration
PLANTED = "planted-Secret-4f9c1d2e7a"


def test_process_scan_catches_a_secret_in_a_command_line():
    sampler = ProcessSampler()
    sampler.start()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", f"--password={PLANTED}"])
    try:
        # Two whole passes over the process table while the child runs, however slowly a loaded
        # machine lets the sampler go.
        wanted, deadline = sampler.samples + 2, time.monotonic() + 300
        while sampler.samples < wanted:
            assert time.monotonic() < deadline, f"the sampler made {sampler.samples} passes in 300 s"
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    seen = sampler.stop()
    leaks = Scanner([PLANTED]).processes(seen)
    assert leaks and "process table" in leaks[0].where


def test_container_scan_catches_a_secret_in_the_environment_and_the_log(docker, keystone_build):
    container = docker.containers.run(f"{NAMESPACE}/base:{TAG}", ["sh", "-c", f"echo {PLANTED}"], detach=True,
                                      environment={"SOME_PASSWORD": PLANTED}, labels={TEST_LABEL: "scan"},
                                      network_mode="none")
    try:
        container.wait(timeout=60)
        leaks = Scanner([PLANTED]).containers(docker, f"{TEST_LABEL}=scan")
    finally:
        container.remove(force=True)
    assert {leak.where.split(" ", 2)[1] for leak in leaks} == {"inspect", "logs"}


def test_file_scan_catches_a_world_readable_file_and_ignores_a_private_one():
    # pytest's tmp_path sits in a 0700 directory: nothing in it is readable by others.
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        scan_in(Path(name))


def scan_in(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    public = tmp_path / "public.log"
    public.write_text(f"connection = mysql://u:{PLANTED}@h/db\n")
    public.chmod(0o644)
    private = tmp_path / "private.conf"
    private.write_text(f"password = {PLANTED}\n")
    private.chmod(0o600)
    leaks = Scanner([PLANTED]).files([tmp_path])
    assert [leak.where.split()[1] for leak in leaks] == [str(public)]
    assert len(Scanner([PLANTED]).files([tmp_path], world_readable_only=False)) == 2


def test_text_scan_catches_a_secret_in_a_job_log(tmp_path):
    log = tmp_path / "keystone.bootstrap.log"
    log.write_text(f"bootstrapping with {PLANTED}\n")
    assert Scanner([PLANTED]).text(str(log), log.read_text())
    assert not Scanner([PLANTED]).text(str(log), "bootstrapping with ********\n")
