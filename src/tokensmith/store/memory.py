"""The reference in-memory store: the executable definition of the storage contract.

It implements :class:`tokensmith.store.RefreshStore`, the client registry and the audit
reader over plain dictionaries, with the same semantics as the SQL store (the contract suite
in ``tests/contract/`` runs the same tests over both), the way fosite's
``storage/memory.go`` and node-oidc-provider's memory adapter do. Use it for tests and
demos (``database_url="memory://"``): it is **not durable** and not shared between
processes.

Every unit of work holds one lock for its whole run, so writers are serialised like
SQLite's, and records an undo step for each write: a unit that raises leaves nothing behind
(SECURITY R4).
"""

from __future__ import annotations

import bisect
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from tokensmith.clients import Client, ClientLogEntry
from tokensmith.errors import InvalidRequest, StoreError
from tokensmith.logout.outbox import LogoutMessage
from tokensmith.revocation.log import FAMILY, JTI, SUBJECT, ChangeSignal, LogEntry
from tokensmith.settings import MAX_LEEWAY
from tokensmith.store.records import (
    FamilyRecord,
    FamilySummary,
    NewToken,
    Pending,
    Revocation,
    RevocationSnapshot,
    SessionActivity,
    TokenRecord,
)
from tokensmith.tokens.claims import SessionClaims

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class _Token:
    token_hash: bytes
    family_id: str
    parent_hash: bytes | None
    salt: bytes | None
    issued_at: float
    expires_at: float
    used_at: float | None = None
    revoked_at: float | None = None
    grace_retries: int = 0
    used_ip: str | None = None
    used_user_agent: str | None = None


class _Tables:
    """Everything the SQL store keeps in its tables, as dictionaries."""

    def __init__(self) -> None:
        self.families: dict[str, FamilyRecord] = {}
        self.tokens: dict[bytes, _Token] = {}
        self.children: dict[bytes, bytes] = {}
        self.family_tokens: dict[str, list[bytes]] = {}
        self.access: dict[str, tuple[str, float]] = {}
        self.family_access: dict[str, list[str]] = {}
        self.denied: dict[str, float] = {}
        self.proofs: dict[tuple[float, bytes], float] = {}
        self.not_before: dict[str, float] = {}
        self.revocations: dict[str, list[Revocation]] = {}
        self.clients: dict[str, Client] = {}
        # The logout outbox: messages by id, with the claim (until, by) on each.
        self.logouts: dict[str, tuple[LogoutMessage, float, float | None, str | None]] = {}
        # The revocation log in id order; ids are handed out under the store's lock.
        self.log: list[LogEntry] = []
        self.log_position = 0


