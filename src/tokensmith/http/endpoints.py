"""``/token`` (RFC 6749 §6 and §4.4), ``/revoke`` (RFC 7009), ``/introspect`` (RFC 7662)
and ``/logout`` (cookie mode). Each reads the form on the event loop, then authenticates
the client, calls the facade and renders in one trip to the thread pool: authentication and
the operation may both touch the database, and each trip costs more than a cached client
lookup. Errors become RFC 6749 §5.2 bodies in ``errors.py``."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokensmith.clients import Client
from tokensmith.errors import TokensmithError
from tokensmith.facade import Tokensmith
from tokensmith.grants import GRANTS
from tokensmith.http.clientauth import authenticate, require_resource_server
from tokensmith.http.cookies import (
    COOKIE_NAME,
    check_browser_request,
    clear_refresh_cookie,
    cors_headers,
)
from tokensmith.http.errors import NO_STORE, OAuthError, error_response
from tokensmith.http.forms import read_form, required
from tokensmith.http.grants import HANDLERS, ROTATED
from tokensmith.http.serving import ARRIVED
from tokensmith.http.threads import in_thread


def _ts(request: Request) -> Tokensmith:
    ts: Tokensmith = request.app.state.tokensmith
    return ts


def _client(request: Request, form: dict[str, str]) -> Client:
    ts = _ts(request)
    return authenticate(request, form, ts.clients, ts.clock.now())


_Handler = Callable[[Request, dict[str, str]], Response]


def _received_at(request: Request, ts: Tokensmith) -> float:
    """When the request reached the server, by the facade's clock: stamped by the serving
    protocol (``ARRIVED``), else (another ASGI server) now. Called once the body is read,
    when the stamp is final."""
    now = ts.clock.now()
    arrived = request.scope.get("state", {}).get(ARRIVED)
    return now if arrived is None else now - max(0.0, time.monotonic() - arrived)


def _form_endpoint(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint around ``handler``: the form is read on the event loop, the rest runs
    in one trip to the thread pool."""

    @functools.wraps(handler)  # the route keeps the handler's name (url_path_for)
    async def endpoint(request: Request) -> Response:
        ts = _ts(request)
        form = await read_form(request)
        request.state.received_at = _received_at(request, ts)
        response = await in_thread(handler, request, form)
        rotated: str | None = getattr(request.state, ROTATED, None)
        if rotated is not None:
            # Back on the event loop, which reads every request's bytes before it resumes
            # this one: a refresh that arrives from now on was sent after the winner's
            # answer (SECURITY B3).
            ts.sessions.answered(rotated)
        return response

    return endpoint


@_form_endpoint
def token(request: Request, form: dict[str, str]) -> Response:
    """RFC 6749 §3.2: dispatch on ``grant_type`` through the grant table (``http/grants.py``)."""
    client = _client(request, form)
    grant_type = required(form, "grant_type")
    if grant_type not in GRANTS:
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    if grant_type not in client.grant_types:
        raise OAuthError("unauthorized_client", f"client may not use {grant_type}")
    try:
        return HANDLERS[grant_type](_ts(request), request, form, client)
    except TokensmithError as exc:
        if not client.cookie_mode:
            raise
        # The page must read every error: a dead session (invalid_grant) is not a network
        # failure, a 503's Retry-After says when to retry, and a DPoP error's DPoP-Nonce
        # header is the nonce to retry with (RFC 9449 §8). Only the client's own origins
        # get CORS (cors_headers), so no other page reads anything.
        response = error_response(exc)
        response.headers.update(cors_headers(request, set(client.allowed_origins)))
        return response


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
    require_resource_server(client, ts.settings, "introspection")
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
