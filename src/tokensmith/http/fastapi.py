"""A FastAPI dependency over ``BearerGuard`` (optional extra: ``pip install tokensmith[fastapi]``).

FastAPI is imported only when ``require_token`` is called, so the rest of tokensmith never
needs it. The dependency returns the verified claims and raises ``HTTPException`` with the
same status and ``WWW-Authenticate`` challenge as ``BearerAuthMiddleware`` (RFC 6750 §3;
DPoP-bound tokens with their proofs, RFC 9449 §7),
and declares an HTTP Bearer security scheme in the app's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request

from tokensmith.errors import ConfigError, TokensmithError
from tokensmith.extras import missing_extra
from tokensmith.http.resource import STATE_KEY, BearerGuard
from tokensmith.http.resource_dpop import asgi_request
from tokensmith.tokens.verify import Claims


def require_token(
    *,
    guard: BearerGuard | None = None,
    scopes: Iterable[str] | None = None,
    **guard_options: Any,
) -> Callable[[Request], Awaitable[Claims]]:
    """``Depends(require_token(audience="api", tokensmith=ts, scopes=["read"]))``.

    Pass ``guard=`` to share one ``BearerGuard`` (and its key cache) between routes that
    need different ``scopes``; otherwise the keyword arguments build one. The claims are
    also stored in ``request.state.token_claims``.
    """
    try:
        from fastapi import HTTPException, Security
        from fastapi.security import HTTPBearer
    except ModuleNotFoundError as exc:
        raise ConfigError(missing_extra(exc) or str(exc)) from None

    # Declares the scheme in the app's OpenAPI (Swagger UI's Authorize button); the guard
    # still reads the header itself, so a missing or doubled one gets RFC 6750 §3 answers.
    bearer = Security(HTTPBearer(auto_error=False, description="An access token (RFC 6750)"))

    if guard is None:
        if scopes is not None:
            guard_options["scopes"] = scopes
            scopes = None
        guard = BearerGuard(**guard_options)
    elif guard_options:
        raise TypeError("pass guard= or BearerGuard options, not both")
    active = guard
    required = None if scopes is None else list(scopes)

    async def dependency(request: Request, _credentials: object = bearer) -> Claims:
        try:
            claims = await active.authenticate(
                request.headers.getlist("authorization"),
                scopes=required,
                request=asgi_request(request.scope),
            )
        except TokensmithError as exc:
            status, headers = active.challenge(exc, scopes=required)
            raise HTTPException(status, detail=exc.description, headers=headers) from None
        request.state.token_claims = claims
        return claims

    return dependency


__all__ = ["STATE_KEY", "require_token"]
