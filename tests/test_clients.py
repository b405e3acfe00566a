"""The client registry's core: validation, secrets, the lookup cache."""

from __future__ import annotations

import pytest

from tokensmith.clients import (
    CachedClientRegistry,
    Client,
    new_client,
    rotated_secret,
    secret_matches,
)
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


def test_ids_the_application_names_are_remembered_even_when_unknown() -> None:
    inner = CountingRegistry()
    cached = CachedClientRegistry(inner, ttl=5)
    for _ in range(3):
        assert cached.registered("spa") is None
    assert inner.lookups == 1
    cached.add_client(new_client("spa", confidential=False, now=0)[0])
    assert cached.registered("spa") is not None and inner.lookups == 2


def test_secret_check_is_false_for_unknown_public_or_wrong() -> None:
    client, secret = new_client("backend", confidential=True, now=0)
    public, _ = new_client("spa", confidential=False, now=0)
    assert secret is not None and secret_matches(client, secret, 0)
    assert not secret_matches(client, secret + "x", 0)
    assert not secret_matches(None, secret, 0)
    assert not secret_matches(public, "", 0)


def test_a_rotated_secret_works_only_until_its_overlap_ends() -> None:
    client, old = new_client("backend", confidential=True, now=0)
    rotated, new = rotated_secret(client, now=100, overlap=60)
    assert old is not None and new != old
    assert secret_matches(rotated, new, 100) and secret_matches(rotated, new, 10_000)
    assert secret_matches(rotated, old, 159.9)
    assert not secret_matches(rotated, old, 160)
    # A second rotation replaces the previous secret: the first one is gone at once.
    again, newest = rotated_secret(rotated, now=110, overlap=60)
    assert not secret_matches(again, old, 111) and secret_matches(again, new, 111)
    assert secret_matches(again, newest, 111)


def test_rotation_without_overlap_ends_the_old_secret_at_once() -> None:
    client, old = new_client("backend", confidential=True, now=0)
    rotated, _ = rotated_secret(client, now=100, overlap=0)
    assert old is not None and not secret_matches(rotated, old, 100)


@pytest.mark.parametrize("overlap", [-1, float("nan")], ids=["negative", "nan"])
def test_rotation_needs_a_sane_overlap(overlap: float) -> None:
    client, _ = new_client("backend", confidential=True, now=0)
    with pytest.raises(InvalidRequest):
        rotated_secret(client, now=0, overlap=overlap)


def test_a_public_client_has_no_secret_to_rotate() -> None:
    with pytest.raises(InvalidRequest, match="public"):
        rotated_secret(new_client("spa", confidential=False, now=0)[0], now=0, overlap=0)


def test_scopes_are_deny_by_default() -> None:
    client, _ = new_client("backend", confidential=True, now=0)
    assert client.allows_scope("")
    assert not client.allows_scope("admin superuser")
    scoped, _ = new_client("backend", confidential=True, now=0, scopes=["read"])
    assert scoped.allows_scope("read") and not scoped.allows_scope("read admin")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": "", "confidential": False},
        {"client_id": "a" * 65, "confidential": False},
        {"client_id": "spa", "confidential": False, "grant_types": ["password"]},
        {"client_id": "spa", "confidential": False, "cookie_mode": True},
        {"client_id": "spa", "confidential": False, "allowed_origins": ["https://a/b"]},
        {"client_id": "api", "confidential": True, "scopes": ["read write"]},
        {"client_id": "api", "confidential": True, "scopes": ['say"hi']},
        {"client_id": "api", "confidential": True, "scopes": [""]},
        {"client_id": "api", "confidential": True, "audiences": [""]},
    ],
    ids=[
        "empty id",
        "long id",
        "unknown grant",
        "cookie mode without origin",
        "origin path",
        "scope with a space",
        "scope with a quote",
        "empty scope",
        "empty audience",
    ],
)
def test_invalid_registrations_are_refused(kwargs: dict[str, object]) -> None:
    client_id = str(kwargs.pop("client_id"))
    with pytest.raises(InvalidRequest):
        new_client(client_id, now=0, **kwargs)  # type: ignore[arg-type]
