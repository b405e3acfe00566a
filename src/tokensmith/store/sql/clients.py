"""The SQL client registry (``ts_clients``): public and confidential OAuth clients. A change
and the revocation-log entry it writes commit in one transaction
(:class:`tokensmith.clients.LoggedClientRegistry`)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Engine,
    LargeBinary,
    String,
    Table,
    bindparam,
    false,
    select,
    true,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from tokensmith.clients import Client, ClientLogEntry
from tokensmith.errors import InvalidRequest
from tokensmith.store.sql.errors import translate
from tokensmith.store.sql.models import Base


class ClientRow(Base):
    __tablename__ = "ts_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    confidential: Mapped[bool] = mapped_column(Boolean)
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    audiences: Mapped[list[str]] = mapped_column(JSON)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    allowed_origins: Mapped[list[str]] = mapped_column(JSON)
    cookie_mode: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float]
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    previous_secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    previous_secret_expires_at: Mapped[float | None]
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2048))
    backchannel_logout_session_required: Mapped[bool] = mapped_column(
        Boolean, server_default=false()
    )
    dpop_bound_access_tokens: Mapped[bool] = mapped_column(Boolean, server_default=false())


clients = cast(Table, ClientRow.__table__)
_GET = select(clients).where(clients.c.client_id == bindparam("client_id"))
_LIST = select(clients).order_by(clients.c.client_id)
_INSERT = clients.insert()
_UPDATE = clients.update().where(clients.c.client_id == bindparam("id"))
_DELETE = clients.delete().where(clients.c.client_id == bindparam("id"))
_TUPLES = ("grant_types", "scopes", "audiences", "redirect_uris", "allowed_origins")
_SCALARS = (
    "confidential",
    "secret_hash",
    "cookie_mode",
    "created_at",
    "enabled",
    "previous_secret_hash",
    "previous_secret_expires_at",
    "backchannel_logout_uri",
    "backchannel_logout_session_required",
    "dpop_bound_access_tokens",
)


def _client(row: Any) -> Client:
    data = dict(row._mapping)
    for name in _TUPLES:
        data[name] = tuple(data[name])
    return Client(**data)


def _values(client: Client) -> dict[str, Any]:
    return {
        **{name: getattr(client, name) for name in _SCALARS},
        **{name: list(getattr(client, name)) for name in _TUPLES},
    }


class SqlClientRegistry:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_client(self, client_id: str) -> Client | None:
        with self._engine.connect() as conn:
            row = conn.execute(_GET, {"client_id": client_id}).first()
        return None if row is None else _client(row)

    def add_client(self, client: Client) -> None:
        self.write_client(client.client_id, client, new=True, log=None)

    def update_client(self, client: Client) -> None:
        self.write_client(client.client_id, client, new=False, log=None)

    def delete_client(self, client_id: str) -> bool:
        return self.write_client(client_id, None, new=False, log=None)

    def write_client(
        self, client_id: str, client: Client | None, *, new: bool, log: ClientLogEntry | None
    ) -> bool:
        try:
            with self._engine.begin() as conn:
                done = _write(conn, client_id, client, new=new)
                if done and log is not None:
                    _append(conn, client_id, log)
        except DBAPIError as exc:
            raise translate(exc.orig, disconnect=exc.connection_invalidated) from exc
        except self._engine.dialect.loaded_dbapi.Error as exc:  # the log's raw cursor
            raise translate(exc, disconnect=False) from exc
        return done

    def list_clients(self) -> list[Client]:
        with self._engine.connect() as conn:
            return [_client(row) for row in conn.execute(_LIST)]


def _write(conn: Connection, client_id: str, client: Client | None, *, new: bool) -> bool:
    if client is None:
        return bool(conn.execute(_DELETE, {"id": client_id}).rowcount)
    if new:
        try:
            conn.execute(_INSERT, {"client_id": client_id, **_values(client)})
        except IntegrityError:
            raise InvalidRequest(f"client {client_id!r} already exists") from None
        return True
    if not conn.execute(_UPDATE, {"id": client_id, **_values(client)}).rowcount:
        raise InvalidRequest(f"no client {client_id!r}")
    return True


def _append(conn: Connection, client_id: str, log: ClientLogEntry) -> None:
    """Write ``log`` as the transaction's last statements, the way every unit of work does
    (``store/sql/transaction.py``: ids in commit order, and the PostgreSQL ``NOTIFY``)."""
    # Imported here: the statements the unit runs are built on this module's table.
    from tokensmith.store.sql.transaction import SqlTransaction

    cursor = conn.connection.cursor()
    try:
        unit = SqlTransaction(cursor, conn.dialect.name)
        unit._log_revocation(log.kind, client_id, log.at, None)
        unit._flush_log()
    finally:
        cursor.close()
