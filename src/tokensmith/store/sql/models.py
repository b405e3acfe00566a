"""SQLAlchemy 2 typed models of the refresh store.

Tables are prefixed ``ts_`` because tokensmith often shares a database with its host
application. Times are epoch seconds as double precision, the same representation the
service and the injected clock use (no time-zone conversions on the hot path). Token rows
are keyed by the SHA-256 of the token (docs/contract.md "Tokens": stored only as a SHA-256 hash).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Family ids are token_urlsafe(16) (22 chars); generous bounds leave room for other sources.
ID_LENGTH = 64
NAME_LENGTH = 255


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        float: Double(),
        int: BigInteger(),
        bytes: LargeBinary(),
    }


class Family(Base):
    """One login session (OIDC ``sid``) and everything rotated from it."""

    __tablename__ = "ts_families"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    subject: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    # Deleting a client revokes its families.
    client_id: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    scope: Mapped[str] = mapped_column(Text)
    audience: Mapped[list[str]] = mapped_column(JSON)
    auth_time: Mapped[int]
    amr: Mapped[list[str]] = mapped_column(JSON)
    acr: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[float]
    # Cleanup walks families in expiry order; revocation loads recently revoked ones.
    expires_at: Mapped[float] = mapped_column(index=True)
    revoked_at: Mapped[float | None] = mapped_column(index=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(64))
    # tokensmith.tokens.claims.SessionClaims as JSON; NULL when the session has none.
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # RFC 7638 thumbprint of the DPoP key the refresh tokens are bound to (RFC 9449 §5).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(Base):
    __tablename__ = "ts_refresh_tokens"
    # Cleanup finds salted rows by age (SECURITY B1). Only tokens issued in a grace window
    # carry a salt, for seconds, so this partial index stays tiny.
    __table_args__ = (
        Index(
            "ix_ts_refresh_tokens_salted",
            "issued_at",
            postgresql_where=text("salt IS NOT NULL"),
            sqlite_where=text("salt IS NOT NULL"),
        ),
    )

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("ts_families.id"), index=True)
    # Unique: a token has at most one child, so a fork is impossible even under a bug.
    parent_hash: Mapped[bytes | None] = mapped_column(
        LargeBinary(32), ForeignKey("ts_refresh_tokens.token_hash"), unique=True
    )
    salt: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    issued_at: Mapped[float]
    expires_at: Mapped[float]
    used_at: Mapped[float | None]
    revoked_at: Mapped[float | None]
    grace_retries: Mapped[int] = mapped_column(Integer, default=0)
    used_ip: Mapped[str | None] = mapped_column(String(64))
    used_user_agent: Mapped[str | None] = mapped_column(String(NAME_LENGTH))


class AccessTokenRecord(Base):
    """Access tokens issued per family, so reuse can deny the unexpired ones (SECURITY R2)."""

    __tablename__ = "ts_access_tokens"

    jti: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("ts_families.id"), index=True)
    expires_at: Mapped[float]


class DeniedAccessToken(Base):
    """The jti denylist; a row lives until the token's own ``exp``."""

    __tablename__ = "ts_denylist"

    jti: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    expires_at: Mapped[float] = mapped_column(index=True)


class DPoPProof(Base):
    """Replay keys of DPoP proofs accepted, shared by every instance (RFC 9449 §11.1); a
    row lives until no instance can accept its proof (``RefreshService.cleanup``).

    A proof is named by its ``iat`` and its key: a replay of it has both the same, whatever
    window each instance allows. Keyed in that order, proofs arrive nearly in key order, so
    each one lands on the b-tree's last page, which the one before it wrote too, and
    cleanup deletes from the front of the same b-tree: no second index, and one page less
    per rotation to write and sync than a random key with an expiry index (benchmarks/
    bench_dpop.py)."""

    __tablename__ = "ts_dpop_proofs"
    # SQLite: the rows live in the primary key's own b-tree, one write fewer per proof.
    __table_args__ = ({"sqlite_with_rowid": False},)

    iat: Mapped[float] = mapped_column(primary_key=True)
    key: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)


class SubjectNotBefore(Base):
    """``revoke_subject``: access tokens of the subject issued earlier are revoked."""

    __tablename__ = "ts_subject_not_before"

    subject: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    not_before: Mapped[float] = mapped_column(index=True)


class Meta(Base):
    """Store-wide values. It no longer holds the refresh secret: that lives with the keys
    (SECURITY B1; migration 0005 moves it out)."""

    __tablename__ = "ts_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class FamilyRevocation(Base):
    """Audit trail of family revocations: which family, when, why and on whose behalf."""

    __tablename__ = "ts_family_revocations"
    __table_args__ = (Index(None, "family_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    family_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    revoked_at: Mapped[float]
    reason: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(NAME_LENGTH))


class LogoutMessage(Base):
    """The back-channel logout outbox (OpenID Connect Back-Channel Logout 1.0): one row per
    logout token still to deliver, written in the revocation's own transaction. An instance
    claims a row until ``claimed_until`` (a lease longer than one delivery), so while it
    delivers, no other instance takes the row; a crashed instance's claim simply expires."""

    __tablename__ = "ts_logout_outbox"
    # The worker's query: due and unclaimed rows, oldest first.
    __table_args__ = (Index(None, "next_attempt_at"),)

    # Random, and the logout token's ``jti``: a receiver that got it twice can tell.
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(NAME_LENGTH))
    subject: Mapped[str] = mapped_column(String(NAME_LENGTH))
    session_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[float]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float]
    claimed_until: Mapped[float | None]
    claimed_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class RevocationLogEntry(Base):
    """The revocation log (:mod:`tokensmith.revocation.log`). Ids come from
    ``ts_revocation_cursor``, never from a sequence, so they grow in commit order."""

    __tablename__ = "ts_revocation_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    item: Mapped[str] = mapped_column(String(NAME_LENGTH))
    at: Mapped[float]
    until: Mapped[float | None]


class RevocationCursor(Base):
    """One row: the last id handed to the revocation log. Its row lock, taken just before
    a unit commits, orders the log's writers (``store/sql/transaction.py``)."""

    __tablename__ = "ts_revocation_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger)


metadata = Base.metadata
families = cast(Table, Family.__table__)
refresh_tokens = cast(Table, RefreshToken.__table__)
access_tokens = cast(Table, AccessTokenRecord.__table__)
denylist = cast(Table, DeniedAccessToken.__table__)
subject_not_before = cast(Table, SubjectNotBefore.__table__)
dpop_proofs = cast(Table, DPoPProof.__table__)
meta = cast(Table, Meta.__table__)
family_revocations = cast(Table, FamilyRevocation.__table__)
logout_outbox = cast(Table, LogoutMessage.__table__)
revocation_log = cast(Table, RevocationLogEntry.__table__)
revocation_cursor = cast(Table, RevocationCursor.__table__)
# The cursor row exists from the start (migration 0009 inserts it too): a writer only
# ever updates it, so two first writers cannot race to create it.
event.listen(
    revocation_cursor,
    "after_create",
    DDL("INSERT INTO ts_revocation_cursor (id, position) VALUES (1, 0)"),  # type: ignore[no-untyped-call]
)
