from __future__ import annotations

import pytest

from tests.unit.fakeengine import refuse_engine_connections


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test bed command that reached this machine's engine would build real nodes.
    refuse_engine_connections(monkeypatch)
