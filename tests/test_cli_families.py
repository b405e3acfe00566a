"""``tokensmith families list --user S``: sessions and the family-revocation audit trail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokensmith import ManualClock, RefreshTokenReused
from tokensmith.cli import cli

from .conftest import cli_env, make_tokensmith


def test_families_list_shows_sessions_and_why_they_ended(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    clock = ManualClock(1_800_000_000)
    ts = make_tokensmith(tmp_path, clock)
    reused, logged_out, alive = (ts.issue(subject="alice", client_id="spa") for _ in range(3))
    ts.issue(subject="bob", client_id="spa")
    ts.refresh(str(reused.refresh_token), client_id="spa")
    clock.advance(5)
    with pytest.raises(RefreshTokenReused):
        ts.refresh(str(reused.refresh_token), client_id="spa")
    assert ts.revoke_refresh_token(str(logged_out.refresh_token), client_id="spa")

    result = CliRunner().invoke(cli, ["families", "list", "--user", "alice", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = {row["family_id"]: row for row in json.loads(result.output)}
    assert set(rows) == {reused.session_id, logged_out.session_id, alive.session_id}
    assert rows[alive.session_id]["revoked_at"] is None
    assert rows[alive.session_id]["revocations"] == []
    assert [r["reason"] for r in rows[logged_out.session_id]["revocations"]] == ["token_revoked"]
    assert rows[logged_out.session_id]["revocations"][0]["actor"] == "client:spa"
    assert rows[reused.session_id]["revocations"], "reuse must leave an audit entry"

    table = CliRunner().invoke(cli, ["families", "list", "--user", "alice"], env=env)
    assert table.exit_code == 0 and "token_revoked" in table.output and "active" in table.output
    none = CliRunner().invoke(cli, ["families", "list", "--user", "carol"], env=env)
    assert none.exit_code == 0 and "no sessions for carol" in none.output
