"""Client lifecycle over HTTP (docs/contract.md "Clients"; SECURITY B5; RFC 9068 §5):
deny-by-default
scopes, disable/enable, delete, secret rotation with an overlap, update, and the
``client:`` subject namespace."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import ORIGIN, Env
from tokensmith import InvalidClient, InvalidGrant, InvalidRequest, InvalidToken
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER

pytestmark = pytest.mark.anyio

BROWSER = {"Origin": ORIGIN, CSRF_HEADER: "1"}


async def _client_token(
    env: Env, client_id: str = "backend", secret: str | None = None, **form: str
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **form}
    return await env.http.post("/token", data=data, headers=env.basic(client_id, secret))


async def _refresh(env: Env, token: str, client_id: str = "spa") -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await env.http.post("/token", data=data)


def _error(r: httpx.Response) -> tuple[int, str | None]:
    """Status and OAuth error code (``None`` for a success without a JSON body)."""
    is_json = r.headers.get("content-type", "").startswith("application/json")
    return r.status_code, r.json().get("error") if is_json else None


async def test_a_client_registered_without_scopes_gets_none(env: Env) -> None:
    _, secret = env.ts.register_client("m2m", confidential=True)
    r = await _client_token(env, "m2m", secret, scope="admin superuser")
    assert _error(r) == (400, "invalid_scope")
    r = await _client_token(env, "m2m", secret)
    assert r.status_code == 200 and "scope" not in r.json()  # never "scope": ""


async def test_a_client_may_narrow_a_refresh_only_to_its_registered_scopes(env: Env) -> None:
    login = env.login("spa", scope="openid read")
    data = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    r = await env.http.post("/token", data={**data, "client_id": "spa", "scope": "read"})
    assert _error(r) == (400, "invalid_scope")
    env.ts.update_client("spa", scopes=["openid", "read"])
    r = await env.http.post("/token", data={**data, "client_id": "spa", "scope": "read"})
    assert r.status_code == 200 and r.json()["scope"] == "read"


async def _every_endpoint_refuses(env: Env, login: dict[str, str], cookie: str) -> None:
    """``invalid_client`` (401) at /token (both grants), /revoke, /introspect, and the
    cookie-mode refresh and logout; the refresh tokens are not consumed."""
    refresh = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    refused = [
        await env.http.post("/token", data=refresh, headers=env.basic("backend")),
        await _client_token(env, scope="read"),
        await env.http.post(
            "/revoke", data={"token": login["refresh_token"]}, headers=env.basic("backend")
        ),
        await env.http.post(
            "/introspect", data={"token": login["access_token"]}, headers=env.basic("backend")
        ),
    ]
    env.http.cookies.set(COOKIE_NAME, cookie, domain="as.example.com", path="/")
    cookie_form = {"grant_type": "refresh_token", "client_id": "browser"}
    refused.append(await env.http.post("/token", data=cookie_form, headers=BROWSER))
    refused.append(await env.http.post("/logout", data={"client_id": "browser"}, headers=BROWSER))
    assert [_error(r) for r in refused] == [(401, "invalid_client")] * len(refused)


async def test_a_disabled_client_is_refused_everywhere_and_enabling_restores_it(
    env: Env,
) -> None:
    login = env.login("backend")
    cookie = env.login("browser")["refresh_token"]
    for client_id in ("backend", "browser"):
        assert not env.ts.update_client(client_id, enabled=False).enabled
    await _every_endpoint_refuses(env, login, cookie)
    preflight = await env.http.options("/token", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in preflight.headers
    # Nothing was revoked: enabling the clients gives their sessions back.
    for client_id in ("backend", "browser"):
        assert env.ts.update_client(client_id, enabled=True).enabled
    data = {"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    r = await env.http.post("/token", data=data, headers=env.basic("backend"))
    assert r.status_code == 200, r.text
    env.http.cookies.set(COOKIE_NAME, cookie, domain="as.example.com", path="/")
    cookie_form = {"grant_type": "refresh_token", "client_id": "browser"}
    assert (await env.http.post("/token", data=cookie_form, headers=BROWSER)).status_code == 200


async def test_the_facade_refuses_a_disabled_client_and_changes_nothing(env: Env) -> None:
    login = env.login("backend")
    env.ts.update_client("backend", enabled=False)
    with pytest.raises(InvalidClient):
        env.ts.refresh(login["refresh_token"], client_id="backend")
    with pytest.raises(InvalidClient):
        env.ts.issue(subject="alice", client_id="backend")
    env.ts.update_client("backend", enabled=True)
    assert env.ts.refresh(login["refresh_token"], client_id="backend").refresh_token
    # An id nobody registered is the application's business, as before.
    assert env.ts.issue(subject="alice", client_id="unregistered").refresh_token


async def test_a_deleted_client_is_refused_and_its_sessions_are_revoked(env: Env) -> None:
    login = env.login("backend")
    cookie = env.login("browser")["refresh_token"]
    own = (await _client_token(env, scope="read", audience="api")).json()["access_token"]
    user = env.login("spa")
    env.clock.advance(1)  # not-before times are whole seconds, like ``iat``
    assert env.ts.delete_client("backend") == 1
    assert env.ts.delete_client("browser") == 1
    await _every_endpoint_refuses(env, login, cookie)
    for token, client_id in ((login["refresh_token"], "backend"), (cookie, "browser")):
        with pytest.raises(InvalidGrant):
            env.ts.refresh(token, client_id=client_id)
    for access_token in (login["access_token"], own):
        with pytest.raises(InvalidToken):
            env.ts.verify_access_token(access_token, audience="api")
    # Another client's session is untouched; the name can be registered afresh.
    assert (await _refresh(env, user["refresh_token"])).status_code == 200
    env.ts.register_client("backend", confidential=True)


async def test_a_deleted_id_registered_again_works_without_its_old_sessions(env: Env) -> None:
    env.ts.delete_client("spa")
    # A session for the id started after the deletion had revoked the client's sessions:
    # as by an instance that had not heard of it yet (here the facade, which leaves an
    # unregistered id to the application).
    straggler = env.login("spa")
    env.ts.register_client("spa", confidential=False)
    assert _error(await _refresh(env, straggler["refresh_token"])) == (400, "invalid_grant")
    with pytest.raises(InvalidToken):
        env.ts.verify_access_token(straggler["access_token"], audience="api")
    fresh = env.login("spa")
    assert env.ts.verify_access_token(fresh["access_token"], audience="api")
    assert (await _refresh(env, fresh["refresh_token"])).status_code == 200


async def test_client_tokens_issued_after_a_deletion_stay_refused_once_the_id_is_back(
    env: Env,
) -> None:
    env.ts.delete_client("backend")
    env.clock.advance(1)  # past the deletion's ``client:backend`` cut-off
    # As by an instance that had not heard of the deletion yet.
    stale = env.ts.issue_client_token(client_id="backend", audience="api").access_token
    env.clock.advance(1)
    _, secret = env.ts.register_client("backend", confidential=True, audiences=("api",))
    with pytest.raises(InvalidToken):
        env.ts.verify_access_token(stale, audience="api")
    fresh = (await _client_token(env, "backend", secret)).json()["access_token"]
    assert env.ts.verify_access_token(fresh, audience="api")["sub"] == "client:backend"


async def test_registering_a_taken_id_is_refused_before_it_touches_a_session(env: Env) -> None:
    login = env.login("spa")
    with pytest.raises(InvalidRequest, match="already exists"):
        env.ts.register_client("spa", confidential=False)
    assert (await _refresh(env, login["refresh_token"])).status_code == 200


async def test_a_rotated_secret_works_for_its_overlap_then_never(env: Env) -> None:
    old = env.secrets["backend"]
    _, new = env.ts.rotate_client_secret("backend", overlap=60)
    assert new != old
    env.clock.advance(59)
    for secret in (old, new):
        assert (await _client_token(env, secret=secret, scope="read")).status_code == 200
    env.clock.advance(1)
    assert _error(await _client_token(env, secret=old, scope="read")) == (401, "invalid_client")
    assert (await _client_token(env, secret=new, scope="read")).status_code == 200


async def test_an_update_changes_what_is_accepted(env: Env) -> None:
    assert (await _client_token(env, scope="read", audience="api")).status_code == 200
    env.ts.update_client("backend", scopes=["admin"], audiences=["billing"])
    r = await _client_token(env, scope="read", audience="api")
    assert _error(r) == (400, "invalid_scope")
    r = await _client_token(env, scope="admin", audience="api")
    assert _error(r) == (400, "invalid_request")
    assert (await _client_token(env, scope="admin", audience="billing")).status_code == 200
    env.ts.update_client("backend", grant_types=["refresh_token"])
    r = await _client_token(env, scope="admin", audience="billing")
    assert _error(r) == (400, "unauthorized_client")
    cookie = env.login("browser")["refresh_token"]
    env.ts.update_client("browser", allowed_origins=["https://new.example.com"])
    env.http.cookies.set(COOKIE_NAME, cookie, domain="as.example.com", path="/")
    cookie_form = {"grant_type": "refresh_token", "client_id": "browser"}
    assert (await env.http.post("/token", data=cookie_form, headers=BROWSER)).status_code == 403


@pytest.mark.parametrize(
    "changes",
    [
        {"scopes": ["read write"]},
        {"allowed_origins": ["app.example.com"]},
        {"grant_types": ["password"]},
    ],
    ids=["scope with a space", "origin without a scheme", "unsupported grant"],
)
async def test_an_invalid_update_is_refused_and_changes_nothing(
    env: Env, changes: dict[str, list[str]]
) -> None:
    before = env.ts.client("backend")
    with pytest.raises(InvalidRequest):
        env.ts.update_client("backend", **changes)  # type: ignore[arg-type]
    assert env.ts.clients.list_clients()[0] == before


async def test_client_tokens_have_their_own_subject_namespace(env: Env) -> None:
    """RFC 9068 §5: client ``alice`` and user ``alice`` never share a ``sub``."""
    _, secret = env.ts.register_client("alice", confidential=True, scopes=["read"])
    r = await _client_token(env, "alice", secret, scope="read")
    client_token = r.json()["access_token"]
    claims = env.ts.verify_access_token(client_token, audience=env.ts.settings.issuer)
    assert claims["sub"] == "client:alice" and claims["client_id"] == "alice"
    user = env.login("spa")
    env.clock.advance(1)
    env.ts.revoke_subject("alice")
    assert env.ts.verify_access_token(client_token, audience=env.ts.settings.issuer)
    with pytest.raises(InvalidToken):
        env.ts.verify_access_token(user["access_token"], audience="api")
    user = env.login("spa")
    env.clock.advance(1)
    env.ts.revoke_subject("client:alice")
    assert env.ts.verify_access_token(user["access_token"], audience="api")
    with pytest.raises(InvalidToken):
        env.ts.verify_access_token(client_token, audience=env.ts.settings.issuer)


async def test_a_user_id_cannot_take_the_client_namespace(env: Env) -> None:
    with pytest.raises(InvalidRequest, match="client:"):
        env.ts.issue(subject="client:backend", client_id="spa")
