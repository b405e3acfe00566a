"""Prometheus metrics (optional: ``pip install tokensmith[metrics]``).

Counters for every event (issued, rotated, reuse detected, revoked, key rotated) fed by
an event hook, errors by OAuth code, and a latency histogram per route. Each app gets
its own registry so several apps (and tests) in one process never collide. They are
served on a loopback port of their own (``metrics_port.py``), or on the public port only
to a scraper holding ``metrics_token`` (:func:`scrape_endpoint`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokensmith.events import Event

if TYPE_CHECKING:
    from tokensmith.facade import Tokensmith


def available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.events = Counter(
            "tokensmith_events",
            "Token lifecycle events by name.",
            ["event"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tokensmith_errors",
            "Error responses by OAuth error code.",
            ["error"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tokensmith_request_seconds",
            "Request latency by route and status class.",
            ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def attach(self, ts: Tokensmith) -> None:
        ts.on_event(self.on_event)

    def on_event(self, event: Event) -> None:
        self.events.labels(event.name).inc()

    def count_error(self, error: str) -> None:
        self.errors.labels(error).inc()

    async def endpoint(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def scrape_endpoint(metrics: Metrics, token: str) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics`` on the public port, for ``Authorization: Bearer <token>`` only
    (RFC 6750 §2.1; the token compared in constant time, §3 error otherwise)."""
    expected = token.encode()

    async def endpoint(request: Request) -> Response:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), expected):
            return await metrics.endpoint(request)
        return JSONResponse(
            {"error": "invalid_token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
        )

    return endpoint


class LatencyMiddleware:
    """Pure ASGI: times each HTTP request under its route path (never the raw URL, which
    could carry anything and would explode the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            route = path if path in self.routes else "other"
            self.metrics.latency.labels(route, f"{status['code'] // 100}xx").observe(
                time.perf_counter() - start
            )
