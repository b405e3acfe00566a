"""The example API: one protected route, ``GET /api/me``, and a public ``GET /api/health``.

It is a separate service from the auth server: it trusts tokens signed by a key in the
issuer's JWKS (``RemoteJwks``), naming the issuer and this API's audience, and holding
the ``read`` scope. The SPA calls it cross-origin with ``Authorization: Bearer``, so CORS
allows the SPA's origin, the ``Authorization`` header and no credentials (the API never
reads cookies).

No ``from __future__ import annotations`` here: FastAPI reads the route's ``Annotated``
dependency at runtime, and it names a local (``read_scope``).
"""

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from tokensmith.clock import Clock
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
) -> FastAPI:
    """The API. ``keys`` is any key lookup (``remote_keys(issuer)`` in the example, a
    ``KeyManager`` or ``JwkSet`` in tests); ``leeway`` is the clock skew allowed on
    ``exp``/``nbf`` (the runner uses 0: one machine, one clock)."""
    guard = BearerGuard(
        keys=keys,
        issuer=issuer,
        audience=AUDIENCE,
        leeway=leeway,
        clock=clock,
        realm="example-api",
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
        allow_headers=["authorization"],
        # Let the SPA read the RFC 6750 challenge (error="invalid_token", ...).
        expose_headers=["www-authenticate"],
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
        }

    return app
