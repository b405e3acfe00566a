"""The SQL client registry over every backend: a client's lifecycle round-trips."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tokensmith.clients import new_client, rotated_secret
from tokensmith.errors import InvalidRequest
from tokensmith.store.sql import SqlStore
from tokensmith.store.sql.clients import SqlClientRegistry


def test_update_and_delete_round_trip(store: SqlStore) -> None:
    registry = SqlClientRegistry(store.engine)
    client, _ = new_client("backend", confidential=True, now=1.0, scopes=["read"])
    registry.add_client(client)
    assert registry.get_client("backend") == client and client.enabled
    rotated, _ = rotated_secret(client, now=2.0, overlap=60)
    changed = replace(rotated, enabled=False, scopes=("read", "write"), audiences=("api",))
    registry.update_client(changed)
    assert registry.get_client("backend") == changed
    assert changed.previous_secret_hash == client.secret_hash
    assert registry.delete_client("backend") is True
    assert registry.get_client("backend") is None and registry.list_clients() == []
    assert registry.delete_client("backend") is False
    with pytest.raises(InvalidRequest, match="no client"):
        registry.update_client(changed)
