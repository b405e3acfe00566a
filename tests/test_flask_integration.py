"""``tokensmith.integrations.flask`` through Flask's own test client, and the runnable
example ``examples/flask_api.py`` as a live process on 127.0.0.1.

Tokens come from a real ``Tokensmith``; the guard verifies them with its key set (local
mode, revocation included) or through a live JWKS endpoint (``tests/jwks_server.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask, g
from flask.testing import FlaskClient

from examples.flask_api import AUDIENCE, create_app
from tokensmith import ManualClock, Tokensmith
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.integrations.flask import TokensmithGuard, require_token

from .conftest import cli_env, make_tokensmith
from .dpop_helpers import DPoPKey
from .jwks_server import JwksServer

ISSUER = "https://issuer.example"
REPO = Path(__file__).resolve().parents[1]
TTL = 60


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000)


@pytest.fixture
def ts(tmp_path: Path, clock: ManualClock) -> Tokensmith:
    return make_tokensmith(tmp_path, clock, issuer=ISSUER, access_token_ttl=TTL)


@pytest.fixture
def client(ts: Tokensmith) -> FlaskClient:
    return create_app(tokensmith=ts).test_client()


def token(ts: Tokensmith, scope: str = "openid read", audience: str = AUDIENCE) -> str:
    issued = ts.issue(subject="alice", client_id="spa", scope=scope, audience=audience)
    return issued.access_token


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_a_valid_token_reaches_the_view_with_its_claims(
    ts: Tokensmith, client: FlaskClient
) -> None:
    assert client.get("/api/health").get_json() == {"ok": True}
    r = client.get("/api/me", headers=bearer(token(ts)))
    assert r.status_code == 200
    claims = r.get_json()
    assert claims["sub"] == "alice" and claims["aud"] == AUDIENCE and claims["iss"] == ISSUER


def test_missing_malformed_and_invalid_tokens_are_challenged(
    ts: Tokensmith, client: FlaskClient
) -> None:
    r = client.get("/api/me")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="example-api"'
    assert r.get_json() == {"error_description": "bearer token required"}

    r = client.get("/api/me", headers={"Authorization": "Bearer a b"})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"

    for bad in ("not.a.jwt", token(ts, audience="billing"), token(ts)[:-4] + "AAAA"):
        r = client.get("/api/me", headers=bearer(bad))
        assert r.status_code == 401
        assert 'Bearer realm="example-api", error="invalid_token"' in r.headers["WWW-Authenticate"]
        assert r.get_json()["error"] == "invalid_token"
        assert r.headers["Cache-Control"] == "no-store"


def test_an_expired_token_is_401(ts: Tokensmith, client: FlaskClient, clock: ManualClock) -> None:
    t = token(ts)
    clock.advance(TTL + ts.settings.leeway + 1)
    r = client.get("/api/me", headers=bearer(t))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_a_token_without_the_scope_is_403(ts: Tokensmith, client: FlaskClient) -> None:
    r = client.get("/api/me", headers=bearer(token(ts, scope="openid")))
    assert r.status_code == 403
    challenge = r.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="read"' in challenge
    assert r.get_json()["error"] == "insufficient_scope"


def test_a_revoked_token_is_401(ts: Tokensmith, client: FlaskClient) -> None:
    t = token(ts)
    assert client.get("/api/me", headers=bearer(t)).status_code == 200
    ts.revoke_subject("alice")
    r = client.get("/api/me", headers=bearer(t))
    assert r.status_code == 401
    assert 'error_description="token revoked"' in r.headers["WWW-Authenticate"]


@pytest.fixture
def jwks_url(ts: Tokensmith) -> Iterator[str]:
    with JwksServer(ts.keys.jwks()).live() as url:
        yield url


def test_protect_all_over_a_live_jwks(ts: Tokensmith, clock: ManualClock, jwks_url: str) -> None:
    """``before_request`` mode with keys from the issuer's JWKS over real HTTP."""
    app = Flask(__name__)
    keys = RemoteJwks(jwks_url, allow_insecure_loopback=True)
    TokensmithGuard(
        app, keys=keys, issuer=ISSUER, audience=AUDIENCE, clock=clock, scopes=["read"],
        protect_all=True, exempt=["health"],
    )  # fmt: skip

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/me")
    def me() -> dict[str, object]:
        return dict(g.token_claims)

    @app.get("/admin")
    @require_token(scopes=["admin"])
    def admin() -> str:
        return "admin"

    client = app.test_client()
    try:
        assert client.get("/health").status_code == 200
        assert client.get("/me").status_code == 401
        assert client.get("/nowhere").status_code == 401  # unknown paths are not exempt
        assert client.get("/me", headers=bearer(token(ts))).get_json()["sub"] == "alice"
        r = client.get("/admin", headers=bearer(token(ts)))
        assert r.status_code == 403 and 'scope="admin"' in r.headers["WWW-Authenticate"]
        both = token(ts, scope="read admin")
        assert client.get("/admin", headers=bearer(both)).status_code == 200
        r = client.get("/me", headers=bearer(token(ts, scope="openid")))
        assert r.status_code == 403 and 'scope="read"' in r.headers["WWW-Authenticate"]
    finally:
        keys.close()


def test_require_token_needs_the_guard_and_the_guard_one_source(ts: Tokensmith) -> None:
    app = Flask(__name__)

    @app.get("/")
    @require_token()
    def index() -> str:
        return "never"

    app.testing = True
    with pytest.raises(RuntimeError, match="TokensmithGuard"):
        app.test_client().get("/", headers=bearer(token(ts)))
    guard = TokensmithGuard(tokensmith=ts, audience=AUDIENCE).guard
    with pytest.raises(TypeError):
        TokensmithGuard(guard=guard, jwks_url="https://issuer.example/jwks")


def test_the_example_serves_on_a_free_port(tmp_path: Path) -> None:
    """``python examples/flask_api.py`` as an operator runs it: a live process on a free
    loopback port, verifying against the database and keys of the environment."""
    ts = make_tokensmith(tmp_path, ManualClock(time.time()), issuer=ISSUER)
    env = {**os.environ, **cli_env(tmp_path, issuer=ISSUER), "EXAMPLE_PORT": "0"}
    env.pop("PYTHONPATH", None)  # the script finds src/ itself
    with subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "flask_api.py")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # printed once the socket is bound
            assert line.startswith("serving on http://127.0.0.1:"), line
            url = line.split()[-1]
            with httpx.Client(timeout=10) as http:
                assert http.get(url).status_code == 401
                r = http.get(url, headers=bearer(token(ts)))
                assert r.status_code == 200 and r.json()["sub"] == "alice"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_dpop_bound_token_needs_its_proof(
    ts: Tokensmith, client: FlaskClient, clock: ManualClock
) -> None:
    """RFC 9449 §7 through Flask (SECURITY D2): the proof is for ``request.base_url``."""
    key = DPoPKey()
    t = ts.issue(
        subject="alice", client_id="spa", scope="openid read", audience=AUDIENCE, dpop_jkt=key.jkt
    ).access_token
    proof = key.proof("http://localhost/api/me", htm="GET", iat=clock.now(), access_token=t)
    r = client.get("/api/me?x=1", headers={"Authorization": f"DPoP {t}", "DPoP": proof})
    assert r.status_code == 200, r.json
    r = client.get("/api/me", headers={"Authorization": f"DPoP {t}", "DPoP": proof})
    assert r.status_code == 401 and 'error="invalid_dpop_proof"' in r.headers["WWW-Authenticate"]
    r = client.get("/api/me", headers=bearer(t))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("DPoP ")
