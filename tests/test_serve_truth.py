"""Issue #13 item 2, ``tokensmith serve``: the default issuer follows ``--port``, odd
schemes are refused, and ``--workers N --log-json`` logs JSON only, from every process.
One live server (a subprocess on 127.0.0.1, two workers, bounded in time)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import cli_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)


def test_workers_log_json_only_and_discovery_advertises_the_port(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, **cli_env(tmp_path)}
    env.pop("TOKENSMITH_ISSUER")  # the default issuer: it must follow --port
    exe = Path(sys.executable).with_name("tokensmith")
    subprocess.run([str(exe), "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [str(exe), "clients", "add", "spa", "--public", "--scope", "openid"],
        env=env,
        check=True,
        capture_output=True,
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--workers", "2", "--log-json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        discovery = _wait_for(f"{base}/.well-known/openid-configuration", proc, log).json()
        assert discovery["issuer"] == base and discovery["token_endpoint"] == f"{base}/token"
        issued = subprocess.run(
            [
                str(exe),
                "--issuer",
                base,
                *shlex.split("token issue --sub alice --client spa --json"),
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        refresh = json.loads(issued.stdout)["refresh_token"]
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "spa"}
        assert httpx.post(f"{base}/token", data=form, timeout=10).status_code == 200
        time.sleep(0.5)  # the worker's event line reaches the file
    finally:
        proc.terminate()
        proc.wait(20)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(rec["logger"].startswith("uvicorn") for rec in lines)
    assert any(rec.get("event") == "rotated" for rec in lines)  # logged by a worker


def _refused(env: dict[str, str], *args: str) -> str:
    """``serve`` must refuse at once; without the check it would start serving (the
    timeout ends it)."""
    exe = Path(sys.executable).with_name("tokensmith")
    proc = subprocess.run(
        [str(exe), "serve", "--port", str(_free_port()), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    return proc.stderr


def test_serve_refuses_an_issuer_that_is_not_http(tmp_path: Path) -> None:
    env = cli_env(tmp_path, issuer="ftp://auth.example.com")
    assert "must be an https:// URL" in _refused(env, "--insecure")


def test_serve_off_loopback_needs_an_issuer(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    assert "TOKENSMITH_ISSUER" in _refused({**env, "TOKENSMITH_ISSUER": ""}, "--host", "0.0.0.0")


def test_the_access_log_keeps_no_query_value(tmp_path: Path) -> None:
    """Found by attacking a live server: a client that put its secret or a token in the
    query string (RFC 6749 §2.3.1 and RFC 6750 §2.3 say not to) had it written to the
    access log. Each worker keeps the names and shows every value as ``…``."""
    port = _free_port()
    env = {**os.environ, **cli_env(tmp_path)}
    env["TOKENSMITH_ISSUER"] = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("tokensmith")
    subprocess.run([str(exe), "db", "upgrade"], env=env, check=True, capture_output=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--workers", "2", "--insecure"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    secret = "tss_QUERYSECRET0123456789"
    try:
        _wait_for(f"{base}/healthz", proc, log)
        httpx.post(f"{base}/token?client_id=spa&client_secret={secret}", timeout=10)
        httpx.get(f"{base}/revocations?since=0&client_secret={secret}", timeout=10)
        httpx.get(f"{base}/sessions?access_token={secret}", timeout=10)
        httpx.get(f"{base}/revocations?{secret}", timeout=10)  # no name at all
        time.sleep(0.5)  # the workers' access lines reach the file
    finally:
        proc.terminate()
        proc.wait(20)
    text = log.read_text()
    assert secret not in text
    assert '"GET /revocations?since=…&client_secret=… HTTP/1.1" 401' in text, text
    assert "/token?client_id=…&client_secret=…" in text
    assert '"GET /revocations?… HTTP/1.1" 401' in text
