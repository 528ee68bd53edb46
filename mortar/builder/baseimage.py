"""Make the Debian base image locally when it cannot be pulled.

The root filesystem comes from debootstrap against the host's own Debian archive (the
URIs in its apt sources), so no registry or mirror name is written into mortar.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from mortar.engine.dockerengine import split_ref
from mortar.engine.protocol import Engine
from mortar.errors import EngineError, MortarError

HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
HOST_SOURCES_LIST = Path("/etc/apt/sources.list")
MADE_BY_LABEL = "org.mortar.base.made-by"

# Keep documentation and translations out of every layer built on this base.
DPKG_EXCLUDES = """\
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/linda/*
"""
APT_SLIM = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
"""


def host_archive_uris(sources: Path = HOST_SOURCES,
                      sources_list: Path = HOST_SOURCES_LIST) -> tuple[str | None, str | None]:
    """The host's Debian archive and security archive URIs, as its apt is configured."""
    main = security = None
    if sources.exists():
        uris = [line.split(None, 1)[1].split()[0] for line in sources.read_text().splitlines()
                if line.startswith("URIs:")]
        for uri in uris:
            if "security" in uri:
                security = security or uri
            else:
                main = main or uri
    elif sources_list.exists():
        for line in sources_list.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                uri = parts[1] if not parts[1].startswith("[") else parts[2]
                if "security" in uri:
                    security = security or uri
                else:
                    main = main or uri
    return main, security


def sources_for(suite: str, main: str, security: str | None) -> str:
    text = (f"Types: deb\nURIs: {main}\nSuites: {suite} {suite}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    if security:
        text += (f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
                 "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    return text


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise MortarError("could not install debootstrap: " + proc.stderr.strip()[-300:],
                          fix="install it with apt-get, or pass --base-image NAME of an existing image")


def make_debian_base(engine: Engine, repository: str, tag: str, suite: str,
                     log: Callable[[str], None] = print) -> str:
    """debootstrap SUITE, slim it, import it as repository:tag; returns the image id."""
    if os.geteuid() != 0:
        raise MortarError(f"making the {suite} base image needs root (debootstrap)",
                          fix="run as root, or pass --base-image NAME of an existing image")
    _ensure_debootstrap()
    main, security = host_archive_uris()
    with tempfile.TemporaryDirectory(prefix=f"mortar-{suite}-") as tmp:
        root = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", suite, str(root)]
        if main:
            cmd.append(main)
        log(f"debootstrap {suite} from {main or 'debootstrap default'}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
            raise MortarError(f"debootstrap {suite} failed:\n{tail}",
                              fix="check the host's apt sources, or pass --base-image NAME")
        if main:
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
            (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
            (root / "etc/apt/sources.list.d/debian.sources").write_text(sources_for(suite, main, security))
        (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/dpkg/dpkg.cfg.d/mortar-slim").write_text(DPKG_EXCLUDES)
        (root / "etc/apt/apt.conf.d/90mortar-slim").write_text(APT_SLIM)
        for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                        "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*", "var/log/*.log"):
            for path in root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        for doc in (root / "usr/share/doc").glob("*"):
            if doc.is_dir() and not doc.is_symlink():
                for item in doc.iterdir():
                    if item.name != "copyright":
                        shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(os.listdir(root)):
                tar.add(root / entry, arcname=entry)
        log(f"importing {repository}:{tag}")
        return engine.import_image(str(archive), repository, tag,
                                   ['CMD ["bash"]', f"LABEL {MADE_BY_LABEL}=debootstrap-{suite}"])


def ensure_base_image(engine: Engine, ref: str, suite: str, made_by_mortar: bool,
                      log: Callable[[str], None] = print) -> str:
    """The id of the base image: local, else pulled, else (default base only) made here."""
    local = engine.image(ref)
    if local is not None:
        return local.id
    repository, tag = split_ref(ref)
    try:
        log(f"base image {ref} not found locally; pulling")
        return engine.pull(ref).id
    except EngineError as exc:
        if not made_by_mortar:
            raise MortarError(f"base image {ref} is not in the local engine and cannot be pulled ({exc})",
                              key="--base-image",
                              fix="load or build that image first, or leave --base-image unset") from exc
        log(f"cannot pull {ref}; making it with debootstrap")
    return make_debian_base(engine, repository, tag, suite, log)
