"""One changing command per site at a time: a second one is refused with who holds the site."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mortar.errors import MortarError
from mortar.files import private_directory


@contextmanager
def site_lock(directory: Path, command: str) -> Iterator[None]:
    """Hold DIRECTORY/lock while COMMAND changes the site; refuse when another command holds it."""
    private_directory(directory)
    path = directory / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            raise MortarError(f"another mortar command is changing this site ({holder})",
                              fix="wait for it to finish (or stop that process), then run this command again") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"command": command, "pid": os.getpid(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        data = json.loads(path.read_text() or "{}")
        return f"mortar {data.get('command', '?')}, pid {data.get('pid', '?')}, since {data.get('started', '?')}"
    except (OSError, ValueError):
        return "unknown holder"
