"""The one retry-and-timeout helper: try again while an error is temporary, within a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TimedOut(Exception):
    """The deadline passed; `last` is the error of the final attempt (if any)."""

    def __init__(self, message: str, last: BaseException | None = None) -> None:
        super().__init__(message)
        self.last = last


def retry(work: Callable[[], T], *, timeout: float, delay: float = 1.0, backoff: float = 1.5,
          max_delay: float = 10.0, temporary: Callable[[Exception], bool] = lambda exc: True,
          what: str = "the operation") -> T:
    """WORK's result; a temporary error is tried again (delays growing) until TIMEOUT seconds
    have passed, a permanent one is raised at once, and the last one when time is up."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            return work()
        except Exception as exc:
            if not temporary(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise TimedOut(f"{what} did not succeed within {timeout:.0f} s ({attempt} attempts; last: "
                               f"{type(exc).__name__}: {str(exc)[:200]})", exc) from exc
        time.sleep(delay)
        delay = min(max_delay, delay * backoff)


def until(check: Callable[[], T | None], *, timeout: float, interval: float = 1.0,
          what: str = "the condition") -> T:
    """CHECK's first result that is not None, polled every INTERVAL seconds, within TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() + interval > deadline:
            raise TimedOut(f"{what} did not hold within {timeout:.0f} s")
        time.sleep(interval)
