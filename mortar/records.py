"""The one JSON record store: what mortar keeps where no fact can be observed.

A store is one JSON object in one file (0600, written atomically with fsync), guarded by a
thread lock and an advisory file lock, so parallel threads and processes never lose an
update. A file that is not valid JSON is reported with its path and the fix, never a
traceback.

Standard library only: the host agent ships this module.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mortar.errors import MortarError
from mortar.files import read_text, write_private

_THREAD_LOCKS: dict[str, threading.RLock] = {}
_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.RLock:
    with _GUARD:
        return _THREAD_LOCKS.setdefault(str(path), threading.RLock())


class RecordStore:
    """One JSON mapping in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        text = read_text(self.path, what="mortar record file")
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise MortarError(f"record file is corrupt (not JSON: {exc.msg} at line {exc.lineno})",
                              file=str(self.path),
                              fix="move it aside; mortar re-observes what it can and reruns what it cannot "
                                  "prove done") from None
        if not isinstance(data, dict):
            raise MortarError("record file is corrupt (not a JSON object)", file=str(self.path),
                              fix="move it aside and run the command again")
        return data

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with _thread_lock(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read, change in place, write back: one atomic step for threads and processes alike."""
        with self._locked():
            data = self.read()
            change(data)
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
            return data

    def get(self, *keys: str, default: Any = None) -> Any:
        value: Any = self.read()
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value

    def set(self, section: str, key: str, value: Any) -> None:
        self.update(lambda data: data.setdefault(section, {}).__setitem__(key, value))

    def discard(self, section: str, key: str) -> None:
        self.update(lambda data: data.get(section, {}).pop(key, None))
