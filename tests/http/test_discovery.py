"""Discovery states only what is served (OIDC Discovery 1.0 §3, RFC 8414 §2; issue #11
item 7): every advertised endpoint exists, every grant and client authentication method
works through real HTTP, and the algorithms are those of the published keys."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.http.conftest import ISSUER, Env
from tokensmith.http import create_app

pytestmark = pytest.mark.anyio

# The method each advertised URL is served for.
_METHODS = {"jwks_uri": "GET"}


async def _discovery(env: Env) -> dict[str, Any]:
    r = await env.http.get("/.well-known/openid-configuration")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def _credentials(env: Env, method: str, client_id: str) -> dict[str, Any]:
    """httpx arguments authenticating ``client_id`` with an RFC 8414 auth method name."""
    if method == "client_secret_basic":
        return {"headers": env.basic(client_id), "data": {}}
    if method == "client_secret_post":
        return {"data": {"client_id": client_id, "client_secret": env.secrets[client_id]}}
    assert method == "none", f"advertised auth method {method!r} has no test"
    return {"data": {"client_id": client_id}}


def _client_for(method: str) -> str:
    return "spa" if method == "none" else "backend"


async def test_every_advertised_endpoint_is_served(env: Env) -> None:
    body = await _discovery(env)
    urls = {k: v for k, v in body.items() if k.endswith(("_endpoint", "_uri"))}
    assert set(urls) == {
        "jwks_uri",
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    }
    for name, url in urls.items():
        assert url.startswith(ISSUER + "/"), name
        r = await env.http.request(_METHODS.get(name, "POST"), url)
        assert r.status_code not in (404, 405), name


async def test_every_advertised_grant_and_token_endpoint_auth_method_works(env: Env) -> None:
    body = await _discovery(env)
    grants, methods = body["grant_types_supported"], body["token_endpoint_auth_methods_supported"]
    worked: set[str] = set()
    for grant in grants:
        for method in methods:
            client_id = _client_for(method)
            request = _credentials(env, method, client_id)
            request["data"]["grant_type"] = grant
            if grant == "refresh_token":
                request["data"]["refresh_token"] = env.login(client_id)["refresh_token"]
            r = await env.http.post("/token", **request)
            if r.status_code == 200:
                worked |= {grant, method}
            else:  # refused only because this client may not use the grant
                assert r.json()["error"] == "unauthorized_client", (grant, method, r.json())
    assert worked == {*grants, *methods}


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [("revocation", "/revoke"), ("introspection", "/introspect")],
)
async def test_every_advertised_auth_method_works_at_revocation_and_introspection(
    env: Env, endpoint: str, path: str
) -> None:
    body = await _discovery(env)
    for method in body[f"{endpoint}_endpoint_auth_methods_supported"]:
        request = _credentials(env, method, _client_for(method))
        request["data"]["token"] = env.login()["access_token"]
        r = await env.http.post(path, **request)
        assert r.status_code == 200, (method, r.text)


async def test_algorithms_are_those_of_the_published_keys(env: Env) -> None:
    body = await _discovery(env)
    published = {k["alg"] for k in (await env.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert set(body["id_token_signing_alg_values_supported"]) == published == {"ES256"}


async def test_nothing_unserved_is_advertised(env: Env) -> None:
    """No authorization endpoint, so no response type; /metrics and /logout are not
    discovery material (RFC 8414 has no member for either); /metrics is not on the public
    app without a scrape token."""
    transport = httpx.ASGITransport(app=create_app(env.ts, enable_metrics=True))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        assert (await http.get("/metrics")).status_code == 404
        body = (await http.get("/.well-known/openid-configuration")).json()
    assert "response_types_supported" not in body
    assert "authorization_endpoint" not in body
    assert not any("metrics" in str(v) or "logout" in str(v) for v in body.values())
