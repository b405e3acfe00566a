"""``tokensmith keys ...`` and ``token verify``: readable output, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokensmith.cli import cli

from .conftest import cli_env

ISSUER = "https://as.example.com"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_generate_then_list_shows_an_active_and_a_pending_key(env: dict[str, str]) -> None:
    code, out = run(env, "keys", "generate")
    assert code == 0 and "active" in out and "pending" in out
    code, out = run(env, "keys", "list", "--json")
    records = json.loads(out)
    assert code == 0 and sorted(r["state"] for r in records) == ["active", "pending"]
    assert all(r["alg"] == "ES256" for r in records)


def test_rotate_retires_the_active_key(env: dict[str, str]) -> None:
    run(env, "keys", "generate")
    code, out = run(env, "keys", "rotate")
    assert code == 0 and "is now active" in out
    states = sorted(r["state"] for r in json.loads(run(env, "keys", "list", "--json")[1]))
    assert states == ["active", "pending", "retired"]


def test_jwks_prints_public_keys_only(env: dict[str, str]) -> None:
    run(env, "keys", "generate")
    code, out = run(env, "keys", "jwks")
    body = json.loads(out)
    assert code == 0 and len(body["keys"]) == 2
    assert all("d" not in k for k in body["keys"])


def test_revoke_removes_a_key_from_the_jwks(env: dict[str, str]) -> None:
    run(env, "keys", "generate")
    kid = json.loads(run(env, "keys", "jwks")[1])["keys"][0]["kid"]
    code, out = run(env, "keys", "revoke", "--", kid)  # a kid may start with "-"
    assert code == 0 and "no longer published" in out
    assert kid not in run(env, "keys", "jwks")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("token", "verify", "not-a-jwt", "--no-check-revoked"), "invalid_token"),
        (("token", "verify", "a.b.c", "--no-check-revoked"), "invalid_token"),
    ],
    ids=["garbage token", "three garbage segments"],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    run(env, "keys", "generate")
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_bad_settings_are_a_one_line_error(env: dict[str, str]) -> None:
    code, out = run({**env, "TOKENSMITH_SIGNING_ALG": "HS256"}, "keys", "list")
    assert code == 1 and "signing_alg" in out and "Traceback" not in out


def test_the_installed_command_never_prints_a_traceback(env: dict[str, str]) -> None:
    exe = Path(sys.executable).with_name("tokensmith")
    full_env = {**os.environ, **env, "TOKENSMITH_ACCESS_TOKEN_TTL": "-5"}
    proc = subprocess.run(
        [str(exe), "keys", "list"], env=full_env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_an_unreachable_database_is_one_line_not_a_traceback(env: dict[str, str]) -> None:
    bad = {**env, "TOKENSMITH_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    exe = Path(sys.executable).with_name("tokensmith")
    proc = subprocess.run(
        [str(exe), "db", "upgrade"],
        env={**os.environ, **bad},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "OperationalError" in proc.stderr
