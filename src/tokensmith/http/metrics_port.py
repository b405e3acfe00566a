"""``serve --metrics-port``: ``/metrics`` on a loopback listener of its own, so the
public token port never exposes them (docs/contract.md "Serving limits and operations")."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from tokensmith.http.metrics import Metrics


class MetricsListener:
    """A small uvicorn server in a thread of its own, for the life of a ``with`` block.
    Bound at construction, so a taken port fails ``serve`` before it starts."""

    def __init__(self, metrics: Metrics, port: int) -> None:
        self._socket = socket.create_server(("127.0.0.1", port))
        app = Starlette(routes=[Route("/metrics", metrics.endpoint, methods=["GET"])])
        # No log configuration of its own: the public server's already applies.
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="tokensmith-metrics",
            daemon=True,
        )

    def __enter__(self) -> MetricsListener:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
