"""DPoP at resource servers (RFC 9449 §7; SECURITY D2): ``BearerAuthMiddleware`` and the
FastAPI dependency over a local ``Tokensmith`` on SQLite, through real HTTP
(``httpx.ASGITransport``), with proofs made by joserfc."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokensmith import ManualClock, Tokensmith
from tokensmith.dpop import Nonces, ProofVerifier
from tokensmith.http.resource import BearerAuthMiddleware, BearerGuard

from .conftest import make_tokensmith
from .dpop_helpers import DPoPKey

API = "https://api.example.com"
T0 = 1_800_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ts(tmp_path: Path, clock: ManualClock) -> Tokensmith:
    return make_tokensmith(tmp_path, clock)


async def items(request: Request) -> JSONResponse:
    return JSONResponse(request.state.token_claims)


def middleware_app(guard: BearerGuard) -> Starlette:
    return Starlette(
        routes=[Route("/items", items, methods=["GET", "POST"])],
        middleware=[Middleware(BearerAuthMiddleware, guard=guard)],
    )


def fastapi_app(guard: BearerGuard) -> Any:
    from fastapi import Depends, FastAPI

    from tokensmith.http.fastapi import require_token

    app = FastAPI()

    @app.api_route("/items", methods=["GET", "POST"])
    def read(claims: dict[str, Any] = Depends(require_token(guard=guard))) -> dict[str, Any]:  # noqa: B008
        return claims

    return app


APPS: dict[str, Callable[[BearerGuard], Any]] = {
    "middleware": middleware_app,
    "fastapi": fastapi_app,
}


@pytest.fixture(params=sorted(APPS))
def make_app(request: pytest.FixtureRequest) -> Callable[[BearerGuard], Any]:
    return APPS[request.param]


Call = Callable[..., Awaitable[httpx.Response]]


async def send(
    app: Any, method: str = "GET", path: str = "/items", **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API) as c:
        return await c.request(method, path, headers=headers)


def bound_token(ts: Tokensmith, key: DPoPKey) -> str:
    return ts.issue(subject="alice", client_id="spa", audience="api", dpop_jkt=key.jkt).access_token


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey()


@pytest.fixture
def token(ts: Tokensmith, key: DPoPKey) -> str:
    """An access token bound to ``key``."""
    return bound_token(ts, key)


@pytest.mark.anyio
async def test_a_bound_token_with_its_proof_is_accepted(
    ts: Tokensmith,
    clock: ManualClock,
    key: DPoPKey,
    token: str,
    make_app: Callable[[BearerGuard], Any],
) -> None:
    app = make_app(BearerGuard(audience="api", tokensmith=ts))
    proof = key.proof(f"{API}/items", htm="GET", iat=clock.now(), access_token=token)
    r = await send(app, "GET", "/items?page=2", Authorization=f"DPoP {token}", DPoP=proof)
    assert r.status_code == 200, r.text
    assert r.json()["cnf"] == {"jkt": key.jkt}


def _challenge(r: httpx.Response) -> str:
    value: str = r.headers["www-authenticate"]
    return value


@pytest.mark.anyio
@pytest.mark.parametrize(
    "case",
    ["as Bearer", "no proof", "wrong htm", "wrong htu", "wrong ath", "other key", "replayed"],
)
async def test_a_bound_token_without_its_proof_is_refused(
    ts: Tokensmith,
    clock: ManualClock,
    key: DPoPKey,
    token: str,
    make_app: Callable[[BearerGuard], Any],
    case: str,
) -> None:
    app = make_app(BearerGuard(audience="api", tokensmith=ts))
    url = f"{API}/items"
    proofs = {
        "no proof": None,
        "wrong htm": key.proof(url, htm="POST", iat=clock.now(), access_token=token),
        "wrong htu": key.proof(f"{API}/other", htm="GET", iat=clock.now(), access_token=token),
        "wrong ath": key.proof(url, htm="GET", iat=clock.now(), access_token=token + "x"),
        "other key": DPoPKey().proof(url, htm="GET", iat=clock.now(), access_token=token),
        "replayed": key.proof(url, htm="GET", iat=clock.now(), access_token=token),
        "as Bearer": key.proof(url, htm="GET", iat=clock.now(), access_token=token),
    }
    headers = {"Authorization": f"{'Bearer' if case == 'as Bearer' else 'DPoP'} {token}"}
    proof = proofs[case]
    if proof is not None:
        headers["DPoP"] = proof
    if case == "replayed":
        assert (await send(app, **headers)).status_code == 200
    r = await send(app, **headers)
    assert r.status_code == 401
    assert _challenge(r).startswith("DPoP ")
    assert 'algs="ES256 ES384 EdDSA PS256 RS256"' in _challenge(r)
    expected = "invalid_token" if case == "as Bearer" else "invalid_dpop_proof"
    assert f'error="{expected}"' in _challenge(r)


@pytest.mark.anyio
async def test_an_unbound_token_is_still_a_bearer_token(
    ts: Tokensmith, make_app: Callable[[BearerGuard], Any]
) -> None:
    token = ts.issue(subject="alice", client_id="spa", audience="api").access_token
    app = make_app(BearerGuard(audience="api", tokensmith=ts))
    assert (await send(app, Authorization=f"Bearer {token}")).status_code == 200
    r = await send(app, Authorization=f"DPoP {token}")
    assert r.status_code == 401 and _challenge(r).startswith("DPoP ")


@pytest.mark.anyio
async def test_resource_server_nonces(
    ts: Tokensmith,
    clock: ManualClock,
    key: DPoPKey,
    token: str,
    make_app: Callable[[BearerGuard], Any],
) -> None:
    verifier = ProofVerifier(clock=clock, nonces=Nonces(b"k" * 32, clock=clock))
    app = make_app(BearerGuard(audience="api", tokensmith=ts, dpop=verifier))
    url = f"{API}/items"
    auth = {"Authorization": f"DPoP {token}"}
    r = await send(app, **auth, DPoP=key.proof(url, htm="GET", iat=clock.now(), access_token=token))
    assert r.status_code == 401
    assert 'error="use_dpop_nonce"' in _challenge(r)
    nonce = r.headers["DPoP-Nonce"]
    proof = key.proof(url, htm="GET", iat=clock.now(), access_token=token, nonce=nonce)
    assert (await send(app, **auth, DPoP=proof)).status_code == 200


@pytest.mark.anyio
async def test_behind_a_proxy_htu_is_the_public_url(
    ts: Tokensmith,
    clock: ManualClock,
    key: DPoPKey,
    token: str,
    make_app: Callable[[BearerGuard], Any],
) -> None:
    public = "https://public.example.org/api"
    app = make_app(BearerGuard(audience="api", tokensmith=ts, public_base_url=public))
    proof = key.proof(f"{public}/items", htm="GET", iat=clock.now(), access_token=token)
    r = await send(app, Authorization=f"DPoP {token}", DPoP=proof)
    assert r.status_code == 200, r.text


def two_routes(guard: BearerGuard) -> Starlette:
    return Starlette(
        routes=[Route("/a", items), Route("/b", items)],
        middleware=[Middleware(BearerAuthMiddleware, guard=guard)],
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/b", "api.example.com/a#"),  # the Host header would move the path to /a
        ("/b", "api.example.com/a?"),
        ("/b", "user@api.example.com/a#"),
        ("/a%23x", None),  # decoded, %23 would cut the path back to /a
        ("/a%3Fx", None),
    ],
)
async def test_a_proof_for_one_path_is_refused_on_another_whatever_the_host_says(
    ts: Tokensmith, clock: ManualClock, key: DPoPKey, token: str, path: str, host: str | None
) -> None:
    """Found by attacking a live server: the proof's ``htu`` was compared with a URL built
    from the Host header and the decoded path, so ``Host: api.example/a#`` let a proof for
    ``/a`` call ``/b``. The path is now the raw one and a malformed Host is ignored."""
    app = two_routes(BearerGuard(audience="api", tokensmith=ts))
    proof = key.proof(f"{API}/a", htm="GET", iat=clock.now(), access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    if host is not None:
        headers["Host"] = host
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API) as c:
        r = await c.get(path, headers=headers)
    assert r.status_code == 401, r.text
    assert 'error="invalid_dpop_proof"' in _challenge(r)
