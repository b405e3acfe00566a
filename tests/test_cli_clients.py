"""``tokensmith clients add|list``: the secret is shown once and stored only as a hash."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokensmith.cli import cli

from .conftest import cli_env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path)
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    return env


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_confidential_client_secret_is_printed_once_and_stored_hashed(
    env: dict[str, str], tmp_path: Path
) -> None:
    code, out = run(env, "clients", "add", "backend", "--confidential", "--json")
    body = json.loads(out)
    assert code == 0 and body["client_id"] == "backend" and body["type"] == "confidential"
    secret = body["client_secret"]
    assert secret.startswith("tss_") and len(secret) >= 4 + 43  # 256 bits
    with sqlite3.connect(tmp_path / "ts.db") as db:
        (stored,) = db.execute("SELECT secret_hash FROM ts_clients").fetchone()
    assert secret.encode() not in stored and len(stored) == 32
    code, out = run(env, "clients", "list", "--json")
    assert code == 0 and "tss_" not in out and json.loads(out)[0]["client_id"] == "backend"


def test_public_client_has_no_secret(env: dict[str, str]) -> None:
    code, out = run(env, "clients", "add", "spa", "--public", "--json")
    assert code == 0 and json.loads(out)["client_secret"] is None


def test_cookie_mode_client_with_origins(env: dict[str, str]) -> None:
    code, out = run(
        env,
        "clients",
        "add",
        "web",
        "--public",
        "--cookie-mode",
        "--origin",
        "https://app.example.com",
        "--json",
    )
    assert code == 0 and json.loads(out)["allowed_origins"] == ["https://app.example.com"]
    code, out = run(env, "clients", "list")
    assert code == 0 and "web" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("clients", "add", "x"), "--public or --confidential"),
        (("clients", "add", "bad id!", "--public"), "client id"),
        (("clients", "add", "web", "--public", "--cookie-mode"), "origin"),
        (("clients", "add", "spa", "--public", "--grant", "client_credentials"), "confidential"),
        (("clients", "add", "w", "--public", "--origin", "app.example.com"), "scheme"),
    ],
    ids=["no kind", "bad id", "cookie mode without origin", "public m2m", "origin not a URL"],
)
def test_bad_input_is_a_one_line_error(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    code, out = run(env, *args)
    assert code in (1, 2) and message in out


def test_a_client_id_is_registered_once(env: dict[str, str]) -> None:
    assert run(env, "clients", "add", "spa", "--public")[0] == 0
    code, out = run(env, "clients", "add", "spa", "--public")
    assert code == 1 and "already exists" in out


def test_clients_can_be_disabled_enabled_and_listed_with_their_state(env: dict[str, str]) -> None:
    assert run(env, "clients", "add", "spa", "--public")[0] == 0
    code, out = run(env, "clients", "disable", "spa", "--json")
    assert code == 0 and json.loads(out)["state"] == "disabled"
    code, out = run(env, "clients", "list")
    assert code == 0 and "disabled" in out.splitlines()[1]
    assert run(env, "clients", "enable", "spa") == (0, "client spa enabled\n")
    assert json.loads(run(env, "clients", "list", "--json")[1])[0]["state"] == "enabled"


def test_update_replaces_the_lists_named_and_repeated_flags_accumulate(
    env: dict[str, str],
) -> None:
    run(env, "clients", "add", "backend", "--confidential", "--scope", "old", "--aud", "api")
    code, out = run(
        env, "clients", "update", "backend", "--scope", "read", "--scope", "write", "--json"
    )
    body = json.loads(out)
    assert code == 0 and body["scopes"] == ["read", "write"] and body["audiences"] == ["api"]
    code, out = run(env, "clients", "update", "backend", "--grant", "refresh_token", "--json")
    assert code == 0 and json.loads(out)["grant_types"] == ["refresh_token"]


def test_rotate_secret_prints_the_new_secret_once(env: dict[str, str], tmp_path: Path) -> None:
    old = json.loads(run(env, "clients", "add", "backend", "--confidential", "--json")[1])
    code, out = run(env, "clients", "rotate-secret", "backend", "--overlap", "300", "--json")
    body = json.loads(out)
    assert code == 0 and set(body) == {"client_id", "client_secret"}
    assert (
        body["client_secret"].startswith("tss_") and body["client_secret"] != old["client_secret"]
    )
    with sqlite3.connect(tmp_path / "ts.db") as db:
        (expires,) = db.execute("SELECT previous_secret_expires_at FROM ts_clients").fetchone()
    assert expires is not None
    code, out = run(env, "clients", "rotate-secret", "backend")
    assert code == 0 and "no longer" in out and "tss_" in out


def test_delete_removes_the_client(env: dict[str, str]) -> None:
    run(env, "clients", "add", "spa", "--public")
    code, out = run(env, "clients", "delete", "spa", "--json")
    assert code == 0 and json.loads(out) == {"client_id": "spa", "families_revoked": 0}
    assert json.loads(run(env, "clients", "list", "--json")[1]) == []


@pytest.mark.parametrize(
    "args",
    [
        ("clients", "disable", "ghost"),
        ("clients", "enable", "ghost"),
        ("clients", "delete", "ghost"),
        ("clients", "rotate-secret", "ghost"),
        ("clients", "update", "ghost", "--scope", "read"),
    ],
    ids=["disable", "enable", "delete", "rotate-secret", "update"],
)
def test_an_unknown_client_is_a_one_line_error(env: dict[str, str], args: tuple[str, ...]) -> None:
    code, out = run(env, *args)
    assert code == 1 and out == "Error: invalid_request: no client 'ghost'\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("clients", "update", "backend", "--scope", 'a"b'), "RFC 6749 §3.3"),
        (("clients", "update", "backend", "--origin", "app.example.com"), "scheme"),
        (("clients", "update", "backend", "--grant", "password"), "unsupported grant"),
        (("clients", "rotate-secret", "spa"), "public"),
        (("clients", "rotate-secret", "backend", "--overlap", "-1"), "-1"),
    ],
    ids=["bad scope", "bad origin", "bad grant", "public secret", "negative overlap"],
)
def test_bad_lifecycle_input_is_a_one_line_error(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    run(env, "clients", "add", "backend", "--confidential")
    run(env, "clients", "add", "spa", "--public")
    code, out = run(env, *args)
    assert code in (1, 2) and message in out
