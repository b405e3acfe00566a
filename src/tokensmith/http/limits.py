"""Bounds on what one client can hold of ``tokensmith serve`` (SECURITY.md 4b B2).

httptools buffers a header until it ends and has no size limit: an endless header grew
without bound and stalled the event loop for every other client (refresh went from 2 ms
to 5 s median), and an 8 MiB header was served. uvicorn's httptools protocol has no read
deadline either, so an idle client held its connection, and a file descriptor, for ever.
Nor a write deadline: a client that pipelined requests and never read the answers held
its connection for ever too (uvicorn's ``drain`` waits without end, and closing a transport
waits for its buffer to flush), and 40 such clients filled a 40-connection limit.
:class:`BoundedHttpToolsProtocol` counts request-head bytes before httptools sees them
(431 past the limit), gives each head and each body a deadline (408, then close), cuts a
client that leaves its answers unread past a deadline or queues too many pipelined
requests (reset), and refuses connections past a per-process limit (503). Idle keep-alive
is uvicorn's own ``timeout_keep_alive``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import socket
import struct
import sys
import time
from asyncio import BaseTransport, TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from tokensmith.http.serving import NoDelayHttpToolsProtocol
from tokensmith.settings import Settings

logger = logging.getLogger("tokensmith.http.limits")

# Descriptors kept free of client connections: database connections, key files, logs,
# the metrics listener and the thread pool's own needs.
FD_HEADROOM = 128
# Requests one connection may have queued behind the one being answered. uvicorn stops
# reading when it queues one, but parses all of the read in hand: a 256 KiB read of minimal
# requests queued 14,500 of them, 4.3 MB per connection (measured). Browsers do not
# pipeline; a client that does retries what a closed connection left (RFC 9112 §9.3.2).
MAX_PIPELINED = 64
HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    send_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings, open_files: int | None) -> ConnectionLimits:
        """The limits of ``settings``, with the connection limit lowered to fit in
        ``open_files`` descriptors (None: unknown, no lowering) minus :data:`FD_HEADROOM`."""
        connections = settings.max_connections
        if open_files is not None:
            connections = max(1, min(connections, open_files - FD_HEADROOM))
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            send_timeout=settings.send_timeout,
            max_connections=connections,
        )


def raise_open_file_limit() -> int | None:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (inherited by uvicorn's
    worker processes); the soft limit now in force, or None where there is none to read."""
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one on Linux (capped by fs.nr_open).
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            logger.warning("could not raise the open-file limit above %d", soft)
    return None if soft == resource.RLIM_INFINITY else soft


def protocol_for(limits: ConnectionLimits) -> Callable[..., BoundedHttpToolsProtocol]:
    """What uvicorn's ``http=`` takes: a picklable factory, so ``--workers`` processes
    (spawned, handed the pickled config) enforce the same limits."""
    return functools.partial(BoundedHttpToolsProtocol, limits=limits)


def _response(status: bytes, error: str, description: str, extra: bytes = b"") -> bytes:
    # RFC 6749 §5.2-shaped, like every other error the service sends.
    body = json.dumps({"error": error, "error_description": description}).encode()
    return b"".join(
        (
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: application/json\r\ncache-control: no-store\r\n",
            extra,
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        )
    )


TOO_LARGE = _response(
    b"431 Request Header Fields Too Large", "invalid_request", "request header too large"
)
TIMED_OUT = _response(b"408 Request Timeout", "invalid_request", "request not received in time")
BUSY = _response(
    b"503 Service Unavailable",
    "temporarily_unavailable",
    "too many connections",
    b"retry-after: 1\r\n",
)


