"""The SQL unit of work: :class:`tokensmith.store.RefreshTransaction` on one DBAPI cursor,
running the statements precompiled in :mod:`tokensmith.store.sql.statements`.

Its revoking methods add entries to the revocation log (:mod:`tokensmith.revocation.log`),
written by :meth:`SqlTransaction._flush_log` as the unit's last statements, just before it
commits: they take the ids from the one cursor row, whose lock is then held until the
commit. Writers therefore commit in id order, and a reader that sees id N has seen every
lower id that will ever commit. A PostgreSQL sequence would not promise that (a unit that
drew 7 could commit after one that drew 8, behind a reader already past 8); and as nothing
else is locked after the cursor row, a revocation of several families that waits for one
of them cannot hold it (no deadlock).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from tokensmith.revocation.log import FAMILY, JTI, SUBJECT
from tokensmith.settings import MAX_LEEWAY
from tokensmith.store.records import FamilyRecord, NewToken, TokenRecord
from tokensmith.store.sql.rows import family_record, token_record
from tokensmith.store.sql.statements import SQL
from tokensmith.tokens.claims import SessionClaims


def _claims_json(claims: SessionClaims | None) -> str | None:
    # The statements are compiled once and run on the DBAPI cursor, which binds text.
    return None if claims is None else claims.to_json()


class SqlTransaction:
    """One unit of work on one pooled DBAPI connection; implements
    :class:`tokensmith.store.RefreshTransaction`."""

    def __init__(self, cursor: Any, dialect_name: str) -> None:
        self._cursor = cursor
        self._sql = SQL[dialect_name]
        self._log: list[tuple[str, str, float, float | None]] = []

    # The store's own steps, not part of RefreshTransaction (tests/test_architecture.py).
    def _log_revocation(self, kind: str, item: str, at: float, until: float | None) -> None:
        """Add an entry to the revocation log when this unit commits."""
        self._log.append((kind, item, at, until))

    def _flush_log(self) -> None:
        """Write the unit's log entries: call last, right before the commit."""
        if not self._log:
            return
        entries, self._log = self._log, []
        last = self._one("advance_log", {"n": len(entries)})[0]
        first = last - len(entries) + 1
        self._cursor.executemany(
            self._sql["insert_log"],
            [
                {"id": first + n, "kind": kind, "item": item, "at": at, "until": until}
                for n, (kind, item, at, until) in enumerate(entries)
            ],
        )
        if "notify_log" in self._sql:
            self._run("notify_log", {"position": str(last)})

    def _one(self, name: str, params: dict[str, Any]) -> Any:
        self._cursor.execute(self._sql[name], params)
        return self._cursor.fetchone()

    def _run(self, name: str, params: dict[str, Any]) -> None:
        self._cursor.execute(self._sql[name], params)

    def get_token(self, token_hash: bytes) -> TokenRecord | None:
        row = self._one("select_token", {"h": token_hash})
        return None if row is None else token_record(row)

    def get_child(self, parent_hash: bytes) -> TokenRecord | None:
        row = self._one("select_child", {"h": parent_hash})
        return None if row is None else token_record(row)

    def insert_family(self, family: FamilyRecord) -> None:
        self._run(
            "insert_family",
            {
                "id": family.id,
                "subject": family.subject,
                "client_id": family.client_id,
                "scope": family.scope,
                "audience": json.dumps(list(family.audience)),
                "auth_time": family.auth_time,
                "amr": json.dumps(list(family.amr)),
                "acr": family.acr,
                "created_at": family.created_at,
                "expires_at": family.expires_at,
                "revoked_at": None,
                "revoke_reason": None,
                "claims": _claims_json(family.claims),
                "dpop_jkt": family.dpop_jkt,
            },
        )

    def insert_token(self, token: NewToken) -> None:
        self._run(
            "insert_token",
            {
                "token_hash": token.token_hash,
                "family_id": token.family_id,
                "parent_hash": token.parent_hash,
                "salt": token.salt,
                "issued_at": token.issued_at,
                "expires_at": token.expires_at,
                "used_at": None,
                "revoked_at": None,
                "grace_retries": 0,
                "used_ip": None,
                "used_user_agent": None,
            },
        )

    def mark_used(self, token_hash: bytes, now: float, ip: str | None, ua: str | None) -> bool:
        return self._one("mark_used", {"h": token_hash, "now": now, "ip": ip, "ua": ua}) is not None

    def count_grace_retry(self, token_hash: bytes, limit: int) -> bool:
        return self._one("count_grace", {"h": token_hash, "limit": limit}) is not None

    def record_access_token(self, jti: str, family_id: str, expires_at: float) -> None:
        self._run("insert_access", {"jti": jti, "family_id": family_id, "expires_at": expires_at})

    def revoke_family(
        self, family_id: str, now: float, reason: str, actor: str | None
    ) -> FamilyRecord | None:
        row = self._one("revoke_family", {"fid": family_id, "now": now, "reason": reason})
        if row is None:
            return None
        self._run("revoke_family_tokens", {"fid": family_id, "now": now})
        self._run("deny_family_access", {"fid": family_id, "verifiable_after": now - MAX_LEEWAY})
        self._run("audit", {"fid": family_id, "now": now, "reason": reason, "actor": actor})
        self._log_revocation(FAMILY, family_id, now, None)
        family = family_record(row)
        self._enqueue_logout(family_id, family.subject, family.client_id, now)
        return family

    def _enqueue_logout(self, family_id: str, subject: str, client_id: str, now: float) -> None:
        """Queue the back-channel logout of a family this unit revoked (a no-op unless its
        client registered a ``backchannel_logout_uri``; tokensmith.logout.outbox)."""
        params = {"id": secrets.token_urlsafe(16), "sub": subject, "fid": family_id}
        self._run("enqueue_logout", {**params, "cid": client_id, "now": now})

    def set_family_claims(self, family_id: str, claims: SessionClaims | None) -> None:
        self._run("set_family_claims", {"fid": family_id, "claims": _claims_json(claims)})

    def set_family_jkt(self, family_id: str, jkt: str) -> None:
        self._run("set_family_jkt", {"fid": family_id, "jkt": jkt})

    def remember_proof(self, key: bytes, iat: float) -> bool:
        return self._one("remember_proof", {"key": key, "iat": iat}) is not None

    def client_families(self, client_id: str, now: float) -> list[str]:
        self._cursor.execute(self._sql["client_families"], {"client_id": client_id, "now": now})
        return [row[0] for row in self._cursor.fetchall()]

    def revoke_subject(self, subject: str, now: float) -> list[str]:
        self._cursor.execute(self._sql["subject_families"], {"sub": subject, "now": now})
        ids = [row[0] for row in self._cursor.fetchall()]
        revoked = []
        for family_id in ids:
            params = {"fid": family_id, "now": now, "reason": "subject_revoked"}
            row = self._one("revoke_family", params)
            if row is not None:
                self._run("revoke_family_tokens", {"fid": family_id, "now": now})
                self._run("audit", {**params, "actor": None})
                self._enqueue_logout(family_id, subject, family_record(row).client_id, now)
                self._log_revocation(FAMILY, family_id, now, None)
                revoked.append(family_id)
        self._run("set_not_before", {"subject": subject, "not_before": now})
        self._log_revocation(SUBJECT, subject, now, None)
        return revoked

    def deny_access_token(self, jti: str, expires_at: float) -> None:
        self._run("deny", {"jti": jti, "expires_at": expires_at})
        self._log_revocation(JTI, jti, expires_at, expires_at + MAX_LEEWAY)
