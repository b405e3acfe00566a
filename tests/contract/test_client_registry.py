"""The client registry (README "Clients") over every store: a client's lifecycle
round-trips through :class:`tokensmith.clients.ClientRegistry`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tokensmith.clients import new_client, rotated_secret
from tokensmith.errors import InvalidRequest

from .conftest import Store


def test_update_and_delete_round_trip(store: Store) -> None:
    registry = store.client_registry()
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


def test_ids_are_unique_and_clients_are_listed_by_id(store: Store) -> None:
    registry = store.client_registry()
    spa, _ = new_client("spa", confidential=False, now=1.0, allowed_origins=["https://a.example"])
    backend, _ = new_client("backend", confidential=True, now=2.0)
    registry.add_client(spa)
    registry.add_client(backend)
    with pytest.raises(InvalidRequest, match="already exists"):
        registry.add_client(replace(backend, confidential=False))
    assert registry.list_clients() == [backend, spa]
    assert registry.get_client("unknown") is None
