"""The digests `mortar build --push` got from the registry, by image reference: what hosts pull."""

from __future__ import annotations

from pathlib import Path

from mortar.records import RecordStore


def _store(state_dir: Path) -> RecordStore:
    return RecordStore(state_dir / "images" / "pushed.json")


def record_pushed(state_dir: Path, digests: dict[str, str]) -> None:
    if digests:
        _store(state_dir).update(lambda data: data.setdefault("digests", {}).update(digests))


def pushed_digests(state_dir: Path) -> dict[str, str]:
    return dict(_store(state_dir).get("digests", default={}))
