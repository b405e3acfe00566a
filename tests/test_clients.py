"""The client registry's core: validation, secrets, the lookup cache."""

from __future__ import annotations

import pytest

from tokensmith.clients import CachedClientRegistry, Client, new_client, secret_matches
from tokensmith.clients import time as clients_time
from tokensmith.errors import InvalidRequest


class CountingRegistry:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.lookups = 0

    def get_client(self, client_id: str) -> Client | None:
        self.lookups += 1
        return self.clients.get(client_id)

    def add_client(self, client: Client) -> None:
        self.clients[client.client_id] = client

    def list_clients(self) -> list[Client]:
        return list(self.clients.values())


def test_found_clients_are_cached_for_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = CountingRegistry()
    cached = CachedClientRegistry(inner, ttl=5)
    cached.add_client(new_client("spa", confidential=False, now=0)[0])
    now = [clients_time.monotonic()]
    monkeypatch.setattr(clients_time, "monotonic", lambda: now[0])
    for _ in range(3):
        assert cached.get_client("spa") is not None
    assert inner.lookups == 1
    now[0] += 5
    assert cached.get_client("spa") is not None and inner.lookups == 2


def test_unknown_ids_are_not_cached() -> None:
    inner = CountingRegistry()
    cached = CachedClientRegistry(inner, ttl=5)
    for i in range(3):
        assert cached.get_client(f"nope-{i % 2}") is None
    assert inner.lookups == 3
    cached.add_client(new_client("nope-0", confidential=False, now=0)[0])
    assert cached.get_client("nope-0") is not None


def test_secret_check_is_false_for_unknown_public_or_wrong() -> None:
    client, secret = new_client("backend", confidential=True, now=0)
    public, _ = new_client("spa", confidential=False, now=0)
    assert secret is not None and secret_matches(client, secret)
    assert not secret_matches(client, secret + "x")
    assert not secret_matches(None, secret)
    assert not secret_matches(public, "")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": "", "confidential": False},
        {"client_id": "a" * 65, "confidential": False},
        {"client_id": "spa", "confidential": False, "grant_types": ["password"]},
        {"client_id": "spa", "confidential": False, "cookie_mode": True},
        {"client_id": "spa", "confidential": False, "allowed_origins": ["https://a/b"]},
    ],
    ids=["empty id", "long id", "unknown grant", "cookie mode without origin", "origin path"],
)
def test_invalid_registrations_are_refused(kwargs: dict[str, object]) -> None:
    client_id = str(kwargs.pop("client_id"))
    with pytest.raises(InvalidRequest):
        new_client(client_id, now=0, **kwargs)  # type: ignore[arg-type]
