"""``create_app(ts)``: the Starlette application with an explicit routes list."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from tokensmith.facade import Tokensmith
from tokensmith.http import wellknown


def create_app(ts: Tokensmith) -> Starlette:
    routes = [
        Route("/.well-known/jwks.json", wellknown.jwks, methods=["GET"]),
        Route(
            "/.well-known/openid-configuration",
            wellknown.openid_configuration,
            methods=["GET"],
        ),
    ]
    app = Starlette(routes=routes)
    app.state.tokensmith = ts
    return app
