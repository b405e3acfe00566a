"""The refresh store's SQL, built once at import (ARCHITECTURE.md "Cross-cutting choices":
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
    Double,
    Select,
    String,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ClauseElement

from tokensmith.store.sql.clients import clients
from tokensmith.store.sql.models import (
    access_tokens,
    denylist,
    dpop_proofs,
    families,
    family_revocations,
    logout_outbox,
    refresh_tokens,
    revocation_cursor,
    revocation_log,
    subject_not_before,
)

FAMILY_COLS = (
    families.c.id,
    families.c.subject,
    families.c.client_id,
    families.c.scope,
    families.c.audience,
    families.c.auth_time,
    families.c.amr,
    families.c.acr,
    families.c.created_at,
    families.c.expires_at,
    families.c.revoked_at,
    families.c.revoke_reason,
    families.c.claims,
    families.c.dpop_jkt,
)
TOKEN_COLS = (
    refresh_tokens.c.token_hash,
    refresh_tokens.c.parent_hash,
    refresh_tokens.c.salt,
    refresh_tokens.c.issued_at,
    refresh_tokens.c.expires_at,
    refresh_tokens.c.used_at,
    refresh_tokens.c.revoked_at,
    refresh_tokens.c.grace_retries,
    refresh_tokens.c.used_ip,
    refresh_tokens.c.used_user_agent,
)
# A token row is TOKEN_COLS followed by FAMILY_COLS: where its family part starts.
TOKEN_WIDTH = len(TOKEN_COLS)
_TOKEN_AND_FAMILY = select(*TOKEN_COLS, *FAMILY_COLS).join_from(
    refresh_tokens, families, refresh_tokens.c.family_id == families.c.id
)
# A plain read of the token (introspection): no lock, no write transaction.
PEEK_TOKEN = _TOKEN_AND_FAMILY.where(refresh_tokens.c.token_hash == bindparam("h"))
# PostgreSQL: the family row is locked for the whole unit of work, so a concurrent family
# revocation either happened before (we see it) or waits for us and then also revokes the
# child we insert (CWE-367). NO KEY UPDATE does not block the foreign-key checks of inserts.
# SQLite ignores the clause; BEGIN IMMEDIATE already serialises writers there.
SELECT_TOKEN = PEEK_TOKEN.with_for_update(key_share=True, of=families)
SELECT_CHILD = _TOKEN_AND_FAMILY.where(refresh_tokens.c.parent_hash == bindparam("h"))
FAMILY_TOKENS = _TOKEN_AND_FAMILY.where(refresh_tokens.c.family_id == bindparam("fid")).order_by(
    refresh_tokens.c.issued_at, refresh_tokens.c.token_hash
)
INSERT_FAMILY = insert(families)
INSERT_TOKEN = insert(refresh_tokens)
INSERT_ACCESS = insert(access_tokens)
MARK_USED = (
    update(refresh_tokens)
    .where(
        refresh_tokens.c.token_hash == bindparam("h"),
        refresh_tokens.c.used_at.is_(None),
        refresh_tokens.c.revoked_at.is_(None),
    )
    # A used token's salt has served: a grace retry needs an unused child (SECURITY B1).
    .values(
        used_at=bindparam("now"),
        used_ip=bindparam("ip"),
        used_user_agent=bindparam("ua"),
        salt=null(),
    )
    .returning(refresh_tokens.c.token_hash)
)
COUNT_GRACE = (
    update(refresh_tokens)
    .where(
        refresh_tokens.c.token_hash == bindparam("h"),
        refresh_tokens.c.revoked_at.is_(None),
        refresh_tokens.c.grace_retries < bindparam("limit"),
    )
    .values(grace_retries=refresh_tokens.c.grace_retries + literal_column("1"))
    .returning(refresh_tokens.c.grace_retries)
)
REVOKE_FAMILY = (
    update(families)
    .where(families.c.id == bindparam("fid"), families.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoke_reason=bindparam("reason"))
    .returning(*FAMILY_COLS)
)
SET_FAMILY_CLAIMS = (
    update(families).where(families.c.id == bindparam("fid")).values(claims=bindparam("claims"))
)
SET_FAMILY_JKT = (
    update(families).where(families.c.id == bindparam("fid")).values(dpop_jkt=bindparam("jkt"))
)
REVOKE_FAMILY_TOKENS = (
    update(refresh_tokens)
    .where(refresh_tokens.c.family_id == bindparam("fid"), refresh_tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), salt=null())
)
# "verifiable_after" is now - MAX_LEEWAY: a token that expired less than that ago may still
# verify somewhere, so it is denied and its row kept (SECURITY B4).
DENY_FAMILY_ACCESS = insert(denylist).from_select(
    ["jti", "expires_at"],
    select(access_tokens.c.jti, access_tokens.c.expires_at).where(
        access_tokens.c.family_id == bindparam("fid"),
        access_tokens.c.expires_at > bindparam("verifiable_after"),
        ~exists().where(denylist.c.jti == access_tokens.c.jti),
    ),
)
AUDIT = insert(family_revocations).values(
    family_id=bindparam("fid"),
    revoked_at=bindparam("now"),
    reason=bindparam("reason"),
    actor=bindparam("actor"),
)

# A revoked family's back-channel logout, queued in the revocation's own transaction when
# its client registered a backchannel_logout_uri (tokensmith.logout.outbox); the typed
# parameters make PostgreSQL cast them in the select list.
_NOW: BindParameter[float] = bindparam("now", type_=Double())
ENQUEUE_LOGOUT = insert(logout_outbox).from_select(
    ["id", "client_id", "subject", "session_id", "created_at", "attempts", "next_attempt_at"],
    select(
        bindparam("id", type_=String()),
        clients.c.client_id,
        bindparam("sub", type_=String()),
        bindparam("fid", type_=String()),
        _NOW,
        literal_column("0"),
        _NOW,
    ).where(clients.c.client_id == bindparam("cid"), clients.c.backchannel_logout_uri.is_not(None)),
)


def _live_families(owner: ColumnElement[bool]) -> Select[tuple[str]]:
    """Ids of ``owner``'s unrevoked, unexpired families, locked against rotation."""
    return (
        select(families.c.id)
        .where(owner, families.c.revoked_at.is_(None), families.c.expires_at > bindparam("now"))
        .with_for_update(key_share=True)
    )


