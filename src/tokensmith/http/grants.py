"""One handler per grant type of ``tokensmith.grants.GRANTS``, named after it: ``/token``
dispatches on ``HANDLERS`` (RFC 6749 §4.4 and §6). A grant row without a handler fails at
import, so the table and the handlers cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokensmith.clients import Client
from tokensmith.errors import InvalidRequest, InvalidScope
from tokensmith.facade import Tokensmith
from tokensmith.grants import GRANTS
from tokensmith.http.cookies import (
    COOKIE_NAME,
    check_browser_request,
    cors_headers,
    set_refresh_cookie,
)
from tokensmith.http.errors import NO_STORE
from tokensmith.http.forms import required
from tokensmith.refresh.service import RequestContext

GrantHandler = Callable[[Tokensmith, Request, dict[str, str], Client], Response]
# ``request.state`` attribute naming the refresh token a successful refresh consumed.
ROTATED = "rotated_token"


def _json(ts: Tokensmith, body: dict[str, Any], request: Request, client: Client) -> Response:
    headers = dict(NO_STORE)
    if client.cookie_mode:
        headers.update(cors_headers(request, set(client.allowed_origins)))
    nonce = ts.dpop.nonce()
    if nonce is not None:
        headers["DPoP-Nonce"] = nonce  # RFC 9449 §8.2: the next proof's nonce
    return JSONResponse(body, headers=headers)


def dpop_header(request: Request) -> list[str] | None:
    """Every value of the request's ``DPoP`` header (RFC 9449 §4.1), ``None`` without one."""
    return request.headers.getlist("dpop") or None


def refresh_token(
    ts: Tokensmith, request: Request, form: dict[str, str], client: Client
) -> Response:
    """RFC 6749 §6; in cookie mode the token travels in the ``__Host-`` cookie."""
    if client.cookie_mode:
        # Origin and CSRF are checked before anything else, so neither a cookie nor a
        # refresh_token form field can be used from a foreign page (SECURITY H4).
        check_browser_request(request, client)
        if "refresh_token" in form:
            raise InvalidRequest("this client sends its refresh token in the cookie")
        token = request.cookies.get(COOKIE_NAME, "")
        if not token:
            raise InvalidRequest("missing refresh token cookie")
    else:
        token = required(form, "refresh_token")
    scope = form.get("scope")
    if scope is not None and not client.allows_scope(scope):
        raise InvalidScope("scope not allowed for this client")
    context = RequestContext(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        received_at=request.state.received_at,
    )
    result = ts.refresh(
        token,
        client_id=client.client_id,
        scope=scope,
        context=context,
        dpop_proof=dpop_header(request),
    )
    setattr(request.state, ROTATED, token)
    body = result.to_dict()
    if not client.cookie_mode or result.refresh_token is None:
        return _json(ts, body, request, client)
    del body["refresh_token"]
    response = _json(ts, body, request, client)
    max_age = (result.refresh_expires_at or 0) - int(ts.clock.now())
    set_refresh_cookie(response, result.refresh_token, max_age)
    return response


def client_credentials(
    ts: Tokensmith, request: Request, form: dict[str, str], client: Client
) -> Response:
    """RFC 6749 §4.4: an access token for the client itself; no refresh token (§4.4.3)."""
    scope = " ".join(form.get("scope", "").split())
    if not client.allows_scope(scope):
        raise InvalidScope("scope not allowed for this client")
    audience = form.get("audience") or form.get("resource")
    if audience is None and len(client.audiences) == 1:
        # The one audience it is registered for is what such a client means (issue #13).
        audience = client.audiences[0]
    if audience is not None and not client.allows_audience(audience):
        raise InvalidRequest("audience not allowed for this client")
    result = ts.issue_client_token(
        client_id=client.client_id,
        scope=scope,
        audience=audience,
        dpop_proof=dpop_header(request),
    )
    return _json(ts, result.to_dict(), request, client)


def _handlers() -> dict[str, GrantHandler]:
    """Each grant's handler is the function of this module named after it, so adding a grant
    is one row in ``GRANTS`` and one function here; a row without one fails at import."""
    missing = [name for name in GRANTS if not callable(globals().get(name))]
    if missing:
        raise ImportError(f"no handler in tokensmith.http.grants for grant types {missing}")
    return {name: globals()[name] for name in GRANTS}


HANDLERS = _handlers()
