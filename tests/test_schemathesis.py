"""Schemathesis against a live ``tokensmith serve`` (issue #13 item 3): requests generated
from ``/openapi.json`` never get a 5xx, and every response conforms to the document
(status, content type, headers, body). Bounded: 50 examples per operation, one worker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import live_serve, make_tokensmith
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
    """A ``tokensmith serve`` over SQLite in ``tmp_path``, and the ``id:secret`` of a
    confidential client registered there."""
    ts = make_tokensmith(tmp_path, ManualClock(time.time()))
    _, secret = ts.register_client(
        "backend", confidential=True, scopes=("read", "write"), audiences=("api",)
    )
    with live_serve(tmp_path, "--no-schedule") as url:
        yield url, f"backend:{secret}"


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
            # An event stream never ends: tests/http/test_revocation_feed.py tests it.
            "--exclude-path",
            "/revocations/stream",
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