SUBJECT_FAMILIES = _live_families(families.c.subject == bindparam("sub"))
CLIENT_FAMILIES = _live_families(families.c.client_id == bindparam("client_id"))
DENY = {
    "postgresql": pg.insert(denylist).on_conflict_do_nothing(index_elements=[denylist.c.jti]),
    "sqlite": sqlite.insert(denylist).on_conflict_do_nothing(index_elements=[denylist.c.jti]),
}


# A replayed proof names the same row (SECURITY D1); a row is purged only once no instance
# can accept its proof any more (RefreshService.cleanup).
REMEMBER_PROOF = {
    "postgresql": pg.insert(dpop_proofs).on_conflict_do_nothing().returning(dpop_proofs.c.key),
    "sqlite": sqlite.insert(dpop_proofs).on_conflict_do_nothing().returning(dpop_proofs.c.key),
}
_pg_not_before = pg.insert(subject_not_before)
_sqlite_not_before = sqlite.insert(subject_not_before)
SET_NOT_BEFORE = {
    "postgresql": _pg_not_before.on_conflict_do_update(
        index_elements=[subject_not_before.c.subject],
        set_={"not_before": _pg_not_before.excluded.not_before},
    ),
    "sqlite": _sqlite_not_before.on_conflict_do_update(
        index_elements=[subject_not_before.c.subject],
        set_={"not_before": _sqlite_not_before.excluded.not_before},
    ),
}

LOAD_DENIED = select(denylist.c.jti).where(denylist.c.expires_at > bindparam("verifiable_after"))
LOAD_FAMILIES = select(families.c.id).where(families.c.revoked_at > bindparam("since"))
LOAD_NOT_BEFORE = select(subject_not_before.c.subject, subject_not_before.c.not_before).where(
    subject_not_before.c.not_before > bindparam("since")
)

