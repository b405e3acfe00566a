"""The examples without a browser: the API and the auth server over httpx's ASGITransport.

The browser run is ``test_example_browser.py``; this file checks the same pieces fast,
including the cases a browser run cannot easily show (scope, audience, CORS, the demo
login's Origin and CSRF checks).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from examples.fastapi_api.app import AUDIENCE, create_api
from examples.run import build, is_loopback, listen, main
from examples.spa.auth_server import CLIENT_ID, create_auth_app, register_spa_client
from tokensmith import ManualClock, Tokensmith
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER

from .conftest import make_tokensmith

ISSUER = "http://127.0.0.1:8000"
ORIGIN = ISSUER  # the SPA is served by the auth server
API = "http://127.0.0.1:8001"
TTL = 30
BROWSER = {"origin": ORIGIN, CSRF_HEADER: "1"}


@dataclass
class Env:
    ts: Tokensmith
    clock: ManualClock
    auth: httpx.AsyncClient
    api: httpx.AsyncClient

    def token(self, scope: str = "openid read", audience: str = AUDIENCE) -> str:
        return self.ts.issue(
            subject="alice", client_id=CLIENT_ID, scope=scope, audience=audience
        ).access_token


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = ManualClock(1_800_000_000)
    ts = make_tokensmith(tmp_path, clock, issuer=ISSUER, access_token_ttl=TTL)
    register_spa_client(ts, ORIGIN)
    register_spa_client(ts, ORIGIN)  # idempotent
    api_app = create_api(
        issuer=ISSUER, keys=ts.keys, allowed_origins=[ORIGIN], leeway=0, clock=clock
    )
    auth_app = create_auth_app(ts, api_url=API)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=auth_app), base_url=ISSUER) as auth,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url=API) as api,
    ):
        yield Env(ts, clock, auth, api)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _refresh_cookie(response: httpx.Response) -> tuple[str, list[str]]:
    """The refresh cookie's value and its attributes, lower-cased."""
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE_NAME)]
    pair, *attributes = [part.strip() for part in header.split(";")]
    return pair.split("=", 1)[1].strip('"'), [a.lower() for a in attributes]


# -- the API ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_api_accepts_a_valid_token(env: Env) -> None:
    assert (await env.api.get("/api/health")).json() == {"ok": True}
    r = await env.api.get("/api/me", headers=_bearer(env.token()))
    assert r.status_code == 200
    body = r.json()
    assert body["sub"] == "alice" and body["client_id"] == CLIENT_ID
    assert body["scope"] == "openid read" and body["sid"] and body["jti"]


@pytest.mark.anyio
async def test_api_challenges_missing_wrong_and_expired_tokens(env: Env) -> None:
    r = await env.api.get("/api/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="example-api"'

    r = await env.api.get("/api/me", headers=_bearer(env.token(scope="openid")))
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]

    r = await env.api.get("/api/me", headers=_bearer(env.token(audience="other-api")))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]

    token = env.token()
    env.clock.advance(TTL)  # exp == now: expired, and the example API allows no leeway
    r = await env.api.get("/api/me", headers=_bearer(token))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


