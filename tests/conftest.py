"""Shared fixtures: a manual clock, a key manager over a real file key store, and a
``Tokensmith`` over a SQLite file with the CLI environment that reaches the same one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
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


@contextmanager
def live_serve(tmp_path: Path, *args: str) -> Iterator[str]:
    """``tokensmith serve *args`` on a free loopback port over the database and keys in
    ``tmp_path`` (:func:`cli_env`), its URL the issuer; yields that URL once ``/readyz``
    answers 200. Its output goes to ``tmp_path/serve.log``."""
    from tests.scale.cluster import free_port, tokensmith_exe

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [tokensmith_exe(), "serve", "--port", str(port), *args],
            env={**os.environ, **cli_env(tmp_path, issuer=url)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


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


@contextmanager
def uvicorn_in_thread(app: Any, port: int, **config: Any) -> Iterator[None]:
    """``app`` served by a real uvicorn on 127.0.0.1:``port`` in a thread of this process
    (the test can reach into the app's objects); stopped on exit."""
    import threading

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
