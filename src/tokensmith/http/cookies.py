"""SPA cookie mode (docs/contract.md "HTTP service"; SECURITY H4; RFC 6265bis §4.1.3.2).

The refresh token lives in a ``__Host-`` cookie: ``Secure; HttpOnly; SameSite=Strict;
Path=/`` and no ``Domain``, so browsers keep it host-only and JavaScript never reads it.
A refresh or logout must come from an allowed ``Origin`` and carry the CSRF header: a
custom header cannot be sent cross-site without a CORS preflight that we only grant to
the client's own origins.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from starlette.requests import Request
from starlette.responses import Response

from tokensmith.clients import Client
from tokensmith.http.errors import OAuthError

COOKIE_NAME = "__Host-tokensmith-rt"
CSRF_HEADER = "x-tokensmith-csrf"


def check_browser_request(request: Request, client: Client) -> None:
    """403 unless the request comes from one of the client's origins with the CSRF header."""
    origin = request.headers.get("origin")
    if origin is None or origin not in client.allowed_origins:
        raise OAuthError("access_denied", "origin not allowed", 403)
    if request.headers.get(CSRF_HEADER) is None:
        raise OAuthError("access_denied", "missing CSRF header", 403)


def set_refresh_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max(0, max_age),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_refresh_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", secure=True, httponly=True, samesite="strict")


def cors_headers(request: Request, origins: AbstractSet[str]) -> dict[str, str]:
    """CORS for cookie-mode clients' origins only; nothing for any other origin."""
    origin = request.headers.get("origin")
    if origin is None or origin not in origins:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "POST",
        # RFC 9449: the page sends DPoP proofs and must read the server's next nonce.
        "Access-Control-Allow-Headers": f"content-type, {CSRF_HEADER}, dpop",
        "Access-Control-Expose-Headers": "DPoP-Nonce, Retry-After",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }
