"""Reading declared dataclasses out of service.yaml: the schema is the dataclass itself.

A field marked `declared` in mortar.agent.wire may be written in service.yaml; anything
else is rejected with a did-you-mean. Types come from the type hints, so a field added to
`Container` is at once loadable, checked, rendered and shipped: one place, not six.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
import types
import typing
from pathlib import Path
from typing import Any

from mortar.agent.wire import hints
from mortar.errors import MortarError

TEMPLATE_OPEN = re.compile(r"\{\{|\{%")


class Where:
    """The file and key path being read, for error messages."""

    def __init__(self, path: Path, key: str = "") -> None:
        self.path = path
        self.key = key

    def at(self, key: str | int) -> Where:
        if isinstance(key, int):
            return Where(self.path, f"{self.key}[{key}]")
        return Where(self.path, f"{self.key}.{key}" if self.key else key)

    def error(self, message: str, fix: str | None = None) -> MortarError:
        return MortarError(message, file=str(self.path), key=self.key or None, fix=fix)


def unknown_keys(data: dict, allowed: list[str], where: Where) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            raise where.at(str(key)).error(
                f"unknown key '{key}'", fix=f"did you mean '{close[0]}'?" if close else
                f"known keys: {', '.join(allowed)}")


def declared_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("declared")]


def is_template(value: Any) -> bool:
    return isinstance(value, str) and bool(TEMPLATE_OPEN.search(value))


TEMPLATE_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def split_command(text: str, where: Where) -> list[str]:
    """A command written as one string: split into words *before* rendering (a template
    expression stays inside its word), so no value can ever become extra words."""
    parts: list[str] = []

    def hold(match: re.Match[str]) -> str:
        parts.append(match.group(0))
        return f"\0{len(parts) - 1}\0"

    try:
        words = shlex.split(TEMPLATE_PART.sub(hold, text))
    except ValueError as exc:
        raise where.error(f"cannot split the command into words ({exc})",
                          fix="write the command as a YAML list of words") from None
    restored = [re.sub(r"\0(\d+)\0", lambda m: parts[int(m.group(1))], word) for word in words]
    for word in restored:
        if "{%" in word:
            raise where.error(f"a command cannot hold template statements ({word!r})",
                              fix="use a script for logic, or a YAML list of words")
    return restored


def value_of(kind: Any, raw: Any, where: Where) -> Any:
    """RAW checked against KIND (a type hint); templates stand in for ints until rendered."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return raw
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if raw is None else value_of(inner[0], raw, where)
    if origin is list:
        (item,) = typing.get_args(kind)
        if item is str and isinstance(raw, str):
            return split_command(raw, where)
        if not isinstance(raw, list):
            raise where.error(f"must be a list, not {type(raw).__name__}")
        return [value_of(item, v, where.at(i)) for i, v in enumerate(raw)]
    if origin is dict:
        _, item = typing.get_args(kind)
        if not isinstance(raw, dict):
            raise where.error(f"must be a mapping, not {type(raw).__name__}")
        if typing.get_origin(item) is list and typing.get_args(item) == (int,):
            return {str(k): value_of(item, [v, v] if isinstance(v, int) else v, where.at(str(k)))
                    for k, v in raw.items()}
        return {str(k): value_of(item, v, where.at(str(k))) for k, v in raw.items()}
    if dataclasses.is_dataclass(kind):
        return load(kind, raw, where)  # type: ignore[arg-type]
    if kind is bool:
        if not isinstance(raw, bool):
            raise where.error(f"must be true or false, not {raw!r}")
        return raw
    if kind is int:
        if is_template(raw):
            return raw
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise where.error(f"must be a whole number, not {raw!r}")
        return raw
    if kind is str:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise where.error(f"must be a string, not {type(raw).__name__}")
        return str(raw)
    raise where.error(f"cannot read a {kind!r}")


def load(cls: type, raw: Any, where: Where, **given: Any) -> Any:
    """An instance of CLS from a service.yaml mapping; GIVEN fills computed fields."""
    if not isinstance(raw, dict):
        raise where.error(f"must be a mapping, not {type(raw).__name__}")
    allowed = declared_fields(cls)
    unknown_keys(raw, allowed, where)
    kinds = hints(cls)
    values: dict[str, Any] = dict(given)
    for f in dataclasses.fields(cls):
        if f.name not in allowed or f.name in given:
            continue
        if f.name in raw:
            # A literal (never rendered) string must be written as one: YAML reads an unquoted 0640 as 416.
            if kinds[f.name] is str and not f.metadata.get("render") and not isinstance(raw[f.name], str):
                raise where.at(f.name).error(f"must be a quoted string, not the {type(raw[f.name]).__name__} "
                                             f"{raw[f.name]!r}", fix="quote it as written, e.g. mode: \"0640\"")
            values[f.name] = value_of(kinds[f.name], raw[f.name], where.at(f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.at(f.name).error(f"'{f.name}' is required")
    return cls(**values)
