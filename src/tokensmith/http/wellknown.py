"""``/.well-known/jwks.json`` and ``/.well-known/openid-configuration``."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokensmith.facade import Tokensmith
from tokensmith.http.threads import in_thread
from tokensmith.settings import SUPPORTED_ALGS


async def jwks(request: Request) -> Response:
    """Every pending, active and retired public key. ``max-age`` follows the key schedule
    (SPEC "Keys"); ``stale-if-error`` lets verifiers ride out an outage; ETag → 304.
    Served from the key snapshot on the event loop; the thread pool only when the key
    store is due for a look (it may block on a file lock or the database)."""
    ts: Tokensmith = request.app.state.tokensmith
    document = ts.keys.cached_jwks_document()
    if document is None:
        document = await in_thread(ts.keys.jwks_document)
    headers = {"Cache-Control": _cache_control(ts.keys.jwks_max_age()), "ETag": document.etag}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and document.etag in _etags(if_none_match):
        return Response(status_code=304, headers=headers)
    return Response(document.payload, media_type="application/jwk-set+json", headers=headers)


@functools.lru_cache(maxsize=256)
def _cache_control(max_age: int) -> str:
    return f"public, max-age={max_age}, stale-if-error=86400"


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


async def openid_configuration(request: Request) -> Response:
    """OpenID Connect Discovery 1.0 §3 / RFC 8414 metadata."""
    ts: Tokensmith = request.app.state.tokensmith
    issuer = ts.settings.issuer.rstrip("/")
    algs = sorted({ts.settings.signing_alg, *SUPPORTED_ALGS})
    body = {
        "issuer": ts.settings.issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "grant_types_supported": ["refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "id_token_signing_alg_values_supported": algs,
        "subject_types_supported": ["public"],
        "response_types_supported": ["code"],
        "scopes_supported": ["openid"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "amr",
            "acr",
            "azp",
            "at_hash",
            "sid",
        ],
    }
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=3600"})
