"""``/token`` (RFC 6749 §6 and §4.4), ``/revoke`` (RFC 7009), ``/introspect`` (RFC 7662)
and ``/logout`` (cookie mode). Each reads the form on the event loop, then authenticates
the client, calls the facade and renders in one trip to the thread pool: authentication and
the operation may both touch the database, and each trip costs more than a cached client
lookup. Errors become RFC 6749 §5.2 bodies in ``errors.py``."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokensmith.clients import GRANT_TYPES, Client
from tokensmith.errors import InvalidRequest, InvalidScope
from tokensmith.facade import Tokensmith
from tokensmith.http.clientauth import authenticate
from tokensmith.http.cookies import (
    COOKIE_NAME,
    check_browser_request,
    clear_refresh_cookie,
    cors_headers,
    set_refresh_cookie,
)
from tokensmith.http.errors import NO_STORE, OAuthError
from tokensmith.http.forms import read_form, required
from tokensmith.http.serving import ARRIVED
from tokensmith.http.threads import in_thread
from tokensmith.refresh.service import RequestContext


def _ts(request: Request) -> Tokensmith:
    ts: Tokensmith = request.app.state.tokensmith
    return ts


def _context(request: Request) -> RequestContext:
    return RequestContext(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        received_at=request.state.received_at,
    )


def _client(request: Request, form: dict[str, str]) -> Client:
    ts = _ts(request)
    return authenticate(request, form, ts.clients, ts.clock.now())


_Handler = Callable[[Request, dict[str, str]], Response]
# ``request.state`` attribute naming the refresh token a successful refresh consumed.
ROTATED = "rotated_token"


def _received_at(request: Request, ts: Tokensmith) -> float:
    """When the request reached the server, by the facade's clock: stamped by the serving
    protocol when its first bytes were parsed, else (another ASGI server) now."""
    now = ts.clock.now()
    arrived = request.scope.get("state", {}).get(ARRIVED)
    return now if arrived is None else now - max(0.0, time.monotonic() - arrived)


def _form_endpoint(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint around ``handler``: the form is read on the event loop, the rest runs
    in one trip to the thread pool."""

    @functools.wraps(handler)  # the route keeps the handler's name (url_path_for)
    async def endpoint(request: Request) -> Response:
        ts = _ts(request)
        request.state.received_at = _received_at(request, ts)
        response = await in_thread(handler, request, await read_form(request))
        rotated: str | None = getattr(request.state, ROTATED, None)
        if rotated is not None:
            # Back on the event loop, which reads every request's first bytes before it
            # resumes this one: a refresh that arrives from now on was sent after the
            # winner's answer (SECURITY B3).
            ts.sessions.answered(rotated)
        return response

    return endpoint


def _json(body: dict[str, Any], request: Request, client: Client | None = None) -> Response:
    headers = dict(NO_STORE)
    if client is not None and client.cookie_mode:
        headers.update(cors_headers(request, set(client.allowed_origins)))
    return JSONResponse(body, headers=headers)


@_form_endpoint
def token(request: Request, form: dict[str, str]) -> Response:
    client = _client(request, form)
    grant_type = required(form, "grant_type")
    if grant_type not in GRANT_TYPES:
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    if grant_type not in client.grant_types:
        raise OAuthError("unauthorized_client", f"client may not use {grant_type}")
    if grant_type == "client_credentials":
        return _client_credentials(request, form, client)
    return _refresh(request, form, client)


def _refresh(request: Request, form: dict[str, str], client: Client) -> Response:
    ts = _ts(request)
    if client.cookie_mode:
        # Origin and CSRF are checked before anything else, so neither a cookie nor a
        # refresh_token form field can be used from a foreign page (SECURITY H4).
        check_browser_request(request, client)
        if "refresh_token" in form:
            raise InvalidRequest("this client sends its refresh token in the cookie")
        refresh_token = request.cookies.get(COOKIE_NAME, "")
        if not refresh_token:
            raise InvalidRequest("missing refresh token cookie")
    else:
        refresh_token = required(form, "refresh_token")
    scope = form.get("scope")
    if scope is not None and not client.allows_scope(scope):
        raise InvalidScope("scope not allowed for this client")
    result = ts.refresh(
        refresh_token, client_id=client.client_id, scope=scope, context=_context(request)
    )
    setattr(request.state, ROTATED, refresh_token)
    body = result.to_dict()
    if not client.cookie_mode or result.refresh_token is None:
        return _json(body, request, client)
    del body["refresh_token"]
    response = _json(body, request, client)
    max_age = (result.refresh_expires_at or 0) - int(ts.clock.now())
    set_refresh_cookie(response, result.refresh_token, max_age)
    return response


def _client_credentials(request: Request, form: dict[str, str], client: Client) -> Response:
    """RFC 6749 §4.4: an access token for the client itself; no refresh token (§4.4.3)."""
    ts = _ts(request)
    scope = " ".join(form.get("scope", "").split())
    if not client.allows_scope(scope):
        raise InvalidScope("scope not allowed for this client")
    audience = form.get("audience") or form.get("resource")
    if audience is not None and not client.allows_audience(audience):
        raise InvalidRequest("audience not allowed for this client")
    result = ts.issue_client_token(client_id=client.client_id, scope=scope, audience=audience)
    return _json(result.to_dict(), request, client)


@_form_endpoint
def revoke(request: Request, form: dict[str, str]) -> Response:
    """RFC 7009 §2.1-2.2: 200 for unknown or garbage tokens and for another client's token
    (telling them apart would leak which tokens exist); a wrong hint is ignored."""
    ts = _ts(request)
    client = _client(request, form)
    ts.revoke_token(required(form, "token"), client_id=client.client_id)
    return Response(status_code=200, headers=NO_STORE)


@_form_endpoint
def introspect(request: Request, form: dict[str, str]) -> Response:
    """RFC 7662: confidential clients only; an inactive token is exactly ``{"active": false}``."""
    ts = _ts(request)
    client = _client(request, form)
    if not client.confidential:
        raise OAuthError("invalid_client", "introspection needs a confidential client", 401)
    return JSONResponse(ts.introspect(required(form, "token")), headers=NO_STORE)


@_form_endpoint
def logout(request: Request, form: dict[str, str]) -> Response:
    """Cookie mode: revoke the cookie's family and expire the cookie."""
    ts = _ts(request)
    client = _client(request, form)
    if not client.cookie_mode:
        raise OAuthError("unauthorized_client", "logout is for cookie-mode clients")
    check_browser_request(request, client)
    refresh_token = request.cookies.get(COOKIE_NAME)
    if refresh_token:
        ts.revoke_refresh_token(refresh_token, client_id=client.client_id)
    response = Response(
        status_code=204,
        headers={**NO_STORE, **cors_headers(request, set(client.allowed_origins))},
    )
    clear_refresh_cookie(response)
    return response


async def preflight(request: Request) -> Response:
    """CORS preflight for cookie-mode clients' origins; any other origin gets no grant."""
    ts = _ts(request)
    origins = await in_thread(ts.browser_origins)
    return Response(status_code=204, headers=cors_headers(request, origins))
