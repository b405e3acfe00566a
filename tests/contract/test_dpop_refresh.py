"""DPoP at the token endpoint over real HTTP, on the memory store, SQLite and PostgreSQL
(RFC 9449 §5; SECURITY D1, D2): the family's first proof binds its refresh tokens,
a missing or other key changes nothing, a grace retry by another key is reuse, clients
registered ``dpop_bound_access_tokens`` must send proofs, a proof is accepted once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.http import create_app

from ..dpop_helpers import DPoPKey, claims_of
from .conftest import Store

ISSUER = "https://as.example.com"
TOKEN_URL = f"{ISSUER}/token"
T0 = 1_800_000_000
GRACE = 10


@dataclass
class Env:
    ts: Tokensmith
    clock: ManualClock
    http: httpx.AsyncClient
    secret: str

    def login(self, client_id: str = "spa", jkt: str | None = None) -> str:
        t = self.ts.issue(subject="alice", client_id=client_id, scope="read", dpop_jkt=jkt)
        assert t.refresh_token is not None
        return t.refresh_token

    async def refresh(
        self, token: str, key: DPoPKey | None = None, client_id: str = "spa", **proof: object
    ) -> httpx.Response:
        headers = {}
        if key is not None:
            headers["DPoP"] = key.proof(TOKEN_URL, iat=self.clock.now(), **proof)  # type: ignore[arg-type]
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
        return await self.http.post("/token", data=form, headers=headers)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _tokensmith(store: Store, tmp_path: Path, clock: ManualClock, **settings: object) -> Tokensmith:
    ts = Tokensmith(
        Settings(
            issuer=ISSUER,
            keys_dir=str(tmp_path / "keys"),
            refresh_reuse_grace=GRACE,
            refresh_secret="dpop-tests-" + "s" * 32,
            **settings,  # type: ignore[arg-type]
        ),
        clock=clock,
        refresh_store=store,
    )
    ts.keys.ensure_active()
    return ts


async def _env(ts: Tokensmith, clock: ManualClock) -> AsyncIterator[Env]:
    ts.register_client("spa", confidential=False)
    ts.register_client("bound", confidential=False, dpop_bound_access_tokens=True)
    _, secret = ts.register_client(
        "backend", confidential=True, grant_types=("client_credentials",), scopes=("read",)
    )
    assert secret is not None
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Env(ts, clock, http, secret)


@pytest.fixture
async def env(store: Store, tmp_path: Path) -> AsyncIterator[Env]:
    clock = ManualClock(T0)
    async for e in _env(_tokensmith(store, tmp_path, clock), clock):
        yield e


@pytest.fixture
async def nonce_env(store: Store, tmp_path: Path) -> AsyncIterator[Env]:
    clock = ManualClock(T0)
    async for e in _env(_tokensmith(store, tmp_path, clock, dpop_nonces=True), clock):
        yield e


def _error(r: httpx.Response) -> str:
    error: str = r.json()["error"]
    return error


@pytest.mark.anyio
async def test_the_first_proof_binds_the_family_and_every_access_token(env: Env) -> None:
    key = DPoPKey()
    r = await env.refresh(env.login(), key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}
    env.clock.advance(GRACE + 1)
    r = await env.refresh(body["refresh_token"], key)
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}


@pytest.mark.anyio
async def test_a_bound_refresh_token_without_a_proof_or_with_another_key_changes_nothing(
    env: Env,
) -> None:
    key = DPoPKey()
    bound = (await env.refresh(env.login(), key)).json()["refresh_token"]
    env.clock.advance(GRACE + 1)
    r = await env.refresh(bound)
    assert (r.status_code, _error(r)) == (400, "invalid_grant")
    r = await env.refresh(bound, DPoPKey())
    assert (r.status_code, _error(r)) == (400, "invalid_dpop_proof")
    r = await env.refresh(bound, DPoPKey("Ed25519"))
    assert (r.status_code, _error(r)) == (400, "invalid_dpop_proof")
    # Nothing changed: the token is still the family's one live token, for its own key.
    r = await env.refresh(bound, key)
    assert r.status_code == 200, r.text


@pytest.mark.anyio
async def test_a_grace_retry_by_the_same_key_gets_the_same_child(env: Env) -> None:
    key = DPoPKey()
    first = env.login()
    child = (await env.refresh(first, key)).json()["refresh_token"]
    r = await env.refresh(first, key)
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] == child


@pytest.mark.anyio
@pytest.mark.parametrize("other", ["another key", "no proof"])
async def test_a_grace_retry_by_another_key_is_reuse_and_revokes_the_family(
    env: Env, other: str
) -> None:
    key = DPoPKey()
    first = env.login()
    child = (await env.refresh(first, key)).json()["refresh_token"]
    r = await env.refresh(first, DPoPKey() if other == "another key" else None)
    assert (r.status_code, _error(r)) == (400, "invalid_grant")
    # Reuse: the family is revoked, so the legitimate child is refused too.
    r = await env.refresh(child, key)
    assert (r.status_code, _error(r)) == (400, "invalid_grant")
    assert "revoked" in r.json()["error_description"]


@pytest.mark.anyio
async def test_a_dpop_bound_client_must_send_a_proof(env: Env) -> None:
    key = DPoPKey()
    token = env.login("bound", jkt=key.jkt)
    r = await env.refresh(token, client_id="bound")
    assert (r.status_code, _error(r)) == (400, "invalid_dpop_proof")
    r = await env.refresh(token, key, client_id="bound")
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}


@pytest.mark.anyio
async def test_a_login_bound_by_dpop_jkt_needs_that_key(env: Env) -> None:
    key = DPoPKey()
    token = env.login(jkt=key.jkt)
    r = await env.refresh(token, DPoPKey())
    assert (r.status_code, _error(r)) == (400, "invalid_dpop_proof")
    assert (await env.refresh(token, key)).status_code == 200


@pytest.mark.anyio
async def test_a_proof_is_accepted_once(env: Env) -> None:
    key = DPoPKey()
    proof = key.proof(TOKEN_URL, iat=env.clock.now())
    form = {"grant_type": "refresh_token", "client_id": "spa"}
    r = await env.http.post(
        "/token", data={**form, "refresh_token": env.login()}, headers={"DPoP": proof}
    )
    assert r.status_code == 200, r.text
    r = await env.http.post(
        "/token", data={**form, "refresh_token": env.login()}, headers={"DPoP": proof}
    )
    assert (r.status_code, _error(r)) == (400, "invalid_dpop_proof")


@pytest.mark.anyio
async def test_client_credentials_with_a_proof_is_dpop_bound(env: Env) -> None:
    key = DPoPKey()
    r = await env.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=("backend", env.secret),
        headers={"DPoP": key.proof(TOKEN_URL, iat=env.clock.now())},
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    assert claims_of(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}
    introspected = env.ts.introspect(r.json()["access_token"])
    assert introspected["cnf"] == {"jkt": key.jkt}
    assert introspected["token_type"] == "DPoP"


@pytest.mark.anyio
async def test_server_nonces_are_asked_for_then_accepted(nonce_env: Env) -> None:
    env = nonce_env
    key = DPoPKey()
    token = env.login()
    r = await env.refresh(token, key)
    assert (r.status_code, _error(r)) == (400, "use_dpop_nonce")
    nonce = r.headers["DPoP-Nonce"]
    r = await env.refresh(token, key, nonce=nonce)
    assert r.status_code == 200, r.text
    assert r.headers["DPoP-Nonce"]
    env.clock.advance(GRACE + 1)
    r = await env.refresh(r.json()["refresh_token"], key, nonce="A" * 32)
    assert (r.status_code, _error(r)) == (400, "use_dpop_nonce")
