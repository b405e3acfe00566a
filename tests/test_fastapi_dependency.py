"""``tokensmith.http.fastapi.require_token``: the FastAPI face of ``BearerGuard``, with the
same RFC 6750 §3 statuses and challenges as the middleware, through real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jose_helpers import ISSUER, NOW, make_keys
from tests.jwks_server import JWKS_URL, JwksServer
from tokensmith import ManualClock
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.http.resource import BearerGuard
from tokensmith.keys import KeyManager
from tokensmith.tokens import AccessTokenClaims, mint_access_token

fastapi = pytest.importorskip("fastapi")

from tokensmith.http.fastapi import require_token  # noqa: E402

API = "https://api.example.com"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def keys(tmp_path: Path) -> KeyManager:
    return make_keys(tmp_path / "keys", ManualClock(NOW))


@pytest.fixture
def app(keys: KeyManager) -> Any:
    clock = ManualClock(NOW)
    remote = RemoteJwks(JWKS_URL, clock=clock, client=JwksServer(keys.jwks()).client())
    guard = BearerGuard(keys=remote, issuer=ISSUER, clock=clock, audience="api")
    app = fastapi.FastAPI()
    read = fastapi.Depends(require_token(guard=guard, scopes=["read"]))
    write = fastapi.Depends(require_token(guard=guard, scopes=["write"]))

    @app.get("/items")
    async def items(claims: dict[str, Any] = read) -> dict[str, Any]:
        return {"sub": claims["sub"]}

    @app.post("/items")
    async def create(claims: dict[str, Any] = write) -> dict[str, Any]:
        return {"created_by": claims["sub"]}

    @app.get("/whoami")
    async def whoami(request: fastapi.Request, claims: dict[str, Any] = read) -> dict[str, Any]:
        return {"same": request.state.token_claims is claims}

    return app


def mint(keys: KeyManager, scope: str = "read") -> str:
    claims = AccessTokenClaims("alice", "spa", "api", scope, NOW, NOW + 300, "jti-1", "sid-1")
    return mint_access_token(keys.signer(), ISSUER, claims)


async def request(app: Any, method: str, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API) as c:
        return await c.request(method, path, headers=headers)


@pytest.mark.anyio
async def test_the_dependency_returns_the_claims(app: Any, keys: KeyManager) -> None:
    r = await request(app, "GET", "/items", Authorization=f"Bearer {mint(keys)}")
    assert r.status_code == 200 and r.json() == {"sub": "alice"}
    r = await request(app, "GET", "/whoami", Authorization=f"Bearer {mint(keys)}")
    assert r.json() == {"same": True}


@pytest.mark.anyio
async def test_no_token_is_401_with_a_bare_challenge(app: Any) -> None:
    r = await request(app, "GET", "/items")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'


@pytest.mark.anyio
async def test_a_bad_token_is_401_invalid_token(app: Any, keys: KeyManager) -> None:
    token = mint(keys)[:-4] + "AAAA"
    r = await request(app, "GET", "/items", Authorization=f"Bearer {token}")
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


@pytest.mark.anyio
async def test_a_malformed_header_is_400_invalid_request(app: Any) -> None:
    r = await request(app, "GET", "/items", Authorization="Bearer a b")
    assert r.status_code == 400
    assert 'error="invalid_request"' in r.headers["www-authenticate"]


@pytest.mark.anyio
async def test_routes_sharing_a_guard_can_need_different_scopes(app: Any, keys: KeyManager) -> None:
    token = mint(keys, scope="read")
    r = await request(app, "POST", "/items", Authorization=f"Bearer {token}")
    assert r.status_code == 403
    challenge = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="write"' in challenge
    r = await request(app, "POST", "/items", Authorization=f"Bearer {mint(keys, 'read write')}")
    assert r.status_code == 200 and r.json() == {"created_by": "alice"}


def test_guard_and_guard_options_do_not_mix(keys: KeyManager) -> None:
    guard = BearerGuard(keys=keys, issuer=ISSUER, audience="api")
    with pytest.raises(TypeError):
        require_token(guard=guard, audience="other")


@pytest.mark.anyio
async def test_options_build_a_guard_with_its_scopes(keys: KeyManager) -> None:
    app = fastapi.FastAPI()
    options: dict[str, Any] = {"keys": keys, "issuer": ISSUER, "clock": ManualClock(NOW)}
    dep = fastapi.Depends(require_token(audience="api", scopes=["x"], **options))

    @app.get("/x")
    async def x(claims: dict[str, Any] = dep) -> dict[str, Any]:
        return {"ok": True}

    r = await request(app, "GET", "/x", Authorization=f"Bearer {mint(keys, 'x')}")
    assert r.status_code == 200
    r = await request(app, "GET", "/x", Authorization=f"Bearer {mint(keys, 'y')}")
    assert r.status_code == 403


def test_routes_declare_the_bearer_scheme_for_swagger_ui(app: Any) -> None:
    """Swagger UI shows its Authorize button for a scheme the OpenAPI document declares."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        document = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    assert document == app.openapi()
    schemes = document["components"]["securitySchemes"]
    assert [s["type"] for s in schemes.values()] == ["http"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    (name,) = schemes
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["security"] == [{name: []}], (path, method)
