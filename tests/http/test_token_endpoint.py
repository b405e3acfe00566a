"""``POST /token`` (RFC 6749 §6, §4.4, §5.2; SECURITY H1)."""

from __future__ import annotations

import pytest

from tests.http.conftest import Env

pytestmark = pytest.mark.anyio


def _assert_no_store(r: object) -> None:
    headers = r.headers  # type: ignore[attr-defined]
    assert headers["cache-control"] == "no-store" and headers["pragma"] == "no-cache"


async def _refresh(env: Env, token: str, client_id: str = "spa", **extra: str) -> object:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await env.http.post("/token", data={**data, **extra})


async def test_refresh_rotates_and_returns_the_token_response(env: Env) -> None:
    login = env.login()
    r = await _refresh(env, login["refresh_token"])
    assert r.status_code == 200  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["refresh_token"] != login["refresh_token"] and body["id_token"]
    assert env.ts.verify_access_token(body["access_token"], audience="api")["sub"] == "alice"
    _assert_no_store(r)


async def test_confidential_client_refreshes_with_basic_auth(env: Env) -> None:
    login = env.login("backend")
    data = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    r = await env.http.post("/token", data=data, headers=env.basic("backend"))
    assert r.status_code == 200


async def test_confidential_client_refreshes_with_post_auth(env: Env) -> None:
    login = env.login("backend")
    data = {
        "grant_type": "refresh_token",
        "refresh_token": login["refresh_token"],
        "client_id": "backend",
        "client_secret": env.secrets["backend"],
    }
    assert (await env.http.post("/token", data=data)).status_code == 200


async def _error(env: Env, status: int, code: str, **kwargs: object) -> None:
    r = await env.http.post("/token", **kwargs)  # type: ignore[arg-type]
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    _assert_no_store(r)
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic")


async def _refresh_refused(env: Env, token: str, code: str = "invalid_grant", **extra: str) -> None:
    """The public client ``spa`` presents ``token``: a 400 with ``code``, no-store."""
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa", **extra}
    await _error(env, 400, code, data=data)


async def test_unknown_grant_type(env: Env) -> None:
    await _error(
        env, 400, "unsupported_grant_type", data={"grant_type": "password", "client_id": "spa"}
    )


async def test_missing_grant_type(env: Env) -> None:
    await _error(env, 400, "invalid_request", data={"client_id": "spa"})


async def test_missing_refresh_token(env: Env) -> None:
    await _error(
        env, 400, "invalid_request", data={"grant_type": "refresh_token", "client_id": "spa"}
    )


async def test_wrong_secret(env: Env) -> None:
    data = {"grant_type": "refresh_token", "refresh_token": env.login("backend")["refresh_token"]}
    await _error(env, 401, "invalid_client", data=data, headers=env.basic("backend", "tss_wrong"))


async def test_unknown_client(env: Env) -> None:
    await _error(
        env,
        401,
        "invalid_client",
        data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "who"},
    )


async def test_confidential_client_without_its_secret(env: Env) -> None:
    data = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "backend"}
    await _error(env, 401, "invalid_client", data=data)


async def test_reused_token(env: Env) -> None:
    login = env.login()
    assert (await _refresh(env, login["refresh_token"])).status_code == 200  # type: ignore[attr-defined]
    env.clock.advance(1)
    await _refresh_refused(env, login["refresh_token"])


async def test_expired_token(env: Env) -> None:
    login = env.login()
    env.clock.advance(env.ts.settings.refresh_idle_ttl)
    await _refresh_refused(env, login["refresh_token"])


async def test_revoked_family(env: Env) -> None:
    login = env.login()
    env.ts.revoke_subject("alice")
    await _refresh_refused(env, login["refresh_token"])


async def test_token_of_another_client(env: Env) -> None:
    login = env.login("backend")
    await _refresh_refused(env, login["refresh_token"])
    # Nothing changed: the rightful client can still refresh.
    data = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    assert (
        await env.http.post("/token", data=data, headers=env.basic("backend"))
    ).status_code == 200


async def test_widened_scope(env: Env) -> None:
    login = env.login(scope="openid read")
    await _refresh_refused(env, login["refresh_token"], "invalid_scope", scope="openid read admin")


async def test_malformed_refresh_token(env: Env) -> None:
    await _refresh_refused(env, "tsr_" + "A" * 5000)


async def test_repeated_parameter_is_refused(env: Env) -> None:
    body = "grant_type=refresh_token&client_id=spa&refresh_token=a&refresh_token=b"
    await _error(
        env,
        400,
        "invalid_request",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


async def test_only_form_bodies_are_accepted(env: Env) -> None:
    await _error(
        env, 400, "invalid_request", json={"grant_type": "refresh_token", "client_id": "spa"}
    )


async def test_oversized_body_is_refused(env: Env) -> None:
    r = await env.http.post("/token", data={"grant_type": "refresh_token", "x": "a" * 20_000})
    assert r.status_code == 413 and r.json()["error"] == "invalid_request"


async def test_two_authentication_methods_are_refused(env: Env) -> None:
    data = {"grant_type": "client_credentials", "client_secret": env.secrets["backend"]}
    await _error(env, 400, "invalid_request", data=data, headers=env.basic("backend"))


async def test_client_credentials_issue_an_access_token_only(env: Env) -> None:
    data = {"grant_type": "client_credentials", "scope": "read", "audience": "api"}
    r = await env.http.post("/token", data=data, headers=env.basic("backend"))
    body = r.json()
    assert r.status_code == 200 and "refresh_token" not in body and "id_token" not in body
    claims = env.ts.verify_access_token(body["access_token"], audience="api")
    assert claims["client_id"] == "backend" and claims["scope"] == "read"
    assert claims["sub"] == "client:backend"  # never a user's sub (RFC 9068 §5)
    _assert_no_store(r)


async def test_client_credentials_need_an_allowed_scope_and_audience(env: Env) -> None:
    data = {"grant_type": "client_credentials", "scope": "admin"}
    await _error(env, 400, "invalid_scope", data=data, headers=env.basic("backend"))
    data = {"grant_type": "client_credentials", "scope": "read", "audience": "other"}
    await _error(env, 400, "invalid_request", data=data, headers=env.basic("backend"))


async def test_public_clients_cannot_use_client_credentials(env: Env) -> None:
    await _error(
        env,
        400,
        "unauthorized_client",
        data={"grant_type": "client_credentials", "client_id": "spa"},
    )
