"""Shared fixtures: a manual clock, a key manager over a real file key store, and a
``Tokensmith`` over a SQLite file with the CLI environment that reaches the same one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tokensmith import Tokensmith
from tokensmith.clock import ManualClock
from tokensmith.events import EventBus
from tokensmith.keys import FileKeyStore, KeyManager
from tokensmith.refresh.reuse import ReusePolicy
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


def make_tokensmith(
    tmp_path: Path,
    clock: ManualClock,
    *,
    issuer: str = ISSUER,
    reuse_policy: ReusePolicy | None = None,
    **settings: object,
) -> Tokensmith:
    """A set-up ``Tokensmith`` on ``tmp_path/ts.db`` and ``tmp_path/keys``."""
    database_url, keys_dir = _store_paths(tmp_path)
    ts = Tokensmith(
        Settings(
            issuer=issuer,
            database_url=database_url,
            keys_dir=keys_dir,
            **settings,  # type: ignore[arg-type]
        ),
        clock=clock,
        reuse_policy=reuse_policy,
    )
    ts.setup()
    return ts


def cli_env(tmp_path: Path, *, issuer: str = ISSUER) -> dict[str, str]:
    """The environment for a CLI run on the database and keys of :func:`make_tokensmith`."""
    database_url, keys_dir = _store_paths(tmp_path)
    return {
        "TOKENSMITH_ISSUER": issuer,
        "TOKENSMITH_KEYS_DIR": keys_dir,
        "TOKENSMITH_DATABASE_URL": database_url,
    }


def _store_paths(tmp_path: Path) -> tuple[str, str]:
    """The database URL and keys directory that the set-up in ``tmp_path`` and the CLI
    environment for it must agree on."""
    return f"sqlite:///{tmp_path / 'ts.db'}", str(tmp_path / "keys")


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: float = 60) -> list[str]:
    """Run ``benchmarks/<script>`` with ``args``; its output lines once it exited 0."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()
