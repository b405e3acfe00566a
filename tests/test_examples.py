"""The examples without a browser: the API and the auth server over httpx's ASGITransport.

The browser run is ``test_example_browser.py``; this file checks the same pieces fast,
including the cases a browser run cannot easily show (scope, audience, CORS, the demo
login's Origin and CSRF checks).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from examples.fastapi_api.app import AUDIENCE, create_api
from examples.run import build, is_loopback, listen, main
from examples.spa.auth_server import CLIENT_ID, CLIENTS, create_auth_app, register_spa_client
from tests.dpop_helpers import DPoPKey
from tokensmith import ManualClock, Tokensmith
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER

from .conftest import make_tokensmith

ISSUER = "http://127.0.0.1:8000"
ORIGIN = ISSUER  # the SPA is served by the auth server
API = "http://127.0.0.1:8001"
ME = f"{API}/api/me"
TTL = 30
BROWSER = {"origin": ORIGIN, CSRF_HEADER: "1"}


@dataclass
class Env:
    ts: Tokensmith
    clock: ManualClock
    auth: httpx.AsyncClient
    api: httpx.AsyncClient
    key: DPoPKey = field(default_factory=DPoPKey)  # the page's DPoP key

    def token(self, scope: str = "openid read", audience: str = AUDIENCE) -> str:
        """An access token bound to the page's key, as the demo login issues it."""
        return self.ts.issue(
            subject="alice",
            client_id=CLIENT_ID,
            scope=scope,
            audience=audience,
            dpop_jkt=self.key.jkt,
        ).access_token

    def call(self, token: str) -> dict[str, str]:
        """The headers of an API call with ``token`` and a proof of the page's key."""
        return {
            "authorization": f"DPoP {token}",
            "dpop": self.key.proof(ME, htm="GET", access_token=token, iat=self.clock.now()),
        }

    def post(self, path: str) -> dict[str, str]:
        """The headers of the page's POST to the auth server's ``path``, with a proof."""
        return {**BROWSER, "dpop": self.key.proof(ISSUER + path, iat=self.clock.now())}


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


def _refresh_cookie(response: httpx.Response) -> tuple[str, list[str]]:
    """The refresh cookie's value and its attributes, lower-cased."""
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE_NAME)]
    pair, *attributes = [part.strip() for part in header.split(";")]
    return pair.split("=", 1)[1].strip('"'), [a.lower() for a in attributes]


# -- the API ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_api_accepts_a_valid_token(env: Env) -> None:
    assert (await env.api.get("/api/health")).json() == {"ok": True}
    r = await env.api.get("/api/me", headers=env.call(env.token()))
    assert r.status_code == 200
    body = r.json()
    assert body["sub"] == "alice" and body["client_id"] == CLIENT_ID
    assert body["scope"] == "openid read" and body["sid"] and body["jti"]
    assert body["jkt"] == env.key.jkt


@pytest.mark.anyio
async def test_api_refuses_a_bound_token_without_its_key(env: Env) -> None:
    token = env.token()
    thief = DPoPKey()
    for headers in (
        {"authorization": f"Bearer {token}"},  # RFC 9449 §7.2: not as a bearer token
        {"authorization": f"DPoP {token}"},  # no proof
        {
            "authorization": f"DPoP {token}",
            "dpop": thief.proof(ME, htm="GET", access_token=token, iat=env.clock.now()),
        },
    ):
        r = await env.api.get("/api/me", headers=headers)
        assert r.status_code == 401, headers
        assert "www-authenticate" in r.headers


@pytest.mark.anyio
async def test_api_challenges_missing_wrong_and_expired_tokens(env: Env) -> None:
    r = await env.api.get("/api/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="example-api"'

    r = await env.api.get("/api/me", headers=env.call(env.token(scope="openid")))
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]

    r = await env.api.get("/api/me", headers=env.call(env.token(audience="other-api")))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]

    token = env.token()
    env.clock.advance(TTL)  # exp == now: expired, and the example API allows no leeway
    r = await env.api.get("/api/me", headers=env.call(token))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


