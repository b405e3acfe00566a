"""The SQL client registry (``ts_clients``): public and confidential OAuth clients."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import JSON, Boolean, Engine, LargeBinary, String, Table, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from tokensmith.clients import Client
from tokensmith.errors import InvalidRequest
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


clients = cast(Table, ClientRow.__table__)
_GET = select(clients).where(clients.c.client_id == bindparam("client_id"))
_LIST = select(clients).order_by(clients.c.client_id)
_INSERT = clients.insert()
_TUPLES = ("grant_types", "scopes", "audiences", "redirect_uris", "allowed_origins")


def _client(row: Any) -> Client:
    data = dict(row._mapping)
    for name in _TUPLES:
        data[name] = tuple(data[name])
    return Client(**data)


class SqlClientRegistry:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_client(self, client_id: str) -> Client | None:
        with self._engine.connect() as conn:
            row = conn.execute(_GET, {"client_id": client_id}).first()
        return None if row is None else _client(row)

    def add_client(self, client: Client) -> None:
        values = {
            "client_id": client.client_id,
            "confidential": client.confidential,
            "secret_hash": client.secret_hash,
            "cookie_mode": client.cookie_mode,
            "created_at": client.created_at,
            **{name: list(getattr(client, name)) for name in _TUPLES},
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(_INSERT, values)
        except IntegrityError:
            raise InvalidRequest(f"client {client.client_id!r} already exists") from None

    def list_clients(self) -> list[Client]:
        with self._engine.connect() as conn:
            return [_client(row) for row in conn.execute(_LIST)]
