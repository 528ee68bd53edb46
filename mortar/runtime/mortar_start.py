#!/usr/bin/python3
"""mortar-start: put a container's config files in place, then exec its command.

Installed in every mortar image as /usr/local/bin/mortar-start. Stdlib only on purpose:
it runs inside the images, where nothing but python3 (and maybe python3-yaml) is present.
"""

from __future__ import annotations

import argparse
import difflib
import grp
import json
import os
import pwd
import shlex
import stat
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

DEFAULT_SPEC = "/var/lib/mortar/config/spec.json"
TOP_KEYS = {"command", "user", "environment", "workdir", "directories", "files", "output"}
DIR_KEYS = {"path", "owner", "mode", "recurse"}
FILE_KEYS = {"source", "dest", "owner", "mode", "optional"}

Owner = tuple[int, int]


class SpecError(Exception):
    """The spec is unusable; reported as one line, exit status 2."""


@dataclass
class Spec:
    command: list[str] | None
    user: str | None
    environment: dict[str, str]
    workdir: str | None
    directories: list[dict[str, Any]]
    files: list[dict[str, Any]]
    output: str | None = None


@dataclass
class Action:
    kind: str  # "mkdir", "copy" or "skip"
    path: str
    source: str | None = None
    owner: Owner | None = None
    mode: int | None = None
    recurse: bool = False


HELP_EPILOG = f"""\
The spec is read from --spec, else $MORTAR_SPEC, else {DEFAULT_SPEC}.
It is JSON, or YAML when named *.yaml/*.yml (needs python3-yaml). Example:

  {{"command": "keystone-manage db_sync",     (string, shlex-split, or list of args)
   "user": "keystone",                        (exec as this user; default: stay)
   "environment": {{"K": "V"}},                 (added to the command's environment)
   "workdir": "/",
   "directories": [{{"path": "/var/log/keystone", "owner": "keystone:keystone",
                    "mode": "0750", "recurse": false}}],
   "files": [{{"source": "keystone.conf", "dest": "/etc/keystone/keystone.conf",
              "owner": "keystone", "mode": "0640", "optional": false}}],
   "output": "/var/lib/mortar/output/output.log"}}   (optional: append all output there)

Relative sources are relative to the spec's directory; a source directory is copied
recursively (its subdirectories get the mode plus x where r is set). Owners are user or
user:group, names or numbers; the group defaults to the user's primary group. Modes are
quoted octal strings. Files are replaced atomically; their contents are never logged, and
neither are the command's arguments or environment (they may carry secrets): only the
program's name is. With "output", everything mortar-start and the command print goes to
that file (opened as root before privileges drop) instead of the container's log.

Exit status: 2 bad spec, 1 failure (with --check: something differs), 127 command not
found; otherwise the command's own status."""


def log(msg: str) -> None:
    print(f"mortar-start: {msg}", file=sys.stderr, flush=True)


