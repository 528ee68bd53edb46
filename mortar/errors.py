"""Errors an operator can act on.

A MortarError is a value the CLI turns into one readable message and exit code 2;
anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class MortarError(Exception):
    """Bad input or an unusable environment: names where, what, and the fix."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.key = key
        self.fix = fix

    def __str__(self) -> str:
        where = ""
        if self.file and self.key:
            where = f"{self.file}: {self.key}: "
        elif self.file:
            where = f"{self.file}: "
        elif self.key:
            where = f"{self.key}: "
        text = f"{where}{self.message}"
        if self.fix:
            text += f" ({self.fix})"
        return text


class EngineError(MortarError):
    """The container engine is missing, unreachable or refused an operation."""
