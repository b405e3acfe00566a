"""The client registry's core: what a registered OAuth client is and how it authenticates.

Secrets are 256 random bits with a recognisable ``tss_`` prefix, shown once and stored
only as SHA-256 (a high-entropy secret needs no slow hash); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tokensmith.errors import InvalidRequest

SECRET_PREFIX = "tss_"
GRANT_TYPES = ("refresh_token", "client_credentials")
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-fA-F:]+\](:[0-9]{1,5})?"
)
# Compared against when a client is unknown, so timing does not reveal which ids exist.
_DUMMY_HASH = hashlib.sha256(b"tokensmith-no-such-client").digest()


@dataclass(frozen=True)
class Client:
    client_id: str
    confidential: bool
    secret_hash: bytes | None = field(default=None, repr=False)
    grant_types: tuple[str, ...] = ("refresh_token",)
    scopes: tuple[str, ...] = ()  # empty: any scope
    audiences: tuple[str, ...] = ()  # empty: the issuer's default audience only
    redirect_uris: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    cookie_mode: bool = False
    created_at: float = 0.0

    def allows_scope(self, scope: str) -> bool:
        return not self.scopes or set(scope.split()) <= set(self.scopes)

    def allows_audience(self, audience: str) -> bool:
        return audience in self.audiences


class ClientRegistry(Protocol):
    def get_client(self, client_id: str) -> Client | None: ...

    def add_client(self, client: Client) -> None:
        """Store a new client; raise ``InvalidRequest`` if the id is taken."""
        ...

    def list_clients(self) -> list[Client]: ...


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def secret_matches(client: Client | None, secret: str) -> bool:
    """Constant-time check; an unknown client costs the same as a wrong secret."""
    expected = client.secret_hash if client and client.secret_hash else _DUMMY_HASH
    ok = hmac.compare_digest(hash_secret(secret), expected)
    return ok and client is not None and client.confidential


def new_client(
    client_id: str,
    *,
    confidential: bool,
    now: float,
    grant_types: Sequence[str] | None = None,
    scopes: Sequence[str] = (),
    audiences: Sequence[str] = (),
    redirect_uris: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    cookie_mode: bool = False,
) -> tuple[Client, str | None]:
    """Validate and build a client; returns it with its secret (``None`` when public)."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidRequest("client id: 1-64 of letters, digits, '.', '_', '-'")
    grants = tuple(grant_types or (GRANT_TYPES if confidential else ("refresh_token",)))
    unknown = set(grants) - set(GRANT_TYPES)
    if unknown:
        raise InvalidRequest(f"unsupported grant types: {', '.join(sorted(unknown))}")
    if "client_credentials" in grants and not confidential:
        raise InvalidRequest("client_credentials needs a confidential client (RFC 6749 §4.4)")
    for origin in allowed_origins:
        if not _ORIGIN.fullmatch(origin):
            raise InvalidRequest(f"origin {origin!r} must be scheme://host[:port]")
    if cookie_mode and not allowed_origins:
        raise InvalidRequest("cookie mode needs at least one allowed origin")
    secret = new_secret() if confidential else None
    client = Client(
        client_id=client_id,
        confidential=confidential,
        secret_hash=hash_secret(secret) if secret else None,
        grant_types=grants,
        scopes=tuple(scopes),
        audiences=tuple(audiences),
        redirect_uris=tuple(redirect_uris),
        allowed_origins=tuple(allowed_origins),
        cookie_mode=cookie_mode,
        created_at=now,
    )
    return client, secret


class CachedClientRegistry:
    """Remembers found clients for ``ttl`` seconds: every token request authenticates a
    client, and the registry changes rarely. Unknown ids are not remembered (a spray of
    random ids must not fill the cache); the cache is bounded all the same."""

    _MAX_ENTRIES = 4096

    def __init__(self, registry: ClientRegistry, *, ttl: float) -> None:
        self._registry = registry
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Client]] = {}

    def get_client(self, client_id: str) -> Client | None:
        now = time.monotonic()
        hit = self._entries.get(client_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        client = self._registry.get_client(client_id)
        if client is not None and self._ttl > 0:
            if len(self._entries) >= self._MAX_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (now, client)
        return client

    def add_client(self, client: Client) -> None:
        self._registry.add_client(client)
        self._entries.pop(client.client_id, None)

    def list_clients(self) -> list[Client]:
        return self._registry.list_clients()
