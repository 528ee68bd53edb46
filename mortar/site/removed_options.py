"""Options a series removed from the oslo.config files mortar renders (images/config-options.yaml,
made from each series' own code), and the operator overrides that still name one: oslo.config
ignores an option it does not know, so such a setting would silently stop counting after an
upgrade."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mortar.files import load_yaml
from mortar.releases import releases
from mortar.site.overrides import ini_options, override_sources

DATA_FILE = Path(__file__).resolve().parent.parent / "images" / "config-options.yaml"


@dataclass(frozen=True)
class RemovedOption:
    source: str  # the override file that names it
    file: str  # the rendered file it is merged into
    section: str
    option: str
    series: str  # the series that removed it

    def line(self) -> str:
        into = "" if self.source.endswith("/" + self.file) else f" (merged into {self.file})"
        return (f"{self.source}{into}: [{self.section}] {self.option} was removed in {self.series}; "
                f"the new code ignores it")


@cache
def _data() -> dict[str, Any]:
    return load_yaml(DATA_FILE, what="config-options.yaml", how_to_make="scripts/removed-options.py")


def removed_between(start: str, target: str) -> dict[str, dict[str, dict[str, str]]]:
    """file -> section -> option (lower case) -> the series after START, up to TARGET, that removed it."""
    names = releases().names()
    removed: dict[str, dict[str, dict[str, str]]] = {}
    for series in names[names.index(start) + 1:names.index(target) + 1]:
        for file, sections in (_data().get("removed") or {}).get(series, {}).items():
            for section, options in sections.items():
                for option in options:
                    removed.setdefault(file, {}).setdefault(section, {}).setdefault(option.lower(), series)
    return removed


def removed_in_overrides(config_dir: Path, files: Iterable[tuple[str, str, str, bool]], start: str,
                         target: str) -> list[RemovedOption]:
    """FILES: (service, file name, host, main config?) of every INI file rendered on the hosts that move."""
    removed = removed_between(start, target)
    found: dict[RemovedOption, None] = {}
    for service, name, host, main in files:
        if name not in removed:
            continue
        for source, text in override_sources(config_dir / "config", service, name, host, main=main):
            for section, keys in ini_options(text, source).items():
                for key in keys:
                    series = removed[name].get(section, {}).get(key.lower())
                    if series:
                        found[RemovedOption(source, name, section, key, series)] = None
    return list(found)
