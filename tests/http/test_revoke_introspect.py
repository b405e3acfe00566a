"""``POST /revoke`` (RFC 7009; SECURITY H2) and ``POST /introspect`` (RFC 7662; H3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_tokensmith
from tests.http.conftest import ISSUER, Env
from tokensmith import InvalidGrant, InvalidToken
from tokensmith.settings import MAX_LEEWAY

pytestmark = pytest.mark.anyio


async def _revoke(env: Env, token: str, client_id: str = "spa", **extra: str) -> int:
    r = await env.http.post("/revoke", data={"token": token, "client_id": client_id, **extra})
    assert r.headers["cache-control"] == "no-store"
    return r.status_code


async def _introspect(env: Env, token: str, client_id: str = "rs") -> dict[str, object]:
    r = await env.http.post("/introspect", data={"token": token}, headers=env.basic(client_id))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    return r.json()  # type: ignore[no-any-return]


async def test_garbage_and_unknown_tokens_get_200(env: Env) -> None:
    for token in ("garbage", "tsr_" + "A" * 47, "a.b.c", "x" * 5000):
        assert await _revoke(env, token) == 200


async def test_revoking_a_refresh_token_revokes_its_family_and_access_tokens(env: Env) -> None:
    login = env.login()
    assert await _revoke(env, login["refresh_token"], token_type_hint="refresh_token") == 200
    with pytest.raises(InvalidGrant):
        env.ts.refresh(login["refresh_token"], client_id="spa")
    with pytest.raises(InvalidToken):
        env.ts.verify_access_token(login["access_token"], audience="api")


async def test_a_wrong_hint_is_ignored_and_the_token_still_found(env: Env) -> None:
    login = env.login()
    assert await _revoke(env, login["refresh_token"], token_type_hint="access_token") == 200
    with pytest.raises(InvalidGrant):
        env.ts.refresh(login["refresh_token"], client_id="spa")
    other = env.login()
    assert await _revoke(env, other["access_token"], token_type_hint="bogus") == 200
    with pytest.raises(InvalidToken):
        env.ts.verify_access_token(other["access_token"], audience="api")


async def test_another_clients_tokens_are_not_revoked(env: Env) -> None:
    """We answer 200 either way: an error would tell the caller the token exists (§2.2)."""
    login = env.login("backend")
    assert await _revoke(env, login["refresh_token"], client_id="spa") == 200
    assert await _revoke(env, login["access_token"], client_id="spa") == 200
    assert env.ts.verify_access_token(login["access_token"], audience="api")
    assert env.ts.refresh(login["refresh_token"], client_id="backend").access_token


async def test_revocation_needs_client_authentication(env: Env) -> None:
    r = await env.http.post("/revoke", data={"token": "x"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await env.http.post("/revoke", data={"client_id": "spa"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_introspection_needs_a_confidential_client(env: Env) -> None:
    r = await env.http.post("/introspect", data={"token": "x"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await env.http.post("/introspect", data={"token": "x", "client_id": "spa"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_an_active_access_token_is_described(env: Env) -> None:
    body = await _introspect(env, env.login()["access_token"])
    assert body["active"] is True and body["sub"] == "alice" and body["client_id"] == "spa"
    assert (
        body["token_type"] == "Bearer" and body["aud"] == "api" and body["scope"] == "openid read"
    )


async def test_an_active_refresh_token_is_described(env: Env) -> None:
    body = await _introspect(env, env.login()["refresh_token"])
    assert body["active"] is True and body["token_type"] == "refresh_token"
    assert body["sub"] == "alice" and body["client_id"] == "spa"


async def test_inactive_tokens_get_exactly_active_false(env: Env) -> None:
    expired, revoked, consumed = env.login(), env.login(), env.login()
    env.ts.refresh(consumed["refresh_token"], client_id="spa")
    claims = env.ts.verify_access_token(revoked["access_token"], audience="api")
    env.ts.revoke_access_token(claims["jti"], claims["exp"])
    cases = [
        consumed["refresh_token"],
        revoked["access_token"],
        "garbage",
        "tsr_" + "A" * 47,
        env.login()["access_token"] + "==",
        env.ts.issue(subject="bob", client_id="spa", scope="openid").id_token or "",
    ]
    for token in cases:
        assert await _introspect(env, token) == {"active": False}, token
    env.clock.advance(301 + env.ts.settings.leeway)
    assert await _introspect(env, expired["access_token"]) == {"active": False}


async def test_a_revoked_access_token_stays_revoked_while_the_leeway_would_accept_it(
    env: Env, tmp_path: Path
) -> None:
    """SECURITY B4 (issue #11 item 4): 10 s after ``exp`` the leeway (60 s) still accepts
    the token, so its denylist row must still be loaded, and survive cleanup, until
    ``exp`` + MAX_LEEWAY; introspection calls it inactive either way."""
    login = env.login()
    assert await _revoke(env, login["access_token"]) == 200
    exp = env.ts.verify_access_token(login["access_token"], audience="api", check_revoked=False)[
        "exp"
    ]
    env.clock.set(exp + 10)
    assert env.ts.settings.leeway == 60
    assert env.ts.verify_access_token(login["access_token"], audience="api", check_revoked=False)
    env.ts.cleanup()
    another_process = make_tokensmith(tmp_path, env.clock, issuer=ISSUER)
    for ts in (env.ts, another_process):  # env.ts reloads its cache: 10 s > its 5 s ttl
        with pytest.raises(InvalidToken, match="revoked"):
            ts.verify_access_token(login["access_token"], audience="api")
    assert await _introspect(env, login["access_token"]) == {"active": False}
    env.clock.set(exp + MAX_LEEWAY)
    assert env.ts.cleanup() >= 1  # now it can verify nowhere, so its row goes


@pytest.mark.parametrize(
    ("offset", "active"),
    [(-1, True), (0, False), (1, False)],
    ids=["a second before exp", "at exp", "a second after exp"],
)
async def test_introspection_allows_no_leeway_after_exp(
    env: Env, offset: int, active: bool
) -> None:
    """RFC 7662 §2.2: "active" means valid now; the verifier's leeway would still accept."""
    token = env.login()["access_token"]
    exp = env.ts.verify_access_token(token, audience="api")["exp"]
    env.clock.set(exp + offset)
    assert env.ts.verify_access_token(token, audience="api")
    assert (await _introspect(env, token))["active"] is active


async def test_introspection_allows_no_leeway_before_nbf(env: Env) -> None:
    token = env.login()["access_token"]
    nbf = env.ts.verify_access_token(token, audience="api")["nbf"]
    env.clock.set(nbf - 1)
    assert env.ts.verify_access_token(token, audience="api")
    assert await _introspect(env, token) == {"active": False}
    env.clock.set(nbf)
    assert (await _introspect(env, token))["active"] is True


async def test_a_refresh_token_is_inactive_from_its_expiry_on(env: Env) -> None:
    token = env.login()["refresh_token"]
    body = await _introspect(env, token)
    env.clock.set(body["exp"] - 1)  # type: ignore[operator]
    assert (await _introspect(env, token))["active"] is True
    env.clock.set(body["exp"])  # type: ignore[arg-type]
    assert await _introspect(env, token) == {"active": False}
