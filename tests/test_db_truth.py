"""``db upgrade`` names what it applied; an operator who left ``TOKENSMITH_KEY_STORE`` unset
on a database holding the SQL key store's keys is told so, not to ``keys generate``; and
``setup()`` migrates even after the store was first used (docs/contract.md "CLI")."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tokensmith import Settings, Tokensmith
from tokensmith.cli import cli
from tokensmith.store.sql.migrate import migrations_dir

from .conftest import ISSUER, cli_env

PASSPHRASE = "db-truth-passphrase"


def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _revisions() -> list[str]:
    return sorted(p.name.split("_")[0] for p in (migrations_dir() / "versions").glob("0*.py"))


def test_db_upgrade_names_the_migrations_it_applied(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    code, out = _run(env, "db", "upgrade")
    assert code == 0, out
    applied = [line.split()[1] for line in out.splitlines() if line.startswith("applied ")]
    assert applied == _revisions()
    assert "database upgraded" in out
    code, out = _run(env, "db", "upgrade")
    assert code == 0 and "applied" not in out and "already up to date" in out


def test_an_unset_key_store_on_a_database_with_keys_is_named(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    with_sql_keys = Tokensmith(
        Settings(
            issuer=ISSUER,
            database_url=env["TOKENSMITH_DATABASE_URL"],
            keys_dir=str(tmp_path / "unused"),
            key_store="sql",
            key_passphrase=PASSPHRASE,
        )
    )
    with_sql_keys.setup()  # the keys live in the database
    with_sql_keys.keys.store.engine.dispose()  # type: ignore[attr-defined]
    code, out = _run(env, "token", "issue", "--sub", "alice", "--client", "spa", "--unregistered")
    assert code == 1
    assert "TOKENSMITH_KEY_STORE=sql" in out and "keys generate" not in out
    # Without keys in the database, the advice stays keys generate.
    bare = cli_env(tmp_path / "bare")
    (tmp_path / "bare").mkdir()
    assert _run(bare, "db", "upgrade")[0] == 0
    code, out = _run(bare, "token", "issue", "--sub", "alice", "--client", "spa", "--unregistered")
    assert code == 1 and "keys generate" in out


def test_setup_migrates_even_after_the_store_was_used(tmp_path: Path) -> None:
    settings = Settings(
        issuer=ISSUER, database_url=f"sqlite:///{tmp_path / 'ts.db'}", keys_dir=str(tmp_path)
    )
    ts = Tokensmith(settings)
    assert ts.sessions is not None  # opens the store before any migration
    ts.setup()
    ts.register_client("spa", confidential=False)
    assert ts.issue(subject="alice", client_id="spa").refresh_token
