"""The test cluster knows its own processes: a pid file that outlived its process names no one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mortar.testbed import k8scluster
from mortar.testbed.k8scluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.setattr(k8scluster, "RUN_ROOT", tmp_path)
    cluster = Cluster("unit")
    cluster.run.mkdir()
    return cluster


def test_a_process_it_started_is_alive_until_it_ends(cluster: Cluster) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        cluster._record_pid("etcd", proc.pid)
        assert cluster._alive("etcd") and cluster._pid("etcd") == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert not cluster._alive("etcd")


def test_a_pid_now_held_by_another_process_is_not_alive(cluster: Cluster) -> None:
    # This test's own process stands for whatever was given the recorded pid after a restart.
    cluster.pid_file("containerd").write_text(f"{os.getpid()} 1\n")
    assert not cluster._alive("containerd")
    cluster.pid_file("containerd").write_text(f"{os.getpid()}\n")  # the format before start times
    assert not cluster._alive("containerd")


def test_a_socket_file_without_a_listener_does_not_answer(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "c.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    assert k8scluster._socket_answers(path)
    listener.close()
    assert path.exists() and not k8scluster._socket_answers(path)
