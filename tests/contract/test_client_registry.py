"""The client registry (README "Clients") over every store: a client's lifecycle
round-trips through :class:`tokensmith.clients.ClientRegistry`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tokensmith.clients import ClientLogEntry, LoggedClientRegistry, new_client, rotated_secret
from tokensmith.errors import InvalidRequest
from tokensmith.revocation.log import CLIENT_DISABLED, CLIENT_ENABLED, log_of

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


def test_a_change_and_its_log_entry_commit_together(store: Store) -> None:
    """Each store's registry writes a change and its revocation-log entry in one
    transaction (the facade's client deletion, disabling, enabling, registration)."""
    registry = store.client_registry()
    assert isinstance(registry, LoggedClientRegistry)
    log = log_of(store)
    assert log is not None
    client, _ = new_client("svc", confidential=True, now=1.0)
    assert registry.write_client("svc", client, new=True, log=ClientLogEntry(CLIENT_ENABLED, 1.0))
    off = replace(client, enabled=False)
    registry.write_client("svc", off, new=False, log=ClientLogEntry(CLIENT_DISABLED, 2.0))
    assert registry.get_client("svc") == off
    # Refused changes log nothing: a taken id, an unknown one, a delete of nothing.
    with pytest.raises(InvalidRequest, match="already exists"):
        registry.write_client("svc", client, new=True, log=ClientLogEntry(CLIENT_ENABLED, 3.0))
    with pytest.raises(InvalidRequest, match="no client"):
        registry.write_client("x", client, new=False, log=ClientLogEntry(CLIENT_ENABLED, 3.0))
    assert not registry.write_client("x", None, new=False, log=ClientLogEntry(CLIENT_DISABLED, 3))
    assert registry.write_client("svc", None, new=False, log=ClientLogEntry(CLIENT_DISABLED, 4.0))
    assert registry.get_client("svc") is None
    entries = [(e.kind, e.key, e.at) for e in log.revocations_since(0, 100)]
    assert entries == [
        (CLIENT_ENABLED, "svc", 1.0),
        (CLIENT_DISABLED, "svc", 2.0),
        (CLIENT_DISABLED, "svc", 4.0),
    ]