def load_spec(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise SpecError(
                    f"{path}: YAML spec needs python3-yaml, which is not installed; use JSON"
                ) from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except SpecError:
        raise
    except Exception as e:  # any parse or read error becomes one line, never a traceback
        raise SpecError(f"{path}: cannot load spec: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict):
        raise SpecError(f"{path}: spec must be a mapping at the top level")
    return data


def lookup_user(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise SpecError(f"unknown user {user!r}") from None


def parse_owner(value: Any) -> Owner:
    """'user' or 'user:group', names or numbers; group defaults to the user's primary group."""
    user, _, group = str(value).partition(":")
    uid = int(user) if user.isdigit() else lookup_user(user).pw_uid
    if group:
        try:
            return uid, int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise SpecError(f"unknown group {group!r}") from None
    try:
        return uid, pwd.getpwuid(uid).pw_gid
    except KeyError:
        raise SpecError(
            f"owner {value!r} has no passwd entry; give the group too, e.g. '{uid}:{uid}'"
        ) from None


def parse_mode(value: Any) -> int:
    # Strings only: an unquoted YAML 0640 or a JSON 640 would silently mean something else.
    if not isinstance(value, str) or not value or any(c not in "01234567" for c in value) or len(value) > 4:
        raise SpecError(f'mode {value!r} must be a quoted octal string like "0640"')
    return int(value, 8)


def get_list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise SpecError(f"spec: {key!r} must be a list")
    return value


def get_bool(entry: dict[str, Any], key: str, where: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{where}: {key!r} must be true or false")
    return value


def check_keys(entry: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: must be a mapping")
    for key in entry:
        if key not in allowed:
            raise SpecError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    return entry


def validate(raw: dict[str, Any], base_dir: str) -> Spec:
    """Check the spec's shape and resolve owners/modes; relative sources are taken from base_dir."""
    check_keys(raw, TOP_KEYS, "spec")
    command = raw.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    if command is not None and (not command or not all(isinstance(a, str) for a in command)):
        raise SpecError("spec: command must be a non-empty string or list of strings")
    user = raw.get("user")
    if user is not None:
        user = str(user)
        lookup_user(user)
    env = raw.get("environment") or {}
    if not isinstance(env, dict) or not all(isinstance(v, (str, int, float)) for v in env.values()):
        raise SpecError("spec: environment must map names to strings")
    directories, files = [], []
    for i, entry in enumerate(get_list(raw, "directories")):
        d = check_keys(entry, DIR_KEYS, f"directories[{i}]")
        if not isinstance(d.get("path"), str) or not os.path.isabs(d["path"]):
            raise SpecError(f"directories[{i}]: 'path' must be an absolute path")
        directories.append(
            {
                "path": d["path"],
                "owner": parse_owner(d["owner"]) if "owner" in d else None,
                "mode": parse_mode(d["mode"]) if "mode" in d else None,
                "recurse": get_bool(d, "recurse", f"directories[{i}]"),
            }
        )
    for i, entry in enumerate(get_list(raw, "files")):
        f = check_keys(entry, FILE_KEYS, f"files[{i}]")
        if not isinstance(f.get("source"), str) or not isinstance(f.get("dest"), str):
            raise SpecError(f"files[{i}]: 'source' and 'dest' are required strings")
        if not os.path.isabs(f["dest"]):
            raise SpecError(f"files[{i}]: 'dest' must be an absolute path")
        files.append(
            {
                "source": os.path.join(base_dir, f["source"]),
                "dest": f["dest"],
                "owner": parse_owner(f["owner"]) if "owner" in f else None,
                "mode": parse_mode(f["mode"]) if "mode" in f else None,
                "optional": get_bool(f, "optional", f"files[{i}]"),
            }
        )
    workdir = raw.get("workdir")
    output = raw.get("output")
    if output is not None and (not isinstance(output, str) or not os.path.isabs(output)):
        raise SpecError("spec: 'output' must be an absolute path")
    return Spec(
        command,
        user,
        {str(k): str(v) for k, v in env.items()},
        str(workdir) if workdir else None,
        directories,
        files,
        output,
    )


def dir_mode(mode: int) -> int:
    """A file mode made usable for directories: add x wherever r is set."""
    return mode | ((mode & 0o444) >> 2)


def plan(spec: Spec) -> list[Action]:
    """Expand the spec into concrete actions; source directories become one action per entry."""
    actions = [
        Action("mkdir", d["path"], owner=d["owner"], mode=d["mode"], recurse=d["recurse"])
        for d in spec.directories
    ]
    for f in spec.files:
        src, dest, owner, mode = f["source"], f["dest"], f["owner"], f["mode"]
        if not os.path.exists(src):
            if not f["optional"]:
                raise SpecError(f"source {src} (for {dest}) does not exist")
            actions.append(Action("skip", dest, source=src))
        elif os.path.isdir(src):
            for root, dirs, names in os.walk(src):
                dirs.sort()
                target = os.path.normpath(os.path.join(dest, os.path.relpath(root, src)))
                dmode = dir_mode(mode) if mode is not None else stat.S_IMODE(os.stat(root).st_mode)
                actions.append(Action("mkdir", target, owner=owner, mode=dmode))
                for name in sorted(names):
                    s = os.path.join(root, name)
                    m = mode if mode is not None else stat.S_IMODE(os.stat(s).st_mode)
                    actions.append(Action("copy", os.path.join(target, name), s, owner, m))
        else:
            m = mode if mode is not None else stat.S_IMODE(os.stat(src).st_mode)
            actions.append(Action("copy", dest, src, owner, m))
    return actions


def describe(a: Action) -> str:
    owner = f" owner {a.owner[0]}:{a.owner[1]}" if a.owner else ""
    mode = f" mode {a.mode:04o}" if a.mode is not None else ""
    return f"{owner}{mode}{' (recursive owner)' if a.recurse else ''}"


def apply(actions: list[Action]) -> None:
    for a in actions:
        if a.kind == "skip":
            log(f"skip {a.path}: optional source {a.source} is absent")
        elif a.kind == "mkdir":
            log(f"directory {a.path}{describe(a)}")
            os.makedirs(a.path, exist_ok=True)
            if a.owner:
                os.chown(a.path, *a.owner)
            if a.owner and a.recurse:
                for root, dirs, names in os.walk(a.path):
                    for name in dirs + names:
                        os.lchown(os.path.join(root, name), *a.owner)
            if a.mode is not None:
                os.chmod(a.path, a.mode)
        else:
            log(f"copy {a.source} -> {a.path}{describe(a)}")
            copy_atomic(a)


def copy_atomic(a: Action) -> None:
    """Write a temp file next to dest and rename it, so the service never sees a half-written file."""
    assert a.source is not None and a.mode is not None
    dest_dir = os.path.dirname(a.path)
    os.makedirs(dest_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".mortar-")
    try:
        with os.fdopen(fd, "wb") as out, open(a.source, "rb") as src:
            out.write(src.read())
            if a.owner:
                os.fchown(out.fileno(), *a.owner)
            os.fchmod(out.fileno(), a.mode)
        os.replace(tmp, a.path)
    except BaseException:
        os.unlink(tmp)
        raise


def check(actions: list[Action]) -> list[str]:
    """Return one report line (or diff block) per difference between the actions and the disk."""
    problems: list[str] = []
    for a in actions:
        if a.kind == "skip":
            continue
        try:
            st = os.stat(a.path)
        except FileNotFoundError:
            problems.append(f"missing: {a.path}")
            continue
        want_dir = a.kind == "mkdir"
        if stat.S_ISDIR(st.st_mode) != want_dir:
            problems.append(f"type: {a.path} should be a {'directory' if want_dir else 'file'}")
            continue
        if a.owner and (st.st_uid, st.st_gid) != a.owner:
            problems.append(f"owner: {a.path} is {st.st_uid}:{st.st_gid}, want {a.owner[0]}:{a.owner[1]}")
        if a.mode is not None and stat.S_IMODE(st.st_mode) != a.mode:
            problems.append(f"mode: {a.path} is {stat.S_IMODE(st.st_mode):04o}, want {a.mode:04o}")
        if a.kind == "copy" and a.source:
            with open(a.path, "rb") as f1, open(a.source, "rb") as f2:
                have, want = f1.read(), f2.read()
            if have != want:
                diff = difflib.unified_diff(
                    have.decode(errors="replace").splitlines(keepends=True),
                    want.decode(errors="replace").splitlines(keepends=True),
                    f"{a.path} (in place)",
                    f"{a.path} (from spec)",
                )
                problems.append("".join(line if line.endswith("\n") else line + "\n" for line in diff))
    return problems


def exec_command(spec: Spec) -> int:
    """Drop privileges and exec the command; returns only when the exec itself fails."""
    if not spec.command:
        raise SpecError("spec has no 'command' to run (use --copy-only to only place files)")
    env = dict(os.environ, **spec.environment)
    if spec.user is not None:
        pw = lookup_user(spec.user)
        if os.geteuid() != pw.pw_uid:
            os.initgroups(pw.pw_name, pw.pw_gid)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    if spec.workdir:
        os.chdir(spec.workdir)
    # Only the program: arguments and environment may carry secrets.
    log(f"exec as {spec.user or os.geteuid()}: {spec.command[0]} ({len(spec.command) - 1} argument(s))")
    try:
        os.execvpe(spec.command[0], spec.command, env)
    except OSError as e:
        log(f"error: cannot run {spec.command[0]!r}: {e.strerror}")
    return 127


def redirect_output(path: str) -> None:
    """Send this process's (and so the command's) stdout and stderr to PATH, appending."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mortar-start",
        description="Container entrypoint of mortar images: create the spec's directories, copy its\n"
        "config files into place (atomically, with owner and mode), then drop privileges to\n"
        "the spec's user and exec its command.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spec", help="spec file to read")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="change nothing; show how files and directories differ from the spec (exit 1 if so)",
    )
    mode.add_argument(
        "--copy-only", action="store_true", help="create directories and copy files, then exit 0"
    )
    args = parser.parse_args(argv)
    path = args.spec or os.environ.get("MORTAR_SPEC") or DEFAULT_SPEC
    try:
        spec = validate(load_spec(path), os.path.dirname(os.path.abspath(path)))
        if spec.output and not args.check:
            redirect_output(spec.output)
        actions = plan(spec)
        if args.check:
            problems = check(actions)
            for p in problems:
                print(p, end="" if p.endswith("\n") else "\n")
            log(f"check: {len(problems)} difference(s)" if problems else "check: everything matches the spec")
            return 1 if problems else 0
        apply(actions)
        if args.copy_only:
            return 0
        return exec_command(spec)
    except SpecError as e:
        msg = str(e) if str(e).startswith(path) else f"{path}: {e}"
        log(f"error: {msg}")
        return 2
    except OSError as e:
        log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
