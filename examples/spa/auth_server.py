"""The example's auth server: ``tokensmith.http.create_app(ts)`` (``/token``, ``/logout``,
the JWKS, ...) with three additions that exist only in this example:

- ``POST /demo/login`` — **DEMO ONLY, NOT AUTHENTICATION.** It signs in whoever names a
  username, with no password. A real deployment puts its own login (password, passkey,
  an upstream OpenID provider) here and then calls ``ts.issue`` the same way.
- ``GET /demo/config`` — tells the page its client id and where the API is.
- ``/`` — the SPA's static files (``static/``), served from the auth server's own origin
  so the ``__Host-`` refresh cookie is first-party and ``SameSite=Strict`` holds.

Tokens: the access token (and ID token) go to the page in the JSON body and live in its
memory only; the refresh token goes into the ``HttpOnly`` cookie and never reaches
JavaScript (``tokensmith.http.cookies``).
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

#: The SPA's public, cookie-mode client.
CLIENT_ID = "spa-demo"
SCOPE = "openid read"
STATIC_DIR = Path(__file__).resolve().parent / "static"
_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def register_spa_client(ts: Tokensmith, origin: str) -> None:
    """Register ``spa-demo`` (public, cookie mode, ``origin`` allowed) unless it exists."""
    if ts.clients.get_client(CLIENT_ID) is None:
        ts.register_client(
            CLIENT_ID, confidential=False, cookie_mode=True, allowed_origins=(origin,)
        )


async def demo_login(request: Request) -> Response:
    """DEMO ONLY: no password is checked. Start a session for ``username``."""
    ts: Tokensmith = request.app.state.tokensmith
    client = await run_in_threadpool(ts.clients.get_client, CLIENT_ID)
    if client is None:
        raise OAuthError("server_error", "the spa-demo client is not registered", 500)
    # The same Origin + CSRF-header rule as /token and /logout (no login CSRF either).
    check_browser_request(request, client)
    form = await read_form(request)
    username = form.get("username", "")
    if not _USERNAME.fullmatch(username):
        raise InvalidRequest("username: 1-64 of letters, digits, '.', '_', '@', '-'")
    result = await run_in_threadpool(
        lambda: ts.issue(
            subject=username,
            client_id=CLIENT_ID,
            scope=SCOPE,
            # The API, and this server's own GET /sessions ("your sessions" panel).
            audience=(AUDIENCE, ts.settings.issuer),
        )
    )
    body = result.to_dict()
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
        return JSONResponse({"client_id": CLIENT_ID, "api": api_url}, headers=dict(NO_STORE))

    # tokensmith's own routes stay first; the static mount at "/" is the catch-all.
    app.router.routes.extend(
        [
            Route("/demo/login", demo_login, methods=["POST"]),
            Route("/demo/config", config, methods=["GET"]),
            Mount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="spa"),
        ]
    )
    return app
