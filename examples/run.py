"""Run the example: the auth server + SPA on one port, the API on another.

    python -m examples.run [--host 127.0.0.1] [--auth-port 8000] [--api-port 8001]
                           [--access-token-ttl 30] [--data-dir DIR] [--dpop-nonces]

Environment: ``EXAMPLE_HOST``, ``EXAMPLE_AUTH_PORT``, ``EXAMPLE_API_PORT``,
``EXAMPLE_ACCESS_TOKEN_TTL``, ``EXAMPLE_DATA_DIR``, ``EXAMPLE_DPOP_NONCES=1``. Loopback
only: the demo login checks no password, and plain-HTTP ``Secure`` cookies work only on a
loopback origin. Port ``0`` picks a free port; a port in use is a one-line error naming it
and its flag.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette

from examples.fastapi_api.app import create_api, remote_keys
from examples.spa.auth_server import create_auth_app, register_spa_client
from tokensmith import Settings, Tokensmith


@dataclass
class Example:
    ts: Tokensmith
    auth_app: Starlette
    api_app: FastAPI
    auth_url: str
    api_url: str


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int, flag: str) -> socket.socket:
    """A socket bound to ``host:port`` (``0``: a free port) for uvicorn to serve on. Bound
    before the apps are built, because the issuer URL and the SPA's origin name the port."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        taken = f"{host}:{port} is not available ({exc.strerror})"
        raise ValueError(f"{taken}: pass {flag} PORT, or 0 for a free one") from None
    return sock


def build(
    *,
    host: str = "127.0.0.1",
    auth_port: int = 8000,
    api_port: int = 8001,
    data_dir: Path,
    access_token_ttl: int = 30,
    api_leeway: float = 0.0,
    dpop_nonces: bool = False,
) -> Example:
    """Both apps, ready to serve. The SPA's origin is the auth server's. ``dpop_nonces``:
    both servers require DPoP nonces (RFC 9449 §8, §9), each its own."""
    if not is_loopback(host):
        raise ValueError(f"{host!r} is not a loopback address; the example is loopback-only")
    auth_url = f"http://{host}:{auth_port}"
    api_url = f"http://{host}:{api_port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    ts = Tokensmith(
        Settings(
            issuer=auth_url,
            database_url=f"sqlite:///{data_dir / 'tokensmith.db'}",
            keys_dir=str(data_dir / "keys"),
            access_token_ttl=access_token_ttl,
            dpop_nonces=dpop_nonces,
        )
    )
    ts.setup()
    register_spa_client(ts, auth_url)
    auth_app = create_auth_app(ts, api_url=api_url)
    api_app = create_api(
        issuer=auth_url,
        keys=remote_keys(auth_url),
        allowed_origins=[auth_url],
        leeway=api_leeway,
        dpop_nonces=dpop_nonces,
    )
    return Example(ts, auth_app, api_app, auth_url, api_url)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m examples.run", description=__doc__.split("\n")[0])
    p.add_argument("--host", default=env("EXAMPLE_HOST", "127.0.0.1"))
    p.add_argument("--auth-port", type=int, default=int(env("EXAMPLE_AUTH_PORT", "8000")))
    p.add_argument("--api-port", type=int, default=int(env("EXAMPLE_API_PORT", "8001")))
    p.add_argument(
        "--access-token-ttl",
        type=int,
        default=int(env("EXAMPLE_ACCESS_TOKEN_TTL", "30")),
        help="seconds; short, so a silent refresh is easy to see (default 30)",
    )
    p.add_argument(
        "--data-dir",
        default=env("EXAMPLE_DATA_DIR"),
        help="SQLite database and keys (default: a temporary directory, removed at exit)",
    )
    p.add_argument(
        "--dpop-nonces",
        action="store_true",
        default=env("EXAMPLE_DPOP_NONCES", "") == "1",
        help="both servers require DPoP nonces (RFC 9449 §8, §9); the page retries with them",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    with tempfile.TemporaryDirectory(prefix="tokensmith-example-") as tmp, ExitStack() as stack:
        try:
            api_sock = stack.enter_context(listen(args.host, args.api_port, "--api-port"))
            auth_sock = stack.enter_context(listen(args.host, args.auth_port, "--auth-port"))
            example = build(
                host=args.host,
                auth_port=auth_sock.getsockname()[1],
                api_port=api_sock.getsockname()[1],
                data_dir=Path(args.data_dir or tmp),
                access_token_ttl=args.access_token_ttl,
                dpop_nonces=args.dpop_nonces,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        servers = [
            (uvicorn.Server(uvicorn.Config(app, log_level="info")), sock)
            for app, sock in ((example.api_app, api_sock), (example.auth_app, auth_sock))
        ]
        # Both servers run in threads (uvicorn installs no signal handlers there); the
        # main thread waits for Ctrl-C or SIGTERM and then stops both.
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        threads = [
            threading.Thread(target=s.run, kwargs={"sockets": [sock]}, daemon=True)
            for s, sock in servers
        ]
        for thread in threads:
            thread.start()
        print(f"SPA + auth server: {example.auth_url}/  (open this in a browser)", flush=True)
        print(f"API:               {example.api_url}/api/me", flush=True)
        print(f"access tokens live {args.access_token_ttl} s; Ctrl-C stops both", flush=True)
        while not stop.wait(0.5):
            if not all(t.is_alive() for t in threads):  # one failed
                break
        for server, _ in servers:
            server.should_exit = True
        for thread in threads:
            thread.join(10)
        if not all(s.started for s, _ in servers):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
