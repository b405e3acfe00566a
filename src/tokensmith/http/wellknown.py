"""``/.well-known/jwks.json`` and ``/.well-known/openid-configuration``."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

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
    max_age = ts.keys.jwks_max_age()
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and document.etag in _etags(if_none_match):
        headers = {"Cache-Control": _cache_control(max_age), "ETag": document.etag}
        return Response(status_code=304, headers=headers)
    return _jwks_response(document.payload, document.etag, max_age)


def _cache_control(max_age: int) -> str:
    return f"public, max-age={max_age}, stale-if-error=86400"


class _SharedResponse(Response):
    """One response object served to many requests: each gets its own copy of the header
    list, because a middleware may edit the list it is sent in place."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [*self.raw_headers]})
        await send({"type": "http.response.body", "body": self.body})


@functools.lru_cache(maxsize=16)
def _jwks_response(payload: bytes, etag: str, max_age: int) -> Response:
    # Built once per key set and max-age (a whole number of seconds): the JWKS is the
    # hottest read of the service and otherwise rebuilt identically for every request.
    headers = {"Cache-Control": _cache_control(max_age), "ETag": etag}
    return _SharedResponse(payload, media_type="application/jwk-set+json", headers=headers)


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
