"""The uvicorn protocol ``serve`` uses turns Nagle's algorithm off on every connection, and
the connection limit fits in the process's open-file limit (live checks of the limits are in
``test_serve_limits.py``)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any

import pytest
from uvicorn.config import Config

from tokensmith.http.limits import (
    FD_HEADROOM,
    ConnectionLimits,
    ThrottledLog,
    raise_open_file_limit,
)
from tokensmith.http.serving import NoDelayHttpToolsProtocol
from tokensmith.settings import Settings


class _Transport:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {
            "socket": self._sock,
            "peername": ("127.0.0.1", 1),
            "sockname": ("127.0.0.1", 2),
        }.get(name, default)

    def is_closing(self) -> bool:
        return False


async def _app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - not called
    return None


def test_accepted_connections_from_a_proto_zero_listener_get_tcp_nodelay() -> None:
    asyncio.run(_check_nodelay())


async def _check_nodelay() -> None:
    """Inside a running loop, as uvicorn constructs its protocols."""
    # uvicorn's multi-worker listener is made like this: protocol number 0, so asyncio
    # leaves Nagle on for the connections it accepts.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == 0
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                config = Config(_app)
                config.load()
                protocol = NoDelayHttpToolsProtocol(
                    config=config, server_state=_State(), app_state={}
                )  # type: ignore[arg-type]
                protocol.connection_made(_Transport(accepted))  # type: ignore[arg-type]
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                assert client


class _State:
    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[Any] = set()
        self.tasks: set[Any] = set()
        self.default_headers: list[Any] = []


def test_the_connection_limit_leaves_descriptors_for_the_database_and_keys() -> None:
    settings = Settings(issuer="https://as.example.com", max_connections=1000)
    assert ConnectionLimits.from_settings(settings, None).max_connections == 1000
    assert ConnectionLimits.from_settings(settings, 1 << 16).max_connections == 1000
    lowered = ConnectionLimits.from_settings(settings, 600).max_connections
    assert lowered == 600 - FD_HEADROOM
    assert ConnectionLimits.from_settings(settings, 10).max_connections == 1


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_serve_raises_its_open_file_soft_limit_to_the_hard_one() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        raised = raise_open_file_limit()
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raised is not None and raised >= min(hard, 1 << 16) > 256
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_refusals_are_logged_at_most_once_a_second_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = ThrottledLog(clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="tokensmith.http.limits")
    for _ in range(500):  # a flood within one second: one line
        log(logging.WARNING, "connection limit 10: 503")
        now[0] += 0.001
    log(logging.INFO, "request head over 16384 B: 431")  # another kind has its own line
    now[0] += 1.0
    log(logging.WARNING, "connection limit 10: 503")
    assert [r.getMessage() for r in caplog.records] == [
        "connection limit 10: 503 (1 since the last such line)",
        "request head over 16384 B: 431 (1 since the last such line)",
        "connection limit 10: 503 (500 since the last such line)",
    ]
