"""``Deadline``: one wall-clock bound for a whole HTTP exchange made with httpx.

httpx's ``timeout`` bounds each connect, socket read and write on its own, so a server that
sends a byte (or a header line) now and then holds a request for as long as it likes. A
``Deadline`` shuts down, when it passes, the sockets that the exchange uses; that wakes a
read or write blocked on them, and httpx raises. The sockets come from httpcore's ``trace``
request extension (``extensions={"trace": deadline.trace}``), which reports each connection
as it is opened, so the client should not keep connections alive
(``httpx.Limits(max_keepalive_connections=0)``): a reused one is watched only from its
response's ``network_stream`` on. Name resolution, before any socket exists, is left to the
system resolver's own timeouts. Used by ``http/remote_jwks.py`` (a JWKS fetch) and
``logout/delivery.py`` (a back-channel logout POST).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress
from typing import Any

# httpcore trace events whose return value is the connection's network stream.
_CONNECTED = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})


class Deadline:
    """``seconds`` from now, for one exchange, as a context manager. Leaving it stops the
    watchdog timer and waits for it, so no thread outlives the exchange. An injected
    transport without sockets (httpx's ASGI one) is bounded only by checks of ``passed``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()
        self._timer.join()

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self._at

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` request extension: watch every connection the exchange
        opens."""
        if event in _CONNECTED:
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        """Watch a network stream's socket (a response's ``network_stream``, or one just
        connected); anything else is ignored."""
        sock = stream.get_extra_info("socket") if hasattr(stream, "get_extra_info") else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
        if self.passed:
            self._expire()

    def _expire(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            # socket.socket's own shutdown, not SSLSocket's: that one also drops the TLS
            # state that the reading thread is using.
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
