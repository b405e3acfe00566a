"""``GET /sessions``, ``DELETE /sessions/{sid}`` and ``POST /sessions/revoke-others``: a user
sees and ends their own sessions (README "Sessions"; :mod:`tokensmith.sessions`).

The caller is the ``sub`` of an access token for this issuer (``aud`` = the issuer, checked
like any resource server's, revocation included: RFC 6750 §3 challenges); its ``sid`` is the
current session. Another user's ``sid`` is a 404 with the same body as an id no one has:
the ownership check reads only the caller's own sessions. Browsers of cookie-mode clients'
origins get CORS, like ``/token``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokensmith.errors import TokensmithError
from tokensmith.facade import Tokensmith
from tokensmith.http.cookies import cors_headers
from tokensmith.http.errors import NO_STORE, OAuthError, error_response
from tokensmith.http.resource import BearerGuard, error_body
from tokensmith.http.resource_dpop import asgi_request
from tokensmith.http.threads import in_thread

_Operation = Callable[[Tokensmith, Request, dict[str, Any]], Response]


def _cors(request: Request, ts: Tokensmith) -> dict[str, str]:
    headers = cors_headers(request, ts.browser_origins())
    if headers:
        headers["Access-Control-Allow-Methods"] = "GET, DELETE, POST"
        headers["Access-Control-Allow-Headers"] = "authorization, dpop"
    return headers


def _run(operation: _Operation, request: Request) -> Response:
    """Authenticate the bearer token, run ``operation`` for its claims, add CORS."""
    ts: Tokensmith = request.app.state.tokensmith
    # Proofs name the URL clients use, which is the issuer's (as for /token, RFC 9449 §4.3).
    # These endpoints end sessions: a proof accepted here is refused at every other instance
    # too, as at /token (RFC 9449 §11.1; SECURITY D1).
    scope = ts.settings.sessions_scope
    guard = BearerGuard(
        audience=ts.settings.issuer,
        tokensmith=ts,
        realm="sessions",
        public_base_url=ts.settings.issuer,
        share_proofs=True,
        # A deployment may reserve these endpoints to tokens issued for them (README
        # "Sessions"): without the scope, 403 insufficient_scope.
        scopes=() if scope is None else (scope,),
    )
    try:
        claims = guard.authenticate_sync(
            request.headers.getlist("authorization"), request=asgi_request(request.scope)
        )
    except TokensmithError as exc:
        status, headers = guard.challenge(exc)
        response: Response = JSONResponse(
            error_body(exc), status_code=status, headers={**NO_STORE, **headers}
        )
    else:
        try:
            response = operation(ts, request, claims)
        except TokensmithError as exc:
            response = error_response(exc)
    response.headers.update(_cors(request, ts))
    return response


def _endpoint(operation: _Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await in_thread(_run, operation, request)

    endpoint.__name__ = operation.__name__
    return endpoint


def _current(claims: dict[str, Any]) -> str | None:
    sid = claims.get("sid")
    return sid if isinstance(sid, str) else None


def list_sessions(ts: Tokensmith, request: Request, claims: dict[str, Any]) -> Response:
    found = ts.user_sessions(claims["sub"], current=_current(claims))
    return JSONResponse({"sessions": [s.to_dict() for s in found]}, headers=NO_STORE)


def end_session(ts: Tokensmith, request: Request, claims: dict[str, Any]) -> Response:
    if not ts.end_user_session(claims["sub"], request.path_params["sid"]):
        raise OAuthError("not_found", "no such session", 404)
    return Response(status_code=204, headers=NO_STORE)


def end_other_sessions(ts: Tokensmith, request: Request, claims: dict[str, Any]) -> Response:
    ended = ts.end_other_user_sessions(claims["sub"], current=_current(claims))
    return JSONResponse({"ended": ended}, headers=NO_STORE)


async def preflight(request: Request) -> Response:
    ts: Tokensmith = request.app.state.tokensmith
    return Response(status_code=204, headers=await in_thread(_cors, request, ts))


ROUTES = [
    Route("/sessions", _endpoint(list_sessions), methods=["GET"]),
    Route("/sessions", preflight, methods=["OPTIONS"]),
    Route("/sessions/revoke-others", _endpoint(end_other_sessions), methods=["POST"]),
    Route("/sessions/revoke-others", preflight, methods=["OPTIONS"]),
    Route("/sessions/{sid}", _endpoint(end_session), methods=["DELETE"]),
    Route("/sessions/{sid}", preflight, methods=["OPTIONS"]),
]
