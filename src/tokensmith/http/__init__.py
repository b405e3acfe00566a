"""The ASGI surface (Starlette). Only this package turns errors into HTTP responses.

- ``create_app(ts)``: the authorization server's endpoints;
- ``BearerGuard``, ``BearerAuthMiddleware``, ``RemoteJwks``, ``RemoteRevocations``:
  protecting a resource server
  (``tokensmith.http.fastapi.require_token`` for FastAPI).
"""

from __future__ import annotations

from tokensmith.http.app import create_app
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.http.remote_revocations import RemoteRevocations
from tokensmith.http.resource import BearerAuthMiddleware, BearerGuard

__all__ = ["BearerAuthMiddleware", "BearerGuard", "RemoteJwks", "RemoteRevocations", "create_app"]
