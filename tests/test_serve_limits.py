"""No single client stalls ``tokensmith serve`` (SECURITY.md 4b B2; issue #11 item 2),
checked against live servers on loopback: an over-limit head gets 431, a slow head or body
408, idle connections are closed at the head deadline, connections past the limit get 503,
clients that never read their answers are reset at the send deadline or past the pipelining
cap, and under a header flood or 2,000 idle connections JWKS and refresh keep p99 < 200 ms.
Every attack is bounded in count and time; short deadlines keep the module near 20 s."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import cli_env
from tests.scale.cluster import ISSUER, Cluster, free_port
from tokensmith.http.limits import MAX_PIPELINED, ConnectionLimits, protocol_for
from tokensmith.settings import Settings

pytestmark = pytest.mark.slow

HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 1.0
SEND_TIMEOUT = 1.0
IDLE = 2000
FLOOD = 50
P99_BUDGET = 0.2
SAMPLES = 100
SLACK = 1.5  # scheduling slack on a busy 2-core machine, on top of each deadline
JWKS = "/.well-known/jwks.json"
FORM = b"content-type: application/x-www-form-urlencoded\r\n"


@dataclass
class Live:
    cluster: Cluster
    log_dir: Path
    metrics_port: int = 0

    @property
    def url(self) -> str:
        return self.cluster.urls[0]

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.cluster.ports[0])

    def log(self) -> str:
        return (self.log_dir / f"serve-{self.cluster.ports[0]}.log").read_text()


@contextlib.contextmanager
def live_serve(tmp_path: Path, *args: str, workers: int = 1) -> Iterator[Live]:
    """``tokensmith serve`` on a free loopback port, over SQLite in ``tmp_path``."""
    cluster = Cluster({**os.environ, **cli_env(tmp_path, issuer=ISSUER)})
    try:
        cluster.start(1, log_dir=tmp_path, workers=workers, args=args)
        yield Live(cluster, tmp_path)
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One server for the module (with a public client to refresh as): starting is slow."""
    tmp_path = tmp_path_factory.mktemp("serve-limits")
    metrics_port = free_port()
    args = (
        "--log-json",
        *("--header-timeout", str(HEAD_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)),
        *("--max-connections", str(IDLE + 500), "--metrics-port", str(metrics_port)),
    )
    with live_serve(tmp_path, *args) as live:
        live.cluster.cli("clients", "add", "spa", "--public", "--scope", "openid")
        live.metrics_port = metrics_port
        yield live


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def latencies(live: Live) -> tuple[float, float]:
    """p99 of JWKS and of refresh (each refresh rotating the last one's token), in s."""
    issued = live.cluster.cli("token", "issue", "--sub", "alice", "--client", "spa", "--json")
    refresh_token = json.loads(issued)["refresh_token"]
    jwks: list[float] = []
    refresh: list[float] = []
    # A stalled server fails fast rather than stretching the module.
    with httpx.Client(base_url=live.url, timeout=2.0) as client:
        for _ in range(SAMPLES):
            start = time.perf_counter()
            assert client.get(JWKS).status_code == 200
            jwks.append(time.perf_counter() - start)
        for _ in range(SAMPLES):
            form = {"grant_type": "refresh_token", "client_id": "spa"}
            start = time.perf_counter()
            r = client.post("/token", data={**form, "refresh_token": refresh_token})
            refresh.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
            refresh_token = r.json()["refresh_token"]
    return p99(jwks), p99(refresh)


def answer(sock: socket.socket, timeout: float) -> bytes:
    """What the server sent before closing (b"" for a bare close or a reset)."""
    sock.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(4096):
            received += chunk
    return received


def test_a_header_of_8_mib_is_answered_431(server: Live) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"GET " + JWKS.encode() + b" HTTP/1.1\r\nhost: x\r\nx-big: ")
        with contextlib.suppress(OSError):  # the server stops reading at the limit
            for _ in range(32):
                sock.sendall(b"a" * (256 * 1024))
        assert answer(sock, 5).startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("split", [False, True], ids=["one write", "blank line split"])
def test_a_head_under_the_limit_with_a_body_over_it_is_served(server: Live, split: bool) -> None:
    """Head bytes are counted up to the blank line, never the body read with them, even
    when the blank line straddles two reads."""
    body = b"grant_type=refresh_token&client_id=spa&refresh_token="
    body += b"x" * (16_300 - len(body))  # under the form limit; head + body over 16 KiB
    head = b"POST /token HTTP/1.1\r\nhost: x\r\n" + FORM
    head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if split:
            sock.sendall(head[:-1])
            time.sleep(0.2)  # the server reads the head's last byte with the body
        sock.sendall(head[-1:] + body if split else head + body)
        assert answer(sock, 5).startswith(b"HTTP/1.1 400 ")  # invalid_grant, not 431