class ThrottledLog:
    """At most one line a second for each kind of refusal, counting the ones it stands
    for: a line per refused connection would hand an attacker the log to flood."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._unreported: dict[str, int] = {}

    def __call__(self, level: int, message: str) -> None:
        count = self._unreported.get(message, 0) + 1
        now = self._clock()
        if now - self._last.get(message, -math.inf) < 1.0:
            self._unreported[message] = count
            return
        self._last[message] = now
        self._unreported[message] = 0
        logger.log(level, "%s (%d since the last such line)", message, count)


_refusal = ThrottledLog()


@functools.cache
def _limits_from_env() -> ConnectionLimits:
    return ConnectionLimits.from_settings(Settings.from_env(), None)


class BoundedHttpToolsProtocol(NoDelayHttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ConnectionLimits`. Without ``limits``
    (``uvicorn --http tokensmith.http.limits:BoundedHttpToolsProtocol``) they come from
    ``TOKENSMITH_*``, as ``app_from_env`` builds the app."""

    def __init__(self, *args: Any, limits: ConnectionLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or _limits_from_env()
        self._reading_head = True
        self._head_bytes = 0
        self._last_chunk = b""
        self._head_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._send_timer: TimerHandle | None = None
        # The request whose answer is being written; ``self.cycle`` is the last one parsed,
        # which differs while others wait in uvicorn's ``pipeline``.
        self._answering: RequestResponseCycle | None = None

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        # self.connections is the server's set (uvicorn ServerState), this one included.
        if len(self.connections) > self.limits.max_connections:
            _refusal(logging.WARNING, f"connection limit {self.limits.max_connections}: 503")
            self._close_with(BUSY)
            return
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        _cancel(self._send_timer)
        self._send_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes and not self._head_fits(data):
                _refusal(logging.INFO, f"request head over {self.limits.max_header_bytes} B: 431")
                self._close_with(TOO_LARGE)
                return
            self._last_chunk = data
        super().data_received(data)
        # A deadline only for what this read left unfinished: a whole request in one read,
        # the common case, arms no timer (the keep-alive timer covers the wait after it).
        if self._reading_head:
            if self._head_bytes and self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)
        elif self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)
        if self.transport.is_closing():  # uvicorn's 400 for a bad request, say
            self._watch_unsent()

    def _head_fits(self, data: bytes) -> bool:
        """Whether the head ends within ``data`` inside the limit (the rest is body or
        the next request). Only reached past the limit, so the search is off the fast
        path; the previous chunk's tail covers a terminator split between two reads."""
        tail = self._last_chunk[-3:]
        end = (tail + data).find(HEAD_END)
        if end < 0:
            return False
        before = self._head_bytes - len(data) - len(tail)
        return before + end + len(HEAD_END) <= self.limits.max_header_bytes

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._last_chunk = b""
        _cancel(self._head_timer)
        self._head_timer = None
        if self.transport.is_closing():
            # Cut off below with more of the read still to parse. A closing transport
            # starts no queued request (uvicorn's on_response_complete): queue none.
            return
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:
            _refusal(logging.INFO, f"over {MAX_PIPELINED} pipelined requests: reset")
            self._reset()

    def on_message_complete(self) -> None:
        self._reading_head = True
        _cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    def _head_late(self) -> None:
        self._head_timer = None
        if self._head_bytes:
            _refusal(logging.INFO, f"request head late ({self.limits.header_timeout} s): 408")
            self._close_with(TIMED_OUT)
        else:  # an idle connection: nothing to answer
            self._close_with(b"")

    def _body_late(self) -> None:
        self._body_timer = None
        _refusal(logging.INFO, f"request body late ({self.limits.body_timeout} s): 408")
        answered = self.cycle is not None and self.cycle.response_started
        _disconnect(self.cycle)
        self._close_with(b"" if answered else TIMED_OUT)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._answering = cycle
        super()._start_asgi_task(cycle, app)

    def pause_writing(self) -> None:
        """The transport's buffer is over its high-water mark: the client must take what
        is over the low-water mark (asyncio's defaults: 64 and 16 KiB) within the send
        deadline, counted from now."""
        super().pause_writing()
        _cancel(self._send_timer)
        self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_late)

    def resume_writing(self) -> None:
        _cancel(self._send_timer)  # the client reads: what is left is watched from here on
        self._send_timer = None
        super().resume_writing()
        self._watch_unsent()

    def on_response_complete(self) -> None:
        # The answer is written, maybe not sent: if uvicorn closed the transport (a
        # "connection: close" request) or will at keep-alive, the close waits for the
        # buffer to flush, for ever if the client reads nothing.
        super().on_response_complete()
        self._watch_unsent()

    def _watch_unsent(self) -> None:
        if self._send_timer is None and self.transport.get_write_buffer_size():
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_late)

    def _send_late(self) -> None:
        self._send_timer = None
        if not self.transport.get_write_buffer_size():
            return
        if not (self.flow.write_paused or self.transport.is_closing()):
            # Under the high-water mark on an open connection: the application may still
            # write, or the keep-alive timer will close it, and then this deadline holds.
            self._watch_unsent()
            return
        _refusal(logging.INFO, f"response unread for {self.limits.send_timeout} s: reset")
        self._reset()

    def _reset(self) -> None:
        # Before abort(): connection_lost wakes the answering request's drain (and marks
        # only self.cycle, the last one parsed), and its next write to the closed
        # transport would raise (uvloop) and log a traceback.
        _disconnect(self._answering)
        # Not close(): that waits for the client to take the buffer. Nor a bare abort():
        # the kernel would still hold its own send buffer (2.8 MB measured on loopback)
        # for the client; a zero linger discards it with a reset, as nginx's
        # reset_timedout_connection does. The requests pipelined behind the one answered
        # are dropped (RFC 9112 §9.3.2: the client retries them).
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _close_with(self, response: bytes) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            if response:
                self.transport.write(response)
            self.transport.close()
        self._watch_unsent()

    def _cancel_timers(self) -> None:
        _cancel(self._head_timer)
        _cancel(self._body_timer)
        self._head_timer = self._body_timer = None


def _disconnect(cycle: RequestResponseCycle | None) -> None:
    """As uvicorn does on a lost connection: the app's receive() now reports
    http.disconnect and anything it still sends is dropped."""
    if cycle is not None:
        cycle.disconnected = True
        cycle.message_event.set()


def _cancel(timer: TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()
