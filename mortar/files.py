"""Reading the operator's files and writing mortar's own, each done one way only.

`read_text` and `load_yaml` turn every way a file can be unusable (missing, a directory,
a broken symlink, binary, not UTF-8, unreadable, malformed YAML, a key set twice) into one
MortarError naming the file and the fix. `write_private` is the only way mortar writes a file that may hold a secret:
0600 from the first byte, replaced atomically, flushed to disk before the rename.

Standard library only (plus PyYAML where YAML is read): the host agent ships this module.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from mortar.errors import MortarError


def read_text(path: Path, *, what: str = "file", how_to_make: str | None = None, key: str | None = None) -> str:
    """The UTF-8 text of PATH, or one clear error saying why not (KEY: the option that gave PATH, if any)."""
    where = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():
            raise MortarError(f"{what} is a broken symlink to {os.readlink(path)}", file=where, key=key,
                              fix="point the link at an existing file, or replace it with the file") from None
        raise MortarError(f"{what} not found", file=where, key=key,
                          fix=f"run `{how_to_make}` to write it" if how_to_make else "check the path") from None
    except IsADirectoryError:
        raise MortarError(f"{what} is a directory, expected a file", file=where, key=key,
                          fix="remove or rename the directory and put the file there") from None
    except PermissionError:
        raise MortarError(f"cannot read {what}: permission denied", file=where, key=key,
                          fix="run mortar as root, or fix the file's owner and mode") from None
    except OSError as exc:
        raise MortarError(f"cannot read {what}: {exc.strerror}", file=where, key=key, fix="check the path") from None
    if b"\0" in data:
        raise MortarError(f"{what} is binary, expected text", file=where, key=key,
                          fix="replace it with the text file mortar expects") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MortarError(f"{what} is not UTF-8 text (byte {exc.start}: {exc.reason})", file=where, key=key,
                          fix="save it as UTF-8") from None


class DuplicateKey(Exception):
    """A mapping key given twice; parse_yaml turns it into a MortarError naming the source."""

    def __init__(self, problem: str, line: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


@functools.cache
def _strict_loader() -> Any:
    """PyYAML's safe loader, except that a key set twice in one mapping is an error (PyYAML keeps the last)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, int] = {}
                # Keys given here, not those a `<<:` merge brings (which the keys given here may override).
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=deep)
                    line = key_node.start_mark.line + 1
                    try:
                        if key in first:
                            raise DuplicateKey(f"key {key!r} is set twice (first on line {first[key]})", line)
                        first[key] = line
                    except TypeError:
                        continue  # an unhashable key: the base class says so
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def parse_yaml(text: str, source: str) -> Any:
    """YAML text to data; a syntax error or a key set twice names the source and line."""
    import yaml

    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except DuplicateKey as exc:
        raise MortarError(exc.problem, file=source, key=f"line {exc.line}",
                          fix="keep one of the two; the later one would silently win") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MortarError(f"malformed YAML: {problem}", file=source,
                          key=f"line {mark.line + 1}" if mark is not None else None,
                          fix="fix the YAML syntax: check indentation and quoting") from None


def load_yaml(path: Path, *, what: str = "file", required: bool = True, how_to_make: str | None = None,
              mapping: bool = True) -> Any:
    """A YAML file: {} when absent and not required; a mapping unless mapping=False."""
    if not required and not path.exists() and not path.is_symlink():
        return {} if mapping else None
    data = parse_yaml(read_text(path, what=what, how_to_make=how_to_make), str(path))
    if data is None:
        return {} if mapping else None
    if mapping and not isinstance(data, dict):
        raise MortarError(f"{what} must be a mapping of key: value, not a {type(data).__name__}", file=str(path),
                          fix="write one `key: value` per line")
    return data


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_private(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    """Replace PATH atomically with TEXT: readable by root only from the first byte, on disk
    before the rename, so a crash leaves either the old file or the new one, never half."""
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def private_directory(path: Path) -> Path:
    """PATH as a directory only root can enter (created with its parents when missing)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def inside(directory: Path, name: str, what: str = "name") -> Path:
    """DIRECTORY/NAME, refusing any NAME that would land outside DIRECTORY (`..`, `/`, empty)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise MortarError(f"{what} {name!r} cannot be used as a file name", key=what,
                          fix="use letters, digits, '.', '_' and '-' only")
    return directory / name
