"""Live per-image status: one line per image, redrawn in place on a terminal.

Off a terminal (CI, pipes) each state change is printed once, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

FINAL = {"cached", "done", "failed", "skipped", "pushed"}


@dataclass
class ImageState:
    name: str
    state: str = "queued"
    started: float | None = None
    seconds: float = 0.0
    detail: str = ""


@dataclass
class StatusBoard:
    names: list[str]
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    live: bool | None = None

    def __post_init__(self) -> None:
        self.states = {name: ImageState(name) for name in self.names}
        self.lock = threading.Lock()
        if self.live is None:
            self.live = self.stream.isatty()
        self._drawn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.width = max([len(n) for n in self.names] + [10])

    def start(self) -> None:
        if self.live:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        else:
            for name in self.names:
                self._print_line(self.states[name])

    def set(self, name: str, state: str, detail: str = "") -> None:
        with self.lock:
            entry = self.states[name]
            now = time.monotonic()
            if state in ("building", "pushing") and entry.started is None:
                entry.started = now
            if entry.started is not None:
                entry.seconds = now - entry.started
            entry.state = state
            entry.detail = detail
            if not self.live:
                self._print_line(entry)
            else:
                self._redraw()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.live:
            with self.lock:
                self._redraw()

    def _format(self, entry: ImageState) -> str:
        seconds = entry.seconds
        if entry.state in ("building", "pushing") and entry.started is not None:
            seconds = time.monotonic() - entry.started
        timing = f"{seconds:6.1f}s" if entry.started is not None else "       "
        detail = f"  {entry.detail}" if entry.detail else ""
        return f"{entry.name:<{self.width}}  {entry.state:<8} {timing}{detail}"

    def _print_line(self, entry: ImageState) -> None:
        self.stream.write(self._format(entry) + "\n")
        self.stream.flush()

    def _redraw(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F")
        for name in self.names:
            self.stream.write("\x1b[2K" + self._format(self.states[name]) + "\n")
        self._drawn = len(self.names)
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self.lock:
                self._redraw()