# The revocation log (tokensmith.revocation.log). A unit hands out its ids last, just before
# it commits: the cursor row's lock then orders the writers (store/sql/transaction.py).
ADVANCE_LOG = (
    update(revocation_cursor)
    .where(revocation_cursor.c.id == literal_column("1"))
    .values(position=revocation_cursor.c.position + bindparam("n"))
    .returning(revocation_cursor.c.position)
)
INSERT_LOG = insert(revocation_log).values(
    id=bindparam("id"),
    kind=bindparam("kind"),
    item=bindparam("item"),
    at=bindparam("at"),
    until=bindparam("until"),
)
# Delivered at commit, in commit order, to every session that LISTENs (store/sql/notify.py).
NOTIFY_CHANNEL = "tokensmith_revocations"
NOTIFY_LOG = {
    "postgresql": select(
        func.pg_notify(literal_column(f"'{NOTIFY_CHANNEL}'"), bindparam("position"))
    )
}
LOG_SINCE = (
    select(
        revocation_log.c.id,
        revocation_log.c.kind,
        revocation_log.c.item,
        revocation_log.c.at,
        revocation_log.c.until,
    )
    .where(revocation_log.c.id > bindparam("cursor"))
    .order_by(revocation_log.c.id)
    .limit(bindparam("n"))
)
PURGE_LOG = delete(revocation_log).where(
    revocation_log.c.id.in_(
        select(revocation_log.c.id)
        .where(
            ((revocation_log.c.until.is_not(None)) & (revocation_log.c.until <= bindparam("now")))
            | ((revocation_log.c.until.is_(None)) & (revocation_log.c.at <= bindparam("cutoff")))
        )
        .limit(bindparam("n"))
    )
)

# Cleanup (docs/contract.md: small batches; PostgreSQL: FOR UPDATE SKIP LOCKED so concurrent
# cleaners and
# live traffic never wait on each other).
EXPIRED_FAMILIES = (
    select(families.c.id)
    .where(families.c.expires_at <= bindparam("cutoff"))
    .order_by(families.c.expires_at)
    .limit(bindparam("n"))
    .with_for_update(skip_locked=True)
)
FIDS: BindParameter[Any] = bindparam("fids", expanding=True)
PURGE = (
    delete(access_tokens).where(access_tokens.c.family_id.in_(FIDS)),
    delete(refresh_tokens).where(refresh_tokens.c.family_id.in_(FIDS)),
    delete(family_revocations).where(family_revocations.c.family_id.in_(FIDS)),
    delete(families).where(families.c.id.in_(FIDS)),
)
PURGE_DENIED = delete(denylist).where(
    denylist.c.jti.in_(
        select(denylist.c.jti)
        .where(denylist.c.expires_at <= bindparam("verifiable_after"))
        .limit(bindparam("n"))
    )
)
# Salts past every grace window, oldest first, through the partial index on salted rows.
CLEAR_SALTS = (
    update(refresh_tokens)
    .where(
        refresh_tokens.c.token_hash.in_(
            select(refresh_tokens.c.token_hash)
            .where(
                refresh_tokens.c.salt.is_not(None),
                refresh_tokens.c.issued_at <= bindparam("cutoff"),
            )
            .limit(bindparam("n"))
        )
    )
    .values(salt=null())
)
PURGE_PROOFS = delete(dpop_proofs).where(
    tuple_(dpop_proofs.c.iat, dpop_proofs.c.key).in_(
        select(dpop_proofs.c.iat, dpop_proofs.c.key)
        .where(dpop_proofs.c.iat < bindparam("before"))
        .order_by(dpop_proofs.c.iat)
        .limit(bindparam("n"))
    )
)
PURGE_NOT_BEFORE = delete(subject_not_before).where(
    subject_not_before.c.subject.in_(
        select(subject_not_before.c.subject)
        .where(subject_not_before.c.not_before <= bindparam("cutoff"))
        .limit(bindparam("n"))
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
    "set_family_claims": SET_FAMILY_CLAIMS,
    "set_family_jkt": SET_FAMILY_JKT,
    "remember_proof": REMEMBER_PROOF,
    "revoke_family_tokens": REVOKE_FAMILY_TOKENS,
    "deny_family_access": DENY_FAMILY_ACCESS,
    "audit": AUDIT,
    "enqueue_logout": ENQUEUE_LOGOUT,
    "subject_families": SUBJECT_FAMILIES,
    "client_families": CLIENT_FAMILIES,
    "deny": DENY,
    "set_not_before": SET_NOT_BEFORE,
    "advance_log": ADVANCE_LOG,
    "insert_log": INSERT_LOG,
    "notify_log": NOTIFY_LOG,
}


def _compile(dialect_name: str) -> dict[str, str]:
    dialect = DIALECTS[dialect_name]
    compiled = {}
    for name, stmt in UNIT_OF_WORK.items():
        if isinstance(stmt, dict) and dialect_name not in stmt:
            continue  # a statement this database does without (NOTIFY)
        clause = stmt[dialect_name] if isinstance(stmt, dict) else stmt
        compiled[name] = str(clause.compile(dialect=dialect))
    return compiled


SQL = {name: _compile(name) for name in DIALECTS}
