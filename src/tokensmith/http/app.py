"""``create_app(ts)``: the Starlette application, an explicit routes list and handlers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from tokensmith.errors import TokensmithError
from tokensmith.facade import Tokensmith
from tokensmith.http import endpoints, health, metrics, openapi, sessions, wellknown
from tokensmith.http.errors import (
    handle_client_disconnect,
    handle_tokensmith_error,
    handle_unexpected,
)
from tokensmith.maintenance import Maintenance

# Set by ``serve --no-schedule --workers N`` for the worker processes it starts.
SCHEDULE_ENV = "TOKENSMITH_SERVE_SCHEDULE"


def create_app(
    ts: Tokensmith,
    *,
    maintenance: Maintenance | None = None,
    enable_metrics: bool | None = None,
) -> Starlette:
    """The service. ``maintenance`` runs (key schedule, cleanup) while the app is up.
    Metrics are collected when prometheus-client is installed (or when forced on) and kept
    in ``app.state.metrics``; ``/metrics`` is a route here only with
    ``settings.metrics_token`` (``tokensmith serve --metrics-port`` serves them otherwise)."""
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
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        *sessions.ROUTES,
    ]
    middleware: list[Middleware] = []
    collector: metrics.Metrics | None = None
    if enable_metrics if enable_metrics is not None else metrics.available():
        collector = metrics.Metrics()
        collector.attach(ts)
        token = ts.settings.metrics_token
        if token:
            routes.append(
                Route("/metrics", metrics.scrape_endpoint(collector, token), methods=["GET"])
            )
    described = openapi.endpoint(r.path for r in routes)
    routes.append(Route(openapi.PATH, described, methods=["GET"]))
    if collector is not None:
        paths = {r.path for r in routes}
        middleware.append(Middleware(metrics.LatencyMiddleware, metrics=collector, routes=paths))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if maintenance is not None:
            maintenance.start()
        try:
            yield
        finally:
            if maintenance is not None:
                maintenance.stop()

    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            TokensmithError: handle_tokensmith_error,
            ClientDisconnect: handle_client_disconnect,
            Exception: handle_unexpected,
        },
    )
    app.state.tokensmith = ts
    app.state.metrics = collector
    return app


def app_from_env() -> Starlette:
    """For ``uvicorn --factory tokensmith.http.app:app_from_env`` and ``serve --workers``:
    each worker process builds its app from ``TOKENSMITH_*``. Migrations and first keys
    are the parent's job (``tokensmith db upgrade`` / ``keys generate``), not the workers'."""
    from tokensmith.settings import Settings

    ts = Tokensmith(Settings.from_env())
    schedule = os.environ.get(SCHEDULE_ENV, "1") != "0"
    return create_app(ts, maintenance=Maintenance(ts) if schedule else None)
