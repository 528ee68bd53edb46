"""Where mortar keeps things on the machine it runs on; each root can be moved by environment."""

from __future__ import annotations

import os
from pathlib import Path


def state_root() -> Path:
    """Rendered files, job records, site records ($MORTAR_STATE_DIR, default /var/lib/mortar)."""
    return Path(os.environ.get("MORTAR_STATE_DIR", "/var/lib/mortar"))


def log_root() -> Path:
    """Build, job and Ansible logs ($MORTAR_LOG_DIR, default /var/log/mortar)."""
    return Path(os.environ.get("MORTAR_LOG_DIR", "/var/log/mortar"))


def config_root() -> Path:
    """The site directory ($MORTAR_CONFIG_DIR, default /etc/mortar)."""
    return Path(os.environ.get("MORTAR_CONFIG_DIR", "/etc/mortar"))


def cache_root() -> Path:
    """Tools made once per machine and shared by every site, e.g. Tempest's venv ($MORTAR_CACHE_DIR,
    default /var/cache/mortar)."""
    return Path(os.environ.get("MORTAR_CACHE_DIR", "/var/cache/mortar"))
