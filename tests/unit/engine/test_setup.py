"""Starting the background engine (mortar/engine/setup.py): stale pid files."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from mortar.engine.setup import _clear_stale_pid


def test_a_pid_file_naming_a_process_that_is_no_dockerd_is_stale(tmp_path: Path) -> None:
    # After a reboot of a node whose /run is kept, the old number may be any running process:
    # dockerd would refuse to start ("process with PID N is still running").
    reused, gone, garbage = tmp_path / "reused.pid", tmp_path / "gone.pid", tmp_path / "garbage.pid"
    reused.write_text(f"{os.getpid()}\n")
    gone.write_text("4194304\n")  # above any pid_max: no such process
    garbage.write_text("not a number\n")
    _clear_stale_pid((reused, gone, garbage, tmp_path / "absent.pid"))
    assert not reused.exists() and not gone.exists() and not garbage.exists()


def test_the_pid_file_of_a_running_dockerd_is_kept(tmp_path: Path) -> None:
    # A process whose name is dockerd (a copy of sleep under that name) keeps its file.
    program = tmp_path / "dockerd"
    program.symlink_to("/bin/sleep")
    proc = subprocess.Popen([str(program), "30"])
    try:
        # Until the child has exec'd, /proc shows the forked Python (seen on a loaded machine).
        for _ in range(100):
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == "dockerd":
                break
            time.sleep(0.05)
        kept = tmp_path / "dockerd.pid"
        kept.write_text(f"{proc.pid}\n")
        _clear_stale_pid((kept,))
        assert kept.exists()
    finally:
        proc.kill()
        proc.wait()


def test_the_pid_file_of_a_dockerd_that_exited_is_stale(tmp_path: Path) -> None:
    # Exited but not reaped yet (a node's init that does not reap): still named dockerd in /proc.
    program = tmp_path / "dockerd"
    program.symlink_to("/bin/true")
    proc = subprocess.Popen([str(program)])
    try:
        stat = Path(f"/proc/{proc.pid}/stat")
        for _ in range(100):
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        stale = tmp_path / "dockerd.pid"
        stale.write_text(f"{proc.pid}\n")
        _clear_stale_pid((stale,))
        assert not stale.exists()
    finally:
        proc.wait()
