"""The example API: one protected route, ``GET /api/me``, and a public ``GET /api/health``.

It is a separate service from the auth server: it trusts tokens signed by a key in the
issuer's JWKS (``RemoteJwks``), naming the issuer and this API's audience, and holding
the ``read`` scope. The SPA calls it cross-origin with ``Authorization: DPoP`` and a ``DPoP``
proof (RFC 9449 §7), so CORS allows the SPA's origin, those two headers and no credentials
(the API never reads cookies).

No ``from __future__ import annotations`` here: FastAPI reads the route's ``Annotated``
dependency at runtime, and it names a local (``read_scope``).
"""

import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from tokensmith.clock import Clock, SystemClock
from tokensmith.dpop import Nonces, ProofVerifier
from tokensmith.http.fastapi import require_token
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.http.resource import BearerGuard
from tokensmith.tokens.jws import KeyLookup

#: The ``aud`` this API requires; the demo login issues tokens for it.
AUDIENCE = "example-api"


def remote_keys(issuer: str) -> RemoteJwks:
    """The issuer's JWKS. Plain ``http://`` is accepted only because the example runs on
    loopback (``allow_insecure_loopback``); a real deployment uses ``https://``."""
    return RemoteJwks(f"{issuer}/.well-known/jwks.json", allow_insecure_loopback=True)


def create_api(
    *,
    issuer: str,
    keys: KeyLookup,
    allowed_origins: Sequence[str],
    leeway: float = 60.0,
    clock: Clock | None = None,
    dpop_nonces: bool = False,
) -> FastAPI:
    """The API. ``keys`` is any key lookup (``remote_keys(issuer)`` in the example, a
    ``KeyManager`` or ``JwkSet`` in tests); ``leeway`` is the clock skew allowed on
    ``exp``/``nbf`` (the runner uses 0: one machine, one clock). With ``dpop_nonces`` a
    DPoP proof must carry this API's own nonce (RFC 9449 §9); one process, so a key made
    at start is enough (several instances would share one, as ``tokensmith serve`` does)."""
    nonces = Nonces(secrets.token_bytes(32), clock=clock or SystemClock()) if dpop_nonces else None
    guard = BearerGuard(
        keys=keys,
        issuer=issuer,
        audience=AUDIENCE,
        leeway=leeway,
        clock=clock,
        realm="example-api",
        dpop=ProofVerifier(clock=clock, nonces=nonces),
    )
    read_scope = require_token(guard=guard, scopes=["read"])

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if isinstance(keys, RemoteJwks):
            keys.close()

    app = FastAPI(title="tokensmith example API", lifespan=lifespan)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(allowed_origins),
        allow_credentials=False,
        allow_methods=["GET"],
        allow_headers=["authorization", "dpop"],
        # Let the SPA read the challenge (RFC 6750 §3, RFC 9449 §7.1) and the server nonce
        # it must put in its next proof (RFC 9449 §9).
        expose_headers=["www-authenticate", "dpop-nonce"],
    )

    @app.get("/api/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/api/me")
    async def me(
        claims: Annotated[dict[str, Any], Depends(read_scope)],
    ) -> dict[str, Any]:
        # jti and exp are echoed so the demo (and its test) can show which access token
        # the API accepted; a real API would not need them.
        return {
            "sub": claims["sub"],
            "client_id": claims["client_id"],
            "scope": claims.get("scope", ""),
            "sid": claims.get("sid"),
            "jti": claims["jti"],
            "exp": claims["exp"],
            "jkt": claims.get("cnf", {}).get("jkt"),  # the key the token is bound to
        }

    return app
