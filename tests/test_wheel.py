"""The built wheel works as a user installs it: in a clean venv, without the dev packages.

``make run`` and the rest of the suite use ``.venv``, where ``requirements-dev.txt`` brings
httpx, FastAPI, psycopg and more, so a runtime import of a dev-only package goes unseen
there (issue #13, item 1). These tests build the wheel, ``pip install`` it into a fresh
venv (its runtime dependencies come from the package index) and run the commands an
operator runs first: ``--version``, ``db upgrade``, ``keys generate`` and ``serve``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import tokensmith

from .scale.cluster import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TOKENSMITH_TEST_PG_URL")
INSTALL_TIMEOUT = 300
COMMAND_TIMEOUT = 60
# The pinned hatchling of the dev venv builds the wheel: no build environment to download.
PIP_WHEEL = (sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q")


REQUIRE_TOKEN_WITHOUT_FASTAPI = """
from tokensmith import ConfigError
from tokensmith.http.fastapi import require_token
try:
    require_token()
except ConfigError as exc:
    print(exc.description)
"""


def _progress(message: str) -> None:
    print(f"[test_wheel] {message}", file=sys.stderr, flush=True)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without the dev venv's traces, so nothing of it leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env = {k: v for k, v in env.items() if not k.startswith("TOKENSMITH_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return {**env, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _progress("building the wheel")
    subprocess.run(
        [*PIP_WHEEL, "-w", str(out), str(ROOT)],
        check=True,
        timeout=INSTALL_TIMEOUT,
        env=_clean_env(),
    )
    (built,) = out.glob("tokensmith-*.whl")
    return built


def _venv(where: Path, requirement: str) -> Path:
    """A fresh venv in ``where`` with only ``requirement`` and its dependencies; its bin/."""
    _progress(f"installing {requirement} into a clean venv")
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=COMMAND_TIMEOUT)
    bin_dir = where / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", requirement],
        check=True,
        timeout=INSTALL_TIMEOUT,
        env=_clean_env(),
        cwd=where,
    )
    return bin_dir


def _tokensmith(
    bin_dir: Path, *args: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    _progress(f"tokensmith {' '.join(args)}")
    return subprocess.run(
        [str(bin_dir / "tokensmith"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict[str, object] = json.load(response)
        return body


def _serve_and_fetch(bin_dir: Path, env: dict[str, str], cwd: Path) -> None:
    """``tokensmith serve`` on a free loopback port; discovery and JWKS answer."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {**env, "TOKENSMITH_ISSUER": issuer}
    log = cwd / "serve.log"
    _progress(f"tokensmith serve on {issuer}")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "tokensmith"), "serve", "--port", str(port), "--no-schedule"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            assert proc.poll() is None, log.read_text("utf-8", "replace")
            try:
                discovery = _get_json(f"{issuer}/.well-known/openid-configuration")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text("utf-8", "replace")
                time.sleep(0.2)
        assert discovery["issuer"] == issuer
        jwks = _get_json(str(discovery["jwks_uri"]))
        keys = jwks["keys"]
        assert isinstance(keys, list) and keys
        assert all("d" not in key for key in keys)
    finally:
        proc.terminate()
        proc.wait(timeout=COMMAND_TIMEOUT)


def test_the_wheel_installs_and_serves_without_dev_packages(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path / "venv", str(wheel))
    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env(
        TOKENSMITH_DATABASE_URL=f"sqlite:///{work / 'ts.db'}",
        TOKENSMITH_KEYS_DIR=str(work / "keys"),
    )
    # No FastAPI here: require_token says which extra brings it.
    fastapi = subprocess.run(
        [str(bin_dir / "python"), "-c", REQUIRE_TOKEN_WITHOUT_FASTAPI],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert fastapi.stdout.strip() == "fastapi is not installed: pip install 'tokensmith[fastapi]'"

    version = _tokensmith(bin_dir, "--version", env=env, cwd=work)
    assert version.stdout.strip() == f"tokensmith {tokensmith.__version__}", version
    for args in (("db", "upgrade"), ("keys", "generate")):
        result = _tokensmith(bin_dir, *args, env=env, cwd=work)
        assert result.returncode == 0, result.stderr
    _serve_and_fetch(bin_dir, env, work)

    # PostgreSQL without the extra: one line naming it, no traceback.
    no_driver = _tokensmith(
        bin_dir,
        "db",
        "upgrade",
        env={**env, "TOKENSMITH_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:9/db"},
        cwd=work,
    )
    assert no_driver.returncode != 0
    assert no_driver.stderr.strip().splitlines() == [
        "Error: the PostgreSQL driver 'psycopg' is not installed: "
        "pip install 'tokensmith[postgres]'"
    ], no_driver.stderr


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards."""
    if not PG_URL:
        pytest.skip("TOKENSMITH_TEST_PG_URL is not set: PostgreSQL case not run")
    schema = f"wheel_{secrets.token_hex(4)}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.mark.postgres
def test_the_postgres_extra_upgrades_a_database(
    wheel: Path, pg_schema: str, tmp_path: Path
) -> None:
    assert PG_URL is not None
    bin_dir = _venv(tmp_path / "venv", f"tokensmith[postgres] @ {wheel.as_uri()}")
    separator = "&" if "?" in PG_URL else "?"
    env = _clean_env(
        TOKENSMITH_DATABASE_URL=f"{PG_URL}{separator}options=-csearch_path%3D{pg_schema}",
        TOKENSMITH_KEYS_DIR=str(tmp_path / "keys"),
    )
    result = _tokensmith(bin_dir, "db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = create_engine(PG_URL)
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": pg_schema}
        ).scalar_one()
    engine.dispose()
    assert tables > 0