@pytest.mark.anyio
async def test_api_cors_is_for_the_spa_origin_without_credentials(env: Env) -> None:
    preflight = {
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization, dpop",
    }
    r = await env.api.options("/api/me", headers={"origin": ORIGIN, **preflight})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "dpop" in allowed
    assert "access-control-allow-credentials" not in r.headers

    r = await env.api.options("/api/me", headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in r.headers

    # A 401 is readable by the SPA (status and challenge), so it knows to refresh.
    r = await env.api.get("/api/me", headers={"origin": ORIGIN})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == ORIGIN
    exposed = r.headers["access-control-expose-headers"].lower()
    assert "www-authenticate" in exposed and "dpop-nonce" in exposed


# -- the auth server: static SPA, config, demo login, refresh, logout ---------------------------


@pytest.mark.anyio
async def test_serves_the_spa_and_its_config(env: Env) -> None:
    r = await env.auth.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "demo" in r.text and 'src="app.js"' in r.text
    r = await env.auth.get("/app.js")
    assert r.status_code == 200 and "x-tokensmith-csrf" in r.text
    r = await env.auth.get("/dpop.js")
    assert r.status_code == 200 and "dpop+jwt" in r.text
    for mode, client_id in CLIENTS.items():
        config = (await env.auth.get("/demo/config", params={"mode": mode})).json()
        assert config == {"client_id": client_id, "mode": mode, "api": API}
    assert (await env.auth.get("/demo/config")).json()["client_id"] == CLIENT_ID
    assert (await env.auth.get("/demo/config", params={"mode": "x"})).status_code == 400
    # tokensmith's own routes still win over the static catch-all.
    assert "keys" in (await env.auth.get("/.well-known/jwks.json")).json()
    assert (await env.auth.get("/auth_server.py")).status_code == 404


@pytest.mark.anyio
async def test_demo_login_sets_the_cookie_and_returns_no_refresh_token(env: Env) -> None:
    r = await env.auth.post(
        "/demo/login", data={"username": "alice"}, headers=env.post("/demo/login")
    )
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
    assert claims["cnf"] == {"jkt": env.key.jkt}  # bound to the page's key
    # ...and the example API accepts it with a proof of that key.
    me = await env.api.get("/api/me", headers=env.call(body["access_token"]))
    assert me.status_code == 200 and me.json()["sid"] == claims["sid"]


@pytest.mark.anyio
async def test_demo_login_in_body_mode_returns_the_refresh_token(env: Env) -> None:
    r = await env.auth.post(
        "/demo/login", data={"username": "alice", "mode": "body"}, headers=env.post("/demo/login")
    )
    assert r.status_code == 200 and "set-cookie" not in r.headers
    body = r.json()
    assert body["refresh_token"].startswith("tsr_")
    claims = env.ts.verify_access_token(body["access_token"], audience=AUDIENCE)
    assert claims["client_id"] == CLIENTS["body"]
    assert claims["cnf"] == {"jkt": env.key.jkt}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", list(CLIENTS))
async def test_demo_login_needs_a_proof_of_the_pages_key(env: Env, mode: str) -> None:
    """Without a proof the session would not be bound to a key: no session at all."""
    r = await env.auth.post(
        "/demo/login", data={"username": "alice", "mode": mode}, headers=BROWSER
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof"
    assert "set-cookie" not in r.headers
    elsewhere = env.key.proof(ISSUER + "/token", iat=env.clock.now())  # wrong htu
    r = await env.auth.post(
        "/demo/login",
        data={"username": "alice", "mode": mode},
        headers={**BROWSER, "dpop": elsewhere},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof"


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
        (BROWSER, {"username": "alice", "mode": "x"}, 400),
    ],
)
async def test_demo_login_refusals(
    env: Env, headers: dict[str, str], form: dict[str, str], status: int
) -> None:
    dpop = {"dpop": env.key.proof(ISSUER + "/demo/login", iat=env.clock.now())}
    r = await env.auth.post("/demo/login", data=form, headers={**headers, **dpop})
    assert r.status_code == status
    assert "set-cookie" not in r.headers


@pytest.mark.anyio
async def test_cookie_refresh_then_logout(env: Env) -> None:
    login = await env.auth.post(
        "/demo/login", data={"username": "bob"}, headers=env.post("/demo/login")
    )
    first, _ = _refresh_cookie(login)
    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID}

    r = await env.auth.post(
        "/token", data=form, headers={**env.post("/token"), "cookie": f"{COOKIE_NAME}={first}"}
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
        "/token", data=form, headers={**env.post("/token"), "cookie": f"{COOKIE_NAME}={second}"}
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
    for mode, client_id in CLIENTS.items():
        client = ex.ts.clients.get_client(client_id)
        assert client is not None and not client.confidential
        assert client.cookie_mode is (mode == "cookie") and client.dpop_bound_access_tokens
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
