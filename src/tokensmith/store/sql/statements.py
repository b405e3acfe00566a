"""The refresh store's SQL, built once at import (STYLE "Measured performance habits":
rebuilding Core statements costs more client CPU than the database work).

The Core statements are the single source of truth; the unit of work runs them compiled once
per dialect on the pooled DBAPI connection. The compare-and-set that consumes a token is a
conditional ``UPDATE ... RETURNING`` on both databases (SECURITY R1).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    insert,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ClauseElement

from tokensmith.store.sql import models

f = models.families
rt = models.refresh_tokens
at = models.access_tokens
dl = models.denylist
nb = models.subject_not_before
fr = models.family_revocations

FAMILY_COLS = (
    f.c.id,
    f.c.subject,
    f.c.client_id,
    f.c.scope,
    f.c.audience,
    f.c.auth_time,
    f.c.amr,
    f.c.acr,
    f.c.created_at,
    f.c.expires_at,
    f.c.revoked_at,
    f.c.revoke_reason,
)
TOKEN_COLS = (
    rt.c.token_hash,
    rt.c.parent_hash,
    rt.c.salt,
    rt.c.issued_at,
    rt.c.expires_at,
    rt.c.used_at,
    rt.c.revoked_at,
    rt.c.grace_retries,
    rt.c.used_ip,
    rt.c.used_user_agent,
)
NT = len(TOKEN_COLS)
_TOKEN_AND_FAMILY = select(*TOKEN_COLS, *FAMILY_COLS).join_from(rt, f, rt.c.family_id == f.c.id)
# A plain read of the token (introspection): no lock, no write transaction.
PEEK_TOKEN = _TOKEN_AND_FAMILY.where(rt.c.token_hash == bindparam("h"))
# PostgreSQL: the family row is locked for the whole unit of work, so a concurrent family
# revocation either happened before (we see it) or waits for us and then also revokes the
# child we insert (CWE-367). NO KEY UPDATE does not block the foreign-key checks of inserts.
# SQLite ignores the clause; BEGIN IMMEDIATE already serialises writers there.
SELECT_TOKEN = PEEK_TOKEN.with_for_update(key_share=True, of=f)
SELECT_CHILD = _TOKEN_AND_FAMILY.where(rt.c.parent_hash == bindparam("h"))
FAMILY_TOKENS = _TOKEN_AND_FAMILY.where(rt.c.family_id == bindparam("fid")).order_by(
    rt.c.issued_at, rt.c.token_hash
)
INSERT_FAMILY = insert(f)
INSERT_TOKEN = insert(rt)
INSERT_ACCESS = insert(at)
MARK_USED = (
    update(rt)
    .where(rt.c.token_hash == bindparam("h"), rt.c.used_at.is_(None), rt.c.revoked_at.is_(None))
    # A used token's salt has served: a grace retry needs an unused child (SECURITY B1).
    .values(
        used_at=bindparam("now"),
        used_ip=bindparam("ip"),
        used_user_agent=bindparam("ua"),
        salt=null(),
    )
    .returning(rt.c.token_hash)
)
COUNT_GRACE = (
    update(rt)
    .where(
        rt.c.token_hash == bindparam("h"),
        rt.c.revoked_at.is_(None),
        rt.c.grace_retries < bindparam("limit"),
    )
    .values(grace_retries=rt.c.grace_retries + literal_column("1"))
    .returning(rt.c.grace_retries)
)
REVOKE_FAMILY = (
    update(f)
    .where(f.c.id == bindparam("fid"), f.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoke_reason=bindparam("reason"))
    .returning(*FAMILY_COLS)
)
REVOKE_FAMILY_TOKENS = (
    update(rt)
    .where(rt.c.family_id == bindparam("fid"), rt.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), salt=null())
)
# "verifiable_after" is now - MAX_LEEWAY: a token that expired less than that ago may still
# verify somewhere, so it is denied and its row kept (SECURITY B4).
DENY_FAMILY_ACCESS = insert(dl).from_select(
    ["jti", "expires_at"],
    select(at.c.jti, at.c.expires_at).where(
        at.c.family_id == bindparam("fid"),
        at.c.expires_at > bindparam("verifiable_after"),
        ~exists().where(dl.c.jti == at.c.jti),
    ),
)
AUDIT = insert(fr).values(
    family_id=bindparam("fid"),
    revoked_at=bindparam("now"),
    reason=bindparam("reason"),
    actor=bindparam("actor"),
)


def _live_families(owner: ColumnElement[bool]) -> Select[tuple[str]]:
    """Ids of ``owner``'s unrevoked, unexpired families, locked against rotation."""
    return (
        select(f.c.id)
        .where(owner, f.c.revoked_at.is_(None), f.c.expires_at > bindparam("now"))
        .with_for_update(key_share=True)
    )


