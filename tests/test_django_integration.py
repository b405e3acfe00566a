"""``tokensmith.integrations.django`` through DRF's ``APIClient``, on the example project
``examples/django_api`` (its settings configure Django once for this process), and the
``tokensmith_db_upgrade`` management command on real SQLite files.

The guard verifies with a local ``Tokensmith`` built from ``settings.TOKENSMITH`` on the
same database and keys as the issuing one, so revocation is seen; Django's clock is the
system's, so tokens are issued at the real time.
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import httpx
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings

from examples.django_api import settings as example_settings
from tokensmith import ManualClock, Tokensmith

from .conftest import cli_env, make_tokensmith
from .dpop_helpers import DPoPKey

if not settings.configured:
    settings.configure(
        **{k: getattr(example_settings, k) for k in dir(example_settings) if k.isupper()}
    )
    django.setup()

from rest_framework.test import APIClient

ISSUER = "https://issuer.example"
AUDIENCE = "example-api"
TTL = 60
REPO = Path(__file__).resolve().parents[1]


def local_conf(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    env = cli_env(tmp_path, issuer=ISSUER)
    stores = {"issuer": ISSUER, "database_url": env["TOKENSMITH_DATABASE_URL"]}
    stores["keys_dir"] = env["TOKENSMITH_KEYS_DIR"]
    return {**example_settings.TOKENSMITH, "SETTINGS": stores, **extra}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture
def ts(tmp_path: Path, clock: ManualClock) -> Iterator[Tokensmith]:
    ts = make_tokensmith(tmp_path, clock, issuer=ISSUER, access_token_ttl=TTL)
    with override_settings(TOKENSMITH=local_conf(tmp_path)):
        yield ts


def token(ts: Tokensmith, scope: str = "openid read", audience: str = AUDIENCE) -> str:
    issued = ts.issue(subject="alice", client_id="spa", scope=scope, audience=audience)
    return issued.access_token


def get(path: str, value: str | None = None) -> Any:
    client = APIClient()
    if value is not None:
        client.credentials(HTTP_AUTHORIZATION=value)
    return client.get(path)


def test_a_valid_token_reaches_the_view_with_its_claims(ts: Tokensmith) -> None:
    assert get("/api/health").json() == {"ok": True}
    r = get("/api/me", f"Bearer {token(ts)}")
    assert r.status_code == 200
    claims = r.json()
    assert claims["sub"] == "alice" and claims["aud"] == AUDIENCE and claims["iss"] == ISSUER


def test_missing_malformed_and_invalid_tokens_are_challenged(ts: Tokensmith) -> None:
    r = get("/api/me")
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == 'Bearer realm="example-api"'
    assert r.json() == {"error_description": "bearer token required"}
    r = get("/api/me", "Basic YWxpY2U6c2VjcmV0")  # another scheme counts as none
    assert r.status_code == 401 and r["WWW-Authenticate"] == 'Bearer realm="example-api"'

    r = get("/api/me", "Bearer a b")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"

    for bad in ("not.a.jwt", token(ts, audience="billing"), token(ts)[:-4] + "AAAA"):
        r = get("/api/me", f"Bearer {bad}")
        assert r.status_code == 401
        assert r["WWW-Authenticate"].startswith('Bearer realm="example-api", error="invalid_token"')
        assert r.json()["error"] == "invalid_token"


def test_an_expired_token_is_401(ts: Tokensmith, clock: ManualClock) -> None:
    clock.advance(-(TTL + ts.settings.leeway + 5))  # issued long enough ago to be expired now
    r = get("/api/me", f"Bearer {token(ts)}")
    assert r.status_code == 401 and 'error="invalid_token"' in r["WWW-Authenticate"]
    assert "expired" in r.json()["error_description"]


def test_a_token_without_the_scope_is_403(ts: Tokensmith) -> None:
    r = get("/api/me", f"Bearer {token(ts, scope='openid')}")
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r["WWW-Authenticate"]
    assert 'scope="read"' in r["WWW-Authenticate"]
    assert r.json()["error"] == "insufficient_scope"


def test_a_revoked_token_is_401(ts: Tokensmith) -> None:
    t = token(ts)
    ts.revoke_subject("alice")
    r = get("/api/me", f"Bearer {t}")
    assert r.status_code == 401 and "revoked" in r["WWW-Authenticate"]


def test_a_typo_in_the_settings_block_is_refused(tmp_path: Path) -> None:
    with (
        override_settings(TOKENSMITH=local_conf(tmp_path, SCOPE=["admin"])),
        pytest.raises(ImproperlyConfigured, match="SCOPE"),
    ):
        get("/api/me", "Bearer abc")
    with (
        override_settings(TOKENSMITH={"JWKS_URL": "http://issuer.example/jwks"}),
        pytest.raises(ImproperlyConfigured, match=r"settings\.TOKENSMITH"),
    ):
        get("/api/me", "Bearer abc")


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def test_the_management_command_migrates_a_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    conf = {"AUDIENCE": AUDIENCE, "SETTINGS": {"database_url": f"sqlite:///{db}"}}
    conf["SETTINGS"]["keys_dir"] = str(tmp_path / "keys")
    out = io.StringIO()
    with override_settings(TOKENSMITH=conf):
        call_command("tokensmith_db_upgrade", stdout=out)
        call_command("tokensmith_db_upgrade", stdout=out)  # safe to run repeatedly
    assert out.getvalue().splitlines() == ["tokensmith: database is up to date"] * 2
    assert {"tokensmith_alembic_version", "ts_refresh_tokens"} <= _tables(db)

    conf["SETTINGS"]["database_url"] = "nosuchdriver://x"
    with (
        override_settings(TOKENSMITH=conf),
        pytest.raises(CommandError, match=r"^tokensmith: NoSuch"),
    ):
        call_command("tokensmith_db_upgrade", stdout=out)


def test_the_example_manage_py_runs_the_command(tmp_path: Path) -> None:
    env = {**os.environ, **cli_env(tmp_path, issuer=ISSUER)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = REPO / "examples" / "django_api" / "manage.py"
    done = subprocess.run(
        [sys.executable, str(manage), "tokensmith_db_upgrade"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tokensmith: database is up to date"
    assert "ts_refresh_tokens" in _tables(tmp_path / "ts.db")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_example_serves_with_runserver(ts: Tokensmith, tmp_path: Path) -> None:
    """``manage.py runserver`` as an operator runs it, on the issuer's database and keys."""
    env = {**os.environ, **cli_env(tmp_path, issuer=ISSUER)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    url = f"http://127.0.0.1:{_free_port()}/api/me"
    manage = REPO / "examples" / "django_api" / "manage.py"
    with subprocess.Popen(
        [sys.executable, str(manage), "runserver", "--noreload", url.split("/")[2]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    ) as proc:  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            with httpx.Client(timeout=10) as http:
                while True:
                    try:
                        assert http.get(url).status_code == 401
                        break
                    except httpx.ConnectError:
                        assert time.monotonic() < deadline and proc.poll() is None
                        time.sleep(0.1)
                r = http.get(url, headers={"Authorization": f"Bearer {token(ts)}"})
                assert r.status_code == 200 and r.json()["sub"] == "alice"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_dpop_bound_token_needs_its_proof(ts: Tokensmith, clock: ManualClock) -> None:
    """RFC 9449 §7 through DRF (SECURITY D2): the proof is for the URL Django built."""
    key = DPoPKey()
    t = ts.issue(
        subject="alice", client_id="spa", scope="read", audience=AUDIENCE, dpop_jkt=key.jkt
    ).access_token
    client = APIClient()
    proof = key.proof("http://testserver/api/me", htm="GET", iat=clock.now(), access_token=t)
    client.credentials(HTTP_AUTHORIZATION=f"DPoP {t}", HTTP_DPOP=proof)
    assert client.get("/api/me?x=1").status_code == 200
    r = client.get("/api/me")  # the same proof again
    assert r.status_code == 401 and r["WWW-Authenticate"].startswith("DPoP ")
    assert 'error="invalid_dpop_proof"' in r["WWW-Authenticate"]
    r = get("/api/me", f"Bearer {t}")
    assert r.status_code == 401 and 'error="invalid_token"' in r["WWW-Authenticate"]
