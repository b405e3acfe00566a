"""``/.well-known/jwks.json`` and discovery, through real HTTP on the ASGI app."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.http import create_app
from tokensmith.tokens import AccessTokenClaims, mint_access_token

ISSUER = "https://as.example.com"


@pytest.fixture
def ts(tmp_path: Path) -> Tokensmith:
    t = Tokensmith(
        Settings(issuer=ISSUER, keys_dir=str(tmp_path / "keys"), jwks_max_age=600),
        clock=ManualClock(1_800_000_000),
    )
    t.keys.ensure_active()
    return t


def client(ts: Tokensmith) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ts)), base_url=ISSUER)


async def _get(ts: Tokensmith, path: str, **headers: str) -> httpx.Response:
    async with client(ts) as c:
        return await c.get(path, headers=headers)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_jwks_serves_pending_and_active_keys_with_cache_headers(ts: Tokensmith) -> None:
    r = await _get(ts, "/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/jwk-set+json")
    assert {k["kid"] for k in r.json()["keys"]} == {rec.kid for rec in ts.keys.records()}
    cache = r.headers["cache-control"]
    assert "public" in cache and "stale-if-error" in cache
    assert re.search(r"max-age=600\b", cache)
    assert r.headers["etag"]


@pytest.mark.anyio
async def test_jwks_answers_304_to_a_matching_etag(ts: Tokensmith) -> None:
    etag = (await _get(ts, "/.well-known/jwks.json")).headers["etag"]
    r = await _get(ts, "/.well-known/jwks.json", **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    ts.rotate_keys()
    r = await _get(ts, "/.well-known/jwks.json", **{"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["etag"] != etag


@pytest.mark.anyio
async def test_jwks_max_age_shrinks_before_a_scheduled_rotation(ts: Tokensmith) -> None:
    ts.clock.advance(ts.settings.key_rotation_period - 42)  # type: ignore[attr-defined]
    r = await _get(ts, "/.well-known/jwks.json")
    assert re.search(r"max-age=42\b", r.headers["cache-control"])


@pytest.mark.anyio
async def test_a_served_jwks_verifies_our_tokens_in_another_library(ts: Tokensmith) -> None:
    r = await _get(ts, "/.well-known/jwks.json")
    now = int(ts.clock.now())
    token = mint_access_token(
        ts.keys.signer(),
        ISSUER,
        AccessTokenClaims("alice", "spa", "api", "openid", now, now + 300, "jti-1", "sid-1"),
    )
    decoded = jose_jwt.decode(token, KeySet.import_key_set(r.json()), algorithms=["ES256"])
    assert decoded.claims["sub"] == "alice" and decoded.header["typ"] == "at+jwt"


@pytest.mark.anyio
async def test_discovery_names_the_endpoints_and_algorithms(ts: Tokensmith) -> None:
    body = (await _get(ts, "/.well-known/openid-configuration")).json()
    assert body["issuer"] == ISSUER
    assert body["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert body["token_endpoint"] == f"{ISSUER}/token"
    assert "ES256" in body["id_token_signing_alg_values_supported"]
    assert not any(
        a.startswith("HS") or a == "none" for a in body["id_token_signing_alg_values_supported"]
    )


@pytest.mark.anyio
async def test_a_middleware_editing_headers_does_not_leak_into_the_next_jwks_response(
    ts: Tokensmith,
) -> None:
    # The JWKS response object is shared between requests; a middleware may edit the header
    # list it is sent in place, so each request must get its own copy.
    inner = create_app(ts)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def edit(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-edited", b"1"))
            await send(message)

        await inner(scope, receive, edit)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as c:
        responses = [await c.get("/.well-known/jwks.json") for _ in range(3)]
    for r in responses:
        assert r.headers.get_list("x-edited") == ["1"]
        assert r.content == responses[0].content
