"""Schemathesis against a live ``tokensmith serve`` (issue #13 item 3): requests generated
from ``/openapi.json`` never get a 5xx, and every response conforms to the document
(status, content type, headers, body). Bounded: 50 examples per operation, one worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import cli_env, make_tokensmith
from tests.scale.cluster import free_port, tokensmith_exe
from tokensmith import ManualClock

pytest.importorskip("schemathesis")

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ``tokensmith serve`` on a free loopback port over SQLite in ``tmp_path``, and the
    ``id:secret`` of a confidential client registered there."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ts = make_tokensmith(tmp_path, ManualClock(time.time()), issuer=url)
    _, secret = ts.register_client(
        "backend", confidential=True, scopes=("read", "write"), audiences=("api",)
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [tokensmith_exe(), "serve", "--port", str(port), "--no-schedule"],
            env={**os.environ, **cli_env(tmp_path, issuer=url)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        yield url, f"backend:{secret}"
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_live_service_conforms_to_its_openapi_document(
    live: tuple[str, str], tmp_path: Path
) -> None:
    url, credentials = live
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            "50",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--auth",
            credentials,
            "--seed",
            "13",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
