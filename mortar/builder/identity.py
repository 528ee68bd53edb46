"""Content-addressed image identity.

An image's identity is a hash over everything that decides its content: the rendered
Dockerfile, every file of its build context (the lock entries it installs are one of
them), and the identities of its parents (an external base image counts by its id).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

IDENTITY_LABEL = "org.mortar.identity"
IMAGE_LABEL = "org.mortar.image"
# Bump when the meaning of an identity changes (e.g. how the context is assembled).
SCHEME = "mortar-identity-1"


def context_digest(files: dict[str, bytes]) -> list[str]:
    return [f"{name}:{hashlib.sha256(data).hexdigest()}" for name, data in sorted(files.items())]


def image_identity(dockerfile: str, context_files: dict[str, bytes], parent_identities: list[str]) -> str:
    h = hashlib.sha256()
    h.update(SCHEME.encode())
    h.update(b"\0dockerfile\0" + dockerfile.encode())
    for line in context_digest(context_files):
        h.update(b"\0file\0" + line.encode())
    for parent in parent_identities:
        h.update(b"\0parent\0" + parent.encode())
    return h.hexdigest()


def read_context(context_dir: Path | None) -> dict[str, bytes]:
    """Static context files of an image (symlinks followed), minus its templates."""
    files: dict[str, bytes] = {}
    if context_dir is None:
        return files
    for path in sorted(context_dir.rglob("*")):
        if path.is_file() and not path.name.endswith(".j2") and "__pycache__" not in path.parts:
            files[str(path.relative_to(context_dir))] = path.read_bytes()
    return files
