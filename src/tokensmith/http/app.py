"""``create_app(ts)``: the Starlette application, an explicit routes list and handlers."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from tokensmith.errors import TokensmithError
from tokensmith.facade import Tokensmith
from tokensmith.http import endpoints, wellknown
from tokensmith.http.errors import handle_tokensmith_error, handle_unexpected


def create_app(ts: Tokensmith) -> Starlette:
    routes = [
        Route("/.well-known/jwks.json", wellknown.jwks, methods=["GET"]),
        Route(
            "/.well-known/openid-configuration",
            wellknown.openid_configuration,
            methods=["GET"],
        ),
        Route("/token", endpoints.token, methods=["POST"]),
        Route("/token", endpoints.preflight, methods=["OPTIONS"]),
        Route("/revoke", endpoints.revoke, methods=["POST"]),
        Route("/introspect", endpoints.introspect, methods=["POST"]),
        Route("/logout", endpoints.logout, methods=["POST"]),
        Route("/logout", endpoints.preflight, methods=["OPTIONS"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            TokensmithError: handle_tokensmith_error,
            Exception: handle_unexpected,
        },
    )
    app.state.tokensmith = ts
    return app