class MemoryTransaction:
    """One unit of work over the tables; implements :class:`RefreshTransaction`."""

    def __init__(self, tables: _Tables) -> None:
        self._t = tables
        self._undo: list[Callable[[], object]] = []

    def rollback(self) -> None:
        while self._undo:
            self._undo.pop()()

    # -- helpers ------------------------------------------------------------------------------
    def _set(self, table: dict[K, V], key: K, value: V) -> None:
        if key in table:
            old = table[key]
            self._undo.append(lambda: table.__setitem__(key, old))
        else:
            self._undo.append(lambda: table.pop(key))
        table[key] = value

    def _pop(self, table: dict[K, V], key: K) -> None:
        old = table.pop(key)
        self._undo.append(lambda: table.__setitem__(key, old))

    def _append(self, table: dict[str, list[T]], key: str, value: T) -> None:
        items = table.setdefault(key, [])
        items.append(value)
        self._undo.append(items.pop)

    def _update(self, row: _Token, **changes: object) -> None:
        old = {name: getattr(row, name) for name in changes}

        def undo() -> None:
            for name, value in old.items():
                setattr(row, name, value)

        for name, value in changes.items():
            setattr(row, name, value)
        self._undo.append(undo)

    def _log_revocation(self, kind: str, key: str, at: float, until: float | None) -> None:
        t = self._t
        t.log_position += 1
        t.log.append(LogEntry(t.log_position, kind, key, at, until))

        def undo() -> None:
            t.log.pop()
            t.log_position -= 1

        self._undo.append(undo)

    def _record(self, row: _Token) -> TokenRecord:
        return _token_record(row, self._t.families[row.family_id])

    # -- RefreshTransaction -------------------------------------------------------------------
    def get_token(self, token_hash: bytes) -> TokenRecord | None:
        row = self._t.tokens.get(token_hash)
        return None if row is None else self._record(row)

    def get_child(self, parent_hash: bytes) -> TokenRecord | None:
        child = self._t.children.get(parent_hash)
        return None if child is None else self._record(self._t.tokens[child])

    def insert_family(self, family: FamilyRecord) -> None:
        if family.id in self._t.families:
            raise StoreError("duplicate family id")
        self._set(self._t.families, family.id, family)

    def insert_token(self, token: NewToken) -> None:
        if token.token_hash in self._t.tokens or token.family_id not in self._t.families:
            raise StoreError("duplicate token or unknown family")
        # The SQL store's foreign key and unique parent_hash: a token has at most one child,
        # so a fork is impossible even under a bug.
        parent = token.parent_hash
        if parent is not None and (parent not in self._t.tokens or parent in self._t.children):
            raise StoreError("unknown parent or a second child")
        row = _Token(*token)
        self._set(self._t.tokens, token.token_hash, row)
        self._append(self._t.family_tokens, token.family_id, token.token_hash)
        if token.parent_hash is not None:
            self._set(self._t.children, token.parent_hash, token.token_hash)

    def mark_used(self, token_hash: bytes, now: float, ip: str | None, ua: str | None) -> bool:
        row = self._t.tokens.get(token_hash)
        if row is None or row.used_at is not None or row.revoked_at is not None:
            return False
        # A used token's salt has served: a grace retry needs an unused child (SECURITY B1).
        self._update(row, used_at=now, used_ip=ip, used_user_agent=ua, salt=None)
        return True

    def count_grace_retry(self, token_hash: bytes, limit: int) -> bool:
        row = self._t.tokens.get(token_hash)
        if row is None or row.revoked_at is not None or row.grace_retries >= limit:
            return False
        self._update(row, grace_retries=row.grace_retries + 1)
        return True

    def record_access_token(self, jti: str, family_id: str, expires_at: float) -> None:
        if jti in self._t.access or family_id not in self._t.families:
            raise StoreError("duplicate jti or unknown family")
        self._set(self._t.access, jti, (family_id, expires_at))
        self._append(self._t.family_access, family_id, jti)

    def revoke_family(
        self, family_id: str, now: float, reason: str, actor: str | None
    ) -> FamilyRecord | None:
        revoked = self._revoke(family_id, now, reason, actor)
        if revoked is not None:
            for jti in self._t.family_access.get(family_id, ()):
                expires_at = self._t.access[jti][1]
                if expires_at > now - MAX_LEEWAY and jti not in self._t.denied:
                    self._set(self._t.denied, jti, expires_at)
        return revoked

    def _revoke(
        self, family_id: str, now: float, reason: str, actor: str | None
    ) -> FamilyRecord | None:
        family = self._t.families.get(family_id)
        if family is None or family.revoked_at is not None:
            return None
        revoked = family._replace(revoked_at=now, revoke_reason=reason)
        self._set(self._t.families, family_id, revoked)
        for token_hash in self._t.family_tokens.get(family_id, ()):
            row = self._t.tokens[token_hash]
            if row.revoked_at is None:
                # No grace retry can follow a revocation: its salt goes (SECURITY B1).
                self._update(row, revoked_at=now, salt=None)
        self._append(self._t.revocations, family_id, Revocation(now, reason, actor))
        client = self._t.clients.get(family.client_id)
        if client is not None and client.backchannel_logout_uri is not None:
            message = LogoutMessage(
                secrets.token_urlsafe(16), family.client_id, family.subject, family_id, 0
            )
            self._set(self._t.logouts, message.id, (message, now, None, None))
        self._log_revocation(FAMILY, family_id, now, None)
        return revoked

    def set_family_claims(self, family_id: str, claims: SessionClaims | None) -> None:
        family = self._t.families.get(family_id)
        if family is None:
            raise StoreError("unknown family")
        self._set(self._t.families, family_id, family._replace(claims=claims))

    def set_family_jkt(self, family_id: str, jkt: str) -> None:
        family = self._t.families.get(family_id)
        if family is None:
            raise StoreError("unknown family")
        self._set(self._t.families, family_id, family._replace(dpop_jkt=jkt))

    def remember_proof(self, key: bytes, iat: float) -> bool:
        if (iat, key) in self._t.proofs:
            return False
        self._set(self._t.proofs, (iat, key), iat)
        return True

    def _live(self, now: float, owner: Callable[[FamilyRecord], bool]) -> list[str]:
        return [
            f.id
            for f in self._t.families.values()
            if owner(f) and f.revoked_at is None and f.expires_at > now
        ]

    def client_families(self, client_id: str, now: float) -> list[str]:
        return self._live(now, lambda f: f.client_id == client_id)

    def revoke_subject(self, subject: str, now: float) -> list[str]:
        ids = self._live(now, lambda f: f.subject == subject)
        revoked = [fid for fid in ids if self._revoke(fid, now, "subject_revoked", None)]
        self._set(self._t.not_before, subject, now)
        self._log_revocation(SUBJECT, subject, now, None)
        return revoked

    def deny_access_token(self, jti: str, expires_at: float) -> None:
        if jti not in self._t.denied:
            self._set(self._t.denied, jti, expires_at)
        self._log_revocation(JTI, jti, expires_at, expires_at + MAX_LEEWAY)


