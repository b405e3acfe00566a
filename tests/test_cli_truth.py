"""Issue #13 item 2: commands that tell the truth. Each test runs the real CLI (click's
CliRunner) against a real SQLite file, or the ASGI app over httpx."""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tokensmith import Settings
from tokensmith.cli import cli
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError, InvalidScope
from tokensmith.http import create_app

from .conftest import cli_env, make_tokensmith

ISSUER = "https://as.example.com"


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def ready(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path)
    assert run(env, "db", "upgrade")[0] == 0
    assert run(env, "keys", "generate")[0] == 0
    code, out = run(
        env, *shlex.split("clients add web --public --scope openid --scope read --aud api")
    )
    assert code == 0, out
    return env


def _issue(env: dict[str, str], *extra: str) -> tuple[int, str]:
    return run(env, "token", "issue", "--sub", "alice", "--json", *extra)


def test_token_issue_honours_the_client_registration(ready: dict[str, str]) -> None:
    code, out = _issue(ready, "--client", "nobody")
    assert code == 2 and "--unregistered" in out
    assert _issue(ready, "--client", "nobody", "--unregistered")[0] == 0
    code, out = _issue(ready, "--client", "web", "--scope", "openid", "--scope", "admin")
    assert code == 2 and "'admin' is not registered" in out
    code, out = _issue(ready, "--client", "web", "--aud", "other")
    assert code == 2 and "audience 'other'" in out
    code, out = _issue(ready, "--client", "web", "--scope", "openid", "--scope", "read")
    assert code == 0, out
    assert json.loads(out)["scope"] == "openid read"  # repeated --scope accumulates


@pytest.mark.parametrize("scope", ['read"write', "a\\b"])
def test_token_issue_refuses_a_scope_outside_rfc6749_syntax(
    ready: dict[str, str], scope: str, tmp_path: Path
) -> None:
    code, out = _issue(ready, "--client", "nobody", "--unregistered", "--scope", scope)
    assert code == 1 and "RFC 6749 §3.3" in out and len(out.strip().splitlines()) == 1
    (tmp_path / "lib").mkdir()
    ts = make_tokensmith(tmp_path / "lib", ManualClock(1_800_000_000), issuer=ISSUER)
    with pytest.raises(InvalidScope):
        ts.issue(subject="alice", client_id="any", scope=scope)


def test_revoking_nothing_exits_non_zero(ready: dict[str, str]) -> None:
    code, out = run(ready, "revoke", "--family", "no-such-family")
    assert code == 1 and "no active family no-such-family" in out
    code, out = run(ready, "revoke", "--token", "tsr_nosuchtoken")
    assert code == 1 and "no such active refresh token" in out


def test_revoking_an_unknown_kid_is_a_usage_error(ready: dict[str, str]) -> None:
    code, out = run(ready, "keys", "revoke", "nosuchkid")
    assert code == 2 and "no key with kid 'nosuchkid'" in out and "server_error" not in out


def test_config_errors_name_the_variable_and_the_form(ready: dict[str, str]) -> None:
    code, out = run({**ready, "TOKENSMITH_ACCESS_TOKEN_TTL": "5m"}, "keys", "list")
    assert code == 1
    assert out.strip() == "Error: TOKENSMITH_ACCESS_TOKEN_TTL='5m': expected whole seconds ≥ 1"
    code, out = run({**ready, "TOKENSMITH_SIGNING_ALG": "HS256"}, "keys", "list")
    assert code == 1 and "signing_alg" in out and "server_error" not in out


def test_an_unknown_variable_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    env = {"TOKENSMITH_ACCES_TOKEN_TTL": "60", "TOKENSMITH_TEST_PG_URL": "x"}
    with caplog.at_level(logging.WARNING, logger="tokensmith.settings"):
        Settings.from_env(env)
        Settings.from_env(env)
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["warning: TOKENSMITH_ACCES_TOKEN_TTL is not a tokensmith setting; ignored"]
    with pytest.raises(ConfigError, match="TOKENSMITH_LEEWAY='soon': expected a number"):
        Settings.from_env({"TOKENSMITH_LEEWAY": "soon"})


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_client_credentials_default_to_the_one_registered_audience(
    tmp_path: Path, anyio_backend: str
) -> None:
    ts = make_tokensmith(tmp_path, ManualClock(1_800_000_000), issuer=ISSUER)
    _, secret = ts.register_client("m2m", confidential=True, audiences=("api",))
    assert secret is not None
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        r = await http.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("m2m", secret)
        )
    body = r.json()
    assert r.status_code == 200
    assert ts.verify_access_token(body["access_token"], audience="api")["aud"] == "api"
    assert "scope" not in body  # never "scope": ""


@pytest.mark.postgres
def test_a_postgres_url_is_postgresql(tmp_path: Path) -> None:
    pg_url = os.environ.get("TOKENSMITH_TEST_PG_URL")
    if not pg_url:
        pytest.skip("TOKENSMITH_TEST_PG_URL is not set")
    env = {**cli_env(tmp_path), "TOKENSMITH_DATABASE_URL": "postgres://" + pg_url.split("://")[1]}
    code, out = run(env, "db", "upgrade")
    # Upgraded now or earlier, the database was reached as postgresql+psycopg.
    assert code == 0 and "postgresql+psycopg://" in out.splitlines()[-1], out


def test_a_missing_postgresql_driver_says_what_to_install(tmp_path: Path) -> None:
    url = "postgresql+pg8000://nobody@127.0.0.1:1/none"
    code, out = run({**cli_env(tmp_path), "TOKENSMITH_DATABASE_URL": url}, "db", "upgrade")
    assert code == 1 and "pip install 'tokensmith[postgres]'" in out


@pytest.mark.parametrize(
    "args", [("revoke", "--user", "x"), ("clients", "list"), ("families", "list", "--user", "x")]
)
def test_a_database_without_tables_says_run_db_upgrade(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = cli_env(tmp_path)
    assert run(env, "keys", "generate")[0] == 0
    code, out = run(env, *args)
    assert code == 1
    assert (
        out.strip() == "Error: the database has no tokensmith tables: run `tokensmith db upgrade`"
    )
