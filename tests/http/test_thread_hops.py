"""Each form endpoint reaches the thread pool once: client authentication and the operation
share the trip, since each hop costs more than a cached client lookup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.http.conftest import ORIGIN, Env
from tokensmith.http import create_app, endpoints
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER
from tokensmith.http.forms import MAX_FORM_BYTES

pytestmark = pytest.mark.anyio


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions each request sent to the thread pool."""
    seen: list[str] = []
    real = endpoints.in_thread

    async def counting(fn: Callable[..., Any], *args: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args)

    monkeypatch.setattr(endpoints, "in_thread", counting)
    return seen


async def test_revoke_introspect_and_refresh_take_one_trip_each(env: Env, hops: list[str]) -> None:
    login = env.login("backend")
    auth = env.basic("backend")
    r = await env.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": login["refresh_token"]},
        headers=auth,
    )
    assert r.status_code == 200
    r = await env.http.post("/introspect", data={"token": login["access_token"]}, headers=auth)
    assert r.status_code == 200 and r.json()["active"] is True
    r = await env.http.post("/revoke", data={"token": login["access_token"]}, headers=auth)
    assert r.status_code == 200
    assert hops == ["token", "introspect", "revoke"]


async def test_logout_takes_one_trip(env: Env, hops: list[str]) -> None:
    token = env.login("browser")["refresh_token"]
    env.http.cookies.set(COOKIE_NAME, token, domain="as.example.com", path="/")
    headers = {"Origin": ORIGIN, CSRF_HEADER: "1"}
    r = await env.http.post("/logout", data={"client_id": "browser"}, headers=headers)
    assert r.status_code == 204
    assert hops == ["logout"]
    assert env.ts.introspect(token) == {"active": False}


async def test_errors_raised_in_the_trip_keep_their_status(env: Env, hops: list[str]) -> None:
    r = await env.http.post("/introspect", data={"token": "x", "client_id": "spa"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await env.http.post("/logout", data={"client_id": "spa"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    assert hops == ["introspect", "logout"]


async def test_a_bad_body_is_refused_on_the_event_loop(env: Env, hops: list[str]) -> None:
    for path in ("/token", "/revoke", "/introspect", "/logout"):
        r = await env.http.post(path, content=b"{}", headers={"content-type": "application/json"})
        assert r.status_code == 400, path
        r = await env.http.post(path, data={"token": "x" * (MAX_FORM_BYTES + 1)})
        assert r.status_code == 413, path
    assert hops == []


async def test_the_routes_keep_their_handlers_names(env: Env) -> None:
    # Host applications address them with url_path_for("token") and so on.
    app = create_app(env.ts)
    for name in ("token", "revoke", "introspect", "logout"):
        assert app.url_path_for(name) == f"/{name}"
