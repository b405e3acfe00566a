"""A client change and its revocation-log entry commit in one transaction
(:class:`tokensmith.clients.LoggedClientRegistry`): a real database fault in the log
append, a trigger that refuses client entries, rolls the change back too, so no crash can
leave a client disabled or deleted that other instances and remote verifiers never hear
about."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tokensmith import Settings, Tokensmith
from tokensmith.clock import ManualClock
from tokensmith.store.records import StoreError
from tokensmith.store.sql import SqlStore

from .conftest import ISSUER, T0

# The fault: the database refuses every client entry of the log (kinds ``client_*``).
_FAULT = {
    "sqlite": [
        "CREATE TRIGGER refuse_client_entries BEFORE INSERT ON ts_revocation_log"
        " WHEN NEW.kind LIKE 'client%' BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_client_entries() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$",
        "CREATE TRIGGER refuse_client_entries BEFORE INSERT ON ts_revocation_log"
        " FOR EACH ROW WHEN (NEW.kind LIKE 'client%') EXECUTE FUNCTION refuse_client_entries()",
    ],
}
_HEAL = {
    "sqlite": ["DROP TRIGGER refuse_client_entries"],
    "postgresql": ["DROP TRIGGER refuse_client_entries ON ts_revocation_log"],
}


def _run(store: SqlStore, statements: list[str]) -> None:
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


@pytest.fixture
def ts(store: SqlStore, tmp_path: Path) -> Iterator[Tokensmith]:
    settings = Settings(issuer=ISSUER, keys_dir=str(tmp_path / "keys"))
    yield Tokensmith(settings, clock=ManualClock(T0), refresh_store=store)


def _client_entries(ts: Tokensmith) -> list[tuple[str, str]]:
    entries, _, _ = ts.revocations_since(0, 1000)
    return [(e.kind, e.key) for e in entries if e.kind.startswith("client")]


def test_a_failed_log_append_rolls_the_client_change_back(store: SqlStore, ts: Tokensmith) -> None:
    ts.register_client("svc", confidential=True)
    registry = store.client_registry()
    before = _client_entries(ts)
    _run(store, _FAULT[store.engine.dialect.name])

    with pytest.raises(StoreError):
        ts.update_client("svc", enabled=False)
    current = registry.get_client("svc")
    assert current is not None and current.enabled
    with pytest.raises(StoreError):
        ts.delete_client("svc")
    assert registry.get_client("svc") is not None
    with pytest.raises(StoreError):
        ts.register_client("other", confidential=False)
    assert registry.get_client("other") is None
    assert _client_entries(ts) == before  # nothing half-done either way

    _run(store, _HEAL[store.engine.dialect.name])
    ts.delete_client("svc")
    assert registry.get_client("svc") is None
    assert _client_entries(ts) == [*before, ("client_disabled", "svc")]
