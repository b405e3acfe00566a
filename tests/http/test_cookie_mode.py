"""SPA cookie mode (docs/contract.md "HTTP service"; SECURITY H4)."""

from __future__ import annotations

import pytest

from tests.http.conftest import ORIGIN, Env
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER

pytestmark = pytest.mark.anyio

BROWSER = {"Origin": ORIGIN, CSRF_HEADER: "1"}


def _login(env: Env) -> str:
    token = env.login("browser")["refresh_token"]
    env.http.cookies.set(COOKIE_NAME, token, domain="as.example.com", path="/")
    return token


async def _refresh(env: Env, headers: dict[str, str], **extra: str) -> object:
    data = {"grant_type": "refresh_token", "client_id": "browser", **extra}
    return await env.http.post("/token", data=data, headers=headers)


def _set_cookie(r: object) -> str:
    values = r.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    assert len(values) == 1
    return values[0]  # type: ignore[no-any-return]


async def test_refresh_moves_the_token_into_a_host_only_cookie(env: Env) -> None:
    old = _login(env)
    r = await _refresh(env, BROWSER)
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    assert "refresh_token" not in r.json()  # type: ignore[attr-defined]
    cookie = _set_cookie(r)
    assert cookie.startswith(f"{COOKIE_NAME}=") and old not in cookie
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path", "max-age"} <= attributes
    assert "domain" not in attributes
    assert "samesite=strict" in cookie.lower() and "Path=/" in cookie
    assert r.headers["access-control-allow-origin"] == ORIGIN  # type: ignore[attr-defined]
    assert r.headers["access-control-allow-credentials"] == "true"  # type: ignore[attr-defined]


async def test_rotation_replaces_the_cookie_each_time(env: Env) -> None:
    _login(env)
    seen = set()
    for _ in range(3):
        r = await _refresh(env, BROWSER)
        assert r.status_code == 200  # type: ignore[attr-defined]
        seen.add(env.http.cookies.get(COOKIE_NAME))
    assert len(seen) == 3


@pytest.mark.parametrize(
    "headers",
    [
        {CSRF_HEADER: "1"},
        {"Origin": "https://evil.example", CSRF_HEADER: "1"},
        {"Origin": ORIGIN},
        {"Origin": "null", CSRF_HEADER: "1"},
    ],
    ids=["no origin", "foreign origin", "no CSRF header", "opaque origin"],
)
async def test_refresh_from_a_foreign_page_is_refused_and_consumes_nothing(
    env: Env, headers: dict[str, str]
) -> None:
    _login(env)
    r = await _refresh(env, headers)
    assert r.status_code == 403  # type: ignore[attr-defined]
    assert (await _refresh(env, BROWSER)).status_code == 200  # type: ignore[attr-defined]


async def test_a_refresh_token_form_field_does_not_bypass_the_checks(env: Env) -> None:
    token = _login(env)
    env.http.cookies.clear()
    r = await _refresh(env, {}, refresh_token=token)
    assert r.status_code == 403  # type: ignore[attr-defined]
    r = await _refresh(env, BROWSER, refresh_token=token)
    assert r.status_code == 400  # type: ignore[attr-defined]
    env.http.cookies.set(COOKIE_NAME, token, domain="as.example.com", path="/")
    assert (await _refresh(env, BROWSER)).status_code == 200  # type: ignore[attr-defined]


async def test_logout_revokes_the_family_and_expires_the_cookie(env: Env) -> None:
    token = _login(env)
    r = await env.http.post("/logout", data={"client_id": "browser"}, headers=BROWSER)
    assert r.status_code == 204
    cookie = _set_cookie(r)
    assert cookie.startswith(f"{COOKIE_NAME}=") and "Max-Age=0" in cookie
    env.http.cookies.set(COOKIE_NAME, token, domain="as.example.com", path="/")
    assert (await _refresh(env, BROWSER)).status_code == 400  # type: ignore[attr-defined]


async def test_logout_without_csrf_header_changes_nothing(env: Env) -> None:
    _login(env)
    r = await env.http.post("/logout", data={"client_id": "browser"}, headers={"Origin": ORIGIN})
    assert r.status_code == 403
    assert (await _refresh(env, BROWSER)).status_code == 200  # type: ignore[attr-defined]


async def test_cors_preflight_is_granted_to_allowed_origins_only(env: Env) -> None:
    ok = await env.http.options("/token", headers={"Origin": ORIGIN})
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert CSRF_HEADER in ok.headers["access-control-allow-headers"]
    evil = await env.http.options("/token", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers


async def test_the_page_can_read_every_token_error_and_a_foreign_page_none(env: Env) -> None:
    """A dead session (``invalid_grant``) must not look like a network failure to the SPA,
    and a 503's ``Retry-After`` must be readable: every /token error of a cookie-mode client
    carries CORS for its own origins (as DPoP errors always did)."""
    r = await _refresh(env, BROWSER)  # no cookie at all
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")  # type: ignore[attr-defined]
    assert r.headers["access-control-allow-origin"] == ORIGIN  # type: ignore[attr-defined]
    token = _login(env)
    env.ts.revoke_refresh_token(token)
    r = await _refresh(env, BROWSER)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")  # type: ignore[attr-defined]
    assert r.headers["access-control-allow-origin"] == ORIGIN  # type: ignore[attr-defined]
    assert r.headers["access-control-allow-credentials"] == "true"  # type: ignore[attr-defined]
    assert "Retry-After" in r.headers["access-control-expose-headers"]  # type: ignore[attr-defined]
    # Another page's origin is refused before the grant runs, and reads nothing.
    r = await _refresh(env, {"Origin": "https://evil.example", CSRF_HEADER: "1"})
    assert "access-control-allow-origin" not in r.headers  # type: ignore[attr-defined]
