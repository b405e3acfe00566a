"""Client administration, a part of ``Tokensmith``: adding, changing and removing clients
with what each change means for sessions and the revocation log (README "Clients").

A disable, an enable or a deletion is logged as ``CLIENT_DISABLED`` / ``CLIENT_ENABLED`` in
the transaction of the registry change when the store keeps the registry, so other instances
and remote verifiers act on it within the revocation reach.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from tokensmith.clients import (
    CachedClientRegistry,
    Client,
    ClientLogEntry,
    ClientRegistry,
    LoggedClientRegistry,
    client_subject,
    new_client,
    rotated_secret,
    validated,
)
from tokensmith.errors import InvalidRequest
from tokensmith.revocation.log import CLIENT_DISABLED, CLIENT_ENABLED

if TYPE_CHECKING:
    from tokensmith.clock import Clock
    from tokensmith.refresh.service import RefreshService


class _Wired(Protocol):
    """What the administration needs of the facade it is part of."""

    clock: Clock
    _client_registry: ClientRegistry | None

    @property
    def clients(self) -> CachedClientRegistry: ...

    @property
    def sessions(self) -> RefreshService: ...

    def client(self, client_id: str) -> Client: ...

    def _bury_deleted(self, client_id: str) -> None: ...

    def _write_client(
        self, client_id: str, client: Client | None, *, new: bool, kind: str | None
    ) -> None: ...


class ClientAdministration:
    """``Tokensmith``'s client methods; the facade provides ``clock``, ``clients`` (the
    cached registry) and ``sessions`` (the refresh service)."""

    def register_client(
        self: _Wired, client_id: str, *, confidential: bool, **options: Any
    ) -> tuple[Client, str | None]:
        """Add a client; returns it with its secret, which is shown this once and stored
        only as a hash (``None`` for a public client)."""
        client, secret = new_client(
            client_id, confidential=confidential, now=self.clock.now(), **options
        )
        if self.clients.registry.get_client(client_id) is not None:
            raise InvalidRequest(f"client {client_id!r} already exists")
        self._bury_deleted(client_id)
        # Ends the CLIENT_DISABLED of a deletion of this id: the new client's tokens verify
        # at every instance and remote verifier.
        self._write_client(client_id, client, new=True, kind=CLIENT_ENABLED)
        return client, secret

    def _bury_deleted(self: _Wired, client_id: str) -> None:
        """Keep what a deleted client of this id left refused once the id is registered
        again: sessions and client_credentials tokens that an instance which had not yet
        heard of the deletion issued after it. Its sessions are revoked and, when the log
        says the id was deleted, its ``client:<id>`` cut-off moves to now; then the clock
        enters the next whole second (``iat`` are whole seconds), so the new client's
        tokens are all issued after the cut-off."""
        self.sessions.revoke_client(client_id)
        if self.sessions.revocations.client_disabled(client_id):
            self.sessions.revoke_subject(client_subject(client_id))
            at = self.clock.now()
            time.sleep(math.ceil(at) - at)

    def client(self: _Wired, client_id: str) -> Client:
        """The registered client ``client_id``; ``InvalidRequest`` if there is none."""
        client = self.clients.get_client(client_id)
        if client is None:
            raise InvalidRequest(f"no client {client_id!r}")
        return client

    def update_client(
        self: _Wired,
        client_id: str,
        *,
        scopes: Sequence[str] | None = None,
        audiences: Sequence[str] | None = None,
        allowed_origins: Sequence[str] | None = None,
        grant_types: Sequence[str] | None = None,
        enabled: bool | None = None,
        backchannel_logout_uri: str | None = None,
        backchannel_logout_session_required: bool | None = None,
        dpop_bound_access_tokens: bool | None = None,
    ) -> Client:
        """Replace the lists given (``None`` keeps one) and set ``enabled`` and
        ``dpop_bound_access_tokens`` (RFC 9449 §5.2) if given. A
        disabled client is ``invalid_client`` at every endpoint, so its refresh tokens are
        refused, and its access tokens fail verification here, at the other instances and
        at remote verifiers (the revocation log); nothing is revoked, so enabling it again
        restores them. An empty ``backchannel_logout_uri`` removes it."""
        lists = {
            "scopes": scopes,
            "audiences": audiences,
            "allowed_origins": allowed_origins,
            "grant_types": grant_types,
        }
        changes: dict[str, Any] = {k: tuple(v) for k, v in lists.items() if v is not None}
        if backchannel_logout_uri is not None:
            changes["backchannel_logout_uri"] = backchannel_logout_uri or None
        for name, flag in (
            ("enabled", enabled),
            ("backchannel_logout_session_required", backchannel_logout_session_required),
            ("dpop_bound_access_tokens", dpop_bound_access_tokens),
        ):
            if flag is not None:
                changes[name] = flag
        current = self.client(client_id)
        updated = validated(replace(current, **changes))
        flipped = updated.enabled != current.enabled
        kind = (CLIENT_ENABLED if updated.enabled else CLIENT_DISABLED) if flipped else None
        self._write_client(client_id, updated, new=False, kind=kind)
        return updated

    def rotate_client_secret(self: _Wired, client_id: str, *, overlap: float) -> tuple[Client, str]:
        """A new secret for a confidential client, shown this once; the current one keeps
        working for ``overlap`` seconds, then never."""
        client, secret = rotated_secret(
            self.client(client_id), now=self.clock.now(), overlap=overlap
        )
        self._write_client(client_id, client, new=False, kind=None)
        return client, secret

    def delete_client(self: _Wired, client_id: str) -> int:
        """Remove a client after ending its sessions: every live family is revoked (its
        refresh tokens are refused, their access tokens denied) and its own
        client_credentials tokens stop verifying. The removal is logged as a client
        revocation (``CLIENT_DISABLED``) in its own transaction, so every instance forgets
        the client and refuses its tokens within the revocation reach, as remote verifiers
        do (README "Clients"). Returns the number of families revoked."""
        self.client(client_id)
        revoked = self.sessions.revoke_client(client_id)
        self.sessions.revoke_subject(client_subject(client_id))
        self._write_client(client_id, None, new=False, kind=CLIENT_DISABLED)
        return revoked

    def _write_client(
        self: _Wired, client_id: str, client: Client | None, *, new: bool, kind: str | None
    ) -> None:
        """Add, replace or (``client`` ``None``) delete a client and log ``kind`` for it.
        The store's own registry writes both in one transaction (no crash separates a
        change from its entry); a registry given to the facade keeps no log, so the entry
        follows in a transaction of the store's."""
        registry = self.clients.registry
        log = None if kind is None else ClientLogEntry(kind, self.clock.now())
        if self._client_registry is None and isinstance(registry, LoggedClientRegistry):
            done = registry.write_client(client_id, client, new=new, log=log)
            if done and log is not None:
                self.sessions.logged()
        else:
            if client is None:
                done = registry.delete_client(client_id)
            elif new:
                registry.add_client(client)
                done = True
            else:
                registry.update_client(client)
                done = True
            if done and log is not None:
                self.sessions.log_revocation(log.kind, client_id)
        self.clients.forget(client_id)
