"""Filters every catalogue template may use, beyond Jinja's own."""

from __future__ import annotations

import base64
import hashlib
import shlex
import urllib.parse
from typing import Any


class Raw(str):
    """A value a script template inserts as it is, not shell-quoted (`{{ x | raw }}`)."""


def shell_word(value: Any) -> str:
    """How a script template writes every value: one shell word, whatever it holds."""
    if isinstance(value, Raw):
        return str(value)
    return shlex.quote("" if value is None else str(value))


def salted_sha256(password: str) -> str:
    """base64(salt + sha256(salt + password)), the salted SHA-256 password form that AMQP
    brokers read, with a salt derived from the password itself so the rendered file stays the
    same from one deploy to the next."""
    salt = hashlib.sha256(b"mortar-salt" + password.encode()).digest()[:4]
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def sql_string(value: Any) -> str:
    """A quoted SQL string literal (MySQL-style escaping)."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


FILTERS = {
    "salted_sha256": salted_sha256,
    "sqlstring": sql_string,
    "raw": Raw,
    "shellquote": shlex.quote,
    "urlquote": lambda value: urllib.parse.quote(str(value), safe=""),
}
