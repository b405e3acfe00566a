"""``GET /openapi.json`` (issue #13 item 3): a valid OpenAPI 3.1 document describing
exactly the routes the app serves, with every method, and nothing it does not serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from tests.conftest import make_tokensmith
from tests.http.conftest import ISSUER, T0, Env
from tokensmith import ManualClock
from tokensmith.http import create_app

from ..dpop_helpers import DPoPKey

pytestmark = pytest.mark.anyio


def _served(app: Any) -> set[tuple[str, str]]:
    """(path, method) of every route, HEAD aside (Starlette adds it to each GET)."""
    return {
        (r.path, m.lower())
        for r in app.routes
        if isinstance(r, Route)
        for m in r.methods or ()
        if m != "HEAD"
    }


def _described(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p, m) for p, item in document["paths"].items() for m in item}


async def _document(app: Any) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    return r.json()  # type: ignore[no-any-return]


async def test_the_document_is_valid_openapi_3_1(env: Env) -> None:
    r = await env.http.get("/openapi.json")
    document = r.json()
    assert document["openapi"] == "3.1.0"
    validate(document)


@pytest.mark.parametrize("metrics_token", [None, "scrape-me"], ids=["default", "with /metrics"])
async def test_every_served_route_and_only_those_is_described(
    tmp_path: Path, metrics_token: str | None
) -> None:
    ts = make_tokensmith(tmp_path, ManualClock(T0), issuer=ISSUER, metrics_token=metrics_token)
    app = create_app(ts, enable_metrics=True)
    document = await _document(app)
    validate(document)
    assert _described(document) == _served(app)
    assert ("/metrics" in document["paths"]) is (metrics_token is not None)


async def test_every_form_error_is_an_rfc6749_error_body_with_its_headers(env: Env) -> None:
    document = (await env.http.get("/openapi.json")).json()
    for path in ("/token", "/revoke", "/introspect", "/logout"):
        responses = document["paths"][path]["post"]["responses"]
        assert {"400", "401", "413", "503"} <= set(responses), path
        assert responses["401"] == {"$ref": "#/components/responses/ClientError"}
    components = document["components"]
    assert components["schemas"]["Error"]["required"] == ["error"]
    assert "WWW-Authenticate" in components["responses"]["ClientError"]["headers"]
    assert "Retry-After" in components["responses"]["Unavailable"]["headers"]
    jwks = document["paths"]["/.well-known/jwks.json"]["get"]["responses"]
    assert {"Cache-Control", "ETag"} <= set(jwks["200"]["headers"])


async def test_the_token_form_has_one_schema_per_grant(env: Env) -> None:
    document = (await env.http.get("/openapi.json")).json()
    discovery = (await env.http.get("/.well-known/openid-configuration")).json()
    body = document["paths"]["/token"]["post"]["requestBody"]["content"]
    forms = body["application/x-www-form-urlencoded"]["schema"]["oneOf"]
    schemas = document["components"]["schemas"]
    grants = [schemas[f["$ref"].rsplit("/", 1)[1]]["properties"]["grant_type"] for f in forms]
    assert [g["const"] for g in grants] == discovery["grant_types_supported"]


async def test_dpop_token_responses_and_the_proof_header_are_described(env: Env) -> None:
    """RFC 9449 at the token endpoint and /sessions: the document names the ``DPoP``
    request header, and a DPoP-bound token response is valid against its schema (it used
    to allow only ``token_type: Bearer``)."""
    document = (await env.http.get("/openapi.json")).json()
    token = document["paths"]["/token"]["post"]
    assert [p["name"] for p in token["parameters"]] == ["DPoP"]
    for path, method in (("/sessions", "get"), ("/sessions/{sid}", "delete")):
        assert "DPoP" in [p["name"] for p in document["paths"][path][method]["parameters"]]
    key = DPoPKey()
    r = await env.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        headers={**env.basic("backend"), "DPoP": key.proof(f"{ISSUER}/token", iat=T0)},
    )
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    jsonschema.validate(
        r.json(), token["responses"]["200"]["content"]["application/json"]["schema"]
    )
