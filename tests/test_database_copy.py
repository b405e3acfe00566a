"""SECURITY B1 (RFC 6819 §5.1.4.1.3): a copy of the database yields no refresh token that
``/token`` accepts, and the SQLite files are not readable by other local users.

The attacker gets the SQLite files after real refreshes, every table and every row, and
the code; not the keys directory (where the refresh secret lives) nor the passphrase.
"""

from __future__ import annotations

import hmac
import itertools
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tokensmith import ManualClock, Tokensmith
from tokensmith.http import create_app
from tokensmith.refresh.opaque import derive_child, format_token, token_hash

from .conftest import make_tokensmith

pytestmark = pytest.mark.anyio

ISSUER = "https://as.example.com"
SUFFIXES = ("", "-wal", "-shm")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _steal(database: Path, into: Path) -> Path:
    """Copy the database files as they are on disk (a backup, a local user's ``cp``)."""
    into.mkdir()
    for suffix in SUFFIXES:
        source = Path(f"{database}{suffix}")
        if source.exists():
            shutil.copyfile(source, into / f"{database.name}{suffix}")
    return into / database.name


def _every_value(copy: Path) -> Iterator[bytes]:
    with sqlite3.connect(copy) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        yield value
                    elif isinstance(value, str):
                        yield value.encode()


def _every_derivation(copy: Path) -> set[str]:
    """What the code offers an attacker: HMAC-SHA256 (``derive_child``) keyed with anything
    in the copy, over any stored value (salt or not, or none) followed by any stored hash;
    and every stored 32-byte value taken as a token's own bytes."""
    values = set(_every_value(copy))
    hashes = {v for v in values if len(v) == 32}
    salts = values | {b""}
    found = {derive_child(k, s, h) for k, s, h in itertools.product(values, salts, hashes)}
    found |= {format_token(hmac.digest(k, h, "sha256")) for k in values for h in hashes}
    return found | {format_token(h) for h in hashes}


def _live_hashes(copy: Path) -> set[bytes]:
    sql = "SELECT token_hash FROM ts_refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL"
    with sqlite3.connect(copy) as conn:
        return {bytes(r[0]) for r in conn.execute(sql)}


async def _refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
    return await http.post("/token", data=data)


@pytest.mark.parametrize(
    "settings",
    [
        {"refresh_reuse_grace": 0.0},
        {"refresh_reuse_grace": 10.0},
        {"refresh_reuse_grace": 10.0, "key_store": "sql", "key_passphrase": "correct horse"},
    ],
    ids=["grace 0", "grace 10 s", "grace 10 s, SQL key store"],
)
async def test_a_copy_of_the_database_yields_no_token_that_token_accepts(
    tmp_path: Path, settings: dict[str, object]
) -> None:
    clock = ManualClock(1_800_000_000.0)
    (tmp_path / "server").mkdir()
    ts = make_tokensmith(tmp_path / "server", clock, issuer=ISSUER, **settings)
    ts.register_client("spa", confidential=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ts)), base_url=ISSUER
    ) as http:
        tokens = [ts.issue(subject="alice", client_id="spa", scope="openid").refresh_token]
        for _ in range(3):
            clock.advance(1)
            r = await _refresh(http, tokens[-1] or "")
            assert r.status_code == 200, r.text
            tokens.append(r.json()["refresh_token"])
        # Within the grace window of the last rotation: its derivation data is still there.
        copy = _steal(tmp_path / "server" / "ts.db", tmp_path / "stolen")

        candidates = _every_derivation(copy)
        assert len(candidates) > 1000  # the attacker did try
        # Worth sending: what the copy knows as an unused token (anything else is refused
        # unseen, or would only revoke the family as reuse).
        live = _live_hashes(copy)
        accepted = []
        for candidate in (c for c in candidates if token_hash(c) in live):
            r = await _refresh(http, candidate)
            if r.status_code == 200:
                accepted.append(candidate)
        assert accepted == []
        assert not candidates & set(tokens)
        # The real holder was not disturbed: the newest token still rotates.
        assert (await _refresh(http, tokens[-1] or "")).status_code == 200


def test_sqlite_files_are_created_0600(tmp_path: Path, clock: ManualClock) -> None:
    old = os.umask(0o022)
    try:
        ts: Tokensmith = make_tokensmith(tmp_path, clock, refresh_reuse_grace=5.0)
        response = ts.issue(subject="alice", client_id="spa", scope="openid")
        ts.refresh(response.refresh_token or "", client_id="spa")
        modes = {
            suffix: stat.S_IMODE(os.stat(f"{tmp_path / 'ts.db'}{suffix}").st_mode)
            for suffix in SUFFIXES
        }
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(SUFFIXES, 0o600)
    secret = tmp_path / "keys" / "refresh-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