def _token_record(row: _Token, family: FamilyRecord) -> TokenRecord:
    return TokenRecord(
        token_hash=row.token_hash,
        parent_hash=row.parent_hash,
        salt=row.salt,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked_at=row.revoked_at,
        grace_retries=row.grace_retries,
        used_ip=row.used_ip,
        used_user_agent=row.used_user_agent,
        family=family,
    )


class MemoryStore:
    """Refresh store, client registry and audit reader in this process's memory."""

    def __init__(self) -> None:
        self._t = _Tables()
        self._lock = threading.RLock()

    @contextmanager
    def _unit(self) -> Iterator[MemoryTransaction]:
        with self._lock:
            tx = MemoryTransaction(self._t)
            try:
                yield tx
            except BaseException:
                tx.rollback()
                raise

    # -- RefreshStore -------------------------------------------------------------------------
    def atomic(self, work: Callable[[MemoryTransaction], T]) -> T:
        with self._unit() as tx:
            return work(tx)

    def pending(self, work: Callable[[MemoryTransaction], T]) -> Pending[T]:
        return Pending(self.atomic(work))

    def find_token(self, token_hash: bytes) -> TokenRecord | None:
        with self._unit() as tx:
            return tx.get_token(token_hash)

    def family_tokens(self, family_id: str) -> list[TokenRecord]:
        with self._lock:
            family = self._t.families.get(family_id)
            if family is None:
                return []
            rows = (self._t.tokens[h] for h in self._t.family_tokens.get(family_id, ()))
            return sorted((_token_record(r, family) for r in rows), key=_issue_order)

    def load_revocations(self, now: float, horizon: float) -> RevocationSnapshot:
        since = now - horizon
        with self._lock:
            return RevocationSnapshot(
                frozenset(j for j, exp in self._t.denied.items() if exp > now - MAX_LEEWAY),
                frozenset(
                    f.id
                    for f in self._t.families.values()
                    if f.revoked_at is not None and f.revoked_at > since
                ),
                {s: t for s, t in self._t.not_before.items() if t > since},
            )

    # -- RevocationLog ------------------------------------------------------------------------
    def revocations_since(self, cursor: int, limit: int) -> list[LogEntry]:
        with self._lock:
            log = self._t.log
            start = bisect.bisect_right(log, cursor, key=lambda entry: entry.id)
            return log[start : start + limit]

    def append_revocation(self, kind: str, key: str, at: float) -> None:
        self.atomic(lambda tx: tx._log_revocation(kind, key, at, None))

    def change_signal(self) -> ChangeSignal | None:
        return None  # no other process writes here

    def clear_salts(self, cutoff: float, batch_size: int) -> int:
        with self._lock:
            salted = [r for r in self._t.tokens.values() if r.salt is not None]
            stale = [r for r in salted if r.issued_at <= cutoff][:batch_size]
            for row in stale:
                row.salt = None
            return len(stale)

    def purge_expired(
        self, now: float, batch_size: int, horizon: float, proofs_before: float
    ) -> int:
        cutoff = now - horizon
        t = self._t
        with self._lock:
            expired = sorted(
                (f for f in t.families.values() if f.expires_at <= cutoff),
                key=lambda f: f.expires_at,
            )[:batch_size]
            deleted = 0
            for family in expired:
                for jti in t.family_access.pop(family.id, ()):
                    del t.access[jti]
                    deleted += 1
                for token_hash in t.family_tokens.pop(family.id, ()):
                    row = t.tokens.pop(token_hash)
                    if row.parent_hash is not None:
                        t.children.pop(row.parent_hash, None)
                    deleted += 1
                deleted += len(t.revocations.pop(family.id, ())) + 1
                del t.families[family.id]
            deleted += _drop(t.denied, lambda exp: exp <= now - MAX_LEEWAY, batch_size)
            deleted += _drop(t.not_before, lambda nb: nb <= cutoff, batch_size)
            deleted += _drop(t.proofs, lambda iat: iat < proofs_before, batch_size)
            stale = [e for e in t.log if e.expires(horizon) <= now][:batch_size]
            gone = {e.id for e in stale}
            t.log = [e for e in t.log if e.id not in gone]
            return deleted + len(stale)

    # -- ClientRegistry -----------------------------------------------------------------------
    def client_registry(self) -> MemoryStore:
        return self

    def audit_reader(self) -> MemoryStore:
        return self

    def logout_outbox(self) -> MemoryStore:
        return self

    # -- LogoutOutbox -------------------------------------------------------------------------
    def claim_logouts(
        self, now: float, lease: float, limit: int, claimant: str
    ) -> list[LogoutMessage]:
        with self._lock:
            due = sorted(
                (due_at, m.id)
                for m, due_at, until, _ in self._t.logouts.values()
                if due_at <= now and (until is None or until <= now)
            )[:limit]
            claimed = []
            for due_at, message_id in due:
                message = self._t.logouts[message_id][0]
                self._t.logouts[message_id] = (message, due_at, now + lease, claimant)
                claimed.append(message)
            return claimed

    def logout_delivered(self, message_id: str, claimant: str) -> None:
        self.logout_failed(message_id, claimant, None)

    def logout_failed(self, message_id: str, claimant: str, retry_at: float | None) -> None:
        with self._lock:
            entry = self._t.logouts.get(message_id)
            if entry is None or entry[3] != claimant:
                return
            if retry_at is None:
                del self._t.logouts[message_id]
            else:
                retried = replace(entry[0], attempts=entry[0].attempts + 1)
                self._t.logouts[message_id] = (retried, retry_at, None, None)

    def pending_logouts(self) -> int:
        with self._lock:
            return len(self._t.logouts)

    def get_client(self, client_id: str) -> Client | None:
        return self._t.clients.get(client_id)

    def add_client(self, client: Client) -> None:
        self.write_client(client.client_id, client, new=True, log=None)

    def list_clients(self) -> list[Client]:
        with self._lock:
            return sorted(self._t.clients.values(), key=lambda c: c.client_id)

    def update_client(self, client: Client) -> None:
        self.write_client(client.client_id, client, new=False, log=None)

    def delete_client(self, client_id: str) -> bool:
        return self.write_client(client_id, None, new=False, log=None)

    def write_client(
        self, client_id: str, client: Client | None, *, new: bool, log: ClientLogEntry | None
    ) -> bool:
        with self._unit() as tx:
            clients = self._t.clients
            if client is None:
                if client_id not in clients:
                    return False
                tx._pop(clients, client_id)
            elif new and client_id in clients:
                raise InvalidRequest(f"client {client_id!r} already exists")
            elif not new and client_id not in clients:
                raise InvalidRequest(f"no client {client_id!r}")
            else:
                tx._set(clients, client_id, client)
            if log is not None:
                tx._log_revocation(log.kind, client_id, log.at, None)
            return True

    # -- AuditReader --------------------------------------------------------------------------
    def list_families(self, subject: str, limit: int = 100) -> list[FamilySummary]:
        with self._lock:
            mine = [f for f in self._t.families.values() if f.subject == subject]
            mine.sort(key=lambda f: f.created_at, reverse=True)
            return [
                FamilySummary.of(f, tuple(self._t.revocations.get(f.id, ()))) for f in mine[:limit]
            ]

    def list_sessions(self, subject: str, now: float, limit: int) -> list[SessionActivity]:
        with self._lock:
            found = []
            for f in sorted(self._t.families.values(), key=lambda f: f.created_at, reverse=True):
                if f.subject != subject or f.revoked_at is not None or f.expires_at <= now:
                    continue
                rows = [self._t.tokens[h] for h in self._t.family_tokens.get(f.id, ())]
                if not any(
                    r.used_at is None and r.revoked_at is None and r.expires_at > now for r in rows
                ):
                    continue
                used = [r for r in rows if r.used_at is not None]
                last = max(used, key=lambda r: r.used_at or 0.0) if used else None
                found.append(
                    SessionActivity(
                        f.id,
                        f.client_id,
                        f.created_at,
                        f.expires_at,
                        None if last is None else last.used_at,
                        None if last is None else last.used_ip,
                        None if last is None else last.used_user_agent,
                    )
                )
            return found[:limit]


def _issue_order(record: TokenRecord) -> tuple[float, bytes]:
    return record.issued_at, record.token_hash


def _drop(table: dict[Any, float], expired: Callable[[float], bool], limit: int) -> int:
    gone = [key for key, value in table.items() if expired(value)][:limit]
    for key in gone:
        del table[key]
    return len(gone)


__all__ = ["MemoryStore", "MemoryTransaction"]
