"""Several ``tokensmith serve`` processes sharing one PostgreSQL schema (a test fixture and
the benchmark's building block)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, text

ISSUER = "http://127.0.0.1:9"  # one issuer string for every instance; never contacted
PASSPHRASE = "scale-out-test-passphrase"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tokensmith_exe() -> str:
    return str(Path(sys.executable).with_name("tokensmith"))


def wait_serving(url: str, proc: subprocess.Popen[bytes], *, timeout: float = 60) -> None:
    """Until ``url`` answers 200 (``proc`` must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the process serving {url} exited"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.05)


@dataclass
class Cluster:
    env: dict[str, str]
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [tokensmith_exe(), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def start(
        self, count: int, *, log_dir: Path, workers: int = 1, args: Sequence[str] = ()
    ) -> None:
        for _ in range(count):
            port = free_port()
            log = (log_dir / f"serve-{port}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [
                        tokensmith_exe(),
                        "serve",
                        "--port",
                        str(port),
                        "--no-schedule",
                        "--workers",
                        str(workers),
                        *args,
                    ],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            self.ports.append(port)
        deadline = time.monotonic() + 60
        for url, proc in zip(self.urls, self.procs, strict=True):
            while True:
                assert proc.poll() is None, f"instance {url} exited"
                try:
                    if httpx.get(f"{url}/.well-known/jwks.json", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"instance {url} did not come up"
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextmanager
def postgres_cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A fresh schema and settings for the SQL key store; the caller migrates it and makes
    the first key (:func:`migrated_cluster` does both)."""
    schema = f"scale_{secrets.token_hex(5)}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
    env = {
        **os.environ,
        "TOKENSMITH_ISSUER": ISSUER,
        "TOKENSMITH_DATABASE_URL": url,
        "TOKENSMITH_KEY_STORE": "sql",
        "TOKENSMITH_KEY_PASSPHRASE": PASSPHRASE,
        "TOKENSMITH_KEYS_DIR": str(tmp_path / "unused-keys"),
        "TOKENSMITH_JWKS_MAX_AGE": "5",
    }
    cluster = Cluster(env)
    try:
        yield cluster
    finally:
        cluster.stop()
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def migrated_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[tuple[Cluster, Path]]:
    """A module's cluster on ``TOKENSMITH_TEST_PG_URL`` (skipped, visibly, without it):
    migrated, with a first key, not started yet; with the directory for its logs."""
    pg_url = os.environ.get("TOKENSMITH_TEST_PG_URL")
    if not pg_url:
        pytest.skip(f"TOKENSMITH_TEST_PG_URL is not set: the {name} cluster needs PostgreSQL")
    tmp_path = tmp_path_factory.mktemp(name)
    with postgres_cluster(pg_url, tmp_path) as c:
        c.cli("db", "upgrade")
        c.cli("keys", "generate")
        yield c, tmp_path
