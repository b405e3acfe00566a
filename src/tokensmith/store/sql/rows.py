"""Rows of the refresh store's statements decoded into the core's records, by name.

Column order is that of ``FAMILY_COLS`` and ``TOKEN_COLS`` in
:mod:`tokensmith.store.sql.statements`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tokensmith.store.records import FamilyRecord, TokenRecord
from tokensmith.store.sql.statements import TOKEN_WIDTH
from tokensmith.tokens.claims import SessionClaims


@lru_cache(maxsize=4096)
def _parse_json_list(value: str) -> tuple[str, ...]:
    return tuple(json.loads(value))


def _json_list(value: Any) -> tuple[str, ...]:
    # psycopg decodes json columns itself; sqlite3 hands back the text, which repeats a lot
    # (audiences, amr values), so parsed forms are cached.
    return _parse_json_list(value) if isinstance(value, str) else tuple(value)


def family_record(row: Sequence[Any]) -> FamilyRecord:
    """A ``FAMILY_COLS`` row, in that order (``statements.py``)."""
    (
        family_id,
        subject,
        client_id,
        scope,
        audience,
        auth_time,
        amr,
        acr,
        created_at,
        expires_at,
        revoked_at,
        revoke_reason,
        claims,
        dpop_jkt,
    ) = row
    return FamilyRecord(
        id=family_id,
        subject=subject,
        client_id=client_id,
        scope=scope,
        audience=_json_list(audience),
        auth_time=auth_time,
        amr=_json_list(amr),
        acr=acr,
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
        revoke_reason=revoke_reason,
        claims=SessionClaims.from_json(claims),
        dpop_jkt=dpop_jkt,
    )


def token_record(row: Sequence[Any]) -> TokenRecord:
    """A ``TOKEN_COLS`` + ``FAMILY_COLS`` row, in that order (``statements.py``)."""
    (
        token_hash,
        parent_hash,
        salt,
        issued_at,
        expires_at,
        used_at,
        revoked_at,
        grace_retries,
        used_ip,
        used_user_agent,
    ) = row[:TOKEN_WIDTH]
    return TokenRecord(
        token_hash=bytes(token_hash),
        parent_hash=None if parent_hash is None else bytes(parent_hash),
        salt=None if salt is None else bytes(salt),
        issued_at=issued_at,
        expires_at=expires_at,
        used_at=used_at,
        revoked_at=revoked_at,
        grace_retries=grace_retries,
        used_ip=used_ip,
        used_user_agent=used_user_agent,
        family=family_record(row[TOKEN_WIDTH:]),
    )
