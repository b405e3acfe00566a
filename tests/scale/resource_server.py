"""A resource server in its own process, as a REST API on another host runs one: every
request to ``/check`` needs a bearer token that verifies with ``RemoteJwks`` and is not
revoked according to ``RemoteRevocations`` (the issuer's feed). 200 when accepted, 401
(revoked, unknown key) or 503 (view out of date) otherwise.

Usage: ``python resource_server.py PORT FEED_URL TOKEN_ISSUER`` with ``RS_SECRET`` (the
``rs`` client's secret) in the environment; ``/healthz`` answers once the feed was read.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokensmith.http import BearerAuthMiddleware, BearerGuard, RemoteJwks, RemoteRevocations


def main() -> None:
    port, feed_url, token_issuer = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # cooldown 0: a key the issuer made after a revocation is fetched at its first token.
    jwks = RemoteJwks(f"{feed_url}/.well-known/jwks.json", allow_insecure_loopback=True, cooldown=0)
    feed = RemoteRevocations(
        feed_url,
        client_id="rs",
        client_secret=os.environ["RS_SECRET"],
        jwks=jwks,
        allow_insecure_loopback=True,
    )
    feed.start()
    guard = BearerGuard(audience="api", keys=jwks, issuer=token_issuer, revocations=feed)

    async def check(request: Request) -> Response:
        return JSONResponse({"sub": request.state.token_claims["sub"]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"entries": len(feed), "cursor": feed.cursor})

    app = Starlette(routes=[Route("/check", check), Route("/healthz", healthz)])
    protected = BearerAuthMiddleware(app, guard=guard, exempt_paths=["/healthz"])
    uvicorn.run(protected, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
