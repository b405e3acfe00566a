"""Shared fixtures: a manual clock and a key manager over a real file key store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokensmith.clock import ManualClock
from tokensmith.events import EventBus
from tokensmith.keys import FileKeyStore, KeyManager
from tokensmith.settings import Settings

ISSUER = "https://as.example.com"
ALGS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


def make_keys(
    directory: Path, clock: ManualClock, alg: str = "ES256", **settings: object
) -> KeyManager:
    s = Settings(issuer=ISSUER, keys_dir=str(directory), signing_alg=alg, **settings)  # type: ignore[arg-type]
    km = KeyManager(FileKeyStore(directory, s.key_passphrase), s, clock, EventBus())
    km.ensure_active()
    return km


@pytest.fixture
def keys(tmp_path: Path, clock: ManualClock) -> KeyManager:
    return make_keys(tmp_path / "keys", clock)