def test_a_slow_head_and_a_slow_body_get_408(server: Live) -> None:
    with (
        socket.create_connection(server.address) as head,
        socket.create_connection(server.address) as body,
    ):
        head.sendall(b"GET " + JWKS.encode() + b" HTTP/1.1\r\nhost: x\r\n")
        body.sendall(b"POST /token HTTP/1.1\r\nhost: x\r\n" + FORM + b"content-length: 99\r\n\r\n")
        body.sendall(b"grant_type=")
        started = time.monotonic()
        assert answer(head, HEAD_TIMEOUT + SLACK).startswith(b"HTTP/1.1 408 ")
        assert answer(body, BODY_TIMEOUT + SLACK).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < HEAD_TIMEOUT + SLACK


def test_a_client_gone_mid_body_is_one_log_line(server: Live) -> None:
    line = '"message":"POST /token: client disconnected before sending its body"'
    before = server.log().count(line)
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"POST /token HTTP/1.1\r\nhost: x\r\n" + FORM + b"content-length: 99\r\n\r\n")
        sock.sendall(b"grant_type=")
    deadline = time.monotonic() + 5
    while server.log().count(line) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # anything else it would log comes with it
    log = server.log()
    assert log.count(line) == before + 1 and "Traceback" not in log


def test_metrics_are_on_the_loopback_metrics_port_not_the_public_one(server: Live) -> None:
    metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5)
    assert metrics.status_code == 200 and "tokensmith_request_seconds" in metrics.text
    assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 404


