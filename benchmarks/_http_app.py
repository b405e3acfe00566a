"""The ASGI app that ``bench_http.py`` serves with uvicorn: tokensmith plus a constant route.

Built from the environment (``Settings.from_env``: ``TOKENSMITH_ISSUER``,
``TOKENSMITH_DATABASE_URL``, ``TOKENSMITH_KEYS_DIR``, ...), so the server process and the
benchmark's in-process facade use the same settings. The database and keys must already
exist (the benchmark runs ``setup()`` before it starts the server).

``/bench/constant`` is a plain Starlette endpoint with a small constant JSON body, added to
tokensmith's own app, so it is served by the same process, router and middleware stack
(error handlers, the metrics middleware): the limit the other rows are held to.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokensmith import Settings, Tokensmith
from tokensmith.http import create_app


async def constant(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "service": "tokensmith-bench"})


def build() -> Starlette:
    app = create_app(Tokensmith(Settings.from_env()))
    app.router.routes.insert(0, Route("/bench/constant", constant, methods=["GET"]))
    return app


app = build()
