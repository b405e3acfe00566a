"""``tokensmith db``, ``token issue|verify`` and ``revoke`` against a real SQLite file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokensmith.cli import cli

from .conftest import cli_env

ISSUER = "https://as.example.com"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, input=stdin)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def ready(env: dict[str, str]) -> dict[str, str]:
    assert run(env, "db", "upgrade")[0] == 0
    assert run(env, "keys", "generate")[0] == 0
    return env


def _issue(env: dict[str, str], *extra: str) -> dict[str, object]:
    code, out = run(
        env,
        *shlex.split("token issue --sub alice --client spa --unregistered --json"),
        *extra,
    )
    assert code == 0, out
    return json.loads(out)  # type: ignore[no-any-return]


def test_db_upgrade_is_repeatable_and_hides_passwords(env: dict[str, str]) -> None:
    assert run(env, "db", "upgrade")[0] == 0
    code, out = run(env, "db", "upgrade")
    assert code == 0 and "up to date" in out


def test_token_issue_json_has_the_token_endpoint_keys(ready: dict[str, str]) -> None:
    body = _issue(ready, "--scope", "openid profile", "--aud", "api")
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "id_token",
        "scope",
    }
    assert body["token_type"] == "Bearer" and str(body["refresh_token"]).startswith("tsr_")


def test_token_verify_prints_claims_and_checks_revocation(ready: dict[str, str]) -> None:
    body = _issue(ready, "--aud", "api")
    code, out = run(ready, "token", "verify", str(body["access_token"]), "--aud", "api")
    assert code == 0 and json.loads(out)["claims"]["sub"] == "alice"
    assert run(ready, "revoke", "--user", "alice")[0] == 0
    code, out = run(ready, "token", "verify", str(body["access_token"]), "--aud", "api")
    assert code == 1 and "revoked" in out


def test_revoke_by_token_and_by_family(ready: dict[str, str]) -> None:
    one, two = _issue(ready), _issue(ready)
    code, out = run(ready, "revoke", "--token", str(one["refresh_token"]))
    assert code == 0 and "revoked" in out
    sid = json.loads(run(ready, "token", "verify", str(two["access_token"]))[1])["claims"]["sid"]
    code, out = run(ready, "revoke", "--family", sid)
    assert code == 0 and sid in out
    code, out = run(ready, "revoke", "--family", sid)
    assert code == 1 and "no active family" in out


def test_revoke_needs_exactly_one_target(ready: dict[str, str]) -> None:
    code, out = run(ready, "revoke")
    assert code == 2 and "exactly one" in out
    code, out = run(ready, "revoke", "--user", "a", "--family", "b")
    assert code == 2


def test_cleanup_reports_what_it_removed(ready: dict[str, str]) -> None:
    code, out = run(ready, "db", "cleanup", "--batch-size", "10")
    assert code == 0 and "removed 0" in out


def test_issue_without_keys_is_a_clear_error(env: dict[str, str]) -> None:
    run(env, "db", "upgrade")
    code, out = run(env, "token", "issue", "--sub", "a", "--client", "c", "--unregistered")
    assert code == 1 and "keys generate" in out


def test_tokens_are_read_from_standard_input_with_a_dash(ready: dict[str, str]) -> None:
    """Issue #11 item 7: ``-`` keeps a token out of argv (``ps``) and the shell history."""
    body = _issue(ready, "--aud", "api")
    code, out = run(
        ready, "token", "verify", "-", "--aud", "api", stdin=f"{body['access_token']}\n"
    )
    assert code == 0, out
    assert json.loads(out)["claims"]["sub"] == "alice"
    code, out = run(ready, "revoke", "--token", "-", stdin=f"{body['refresh_token']}\n")
    assert code == 0 and "revoked the token's family" in out


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("token", "verify", "-"), "", "exactly one token, found 0"),
        (("token", "verify", "-"), "\n", "exactly one token, found 0"),
        (("token", "verify", "-"), "a.b.c\nd.e.f\n", "exactly one token, found 2"),
        (("revoke", "--token", "-"), "tsr_a tsr_b", "exactly one token, found 2"),
        (("revoke", "--token", "-"), "x" * 70_000, "too long for a token"),
    ],
    ids=["empty", "a bare newline", "two lines", "two words", "too long"],
)
def test_standard_input_must_hold_exactly_one_token(
    ready: dict[str, str], args: tuple[str, ...], stdin: str, message: str
) -> None:
    code, out = run(ready, *args, stdin=stdin)
    assert code == 1 and len(out.splitlines()) == 1 and out.startswith("Error: ")
    assert message in out
