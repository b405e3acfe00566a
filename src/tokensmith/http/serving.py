"""uvicorn glue: the HTTP protocol ``tokensmith serve`` runs.

httptools' parser rather than h11's: a constant route serves about 2.5x the requests per
second here, and a refresh over HTTP about 1.15x (``benchmarks/bench_http.py``).

uvicorn's multi-worker mode binds the listening socket itself with protocol number 0,
and asyncio only turns Nagle's algorithm off for sockets whose protocol is TCP. Accepted
connections then wait for delayed ACKs: every response took ~44 ms with ``--workers 2``
(1 ms with one worker), measured here. This protocol disables Nagle on every accepted
TCP connection, whichever way the listening socket was made.

It also stamps each request when it arrived (``ARRIVED``, monotonic): the event loop reads
a request's bytes before it resumes any endpoint, so a refresh that reached the server
before another one's answer was sent is known as such (SECURITY B3). A request arrives
with its first byte, but no earlier than :data:`SPREAD` before its last: the refresh token
is in the body, and a client that sent a head early and the body long after a rotation was
answered was judged concurrent, so reuse of a stolen token went unseen for as long as the
head and body deadlines let it wait. The bytes of one request from a real client come
within milliseconds of each other.
"""

from __future__ import annotations

import contextlib
import socket
import time
from asyncio import BaseTransport

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The request's ``scope["state"]`` key holding its arrival time (``time.monotonic()``).
ARRIVED = "tokensmith.arrived"
# Seconds a request's first byte may date it before its last byte arrived.
SPREAD = 1.0


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["state"][ARRIVED] = time.monotonic()

    def on_message_complete(self) -> None:
        state = self.scope["state"]
        state[ARRIVED] = max(state[ARRIVED], time.monotonic() - SPREAD)
        super().on_message_complete()