@pytest.mark.anyio
async def test_api_cors_is_for_the_spa_origin_without_credentials(env: Env) -> None:
    preflight = {
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
    }
    r = await env.api.options("/api/me", headers={"origin": ORIGIN, **preflight})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in r.headers

    r = await env.api.options("/api/me", headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in r.headers

    # A 401 is readable by the SPA (status and challenge), so it knows to refresh.
    r = await env.api.get("/api/me", headers={"origin": ORIGIN})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "www-authenticate" in r.headers["access-control-expose-headers"].lower()


# -- the auth server: static SPA, config, demo login, refresh, logout ---------------------------


@pytest.mark.anyio
async def test_serves_the_spa_and_its_config(env: Env) -> None:
    r = await env.auth.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "demo" in r.text and 'src="app.js"' in r.text
    r = await env.auth.get("/app.js")
    assert r.status_code == 200 and "x-tokensmith-csrf" in r.text
    assert (await env.auth.get("/demo/config")).json() == {"client_id": CLIENT_ID, "api": API}
    # tokensmith's own routes still win over the static catch-all.
    assert "keys" in (await env.auth.get("/.well-known/jwks.json")).json()
    assert (await env.auth.get("/auth_server.py")).status_code == 404


@pytest.mark.anyio
async def test_demo_login_sets_the_cookie_and_returns_no_refresh_token(env: Env) -> None:
    r = await env.auth.post("/demo/login", data={"username": "alice"}, headers=BROWSER)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert "refresh_token" not in body and body["expires_in"] == TTL
    assert body["scope"] == "openid read" and body["id_token"]
    refresh_token, attributes = _refresh_cookie(r)
    assert refresh_token.startswith("tsr_")
    assert {"httponly", "secure", "path=/", "samesite=strict"} <= set(attributes)
    assert not any(a.startswith("domain") for a in attributes)
    claims = env.ts.verify_access_token(body["access_token"], audience=AUDIENCE)
    assert claims["sub"] == "alice" and claims["client_id"] == CLIENT_ID
    # ...and the example API accepts it.
    me = await env.api.get("/api/me", headers=_bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["sid"] == claims["sid"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "form", "status"),
    [
        ({CSRF_HEADER: "1"}, {"username": "alice"}, 403),  # no Origin
        ({"origin": "https://evil.example", CSRF_HEADER: "1"}, {"username": "alice"}, 403),
        ({"origin": ORIGIN}, {"username": "alice"}, 403),  # no CSRF header
        (BROWSER, {"username": ""}, 400),
        (BROWSER, {"username": "a b"}, 400),
        (BROWSER, {}, 400),
    ],
)
async def test_demo_login_refusals(
    env: Env, headers: dict[str, str], form: dict[str, str], status: int
) -> None:
    r = await env.auth.post("/demo/login", data=form, headers=headers)
    assert r.status_code == status
    assert "set-cookie" not in r.headers


@pytest.mark.anyio
async def test_cookie_refresh_then_logout(env: Env) -> None:
    login = await env.auth.post("/demo/login", data={"username": "bob"}, headers=BROWSER)
    first, _ = _refresh_cookie(login)
    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID}

    r = await env.auth.post(
        "/token", data=form, headers={**BROWSER, "cookie": f"{COOKIE_NAME}={first}"}
    )
    assert r.status_code == 200 and "refresh_token" not in r.json()
    second, _ = _refresh_cookie(r)
    assert second != first
    assert env.ts.verify_access_token(r.json()["access_token"], audience=AUDIENCE)["sub"] == "bob"

    r = await env.auth.post(
        "/logout",
        data={"client_id": CLIENT_ID},
        headers={**BROWSER, "cookie": f"{COOKIE_NAME}={second}"},
    )
    assert r.status_code == 204
    cleared, attributes = _refresh_cookie(r)
    assert cleared == "" and "max-age=0" in attributes

    r = await env.auth.post(
        "/token", data=form, headers={**BROWSER, "cookie": f"{COOKIE_NAME}={second}"}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


# -- the runner ---------------------------------------------------------------------------------


def test_runner_is_loopback_only(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    with pytest.raises(ValueError, match="loopback"):
        build(host="0.0.0.0", data_dir=tmp_path)


def test_runner_builds_both_apps(tmp_path: Path) -> None:
    ex = build(auth_port=18000, api_port=18001, data_dir=tmp_path, access_token_ttl=5)
    assert ex.auth_url == "http://127.0.0.1:18000" and ex.api_url == "http://127.0.0.1:18001"
    client = ex.ts.clients.get_client(CLIENT_ID)
    assert client is not None and client.cookie_mode and not client.confidential
    assert client.allowed_origins == (ex.auth_url,)
    assert ex.ts.settings.access_token_ttl == 5
    assert ex.ts.jwks()["keys"]


def test_runner_port_zero_is_a_free_port() -> None:
    with listen("127.0.0.1", 0, "--auth-port") as sock:
        assert sock.getsockname()[1] > 0


def test_runner_names_a_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--auth-port", str(port), "--api-port", "0", "--data-dir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: 127.0.0.1:{port} is not available (Address already in use): "
        "pass --auth-port PORT, or 0 for a free one"
    ]
