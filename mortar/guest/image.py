"""Build the guest disk image in a container of the base image, once per input.

The image's identity is the digest of its build script, its init, its DHCP hook and the base
image: an unchanged input finds the image already made under the cache directory, which every
site on this machine shares (made once, under a lock, however many runs ask at the same time).
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mortar.errors import MortarError
from mortar.paths import cache_root

SOURCES = Path(__file__).resolve().parent
INPUTS = ("build.sh", "init", "udhcpc.script")
NAME = "mortar-guest"


def default_path() -> Path:
    return cache_root() / "guest" / f"{NAME}.img"


def identity(base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for name in INPUTS:
        digest.update(name.encode() + b"\0" + (SOURCES / name).read_bytes())
    return digest.hexdigest()[:16]


def build_guest_image(output: Path | None = None, base: str = "trixie", log: Callable[[str], None] = print,
                      force: bool = False) -> Path:
    """OUTPUT (default: the cache directory's) holds the guest image; made when its inputs changed."""
    from mortar.builder.baseimage import ensure_base_image
    from mortar.builder.builder import BuildOptions
    from mortar.engine import connect

    output = (output or default_path()).resolve()
    engine = connect()
    base_ref = BuildOptions(base=base).base_ref  # the images' own base: made here when missing
    base_id = ensure_base_image(engine, base_ref, base, True, log)
    wanted = identity(base_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output.with_name(output.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second run waits, then finds the image made
        return _build_locked(engine, output, base_ref, wanted, log, force)


def _build_locked(engine: Any, output: Path, base_ref: str, wanted: str, log: Callable[[str], None],
                  force: bool) -> Path:
    from mortar.engine.protocol import Mount, RunSpec

    stamp = output.with_name(output.name + ".identity")
    if not force and output.is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
        log(f"guest image {output} is up to date ({output.stat().st_size // 1024} KiB, identity {wanted})")
        return output
    log(f"building the guest image from Debian packages in {base_ref} (kernel, busybox, dropbear)")
    started = time.monotonic()
    code, printed = engine.run(RunSpec(
        name=f"mortar_guest_image_{wanted}", image=base_ref, entrypoint=["sh"], command=["/src/build.sh"],
        environment={"IMAGE": output.name}, labels={"org.mortar.purpose": "guest-image"},
        mounts=[Mount("/src", str(SOURCES), "bind", read_only=True), Mount("/out", str(output.parent), "bind")]),
        timeout=1800)
    if code != 0 or not output.is_file():
        raise MortarError("the guest image build failed:\n" + "\n".join(printed.strip().splitlines()[-15:]),
                          fix="see the lines above; the build needs the Debian archive (apt)")
    stamp.write_text(wanted + "\n")
    log(f"guest image {output}: {output.stat().st_size // 1024} KiB in {time.monotonic() - started:.1f}s "
        f"({printed.strip().splitlines()[-1] if printed.strip() else ''})")
    return output
