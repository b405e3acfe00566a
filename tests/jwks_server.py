"""A real issuer-side JWKS endpoint for the resource-server suites.

``JwksServer.app`` is a Starlette app whose answer the test changes between requests
(serve keys, fail, redirect, send garbage) and which counts every request per path. It is
reached through an ``httpx`` transport (``client()``) or a live uvicorn on 127.0.0.1
(``live()``), never through a mock of our own code.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

JWKS_URL = "https://as.example.com/.well-known/jwks.json"


class SyncAsgiTransport(httpx.BaseTransport):
    """``httpx.ASGITransport`` for a sync client: each request runs the app on its own
    event loop (``RemoteJwks`` fetches from worker threads, never from the loop)."""

    def __init__(self, app: Starlette) -> None:
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> tuple[int, httpx.Headers, bytes]:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return response.status_code, response.headers, body

        status, headers, body = anyio.run(call)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


class JwksServer:
    def __init__(self, jwks: dict[str, Any] | None = None) -> None:
        self.jwks: dict[str, Any] = jwks or {"keys": []}
        self.status = 200
        self.cache_control: str | None = "public, max-age=600"
        self.raw_body: bytes | None = None  # sent instead of the JSON set when not None
        self.extra_headers: dict[str, str] = {}
        self.etag: str | None = None
        self.hits: Counter[str] = Counter()
        self.threads: list[int] = []  # the client's thread, per JWKS request
        self.explode = False  # raise inside the app: the client sees a non-HTTP error
        self.app = Starlette(
            routes=[
                Route("/.well-known/jwks.json", self._jwks),
                Route("/moved", self._moved),
            ]
        )

    @property
    def fetches(self) -> int:
        return self.hits["/.well-known/jwks.json"]

    async def _jwks(self, request: Request) -> Response:
        self.hits[request.url.path] += 1
        self.threads.append(threading.get_ident())
        if self.explode:
            raise RuntimeError("the JWKS endpoint blew up")
        headers = dict(self.extra_headers)
        if self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        if self.etag is not None:
            headers["ETag"] = self.etag
            if request.headers.get("if-none-match") == self.etag:
                return Response(status_code=304, headers=headers)
        body = self.raw_body
        if body is None:
            body = json.dumps(self.jwks).encode("utf-8")
        return Response(
            body, status_code=self.status, media_type="application/json", headers=headers
        )

    async def _moved(self, request: Request) -> Response:
        self.hits[request.url.path] += 1
        return RedirectResponse("/.well-known/jwks.json", status_code=302)

    def client(self) -> httpx.Client:
        """A sync ``httpx.Client`` whose transport calls ``app`` in-process."""
        return httpx.Client(transport=SyncAsgiTransport(self.app))

    @contextmanager
    def live(self) -> Iterator[str]:
        """Serve ``app`` on a real loopback socket; yields the JWKS URL (http://127.0.0.1).

        The socket is listening before uvicorn starts, so the first request queues in the
        backlog instead of racing the server's start-up (no sleeps)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, lifespan="off", ws="none", log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}/.well-known/jwks.json"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


@contextmanager
def dripping(answers: list[tuple[bytes, bytes, bytes]], interval: float) -> Iterator[str]:
    """A raw HTTP/1.1 server on 127.0.0.1 for clients that must not wait for ever: the n-th
    request (on any connection, keep-alive included) gets ``answers[n]`` = (sent at once,
    sent one byte per ``interval``, then sent at once). Yields the JWKS URL; each
    connection has its own thread, which stops when the client hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    pending = iter(answers)
    lock = threading.Lock()

    def send(conn: socket.socket, head: bytes, slow: bytes, tail: bytes) -> None:
        conn.sendall(head)
        for byte in slow:
            if stop.wait(interval):
                return
            conn.sendall(bytes([byte]))
        conn.sendall(tail)

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                while conn.recv(65536):  # one small GET per read
                    with lock:
                        answer = next(pending, None)
                    if answer is None:
                        return
                    send(conn, *answer)
            except OSError:
                return  # the client gave up: what the tests wait for

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/.well-known/jwks.json"
    finally:
        stop.set()
        listener.close()


def http_answer(body: bytes) -> bytes:
    """A complete 200 answer carrying ``body`` as a JWK Set."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Cache-Control: max-age=600\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
