"""Options a series removed (mortar/images/config-options.yaml) and the overrides that name one
(mortar/site/removed_options.py); mortar's own templates name none at the series they render."""

from __future__ import annotations

from pathlib import Path

import pytest

from mortar.deploy import orchestrator as O
from mortar.releases import releases
from mortar.site.overrides import ini_options
from mortar.site.removed_options import _data, removed_between, removed_in_overrides


def ini_files(deployment: O.Deployment):
    return [(name, f.name, host, f.main, f.content) for host, state in deployment.desired.hosts.items()
            for name, service in state.services.items() for c in service.containers for f in c.files
            if f.merge == "ini"]


def test_every_listed_file_is_one_mortar_renders(deployment: O.Deployment) -> None:
    rendered = {name for _, name, _, _, _ in ini_files(deployment)}
    assert set(_data()["files"]) <= rendered
    assert set(_data()["removed"]) <= set(releases().names())


@pytest.mark.parametrize("series", releases().names()[1:])
def test_no_template_sets_an_option_its_series_removed(site_dir: Path, tmp_path: Path, series: str) -> None:
    deployment = O.load_deployment(site_dir, state_dir=tmp_path / "state", release=series)
    removed = removed_between(releases().names()[0], series)
    named = [(name, section, key, removed[name][section][key.lower()])
             for _, name, _, _, content in ini_files(deployment) if name in removed
             for section, keys in ini_options(content, name).items() for key in keys
             if key.lower() in removed[name].get(section, {})]
    assert named == []


def test_a_skip_level_upgrade_counts_the_removals_of_the_series_it_skips() -> None:
    skipped = removed_between("2025.1", "2025.2")
    both = removed_between("2025.1", "2026.1")
    for file, sections in skipped.items():
        for section, options in sections.items():
            assert options.items() <= both[file][section].items()
    assert removed_between("2026.2", "2026.2") == {}


def test_overrides_naming_a_removed_option_are_found_with_the_series_that_removed_it(site_dir: Path) -> None:
    (site_dir / "config" / "nova").mkdir(parents=True, exist_ok=True)
    (site_dir / "config" / "nova" / "nova.conf").write_text(
        "[DEFAULT]\nOSAPI_compute_workers = 2\ndebug = true\n[wsgi]\nkeep_alive = false\n")
    (site_dir / "config" / "global.conf").write_text("[healthcheck]\npath = /healthcheck\n")
    files = [("nova", "nova.conf", "localhost", True), ("horizon", "local_settings.py", "localhost", False)]
    lines = sorted(f.line() for f in removed_in_overrides(site_dir, files, "2025.1", "2026.1"))
    nova = str(site_dir / "config" / "nova" / "nova.conf")
    assert lines == sorted([
        f"{nova}: [DEFAULT] OSAPI_compute_workers was removed in 2025.2; the new code ignores it",
        f"{nova}: [wsgi] keep_alive was removed in 2025.2; the new code ignores it",
        f"{site_dir / 'config' / 'global.conf'} (merged into nova.conf): [healthcheck] path was removed in 2026.1; "
        "the new code ignores it",
    ])
    # From 2025.2 on, only what 2026.1 removed counts; past 2026.1 nothing of these was removed again.
    assert len(removed_in_overrides(site_dir, files, "2025.2", "2026.1")) == 1
    assert removed_in_overrides(site_dir, files, "2026.1", "2026.2") == []
