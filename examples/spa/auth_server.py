"""The example's auth server: ``tokensmith.http.create_app(ts)`` (``/token``, ``/logout``,
the JWKS, ...) with three additions that exist only in this example:

- ``POST /demo/login`` — **DEMO ONLY, NOT AUTHENTICATION.** It signs in whoever names a
  username, with no password. A real deployment puts its own login (password, passkey,
  an upstream OpenID provider) here and then calls ``ts.issue`` the same way: with the
  page's DPoP proof, so the new session is bound to the page's key (RFC 9449 §5).
- ``GET /demo/config?mode=cookie|body`` — tells the page its client id and where the API is.
- ``/`` — the SPA's static files (``static/``), served from the auth server's own origin
  so the ``__Host-`` refresh cookie is first-party and ``SameSite=Strict`` holds.

Tokens are DPoP-bound: both clients are registered ``dpop_bound_access_tokens``, so every
token request must carry a proof of the page's key. The access token (and ID token) go to
the page in the JSON body and live in its memory only. The refresh token goes, in cookie
mode (``spa-demo``), into the ``HttpOnly`` cookie and never reaches JavaScript
(``tokensmith.http.cookies``); in body mode (``spa-demo-body``) to the page, which keeps
it in IndexedDB next to its key.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from examples.fastapi_api.app import AUDIENCE
from tokensmith.errors import InvalidRequest
from tokensmith.facade import Tokensmith
from tokensmith.http import create_app
from tokensmith.http.cookies import check_browser_request, set_refresh_cookie
from tokensmith.http.errors import NO_STORE, OAuthError
from tokensmith.http.forms import read_form

#: The SPA's public clients, by where the refresh token is kept (``?mode=`` of the page).
CLIENTS = {"cookie": "spa-demo", "body": "spa-demo-body"}
CLIENT_ID = CLIENTS["cookie"]
SCOPE = "openid read"
STATIC_DIR = Path(__file__).resolve().parent / "static"
_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def register_spa_client(ts: Tokensmith, origin: str) -> None:
    """Register the two public, DPoP-bound clients (``origin`` allowed) unless they exist."""
    for mode, client_id in CLIENTS.items():
        if ts.clients.get_client(client_id) is None:
            ts.register_client(
                client_id,
                confidential=False,
                cookie_mode=mode == "cookie",
                allowed_origins=(origin,),
                dpop_bound_access_tokens=True,
            )


def _client_id(mode: str) -> str:
    if mode not in CLIENTS:
        raise InvalidRequest(f"mode: one of {', '.join(CLIENTS)}")
    return CLIENTS[mode]


async def demo_login(request: Request) -> Response:
    """DEMO ONLY: no password is checked. Start a session for ``username``, bound to the
    key of the request's DPoP proof."""
    ts: Tokensmith = request.app.state.tokensmith
    form = await read_form(request)
    client_id = _client_id(form.get("mode", "cookie"))
    client = await run_in_threadpool(ts.clients.get_client, client_id)
    if client is None:
        raise OAuthError("server_error", f"the {client_id} client is not registered", 500)
    # The same Origin + CSRF-header rule as /token and /logout (no login CSRF either).
    check_browser_request(request, client)
    username = form.get("username", "")
    if not _USERNAME.fullmatch(username):
        raise InvalidRequest("username: 1-64 of letters, digits, '.', '_', '@', '-'")
    result = await run_in_threadpool(
        lambda: ts.issue(
            subject=username,
            client_id=client_id,
            scope=SCOPE,
            # The API, and this server's own GET /sessions ("your sessions" panel).
            audience=(AUDIENCE, ts.settings.issuer),
            dpop_proof=request.headers.get("dpop"),
            htm=request.method,
            htu=str(request.url),
        )
    )
    body = result.to_dict()
    if not client.cookie_mode:
        return JSONResponse(body, headers=dict(NO_STORE))
    body.pop("refresh_token", None)  # the cookie carries it; the page never sees it
    response = JSONResponse(body, headers=dict(NO_STORE))
    if result.refresh_token is not None:
        max_age = (result.refresh_expires_at or 0) - int(ts.clock.now())
        set_refresh_cookie(response, result.refresh_token, max_age)
    return response


def create_auth_app(ts: Tokensmith, *, api_url: str) -> Starlette:
    """tokensmith's app plus the demo routes and the SPA, all on one origin.
    Register the client first (``register_spa_client``)."""
    app = create_app(ts)

    async def config(request: Request) -> Response:
        mode = request.query_params.get("mode", "cookie")
        body = {"client_id": _client_id(mode), "mode": mode, "api": api_url}
        return JSONResponse(body, headers=dict(NO_STORE))

    # tokensmith's own routes stay first; the static mount at "/" is the catch-all.
    app.router.routes.extend(
        [
            Route("/demo/login", demo_login, methods=["POST"]),
            Route("/demo/config", config, methods=["GET"]),
            Mount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="spa"),
        ]
    )
    return app