@dataclass
class Flood:
    """FLOOD connections sending an endless head: half in 256 KiB chunks, half trickling
    (100 bytes every 50 ms, under the size limit until the deadline). Each attacker
    reconnects when cut off, until stopped; ``cut`` holds (lifetime, answer) per cut."""

    address: tuple[str, int]
    stop: threading.Event = field(default_factory=threading.Event)
    cut: list[tuple[float, bytes]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Flood:
        for n in range(FLOOD):
            chunk, pause = (b"a" * (256 * 1024), 0.0) if n % 2 else (b"a" * 100, 0.05)
            thread = threading.Thread(target=self._attack, args=(chunk, pause), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(HEAD_TIMEOUT + 2 * SLACK)

    def _attack(self, chunk: bytes, pause: float) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            with socket.create_connection(self.address) as sock:
                sock.settimeout(HEAD_TIMEOUT + SLACK)  # a server that stops reading
                try:
                    sock.sendall(b"GET " + JWKS.encode() + b" HTTP/1.1\r\nx-flood: ")
                    while not self.stop.wait(pause):
                        sock.sendall(chunk)
                    continue  # stopped by the test, not cut by the server
                except OSError:
                    pass
                self.cut.append((time.monotonic() - started, answer(sock, SLACK)))
            self.stop.wait(0.1)  # a new attack ten times a second, per attacker


def test_a_header_flood_leaves_jwks_and_refresh_fast(server: Live) -> None:
    started = time.monotonic()
    with Flood(server.address) as flood:
        time.sleep(0.5)
        jwks, refresh = latencies(server)
        # Long enough for every trickling attacker to reach the head deadline.
        time.sleep(max(0.0, started + HEAD_TIMEOUT + 0.5 - time.monotonic()))
    assert max(jwks, refresh) < P99_BUDGET, (jwks, refresh)
    assert len(flood.cut) >= FLOOD, "every attacker is cut off at least once"
    assert all(life < HEAD_TIMEOUT + SLACK for life, _ in flood.cut)
    statuses = {reply[:12] for _, reply in flood.cut}
    assert statuses <= {b"HTTP/1.1 431", b"HTTP/1.1 408", b""}
    assert {b"HTTP/1.1 431", b"HTTP/1.1 408"} <= statuses


def raise_own_fd_limit(needed: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - the live tests run on Linux
        pytest.skip("RLIMIT_NOFILE is POSIX")
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard open-file limit {hard} is under {needed}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_2000_idle_connections_are_closed_and_leave_jwks_and_refresh_fast(
    server: Live,
) -> None:
    raise_own_fd_limit(IDLE + 256)
    opened = time.monotonic()
    idle = [socket.create_connection(server.address) for _ in range(IDLE)]
    try:
        jwks, refresh = latencies(server)
        assert max(jwks, refresh) < P99_BUDGET, (jwks, refresh)
        still_open = closed_by(idle, deadline=opened + HEAD_TIMEOUT + 2 * SLACK)
        assert still_open == 0
    finally:
        for sock in idle:
            sock.close()


def closed_by(socks: list[socket.socket], deadline: float) -> int:
    """How many of ``socks`` the server has not closed (EOF or reset) by ``deadline``."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        waiting = len(socks)
        while waiting and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                assert answer(sock, 1) == b""  # nothing to answer an idle connection
                selector.unregister(sock)
                waiting -= 1
        return waiting


def test_past_the_connection_limit_workers_answer_503_and_keep_serving(
    tmp_path: Path,
) -> None:
    """Two workers, each holding its own limits (passed to the spawned workers): head
    size, idle keep-alive, and connections."""
    limit, workers, attempts = 10, 2, 30
    args = ("--max-connections", str(limit), "--max-header-bytes", "1024", "--keep-alive", "1")
    with live_serve(tmp_path, *args, workers=workers) as live:
        with socket.create_connection(live.address) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 2048 + b"\r\n\r\n")
            assert answer(sock, 5).startswith(b"HTTP/1.1 431 ")
        with socket.create_connection(live.address) as sock:
            sock.sendall(b"GET " + JWKS.encode() + b" HTTP/1.1\r\nhost: x\r\n\r\n")
            started = time.monotonic()
            assert answer(sock, 1 + SLACK).startswith(b"HTTP/1.1 200 ")  # then idle: closed
            assert time.monotonic() - started < 1 + SLACK
        socks = [socket.create_connection(live.address) for _ in range(attempts)]
        try:
            time.sleep(1.0)
            with selectors.DefaultSelector() as selector:
                for sock in socks:
                    selector.register(sock, selectors.EVENT_READ)
                refused = [key.fileobj for key, _ in selector.select(1.0)]
            replies = [answer(sock, 1) for sock in refused]  # type: ignore[arg-type]
            assert len(replies) >= attempts - limit * workers
            assert all(r.startswith(b"HTTP/1.1 503 ") for r in replies), replies
        finally:
            for sock in socks:
                sock.close()
        time.sleep(0.3)
        assert all(proc.poll() is None for proc in live.cluster.procs)
        assert httpx.get(f"{live.url}{JWKS}", timeout=5).status_code == 200


def pipelined(address: tuple[str, int], requests: int) -> socket.socket:
    """A connection that pipelines ``requests`` OpenAPI documents (17 KB each) through a
    4 KiB receive buffer, so the server's writes stall unless it is read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    sock.sendall(b"GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n" * requests)
    return sock


def reset(sock: socket.socket, timeout: float) -> bool:
    """Whether the server resets ``sock`` within ``timeout`` (what it sent is discarded)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False  # a clean close: the server's buffer flushed, so the answers were read


def test_clients_that_pipeline_without_reading_are_reset_and_free_their_connections(
    tmp_path: Path,
) -> None:
    """FINDINGS 1 of the attack on 2026-12-02: 40 clients pipelining 400 requests each,
    never reading, held a 40-connection limit for over 60 s and everyone else got 503.
    A client that reads its pipelined answers, up to the cap, gets every one of them."""
    limit = 8
    args = (
        *("--log-json", "--send-timeout", str(SEND_TIMEOUT), "--keep-alive", "1"),
        *("--max-connections", str(limit)),
    )
    with live_serve(tmp_path, *args) as live:
        unread = [pipelined(live.address, 400) for _ in range(limit)]
        try:
            deadline = time.monotonic() + SEND_TIMEOUT + 10 * SLACK
            status = 503
            while status == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
                status = httpx.get(f"{live.url}/healthz", timeout=5).status_code
            assert status == 200
            assert all(reset(sock, SLACK) for sock in unread)
        finally:
            for sock in unread:
                sock.close()
        # The cap counts the requests queued behind the one being answered.
        with pipelined(live.address, MAX_PIPELINED + 1) as sock:
            assert answer(sock, 5).count(b"HTTP/1.1 200 OK\r\n") == MAX_PIPELINED + 1
        log = live.log()
        assert f"over {MAX_PIPELINED} pipelined requests: reset (1 since the last" in log
        assert "Traceback" not in log


async def _answer_60k(scope: Any, receive: Any, send: Any) -> None:
    body = b"x" * 60_000  # under the 64 KiB high-water mark, however little the kernel takes
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def small_buffer_server() -> Iterator[tuple[uvicorn.Server, tuple[str, int]]]:
    """uvicorn with the ``serve`` protocol, in this process, over a listener whose send
    buffer (inherited by the connections it accepts, Linux) is 4 KiB: the kernel takes
    little, so an unread answer stays in the transport's buffer under its high-water mark,
    where writing never pauses."""
    limits = ConnectionLimits.from_settings(
        Settings(issuer=ISSUER, send_timeout=SEND_TIMEOUT), None
    )
    config = uvicorn.Config(
        _answer_60k,
        http=protocol_for(limits),
        timeout_keep_alive=1,
        timeout_graceful_shutdown=1,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.05)
        yield server, listener.getsockname()
    finally:
        server.should_exit = server.force_exit = True
        thread.join(10)
        listener.close()


@pytest.mark.skipif(sys.platform != "linux", reason="accepted sockets inherit SO_SNDBUF")
def test_answers_left_unread_are_reset_at_the_send_deadline() -> None:
    """Ten pipelined answers take writing past the high-water mark, where it pauses. Under
    the mark it never pauses, but the close at keep-alive, or after a "connection: close"
    request, waits for the client to take the buffer."""
    request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    close = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    with small_buffer_server() as (server, address):
        unread = []
        for requests in (request * 10, request, close):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(address)
            sock.sendall(requests)
            unread.append(sock)
        try:
            deadline = time.monotonic() + 1 + SEND_TIMEOUT + 10 * SLACK
            # Each answered once (uvicorn counts an answer once written), then cut off.
            state = server.server_state
            while time.monotonic() < deadline and (
                state.total_requests < len(unread) or state.connections
            ):
                time.sleep(0.1)
            assert state.total_requests >= len(unread) and not state.connections
            assert all(reset(sock, SLACK) for sock in unread)
        finally:
            for sock in unread:
                sock.close()
