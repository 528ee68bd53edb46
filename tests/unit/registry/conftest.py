from __future__ import annotations

import pytest

from tests.unit.fakeengine import refuse_engine_connections


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # `mortar registry start` on this machine's engine would replace the registry in use.
    refuse_engine_connections(monkeypatch)


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """bcrypt at its lowest cost, so hashing takes milliseconds; the cost asked for is recorded."""
    import bcrypt

    asked: list[int] = []
    real = bcrypt.gensalt

    def gensalt(rounds: int = 12, prefix: bytes = b"2b") -> bytes:
        asked.append(rounds)
        return real(4, prefix)

    monkeypatch.setattr(bcrypt, "gensalt", gensalt)
    return asked