SUBJECT_FAMILIES = _live_families(f.c.subject == bindparam("sub"))
CLIENT_FAMILIES = _live_families(f.c.client_id == bindparam("client_id"))
DENY = {
    "postgresql": pg.insert(dl).on_conflict_do_nothing(index_elements=[dl.c.jti]),
    "sqlite": sqlite.insert(dl).on_conflict_do_nothing(index_elements=[dl.c.jti]),
}
_pg_nb = pg.insert(nb)
_sqlite_nb = sqlite.insert(nb)
SET_NOT_BEFORE = {
    "postgresql": _pg_nb.on_conflict_do_update(
        index_elements=[nb.c.subject], set_={"not_before": _pg_nb.excluded.not_before}
    ),
    "sqlite": _sqlite_nb.on_conflict_do_update(
        index_elements=[nb.c.subject], set_={"not_before": _sqlite_nb.excluded.not_before}
    ),
}

LOAD_DENIED = select(dl.c.jti).where(dl.c.expires_at > bindparam("verifiable_after"))
LOAD_FAMILIES = select(f.c.id).where(f.c.revoked_at > bindparam("since"))
LOAD_NOT_BEFORE = select(nb.c.subject, nb.c.not_before).where(nb.c.not_before > bindparam("since"))

# Cleanup (SPEC: small batches; PostgreSQL: FOR UPDATE SKIP LOCKED so concurrent cleaners and
# live traffic never wait on each other).
EXPIRED_FAMILIES = (
    select(f.c.id)
    .where(f.c.expires_at <= bindparam("cutoff"))
    .order_by(f.c.expires_at)
    .limit(bindparam("n"))
    .with_for_update(skip_locked=True)
)
FIDS: BindParameter[Any] = bindparam("fids", expanding=True)
PURGE = (
    delete(at).where(at.c.family_id.in_(FIDS)),
    delete(rt).where(rt.c.family_id.in_(FIDS)),
    delete(fr).where(fr.c.family_id.in_(FIDS)),
    delete(f).where(f.c.id.in_(FIDS)),
)
PURGE_DENIED = delete(dl).where(
    dl.c.jti.in_(
        select(dl.c.jti)
        .where(dl.c.expires_at <= bindparam("verifiable_after"))
        .limit(bindparam("n"))
    )
)
# Salts past every grace window, oldest first, through the partial index on salted rows.
CLEAR_SALTS = (
    update(rt)
    .where(
        rt.c.token_hash.in_(
            select(rt.c.token_hash)
            .where(rt.c.salt.is_not(None), rt.c.issued_at <= bindparam("cutoff"))
            .limit(bindparam("n"))
        )
    )
    .values(salt=null())
)
PURGE_NOT_BEFORE = delete(nb).where(
    nb.c.subject.in_(
        select(nb.c.subject).where(nb.c.not_before <= bindparam("cutoff")).limit(bindparam("n"))
    )
)


# The unit of work runs these on the pooled DBAPI connection: compiled once per dialect from
# the Core statements above, which stay the single source of truth. Going through
# Connection.execute costs ~70 us per statement and ~160 us for begin/commit on this machine,
# more than SQLite's own work (benchmarks/bench_refresh.py).
DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(paramstyle="named"),
    "postgresql": PGDialect_psycopg(),  # type: ignore[no-untyped-call]
}
UNIT_OF_WORK: dict[str, ClauseElement | dict[str, Any]] = {
    "select_token": SELECT_TOKEN,
    "peek_token": PEEK_TOKEN,
    "select_child": SELECT_CHILD,
    "family_tokens": FAMILY_TOKENS,
    "insert_family": INSERT_FAMILY,
    "insert_token": INSERT_TOKEN,
    "insert_access": INSERT_ACCESS,
    "mark_used": MARK_USED,
    "count_grace": COUNT_GRACE,
    "revoke_family": REVOKE_FAMILY,
    "revoke_family_tokens": REVOKE_FAMILY_TOKENS,
    "deny_family_access": DENY_FAMILY_ACCESS,
    "audit": AUDIT,
    "subject_families": SUBJECT_FAMILIES,
    "client_families": CLIENT_FAMILIES,
    "deny": DENY,
    "set_not_before": SET_NOT_BEFORE,
}


def _compile(dialect_name: str) -> dict[str, str]:
    dialect = DIALECTS[dialect_name]
    compiled = {}
    for name, stmt in UNIT_OF_WORK.items():
        clause = stmt[dialect_name] if isinstance(stmt, dict) else stmt
        compiled[name] = str(clause.compile(dialect=dialect))
    return compiled


SQL = {name: _compile(name) for name in DIALECTS}
