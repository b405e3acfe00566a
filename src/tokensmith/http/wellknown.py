"""``/.well-known/jwks.json`` and ``/.well-known/openid-configuration``."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tokensmith.facade import Tokensmith
from tokensmith.grants import GRANTS
from tokensmith.http.clientauth import AUTH_METHODS, SECRET_AUTH_METHODS
from tokensmith.http.threads import in_thread
from tokensmith.keys.lifecycle import JwksDocument


async def jwks(request: Request) -> Response:
    """Every pending, active and retired public key. ``max-age`` follows the key schedule
    (docs/contract.md "Keys"); ``stale-if-error`` lets verifiers ride out an outage; ETag → 304."""
    ts: Tokensmith = request.app.state.tokensmith
    document = await _key_document(ts)
    max_age = ts.keys.jwks_max_age()
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and document.etag in _etags(if_none_match):
        headers = {"Cache-Control": _cache_control(max_age), "ETag": document.etag}
        return Response(status_code=304, headers=headers)
    return _jwks_response(document.payload, document.etag, max_age)


async def _key_document(ts: Tokensmith) -> JwksDocument:
    """The published key set, from the snapshot on the event loop; in the thread pool only
    when the key store is due for a look (it may block on a file lock or the database)."""
    document = ts.keys.cached_jwks_document()
    if document is None:
        document = await in_thread(ts.keys.jwks_document)
    return document


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


# OIDC Core §2 and §3.1.3.6: the ID-token claims ``mint_id_token`` can emit.
_ID_TOKEN_CLAIMS = (
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
)


async def openid_configuration(request: Request) -> Response:
    """OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata, stating only what this app
    serves: its endpoints, the grants ``/token`` dispatches, the client authentication
    ``clientauth`` accepts, the algorithms of the published keys. There is no
    authorization endpoint, so no ``response_types_supported`` (no response type is
    served) and no ``/logout`` (cookie mode's, not OIDC RP-initiated logout)."""
    ts: Tokensmith = request.app.state.tokensmith
    document = await _key_document(ts)
    issuer = ts.settings.issuer.rstrip("/")
    body = {
        "issuer": ts.settings.issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": ts.dpop.token_endpoint,
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "grant_types_supported": list(GRANTS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(SECRET_AUTH_METHODS),
        "id_token_signing_alg_values_supported": sorted({k["alg"] for k in document.body["keys"]}),
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid"],
        "claims_supported": list(_ID_TOKEN_CLAIMS),
        "dpop_signing_alg_values_supported": list(ts.settings.dpop_algs),  # RFC 9449 §5.1
        # Back-Channel Logout 1.0 §2.1: logout tokens, always with the sid.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }
    # The algorithms follow the key set: cache no longer than the JWKS may be cached.
    cache_control = f"public, max-age={ts.keys.jwks_max_age()}"
    return JSONResponse(body, headers={"Cache-Control": cache_control})
